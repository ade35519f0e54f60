//! `docker run` / `docker create`: flags stored as docker stores them, containers started
//! on their networks, and one-shot commands run by a detached "daemon" process
//! (`fleet-sim container-run`) that outlives the client, as a real container does.

use crate::opts::{self, Opts};
use crate::releases::{image_config, ImageConfig, ImageRef};
use crate::state::{self, Container, Endpoint, HostState, PortBinding};
use crate::util;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const RUN_VALUED: &[&str] = &[
    "--name",
    "-v",
    "--volume",
    "--network",
    "--net",
    "-e",
    "--env",
    "--env-file",
    "-w",
    "--workdir",
    "--entrypoint",
    "-p",
    "--publish",
    "-u",
    "--user",
    "--restart",
    "-l",
    "--label",
    "--hostname",
    "-h",
    "--mount",
    "--platform",
    "--pull",
    "--log-driver",
    "--add-host",
    "--cpus",
    "-m",
    "--memory",
    "--network-alias",
    "--stop-timeout",
    "--health-cmd",
    "--health-interval",
    "--health-timeout",
    "--health-start-period",
    "--health-retries",
    "--expose",
    "--ip",
    "--log-opt",
    "--cidfile",
];

/// Everything `docker run` was told, before it becomes a container.
#[derive(Default, Clone)]
pub struct Job {
    pub name: Option<String>,
    pub image: String,
    pub cmd: Vec<String>,
    pub entrypoint: Option<String>,
    pub env: Vec<String>,
    pub env_files: Vec<String>,
    pub volumes: Vec<String>,
    pub mounts: Vec<String>,
    pub publish: Vec<String>,
    pub networks: Vec<String>,
    pub aliases: Vec<String>,
    pub restart: Option<String>,
    pub labels: Vec<String>,
    pub workdir: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub detach: bool,
    pub interactive: bool,
    pub tty: bool,
    pub auto_rm: bool,
    pub pull: Option<String>,
    /// compose's `healthcheck:`.
    pub healthcheck: Option<crate::health::Healthcheck>,
    /// `--expose`: ports beside the image's own.
    pub expose: Vec<String>,
    /// `--ip`: the address on the first network.
    pub ip: Option<String>,
    /// What goes to `HostConfig` and is only kept (crate::hostconfig).
    pub host_config: serde_json::Map<String, serde_json::Value>,
    /// What goes to `Config` and is only kept (crate::hostconfig).
    pub config_kept: serde_json::Map<String, serde_json::Value>,
}

pub fn parse_spec(a: &[String]) -> Result<Job, String> {
    let valued = [RUN_VALUED, crate::hostconfig::VALUED].concat();
    let o: Opts = opts::parse(a, &valued, false)?;
    let image = o
        .pos
        .first()
        .cloned()
        .ok_or("'docker run' requires at least 1 argument.")?;
    Ok(Job {
        name: o.get(&["--name"]),
        image,
        cmd: o.pos[1..].to_vec(),
        entrypoint: o.get(&["--entrypoint"]),
        env: o.all(&["-e", "--env"]),
        env_files: o.all(&["--env-file"]),
        volumes: o.all(&["-v", "--volume"]),
        mounts: o.all(&["--mount"]),
        publish: o.all(&["-p", "--publish"]),
        networks: o.all(&["--network", "--net"]),
        aliases: o.all(&["--network-alias"]),
        restart: o.get(&["--restart"]),
        labels: o.all(&["-l", "--label"]),
        workdir: o.get(&["-w", "--workdir"]),
        hostname: o.get(&["-h", "--hostname"]),
        user: o.get(&["-u", "--user"]),
        detach: o.has(&["-d", "--detach"]),
        interactive: o.has(&["-i", "--interactive"]),
        tty: o.has(&["-t", "--tty"]),
        auto_rm: o.has(&["--rm"]),
        pull: o.get(&["--pull"]),
        healthcheck: crate::health::Healthcheck::from_run(&o)?,
        expose: o.all(&["--expose"]),
        ip: o.get(&["--ip"]),
        host_config: crate::hostconfig::parse(&o)?,
        config_kept: crate::hostconfig::parse_config(&o)?,
    })
}

/// An env file as docker's client reads it (docker/cli `pkg/kvfile`): line by line, a
/// line's leading spaces dropped (its trailing ones are the value's), empty lines and
/// `#` lines skipped, a name with a space refused.
fn read_env_file(path: &str) -> Result<Vec<String>, String> {
    let s = std::fs::read_to_string(path)
        .map_err(|_| format!("open {path}: no such file or directory"))?;
    let mut entries = Vec::new();
    for line in s.lines().map(str::trim_start) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = line.split('=').next().unwrap_or_default();
        if name.is_empty() {
            return Err(format!(
                "invalid env file ({path}): no variable name on line '{line}'"
            ));
        }
        if name.contains([' ', '\t']) {
            return Err(format!(
                "invalid env file ({path}): variable '{name}' contains whitespaces"
            ));
        }
        entries.extend(env_entry(line));
    }
    Ok(entries)
}

/// `KEY=value` as given; a bare `KEY` takes the client's value, and is dropped when the
/// client has none, as docker does for `-e` and `--env-file`.
fn env_entry(e: &str) -> Option<String> {
    if e.contains('=') {
        Some(e.to_string())
    } else {
        std::env::var(e).ok().map(|v| format!("{e}={v}"))
    }
}

/// Container env first, then the image's variables it does not set (docker's merge).
pub fn merge_env(own: Vec<String>, image: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or("").to_string();
    let mut out: Vec<String> = Vec::new();
    for e in own {
        let k = key(&e);
        out.retain(|x| key(x) != k);
        out.push(e);
    }
    for e in image {
        if !out.iter().any(|x| key(x) == key(e)) {
            out.push(e.clone());
        }
    }
    out
}

pub fn parse_port(p: &str) -> Result<PortBinding, String> {
    let (body, proto) = match p.rsplit_once('/') {
        Some((b, pr)) => (b, pr),
        None => (p, "tcp"),
    };
    let parts: Vec<&str> = body.split(':').collect();
    let (ip, hp, cp) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [i, h, c] => (*i, *h, *c),
        _ => return Err(format!("invalid port format: {p}")),
    };
    if cp.parse::<u16>().is_err() || (!hp.is_empty() && hp.parse::<u16>().is_err()) {
        return Err(format!("invalid containerPort: {cp}"));
    }
    Ok(PortBinding {
        container: format!("{cp}/{proto}"),
        host_ip: ip.into(),
        host_port: hp.into(),
    })
}

pub fn parse_restart(r: &str) -> Result<(String, u32), String> {
    match r.split_once(':') {
        None if ["no", "always", "unless-stopped", "on-failure"].contains(&r) => Ok((r.into(), 0)),
        Some(("on-failure", n)) => n.parse().map(|n| ("on-failure".into(), n)).map_err(|_| {
            "invalid restart policy format: maximum retry count must be an integer".to_string()
        }),
        _ => Err(format!(
            "invalid restart policy format: unknown policy '{r}'"
        )),
    }
}

/// Build the container `spec` describes (the image must be present). Errors are the
/// daemon's messages.
pub fn build(
    st: &mut HostState,
    s: &Job,
    extra_labels: &BTreeMap<String, String>,
) -> Result<Container, String> {
    let r = ImageRef::parse(&s.image)?;
    let img = st
        .image(&r)
        .cloned()
        .ok_or_else(|| format!("No such image: {}", r.full()))?;
    let ic = image_config(&r);
    let name = s.name.clone().unwrap_or_else(|| random_name(&img.id));
    let mut c = state::new_container(&name, &s.image, &img.id);
    let mut own = Vec::new();
    for f in &s.env_files {
        own.extend(read_env_file(f)?);
    }
    own.extend(s.env.iter().filter_map(|e| env_entry(e)));
    c.env = merge_env(own, &ic.env);
    set_command(&mut c, s, &ic);
    c.workdir = s.workdir.clone().unwrap_or(ic.workdir.clone());
    c.hostname = s.hostname.clone().unwrap_or_else(|| c.id[..12].to_string());
    c.user = s.user.clone().unwrap_or_default();
    c.labels = ic.labels.iter().cloned().collect();
    for l in &s.labels {
        let (k, v) = l.split_once('=').unwrap_or((l, ""));
        c.labels.insert(k.into(), v.into());
    }
    c.labels.extend(extra_labels.clone());
    for v in &s.volumes {
        c.mounts.push(crate::mounts::parse_volume(v)?);
        c.binds.push(v.clone());
    }
    for m in &s.mounts {
        c.mounts.push(crate::mounts::parse_mount(m)?);
    }
    for p in &s.publish {
        c.ports.push(parse_port(p)?);
    }
    c.exposed = ic.exposed.clone();
    for port in &s.expose {
        let port = match port.contains('/') {
            true => port.clone(),
            false => format!("{port}/tcp"),
        };
        if !c.exposed.contains(&port) {
            c.exposed.push(port);
        }
    }
    let (rp, max) = parse_restart(s.restart.as_deref().unwrap_or("no"))?;
    if s.auto_rm && rp != "no" {
        return Err("Conflicting options: --restart and --rm".into());
    }
    c.restart = rp;
    c.restart_max = max;
    c.auto_remove = s.auto_rm;
    c.tty = s.tty;
    c.open_stdin = s.interactive;
    c.healthcheck = s.healthcheck.clone();
    c.host_config = s.host_config.clone();
    c.config_kept = s.config_kept.clone();
    crate::mounts::volumes_from(st, &mut c)?;
    c.network_mode = s
        .networks
        .first()
        .cloned()
        .unwrap_or_else(|| "default".into());
    c.endpoints = endpoints(st, s, &c.id)?;
    crate::mounts::create_volumes(st, &c.mounts);
    Ok(c)
}

/// `--entrypoint` replaces the image's entrypoint and, with it, the image's command; an
/// empty one clears it.
fn set_command(c: &mut Container, s: &Job, ic: &ImageConfig) {
    match &s.entrypoint {
        Some(ep) => {
            c.entrypoint = if ep.is_empty() {
                None
            } else {
                Some(vec![ep.clone()])
            };
            c.cmd = s.cmd.clone();
        }
        None => {
            c.entrypoint = ic.entrypoint.clone();
            c.cmd = if s.cmd.is_empty() {
                ic.cmd.clone()
            } else {
                s.cmd.clone()
            };
        }
    }
}

/// The container's endpoint on each network it joins (bridge when none is named; host and
/// none are no endpoint). On user networks its short id is an alias too, as docker does.
fn endpoints(st: &HostState, s: &Job, id: &str) -> Result<Vec<Endpoint>, String> {
    let nets = if s.networks.is_empty() {
        vec!["bridge".to_string()]
    } else {
        s.networks.clone()
    };
    let mut out = Vec::new();
    for n in &nets {
        if n == "host" || n == "none" {
            continue;
        }
        if st.network(n).is_none() {
            return Err(format!("network {n} not found"));
        }
        let mut aliases = s.aliases.clone();
        if n != "bridge" {
            aliases.push(id[..12].to_string());
        }
        // `--ip` fixes the address on the network `run` names first.
        let fixed_ip = match (&s.ip, out.is_empty()) {
            (Some(ip), true) => {
                st.network(n)
                    .map(|net| net.check_fixed_ip(ip))
                    .transpose()?;
                Some(ip.clone())
            }
            _ => None,
        };
        out.push(Endpoint {
            network: n.clone(),
            ip: String::new(),
            aliases,
            fixed_ip,
        });
    }
    Ok(out)
}

fn random_name(seed: &str) -> String {
    const A: &[&str] = &[
        "admiring", "brave", "clever", "eager", "focused", "gallant", "jolly", "keen",
    ];
    const B: &[&str] = &[
        "turing", "hopper", "lovelace", "ritchie", "thompson", "torvalds", "knuth", "liskov",
    ];
    let h = util::hex_id(&format!("{seed}{}", util::unique_seed()));
    let n = u64::from_str_radix(&h[..8], 16).unwrap_or(0) as usize;
    format!("{}_{}", A[n % A.len()], B[(n / 8) % B.len()])
}

/// Start container `i`: ports, addresses, and for a one-shot command the daemon process.
pub fn start(
    st: &mut HostState,
    i: usize,
    host_dir: &Path,
) -> Result<Option<std::process::Child>, String> {
    let c = st.containers[i].clone();
    for e in &c.endpoints {
        if st.network(&e.network).is_none() {
            return Err(format!("network {} not found", e.network));
        }
    }
    for p in &c.ports {
        let clash = st.containers.iter().any(|o| {
            o.id != c.id
                && o.status == "running"
                && o.ports.iter().any(|q| {
                    !p.host_port.is_empty()
                        && q.host_port == p.host_port
                        && (q.host_ip == p.host_ip || q.host_ip.is_empty() || p.host_ip.is_empty())
                })
        });
        if clash {
            let ip = if p.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &p.host_ip
            };
            return Err(format!("driver failed programming external connectivity on endpoint {} ({}): Bind for {ip}:{} failed: port is already allocated", c.name, &util::hex_id(&c.id)[..64], p.host_port));
        }
    }
    let ips: Vec<String> = (c.endpoints.iter())
        .map(|e| {
            e.fixed_ip
                .clone()
                .unwrap_or_else(|| st.alloc_ip(&e.network))
        })
        .collect();
    let now = util::now();
    let c = &mut st.containers[i];
    for (e, ip) in c.endpoints.iter_mut().zip(ips) {
        e.ip = ip;
    }
    for p in &mut c.ports {
        if p.host_port.is_empty() {
            p.host_port = (32768 + (util::now() * 1000.0) as u64 % 20000).to_string();
        }
    }
    c.status = "running".into();
    c.started = now;
    c.exit_code = 0;
    c.finished = 0.0;
    c.pid = 10_000 + (now * 1000.0) as u32 % 50_000;
    if state::is_service_cmd(&c.cmd) || state::is_service_cmd(&argv(c)) {
        return Ok(None);
    }
    let child = spawn_job(host_dir, &c.id)?;
    c.job_pid = Some(child.id() as i32);
    Ok(Some(child))
}

/// What the container executes: entrypoint (but for postgres' wrapper) then cmd.
pub fn argv(c: &Container) -> Vec<String> {
    match &c.entrypoint {
        Some(ep)
            if ep
                .first()
                .map(|e| e != "docker-entrypoint.sh")
                .unwrap_or(false) =>
        {
            ep.iter().chain(c.cmd.iter()).cloned().collect()
        }
        _ => c.cmd.clone(),
    }
}

pub fn out_dir(host_dir: &Path, id: &str) -> PathBuf {
    host_dir.join("containers").join(id)
}

fn spawn_job(host_dir: &Path, id: &str) -> Result<std::process::Child, String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| format!("finding fleet-sim: {e}"))?;
    let dir = out_dir(host_dir, id);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("container-run")
        .arg(host_dir)
        .arg(id)
        .env_remove("FLEET_HOST_DIR")
        .env("FLEET_CONTAINER_HOST_DIR", host_dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setsid in the child before exec: the container belongs to the "daemon", not
    // to the client's session, so killing the client (or the SSH session) leaves it running.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd.spawn()
        .map_err(|e| format!("starting the container process: {e}"))
}

/// `docker run` without -d: stream the container's output until it exits, return its code.
pub fn attach(host_dir: &Path, id: &str, mut child: Option<std::process::Child>) -> i32 {
    use std::io::{Read, Seek, SeekFrom, Write};
    let dir = out_dir(host_dir, id);
    let mut pos = [0u64, 0u64];
    let copy = |pos: &mut [u64; 2]| {
        for (k, name) in ["stdout", "stderr"].iter().enumerate() {
            if let Ok(mut f) = std::fs::File::open(dir.join(name)) {
                if f.seek(SeekFrom::Start(pos[k])).is_ok() {
                    let mut buf = Vec::new();
                    if let Ok(n) = f.read_to_end(&mut buf) {
                        pos[k] += n as u64;
                        if k == 0 {
                            let _ = std::io::stdout().write_all(&buf);
                            let _ = std::io::stdout().flush();
                        } else {
                            let _ = std::io::stderr().write_all(&buf);
                        }
                    }
                }
            }
        }
    };
    let mut ticks = 0u64;
    loop {
        copy(&mut pos);
        if let Ok(s) = std::fs::read_to_string(dir.join("exit")) {
            copy(&mut pos);
            return s.trim().parse().unwrap_or(1);
        }
        if let Some(ch) = child.as_mut() {
            if let Ok(Some(_)) = ch.try_wait() {
                child = None;
            }
        }
        ticks += 1;
        if ticks.is_multiple_of(10) {
            match state::load(host_dir) {
                Ok(st) => match st.containers.iter().find(|c| c.id == id) {
                    Some(c) if c.status == "running" => {}
                    Some(c) if dir.join("exit").exists() || c.job_pid.is_none() => {
                        return c.exit_code
                    }
                    Some(_) => {}
                    None if !dir.join("exit").exists() => return 137,
                    None => {}
                },
                Err(_) => return 125,
            }
        }
        util::sleep_secs(0.01);
    }
}
