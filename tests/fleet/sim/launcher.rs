//! `up`: from a spec to a fleet whose sshds listen. The supervisor (`watch`) that owns the
//! sshds is in supervisor.rs, `down` and the small CLIs tests and scripts use (`stop-host`,
//! `fault`, `clear-faults`, `state`, `sql`) in fleetctl.rs, fleet.json in fleetinfo.rs.

use crate::fleetinfo::{FleetInfo, HostInfo, SshdInfo};
use crate::layouts;
use crate::state;
use crate::util::{self, Ctx, Result};
use serde::Deserialize;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One sshd holds at most 16 listen sockets ("Too many listen sockets").
const PORTS_PER_SSHD: usize = 16;

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
    let spec = read_spec(&a.spec)?;
    let user = spec.user.clone().unwrap_or_else(|| "fleetup-test".into());
    let dir = prepare_fleet_dir(&a.dir, &user)?;
    let login = ensure_user(&user)?;
    fs::create_dir_all("/run/sshd").ctx("creating /run/sshd")?;
    let bin = dir.join("bin");
    let sim = install_sim_copy(&bin)?;
    generate_keys(&dir)?;
    authorize_client_key(&dir)?;
    link_shims(&bin, &sim)?;
    fs::create_dir_all(dir.join("ports")).ctx("creating ports dir")?;
    let hosts = provision_hosts(&spec, &dir, &login, &user)?;
    let plan = fleet_plan(&dir, &user, &sim, &spec.hosts, hosts);
    let plan_s = serde_json::to_string_pretty(&plan).ctx("serialising plan")?;
    util::write_atomic(&dir.join("plan.json"), plan_s.as_bytes())?;
    let prep_ms = t0.elapsed().as_millis();

    let owner = a.owner.unwrap_or_else(|| {
        // SAFETY: getppid cannot fail.
        unsafe { libc::getppid() }
    });
    start_supervisor(&sim, &dir, owner)?;
    eprintln!(
        "fleet-sim: {} hosts on {} sshds up in {} ms (prepare {} ms)",
        spec.hosts.len(),
        plan.sshds.len(),
        t0.elapsed().as_millis(),
        prep_ms
    );
    Ok(())
}

/// Everything in the spec is checked before anything is written, so a typo leaves no
/// half-made fleet behind.
fn read_spec(path: &Path) -> Result<Spec> {
    let spec_text = fs::read_to_string(path).ctx(format!("reading spec {}", path.display()))?;
    let spec: Spec =
        serde_yaml::from_str(&spec_text).ctx(format!("parsing spec {}", path.display()))?;
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
    Ok(spec)
}

/// The fleet dir, resolved, refused while another fleet is up in it, and reachable by the
/// login user.
fn prepare_fleet_dir(dir: &Path, user: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir).ctx(format!("creating {}", dir.display()))?;
    let dir = fs::canonicalize(dir).ctx("resolving the fleet dir")?;
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
    Ok(dir)
}

/// A copy the login user can execute even when the checkout is in a mode-700 directory,
/// written beside bin/fleet-sim and renamed over it, so that path is never half-written.
fn install_sim_copy(bin: &Path) -> Result<PathBuf> {
    fs::create_dir_all(bin).ctx("creating bin")?;
    fs::set_permissions(bin, fs::Permissions::from_mode(0o755)).ctx("chmod bin")?;
    let sim = bin.join("fleet-sim");
    let tmp = bin.join(".fleet-sim.tmp");
    fs::copy(sim_path()?, &tmp).ctx("copying fleet-sim into the fleet dir")?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).ctx("chmod fleet-sim")?;
    fs::rename(&tmp, &sim).ctx("placing fleet-sim")?;
    Ok(sim)
}

/// Both keys at once: ssh-keygen is the slowest step of a small fleet.
fn generate_keys(dir: &Path) -> Result<()> {
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
    Ok(())
}

/// One authorized_keys for the user and root (sshd_config's `AuthorizedKeysFile`),
/// readable by sshd once it has dropped to the login user.
fn authorize_client_key(dir: &Path) -> Result<()> {
    let client_pub =
        fs::read_to_string(dir.join("id_ed25519.pub")).ctx("reading client public key")?;
    fs::write(dir.join("authorized_keys"), &client_pub).ctx("writing authorized_keys")?;
    fs::set_permissions(
        dir.join("authorized_keys"),
        fs::Permissions::from_mode(0o644),
    )
    .ctx("chmod authorized_keys")
}

/// The shims are fleet-sim itself, which dispatches on the name it was called by.
fn link_shims(bin: &Path, sim: &Path) -> Result<()> {
    for n in ["docker", "docker-compose", "curl"] {
        let l = bin.join(n);
        let _ = fs::remove_file(&l);
        symlink(sim, &l).ctx(format!("linking {}", l.display()))?;
    }
    Ok(())
}

/// Each host's files, owned by the account it logs in as; the sshds are assigned later
/// (`fleet_plan`), so `sshd` and `port` are left at 0.
fn provision_hosts(
    spec: &Spec,
    dir: &Path,
    login: &util::User,
    user: &str,
) -> Result<Vec<HostInfo>> {
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
            (login.uid, login.gid, user.to_string())
        };
        provision_host(
            &host_dir,
            &app,
            &install_of(h, hosts.len() as u32),
            uid,
            gid,
        )?;
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
    Ok(hosts)
}

/// The spec's defaults for what layouts::provision installs; `index` keeps the hosts'
/// generated ids and addresses apart.
fn install_of(h: &HostSpec, index: u32) -> layouts::Install<'_> {
    layouts::Install {
        layout: h.layout.as_deref().unwrap_or("compose"),
        version: &h.version,
        image: h.image.as_deref().unwrap_or("simplelogin/app-ci"),
        v_prefix: h.v_prefix.unwrap_or(true),
        broken: h.broken,
        extra: &h.extra_args,
        index,
    }
}

/// Hosts that must be stoppable alone get their own sshd; the rest share, 16 a piece.
/// Returns, per sshd, the indexes of its hosts in the spec.
fn sshd_groups(specs: &[HostSpec]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut shared: Vec<usize> = Vec::new();
    for (i, h) in specs.iter().enumerate() {
        if h.own_sshd {
            groups.push(vec![i]);
        } else {
            shared.push(i);
        }
    }
    for c in shared.chunks(PORTS_PER_SSHD) {
        groups.push(c.to_vec());
    }
    groups
}

/// What the supervisor is to start (plan.json): ports and pids are its to fill in.
fn fleet_plan(
    dir: &Path,
    user: &str,
    sim: &Path,
    specs: &[HostSpec],
    mut hosts: Vec<HostInfo>,
) -> FleetInfo {
    let groups = sshd_groups(specs);
    for (gi, g) in groups.iter().enumerate() {
        for &i in g {
            hosts[i].sshd = gi;
        }
    }
    FleetInfo {
        dir: dir.to_path_buf(),
        user: user.to_string(),
        sim: sim.to_path_buf(),
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
                hosts: g.iter().map(|&h| specs[h].name.clone()).collect(),
            })
            .collect(),
    }
}

/// `up` returns only once every sshd listens: the supervisor says "ready" on its stdout
/// when they do, anything else is why they did not (with its log).
fn start_supervisor(sim: &Path, dir: &Path, owner: i32) -> Result<()> {
    let errlog = fs::File::create(dir.join("supervisor.log")).ctx("creating supervisor.log")?;
    let mut sup = Command::new(sim);
    sup.arg("watch")
        .arg("--dir")
        .arg(dir)
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
