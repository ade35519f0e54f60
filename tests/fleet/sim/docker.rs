//! The `docker` shim: the docker CLI as the SimpleLogin procedure uses it, with docker's
//! own messages and exit codes, over the host's state.json.

use crate::format::{print_ps, render, JsonRows};
use crate::inspect::view;
use crate::opts;
use crate::releases::ImageRef;
use crate::run;
use crate::state::{self, Container, HostState};
use crate::util::{self, human_ago, rfc3339};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub fn daemon_err(msg: &str) -> i32 {
    eprintln!("Error response from daemon: {msg}");
    1
}

pub fn usage_err(cmd: &str, msg: &str) -> i32 {
    eprintln!("{msg}\nSee 'docker {cmd} --help'.");
    125
}

pub fn main(host_dir: &Path, args: &[String]) -> i32 {
    // Global options before the command (rarely used by playbooks).
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        match args[i].as_str() {
            "-v" | "--version" => {
                println!("Docker version 24.0.7, build afdd53b");
                return 0;
            }
            "-H" | "--host" | "--context" | "-c" | "--log-level" | "-l" | "--config" => i += 2,
            _ => i += 1,
        }
    }
    let Some(cmd) = args.get(i) else {
        println!("Usage:  docker [OPTIONS] COMMAND\n\nA self-sufficient runtime for containers");
        return 0;
    };
    let rest = &args[i + 1..];
    match run_cmd(host_dir, cmd, rest) {
        Ok(rc) => rc,
        Err(e) => {
            eprintln!("fleet-sim docker: {e}");
            1
        }
    }
}

fn run_cmd(h: &Path, cmd: &str, a: &[String]) -> Result<i32, String> {
    Ok(match cmd {
        "info" => info(h, a)?,
        "version" => version(a)?,
        "ps" => ps(h, a)?,
        "container" => match a.first().map(String::as_str) {
            Some("ls") | Some("list") | Some("ps") => ps(h, &a[1..])?,
            Some("inspect") => inspect_cmd(h, &a[1..], Some("container"))?,
            Some(sub) => run_cmd(h, sub, &a[1..])?,
            None => usage_err("container", "docker container: missing subcommand"),
        },
        "inspect" => inspect_cmd(h, a, None)?,
        "images" => crate::images::images(h, a)?,
        "image" => match a.first().map(String::as_str) {
            Some("ls") | Some("list") => crate::images::images(h, &a[1..])?,
            Some("inspect") => inspect_cmd(h, &a[1..], Some("image"))?,
            Some("pull") => crate::images::pull(h, &a[1..])?,
            Some("rm") | Some("remove") => crate::images::rmi(h, &a[1..])?,
            Some("prune") => {
                println!("Total reclaimed space: 0B");
                0
            }
            _ => usage_err("image", "docker image: unknown subcommand"),
        },
        "rmi" => crate::images::rmi(h, a)?,
        "pull" => crate::images::pull(h, a)?,
        "stop" | "start" | "restart" | "kill" => lifecycle(h, cmd, a)?,
        "rm" => rm(h, a)?,
        "run" => run_cmd_run(h, a, false)?,
        "create" => run_cmd_run(h, a, true)?,
        "wait" => wait(h, a)?,
        "exec" => crate::dexec::exec(h, a)?,
        "logs" => logs(h, a)?,
        "network" => crate::dnet::network(h, a)?,
        "port" => crate::dnet::port(h, a)?,
        "volume" => crate::dnet::volume(h, a)?,
        "compose" => crate::compose::main(h, a, "docker compose"),
        other => {
            eprintln!("docker: '{other}' is not a docker command.\nSee 'docker --help'");
            1
        }
    })
}

fn load(h: &Path) -> Result<HostState, String> {
    state::load(h)
}

fn info(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = opts::parse(a, &["-f", "--format"], true)?;
    let st = load(h)?;
    let running = st
        .containers
        .iter()
        .filter(|c| c.status == "running")
        .count();
    let v = json!({
        "ServerVersion": "24.0.7", "Containers": st.containers.len(),
        "ContainersRunning": running, "ContainersStopped": st.containers.len() - running,
        "Images": st.images.len(), "Driver": "overlay2", "OperatingSystem": "Debian GNU/Linux 12 (bookworm)",
        "DockerRootDir": "/var/lib/docker", "Name": std::env::var("FLEET_HOST").unwrap_or_default(),
    });
    if let Some(f) = o.get(&["-f", "--format"]) {
        return print_tpl(&f, &v);
    }
    println!(
        "Client: Docker Engine - Community\n Version:    24.0.7\n Context:    default\n\nServer:\n Containers: {}\n  Running: {}\n  Paused: 0\n  Stopped: {}\n Images: {}\n Server Version: 24.0.7\n Storage Driver: overlay2\n Operating System: Debian GNU/Linux 12 (bookworm)\n Docker Root Dir: /var/lib/docker",
        st.containers.len(),
        running,
        st.containers.len() - running,
        st.images.len()
    );
    Ok(0)
}

fn version(a: &[String]) -> Result<i32, String> {
    let o = opts::parse(a, &["-f", "--format"], true)?;
    let v = json!({
        "Client": {"Version": "24.0.7", "ApiVersion": "1.43", "Os": "linux", "Arch": "amd64"},
        "Server": {"Version": "24.0.7", "ApiVersion": "1.43", "MinAPIVersion": "1.12", "Os": "linux", "Arch": "amd64"},
    });
    if let Some(f) = o.get(&["-f", "--format"]) {
        return print_tpl(&f, &v);
    }
    println!("Client: Docker Engine - Community\n Version:           24.0.7\n API version:       1.43\n OS/Arch:           linux/amd64\n\nServer: Docker Engine - Community\n Engine:\n  Version:          24.0.7\n  API version:      1.43 (minimum version 1.12)\n  OS/Arch:          linux/amd64");
    Ok(0)
}

fn print_tpl(f: &str, v: &Value) -> Result<i32, String> {
    match render(f, v) {
        Ok(s) => {
            println!("{s}");
            Ok(0)
        }
        Err(e) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

fn inspect_cmd(h: &Path, a: &[String], ty: Option<&str>) -> Result<i32, String> {
    let o = match opts::parse(a, &["-f", "--format", "--type"], true) {
        Ok(o) => o,
        Err(e) => return Ok(usage_err("inspect", &e)),
    };
    if o.pos.is_empty() {
        return Ok(usage_err(
            "inspect",
            "\"docker inspect\" requires at least 1 argument.",
        ));
    }
    let ty = ty.map(str::to_string).or_else(|| o.get(&["--type"]));
    let st = load(h)?;
    Ok(crate::inspect::inspect(&st, &o, ty.as_deref()))
}

/// The STATUS column of `docker ps` (and `compose ps`).
pub fn status_text(st: &HostState, c: &Container) -> String {
    let now = util::now();
    let v = view(st, c);
    if v.restarting {
        return "Restarting (1) Less than a second ago".into();
    }
    match v.status {
        "running" => format!(
            "Up {}{}",
            human_ago(now - c.started),
            crate::inspect::health(st, c).map_or("", |h| h.ps_suffix())
        ),
        "exited" => format!(
            "Exited ({}) {} ago",
            c.exit_code,
            human_ago(now - c.finished)
        ),
        _ => "Created".into(),
    }
}

fn ports_text(c: &Container) -> String {
    let mut v: Vec<String> = c
        .ports
        .iter()
        .map(|p| {
            let ip = if p.host_ip.is_empty() {
                "0.0.0.0"
            } else {
                &p.host_ip
            };
            format!("{ip}:{}->{}", p.host_port, p.container)
        })
        .collect();
    for e in &c.exposed {
        if !c.ports.iter().any(|p| &p.container == e) {
            v.push(e.clone());
        }
    }
    if c.status != "running" {
        return String::new();
    }
    v.join(", ")
}

fn ps_row(st: &HostState, c: &Container, trunc: bool) -> Value {
    let now = util::now();
    let full = run::argv(c).join(" ");
    let cmd = if trunc && full.chars().count() > 20 {
        format!("\"{}…\"", full.chars().take(19).collect::<String>())
    } else {
        format!("\"{full}\"")
    };
    let labels: Vec<String> = c.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    json!({
        "ID": if trunc { c.id[..12].to_string() } else { c.id.clone() },
        "Image": c.image, "Command": cmd,
        "CreatedAt": rfc3339(c.created), "RunningFor": format!("{} ago", human_ago(now - c.created)),
        "Ports": ports_text(c), "State": view(st, c).status, "Status": status_text(st, c),
        "Names": c.name, "Labels": labels.join(","),
        "Networks": c.endpoints.iter().map(|e| e.network.clone()).collect::<Vec<_>>().join(","),
        "Mounts": crate::inspect::listed_mounts(c).iter().map(|m| m.source.clone()).collect::<Vec<_>>().join(","),
        "LocalVolumes": c.mounts.iter().filter(|m| m.kind == "volume").count().to_string(), "Size": "0B",
    })
}

fn filter_match(st: &HostState, c: &Container, f: &str) -> bool {
    let (k, v) = f.split_once('=').unwrap_or((f, ""));
    match k {
        "name" => {
            let exact_start = v.starts_with('^');
            let exact_end = v.ends_with('$');
            let needle = v
                .trim_start_matches('^')
                .trim_start_matches('/')
                .trim_end_matches('$');
            match (exact_start, exact_end) {
                (true, true) => c.name == needle,
                (true, false) => c.name.starts_with(needle),
                (false, true) => c.name.ends_with(needle),
                _ => c.name.contains(needle),
            }
        }
        "status" => view(st, c).status == v,
        "id" => c.id.starts_with(v),
        "ancestor" => c.image == v || c.image_id.starts_with(v),
        "exited" => c.status == "exited" && c.exit_code.to_string() == v,
        "label" => match v.split_once('=') {
            Some((lk, lv)) => c.label(lk) == Some(lv),
            None => c.label(v).is_some(),
        },
        "network" => c.on_network(v),
        _ => true,
    }
}

fn ps(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = match opts::parse(a, &["-f", "--filter", "--format", "-n", "--last"], true) {
        Ok(o) => o,
        Err(e) => return Ok(usage_err("ps", &e)),
    };
    let st = load(h)?;
    let all = o.has(&["-a", "--all"]);
    let filters = o.all(&["-f", "--filter"]);
    let trunc = !o.has(&["--no-trunc"]);
    // Filters on the same key are ORed, different keys ANDed.
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &filters {
        by_key
            .entry(f.split('=').next().unwrap_or("").to_string())
            .or_default()
            .push(f.clone());
    }
    let status_filter = by_key.contains_key("status");
    let mut cs: Vec<&Container> = st
        .containers
        .iter()
        .filter(|c| all || status_filter || c.status == "running")
        .filter(|c| {
            by_key
                .values()
                .all(|fs| fs.iter().any(|f| filter_match(&st, c, f)))
        })
        .collect();
    cs.sort_by(|x, y| {
        y.created
            .partial_cmp(&x.created)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let rows: Vec<Value> = cs.iter().map(|c| ps_row(&st, c, trunc)).collect();
    let columns = [
        ("CONTAINER ID", "ID"),
        ("IMAGE", "Image"),
        ("COMMAND", "Command"),
        ("CREATED", "RunningFor"),
        ("STATUS", "Status"),
        ("PORTS", "Ports"),
        ("NAMES", "Names"),
    ];
    Ok(print_ps(&o, rows, JsonRows::Lines, &columns))
}

/// Stop container `i` as `docker stop` does (the app first finishes what it was doing).
pub fn stop_container(st: &mut HostState, i: usize, kill: bool) {
    if st.containers[i].status != "running" {
        return;
    }
    crate::app::write_in_flight(st, i);
    let c = &mut st.containers[i];
    if let Some(p) = c.job_pid.take() {
        util::kill(p, libc::SIGKILL);
    }
    let graceful = c
        .cmd
        .first()
        .map(|x| x == "gunicorn" || x == "postgres")
        .unwrap_or(false);
    c.status = "exited".into();
    c.exit_code = if kill {
        137
    } else if graceful {
        0
    } else {
        143
    };
    c.finished = util::now();
    c.pid = 0;
}

fn lifecycle(h: &Path, cmd: &str, a: &[String]) -> Result<i32, String> {
    let o = match opts::parse(a, &["-t", "--time", "-s", "--signal"], true) {
        Ok(o) => o,
        Err(e) => return Ok(usage_err(cmd, &e)),
    };
    if o.pos.is_empty() {
        return Ok(usage_err(
            cmd,
            &format!("\"docker {cmd}\" requires at least 1 argument."),
        ));
    }
    state::with_state(h, |st| {
        let mut rc = 0;
        for name in &o.pos {
            let Some(i) = st.container_idx(name) else {
                rc = daemon_err(&format!("No such container: {name}"));
                continue;
            };
            if cmd == "kill" && st.containers[i].status != "running" {
                rc = daemon_err(&format!(
                    "Cannot kill container: {name}: container {} is not running",
                    st.containers[i].id
                ));
                continue;
            }
            if cmd != "start" {
                stop_container(st, i, cmd == "kill");
            }
            if (cmd == "start" || cmd == "restart") && st.containers[i].status != "running" {
                if let Err(e) = run::start(st, i, h) {
                    rc = daemon_err(&e);
                    eprintln!("Error: failed to start containers: {name}");
                    continue;
                }
            }
            if st.containers[i].auto_remove && st.containers[i].status == "exited" {
                st.containers.remove(i);
            }
            println!("{name}");
        }
        rc
    })
}

fn rm(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = opts::parse(a, &[], true)?;
    if o.pos.is_empty() {
        return Ok(usage_err(
            "rm",
            "\"docker rm\" requires at least 1 argument.",
        ));
    }
    let force = o.has(&["-f", "--force"]);
    state::with_state(h, |st| {
        let mut rc = 0;
        for name in &o.pos {
            let Some(i) = st.container_idx(name) else {
                // docker rm --force ignores containers that do not exist (CLI 23+).
                if !force {
                    rc = daemon_err(&format!("No such container: {name}"));
                }
                continue;
            };
            if st.containers[i].status == "running" && !force {
                rc = daemon_err(&format!("cannot remove container \"/{}\": container is running: stop the container before removing or force remove", st.containers[i].name));
                continue;
            }
            stop_container(st, i, true);
            let c = st.containers.remove(i);
            let _ = std::fs::remove_dir_all(run::out_dir(h, &c.id));
            println!("{name}");
        }
        rc
    })
}

fn run_cmd_run(h: &Path, a: &[String], create_only: bool) -> Result<i32, String> {
    let what = if create_only { "create" } else { "run" };
    let spec = match run::parse_spec(a) {
        Ok(s) => s,
        Err(e) => return Ok(usage_err(what, &format!("docker: {e}"))),
    };
    let r = match ImageRef::parse(&spec.image) {
        Ok(r) => r,
        Err(e) => return Ok(usage_err(what, &format!("docker: {e}."))),
    };
    let delay: f64 = std::env::var("FLEET_CONTAINER_DELAY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0);
    let res = state::with_state(
        h,
        |st| -> Result<(String, Option<std::process::Child>), String> {
            if let Some(n) = &spec.name {
                if let Some(c) = st.container(n) {
                    return Err(format!("Conflict. The container name \"/{n}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", c.id));
                }
            }
            if st.image(&r).is_none() && spec.pull.as_deref() != Some("never") {
                eprintln!("Unable to find image '{}' locally", r.full());
                crate::images::do_pull(st, &r, false, true)?;
            }
            let mut c = run::build(st, &spec, &BTreeMap::new())?;
            c.delay = delay;
            let id = c.id.clone();
            st.containers.push(c);
            if create_only {
                println!("{id}");
                return Ok((id, None));
            }
            let i = st.containers.len() - 1;
            match run::start(st, i, h) {
                Ok(child) => {
                    if spec.detach {
                        println!("{id}");
                    }
                    Ok((id, child))
                }
                Err(e) => {
                    if spec.auto_rm {
                        st.containers.pop();
                    }
                    Err(e)
                }
            }
        },
    )?;
    match res {
        Err(e) => Ok(usage_err(
            what,
            &format!("docker: Error response from daemon: {e}."),
        )),
        Ok(_) if create_only || spec.detach => Ok(0),
        Ok((id, child)) => Ok(run::attach(h, &id, child)),
    }
}

fn wait(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = opts::parse(a, &[], true)?;
    if o.pos.is_empty() {
        return Ok(usage_err(
            "wait",
            "\"docker wait\" requires at least 1 argument.",
        ));
    }
    let mut rc = 0;
    for name in &o.pos {
        let st = load(h)?;
        let Some(id) = st.container(name).map(|c| c.id.clone()) else {
            eprintln!("Error response from daemon: No such container: {name}");
            rc = 1;
            continue;
        };
        loop {
            let st = load(h)?;
            match st.containers.iter().find(|c| c.id == id) {
                Some(c) if c.status == "running" => util::sleep_secs(0.05),
                Some(c) => {
                    println!("{}", c.exit_code);
                    break;
                }
                None => {
                    let code = std::fs::read_to_string(run::out_dir(h, &id).join("exit"))
                        .unwrap_or_else(|_| "137".into());
                    println!("{}", code.trim());
                    break;
                }
            }
        }
    }
    Ok(rc)
}

fn logs(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = opts::parse(a, &["--tail", "-n", "--since", "--until"], true)?;
    let Some(name) = o.pos.first() else {
        return Ok(usage_err(
            "logs",
            "\"docker logs\" requires exactly 1 argument.",
        ));
    };
    let st = load(h)?;
    let Some(c) = st.container(name) else {
        return Ok(daemon_err(&format!("No such container: {name}")));
    };
    let dir = run::out_dir(h, &c.id);
    let (out, err) = if dir.exists() {
        (
            std::fs::read_to_string(dir.join("stdout")).unwrap_or_default(),
            std::fs::read_to_string(dir.join("stderr")).unwrap_or_default(),
        )
    } else {
        let l = crate::app::service_logs(&st, c);
        (l.out, l.err)
    };
    print!("{out}");
    eprint!("{err}");
    Ok(0)
}
