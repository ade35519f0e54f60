//! Tests of the test fleet itself, through the real OpenSSH client with strict host key
//! checking: if the simulator lies, every fleetup test built on it lies too.

#[path = "fleet_sim/docker_cli.rs"]
mod docker_cli;
#[path = "fleet_sim/faults.rs"]
mod faults;
#[path = "../../mod.rs"]
mod fleet;
#[path = "fleet_sim/layouts.rs"]
mod layouts;
#[path = "fleet_sim/lifecycle.rs"]
mod lifecycle;
#[path = "fleet_sim/upgrades.rs"]
mod upgrades;

use fleet::*;

pub(crate) fn one(version: &str) -> Fleet {
    Fleet::start(Spec::new().group("production", "h", 1, version))
}

pub(crate) fn run_ok(f: &Fleet, host: &str, cmd: &str) -> String {
    let o = f.ssh(host, cmd);
    assert!(
        o.status.success(),
        "{cmd}: rc {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

pub(crate) fn health(f: &Fleet, host: &str) -> (i32, String) {
    let o = f.ssh(host, "curl -fsS -m 5 http://127.0.0.1:7777/health");
    (
        o.status.code().unwrap_or(-1),
        format!("{}{}", stdout(&o), stderr(&o)),
    )
}

pub(crate) const MIGRATE: &str = "docker run --rm --name sl-migration -v \"$APP/sl:/sl\" -v \"$APP/sl/upload:/code/static/upload\" -v \"$APP/dkim.key:/dkim.key\" -v \"$APP/dkim.pub.key:/dkim.pub.key\" -v \"$APP/simplelogin.env:/code/.env\" --network sl-network simplelogin/app-ci:$V alembic upgrade head";
pub(crate) const INIT: &str = "docker run --rm --name sl-init -v \"$APP/sl:/sl\" -v \"$APP/simplelogin.env:/code/.env\" --network sl-network simplelogin/app-ci:$V python init_app.py";
pub(crate) const PSQL: &str = "docker exec -i sl-db psql -U myuser -d simplelogin";

pub(crate) fn with_app(f: &Fleet, host: &str, version: &str, cmd: &str) -> String {
    format!(
        "APP={}; V={version}; cd \"$APP\" && {cmd}",
        fleet::sh_quote(&f.app_path(host).to_string_lossy())
    )
}

#[test]
fn login_runs_commands_and_host_keys_are_checked() {
    let f = one("v4.65.0");
    let out = run_ok(
        &f,
        "h-01",
        "id -un; echo \"$PATH\"; command -v docker; docker info --format '{{.ServerVersion}}'",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "fleetup-test");
    assert!(
        lines[1].starts_with(&f.dir().join("bin").display().to_string()),
        "{out}"
    );
    assert_eq!(lines[2], f.dir().join("bin/docker").display().to_string());
    assert_eq!(lines[3], "24.0.7");
    assert_eq!(health(&f, "h-01"), (0, "success".into()));
    // A wrong known_hosts entry must be refused: the fleet never needs checking disabled.
    let bad = f.tmp().join("bad_known_hosts");
    std::fs::write(&bad, format!("[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOvEf0+u2Ujg0hsPTBoVx3LD1Y5Mh9lDvu1RWkzS/2Gd\n", f.port("h-01"))).unwrap();
    // A fresh command: ssh takes the first UserKnownHostsFile given.
    let o = std::process::Command::new("/usr/bin/ssh")
        .args(["-i"])
        .arg(f.key_path())
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", bad.display()))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-p",
        ])
        .arg(f.port("h-01").to_string())
        .arg("fleetup-test@127.0.0.1")
        .arg("true")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(255));
    assert!(
        stderr(&o).contains("HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn command_log_records_start_and_end_in_order() {
    let f = Fleet::start(
        Spec::new()
            .group("production", "p", 2, "v4.65.0")
            .canary("p-01"),
    );
    run_ok(
        &f,
        "p-01",
        "docker ps -q >/dev/null; curl -s http://127.0.0.1:7777/health",
    );
    let o = f.ssh("p-02", "docker ps >/dev/null; exit 3");
    assert_eq!(o.status.code(), Some(3));
    let log = f.commands("p-02");
    let kinds: Vec<(String, String)> = log.iter().map(|c| (c.ev.clone(), c.kind.clone())).collect();
    let want = [
        ("start", "session"),
        ("start", "docker"),
        ("end", "docker"),
        ("end", "session"),
    ];
    assert_eq!(
        kinds,
        want.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect::<Vec<_>>()
    );
    assert_eq!(log[3].rc, Some(3));
    assert_eq!(log[1].parent.as_deref(), Some(log[0].id.as_str()));
    assert!(log.windows(2).all(|w| w[0].t <= w[1].t));
    assert_eq!(log[1].cmd, "docker ps");
    let p1 = f.commands("p-01");
    assert!(p1.last().unwrap().t <= log[0].t, "p-01 ran before p-02");
    // The inventory has the canary and strict-checking material.
    let inv = std::fs::read_to_string(f.inventory_path()).unwrap();
    let inv: serde_yaml::Value = serde_yaml::from_str(&inv).unwrap();
    let p = &inv["all"]["children"]["simplelogin"]["children"]["production"]["hosts"]["p-01"];
    assert_eq!(p["canary"], serde_yaml::Value::Bool(true));
    assert_eq!(p["ansible_port"].as_u64(), Some(f.port("p-01") as u64));
    assert_eq!(p["ansible_user"].as_str(), Some("fleetup-test"));
}

#[test]
fn root_login_host_with_space_in_app_path() {
    let tmp = tempfile::tempdir().unwrap();
    let app = tmp.path().join("my apps/simple login");
    let f = Fleet::start(
        Spec::new().host(
            HostSpec::new("r-1", "production", "v4.66.1")
                .root()
                .app_path(app.to_string_lossy()),
        ),
    );
    assert_eq!(f.host("r-1").user, "root");
    let out = run_ok(
        &f,
        "r-1",
        &with_app(
            &f,
            "r-1",
            "v4.66.1",
            "id -un && cat .env && docker compose ps --format '{{.Name}}'",
        ),
    );
    assert!(
        out.starts_with("root\n") && out.contains("SL_VERSION=v4.66.1") && out.contains("sl-app"),
        "{out}"
    );
    assert_eq!(
        run_ok(&f, "r-1", "curl -fsS http://127.0.0.1:7777/version"),
        "v4.66.1"
    );
}

#[test]
fn ten_megabytes_of_output_pass_intact() {
    let f = one("v4.65.0");
    let o = f.ssh(
        "h-01",
        "head -c 10485760 /dev/zero | tr '\\0' x; echo end >&2",
    );
    assert!(o.status.success());
    assert_eq!(o.stdout.len(), 10 * 1024 * 1024);
    assert!(o.stdout.iter().all(|&b| b == b'x'));
    assert_eq!(stderr(&o), "end\n");
}
