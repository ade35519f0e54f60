//! One connection per host for the whole run (issue 19): one login, the pre-flight's
//! commands once, and what its findings are still worth at the host's turn.

use std::path::PathBuf;
use std::time::Duration;

use fleetup::events::{Event, Outcome};
use fleetup::play::PlayInputs;

use super::fleet::{self, Fleet, HostSpec, Spec};
use super::fleetup_cli::{is_state_changing, PLAYBOOK};
use super::{outcomes, run_on, run_with};

/// The shipped upgrade to v4.66.1.
fn shipped(i: &mut PlayInputs) {
    i.playbook = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(PLAYBOOK);
    i.extra_vars = vec![
        "sl_version=v4.66.1".into(),
        r#"{"sl_health_timeout": 5}"#.into(),
    ];
}

/// "Accepted publickey" lines in the log of `host`'s own sshd: its logins.
fn logins(fleet: &Fleet, host: &str) -> usize {
    let info: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fleet.dir().join("fleet.json")).unwrap())
            .unwrap();
    let port = serde_json::json!(fleet.port(host));
    let sshds = info["sshds"].as_array().unwrap();
    let own = sshds
        .iter()
        .find(|s| s["ports"] == serde_json::json!([port]));
    let log = own.unwrap_or_else(|| panic!("{host} has no sshd of its own"))["log"].clone();
    let log = std::fs::read_to_string(log.as_str().unwrap()).unwrap();
    log.matches("Accepted publickey").count()
}

/// Sessions (SSH commands) `host` ran whose command contains `text`.
fn sessions(fleet: &Fleet, host: &str, text: &str) -> usize {
    let commands = fleet.commands(host).into_iter();
    let started = commands.filter(|c| c.kind == "session" && c.ev == "start");
    started.filter(|c| c.cmd.contains(text)).count()
}

/// The shipped upgrade with its fleet-wide pre-flight first, as `fleetup run` does it: one
/// login per host, the pre-flight's commands run once (only `recheck`'s probe again, in
/// the first step's command), no command beyond the pre-flight's and the steps', and
/// a host changed while it waited (its sl-app container removed) is caught by the whole
/// pre-flight at its turn, before anything changes it.
#[test]
fn one_login_per_host_and_a_host_changed_while_it_waited_is_caught_before_it_is_touched() {
    let spec = ["w-01", "w-02", "w-03"].iter().fold(Spec::new(), |s, h| {
        s.host(HostSpec::new(h, "production", "v4.65.0").own_sshd())
    });
    let fleet = Fleet::start(spec);
    let changed_at = std::cell::Cell::new(0.0);
    let change = || {
        let out = fleet.ssh("w-02", "docker rm -f sl-app");
        assert!(out.status.success(), "{}", fleet::stderr(&out));
        let log = fleet.commands("w-02");
        changed_at.set(log.last().map_or(0.0, |c| c.t));
    };
    let run = run_with(&fleet, "", shipped, false, Some(&change));
    let outcomes = outcomes(&run);
    assert_eq!(outcomes["w-01"], Outcome::Ok);
    assert_eq!(outcomes["w-03"], Outcome::Ok);
    assert_eq!(outcomes["w-02"], Outcome::Failed);
    let touched = fleet
        .commands("w-02")
        .into_iter()
        .filter(|c| c.t > changed_at.get());
    let touched: Vec<String> = touched.filter(is_state_changing).map(|c| c.cmd).collect();
    assert!(
        touched.is_empty(),
        "w-02 was changed at its turn: {touched:?}"
    );
    // The test's own `ssh` is w-02's second login.
    assert_eq!(
        [1, 2, 1],
        ["w-01", "w-02", "w-03"].map(|h| logins(&fleet, h))
    );
    let docker_info = "docker info --format";
    let discover = "# An upgrade cut short (fleetup killed";
    for host in ["w-01", "w-03"] {
        assert_eq!(sessions(&fleet, host, docker_info), 1, "{host}");
        assert_eq!(
            sessions(&fleet, host, discover),
            2,
            "{host}: the probe again"
        );
        // Pre-flight 4 + the 11 steps: 15. The lock and the probe ride in the first
        // step's command, the release in the last's (18 before issue 19's guard).
        assert_eq!(sessions(&fleet, host, ""), 15, "{host}");
        assert_eq!(
            sessions(&fleet, host, "echo taken"),
            1,
            "{host}: the lock once"
        );
        assert_eq!(
            sessions(&fleet, host, "audit.log"),
            1,
            "{host}: the release once"
        );
    }
    assert_eq!(
        sessions(&fleet, "w-02", docker_info),
        2,
        "the whole pre-flight again"
    );
}

/// springcomp's compose file gives sl-db a healthcheck every 10 s, and `docker inspect`
/// lists its last five probes with their times: such a host reads differently every 10 s
/// while nothing on it changes. A turn that comes after a probe still finds the host as
/// its pre-flight did, so the pre-flight runs once.
#[test]
fn a_healthcheck_probing_while_the_host_waits_is_no_change() {
    let spec = Spec::new().host(
        HostSpec::new("hc-01", "production", "v4.65.0")
            .layout("springcomp")
            .own_sshd(),
    );
    let fleet = Fleet::start(spec);
    let probes = || {
        let log = "docker inspect --format '{{json .State.Health.Log}}' sl-db";
        let out = fleet.ssh("hc-01", log);
        assert!(out.status.success(), "{}", fleet::stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let wait_for_a_probe = || {
        let before = probes();
        std::thread::sleep(Duration::from_secs(11));
        assert_ne!(before, probes(), "sl-db was probed while hc-01 waited");
    };
    let run = run_with(&fleet, "", shipped, false, Some(&wait_for_a_probe));
    assert_eq!(outcomes(&run)["hc-01"], Outcome::Ok, "{:?}", run.events);
    let preflight = sessions(&fleet, "hc-01", "docker info --format");
    assert_eq!(preflight, 1, "the pre-flight once");
}

/// The shipped upgrade with a pause between batches of one host: each pause verifies the
/// hosts upgraded so far over the connection their turn used, kept for it, and no host
/// logs in twice.
#[test]
fn the_pauses_verify_upgraded_hosts_over_the_connection_of_their_turn() {
    let spec = ["v-01", "v-02", "v-03"].iter().fold(Spec::new(), |s, h| {
        s.host(HostSpec::new(h, "production", "v4.65.0").own_sshd())
    });
    let fleet = Fleet::start(spec);
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(PLAYBOOK);
    let facts = shipped.with_file_name("simplelogin-facts.yml");
    std::fs::copy(&facts, fleet.tmp().join("simplelogin-facts.yml")).unwrap();
    let text = std::fs::read_to_string(&shipped).unwrap();
    let paused = fleet.tmp().join("paused.yml");
    let with_pause = text.replacen("\nrollout:", "\nrollout:\n  pause_between_batches: 1s", 1);
    std::fs::write(&paused, with_pause).unwrap();
    let run = run_on(
        &fleet,
        "",
        |i| {
            i.playbook = paused;
            i.overrides.serial = Some("1".parse().unwrap());
            i.extra_vars = vec![
                "sl_version=v4.66.1".into(),
                r#"{"sl_health_timeout": 5, "sl_settle": 1}"#.into(),
            ];
        },
        false,
    );
    assert!(
        outcomes(&run).values().all(|o| *o == Outcome::Ok),
        "{:?}",
        run.events
    );
    let verified = |host: &str| {
        let of_host =
            |e: &&Event| matches!(e, Event::HostVerified { host: h, ok: true, .. } if h == host);
        run.events.iter().filter(of_host).count()
    };
    assert_eq!([2, 1, 0], ["v-01", "v-02", "v-03"].map(verified));
    assert_eq!(
        [1, 1, 1],
        ["v-01", "v-02", "v-03"].map(|h| logins(&fleet, h))
    );
}
