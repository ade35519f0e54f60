//! Tests of the docker and docker compose shims' surface (error messages and exit codes,
//! .env and the environment): apart because fleetup reads what docker prints, so the
//! shims must print what the real ones do: a module of fleet_sim.rs, fleet-sim's own tests.

use crate::fleet::*;
use crate::{health, one, run_ok, with_app};

#[test]
fn docker_errors_match_the_real_ones() {
    let f = one("v4.65.0");
    let h = "h-01";
    let cases: &[(&str, i32, &str)] = &[
        ("docker inspect nope", 1, "Error: No such object: nope"),
        ("docker stop nope", 1, "Error response from daemon: No such container: nope"),
        ("docker rm nope", 1, "Error response from daemon: No such container: nope"),
        ("docker rm sl-app", 1, "Error response from daemon: cannot remove container \"/sl-app\": container is running: stop the container before removing or force remove"),
        ("docker pull simplelogin/app-ci:v9.9.9", 1, "Error response from daemon: manifest for simplelogin/app-ci:v9.9.9 not found: manifest unknown: manifest unknown"),
        ("docker exec nope true", 1, "Error response from daemon: No such container: nope"),
        ("docker frobnicate", 1, "docker: 'frobnicate' is not a docker command."),
    ];
    for (cmd, rc, msg) in cases {
        let o = f.ssh(h, cmd);
        assert_eq!(o.status.code(), Some(*rc), "{cmd}: {}", stderr(&o));
        assert!(stderr(&o).contains(msg), "{cmd}: {}", stderr(&o));
    }
    // A kept container blocks its name.
    run_ok(&f, h, "docker run --name sl-migration --network sl-network simplelogin/app-ci:v4.65.0 alembic upgrade head");
    let o = f.ssh(h, "docker run --name sl-migration --network sl-network simplelogin/app-ci:v4.65.0 alembic upgrade head");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("docker: Error response from daemon: Conflict. The container name \"/sl-migration\" is already in use by container \""), "{}", stderr(&o));
    let o = f.ssh(h, "docker run --rm simplelogin/app-ci:v9.9.9 true");
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("Unable to find image 'simplelogin/app-ci:v9.9.9' locally"));
    assert!(stderr(&o).contains("manifest unknown"));
    // docker run pulls a missing known image.
    let o = f.ssh(
        h,
        "docker run --rm --network sl-network simplelogin/app-ci:v4.66.1 alembic current",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        run_ok(&f, h, "docker images --format '{{.Repository}}:{{.Tag}}'")
            .contains("simplelogin/app-ci:v4.66.1")
    );
    // inspect: JSON without --format, the usual fields with it.
    let js: serde_json::Value =
        serde_json::from_str(&run_ok(&f, h, "docker inspect sl-app")).unwrap();
    assert_eq!(js[0]["Config"]["Image"], "simplelogin/app-ci:v4.65.0");
    assert_eq!(
        run_ok(&f, h, "docker inspect -f '{{.State.Running}}' sl-db").trim(),
        "true"
    );
    assert_eq!(
        run_ok(
            &f,
            h,
            "docker ps --filter name=sl-app --format '{{.Names}}'"
        )
        .trim(),
        "sl-app"
    );
    // compose with an unknown version fails before touching anything.
    let o = f.ssh(
        h,
        &with_app(&f, h, "v9.9.9", "SL_VERSION=$V docker compose up -d"),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("manifest for simplelogin/app-ci:v9.9.9 not found"),
        "{}",
        stderr(&o)
    );
    assert_eq!(health(&f, h).0, 0);
    let o = f.ssh(h, "cd /tmp && docker compose ps");
    assert!(stderr(&o).contains("no configuration file provided: not found"));
}

#[test]
fn compose_reads_env_and_the_environment_wins() {
    let f = one("v4.66.0");
    let h = "h-01";
    run_ok(
        &f,
        h,
        &with_app(
            &f,
            h,
            "v4.66.1",
            "docker compose stop && SL_VERSION=$V docker compose up -d",
        ),
    );
    // v4.66.1 shares v4.66.0's schema head: no migration needed.
    assert_eq!(
        run_ok(&f, h, "curl -fsS http://127.0.0.1:7777/version"),
        "v4.66.1"
    );
    // docker-compose (v1 spelling) and -f work as well; .env still says v4.66.0.
    let app = f.app_path(h).display().to_string();
    run_ok(
        &f,
        h,
        &format!("docker-compose -f '{app}/docker-compose.yml' up -d"),
    );
    assert_eq!(
        run_ok(&f, h, "curl -fsS http://127.0.0.1:7777/version"),
        "v4.66.0"
    );
    // SetEnv over SSH reaches the command (sshd has AcceptEnv SL_*).
    let o = std::process::Command::new("/usr/bin/ssh")
        .args(["-o", "SetEnv=SL_VERSION=v4.66.1", "-i"])
        .arg(f.key_path())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", f.known_hosts_path().display()))
        .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p"])
        .arg(f.port(h).to_string())
        .arg("fleetup-test@127.0.0.1")
        .arg(format!("cd '{app}' && docker compose up -d && docker compose ps --format '{{{{.Service}}}} {{{{.Image}}}}'"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("sl-app simplelogin/app-ci:v4.66.1"),
        "{}",
        stdout(&o)
    );
    let down = f.ssh(h, &format!("cd '{app}' && docker compose down"));
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(f.state(h)["containers"].as_array().unwrap().is_empty());
    assert_eq!(health(&f, h).0, 7);
}

#[test]
fn ps_lists_as_docker_and_compose_do() {
    let f = Fleet::start(
        Spec::new().host(HostSpec::new("s-01", "production", "v4.66.0").layout("springcomp")),
    );
    let h = "s-01";
    let table = run_ok(&f, h, "docker ps");
    let header = table.lines().next().unwrap_or_default();
    assert!(header.starts_with("CONTAINER ID   IMAGE"), "{table}");
    assert!(header.trim_end().ends_with("NAMES"), "{table}");
    assert!(
        table.lines().any(|l| l.trim_end().ends_with("sl-app")),
        "{table}"
    );
    let ids = run_ok(&f, h, "docker ps -q");
    assert_eq!(ids.lines().count(), table.lines().count() - 1, "{ids}");
    assert!(ids.lines().all(|id| id.len() == 12), "{ids}");
    // docker prints one object a line; compose one array.
    for line in run_ok(&f, h, "docker ps --format json").lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(row["Names"].is_string(), "{line}");
    }
    let app = f.app_path(h).display().to_string();
    let table = run_ok(&f, h, &format!("cd '{app}' && docker compose ps"));
    let header = table.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("SERVICE"),
        "{table}"
    );
    let rows = run_ok(
        &f,
        h,
        &format!("cd '{app}' && docker compose ps --format json"),
    );
    let rows: serde_json::Value = serde_json::from_str(rows.trim()).unwrap();
    assert!(rows.as_array().is_some_and(|r| !r.is_empty()), "{rows}");
    assert_eq!(
        run_ok(&f, h, &format!("cd '{app}' && docker compose ps -q"))
            .lines()
            .count(),
        rows.as_array().map_or(0, Vec::len)
    );
}

/// `docker run`'s limits, capabilities, DNS, devices... are kept in `HostConfig` as docker
/// keeps them (sizes in bytes, CPUs in nano-CPUs, capabilities as `CAP_...`), docker's
/// defaults where not given, and bad values refused with the client's and daemon's words.
#[test]
fn run_keeps_host_settings_as_docker_shows_them() {
    let f = one("v4.65.0");
    let h = "h-01";
    run_ok(
        &f,
        h,
        "docker run -d --name extra --memory 512m --memory-swap 1g --cpus 1.5 \
        --cap-add net_admin --cap-drop MKNOD --add-host db.internal=10.0.0.5 --dns 10.0.0.53 \
        --tmpfs /run:size=64m --device /dev/null:/dev/xnull --ulimit nofile=1024:2048 \
        --sysctl net.core.somaxconn=1024 --shm-size 128m --init --read-only --user 1000 \
        --cpuset-cpus 0 --cpu-quota 50000 --pid host --oom-kill-disable \
        --stop-signal SIGINT --stop-timeout 30 --expose 8080 --storage-opt size=10G \
        --device-cgroup-rule 'c 10:229 rwm' \
        --health-cmd 'curl -fsS localhost:7777/health' --health-interval 5s --health-retries 2 \
        --volumes-from sl-db --network sl-network simplelogin/app-ci:v4.65.0 python job_runner.py",
    );
    let shown = |c: &str| -> serde_json::Value {
        let out = run_ok(
            &f,
            h,
            &format!("docker inspect -f '{{{{json .HostConfig}}}}' {c}"),
        );
        serde_json::from_str(&out).unwrap()
    };
    let host = shown("extra");
    let expected = serde_json::json!({
        "Memory": 536870912, "MemorySwap": 1073741824, "NanoCpus": 1500000000,
        "CapAdd": ["CAP_NET_ADMIN"], "CapDrop": ["CAP_MKNOD"],
        "ExtraHosts": ["db.internal:10.0.0.5"], "Dns": ["10.0.0.53"],
        "Tmpfs": {"/run": "size=64m"}, "ShmSize": 134217728, "Init": true, "ReadonlyRootfs": true,
        "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/xnull", "CgroupPermissions": "rwm"}],
        "Ulimits": [{"Name": "nofile", "Hard": 2048, "Soft": 1024}],
        "Sysctls": {"net.core.somaxconn": "1024"}, "VolumesFrom": ["sl-db"], "Privileged": false,
        "CpusetCpus": "0", "CpuQuota": 50000, "PidMode": "host", "OomKillDisable": true,
        "CpuPeriod": 0, "StorageOpt": {"size": "10G"}, "DeviceCgroupRules": ["c 10:229 rwm"],
    });
    for (key, value) in expected.as_object().unwrap() {
        assert_eq!(&host[key], value, "HostConfig.{key}");
    }
    let config = run_ok(
        &f,
        h,
        "docker inspect -f '{{.Config.User}} {{.Config.StopSignal}} {{.Config.StopTimeout}}' extra",
    );
    assert_eq!(config.trim(), "1000 SIGINT 30");
    let health = run_ok(
        &f,
        h,
        "docker inspect -f '{{json .Config.Healthcheck}}' extra",
    );
    let health: serde_json::Value = serde_json::from_str(&health).unwrap();
    let expected = serde_json::json!({"Test": ["CMD-SHELL", "curl -fsS localhost:7777/health"],
        "Interval": 5000000000u64, "Retries": 2});
    assert_eq!(health, expected);
    let exposed = run_ok(
        &f,
        h,
        "docker inspect -f '{{json .Config.ExposedPorts}}' extra",
    );
    assert!(
        exposed.contains("\"8080/tcp\"") && exposed.contains("\"7777/tcp\""),
        "{exposed}"
    );
    // --volumes-from: sl-db's mounts are the container's too, and none is its own --mount.
    let mounts = run_ok(&f, h, "docker inspect -f '{{json .Mounts}}' extra");
    assert!(
        mounts.contains("\"Destination\":\"/var/lib/postgresql/data\""),
        "{mounts}"
    );
    assert_eq!(host["Mounts"], serde_json::json!([]), "HostConfig.Mounts");
    // The README's sl-app has docker's defaults; twice the memory is the swap by default.
    let app = shown("sl-app");
    for (key, value) in [("Memory", 0), ("NanoCpus", 0), ("ShmSize", 67108864)] {
        assert_eq!(app[key], value, "sl-app's HostConfig.{key}");
    }
    assert!(app["CapAdd"].is_null() && app.get("Init").is_none() && app.get("Tmpfs").is_none());
    run_ok(
        &f,
        h,
        "docker create --name small -m 8m simplelogin/app-ci:v4.65.0",
    );
    assert_eq!(shown("small")["MemorySwap"], 16777216);
    let refused = [
        ("-m 5m", "Minimum memory limit allowed is 6MB"),
        (
            "-m lots",
            "invalid argument \"lots\" for \"-m, --memory\" flag: invalid size: 'lots'",
        ),
        (
            "--memory-swap 1g",
            "You should always set the Memory limit when using Memoryswap limit",
        ),
        ("--cpus many", "failed to parse many as a rational number"),
        ("--volumes-from nope", "No such container: nope"),
        (
            "--stop-timeout soon",
            "invalid argument \"soon\" for \"--stop-timeout\" flag",
        ),
        (
            "--health-interval soon",
            "invalid argument \"soon\" for \"--health-interval\" flag: time: invalid duration \"soon\"",
        ),
        (
            "--security-opt seccomp=/nope.json",
            "opening seccomp profile (/nope.json) failed",
        ),
    ];
    for (flags, message) in refused {
        let o = f.ssh(
            h,
            &format!("docker run -d {flags} simplelogin/app-ci:v4.65.0"),
        );
        assert_eq!(o.status.code(), Some(125), "{flags}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{flags}: {}", stderr(&o));
    }
}

/// `docker network connect` puts a container on one more network, with its aliases and an
/// address once it runs, the one `--ip` fixed on a network with a subnet of the operator's;
/// connecting twice, to a missing network or container, or a fixed address docker would
/// not take, is refused with docker's words.
#[test]
fn network_connect_adds_an_endpoint_as_docker_does() {
    let f = one("v4.65.0");
    let h = "h-01";
    run_ok(&f, h, "docker network create --subnet 172.30.0.0/16 proxy >/dev/null && docker network create plain >/dev/null && docker network connect --alias simplelogin --ip 172.30.0.50 proxy sl-app");
    let proxy = |what: &str| {
        let out = run_ok(
            &f,
            h,
            &format!("docker inspect -f '{{{{json .NetworkSettings.Networks.proxy}}}}' {what}"),
        );
        serde_json::from_str::<serde_json::Value>(&out).unwrap()
    };
    let endpoint = proxy("sl-app");
    assert_eq!(endpoint["Aliases"][0], "simplelogin", "{endpoint}");
    assert_eq!(endpoint["IPAddress"], "172.30.0.50", "{endpoint}");
    assert_eq!(
        endpoint["IPAMConfig"]["IPv4Address"], "172.30.0.50",
        "{endpoint}"
    );
    // The fixed address outlives a restart; another container gets one of the subnet's.
    run_ok(
        &f,
        h,
        "docker restart sl-app >/dev/null && docker network connect proxy sl-email",
    );
    assert_eq!(proxy("sl-app")["IPAddress"], "172.30.0.50");
    let other = proxy("sl-email");
    assert!(
        other["IPAddress"].as_str().unwrap().starts_with("172.30."),
        "{other}"
    );
    assert!(other["IPAMConfig"].is_null(), "{other}");
    let refused = [
        ("proxy sl-app", "endpoint with name sl-app already exists in network proxy"),
        ("nope sl-app", "network nope not found"),
        ("proxy nope", "No such container: nope"),
        ("--ip 10.0.0.5 proxy sl-job-runner", "Invalid address 10.0.0.5: It does not belong to any of this network's subnets"),
        ("--ip 172.18.0.9 plain sl-job-runner", "user specified IP address is supported only when connecting to networks with user configured subnets"),
    ];
    for (args, message) in refused {
        let o = f.ssh(h, &format!("docker network connect {args}"));
        assert_eq!(o.status.code(), Some(1), "{args}: {}", stderr(&o));
        assert!(stderr(&o).contains(message), "{args}: {}", stderr(&o));
    }
}
