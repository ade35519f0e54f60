//! `docker compose` / `docker-compose`: reads the real compose file and `.env` of the
//! project directory (an `SL_VERSION` in the environment wins, as in real compose) and
//! drives the same simulated containers as the docker shim.

use crate::docker::{daemon_err, do_pull};
use crate::format::{render_list, tabulate};
use crate::opts;
use crate::state::{self, HostState, ImageRef};
use crate::util::{self, human_ago};
use serde_json::json;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

struct Service {
    name: String,
    container: String,
    image: String,
    ports: Vec<String>,
}

struct Project {
    name: String,
    network: String,
    services: Vec<Service>,
}

pub fn main(h: &Path, args: &[String], prog: &str) -> i32 {
    match run(h, args, prog) {
        Ok(rc) => rc,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

fn read_env_file(p: &Path) -> HashMap<String, String> {
    let mut m = HashMap::new();
    if let Ok(s) = fs::read_to_string(p) {
        for line in s.lines() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let l = l.strip_prefix("export ").unwrap_or(l);
            if let Some((k, v)) = l.split_once('=') {
                let v = v.trim();
                let v = v
                    .strip_prefix('"')
                    .and_then(|x| x.strip_suffix('"'))
                    .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
                    .unwrap_or(v);
                m.insert(k.trim().to_string(), v.to_string());
            }
        }
    }
    m
}

/// Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR, $$.
fn interpolate(s: &str, env: &HashMap<String, String>, warned: &mut Vec<String>) -> String {
    let mut out = String::new();
    let b: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut lookup = |name: &str, default: Option<(&str, bool)>, out: &mut String| {
        let v = std::env::var(name).ok().or_else(|| env.get(name).cloned());
        match (v, default) {
            (Some(v), Some((d, true))) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some((d, _))) => out.push_str(d),
            (None, None) => {
                if !warned.iter().any(|w| w == name) {
                    eprintln!("WARN[0000] The \"{name}\" variable is not set. Defaulting to a blank string.");
                    warned.push(name.to_string());
                }
            }
        }
    };
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            if b[i + 1] == '$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == '{' {
                if let Some(end) = b[i + 2..].iter().position(|&c| c == '}') {
                    let inner: String = b[i + 2..i + 2 + end].iter().collect();
                    if let Some((n, d)) = inner.split_once(":-") {
                        lookup(n, Some((d, true)), &mut out);
                    } else if let Some((n, d)) = inner.split_once('-') {
                        lookup(n, Some((d, false)), &mut out);
                    } else {
                        lookup(&inner, None, &mut out);
                    }
                    i += 3 + end;
                    continue;
                }
            }
            let start = i + 1;
            let mut j = start;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == '_') {
                j += 1;
            }
            if j > start {
                let name: String = b[start..j].iter().collect();
                lookup(&name, None, &mut out);
                i = j;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn load_project(
    files: &[String],
    project_dir: Option<&str>,
    pname: Option<String>,
    env_file: Option<String>,
) -> Result<Project, String> {
    let cwd =
        std::env::current_dir().map_err(|e| format!("cannot read the current directory: {e}"))?;
    let file: PathBuf = match files.first() {
        Some(f) => {
            let p = cwd.join(f);
            if !p.exists() {
                return Err(format!("open {}: no such file or directory", p.display()));
            }
            p
        }
        None => {
            let dir = project_dir
                .map(|d| cwd.join(d))
                .unwrap_or_else(|| cwd.clone());
            [
                "compose.yaml",
                "compose.yml",
                "docker-compose.yml",
                "docker-compose.yaml",
            ]
            .iter()
            .map(|n| dir.join(n))
            .find(|p| p.exists())
            .ok_or("no configuration file provided: not found")?
        }
    };
    let dir = match project_dir {
        Some(d) => cwd.join(d),
        None => file.parent().map(Path::to_path_buf).unwrap_or(cwd),
    };
    let env = read_env_file(
        &env_file
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join(".env")),
    );
    let text = fs::read_to_string(&file).map_err(|e| format!("open {}: {e}", file.display()))?;
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| format!("yaml: {e}"))?;
    let mut warned = Vec::new();
    let raw_name = pname
        .or_else(|| std::env::var("COMPOSE_PROJECT_NAME").ok())
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").cloned())
        .or_else(|| doc.get("name").and_then(|v| v.as_str()).map(str::to_string))
        .unwrap_or_else(|| {
            dir.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
    let name: String = raw_name
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let network = doc
        .get("networks")
        .and_then(|n| n.get("default"))
        .and_then(|d| d.get("name"))
        .and_then(|v| v.as_str())
        .map(|s| interpolate(s, &env, &mut warned))
        .unwrap_or_else(|| format!("{name}_default"));
    let mut services = Vec::new();
    if let Some(m) = doc.get("services").and_then(|s| s.as_mapping()) {
        for (k, v) in m {
            let svc = k.as_str().unwrap_or_default().to_string();
            let image = v.get("image").and_then(|i| i.as_str()).unwrap_or_default();
            let image = interpolate(image, &env, &mut warned);
            let container = v
                .get("container_name")
                .and_then(|c| c.as_str())
                .map(|c| interpolate(c, &env, &mut warned))
                .unwrap_or_else(|| format!("{name}-{svc}-1"));
            let ports = v
                .get("ports")
                .and_then(|p| p.as_sequence())
                .map(|s| {
                    s.iter()
                        .filter_map(|p| p.as_str())
                        .map(|p| format!("{p}/tcp").replacen(':', "->", 1))
                        .collect()
                })
                .unwrap_or_default();
            let ports = fix_ports(ports);
            services.push(Service {
                name: svc,
                container,
                image,
                ports,
            });
        }
    }
    Ok(Project {
        name,
        network,
        services,
    })
}

/// "127.0.0.1:7777:7777" → "127.0.0.1:7777->7777/tcp", as docker ps shows it.
fn fix_ports(ps: Vec<String>) -> Vec<String> {
    ps.into_iter()
        .map(|p| {
            let body = p.trim_end_matches("/tcp").replacen("->", ":", 1);
            let parts: Vec<&str> = body.split(':').collect();
            match parts.as_slice() {
                [ip, h, c] => format!("{ip}:{h}->{c}/tcp"),
                [h, c] => format!("0.0.0.0:{h}->{c}/tcp"),
                _ => format!("{body}/tcp"),
            }
        })
        .collect()
}

fn status(msg: &str) {
    eprintln!(" {msg}");
}

fn run(h: &Path, args: &[String], prog: &str) -> Result<i32, String> {
    let global = [
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
    // Global options come before the subcommand; parse up to it.
    let mut i = 0;
    let mut g: Vec<String> = Vec::new();
    while i < args.len() && args[i].starts_with('-') {
        g.push(args[i].clone());
        let flag = args[i].split('=').next().unwrap_or("");
        if global.contains(&flag) && !args[i].contains('=') {
            if let Some(v) = args.get(i + 1) {
                g.push(v.clone());
            }
            i += 1;
        }
        i += 1;
    }
    let go = opts::parse(&g, &global, true)?;
    if go.has(&["-v", "--version"]) {
        println!("Docker Compose version v2.21.0");
        return Ok(0);
    }
    let Some(sub) = args.get(i).cloned() else {
        println!("Usage:  {prog} [OPTIONS] COMMAND\n\nDefine and run multi-container applications with Docker.");
        return Ok(0);
    };
    let rest = &args[i + 1..];
    if sub == "version" {
        println!("Docker Compose version v2.21.0");
        return Ok(0);
    }
    let proj = load_project(
        &go.all(&["-f", "--file"]),
        go.get(&["--project-directory"]).as_deref(),
        go.get(&["-p", "--project-name"]),
        go.get(&["--env-file"]),
    )?;
    let o = opts::parse(
        rest,
        &[
            "--format",
            "-t",
            "--timeout",
            "--pull",
            "--wait-timeout",
            "--rmi",
            "--filter",
            "--status",
            "--tail",
        ],
        true,
    )?;
    let selected: Vec<&Service> = proj
        .services
        .iter()
        .filter(|s| o.pos.is_empty() || o.pos.contains(&s.name))
        .collect();
    if let Some(unknown) = o
        .pos
        .iter()
        .find(|p| !proj.services.iter().any(|s| &s.name == *p))
    {
        if !["ps", "logs"].contains(&sub.as_str()) || !unknown.is_empty() {
            eprintln!("no such service: {unknown}");
            return Ok(1);
        }
    }
    match sub.as_str() {
        "up" => up(h, &proj, &selected, &o),
        "down" => down(h, &proj),
        "stop" | "start" | "restart" => state::with_state(h, |st| {
            for s in &selected {
                if let Some(i) = st.container_idx(&s.container) {
                    let c = &mut st.containers[i];
                    let cap = |w: &str| format!("{}{}", w[..1].to_uppercase(), &w[1..]);
                    if sub != "stop" || c.status == "running" {
                        if sub != "start" {
                            status(&format!("Container {}  Stopping", c.name));
                            c.status = "exited".into();
                            c.exit_code = 0;
                            c.finished = util::now();
                            status(&format!("Container {}  Stopped", c.name));
                        }
                        if sub != "stop" {
                            status(&format!("Container {}  {}ing", c.name, cap("start")));
                            c.status = "running".into();
                            c.started = util::now();
                            status(&format!("Container {}  Started", c.name));
                        }
                    }
                }
            }
            0
        }),
        "rm" => state::with_state(h, |st| {
            for s in &selected {
                if let Some(i) = st.container_idx(&s.container) {
                    if st.containers[i].status != "running" || o.has(&["-s", "--stop"]) {
                        status(&format!("Container {}  Removed", st.containers[i].name));
                        st.containers.remove(i);
                    }
                }
            }
            0
        }),
        "ps" => ps(h, &proj, &selected, &o),
        "pull" => state::with_state(h, |st| {
            for s in &selected {
                let r = match ImageRef::parse(&s.image) {
                    Ok(r) => r,
                    Err(e) => return daemon_err(&e),
                };
                status(&format!("{} Pulling", s.name));
                if let Err(e) = do_pull(st, &r, true, true) {
                    status(&format!("{} Error {e}", s.name));
                    return daemon_err(&e);
                }
                status(&format!("{} Pulled", s.name));
            }
            0
        }),
        "config" => {
            if o.has(&["--images"]) {
                for s in &selected {
                    println!("{}", s.image);
                }
            } else if o.has(&["--services"]) {
                for s in &selected {
                    println!("{}", s.name);
                }
            } else {
                println!("name: {}\nservices:", proj.name);
                for s in &selected {
                    println!(
                        "  {}:\n    container_name: {}\n    image: {}",
                        s.name, s.container, s.image
                    );
                }
                println!("networks:\n  default:\n    name: {}", proj.network);
            }
            Ok(0)
        }
        "logs" => Ok(0),
        other => {
            eprintln!("unknown docker command: \"compose {other}\"");
            Ok(1)
        }
    }
}

fn up(h: &Path, proj: &Project, selected: &[&Service], o: &opts::Opts) -> Result<i32, String> {
    let detach = o.has(&["-d", "--detach"]);
    let force = o.has(&["--force-recreate"]);
    let rc = state::with_state(h, |st: &mut HostState| {
        let mut refs = Vec::new();
        for s in selected {
            match ImageRef::parse(&s.image) {
                Ok(r) => refs.push(r),
                Err(e) => {
                    eprintln!(
                        "Error response from daemon: {e}: \"{}\" (service {})",
                        s.image, s.name
                    );
                    return 1;
                }
            }
        }
        // Compose pulls what is missing before it touches any container.
        for (s, r) in selected.iter().zip(&refs) {
            if st.image(r).is_none() {
                status(&format!("{} Pulling", s.name));
                if let Err(e) = do_pull(st, r, true, true) {
                    status(&format!("{} Error {e}", s.name));
                    return daemon_err(&e);
                }
                status(&format!("{} Pulled", s.name));
            }
        }
        if !st.networks.contains(&proj.network) {
            st.networks.push(proj.network.clone());
            status(&format!("Network {}  Created", proj.network));
        }
        for (s, r) in selected.iter().zip(&refs) {
            let img = st.add_image(r);
            let now = util::now();
            let idx = st.container_idx(&s.container);
            if let Some(i) = idx {
                let c = &st.containers[i];
                if c.compose_project.as_deref() != Some(proj.name.as_str()) {
                    return daemon_err(&format!(
                        "Conflict. The container name \"/{}\" is already in use by container \"{}\". You have to remove (or rename) that container to be able to reuse that name.",
                        s.container, c.id
                    ));
                }
                if c.image == s.image && c.image_id == img.id && !force {
                    if c.status == "running" {
                        status(&format!("Container {}  Running", s.container));
                    } else {
                        status(&format!("Container {}  Starting", s.container));
                        let c = &mut st.containers[i];
                        c.status = "running".into();
                        c.started = now;
                        c.pid = std::process::id();
                        status(&format!("Container {}  Started", s.container));
                    }
                    continue;
                }
                status(&format!("Container {}  Recreate", s.container));
                st.containers.remove(i);
                status(&format!("Container {}  Recreated", s.container));
            } else {
                status(&format!("Container {}  Creating", s.container));
                status(&format!("Container {}  Created", s.container));
            }
            let mut c = state::new_container(
                &s.container,
                &s.image,
                &img.id,
                state::default_cmd(&s.name, &s.image),
            );
            c.network = Some(proj.network.clone());
            c.compose_project = Some(proj.name.clone());
            c.compose_service = Some(s.name.clone());
            c.ports = s.ports.clone();
            status(&format!("Container {}  Starting", s.container));
            c.status = "running".into();
            c.started = now;
            c.pid = std::process::id();
            st.containers.push(c);
            status(&format!("Container {}  Started", s.container));
        }
        0
    })?;
    if rc != 0 || detach {
        return Ok(rc);
    }
    // Attached `up` runs until interrupted, as the real one does; then it stops the project.
    println!(
        "Attaching to {}",
        selected
            .iter()
            .map(|s| s.container.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let sig = loop {
        if let Some(s) = crate::faults::wait_signal(None) {
            break s;
        }
    };
    eprintln!("Gracefully stopping... (press Ctrl+C again to force)");
    state::with_state(h, |st| {
        for s in selected {
            if let Some(i) = st.container_idx(&s.container) {
                st.containers[i].status = "exited".into();
                st.containers[i].finished = util::now();
            }
        }
    })?;
    Ok(128 + sig)
}

fn down(h: &Path, proj: &Project) -> Result<i32, String> {
    state::with_state(h, |st| {
        let names: Vec<String> = st
            .containers
            .iter()
            .filter(|c| c.compose_project.as_deref() == Some(proj.name.as_str()))
            .map(|c| c.name.clone())
            .collect();
        for n in &names {
            status(&format!("Container {n}  Stopping"));
            status(&format!("Container {n}  Stopped"));
            status(&format!("Container {n}  Removing"));
            st.containers.retain(|c| &c.name != n);
            status(&format!("Container {n}  Removed"));
        }
        if st.networks.contains(&proj.network) {
            status(&format!("Network {}  Removing", proj.network));
            let busy = st
                .containers
                .iter()
                .any(|c| c.network.as_ref() == Some(&proj.network) && c.status == "running");
            if busy {
                status(&format!("Network {}  Error", proj.network));
                return daemon_err(&format!(
                    "error while removing network: network {} id {} has active endpoints",
                    proj.network,
                    util::hex_id(&proj.network)
                ));
            }
            st.networks.retain(|n| n != &proj.network);
            status(&format!("Network {}  Removed", proj.network));
        }
        0
    })
}

fn ps(h: &Path, proj: &Project, selected: &[&Service], o: &opts::Opts) -> Result<i32, String> {
    let st = state::load(h)?;
    if o.has(&["--services"]) {
        for s in selected {
            println!("{}", s.name);
        }
        return Ok(0);
    }
    let all = o.has(&["-a", "--all"]);
    let now = util::now();
    let mut rows = Vec::new();
    for s in selected {
        let Some(c) = st.container(&s.container) else {
            continue;
        };
        if c.compose_project.as_deref() != Some(proj.name.as_str())
            || (!all && c.status != "running")
        {
            continue;
        }
        let crashing = st.app_container_crashing(c);
        let (state_s, status_s) = match (c.status.as_str(), crashing) {
            ("running", true) => ("restarting", "Restarting (1) 2 seconds ago".to_string()),
            ("running", false) => ("running", format!("Up {}", human_ago(now - c.started))),
            ("exited", _) => (
                "exited",
                format!(
                    "Exited ({}) {} ago",
                    c.exit_code,
                    human_ago(now - c.finished)
                ),
            ),
            _ => ("created", "Created".to_string()),
        };
        rows.push(json!({
            "ID": &c.id[..12], "Name": c.name, "Names": c.name, "Image": c.image, "Service": s.name,
            "Command": format!("\"{}\"", c.cmd.join(" ")), "Project": proj.name,
            "CreatedAt": util::rfc3339(c.created), "RunningFor": format!("{} ago", human_ago(now - c.created)),
            "State": state_s, "Status": status_s, "Ports": c.ports.join(", "), "Health": "", "ExitCode": c.exit_code,
        }));
    }
    if o.has(&["-q", "--quiet"]) {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or(""));
        }
        return Ok(0);
    }
    match o.get(&["--format"]).as_deref() {
        Some("json") => {
            println!("{}", serde_json::Value::Array(rows));
            Ok(0)
        }
        Some(f) => match render_list(f, &rows) {
            Ok(s) => {
                print!("{s}");
                Ok(0)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(1)
            }
        },
        None => {
            let keys = [
                "Name",
                "Image",
                "Command",
                "Service",
                "RunningFor",
                "Status",
                "Ports",
            ];
            let mut lines = vec![[
                "NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()];
            for r in &rows {
                lines.push(
                    keys.iter()
                        .map(|k| r[*k].as_str().unwrap_or("").to_string())
                        .collect(),
                );
            }
            print!("{}", tabulate(&lines));
            Ok(0)
        }
    }
}
