//! Tests of taking a fleet (or one host) down: `down`, the owner's death, `stop-host`.
//! Apart because a fleet that outlives its test leaks sshds into every later one: a module
//! of fleet_sim.rs, fleet-sim's own tests.

use crate::fleet::*;
use crate::{one, run_ok};
use std::time::{Duration, Instant};

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
