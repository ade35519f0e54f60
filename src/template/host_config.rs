//! The settings `docker run` keeps in a container's `HostConfig` beyond the flags
//! SimpleLogin's README gives (`-v`, `-p`, `--network`, `--restart`): limits, capabilities,
//! DNS, devices, tmpfs, sysctls... An operator who added one to the README's commands
//! expects the re-created container to keep it, and the rollback's old one too, so each
//! that is set is given back as the flag that set it. `docker inspect` shows every one
//! whether set or not, with docker's default when not (`0`, `false`, `null` or `[]`);
//! a default is left out, so that the new container takes the daemon's own, as the
//! operator's original `docker run` did. So are the settings whose default is the
//! daemon's configuration and shows as a value (`LogConfig`, `IpcMode`, `CgroupnsMode`,
//! `Runtime`): they cannot be told from what an operator set, and apply to a new container
//! alike. From `Config` come the user, a host name, how the container is stopped, the
//! ports it exposes and its health check, where they are not its image's.

use super::docker::{short_id, str_at};
use super::node::Node as Value;

/// Lists whose every item is one flag's value as `docker run` was given it.
const LISTS: [(&str, &str); 10] = [
    ("VolumesFrom", "--volumes-from"),
    ("ExtraHosts", "--add-host"),
    ("CapAdd", "--cap-add"),
    ("CapDrop", "--cap-drop"),
    ("Dns", "--dns"),
    ("DnsSearch", "--dns-search"),
    ("DnsOptions", "--dns-option"),
    ("SecurityOpt", "--security-opt"),
    ("GroupAdd", "--group-add"),
    ("DeviceCgroupRules", "--device-cgroup-rule"),
];
/// Flags without a value, set when true.
const SWITCHES: [(&str, &str); 5] = [
    ("Privileged", "--privileged"),
    ("Init", "--init"),
    ("ReadonlyRootfs", "--read-only"),
    ("PublishAllPorts", "--publish-all"),
    ("OomKillDisable", "--oom-kill-disable"),
];
/// Strings set when not empty.
const STRINGS: [(&str, &str); 6] = [
    ("CpusetCpus", "--cpuset-cpus"),
    ("CpusetMems", "--cpuset-mems"),
    ("PidMode", "--pid"),
    ("UTSMode", "--uts"),
    ("UsernsMode", "--userns"),
    ("CgroupParent", "--cgroup-parent"),
];
/// Numbers set when not zero; the memory ones in bytes, which `docker run` takes as given.
const NUMBERS: [(&str, &str); 8] = [
    ("Memory", "--memory"),
    ("MemoryReservation", "--memory-reservation"),
    ("CpuShares", "--cpu-shares"),
    ("CpuQuota", "--cpu-quota"),
    ("CpuPeriod", "--cpu-period"),
    ("BlkioWeight", "--blkio-weight"),
    ("PidsLimit", "--pids-limit"),
    ("OomScoreAdj", "--oom-score-adj"),
];
/// `/dev/shm`'s size when `--shm-size` is not given (moby's `DefaultShmSize`).
const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// The flags that give a new container the settings `container` (one object of `docker
/// inspect`) was created with beyond the README's flags and beyond what `image` gives.
pub fn flags(container: &Value, image: &Value, args: &mut Vec<String>) {
    let host = Host::of(container);
    let mut add = |flag: &str, value: String| args.extend([flag.to_string(), value]);
    for (key, flag) in LISTS {
        for item in host.list(key).filter_map(Value::as_str) {
            if carried_list_item(key, item) {
                add(flag, item.to_string());
            }
        }
    }
    for (key, flag) in STRINGS {
        match host.get(key).and_then(Value::as_str) {
            Some(value) if !value.is_empty() => add(flag, value.to_string()),
            _ => {}
        }
    }
    limits(&host, &mut add);
    for (path, options) in host.entries("Tmpfs") {
        match options.as_str().unwrap_or_default() {
            "" => add("--tmpfs", path.to_string()),
            options => add("--tmpfs", format!("{path}:{options}")),
        }
    }
    for (key, flag) in [("Sysctls", "--sysctl"), ("StorageOpt", "--storage-opt")] {
        for (name, value) in host.entries(key) {
            let value = value.as_str().unwrap_or_default();
            add(flag, format!("{name}={value}"));
        }
    }
    for device in host.list("Devices") {
        let part = |key| device.get(key).and_then(Value::as_str).unwrap_or_default();
        let spec = [
            part("PathOnHost"),
            part("PathInContainer"),
            part("CgroupPermissions"),
        ];
        add("--device", spec.join(":"));
    }
    for limit in host.list("Ulimits") {
        let part = |key| limit.get(key).and_then(Value::as_i64).unwrap_or(0);
        let name = limit
            .get("Name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        add(
            "--ulimit",
            format!("{name}={}:{}", part("Soft"), part("Hard")),
        );
    }
    config(container, image, &mut add);
    for (switch, flag) in SWITCHES {
        if host.get(switch).and_then(Value::as_bool) == Some(true) {
            args.push(flag.to_string());
        }
    }
    args.extend(healthcheck(container, image));
}

/// The health check the container was given beyond its image's, as `docker run`'s flags:
/// a command `docker run` gives the shell (`CMD-SHELL`), or none (`NONE`); a command in
/// exec form only compose or the API give is named by [`not_carried`].
fn healthcheck(container: &Value, image: &Value) -> Vec<String> {
    let Some(own) = own_healthcheck(container, image) else {
        return Vec::new();
    };
    let test: Vec<&str> = (own
        .get("Test")
        .and_then(Value::as_array)
        .into_iter()
        .flatten())
    .filter_map(Value::as_str)
    .collect();
    let mut args = Vec::new();
    match test.as_slice() {
        ["NONE", ..] => return vec!["--no-healthcheck".to_string()],
        ["CMD-SHELL", command] => args.extend(["--health-cmd".to_string(), command.to_string()]),
        _ => {}
    }
    let durations = [
        ("Interval", "--health-interval"),
        ("Timeout", "--health-timeout"),
        ("StartPeriod", "--health-start-period"),
        ("StartInterval", "--health-start-interval"),
    ];
    for (key, flag) in durations {
        match own.get(key).and_then(Value::as_i64) {
            Some(nanos) if nanos > 0 => args.extend([flag.to_string(), duration(nanos)]),
            _ => {}
        }
    }
    match own.get("Retries").and_then(Value::as_i64) {
        Some(retries) if retries > 0 => {
            args.extend(["--health-retries".to_string(), retries.to_string()])
        }
        _ => {}
    }
    args
}

/// `container`'s health check when it is not its image's.
fn own_healthcheck<'c>(container: &'c Value, image: &Value) -> Option<&'c Value> {
    let own = container.pointer("/Config/Healthcheck")?;
    (Some(own) != image.pointer("/Config/Healthcheck")).then_some(own)
}

/// The keys of `Config`'s mapping `key` in `container` and not in `image`'s.
fn own_keys<'c>(
    container: &'c Value,
    image: &'c Value,
    key: &str,
) -> impl Iterator<Item = &'c str> {
    let of = |v: &'c Value| {
        v.get("Config")
            .and_then(|c| c.get(key))
            .and_then(Value::as_object)
    };
    let inherited = of(image);
    (of(container).into_iter().flat_map(|m| m.iter()))
        .map(|(k, _)| k)
        .filter(move |k| inherited.and_then(|i| i.get(k)).is_none())
}

/// A duration as Go's `time.ParseDuration` reads it back, in the largest whole unit.
fn duration(nanos: i64) -> String {
    match nanos {
        n if n % 1_000_000_000 == 0 => format!("{}s", n / 1_000_000_000),
        n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

/// What `docker run` keeps in `Config` beside the image's own: the user, a host name other
/// than docker's (the container's short id), how the container is stopped, the ports it
/// exposes.
fn config(container: &Value, image: &Value, add: &mut impl FnMut(&str, String)) {
    for (key, flag) in [("User", "--user"), ("StopSignal", "--stop-signal")] {
        let own = str_at(container, &["Config", key]);
        if !own.is_empty() && own != str_at(image, &["Config", key]) {
            add(flag, own.to_string());
        }
    }
    let hostname = str_at(container, &["Config", "Hostname"]);
    let network = str_at(container, &["HostConfig", "NetworkMode"]);
    // On the host's network, or another container's, the name is theirs, not set.
    let own_network = !(network == "host" || network.starts_with("container:"));
    if own_network && !hostname.is_empty() && hostname != short_id(container) {
        add("--hostname", hostname.to_string());
    }
    let timeout = container.pointer("/Config/StopTimeout");
    if let Some(seconds) = timeout.and_then(Value::as_i64) {
        add("--stop-timeout", seconds.to_string());
    }
    for port in own_keys(container, image, "ExposedPorts") {
        add("--expose", port.to_string());
    }
}

/// The limits on memory, CPU and processes, each set when not docker's default.
fn limits(host: &Host, add: &mut impl FnMut(&str, String)) {
    for (key, flag) in NUMBERS {
        if host.number(key) != 0 {
            add(flag, host.number(key).to_string());
        }
    }
    let (memory, swap) = (host.number("Memory"), host.number("MemorySwap"));
    // docker sets the swap to twice the memory when only `--memory` is given.
    if memory > 0 && swap != 0 && swap != 2 * memory {
        add("--memory-swap", swap.to_string());
    }
    if host.number("NanoCpus") > 0 {
        add("--cpus", cpus(host.number("NanoCpus")));
    }
    if !matches!(host.number("ShmSize"), 0 | DEFAULT_SHM_SIZE) {
        add("--shm-size", host.number("ShmSize").to_string());
    }
}

/// A container's `HostConfig`, read as docker writes it: `null` for an empty list.
pub(super) struct Host<'c>(Option<&'c Value>);

impl<'c> Host<'c> {
    pub(super) fn of(container: &'c Value) -> Host<'c> {
        Host(container.get("HostConfig"))
    }

    fn get(&self, key: &str) -> Option<&'c Value> {
        self.0.and_then(|h| h.get(key))
    }

    pub(super) fn list(&self, key: &str) -> impl Iterator<Item = &'c Value> {
        self.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
    }

    fn number(&self, key: &str) -> i64 {
        self.get(key).and_then(Value::as_i64).unwrap_or(0)
    }

    fn entries(&self, key: &str) -> impl Iterator<Item = (&'c str, &'c Value)> {
        (self.get(key).and_then(Value::as_object).into_iter()).flat_map(|m| m.iter())
    }
}

/// What `container` was created with that no flag gives back, as the flag that set it: a
/// seccomp profile, which `docker run` read from a file and keeps as its content, and GPU
/// requests (`--gpus`), which [`flags`] does not rebuild, and a health check in exec form,
/// which `docker run` cannot give.
pub fn not_carried(container: &Value, image: &Value) -> Vec<String> {
    let host = Host::of(container);
    let mut lost = Vec::new();
    let mut options = host.list("SecurityOpt").filter_map(Value::as_str);
    if options.any(|o| !carried_list_item("SecurityOpt", o)) {
        lost.push("--security-opt seccomp".to_string());
    }
    if host.list("DeviceRequests").next().is_some() {
        lost.push("--gpus".to_string());
    }
    let test = own_healthcheck(container, image).and_then(|h| h.pointer("/Test/0"));
    if test.and_then(Value::as_str) == Some("CMD") {
        lost.push("--health-cmd (exec form)".to_string());
    }
    lost
}

/// Whether an item of list `key` is its flag's value as given: not a seccomp profile,
/// which docker keeps as the file's JSON where the flag names the file.
fn carried_list_item(key: &str, item: &str) -> bool {
    match (key, item.split_once('=')) {
        ("SecurityOpt", Some(("seccomp", profile))) => {
            matches!(profile, "unconfined" | "builtin")
        }
        _ => true,
    }
}

/// `--cpus` as it was given: 1500000000 nano-CPUs is `1.5`.
fn cpus(nano: i64) -> String {
    let whole = nano / 1_000_000_000;
    let fraction = format!("{:09}", nano % 1_000_000_000);
    match fraction.trim_end_matches('0') {
        "" => whole.to_string(),
        digits => format!("{whole}.{digits}"),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value as J};

    use super::Value as Node;

    fn flags(c: &J, i: &J) -> Vec<String> {
        let mut args = Vec::new();
        super::flags(&Node::from(c), &Node::from(i), &mut args);
        args
    }

    fn not_carried(c: &J) -> Vec<String> {
        super::not_carried(&Node::from(c), &Node::from(&json!({})))
    }

    /// HostConfig as `docker inspect` (docker 28) shows it for a plain `docker run`.
    fn defaults() -> J {
        json!({"HostConfig": {
            "CapAdd": null, "CapDrop": null, "Dns": [], "DnsOptions": [], "DnsSearch": [],
            "ExtraHosts": null, "GroupAdd": null, "SecurityOpt": null, "VolumesFrom": null,
            "Privileged": false, "ReadonlyRootfs": false, "Memory": 0, "MemorySwap": 0,
            "MemoryReservation": 0, "NanoCpus": 0, "CpuShares": 0, "PidsLimit": null,
            "OomScoreAdj": 0, "ShmSize": 67108864, "Devices": [], "DeviceRequests": null,
            "Ulimits": [], "Sysctls": null, "CpusetCpus": "", "CpusetMems": "", "PidMode": "",
            "UTSMode": "", "UsernsMode": "", "CgroupParent": "", "CpuQuota": 0, "CpuPeriod": 0,
            "BlkioWeight": 0, "PublishAllPorts": false, "OomKillDisable": null,
            "NetworkMode": "sl-network"
        }, "Id": "4f9c2d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d",
        "Config": {"User": "", "Hostname": "4f9c2d1e8a7b", "StopSignal": null}})
    }

    #[test]
    fn docker_s_defaults_give_no_flag() {
        assert!(flags(&defaults(), &json!({})).is_empty());
        assert!(not_carried(&defaults()).is_empty());
    }

    #[test]
    fn each_setting_comes_back_as_the_flag_that_set_it() {
        let mut c = defaults();
        let set = json!({
            "VolumesFrom": ["sl-data:ro"], "ExtraHosts": ["db.internal:10.0.0.5"],
            "CapAdd": ["CAP_NET_ADMIN"], "CapDrop": ["CAP_MKNOD"], "Dns": ["10.0.0.53"],
            "DnsSearch": ["internal"], "DnsOptions": ["ndots:2"],
            "SecurityOpt": ["no-new-privileges:true", "seccomp=unconfined"],
            "GroupAdd": ["mail"], "Privileged": true, "Init": true, "ReadonlyRootfs": true,
            "Memory": 536870912, "MemorySwap": -1, "MemoryReservation": 268435456,
            "CpuShares": 512, "PidsLimit": 200, "OomScoreAdj": -500, "NanoCpus": 1500000000,
            "ShmSize": 134217728, "Tmpfs": {"/run": "size=64m,mode=1777", "/tmp": ""},
            "Sysctls": {"net.core.somaxconn": "1024"}, "StorageOpt": {"size": "10G"},
            "DeviceCgroupRules": ["c 10:229 rwm"],
            "Devices": [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}],
            "Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048}],
            "CpusetCpus": "0-1", "PidMode": "host", "CpuQuota": 50000, "CpuPeriod": 100000,
            "PublishAllPorts": true, "OomKillDisable": true
        });
        for (key, value) in set.as_object().unwrap() {
            c["HostConfig"][key] = value.clone();
        }
        c["Config"]["User"] = json!("1000:1000");
        c["Config"]["StopSignal"] = json!("SIGINT");
        c["Config"]["StopTimeout"] = json!(30);
        c["Config"]["Hostname"] = json!("mail-app");
        c["Id"] = json!("4f9c2d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d");
        let expected = [
            "--volumes-from sl-data:ro",
            "--add-host db.internal:10.0.0.5",
            "--cap-add CAP_NET_ADMIN",
            "--cap-drop CAP_MKNOD",
            "--dns 10.0.0.53",
            "--dns-search internal",
            "--dns-option ndots:2",
            "--security-opt no-new-privileges:true",
            "--security-opt seccomp=unconfined",
            "--group-add mail",
            "--device-cgroup-rule c 10:229 rwm",
            "--cpuset-cpus 0-1",
            "--pid host",
            "--memory 536870912",
            "--memory-reservation 268435456",
            "--cpu-shares 512",
            "--cpu-quota 50000",
            "--cpu-period 100000",
            "--pids-limit 200",
            "--oom-score-adj -500",
            "--memory-swap -1",
            "--cpus 1.5",
            "--shm-size 134217728",
            "--tmpfs /run:size=64m,mode=1777",
            "--tmpfs /tmp",
            "--sysctl net.core.somaxconn=1024",
            "--storage-opt size=10G",
            "--device /dev/fuse:/dev/fuse:rwm",
            "--ulimit nofile=1024:2048",
            "--user 1000:1000",
            "--stop-signal SIGINT",
            "--hostname mail-app",
            "--stop-timeout 30",
            "--privileged",
            "--init",
            "--read-only",
            "--publish-all",
            "--oom-kill-disable",
        ];
        let expected: Vec<String> = (expected.iter())
            .flat_map(|f| f.splitn(2, ' ').map(str::to_string))
            .collect();
        assert_eq!(flags(&c, &json!({"Config": {"User": ""}})), expected);
        assert!(not_carried(&c).is_empty());
    }

    #[test]
    fn swap_twice_the_memory_is_docker_s_own_and_whole_cpus_have_no_point() {
        let mut c = defaults();
        c["HostConfig"]["Memory"] = json!(536870912);
        c["HostConfig"]["MemorySwap"] = json!(1073741824);
        c["HostConfig"]["NanoCpus"] = json!(2000000000);
        assert_eq!(
            flags(&c, &json!({})),
            ["--memory", "536870912", "--cpus", "2"]
        );
        assert_eq!(super::cpus(250_000_000), "0.25");
    }

    #[test]
    fn the_image_s_own_user_and_docker_s_host_name_are_left_as_they_come() {
        let mut c = defaults();
        c["Config"]["User"] = json!("app");
        c["Config"]["Hostname"] = json!("4f9c2d1e8a7b");
        c["Id"] = json!("4f9c2d1e8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d");
        assert!(flags(&c, &json!({"Config": {"User": "app"}})).is_empty());
        // On the host's network the host name is the host's.
        c["Config"]["Hostname"] = json!("mail.example.com");
        c["HostConfig"]["NetworkMode"] = json!("host");
        assert!(flags(&c, &json!({"Config": {"User": "app"}})).is_empty());
    }

    #[test]
    fn a_seccomp_profile_and_gpus_are_named_as_not_carried() {
        let mut c = defaults();
        c["HostConfig"]["SecurityOpt"] = json!(["seccomp={\"defaultAction\":\"SCMP_ACT_ERRNO\"}"]);
        c["HostConfig"]["DeviceRequests"] =
            json!([{"Driver": "", "Count": -1, "Capabilities": [["gpu"]]}]);
        assert!(flags(&c, &json!({})).is_empty());
        assert_eq!(not_carried(&c), ["--security-opt seccomp", "--gpus"]);
    }

    #[test]
    fn an_own_health_check_and_exposed_ports_come_back_as_flags() {
        let image = json!({"Config": {"ExposedPorts": {"7777/tcp": {}}, "Healthcheck": null}});
        let mut c = defaults();
        c["Config"]["ExposedPorts"] = json!({"7777/tcp": {}, "8080/tcp": {}});
        c["Config"]["Healthcheck"] = json!({"Test": ["CMD-SHELL", "curl -fsS localhost:7777/health"],
            "Interval": 30000000000u64, "Timeout": 1500000000, "StartPeriod": 0, "Retries": 3});
        assert_eq!(
            flags(&c, &image),
            [
                "--expose",
                "8080/tcp",
                "--health-cmd",
                "curl -fsS localhost:7777/health",
                "--health-interval",
                "30s",
                "--health-timeout",
                "1500ms",
                "--health-retries",
                "3"
            ]
        );
        c["Config"]["Healthcheck"] = json!({"Test": ["NONE"]});
        assert_eq!(flags(&c, &image)[2..], ["--no-healthcheck"]);
        let with = |test: J| {
            let mut c = defaults();
            c["Config"]["Healthcheck"] = json!({"Test": test});
            super::not_carried(&Node::from(&c), &Node::from(&image))
        };
        assert_eq!(
            with(json!(["CMD", "curl", "-f", "localhost"])),
            ["--health-cmd (exec form)"]
        );
        assert!(with(json!(["CMD-SHELL", "true"])).is_empty());
        // The image's own health check is the new image's to give.
        let mut c = defaults();
        c["Config"]["Healthcheck"] = json!({"Test": ["CMD-SHELL", "true"]});
        let image = json!({"Config": {"Healthcheck": {"Test": ["CMD-SHELL", "true"]}}});
        assert!(flags(&c, &image).is_empty());
    }
}
