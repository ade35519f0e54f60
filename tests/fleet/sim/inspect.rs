//! `docker inspect` (containers and images) as docker 24 prints it.

use crate::health::Healthcheck;
use crate::releases::{image_config, ImageRef};
use crate::state::{Container, HostState, Image, Mount};
use crate::util::{self, rfc3339};
use serde_json::{json, Map, Value};

/// docker's view of a container's state, including the crash loop.
pub struct View {
    pub status: &'static str,
    pub restarting: bool,
}

pub fn view(st: &HostState, c: &Container) -> View {
    if st.crashing(c) {
        return View {
            status: "restarting",
            restarting: true,
        };
    }
    View {
        status: match c.status.as_str() {
            "running" => "running",
            "exited" => "exited",
            _ => "created",
        },
        restarting: false,
    }
}

fn port_map(c: &Container) -> (Value, Value) {
    let mut bindings = Map::new();
    let mut ports = Map::new();
    for e in &c.exposed {
        ports.insert(e.clone(), Value::Null);
    }
    for p in &c.ports {
        let b = json!({"HostIp": p.host_ip, "HostPort": p.host_port});
        bindings
            .entry(p.container.clone())
            .or_insert_with(|| json!([]))
            .as_array_mut()
            .into_iter()
            .for_each(|a| a.push(b.clone()));
        let shown = json!({"HostIp": if p.host_ip.is_empty() { "0.0.0.0" } else { &p.host_ip }, "HostPort": p.host_port});
        let e = ports.entry(p.container.clone()).or_insert(Value::Null);
        if e.is_null() {
            *e = json!([]);
        }
        if let Some(a) = e.as_array_mut() {
            a.push(shown);
        }
    }
    (Value::Object(bindings), Value::Object(ports))
}

fn networks(st: &HostState, c: &Container) -> Value {
    let mut nets = Map::new();
    let running = c.status == "running";
    for e in &c.endpoints {
        let net = st.network(&e.network);
        let ip = if running { e.ip.clone() } else { String::new() };
        let gw = net
            .map(|n| format!("172.{}.0.1", n.subnet))
            .filter(|_| running)
            .unwrap_or_default();
        let mac = if running {
            let o: Vec<u8> = ip.split('.').filter_map(|x| x.parse().ok()).collect();
            format!(
                "02:42:{}",
                o.iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            )
        } else {
            String::new()
        };
        nets.insert(e.network.clone(), json!({
            "IPAMConfig": e.fixed_ip.as_ref().map(|ip| json!({"IPv4Address": ip})), "Links": null,
            "Aliases": if e.aliases.is_empty() { Value::Null } else { json!(e.aliases) },
            "NetworkID": net.map(|n| n.id.clone()).unwrap_or_default(),
            "EndpointID": if running { util::hex_id(&format!("ep-{}-{}", c.id, e.network)) } else { String::new() },
            "Gateway": gw, "IPAddress": ip, "IPPrefixLen": if running { 16 } else { 0 },
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "MacAddress": mac, "DriverOpts": null,
        }));
    }
    Value::Object(nets)
}

/// The container's mounts in the order the daemon lists them. It keeps them in a Go map
/// (moby's `Container.GetMountPoints`, until moby#53534 sorted them in September 2026), and
/// Go starts reading a map at a random place each time: two inspects of an unchanged
/// container list its mounts in different orders (here, a random rotation of one order).
pub fn listed_mounts(c: &Container) -> Vec<&Mount> {
    use std::hash::BuildHasher;
    let start = match c.mounts.len() {
        0 => 0,
        n => (std::collections::hash_map::RandomState::new().hash_one(()) % n as u64) as usize,
    };
    c.mounts[start..].iter().chain(&c.mounts[..start]).collect()
}

fn mounts(c: &Container) -> Vec<Value> {
    listed_mounts(c)
        .into_iter()
        .map(|m| {
            if m.kind == "bind" {
                json!({"Type": "bind", "Source": m.source, "Destination": m.target, "Mode": "", "RW": m.rw, "Propagation": "rprivate"})
            } else {
                json!({"Type": "volume", "Name": m.source, "Source": format!("/var/lib/docker/volumes/{}/_data", m.source),
                       "Destination": m.target, "Driver": "local", "Mode": "z", "RW": m.rw, "Propagation": ""})
            }
        })
        .collect()
}

pub fn container_json(st: &HostState, c: &Container) -> Value {
    let v = view(st, c);
    let (bindings, ports) = port_map(c);
    let argv = crate::run::argv(c);
    let full: Vec<String> = c
        .entrypoint
        .clone()
        .unwrap_or_default()
        .into_iter()
        .chain(c.cmd.iter().cloned())
        .collect();
    let _ = argv;
    let running = c.status == "running";
    let mut exposed = Map::new();
    for e in &c.exposed {
        exposed.insert(e.clone(), json!({}));
    }
    let mut inspected = json!({
        "Id": c.id, "Created": rfc3339(c.created),
        "Path": full.first().cloned().unwrap_or_default(),
        "Args": full.iter().skip(1).cloned().collect::<Vec<_>>(),
        "State": {
            "Status": v.status, "Running": running, "Paused": false, "Restarting": v.restarting,
            "OOMKilled": false, "Dead": false, "Pid": if running && !v.restarting { c.pid } else { 0 },
            "ExitCode": if v.restarting { 1 } else { c.exit_code }, "Error": "",
            "StartedAt": rfc3339(c.started), "FinishedAt": rfc3339(c.finished),
        },
        "Image": format!("sha256:{}", c.image_id),
        "ResolvConfPath": format!("/var/lib/docker/containers/{}/resolv.conf", c.id),
        "HostnamePath": format!("/var/lib/docker/containers/{}/hostname", c.id),
        "LogPath": format!("/var/lib/docker/containers/{}/{}-json.log", c.id, c.id),
        "Name": format!("/{}", c.name), "RestartCount": c.restart_count(), "Driver": "overlay2", "Platform": "linux", "ExecIDs": null,
        "HostConfig": {
            "Binds": if c.binds.is_empty() { Value::Null } else { json!(c.binds) },
            "NetworkMode": c.network_mode, "PortBindings": bindings,
            "RestartPolicy": {"Name": c.restart, "MaximumRetryCount": c.restart_max},
            "AutoRemove": c.auto_remove, "VolumeDriver": "", "VolumesFrom": null,
            "Mounts": c.mounts.iter().filter(|m| !m.inherited && !c.binds.iter().any(|b| b.contains(&m.target))).map(|m| json!({"Type": m.kind, "Source": m.source, "Target": m.target, "ReadOnly": !m.rw})).collect::<Vec<_>>(),
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
        "Mounts": mounts(c),
        "Config": {
            "Hostname": c.hostname, "Domainname": "", "User": c.user,
            "AttachStdin": false, "AttachStdout": true, "AttachStderr": true,
            "ExposedPorts": if exposed.is_empty() { Value::Null } else { Value::Object(exposed) },
            "Tty": c.tty, "OpenStdin": c.open_stdin, "StdinOnce": false,
            "Env": c.env, "Cmd": if c.cmd.is_empty() { Value::Null } else { json!(c.cmd) },
            "Image": c.image, "Volumes": null, "WorkingDir": c.workdir,
            "Entrypoint": c.entrypoint, "OnBuild": null, "Labels": c.labels,
        },
        "NetworkSettings": {
            "Bridge": "", "SandboxID": if running { util::hex_id(&format!("sb-{}", c.id)) } else { String::new() },
            "Ports": ports, "IPAddress": c.endpoints.iter().find(|e| e.network == "bridge" && running).map(|e| e.ip.clone()).unwrap_or_default(),
            "Networks": networks(st, c),
        },
    });
    let host = inspected["HostConfig"]
        .as_object_mut()
        .expect("HostConfig is an object");
    host.extend(crate::hostconfig::inspected(&c.host_config, &c.name));
    let config = inspected["Config"]
        .as_object_mut()
        .expect("Config is an object");
    config.extend(c.config_kept.clone());
    add_health(&mut inspected, st, c);
    inspected
}

/// A healthcheck's config, and its state once the container has started (docker's monitor
/// begins with the container).
fn add_health(inspected: &mut Value, st: &HostState, c: &Container) {
    let Some(h) = &c.healthcheck else {
        return;
    };
    inspected["Config"]["Healthcheck"] = h.config_json();
    if let Some((h, until, running)) = monitored(st, c) {
        inspected["State"]["Health"] = h.state_json(c.started, until, running);
    }
}

/// The health `docker ps` and `compose ps` show of a container with a healthcheck.
pub fn health(st: &HostState, c: &Container) -> Option<crate::health::Status> {
    monitored(st, c).map(|(h, until, running)| h.status(c.started, until, running))
}

/// A started container's healthcheck (not `NONE`), until when its probes ran, and whether it runs.
fn monitored<'c>(st: &HostState, c: &'c Container) -> Option<(&'c Healthcheck, f64, bool)> {
    let h = c
        .healthcheck
        .as_ref()
        .filter(|h| h.runs() && c.started > 0.0)?;
    let running = view(st, c).status == "running";
    let until = if running { util::now() } else { c.finished };
    Some((h, until, running))
}

pub fn image_json(i: &Image) -> Value {
    let r = ImageRef {
        repo: i.repo.clone(),
        tag: i.tag.clone(),
    };
    let ic = image_config(&r);
    let labels: Map<String, Value> = ic
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut exposed = Map::new();
    for e in &ic.exposed {
        exposed.insert(e.clone(), json!({}));
    }
    json!({
        "Id": format!("sha256:{}", i.id), "RepoTags": [format!("{}:{}", i.repo, i.tag)],
        "RepoDigests": [format!("{}@sha256:{}", i.repo, util::hex_id(&format!("digest-{}", i.id)))],
        "Parent": "", "Comment": "buildkit.dockerfile.v0",
        "Created": rfc3339(i.created), "DockerVersion": "", "Author": "",
        "Config": {
            "Hostname": "", "User": "", "ExposedPorts": if exposed.is_empty() { Value::Null } else { Value::Object(exposed) },
            "Env": ic.env, "Cmd": ic.cmd, "Image": "", "Volumes": null, "WorkingDir": ic.workdir,
            "Entrypoint": ic.entrypoint, "OnBuild": null, "Labels": if labels.is_empty() { Value::Null } else { Value::Object(labels) },
        },
        "Architecture": "amd64", "Os": "linux", "Size": i.size, "VirtualSize": i.size,
        "RootFS": {"Type": "layers", "Layers": [format!("sha256:{}", util::hex_id(&format!("layer-{}", i.id)))]},
    })
}

pub fn print_json_array(vals: &[Value]) {
    let mut buf = Vec::new();
    let fmtr = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmtr);
    if serde::Serialize::serialize(&vals, &mut ser).is_ok() {
        println!("{}", String::from_utf8_lossy(&buf));
    }
}

/// `docker inspect [--type T] [-f F] NAME...`
pub fn inspect(st: &HostState, o: &crate::opts::Opts, ty: Option<&str>) -> i32 {
    let mut found = Vec::new();
    let mut errs = Vec::new();
    for name in &o.pos {
        let c = if ty != Some("image") && ty != Some("network") {
            st.container(name)
        } else {
            None
        };
        let v = match c {
            Some(c) => Some(container_json(st, c)),
            None if ty.is_none() || ty == Some("image") => st.image_by_key(name).map(image_json),
            None => None,
        };
        let v = v.or_else(|| if ty.is_none() || ty == Some("network") { st.network(name).map(|n| json!({"Name": n.name, "Id": n.id, "Driver": "bridge", "Scope": "local", "Labels": n.labels})) } else { None });
        match v {
            Some(v) => found.push(v),
            None => errs.push(match ty {
                Some("image") => format!("Error: No such image: {name}"),
                Some("container") => format!("Error: No such container: {name}"),
                _ => format!("Error: No such object: {name}"),
            }),
        }
    }
    match o.get(&["-f", "--format"]) {
        Some(f) if f != "json" => {
            for v in &found {
                match crate::format::render(&f, v) {
                    Ok(s) => println!("{s}"),
                    Err(e) => {
                        eprintln!("template parsing error: {e}");
                        return 1;
                    }
                }
            }
        }
        _ => print_json_array(&found),
    }
    for e in &errs {
        eprintln!("{e}");
    }
    i32::from(!errs.is_empty())
}
