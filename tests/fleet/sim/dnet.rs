//! `docker network`, `docker volume` and `docker port`.

use crate::docker::{daemon_err, usage_err};
use crate::format::{render, render_list, tabulate};
use crate::inspect::print_json_array;
use crate::opts;
use crate::state::{self, HostState, Network, Volume};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;

fn labels(o: &opts::Opts) -> BTreeMap<String, String> {
    o.all(&["--label"])
        .iter()
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or((l, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

pub fn network(h: &Path, a: &[String]) -> Result<i32, String> {
    let sub = a.first().map(String::as_str).unwrap_or("");
    let o = opts::parse(
        a.get(1..).unwrap_or(&[]),
        &[
            "-f",
            "--format",
            "--driver",
            "-d",
            "--label",
            "--filter",
            "--subnet",
            "--gateway",
            "--alias",
            "--ip",
        ],
        true,
    )?;
    match sub {
        "ls" | "list" => network_ls(h, &o),
        "inspect" => network_inspect(h, &o),
        "create" => network_create(h, &o),
        "rm" | "remove" => network_rm(h, &o),
        "connect" => network_connect(h, &o),
        _ => Ok(usage_err("network", "Usage:  docker network COMMAND")),
    }
}

fn network_ls(h: &Path, o: &opts::Opts) -> Result<i32, String> {
    let st = state::load(h)?;
    let rows: Vec<serde_json::Value> = st
        .networks
        .iter()
        .map(|n| {
            let drv = if n.name == "host" || n.name == "none" {
                n.name.clone()
            } else {
                "bridge".into()
            };
            json!({"ID": &n.id[..12], "Name": n.name, "Driver": drv, "Scope": "local"})
        })
        .collect();
    if let Some(f) = o.get(&["-f", "--format"]) {
        print!("{}", render_list(&f, &rows)?);
        return Ok(0);
    }
    let mut lines = vec![["NETWORK ID", "NAME", "DRIVER", "SCOPE"]
        .map(String::from)
        .to_vec()];
    for r in &rows {
        lines.push(
            ["ID", "Name", "Driver", "Scope"]
                .iter()
                .map(|k| r[*k].as_str().unwrap_or("").to_string())
                .collect(),
        );
    }
    print!("{}", tabulate(&lines));
    Ok(0)
}

fn network_inspect(h: &Path, o: &opts::Opts) -> Result<i32, String> {
    let st = state::load(h)?;
    let mut rc = 0;
    let mut found = Vec::new();
    for n in &o.pos {
        match st.network(n) {
            Some(net) => found.push(network_json(&st, net)),
            None => {
                eprintln!("Error response from daemon: network {n} not found");
                rc = 1;
            }
        }
    }
    match o.get(&["-f", "--format"]) {
        Some(f) => {
            for v in &found {
                println!("{}", render(&f, v)?);
            }
        }
        None => print_json_array(&found),
    }
    Ok(rc)
}

/// `docker network inspect`'s object: only running containers are attached endpoints.
fn network_json(st: &HostState, net: &Network) -> serde_json::Value {
    let (subnet, gateway) = net.subnet_and_gateway();
    let prefix = subnet.rsplit('/').next().unwrap_or("16");
    let mut cs = serde_json::Map::new();
    for c in st.containers.iter().filter(|c| c.status == "running") {
        for e in c.endpoints.iter().filter(|e| e.network == net.name) {
            cs.insert(
                c.id.clone(),
                json!({"Name": c.name, "IPv4Address": format!("{}/{prefix}", e.ip)}),
            );
        }
    }
    json!({"Name": net.name, "Id": net.id, "Driver": "bridge", "Scope": "local",
        "IPAM": {"Driver": "default", "Config": [{"Subnet": subnet, "Gateway": gateway}]},
        "Containers": cs, "Labels": net.labels})
}

fn network_create(h: &Path, o: &opts::Opts) -> Result<i32, String> {
    let Some(n) = o.pos.first().cloned() else {
        return Ok(usage_err(
            "network create",
            "\"docker network create\" requires exactly 1 argument.",
        ));
    };
    let l = labels(o);
    let subnet = o.get(&["--subnet"]);
    if let Some(bad) = subnet.as_deref().filter(|s| state::cidr(s).is_none()) {
        return Ok(usage_err(
            "network create",
            &format!(
                "invalid argument \"{bad}\" for \"--subnet\" flag: invalid CIDR address: {bad}"
            ),
        ));
    }
    state::with_state(h, |st| {
        if st.network(&n).is_some() {
            return daemon_err(&format!("network with name {n} already exists"));
        }
        let id = st.add_network(&n, l).id;
        if let Some(net) = st.networks.iter_mut().find(|net| net.name == n) {
            net.user_subnet = subnet.clone();
        }
        println!("{id}");
        0
    })
}

/// `docker network connect [--alias A]... NETWORK CONTAINER`: a running container gets its
/// address on the network at once; on a user network its short id is an alias too, as at
/// `run`.
fn network_connect(h: &Path, o: &opts::Opts) -> Result<i32, String> {
    let [n, name] = o.pos.as_slice() else {
        return Ok(usage_err(
            "network connect",
            "\"docker network connect\" requires exactly 2 arguments.",
        ));
    };
    state::with_state(h, |st| {
        let Some(net) = st.network(n).map(|net| net.name.clone()) else {
            return daemon_err(&format!("network {n} not found"));
        };
        let Some(i) = st.container_idx(name) else {
            return daemon_err(&format!("No such container: {name}"));
        };
        let c = &st.containers[i];
        if c.on_network(&net) {
            return daemon_err(&format!(
                "endpoint with name {} already exists in network {net}",
                c.name
            ));
        }
        let running = c.status == "running";
        let mut aliases = o.all(&["--alias"]);
        if net != "bridge" {
            aliases.push(c.id[..12].to_string());
        }
        let fixed_ip = o.get(&["--ip"]);
        if let Some(ip) = &fixed_ip {
            let checked = st.network(&net).map(|n| n.check_fixed_ip(ip));
            if let Some(Err(e)) = checked {
                return daemon_err(&e);
            }
        }
        let ip = match (&fixed_ip, running) {
            (Some(ip), true) => ip.clone(),
            (None, true) => st.alloc_ip(&net),
            (_, false) => String::new(),
        };
        st.containers[i].endpoints.push(state::Endpoint {
            network: net,
            ip,
            aliases,
            fixed_ip,
        });
        0
    })
}

/// Like docker, a network a running container is on is kept, and the other names are
/// still removed.
fn network_rm(h: &Path, o: &opts::Opts) -> Result<i32, String> {
    state::with_state(h, |st| {
        let mut rc = 0;
        for n in &o.pos {
            let Some(net) = st.network(n).cloned() else {
                rc = daemon_err(&format!("network {n} not found"));
                continue;
            };
            if st
                .containers
                .iter()
                .any(|c| c.on_network(&net.name) && c.status == "running")
            {
                rc = daemon_err(&format!(
                    "error while removing network: network {} id {} has active endpoints",
                    net.name, net.id
                ));
            } else {
                st.networks.retain(|x| x.name != net.name);
                println!("{n}");
            }
        }
        rc
    })
}

pub fn volume(h: &Path, a: &[String]) -> Result<i32, String> {
    let sub = a.first().map(String::as_str).unwrap_or("");
    let o = opts::parse(
        a.get(1..).unwrap_or(&[]),
        &["-f", "--format", "--label", "--filter", "-d", "--driver"],
        true,
    )?;
    match sub {
        "ls" | "list" => {
            let st = state::load(h)?;
            if o.has(&["-q", "--quiet"]) {
                for v in &st.volumes {
                    println!("{}", v.name);
                }
                return Ok(0);
            }
            let mut lines = vec![vec!["DRIVER".to_string(), "VOLUME NAME".into()]];
            for v in &st.volumes {
                lines.push(vec!["local".into(), v.name.clone()]);
            }
            print!("{}", tabulate(&lines));
            Ok(0)
        }
        "create" => {
            let n = o
                .pos
                .first()
                .cloned()
                .unwrap_or_else(|| crate::util::hex_id(&crate::util::unique_seed()));
            let l = labels(&o);
            state::with_state(h, |st| {
                if !st.volumes.iter().any(|v| v.name == n) {
                    st.volumes.push(Volume {
                        name: n.clone(),
                        labels: l,
                    });
                }
                println!("{n}");
                0
            })
        }
        "inspect" => {
            let st = state::load(h)?;
            let mut rc = 0;
            let mut found = Vec::new();
            for n in &o.pos {
                match st.volumes.iter().find(|v| &v.name == n) {
                    Some(v) => found.push(json!({"Driver": "local", "Labels": v.labels, "Mountpoint": format!("/var/lib/docker/volumes/{n}/_data"), "Name": n, "Scope": "local"})),
                    None => {
                        eprintln!("Error response from daemon: get {n}: no such volume");
                        rc = 1;
                    }
                }
            }
            print_json_array(&found);
            Ok(rc)
        }
        "rm" | "remove" => state::with_state(h, |st| {
            let mut rc = 0;
            for n in &o.pos {
                if st.containers.iter().any(|c| {
                    c.mounts
                        .iter()
                        .any(|m| &m.source == n && m.kind == "volume")
                }) {
                    rc = daemon_err(&format!("remove {n}: volume is in use"));
                } else if st.volumes.iter().any(|v| &v.name == n) {
                    st.volumes.retain(|v| &v.name != n);
                    println!("{n}");
                } else {
                    rc = daemon_err(&format!("get {n}: no such volume"));
                }
            }
            rc
        }),
        _ => Ok(usage_err("volume", "Usage:  docker volume COMMAND")),
    }
}

/// `docker port CONTAINER [PORT[/PROTO]]`: where the container's ports are published.
pub fn port(h: &Path, a: &[String]) -> Result<i32, String> {
    let o = opts::parse(a, &[], true)?;
    let Some(name) = o.pos.first() else {
        return Ok(usage_err(
            "port",
            "\"docker port\" requires at least 1 argument.",
        ));
    };
    let st = state::load(h)?;
    let Some(c) = st.container(name) else {
        return Ok(daemon_err(&format!("No such container: {name}")));
    };
    let wanted = o.pos.get(1).map(|p| {
        if p.contains('/') {
            p.clone()
        } else {
            format!("{p}/tcp")
        }
    });
    let running = c.status == "running";
    let bound: Vec<_> = c
        .ports
        .iter()
        .filter(|p| running && wanted.as_ref().is_none_or(|w| *w == p.container))
        .collect();
    if let (Some(w), true) = (&wanted, bound.is_empty()) {
        eprintln!("Error: No public port '{w}' published for {name}");
        return Ok(1);
    }
    for p in bound {
        let ip = if p.host_ip.is_empty() {
            "0.0.0.0"
        } else {
            &p.host_ip
        };
        match wanted {
            Some(_) => println!("{ip}:{}", p.host_port),
            None => println!("{} -> {ip}:{}", p.container, p.host_port),
        }
    }
    Ok(0)
}
