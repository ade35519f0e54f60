//! The fleet-wide read-only pre-flight (`run`, `check`) and `fleetup status`, on the test
//! fleet: an unhealthy fleet is known before the canary starts, and nothing is changed.

mod fleet;

use std::process::{Command, Output};

use fleet::{rule, Fleet, HostSpec, Spec};

const PLAYBOOK: &str = "playbooks/simplelogin-upgrade.yml";

fn fleetup(fleet: &Fleet, args: &[&str]) -> Output {
    let inventory = fleet.inventory_path();
    let known_hosts = fleet.known_hosts_path();
    Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .args([
            "-i",
            inventory.to_str().unwrap(),
            "--known-hosts",
            known_hosts.to_str().unwrap(),
        ])
        .output()
        .expect("fleetup runs")
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A command that changes a simulated host. The pre-flight's throw-away container that reads
/// an image's migrations (`docker run --rm --network none IMAGE alembic heads`) changes
/// nothing.
fn changed_anything(fleet: &Fleet, host: &str) -> bool {
    fleet.commands(host).iter().any(|c| {
        if c.cmd.contains("docker run --rm --network none") {
            return false;
        }
        [
            "docker pull",
            "docker stop",
            "docker rm",
            "docker run",
            "compose up",
            "pg_dump",
        ]
        .iter()
        .any(|p| c.cmd.contains(p))
    })
}

fn mixed() -> Spec {
    Spec::new()
        .host(HostSpec::new("stg-1", "staging", "v4.64.2"))
        .host(HostSpec::new("prod-1", "production", "v4.65.0").canary())
        .host(HostSpec::new("prod-2", "production", "v4.66.1"))
        .host(HostSpec::new("prod-3", "production", "v4.65.0").own_sshd())
}

#[test]
fn status_shows_versions_health_and_a_count_per_version() {
    let fleet = Fleet::start(mixed());
    let out = fleetup(&fleet, &["status"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "HOST",
            "PRE-FLIGHT",
            "LAYOUT",
            "VERSION",
            "SCHEMA",
            "CONTAINERS",
            "HEALTH",
            "LAST",
            "BACKUP"
        ]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["prod-2", "ok", "compose", "v4.66.1", "ok", "3/3", "up", "success", "none"]),
        "{stdout}"
    );
    assert!(
        stdout.contains("v4.65.0: 2 hosts · v4.64.2: 1 host · v4.66.1: 1 host"),
        "{stdout}"
    );
    for h in ["stg-1", "prod-1", "prod-2", "prod-3"] {
        assert!(!changed_anything(&fleet, h), "{h}: status is read-only");
    }

    fleet.stop_host("prod-3");
    let out = fleetup(&fleet, &["status"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(4));
    assert!(stdout.contains("prod-3  UNREACHABLE"), "{stdout}");
    assert!(stdout.contains("unreachable: 1 host"), "{stdout}");
}

#[test]
fn an_unreachable_host_stops_the_run_before_the_canary_unless_excluded() {
    let fleet = Fleet::start(mixed());
    fleet.stop_host("prod-3");
    let args = ["run", PLAYBOOK, "-e", "sl_version=v4.66.1", "--yes"];
    let out = fleetup(&fleet, &args);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stdout}{stderr}");
    let words = |host: &str| -> String {
        let line = stdout.lines().find(|l| l.starts_with(host)).unwrap_or("");
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert_eq!(
        words("prod-1"),
        "prod-1 ok compose v4.65.0 ok 3/3 up success upgrade from v4.65.0 to v4.66.1",
        "{stdout}"
    );
    assert_eq!(
        words("prod-2"),
        "prod-2 ok compose v4.66.1 ok 3/3 up success skip: already at v4.66.1",
        "{stdout}"
    );
    assert!(stdout.contains("prod-3  UNREACHABLE"), "{stdout}");
    assert!(stderr.contains("the run does not start"), "{stderr}");
    for h in ["stg-1", "prod-1", "prod-2"] {
        assert!(
            !changed_anything(&fleet, h),
            "{h} was changed although the run did not start"
        );
    }

    let out = fleetup(&fleet, &[&args[..], &["--exclude-unhealthy"]].concat());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains("WARNING: --exclude-unhealthy: 1 host LEFT OUT of this run: prod-3"),
        "{stderr}"
    );
    assert!(changed_anything(&fleet, "prod-1") && changed_anything(&fleet, "stg-1"));
    assert!(!stdout.contains("prod-3  ok"), "{stdout}");
    let runs = fleet.dir().join(".fleetup/runs");
    let recorded = std::fs::read_dir(&runs)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("excluded.txt")).ok())
        .collect::<Vec<_>>();
    assert_eq!(
        recorded.len(),
        1,
        "the exclusion is recorded in the run's directory"
    );
    assert!(recorded[0].contains("prod-3"));
}

#[test]
fn a_failed_pre_flight_stops_the_run_with_exit_2_and_check_shows_it() {
    let fleet = Fleet::start(mixed());
    fleet.fault("stg-1", rule("df -Pm", "fail"));
    let out = fleetup(
        &fleet,
        &["run", PLAYBOOK, "-e", "sl_version=v4.66.1", "--yes"],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    // What the host told before its probe failed, then why.
    let row = |out: &str, host: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.starts_with(host))
            .unwrap_or_default();
        line.split_whitespace().collect::<Vec<_>>().join(" ")
    };
    let refused = "probe the host: fleet-sim: injected failure";
    let stg = row(&stdout, "stg-1");
    assert!(stg.starts_with("stg-1 FAILED compose"), "{stdout}");
    assert!(stg.contains(refused), "{stdout}");
    for h in ["stg-1", "prod-1", "prod-2", "prod-3"] {
        assert!(!changed_anything(&fleet, h), "{h}");
    }
    let out = fleetup(&fleet, &["check", PLAYBOOK, "-e", "sl_version=v4.66.1"]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("pre-flight (read-only) of every host"),
        "{stdout}"
    );
    assert!(row(&stdout, "stg-1").contains(refused), "{stdout}");
}
