//! Tests of the test fleet itself, through the real OpenSSH client with strict host key
//! checking: if the simulator lies, every fleetup test built on it lies too.

#[path = "../../mod.rs"]
mod fleet;
#[path = "fleet_sim/layouts.rs"]
mod layouts;

use fleet::*;
use serde_json::json;
use std::time::{Duration, Instant};

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
fn broken_upgrade_is_reproduced_and_the_correct_one_works() {
    let f = one("v4.66.0");
    let h = "h-01";
    // The naive upgrade: new image, restart, no migration. Nothing at the surface says so.
    run_ok(&f, h, &with_app(&f, h, "v4.66.1", "docker pull simplelogin/app-ci:$V && docker stop sl-app sl-email sl-job-runner && docker rm sl-app sl-email sl-job-runner && sed -i \"s/^SL_VERSION=.*/SL_VERSION=$V/\" .env && docker compose up -d"));
    assert_eq!(health(&f, h), (0, "success".into()));
    assert_eq!(
        run_ok(&f, h, "curl -fsS http://127.0.0.1:7777/version"),
        "v4.66.1"
    );
    let st = run_ok(
        &f,
        h,
        "docker inspect --format '{{.Config.Image}} {{.State.Status}}' sl-app sl-job-runner",
    );
    assert_eq!(
        st,
        "simplelogin/app-ci:v4.66.1 running\nsimplelogin/app-ci:v4.66.1 restarting\n"
    );
    let count = |f: &Fleet| -> u64 {
        run_ok(f, h, "docker inspect -f '{{.RestartCount}}' sl-job-runner")
            .trim()
            .parse()
            .unwrap()
    };
    let c1 = count(&f);
    std::thread::sleep(Duration::from_millis(1100));
    assert!(count(&f) > c1, "the restart count climbs");
    let o = f.ssh(h, "docker logs sl-job-runner");
    assert!(
        stderr(&o).contains("column job.priority does not exist"),
        "{}",
        stderr(&o)
    );
    // The schema revision is what tells: not the image's head.
    assert_eq!(run_ok(&f, h, "docker exec sl-db psql -U myuser -d simplelogin -tAc 'SELECT version_num FROM alembic_version'"), "818b4a856f3f\n");
    assert_eq!(
        run_ok(
            &f,
            h,
            "docker run --rm simplelogin/app-ci:v4.66.1 alembic heads"
        ),
        "fd79503179dd (head)\n"
    );
    // Migrate and init from the new image: the job runner recovers, its count stays put.
    let out = f.ssh(h, &with_app(&f, h, "v4.66.1", MIGRATE));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Running upgrade 818b4a856f3f -> fd79503179dd, add job priority"),
        "{}",
        stderr(&out)
    );
    run_ok(&f, h, &with_app(&f, h, "v4.66.1", INIT));
    assert_eq!(
        run_ok(&f, h, "docker inspect -f '{{.State.Status}}' sl-job-runner"),
        "running\n"
    );
    let c2 = count(&f);
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(count(&f), c2);
    let st = f.state(h);
    assert_eq!(st["serving"], "v4.66.1");
    assert_eq!(st["env_version"], "v4.66.1");
    assert_eq!(st["db"]["schema"], "fd79503179dd");
    // --rm containers are gone, the name can be used again.
    assert!(!run_ok(&f, h, "docker ps -a --format '{{.Names}}'").contains("sl-migration"));
}

#[test]
fn init_before_alembic_fails_and_old_versions_have_no_version_endpoint() {
    let f = one("v4.64.2");
    let h = "h-01";
    let o = f.ssh(h, "curl -fsS http://127.0.0.1:7777/version");
    assert_eq!(o.status.code(), Some(22));
    assert!(
        stderr(&o).contains("curl: (22) The requested URL returned error: 404"),
        "{}",
        stderr(&o)
    );
    let o = f.ssh(
        h,
        "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:7777/version",
    );
    assert_eq!(stdout(&o), "404");
    run_ok(&f, h, "docker pull simplelogin/app-ci:v4.65.2");
    let o = f.ssh(h, &with_app(&f, h, "v4.65.2", INIT));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("Traceback") && stderr(&o).contains("does not exist"),
        "{}",
        stderr(&o)
    );
    // The running app still serves v4.64.2 until the schema moves under it.
    assert_eq!(health(&f, h).0, 0);
    // Migration without the DB on the network fails like the real one.
    let o = f.ssh(
        h,
        "docker run --rm simplelogin/app-ci:v4.65.2 alembic upgrade head",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("could not translate host name \"sl-db\""),
        "{}",
        stderr(&o)
    );
    // flask db upgrade (the old README) does not work on current images.
    assert_eq!(
        f.ssh(
            h,
            "docker run --rm --network sl-network simplelogin/app-ci:v4.65.2 flask db upgrade"
        )
        .status
        .code(),
        Some(2)
    );
}

pub(crate) const PSQL: &str = "docker exec -i sl-db psql -U myuser -d simplelogin";

#[test]
fn pg_dump_then_psql_restores_the_schema() {
    let f = one("v4.65.0");
    let h = "h-01";
    let dump = run_ok(&f, h, "docker exec sl-db pg_dump -U myuser simplelogin");
    assert!(
        dump.contains("PostgreSQL database dump complete") && dump.contains("3ebfbaeb76c0"),
        "{dump}"
    );
    assert!(
        dump.contains("CREATE TABLE public.alias (")
            && dump.contains("COPY public.users (id, created_at, email, name) FROM stdin;"),
        "{dump}"
    );
    assert!(dump.contains("ALTER TABLE ONLY public.alias\n    ADD CONSTRAINT alias_user_id_fkey FOREIGN KEY (user_id) REFERENCES public.users(id);"), "{dump}");
    run_ok(
        &f,
        h,
        "mkdir -p ~/b && docker exec sl-db pg_dump -U myuser simplelogin | gzip > ~/b/db.sql.gz",
    );
    run_ok(&f, h, &with_app(&f, h, "v4.67.0", MIGRATE));
    assert_eq!(f.state(h)["db"]["schema"], "bb4b0d33ff1a");
    // The old app keeps serving on the newer schema: /health does not look at it.
    assert_eq!(health(&f, h).0, 0);
    // An older image cannot migrate a newer schema back.
    let o = f.ssh(h, &with_app(&f, h, "v4.65.0", MIGRATE));
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("Can't locate revision identified by 'bb4b0d33ff1a'"));
    // Without -i docker exec gives psql no stdin: nothing is restored.
    run_ok(
        &f,
        h,
        "gunzip -c ~/b/db.sql.gz | docker exec sl-db psql -U myuser simplelogin",
    );
    assert_eq!(f.state(h)["db"]["schema"], "bb4b0d33ff1a");
    // Drop and re-create the schema, restore, in one transaction that stops at an error.
    run_ok(&f, h, &format!("(echo 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;'; gunzip -c ~/b/db.sql.gz) | {PSQL} -v ON_ERROR_STOP=1 --single-transaction"));
    let st = f.state(h);
    assert_eq!(st["db"]["schema"], "3ebfbaeb76c0");
    assert_eq!(st["db"]["users"], 3);
    assert!(!f
        .sql(
            h,
            "SELECT tablename FROM pg_tables WHERE schemaname='public'"
        )
        .contains("alias_audit_log"));
    assert_eq!(
        run_ok(&f, h, "docker exec sl-db pg_dump -U myuser simplelogin"),
        dump
    );
    let o = f.ssh(h, &format!("echo 'this is not sql;' | {PSQL}"));
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("psql:<stdin>:1: ERROR:  syntax error at or near \"this\""),
        "{}",
        stderr(&o)
    );
    let o = f.ssh(
        h,
        &format!("echo 'this is not sql;' | {PSQL} -v ON_ERROR_STOP=1"),
    );
    assert_eq!(o.status.code(), Some(3));
    let o = f.ssh(h, "docker exec sl-db pg_dump -U postgres simplelogin");
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("role \"postgres\" does not exist"));
    let o = f.ssh(h, "docker exec sl-db psql -U myuser -d nope -c 'SELECT 1'");
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("FATAL:  database \"nope\" does not exist"),
        "{}",
        stderr(&o)
    );
    run_ok(&f, h, "docker stop sl-db");
    let o = f.ssh(h, "docker exec sl-db pg_dump -U myuser simplelogin");
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("Error response from daemon: container ")
            && stderr(&o).contains(" is not running"),
        "{}",
        stderr(&o)
    );
}

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
fn fault_fail_applies_its_times_then_is_spent() {
    let f = one("v4.65.0");
    let h = "h-01";
    let mut r = rule("docker pull", "fail");
    r["rc"] = json!(1);
    r["stderr"] = json!("Error response from daemon: Get \"https://registry-1.docker.io/v2/\": net/http: TLS handshake timeout");
    r["times"] = json!(2);
    r["scope"] = json!("shim");
    f.fault(h, r);
    for _ in 0..2 {
        let o = f.ssh(h, "docker pull simplelogin/app-ci:v4.66.0");
        assert_eq!(o.status.code(), Some(1));
        assert!(stderr(&o).contains("TLS handshake timeout"));
    }
    run_ok(&f, h, "docker pull simplelogin/app-ci:v4.66.0");
    // The CLI writes the same rules.
    let o = std::process::Command::new(sim())
        .args(["fault", "--dir"])
        .arg(f.dir())
        .args([
            "--host", h, "--match", "alembic", "--action", "fail", "--rc", "3", "--stderr", "boom",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = f.ssh(
        h,
        "docker run --rm --network sl-network simplelogin/app-ci:v4.66.0 alembic upgrade head",
    );
    assert_eq!(
        (o.status.code(), stderr(&o).trim().to_string()),
        (Some(3), "boom".to_string())
    );
    let o = std::process::Command::new(sim())
        .args(["clear-faults", "--dir"])
        .arg(f.dir())
        .output()
        .unwrap();
    assert!(o.status.success());
    run_ok(
        &f,
        h,
        "docker run --rm --network sl-network simplelogin/app-ci:v4.66.0 alembic upgrade head",
    );
}

#[test]
fn fault_slow_delays_then_runs() {
    let f = one("v4.65.0");
    let h = "h-01";
    let mut r = rule("docker stop", "slow");
    r["seconds"] = json!(1.0);
    f.fault(h, r);
    let t = Instant::now();
    assert_eq!(run_ok(&f, h, "docker stop sl-app").trim(), "sl-app");
    assert!(t.elapsed() >= Duration::from_millis(1000));
    assert_eq!(f.state(h)["containers"][1]["status"], "exited");
}

#[test]
fn fault_hang_killed_by_signal_leaves_no_process() {
    let f = one("v4.65.0");
    let h = "h-01";
    let mut r = rule("alembic", "hang");
    r["scope"] = json!("shim");
    f.fault(h, r);
    let mut child = f
        .ssh_command(h, "docker run --rm --network sl-network simplelogin/app-ci:v4.65.0 alembic upgrade head; echo never")
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let shim_started = || {
        f.commands(h)
            .iter()
            .any(|c| c.kind == "docker" && c.ev == "start")
    };
    while !shim_started() {
        assert!(Instant::now() < deadline, "the shim never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!processes_of_host(&f.host_dir(h)).is_empty());
    // What sshd does on an SSH "signal" request: TERM to the session's process group.
    let session = f
        .commands(h)
        .into_iter()
        .find(|c| c.kind == "session")
        .unwrap();
    unsafe_killpg(session.pid as i32);
    let st = child.wait().unwrap();
    assert!(!st.success());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        processes_of_host(&f.host_dir(h)).is_empty(),
        "left behind: {:?}",
        processes_of_host(&f.host_dir(h))
    );
    assert!(!pid_alive(session.pid as i32));
    let log = f.commands(h);
    let ends: Vec<_> = log.iter().filter(|c| c.ev == "end").collect();
    assert_eq!(ends.len(), 2, "{log:?}");
    assert!(
        ends.iter().all(|e| e.signal.as_deref() == Some("TERM")),
        "{log:?}"
    );
    assert!(!log
        .iter()
        .any(|c| c.cmd.contains("never") && c.kind != "session"));
}

fn unsafe_killpg(pgid: i32) {
    // SAFETY: plain kill(2) of a process group this test started over SSH.
    let rc = unsafe { libc::kill(-pgid, libc::SIGTERM) };
    assert_eq!(
        rc,
        0,
        "kill -TERM -{pgid}: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn fault_drop_loses_the_connection() {
    let f = one("v4.65.0");
    let h = "h-01";
    let mut r = rule("docker compose up", "drop");
    r["scope"] = json!("shim");
    r["times"] = json!(1);
    f.fault(h, r);
    let o = f.ssh(
        h,
        &with_app(
            &f,
            h,
            "v4.65.0",
            // The pause lets sshd send `before` on: a drop loses what is still in flight,
            // as a real one does (under load, `before` was sometimes lost with it).
            "echo before; sleep 0.3; docker compose up -d; echo after",
        ),
    );
    assert_eq!(o.status.code(), Some(255), "{}", stderr(&o));
    assert!(stdout(&o).contains("before") && !stdout(&o).contains("after"));
    std::thread::sleep(Duration::from_millis(100));
    assert!(processes_of_host(&f.host_dir(h)).is_empty());
    let log = f.commands(h);
    assert!(log.iter().any(|c| c.ev == "end" && c.dropped), "{log:?}");
    // Spent: the next connection works.
    run_ok(&f, h, &with_app(&f, h, "v4.65.0", "docker compose up -d"));
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
fn down_and_owner_death_leave_no_sshd() {
    let f = one("v4.65.0");
    let pids = sshd_pids(f.dir());
    assert!(!pids.is_empty() && pids.iter().all(|&p| pid_alive(p)));
    // An open connection is part of what must go.
    let mut c = f.ssh_command("h-01", "sleep 30").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    f.down();
    assert!(pids.iter().all(|&p| !pid_alive(p)));
    assert!(processes_of_host(&f.host_dir("h-01")).is_empty());
    let _ = c.wait();
    f.down(); // idempotent

    // Owner dies: the supervisor tears the fleet down on its own.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("spec.yml"),
        Spec::new().group("g", "o", 2, "v4.65.0").to_yaml(),
    )
    .unwrap();
    let mut owner = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let out = std::process::Command::new(sim())
        .arg("up")
        .arg("--dir")
        .arg(dir.path().join("fleet"))
        .arg("--spec")
        .arg(dir.path().join("spec.yml"))
        .arg("--owner")
        .arg(owner.id().to_string())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let pids = sshd_pids(&dir.path().join("fleet"));
    assert!(pids.iter().all(|&p| pid_alive(p)));
    owner.kill().unwrap();
    owner.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&p| pid_alive(p)) {
        assert!(Instant::now() < deadline, "sshd survived its owner");
        std::thread::sleep(Duration::from_millis(50));
    }
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
fn stop_host_makes_its_port_stop_answering() {
    let f = Fleet::start(
        Spec::new()
            .group("production", "s", 2, "v4.65.0")
            .with("s-02", HostSpec::own_sshd),
    );
    run_ok(&f, "s-02", "true");
    f.stop_host("s-02");
    let o = f.ssh("s-02", "true");
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("Connection refused"), "{}", stderr(&o));
    run_ok(&f, "s-01", "true");
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
