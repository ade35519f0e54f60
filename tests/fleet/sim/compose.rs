//! `docker compose` / `docker-compose` over the simulated daemon: containers carry
//! compose's labels; `up` pulls, creates networks and volumes, runs one-shot dependencies
//! (`service_completed_successfully`) to completion first, and re-creates what changed.

use crate::composefile::{load_project, Project, Service};
use crate::docker::{daemon_err, stop_container};
use crate::images::do_pull;
use crate::opts;
use crate::releases::ImageRef;
use crate::state::{self, HostState};
use crate::util;
use std::collections::BTreeMap;
use std::path::Path;

pub fn main(h: &Path, args: &[String], prog: &str) -> i32 {
    match run(h, args, prog) {
        Ok(rc) => rc,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn status(msg: &str) {
    eprintln!(" {msg}");
}

const GLOBAL: &[&str] = &[
    "-f",
    "--file",
    "--project-directory",
    "-p",
    "--project-name",
    "--env-file",
    "--ansi",
    "--progress",
    "--profile",
    "--parallel",
];

/// Options of the subcommands that take a value.
const SUB_VALUED: &[&str] = &[
    "--format",
    "-t",
    "--timeout",
    "--pull",
    "--wait-timeout",
    "--rmi",
    "--filter",
    "--status",
    "--tail",
];

/// The global options before the subcommand, and the subcommand's index: compose's own
/// flags (`-f FILE`) come first, and a value may follow its flag or be joined with `=`.
fn global_args(args: &[String]) -> (Vec<String>, usize) {
    let mut i = 0;
    let mut g: Vec<String> = Vec::new();
    while i < args.len() && args[i].starts_with('-') {
        g.push(args[i].clone());
        let flag = args[i].split('=').next().unwrap_or("");
        if GLOBAL.contains(&flag) && !args[i].contains('=') {
            if let Some(v) = args.get(i + 1) {
                g.push(v.clone());
            }
            i += 1;
        }
        i += 1;
    }
    (g, i)
}

fn run(h: &Path, args: &[String], prog: &str) -> Result<i32, String> {
    let (g, i) = global_args(args);
    let go = opts::parse(&g, GLOBAL, true)?;
    let sub = args.get(i).cloned();
    if go.has(&["-v", "--version"]) || sub.as_deref() == Some("version") {
        println!("Docker Compose version v2.21.0");
        return Ok(0);
    }
    let Some(sub) = sub else {
        println!("Usage:  {prog} [OPTIONS] COMMAND\n\nDefine and run multi-container applications with Docker.");
        return Ok(0);
    };
    let proj = load_project(
        &go.all(&["-f", "--file"]),
        go.get(&["--project-directory"]).as_deref(),
        go.get(&["-p", "--project-name"]),
        go.get(&["--env-file"]),
    )?;
    let o = opts::parse(&args[i + 1..], SUB_VALUED, true)?;
    if let Some(unknown) = o
        .pos
        .iter()
        .find(|p| !proj.services.iter().any(|s| &s.name == *p))
    {
        eprintln!("no such service: {unknown}");
        return Ok(1);
    }
    let selected: Vec<&Service> = proj
        .services
        .iter()
        .filter(|s| o.pos.is_empty() || o.pos.contains(&s.name))
        .collect();
    match sub.as_str() {
        "up" => up(h, &proj, &selected, &o),
        "down" => down(h, &proj, o.has(&["-v", "--volumes"])),
        "stop" | "start" | "restart" => start_stop(h, &sub, &selected),
        "rm" => rm(h, &selected, o.has(&["-s", "--stop"])),
        "ps" => crate::composeps::ps(h, &proj, &selected, &o),
        "pull" => state::with_state(h, |st| {
            for s in &selected {
                let rc = ImageRef::parse(&s.spec.image)
                    .map_or_else(|e| daemon_err(&e), |r| pull(st, s, &r));
                if rc != 0 {
                    return rc;
                }
            }
            0
        }),
        "config" => {
            config(&proj, &selected, &o);
            Ok(0)
        }
        "logs" => Ok(0),
        other => {
            eprintln!("unknown docker command: \"compose {other}\"");
            Ok(1)
        }
    }
}

/// `rm`: stopped containers only, unless `--stop` stops them first.
fn rm(h: &Path, selected: &[&Service], stop: bool) -> Result<i32, String> {
    state::with_state(h, |st| {
        for s in selected {
            if let Some(i) = st.container_idx(&s.container) {
                if stop {
                    stop_container(st, i, false);
                }
                if st.containers[i].status != "running" {
                    status(&format!("Container {}  Removed", st.containers[i].name));
                    st.containers.remove(i);
                }
            }
        }
        0
    })
}

/// Pull one service's image, with compose's progress lines; the exit code.
fn pull(st: &mut HostState, s: &Service, r: &ImageRef) -> i32 {
    status(&format!("{} Pulling", s.name));
    if let Err(e) = do_pull(st, r, true, true) {
        status(&format!("{} Error {e}", s.name));
        return daemon_err(&e);
    }
    status(&format!("{} Pulled", s.name));
    0
}

fn config(proj: &Project, selected: &[&Service], o: &opts::Opts) {
    if o.has(&["--images"]) {
        selected.iter().for_each(|s| println!("{}", s.spec.image));
    } else if o.has(&["--services"]) {
        selected.iter().for_each(|s| println!("{}", s.name));
    } else {
        println!("name: {}\nservices:", proj.name);
        for s in selected {
            println!(
                "  {}:\n    container_name: {}\n    image: {}",
                s.name, s.container, s.spec.image
            );
        }
        println!("networks:");
        for (k, real, _) in &proj.networks {
            println!("  {k}:\n    name: {real}");
        }
    }
}

fn start_stop(h: &Path, sub: &str, selected: &[&Service]) -> Result<i32, String> {
    state::with_state(h, |st| {
        for s in selected {
            let Some(i) = st.container_idx(&s.container) else {
                continue;
            };
            if sub != "start" && st.containers[i].status == "running" {
                status(&format!("Container {}  Stopping", s.container));
                stop_container(st, i, false);
                status(&format!("Container {}  Stopped", s.container));
            }
            if sub != "stop" && st.containers[i].status != "running" {
                status(&format!("Container {}  Starting", s.container));
                if let Err(e) = crate::run::start(st, i, h) {
                    return daemon_err(&e);
                }
                status(&format!("Container {}  Started", s.container));
            }
        }
        0
    })
}

/// The services to bring up, dependencies first.
fn order<'a>(proj: &'a Project, selected: &[&'a Service]) -> Vec<&'a Service> {
    let mut out: Vec<&Service> = Vec::new();
    fn visit<'a>(p: &'a Project, s: &'a Service, out: &mut Vec<&'a Service>, depth: u32) {
        if out.iter().any(|x| x.name == s.name) || depth > 32 {
            return;
        }
        for (d, _) in &s.deps {
            if let Some(ds) = p.services.iter().find(|x| &x.name == d) {
                visit(p, ds, out, depth + 1);
            }
        }
        out.push(s);
    }
    for s in selected {
        visit(proj, s, &mut out, 0);
    }
    out
}

fn labels(proj: &Project, s: &Service, image_id: &str, oneoff: bool) -> BTreeMap<String, String> {
    let files: Vec<String> = proj
        .files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    [
        ("com.docker.compose.project", proj.name.clone()),
        (
            "com.docker.compose.project.working_dir",
            proj.dir.to_string_lossy().into_owned(),
        ),
        ("com.docker.compose.project.config_files", files.join(",")),
        ("com.docker.compose.service", s.name.clone()),
        ("com.docker.compose.container-number", "1".into()),
        (
            "com.docker.compose.oneoff",
            if oneoff { "True" } else { "False" }.into(),
        ),
        ("com.docker.compose.version", "2.21.0".into()),
        ("com.docker.compose.config-hash", s.hash.clone()),
        ("com.docker.compose.image", format!("sha256:{image_id}")),
        (
            "com.docker.compose.depends_on",
            s.deps
                .iter()
                .map(|(d, c)| format!("{d}:{c}:false"))
                .collect::<Vec<_>>()
                .join(","),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn up(h: &Path, proj: &Project, selected: &[&Service], o: &opts::Opts) -> Result<i32, String> {
    let detach = o.has(&["-d", "--detach"]);
    let force = o.has(&["--force-recreate"]);
    // `--no-deps`: the named services only, not what they depend on.
    let todo = match o.has(&["--no-deps"]) {
        true if !selected.is_empty() => selected.to_vec(),
        _ => order(proj, selected),
    };
    let rc = state::with_state(h, |st| up_in(st, h, proj, &todo, force))?;
    if rc != 0 || detach {
        return Ok(rc);
    }
    // Attached `up` runs until its containers have all exited (one-shot services such as
    // springcomp's migration), or until interrupted, as the real one does; then it stops them.
    println!(
        "Attaching to {}",
        todo.iter()
            .map(|s| s.container.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sig = loop {
        let st = state::load(h)?;
        let exited: Vec<(String, i32)> = todo
            .iter()
            .filter_map(|s| st.container(&s.container))
            .filter(|c| c.status != "running")
            .map(|c| (c.name.clone(), c.exit_code))
            .collect();
        if exited.len() == todo.len() {
            for (name, code) in exited {
                println!("{name} exited with code {code}");
            }
            return Ok(0);
        }
        if let Some(s) = crate::faults::wait_signal(Some(0.1)) {
            break s;
        }
    };
    eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
    state::with_state(h, |st| {
        for s in &todo {
            if let Some(i) = st.container_idx(&s.container) {
                stop_container(st, i, false);
            }
        }
    })?;
    Ok(128 + sig)
}

/// `up -d` of every given service, for provisioning.
pub fn up_quiet(st: &mut HostState, h: &Path, proj: &Project, selected: &[&Service]) -> i32 {
    let todo = order(proj, selected);
    up_in(st, h, proj, &todo, false)
}

fn up_in(st: &mut HostState, h: &Path, proj: &Project, todo: &[&Service], force: bool) -> i32 {
    let mut refs = Vec::new();
    for s in todo {
        match ImageRef::parse(&s.spec.image) {
            Ok(r) => refs.push(r),
            Err(e) => {
                eprintln!(
                    "Error response from daemon: {e}: \"{}\" (service {})",
                    s.spec.image, s.name
                );
                return 1;
            }
        }
    }
    // Compose pulls what is missing before it touches any container.
    for (s, r) in todo.iter().zip(&refs) {
        if st.image(r).is_none() {
            let rc = pull(st, s, r);
            if rc != 0 {
                return rc;
            }
        }
    }
    for (k, real, ext) in &proj.networks {
        if st.network(real).is_none() {
            if *ext {
                eprintln!("network {real} declared as external, but could not be found");
                return 1;
            }
            let l: BTreeMap<String, String> = [
                ("com.docker.compose.network", k.clone()),
                ("com.docker.compose.project", proj.name.clone()),
                ("com.docker.compose.version", "2.21.0".into()),
            ]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b))
            .collect();
            st.add_network(real, l);
            status(&format!("Network {real}  Created"));
        }
    }
    for (_, real) in &proj.volumes {
        if !st.volumes.iter().any(|v| &v.name == real) {
            st.volumes.push(state::Volume {
                name: real.clone(),
                labels: [("com.docker.compose.project".to_string(), proj.name.clone())]
                    .into_iter()
                    .collect(),
            });
            status(&format!("Volume \"{real}\"  Created"));
        }
    }
    for (s, r) in todo.iter().zip(&refs) {
        let rc = up_one(st, h, proj, s, r, force);
        if rc != 0 {
            return rc;
        }
    }
    0
}

/// What `up` waits for before it starts a service: each dependency that must complete
/// has, and each that must be healthy is (compose waits while it is starting).
fn dependencies_met(st: &HostState, proj: &Project, s: &Service) -> Result<(), String> {
    for (d, cond) in &s.deps {
        let dep = proj.services.iter().find(|x| &x.name == d);
        let Some(c) = dep.and_then(|ds| st.container(&ds.container)) else {
            continue;
        };
        match cond.as_str() {
            "service_completed_successfully" if c.status != "exited" || c.exit_code != 0 => {
                return Err(format!(
                    "service \"{d}\" didn't complete successfully: exit {}",
                    c.exit_code
                ));
            }
            "service_healthy" => wait_healthy(st, c)?,
            _ => {}
        }
    }
    Ok(())
}

fn wait_healthy(st: &HostState, c: &crate::state::Container) -> Result<(), String> {
    use crate::health::Status;
    let failed = |why: &str| {
        Err(format!(
            "dependency failed to start: container {} {why}",
            c.name
        ))
    };
    match crate::inspect::health(st, c) {
        Some(Status::Healthy) => Ok(()),
        Some(Status::Starting) => {
            let ready = c.healthcheck.as_ref().map(|h| h.healthy_at(c.started));
            util::sleep_secs(ready.unwrap_or(0.0) - util::now());
            Ok(())
        }
        Some(Status::Unhealthy) => failed("is unhealthy"),
        None => failed("has no healthcheck configured"),
    }
}

fn up_one(
    st: &mut HostState,
    h: &Path,
    proj: &Project,
    s: &Service,
    r: &ImageRef,
    force: bool,
) -> i32 {
    let img = st.add_image(r);
    if let Err(e) = dependencies_met(st, proj, s) {
        eprintln!("{e}");
        return 1;
    }
    let labels = labels(proj, s, &img.id, false);
    if let Some(i) = st.container_idx(&s.container) {
        let c = &st.containers[i];
        if c.project() != Some(proj.name.as_str()) {
            return daemon_err(&format!("Conflict. The container name \"/{}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.", s.container, c.id));
        }
        let same = c.image_id == img.id
            && c.label("com.docker.compose.config-hash") == Some(s.hash.as_str());
        if same && !force && c.status == "running" {
            status(&format!("Container {}  Running", s.container));
            return 0;
        }
        if !same || force {
            status(&format!("Container {}  Recreate", s.container));
            stop_container(st, i, false);
            st.containers.remove(i);
            status(&format!("Container {}  Recreated", s.container));
        }
    } else {
        status(&format!("Container {}  Creating", s.container));
    }
    let i = match st.container_idx(&s.container) {
        Some(i) => i,
        None => match crate::run::build(st, &s.spec, &labels) {
            Ok(c) => {
                st.containers.push(c);
                status(&format!("Container {}  Created", s.container));
                st.containers.len() - 1
            }
            Err(e) => return daemon_err(&e),
        },
    };
    status(&format!("Container {}  Starting", s.container));
    if state::is_service_cmd(&crate::run::argv(&st.containers[i])) {
        if let Err(e) = crate::run::start(st, i, h) {
            return daemon_err(&e);
        }
        status(&format!("Container {}  Started", s.container));
        return 0;
    }
    oneshot(st, i, h);
    status(&format!("Container {}  Exited", s.container));
    0
}

/// A one-shot service (migration, init) runs to its end before its dependents start.
fn oneshot(st: &mut HostState, i: usize, h: &Path) {
    let c = st.containers[i].clone();
    let entry = crate::log::start(h, "container", &crate::run::argv(&c).join(" "));
    let mut o = crate::app::Out::default();
    let rc = crate::app::run_oneshot(st, &c, &mut o);
    let dir = crate::run::out_dir(h, &c.id);
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("stdout"), &o.out);
    let _ = std::fs::write(dir.join("stderr"), &o.err);
    let now = util::now();
    let x = &mut st.containers[i];
    x.status = "exited".into();
    x.exit_code = rc;
    x.started = now;
    x.finished = now;
    entry.end_rc(rc);
}

fn down(h: &Path, proj: &Project, volumes: bool) -> Result<i32, String> {
    state::with_state(h, |st| {
        let names: Vec<String> = st
            .containers
            .iter()
            .filter(|c| c.project() == Some(proj.name.as_str()))
            .map(|c| c.name.clone())
            .collect();
        for n in &names {
            if let Some(i) = st.container_idx(n) {
                status(&format!("Container {n}  Stopping"));
                stop_container(st, i, false);
                status(&format!("Container {n}  Stopped"));
                status(&format!("Container {n}  Removing"));
                st.containers.remove(i);
                status(&format!("Container {n}  Removed"));
            }
        }
        for (_, real, ext) in &proj.networks {
            let Some(net) = st.network(real).cloned() else {
                continue;
            };
            if *ext {
                continue;
            }
            status(&format!("Network {real}  Removing"));
            if st
                .containers
                .iter()
                .any(|c| c.on_network(real) && c.status == "running")
            {
                status(&format!("Network {real}  Error"));
                return daemon_err(&format!(
                    "error while removing network: network {real} id {} has active endpoints",
                    net.id
                ));
            }
            st.networks.retain(|n| &n.name != real);
            status(&format!("Network {real}  Removed"));
        }
        if volumes {
            for (_, real) in &proj.volumes {
                st.volumes.retain(|v| &v.name != real);
                status(&format!("Volume {real}  Removed"));
            }
        }
        0
    })
}
