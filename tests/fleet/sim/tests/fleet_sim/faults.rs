//! Tests of injected faults (fail, slow, hang, drop): apart because every failure test of
//! fleetup stands on them, and a hang or drop must leave no process behind: a module of
//! fleet_sim.rs, fleet-sim's own tests.

use crate::fleet::*;
use crate::{one, run_ok, with_app};
use serde_json::json;
use std::time::{Duration, Instant};

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

/// A rule with `serving` holds only while sl-app runs that version, however often it
/// matches: never for another version, every time for its own, and no more once stopped.
#[test]
fn fault_serving_applies_only_while_sl_app_serves_that_version() {
    let f = one("v4.65.0");
    let h = "h-01";
    let only_while = |version: &str| {
        let mut r = rule("docker ps", "fail");
        r["rc"] = json!(7);
        r["scope"] = json!("shim");
        r["serving"] = json!(version);
        r
    };
    f.fault(h, only_while("v4.66.0"));
    run_ok(&f, h, "docker ps");
    f.fault(h, only_while("v4.65.0"));
    for _ in 0..3 {
        assert_eq!(f.ssh(h, "docker ps").status.code(), Some(7));
    }
    run_ok(&f, h, "docker stop sl-app");
    run_ok(&f, h, "docker ps");
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
