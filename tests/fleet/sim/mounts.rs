//! A container's mounts as docker reads them: `-v` (a bind, a named or an anonymous
//! volume), `--mount`, and `--volumes-from` (another container's, in `Mounts` only).

use crate::state::{self, Container, HostState, Mount};
use crate::util;
use std::collections::BTreeMap;

fn valid_volume_name(s: &str) -> bool {
    let mut ch = s.chars();
    ch.next()
        .map(|c| c.is_ascii_alphanumeric())
        .unwrap_or(false)
        && ch.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub fn parse_volume(v: &str) -> Result<Mount, String> {
    let parts: Vec<&str> = v.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [d] => ("", *d, ""),
        [s, d] => (*s, *d, ""),
        [s, d, m] => (*s, *d, *m),
        _ => return Err(format!("invalid spec: {v}: too many colons")),
    };
    if !dst.starts_with('/') {
        return Err(format!("invalid mount config for type \"bind\": invalid mount path: '{dst}' mount path must be absolute"));
    }
    let rw = !mode.split(',').any(|m| m == "ro");
    if src.is_empty() {
        let name = util::hex_id(&util::unique_seed());
        return Ok(Mount {
            kind: "volume".into(),
            source: name,
            target: dst.into(),
            rw,
            inherited: false,
        });
    }
    if src.starts_with('/') {
        return Ok(Mount {
            kind: "bind".into(),
            source: src.into(),
            target: dst.into(),
            rw,
            inherited: false,
        });
    }
    if !valid_volume_name(src) {
        return Err(format!("create {src}: \"{src}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed. If you intended to pass a host directory, use absolute path"));
    }
    Ok(Mount {
        kind: "volume".into(),
        source: src.into(),
        target: dst.into(),
        rw,
        inherited: false,
    })
}

pub fn parse_mount(v: &str) -> Result<Mount, String> {
    let mut m = Mount {
        kind: "volume".into(),
        rw: true,
        ..Default::default()
    };
    for kv in v.split(',') {
        let (k, val) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "type" => m.kind = val.into(),
            "source" | "src" => m.source = val.into(),
            "target" | "destination" | "dst" => m.target = val.into(),
            "readonly" | "ro" => m.rw = val == "false" || val == "0",
            _ => {}
        }
    }
    if m.target.is_empty() {
        return Err(format!(
            "invalid argument \"{v}\" for \"--mount\" flag: target is required"
        ));
    }
    Ok(m)
}

/// `--volumes-from NAME[:ro|:rw]`: the other container's mounts, read-only with `:ro`.
pub fn volumes_from(st: &HostState, c: &mut Container) -> Result<(), String> {
    let sources = c.host_config.get("VolumesFrom").and_then(|v| v.as_array());
    for source in sources.into_iter().flatten().filter_map(|s| s.as_str()) {
        let (name, mode) = source.split_once(':').unwrap_or((source, "rw"));
        let from = st
            .container(name)
            .ok_or_else(|| format!("No such container: {name}"))?;
        for m in &from.mounts {
            c.mounts.push(Mount {
                rw: m.rw && mode != "ro",
                inherited: true,
                ..m.clone()
            });
        }
    }
    Ok(())
}

/// Named and anonymous volumes come into being with the first container that mounts them.
pub fn create_volumes(st: &mut HostState, mounts: &[Mount]) {
    for m in mounts {
        if m.kind == "volume" && !st.volumes.iter().any(|v| v.name == m.source) {
            st.volumes.push(state::Volume {
                name: m.source.clone(),
                labels: BTreeMap::new(),
            });
        }
    }
}
