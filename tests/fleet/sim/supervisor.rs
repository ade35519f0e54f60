//! The supervisor (`fleet-sim watch`) apart from `up`: it is another process, detached,
//! that outlives `up` for the fleet's whole life (starting the sshds, reaping them, tearing
//! everything down when the owner dies); `up` only waits for its `ready`.

use crate::faults;
use crate::fleetinfo::{FleetInfo, HostInfo, SshdInfo};
use crate::util::{self, sh_quote, Ctx, Result};
use serde_yaml::{Mapping, Value as Y};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

const SSHD: &str = "/usr/sbin/sshd";

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

    write_inventory(f)?;
    let pids: String = f.sshds.iter().map(|s| format!("{}\n", s.pid)).collect();
    fs::write(dir.join("pids"), pids).ctx("writing pids")?;
    let fj = serde_json::to_string_pretty(&*f).ctx("serialising fleet")?;
    util::write_atomic(&dir.join("fleet.json"), fj.as_bytes())
}

/// The fleet's inventory, as Ansible reads it: every host under its groups, every group
/// under `simplelogin`.
fn write_inventory(f: &FleetInfo) -> Result<()> {
    let dir = &f.dir;
    let mut children = Mapping::new();
    for h in &f.hosts {
        let vars = host_vars(h, dir);
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
    fs::write(dir.join("inventory.yml"), inv).ctx("writing inventory.yml")
}

/// A host's variables in the inventory: where to reach it and how, and what the shipped
/// playbooks are to be told about it.
fn host_vars(h: &HostInfo, dir: &Path) -> Mapping {
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
    vars
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
