//! `docker run`'s settings that land in `HostConfig` and that the simulated host keeps
//! without acting on them: limits, capabilities, DNS, devices, tmpfs, sysctls... They are
//! parsed as docker's client parses them (`512m` in bytes, `1.5` CPUs in nano-CPUs, a
//! seccomp profile read from its file), refused with its messages, and shown by `inspect`
//! as docker 28 shows them: every one always, docker's default where not set.

use crate::opts::Opts;
use serde_json::{json, Map, Value};

/// The flags that take a value, for the option parser.
pub const VALUED: &[&str] = &[
    "--volumes-from",
    "--link",
    "--cap-add",
    "--cap-drop",
    "--dns",
    "--dns-search",
    "--dns-option",
    "--security-opt",
    "--group-add",
    "--memory-reservation",
    "--memory-swap",
    "--shm-size",
    "--cpu-shares",
    "--pids-limit",
    "--oom-score-adj",
    "--tmpfs",
    "--sysctl",
    "--device",
    "--ulimit",
    "--gpus",
    "--cpuset-cpus",
    "--cpuset-mems",
    "--pid",
    "--uts",
    "--userns",
    "--cgroup-parent",
    "--cpu-quota",
    "--cpu-period",
    "--blkio-weight",
    "--stop-signal",
    "--device-cgroup-rule",
    "--storage-opt",
];

/// Flags whose one value is kept as given.
const STRINGS: [(&str, &str); 6] = [
    ("--cpuset-cpus", "CpusetCpus"),
    ("--cpuset-mems", "CpusetMems"),
    ("--pid", "PidMode"),
    ("--uts", "UTSMode"),
    ("--userns", "UsernsMode"),
    ("--cgroup-parent", "CgroupParent"),
];
/// List flags kept as given, by their `HostConfig` key.
const LISTS: [(&str, &str); 7] = [
    ("--volumes-from", "VolumesFrom"),
    ("--dns", "Dns"),
    ("--dns-search", "DnsSearch"),
    ("--dns-option", "DnsOptions"),
    ("--group-add", "GroupAdd"),
    ("--add-host", "ExtraHosts"),
    ("--device-cgroup-rule", "DeviceCgroupRules"),
];
const SWITCHES: [(&[&str], &str); 5] = [
    (&["--privileged"], "Privileged"),
    (&["--init"], "Init"),
    (&["--read-only"], "ReadonlyRootfs"),
    (&["-P", "--publish-all"], "PublishAllPorts"),
    (&["--oom-kill-disable"], "OomKillDisable"),
];
const SIZES: [(&[&str], &str); 3] = [
    (&["-m", "--memory"], "Memory"),
    (&["--memory-reservation"], "MemoryReservation"),
    (&["--shm-size"], "ShmSize"),
];
const INTEGERS: [(&str, &str); 6] = [
    ("--cpu-shares", "CpuShares"),
    ("--cpu-quota", "CpuQuota"),
    ("--cpu-period", "CpuPeriod"),
    ("--blkio-weight", "BlkioWeight"),
    ("--pids-limit", "PidsLimit"),
    ("--oom-score-adj", "OomScoreAdj"),
];

/// The `HostConfig` keys `run` was given values for.
pub fn parse(o: &Opts) -> Result<Map<String, Value>, String> {
    let mut set = Map::new();
    for (flag, key) in LISTS {
        let items = o.all(&[flag]);
        if !items.is_empty() {
            // The client writes `--add-host name=ip` as docker keeps it: `name:ip`.
            let items: Vec<String> = match key {
                "ExtraHosts" => items.iter().map(|h| h.replacen('=', ":", 1)).collect(),
                _ => items,
            };
            set.insert(key.into(), json!(items));
        }
    }
    for (flag, key) in [("--cap-add", "CapAdd"), ("--cap-drop", "CapDrop")] {
        let mut caps: Vec<String> = o.all(&[flag]).iter().map(|c| capability(c)).collect();
        caps.sort();
        caps.dedup();
        if !caps.is_empty() {
            set.insert(key.into(), json!(caps));
        }
    }
    for (flag, key) in STRINGS {
        if let Some(value) = o.get(&[flag]) {
            set.insert(key.into(), json!(value));
        }
    }
    for (flags, key) in SWITCHES {
        if o.has(flags) {
            set.insert(key.into(), json!(true));
        }
    }
    limits(o, &mut set)?;
    structured(o, &mut set)?;
    Ok(set)
}

fn limits(o: &Opts, set: &mut Map<String, Value>) -> Result<(), String> {
    for (flags, key) in SIZES {
        if let Some(v) = o.get(flags) {
            set.insert(key.into(), json!(bytes(&v, flags)?));
        }
    }
    for (flag, key) in INTEGERS {
        if let Some(v) = o.get(&[flag]) {
            set.insert(key.into(), json!(integer(flag, &v)?));
        }
    }
    if let Some(v) = o.get(&["--cpus"]) {
        set.insert("NanoCpus".into(), json!(nano_cpus(&v)?));
    }
    let memory = set.get("Memory").and_then(Value::as_i64).unwrap_or(0);
    if memory > 0 && memory < 6 << 20 {
        return Err("Minimum memory limit allowed is 6MB".into());
    }
    let swap = match o.get(&["--memory-swap"]) {
        Some(v) if v == "-1" => -1,
        Some(v) => bytes(&v, &["--memory-swap"])?,
        // The daemon gives twice the memory as swap when only the memory is limited.
        None => 2 * memory,
    };
    if swap != 0 && memory == 0 {
        return Err(
            "You should always set the Memory limit when using Memoryswap limit, see usage".into(),
        );
    }
    if swap > 0 && swap < memory {
        return Err(
            "Minimum memoryswap limit should be larger than memory limit, see usage".into(),
        );
    }
    if swap != 0 {
        set.insert("MemorySwap".into(), json!(swap));
    }
    Ok(())
}

fn structured(o: &Opts, set: &mut Map<String, Value>) -> Result<(), String> {
    let mut tmpfs = Map::new();
    for t in o.all(&["--tmpfs"]) {
        let (path, options) = t.split_once(':').unwrap_or((&t, ""));
        tmpfs.insert(path.into(), json!(options));
    }
    let sysctls = pairs(o, "--sysctl", |s| {
        format!("invalid argument \"{s}\" for \"--sysctl\" flag: sysctl '{s}' is not allowed")
    })?;
    let storage = pairs(o, "--storage-opt", |s| {
        format!("invalid storage option {s}")
    })?;
    let devices: Vec<Value> = o.all(&["--device"]).iter().map(|d| device(d)).collect();
    let ulimits =
        (o.all(&["--ulimit"]).iter().map(|u| ulimit(u))).collect::<Result<Vec<_>, _>>()?;
    let security = (o.all(&["--security-opt"]).iter().map(|s| security_opt(s)))
        .collect::<Result<Vec<_>, _>>()?;
    let links: Vec<String> = (o.all(&["--link"]).iter())
        .map(|l| {
            let (name, alias) = l.split_once(':').unwrap_or((l, l));
            format!("/{name}:/{{container}}/{alias}")
        })
        .collect();
    let gpus: Vec<Value> = (o.all(&["--gpus"]).iter())
        .map(|_| json!({"Driver": "", "Count": -1, "DeviceIDs": null, "Capabilities": [["gpu"]], "Options": {}}))
        .collect();
    for (key, value) in [
        ("Tmpfs", Value::Object(tmpfs)),
        ("Sysctls", Value::Object(sysctls)),
        ("StorageOpt", Value::Object(storage)),
        ("Devices", json!(devices)),
        ("Ulimits", json!(ulimits)),
        ("SecurityOpt", json!(security)),
        ("Links", json!(links)),
        ("DeviceRequests", json!(gpus)),
    ] {
        let empty = value.as_object().is_some_and(Map::is_empty)
            || value.as_array().is_some_and(Vec::is_empty);
        if !empty {
            set.insert(key.into(), value);
        }
    }
    Ok(())
}

/// The `Config` keys `run` was given values for and that are only kept: how the
/// container is stopped.
pub fn parse_config(o: &Opts) -> Result<Map<String, Value>, String> {
    let mut set = Map::new();
    if let Some(signal) = o.get(&["--stop-signal"]) {
        set.insert("StopSignal".into(), json!(signal));
    }
    if let Some(seconds) = o.get(&["--stop-timeout"]) {
        set.insert(
            "StopTimeout".into(),
            json!(integer("--stop-timeout", &seconds)?),
        );
    }
    Ok(set)
}

fn integer(flag: &str, v: &str) -> Result<i64, String> {
    v.parse().map_err(|_| {
        format!("invalid argument \"{v}\" for \"{flag}\" flag: strconv.ParseInt: parsing \"{v}\": invalid syntax")
    })
}

/// `flag`'s `name=value` values as a mapping; `invalid` words a value without `=`.
fn pairs(
    o: &Opts,
    flag: &str,
    invalid: impl Fn(&str) -> String,
) -> Result<Map<String, Value>, String> {
    let mut map = Map::new();
    for pair in o.all(&[flag]) {
        let (name, value) = pair.split_once('=').ok_or_else(|| invalid(&pair))?;
        map.insert(name.into(), json!(value));
    }
    Ok(map)
}

/// `HostConfig` as `inspect` shows it: docker's defaults, then what `run` was given; a
/// link names the container it belongs to.
pub fn inspected(set: &Map<String, Value>, container: &str) -> Map<String, Value> {
    let mut shown = json!({
        "CapAdd": null, "CapDrop": null, "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": [], "GroupAdd": null, "Links": null, "SecurityOpt": null,
        "VolumesFrom": null, "Privileged": false, "ReadonlyRootfs": false, "ShmSize": 67108864,
        "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "Devices": [], "DeviceRequests": null,
        "MemoryReservation": 0, "MemorySwap": 0, "OomScoreAdj": 0, "PidsLimit": null,
        "Ulimits": [], "CpusetCpus": "", "CpusetMems": "", "PidMode": "", "UTSMode": "",
        "UsernsMode": "", "CgroupParent": "", "CpuQuota": 0, "CpuPeriod": 0, "BlkioWeight": 0,
        "PublishAllPorts": false, "OomKillDisable": null, "DeviceCgroupRules": null,
    });
    let shown = shown.as_object_mut().expect("an object");
    for (key, value) in set {
        let value = match key.as_str() {
            "Links" => json!(value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|l| l.replace("{container}", container))
                .collect::<Vec<_>>()),
            _ => value.clone(),
        };
        shown.insert(key.clone(), value);
    }
    std::mem::take(shown)
}

/// docker's client (since v28.0.0, `normalizeCapabilities`) sends a capability as `CAP_`
/// and its name in capitals, `ALL` as it is, the list sorted without repeats.
fn capability(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    match upper.as_str() {
        "ALL" => upper,
        _ if upper.starts_with("CAP_") => upper,
        _ => format!("CAP_{upper}"),
    }
}

/// A size as docker's client reads it (go-units' `RAMInBytes`): `512m`, `1.5g`, `64MiB`,
/// or bytes.
fn bytes(text: &str, flags: &[&str]) -> Result<i64, String> {
    let invalid = || {
        let flag = flags.join(", ");
        format!("invalid argument \"{text}\" for \"{flag}\" flag: invalid size: '{text}'")
    };
    let lower = text.to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let unit = unit.trim_start_matches(' ');
    let unit = unit.strip_suffix('b').unwrap_or(unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let power = match unit {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return Err(invalid()),
    };
    Ok((number * 1024f64.powi(power)) as i64)
}

fn nano_cpus(text: &str) -> Result<i64, String> {
    let cpus: f64 = text.parse().map_err(|_| {
        format!("invalid argument \"{text}\" for \"--cpus\" flag: failed to parse {text} as a rational number")
    })?;
    Ok((cpus * 1e9).round() as i64)
}

/// `--device /dev/x[:/dev/y[:rwm]]`.
fn device(spec: &str) -> Value {
    let mut parts = spec.splitn(3, ':');
    let host = parts.next().unwrap_or_default();
    let inside = parts.next().unwrap_or(host);
    let permissions = parts.next().unwrap_or("rwm");
    json!({"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": permissions})
}

/// `--ulimit nofile=1024[:2048]`: the hard limit is the soft one unless given.
fn ulimit(spec: &str) -> Result<Value, String> {
    let invalid = || {
        format!(
            "invalid argument \"{spec}\" for \"--ulimit\" flag: invalid ulimit argument: {spec}"
        )
    };
    let (name, limits) = spec.split_once('=').ok_or_else(invalid)?;
    let (soft, hard) = limits.split_once(':').unwrap_or((limits, limits));
    let soft: i64 = soft.parse().map_err(|_| invalid())?;
    let hard: i64 = hard.parse().map_err(|_| invalid())?;
    Ok(json!({"Name": name, "Hard": hard, "Soft": soft}))
}

/// A seccomp profile is read from its file and kept as its JSON, as docker's client does.
fn security_opt(option: &str) -> Result<String, String> {
    let Some(("seccomp", file)) = option.split_once('=') else {
        return Ok(option.to_string());
    };
    if matches!(file, "unconfined" | "builtin") {
        return Ok(option.to_string());
    }
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("opening seccomp profile ({file}) failed: open {file}: {e}"))?;
    let profile: Value = serde_json::from_str(&text)
        .map_err(|e| format!("compacting json for seccomp profile ({file}) failed: {e}"))?;
    Ok(format!("seccomp={profile}"))
}
