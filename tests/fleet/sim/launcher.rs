//! `up`, `down`, the supervisor (`watch`) that owns the sshds, and the small CLIs tests
//! and scripts use (`stop-host`, `fault`, `clear-faults`, `state`).

use crate::faults::{self, Rule};
use crate::layouts;
use crate::state;
use crate::util::{self, sh_quote, Ctx, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One sshd holds at most 16 listen sockets ("Too many listen sockets").
const PORTS_PER_SSHD: usize = 16;
const SSHD: &str = "/usr/sbin/sshd";

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    #[serde(default)]
    pub user: Option<String>,
    pub hosts: Vec<HostSpec>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    #[serde(default)]
    pub groups: Vec<String>,
    pub version: String,
    #[serde(default)]
    pub canary: bool,
    #[serde(default)]
    pub app_path: Option<String>,
    #[serde(default)]
    pub root: bool,
    /// Informational: the host is already at the target version.
    #[serde(default)]
    pub current: bool,
    /// The host gets an sshd of its own, so `stop-host` can take just it away.
    #[serde(default)]
    pub own_sshd: bool,
    /// readme | compose (default) | springcomp
    #[serde(default)]
    pub layout: Option<String>,
    /// Image repository (default simplelogin/app-ci).
    #[serde(default)]
    pub image: Option<String>,
    /// Tags with a `v` (default true): simplelogin/app-ci:v4.66.1 or simplelogin/app:4.66.1.
    #[serde(default)]
    pub v_prefix: Option<bool>,
    /// The seed's failure: app containers on `version`'s image, schema at the release before.
    #[serde(default)]
    pub broken: bool,
    /// Extra `docker run` flags per container (readme layout), e.g. {sl-app: ["-e", "K=V"]}.
    #[serde(default)]
    pub extra_args: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct HostInfo {
    pub name: String,
    pub groups: Vec<String>,
    pub version: String,
    pub canary: bool,
    pub current: bool,
    pub root: bool,
    pub user: String,
    pub port: u16,
    pub host_dir: PathBuf,
    pub app_path: PathBuf,
    pub sshd: usize,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SshdInfo {
    pub index: usize,
    pub pid: i32,
    pub ports: Vec<u16>,
    pub config: PathBuf,
    pub log: PathBuf,
    pub hosts: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct FleetInfo {
    pub dir: PathBuf,
    pub user: String,
    pub sim: PathBuf,
    pub supervisor_pid: i32,
    pub hosts: Vec<HostInfo>,
    pub sshds: Vec<SshdInfo>,
}

pub fn read_fleet(dir: &Path) -> Result<FleetInfo> {
    let p = dir.join("fleet.json");
    let s = fs::read_to_string(&p).ctx(format!("reading {} (is the fleet up?)", p.display()))?;
    serde_json::from_str(&s).ctx(format!("parsing {}", p.display()))
}

fn sim_path() -> Result<PathBuf> {
    std::env::current_exe().ctx("finding the fleet-sim executable")
}

// ------------------------------------------------------------------ up

pub struct UpArgs {
    pub dir: PathBuf,
    pub spec: PathBuf,
    pub owner: Option<i32>,
}

pub fn up(a: UpArgs) -> Result<()> {
    crate::install::ensure_openssh()?;
    let t0 = Instant::now();
    let spec_text =
        fs::read_to_string(&a.spec).ctx(format!("reading spec {}", a.spec.display()))?;
    let spec: Spec =
        serde_yaml::from_str(&spec_text).ctx(format!("parsing spec {}", a.spec.display()))?;
    if spec.hosts.is_empty() {
        return Err("the spec lists no hosts".into());
    }
    let mut seen = std::collections::HashSet::new();
    for h in &spec.hosts {
        if h.name.is_empty() || h.name.contains(['/', ' ']) || !seen.insert(h.name.clone()) {
            return Err(format!("bad or duplicate host name {:?}", h.name));
        }
        if state::release_index(&h.version).is_none() {
            let known: Vec<&str> = state::RELEASES.iter().map(|r| r.version).collect();
            return Err(format!(
                "host {}: unknown version {} (known: {})",
                h.name,
                h.version,
                known.join(", ")
            ));
        }
    }
    let user = spec.user.clone().unwrap_or_else(|| "fleetup-test".into());
    fs::create_dir_all(&a.dir).ctx(format!("creating {}", a.dir.display()))?;
    let dir = fs::canonicalize(&a.dir).ctx("resolving the fleet dir")?;
    if dir.join("supervisor.pid").exists() {
        if let Ok(p) = fs::read_to_string(dir.join("supervisor.pid")) {
            if p.trim().parse().map(util::pid_alive).unwrap_or(false) {
                return Err(format!(
                    "a fleet is already up in {} (run down first)",
                    dir.display()
                ));
            }
        }
    }
    // sshd reads authorized_keys and the session runs the shims as the login user.
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).ctx("chmod fleet dir")?;
    for anc in dir.ancestors().skip(1) {
        let m = fs::metadata(anc).ctx(format!("stat {}", anc.display()))?;
        if m.permissions().mode() & 0o001 == 0 {
            return Err(format!(
                "{} is not searchable by other users, so {user} cannot reach the fleet dir",
                anc.display()
            ));
        }
    }
    let login = ensure_user(&user)?;
    fs::create_dir_all("/run/sshd").ctx("creating /run/sshd")?;
    // A copy the login user can execute even when the checkout is in a mode-700 directory.
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).ctx("creating bin")?;
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).ctx("chmod bin")?;
    let sim = bin.join("fleet-sim");
    let tmp = bin.join(".fleet-sim.tmp");
    fs::copy(sim_path()?, &tmp).ctx("copying fleet-sim into the fleet dir")?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).ctx("chmod fleet-sim")?;
    fs::rename(&tmp, &sim).ctx("placing fleet-sim")?;

    // Both keys at once: ssh-keygen is the slowest step of a small fleet.
    let mut gens = Vec::new();
    for (f, c) in [
        ("ssh_host_ed25519_key", "fleet-sim host key"),
        ("id_ed25519", "fleet-sim client key"),
    ] {
        let p = dir.join(f);
        if !p.exists() {
            gens.push(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", c, "-f"])
                    .arg(&p)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .ctx("running ssh-keygen")?,
            );
        }
    }
    for mut g in gens {
        let st = g.wait().ctx("waiting for ssh-keygen")?;
        if !st.success() {
            return Err(format!("ssh-keygen failed: {st}"));
        }
    }
    let client_pub =
        fs::read_to_string(dir.join("id_ed25519.pub")).ctx("reading client public key")?;
    fs::write(dir.join("authorized_keys"), &client_pub).ctx("writing authorized_keys")?;
    fs::set_permissions(
        dir.join("authorized_keys"),
        fs::Permissions::from_mode(0o644),
    )
    .ctx("chmod authorized_keys")?;

    for n in ["docker", "docker-compose", "curl"] {
        let l = bin.join(n);
        let _ = fs::remove_file(&l);
        symlink(&sim, &l).ctx(format!("linking {}", l.display()))?;
    }
    fs::create_dir_all(dir.join("ports")).ctx("creating ports dir")?;

    let mut hosts = Vec::new();
    for h in &spec.hosts {
        let host_dir = dir.join("hosts").join(&h.name);
        let app = match &h.app_path {
            Some(p) => PathBuf::from(p),
            None => host_dir.join("opt/simplelogin"),
        };
        let (uid, gid, uname) = if h.root {
            (0, 0, "root".to_string())
        } else {
            (login.uid, login.gid, user.clone())
        };
        let inst = layouts::Install {
            layout: h.layout.as_deref().unwrap_or("compose"),
            version: &h.version,
            image: h.image.as_deref().unwrap_or("simplelogin/app-ci"),
            v_prefix: h.v_prefix.unwrap_or(true),
            broken: h.broken,
            extra: &h.extra_args,
            index: hosts.len() as u32,
        };
        provision_host(&host_dir, &app, &inst, uid, gid)?;
        hosts.push(HostInfo {
            name: h.name.clone(),
            groups: if h.groups.is_empty() {
                vec!["ungrouped".into()]
            } else {
                h.groups.clone()
            },
            version: h.version.clone(),
            canary: h.canary,
            current: h.current,
            root: h.root,
            user: uname,
            port: 0,
            host_dir,
            app_path: app,
            sshd: 0,
        });
    }
    // Hosts that must be stoppable alone get their own sshd; the rest share, 16 a piece.
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut shared: Vec<usize> = Vec::new();
    for (i, h) in spec.hosts.iter().enumerate() {
        if h.own_sshd {
            groups.push(vec![i]);
        } else {
            shared.push(i);
        }
    }
    for c in shared.chunks(PORTS_PER_SSHD) {
        groups.push(c.to_vec());
    }
    for (gi, g) in groups.iter().enumerate() {
        for &i in g {
            hosts[i].sshd = gi;
        }
    }
    let plan = FleetInfo {
        dir: dir.clone(),
        user: user.clone(),
        sim: sim.clone(),
        supervisor_pid: 0,
        hosts,
        sshds: groups
            .iter()
            .enumerate()
            .map(|(i, g)| SshdInfo {
                index: i,
                pid: 0,
                ports: Vec::new(),
                config: dir.join(format!("sshd/{i}/sshd_config")),
                log: dir.join(format!("sshd/{i}/sshd.log")),
                hosts: g.iter().map(|&h| spec.hosts[h].name.clone()).collect(),
            })
            .collect(),
    };
    let plan_s = serde_json::to_string_pretty(&plan).ctx("serialising plan")?;
    util::write_atomic(&dir.join("plan.json"), plan_s.as_bytes())?;
    let prep_ms = t0.elapsed().as_millis();

    let owner = a.owner.unwrap_or_else(|| {
        // SAFETY: getppid cannot fail.
        unsafe { libc::getppid() }
    });
    let errlog = fs::File::create(dir.join("supervisor.log")).ctx("creating supervisor.log")?;
    let mut sup = Command::new(&sim);
    sup.arg("watch")
        .arg("--dir")
        .arg(&dir)
        .arg("--owner")
        .arg(owner.to_string());
    sup.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(errlog);
    // SAFETY: setsid is async-signal-safe; it detaches the supervisor from our terminal
    // and process group so that signals aimed at the caller's group do not reach it.
    unsafe {
        sup.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let mut child = sup.spawn().ctx("starting the fleet supervisor")?;
    let out = child.stdout.take().ok_or("no supervisor stdout")?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .ctx("reading the supervisor's answer")?;
    if line.trim() != "ready" {
        let log = fs::read_to_string(dir.join("supervisor.log")).unwrap_or_default();
        let _ = child.wait();
        return Err(format!(
            "the fleet did not come up: {}{}",
            line.trim(),
            log.trim()
        ));
    }
    eprintln!(
        "fleet-sim: {} hosts on {} sshds up in {} ms (prepare {} ms)",
        spec.hosts.len(),
        groups.len(),
        t0.elapsed().as_millis(),
        prep_ms
    );
    Ok(())
}

fn ensure_user(user: &str) -> Result<util::User> {
    if user == "root" {
        return util::lookup_user("root").ok_or_else(|| "no root user".to_string());
    }
    // Two tests may create the user at once: serialise, and look again under the lock.
    let _l = util::lock(Path::new("/run/lock/fleet-sim-useradd.lock"))
        .or_else(|_| util::lock(Path::new("/tmp/.fleet-sim-useradd.lock")))?;
    if util::lookup_user(user).is_none() {
        let st = Command::new("useradd")
            .args(["-m", "-s", "/bin/bash", user])
            .status()
            .ctx("running useradd")?;
        if !st.success() && util::lookup_user(user).is_none() {
            return Err(format!("useradd {user} failed: {st}"));
        }
    }
    // A new account is locked ("!") and sshd with UsePAM no refuses key logins for it.
    let shadow = fs::read_to_string("/etc/shadow").unwrap_or_default();
    let locked = shadow
        .lines()
        .find(|l| l.split(':').next() == Some(user))
        .map(|l| l.split(':').nth(1).unwrap_or("").starts_with('!'))
        .unwrap_or(false);
    if locked {
        let st = Command::new("usermod")
            .args(["-p", "*", user])
            .status()
            .ctx("running usermod")?;
        if !st.success() {
            return Err(format!("usermod -p '*' {user} failed: {st}"));
        }
    }
    util::lookup_user(user).ok_or_else(|| format!("user {user} does not exist after useradd"))
}

fn provision_host(
    host_dir: &Path,
    app: &Path,
    inst: &layouts::Install,
    uid: u32,
    gid: u32,
) -> Result<()> {
    layouts::provision(host_dir, app, inst)?;
    for f in [".lock", ".faults.lock"] {
        fs::write(host_dir.join(f), "").ctx("creating lock file")?;
    }
    fs::write(host_dir.join("commands.log"), "").ctx("creating commands.log")?;
    util::chown_r(host_dir, uid, gid)?;
    if !app.starts_with(host_dir) {
        util::chown_r(app, uid, gid)?;
    }
    Ok(())
}

// ------------------------------------------------------------------ supervisor

fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut ls = Vec::new();
    for _ in 0..n {
        ls.push(std::net::TcpListener::bind("127.0.0.1:0").ctx("binding a free port")?);
    }
    ls.iter()
        .map(|l| l.local_addr().map(|a| a.port()).ctx("reading a port"))
        .collect()
}

fn write_sshd_config(f: &FleetInfo, s: &SshdInfo) -> Result<()> {
    let dir = &f.dir;
    let mut c = String::new();
    for p in &s.ports {
        c.push_str(&format!("ListenAddress 127.0.0.1:{p}\n"));
    }
    let q = |p: &Path| format!("\"{}\"", p.display());
    c.push_str(&format!(
        "HostKey {}\n",
        q(&dir.join("ssh_host_ed25519_key"))
    ));
    c.push_str(&format!(
        "AuthorizedKeysFile {}\n",
        q(&dir.join("authorized_keys"))
    ));
    c.push_str(&format!(
        "ForceCommand {} session {}\n",
        sh_quote(&f.sim.to_string_lossy()),
        sh_quote(&dir.to_string_lossy())
    ));
    c.push_str(&format!("AllowUsers {} root\n", f.user));
    c.push_str(
        "PidFile none\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\nStrictModes no\nMaxSessions 100\nUseDNS no\n\
         PrintMotd no\nPrintLastLog no\nX11Forwarding no\nAllowTcpForwarding yes\n\
         AcceptEnv LANG LC_* SL_* FLEETUP_*\nLogLevel INFO\n",
    );
    if let Some(p) = s.config.parent() {
        fs::create_dir_all(p).ctx("creating sshd dir")?;
    }
    fs::write(&s.config, c).ctx(format!("writing {}", s.config.display()))
}

fn spawn_sshd(s: &SshdInfo) -> Result<std::process::Child> {
    let _ = fs::remove_file(&s.log);
    Command::new(SSHD)
        .arg("-D")
        .arg("-f")
        .arg(&s.config)
        .arg("-E")
        .arg(&s.log)
        .args(["-o", "MaxStartups=400"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ctx("starting sshd")
}

enum Ready {
    Yes,
    Wait,
    Retry(String),
    Fatal(String),
}

fn check_ready(s: &SshdInfo, child: &mut std::process::Child) -> Ready {
    let log = fs::read_to_string(&s.log).unwrap_or_default();
    if log.contains("Bind to port") || log.contains("Cannot bind any address") {
        return Ready::Retry(log);
    }
    if s.ports
        .iter()
        .all(|p| log.contains(&format!("Server listening on 127.0.0.1 port {p}.")))
    {
        return Ready::Yes;
    }
    if let Ok(Some(st)) = child.try_wait() {
        return Ready::Fatal(format!("sshd exited ({st}): {log}"));
    }
    Ready::Wait
}

/// Start every sshd with fresh ports, retrying a group with new ports when another process
/// took one of its ports in between.
fn start_sshds(f: &mut FleetInfo) -> Result<()> {
    let total: usize = f.sshds.iter().map(|s| s.hosts.len()).sum();
    let mut ports = free_ports(total)?.into_iter();
    let mut children: Vec<Option<std::process::Child>> = Vec::new();
    for i in 0..f.sshds.len() {
        let n = f.sshds[i].hosts.len();
        f.sshds[i].ports = ports.by_ref().take(n).collect();
        write_sshd_config(f, &f.sshds[i])?;
        children.push(Some(spawn_sshd(&f.sshds[i])?));
    }
    let mut ready = vec![false; f.sshds.len()];
    let mut retries = 0;
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while ready.iter().any(|r| !r) {
        if Instant::now() > deadline {
            return Err("sshd did not start listening within 30 s".into());
        }
        for i in 0..f.sshds.len() {
            if ready[i] {
                continue;
            }
            let Some(ch) = children[i].as_mut() else {
                continue;
            };
            match check_ready(&f.sshds[i], ch) {
                Ready::Yes => {
                    ready[i] = true;
                    f.sshds[i].pid = ch.id() as i32;
                }
                Ready::Wait => {}
                Ready::Retry(log) => {
                    retries += 1;
                    if retries > 50 {
                        return Err(format!("could not find free ports after 50 tries: {log}"));
                    }
                    let _ = ch.kill();
                    let _ = ch.wait();
                    f.sshds[i].ports = free_ports(f.sshds[i].hosts.len())?;
                    write_sshd_config(f, &f.sshds[i])?;
                    children[i] = Some(spawn_sshd(&f.sshds[i])?);
                }
                Ready::Fatal(e) => return Err(e),
            }
        }
        util::sleep_secs(0.003);
    }
    // From here on the supervisor reaps with waitpid(-1); the handles are not needed.
    for c in children.into_iter().flatten() {
        std::mem::forget(c);
    }
    Ok(())
}

fn write_fleet_files(f: &mut FleetInfo) -> Result<()> {
    let dir = f.dir.clone();
    let by_name: HashMap<String, usize> = f
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (h.name.clone(), i))
        .collect();
    for s in &f.sshds {
        for (name, port) in s.hosts.iter().zip(&s.ports) {
            if let Some(&i) = by_name.get(name) {
                f.hosts[i].port = *port;
            }
        }
    }
    let hostkey =
        fs::read_to_string(dir.join("ssh_host_ed25519_key.pub")).ctx("reading host public key")?;
    let hostkey: String = hostkey
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut kh = String::new();
    for h in &f.hosts {
        kh.push_str(&format!("[127.0.0.1]:{} {hostkey}\n", h.port));
        fs::write(dir.join("ports").join(h.port.to_string()), &h.name).ctx("writing port map")?;
        let hj = serde_json::to_string_pretty(h).ctx("serialising host")?;
        fs::write(h.host_dir.join("host.json"), hj).ctx("writing host.json")?;
    }
    fs::write(dir.join("known_hosts"), kh).ctx("writing known_hosts")?;

    use serde_yaml::{Mapping, Value as Y};
    let mut children = Mapping::new();
    for h in &f.hosts {
        let mut vars = Mapping::new();
        vars.insert("ansible_host".into(), "127.0.0.1".into());
        vars.insert("ansible_port".into(), Y::from(h.port as u64));
        vars.insert("ansible_user".into(), h.user.clone().into());
        vars.insert(
            "ansible_ssh_private_key_file".into(),
            dir.join("id_ed25519").to_string_lossy().into_owned().into(),
        );
        // The app's directory is the playbook's to discover; where fleetup keeps its lock and
        // audit log is the operator's to say (the login user cannot write /var/lib).
        vars.insert(
            "fleetup_dir".into(),
            h.app_path
                .join(".fleetup")
                .to_string_lossy()
                .into_owned()
                .into(),
        );
        // The simulated job runner's restart count climbs every second: one is enough to see it.
        vars.insert("sl_settle".into(), 1u64.into());
        if h.canary {
            vars.insert("canary".into(), true.into());
        }
        for g in &h.groups {
            let grp = children.entry(Y::from(g.clone())).or_insert_with(|| {
                let mut m = Mapping::new();
                m.insert("hosts".into(), Y::Mapping(Mapping::new()));
                Y::Mapping(m)
            });
            if let Some(Y::Mapping(hs)) = grp.get_mut("hosts") {
                hs.insert(h.name.clone().into(), Y::Mapping(vars.clone()));
            }
        }
    }
    // Every group sits under `simplelogin`, as in the shipped example inventory, so the
    // shipped playbooks (`hosts: simplelogin`) run on the fleet unchanged.
    let mut simplelogin = Mapping::new();
    simplelogin.insert("children".into(), Y::Mapping(children));
    let mut top = Mapping::new();
    top.insert("simplelogin".into(), Y::Mapping(simplelogin));
    let mut all = Mapping::new();
    all.insert("children".into(), Y::Mapping(top));
    let mut root = Mapping::new();
    root.insert("all".into(), Y::Mapping(all));
    let inv = serde_yaml::to_string(&Y::Mapping(root)).ctx("serialising inventory")?;
    fs::write(dir.join("inventory.yml"), inv).ctx("writing inventory.yml")?;
    let pids: String = f.sshds.iter().map(|s| format!("{}\n", s.pid)).collect();
    fs::write(dir.join("pids"), pids).ctx("writing pids")?;
    let fj = serde_json::to_string_pretty(&*f).ctx("serialising fleet")?;
    util::write_atomic(&dir.join("fleet.json"), fj.as_bytes())
}

/// The supervisor: parent (and child subreaper) of every sshd of the fleet, so that it
/// can reap them (PID 1 here does not) and kill everything when its owner dies.
pub fn watch(dir: &Path, owner: i32) -> Result<()> {
    // SAFETY: prctl with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    let mut handled = faults::TERMINATING.to_vec();
    handled.push(libc::SIGCHLD);
    faults::block(&handled);
    let owner_start = util::proc_ppid_start(owner).map(|p| p.1);
    fs::write(dir.join("supervisor.pid"), std::process::id().to_string())
        .ctx("writing supervisor.pid")?;
    let plan = fs::read_to_string(dir.join("plan.json")).ctx("reading plan.json")?;
    let mut f: FleetInfo = serde_json::from_str(&plan).ctx("parsing plan.json")?;
    f.supervisor_pid = std::process::id() as i32;
    let started = start_sshds(&mut f).and_then(|_| write_fleet_files(&mut f));
    let mut out = std::io::stdout();
    if let Err(e) = started {
        let _ = writeln!(out, "error: {e}");
        shutdown(dir);
        return Err(e);
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    // Let `up` see EOF and return, even if its caller keeps reading our old stdout.
    if let Ok(null) = fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::unix::io::AsRawFd;
        // SAFETY: dup2 onto stdout with a valid fd.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    let set = faults::sigset(&handled);
    loop {
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 200_000_000,
        };
        // SAFETY: valid set and timespec.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        reap();
        let owner_gone = match owner_start {
            Some(s) => {
                util::proc_ppid_start(owner).map(|p| p.1) != Some(s) || !util::pid_alive(owner)
            }
            None => true,
        };
        if faults::TERMINATING.contains(&sig) || owner_gone || !dir.join("supervisor.pid").exists()
        {
            shutdown(dir);
            return Ok(());
        }
    }
}

fn reap() {
    loop {
        let mut status = 0;
        // SAFETY: plain waitpid.
        let p = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if p <= 0 {
            break;
        }
    }
}

fn shutdown(dir: &Path) {
    let me = std::process::id() as i32;
    // Everything below us: the sshds, their connections, and any session re-parented to
    // us as the subreaper.
    for _ in 0..3 {
        let kids = util::descendants(&[me]);
        if kids.is_empty() {
            break;
        }
        util::kill_trees(&kids);
        let deadline = util::now() + 2.0;
        while util::now() < deadline && !util::descendants(&[me]).is_empty() {
            reap();
            util::sleep_secs(0.01);
        }
    }
    reap();
    let _ = fs::remove_file(dir.join("supervisor.pid"));
}

// ------------------------------------------------------------------ down and friends

pub fn down(dir: &Path) -> Result<()> {
    let sup = fs::read_to_string(dir.join("supervisor.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok());
    if let Some(p) = sup {
        if util::pid_alive(p)
            && util::proc_comm(p)
                .map(|c| c.starts_with("fleet-sim"))
                .unwrap_or(false)
        {
            util::kill(p, libc::SIGTERM);
            let deadline = util::now() + 5.0;
            while util::now() < deadline && util::pid_alive(p) {
                util::sleep_secs(0.005);
            }
        }
    }
    // If the supervisor was gone or stuck, kill the sshds it recorded ourselves.
    if let Ok(pids) = fs::read_to_string(dir.join("pids")) {
        let alive: Vec<i32> = pids
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .filter(|&p| util::pid_alive(p) && util::proc_comm(p).as_deref() == Some("sshd"))
            .collect();
        util::kill_trees(&alive);
    }
    if let Some(p) = sup {
        if util::pid_alive(p)
            && util::proc_comm(p)
                .map(|c| c.starts_with("fleet-sim"))
                .unwrap_or(false)
        {
            util::kill_trees(&[p]);
        }
    }
    let _ = fs::remove_file(dir.join("supervisor.pid"));
    Ok(())
}

pub fn stop_host(dir: &Path, name: &str) -> Result<()> {
    let f = read_fleet(dir)?;
    let h = f
        .hosts
        .iter()
        .find(|h| h.name == name)
        .ok_or_else(|| format!("no host {name} in the fleet"))?;
    let s = &f.sshds[h.sshd];
    if s.hosts.len() > 1 {
        return Err(format!(
            "host {name} shares its sshd with {}: give it `own_sshd: true` in the spec to stop it alone",
            s.hosts.iter().filter(|n| *n != name).cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    if util::pid_alive(s.pid) && util::proc_comm(s.pid).as_deref() == Some("sshd") {
        util::kill_trees(&[s.pid]);
        let deadline = util::now() + 2.0;
        while util::now() < deadline && util::pid_alive(s.pid) {
            util::sleep_secs(0.005);
        }
    }
    fs::write(h.host_dir.join("stopped"), "").ctx("marking the host stopped")?;
    Ok(())
}

fn host_dirs(dir: &Path, host: Option<&str>) -> Result<Vec<PathBuf>> {
    let hosts = dir.join("hosts");
    match host {
        Some(h) => {
            let p = hosts.join(h);
            if !p.is_dir() {
                return Err(format!("no host {h} in {}", dir.display()));
            }
            Ok(vec![p])
        }
        None => Ok(fs::read_dir(&hosts)
            .ctx(format!("listing {}", hosts.display()))?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect()),
    }
}

pub fn add_fault(dir: &Path, host: Option<&str>, rule: Rule) -> Result<()> {
    for h in host_dirs(dir, host)? {
        faults::add_rule(&h, rule.clone())?;
    }
    Ok(())
}

pub fn clear_faults(dir: &Path, host: Option<&str>) -> Result<()> {
    for h in host_dirs(dir, host)? {
        faults::clear(&h)?;
    }
    Ok(())
}

pub fn print_state(dir: &Path, host: &str) -> Result<()> {
    let hd = host_dirs(dir, Some(host))?.remove(0);
    let st = state::load(&hd)?;
    let mut v = serde_json::to_value(&st).ctx("serialising state")?;
    if let Some(m) = v.as_object_mut() {
        m.remove("pg");
    }
    v["serving"] = serde_json::json!(st.serving_version());
    let db = st.app_db();
    let rows: serde_json::Map<String, serde_json::Value> = db
        .map(|d| {
            d.tables
                .iter()
                .map(|(n, t)| (n.clone(), serde_json::json!(t.rows.len())))
                .collect()
        })
        .unwrap_or_default();
    v["db"] = serde_json::json!({
        "schema": db.and_then(|d| d.revision()),
        "init": st.init,
        "users": db.map(|d| d.count("users")).unwrap_or(0),
        "tables": db.map(|d| d.tables.keys().cloned().collect::<Vec<_>>()).unwrap_or_default(),
        "rows": rows,
        "user": st.pg.user,
        "name": st.app_db_name(),
    });
    for (i, c) in st.containers.iter().enumerate() {
        v["containers"][i]["state"] = serde_json::json!(crate::inspect::view(&st, c).status);
        v["containers"][i]["restart_count"] = serde_json::json!(c.restart_count());
    }
    let info: Option<HostInfo> = fs::read_to_string(hd.join("host.json"))
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok());
    if let Some(i) = info {
        let env = fs::read_to_string(i.app_path.join(".env")).unwrap_or_default();
        let ver = env
            .lines()
            .find_map(|l| l.strip_prefix("SL_VERSION="))
            .map(|s| s.trim().to_string());
        v["env_version"] = serde_json::json!(ver);
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&v).ctx("serialising state")?
    );
    Ok(())
}

pub fn sql(dir: &Path, host: &str, q: &str) -> Result<()> {
    let hd = host_dirs(dir, Some(host))?.remove(0);
    let out = crate::dexec::sql_cli(&hd, q)?;
    print!("{out}");
    Ok(())
}
