//! From the fleet-wide pre-flight to each host's turn, against a scripted fleet: one
//! connection per host, the pre-flight's commands run once, and what changed on a host
//! while it waited caught before it is touched. Connections and commands are counted per
//! host, as the hosts saw them.

use std::time::Duration;

use super::scripted::{Reply, Scripted};
use super::tests::{plan, run_turns, Operator, Ran};
use super::{JobOptions, Prompt};
use crate::events::{Event, Outcome, StepStatus};
use crate::plan::Plan;
use crate::transport::Connector as _;

/// A pre-flight whose second step reads the host's state, named as the `recheck` probe.
/// `upgradable` refuses a host whose state is not `v1`.
const RECHECKED: &str = "\
name: t
hosts: all
recheck:
  step: state
  within: 10m
preflight:
  - name: disk
    shell: df
  - name: state
    register: state
    shell: state
  - name: upgradable
    shell: 'test {{ state.stdout }} = v1'
steps:
  - name: upgrade
    shell: upgrade
";

/// What every host prints for `state` unless told otherwise.
fn fleet() -> Scripted {
    ["a", "b", "c"].iter().fold(Scripted::default(), |f, h| {
        f.on(h, "state", Reply::Exit(0, "v1"))
            .on(h, "test v2 = v1", Reply::Exit(1, ""))
    })
}

const PREFLIGHT: [&str; 3] = ["df", "state", "test v1 = v1"];

/// The pre-flight once, then at the host's turn one command: the probe, and the upgrade
/// only if the probe prints what it printed at the pre-flight.
const ONCE: [&str; 4] = ["df", "state", "test v1 = v1", "guard: state + upgrade"];

/// The whole pre-flight again at the host's turn, then the upgrade.
const TWICE: [&str; 7] = [
    "df",
    "state",
    "test v1 = v1",
    "df",
    "state",
    "test v1 = v1",
    "upgrade",
];

fn three_batches() -> Plan {
    plan(&[&["a"], &["b"], &["c"]], false)
}

fn turns(fleet: &Scripted, playbook: &str, operator: Operator, between: &dyn Fn()) -> Ran {
    run_turns(fleet, playbook, &three_batches(), operator, Some(between))
}

#[test]
fn each_host_logs_in_once_and_runs_its_preflight_once() {
    let fleet = fleet();
    let ran = turns(&fleet, RECHECKED, Operator::default(), &|| {});
    assert!(ran.preflight.iter().all(|r| r.outcome == Outcome::Ok));
    for host in ["a", "b", "c"] {
        assert_eq!(ran.outcome(host), Some(Outcome::Ok));
        assert_eq!(fleet.connections(host), 1, "{host}: one login for the run");
        assert_eq!(fleet.ran(host), ONCE, "{host}");
    }
    // The views still see every pre-flight step of the host done (the upgrade changed it).
    let done = |host: &str| {
        let of_host = |e: &&Event| matches!(e, Event::StepFinished { host: h, status: StepStatus::Ok, .. } if h == host);
        ran.events.iter().filter(of_host).count()
    };
    assert_eq!(done("c"), PREFLIGHT.len());
}

#[test]
fn a_host_changed_while_it_waited_is_caught_by_the_whole_preflight_before_it_is_touched() {
    let fleet = fleet();
    let ran = turns(&fleet, RECHECKED, Operator::default(), &|| {
        fleet.answer("b", "state", Reply::Exit(0, "v2"));
    });
    assert_eq!(ran.outcome("b"), Some(Outcome::Failed));
    // The probe saw the change; the whole pre-flight ran again and refused the host.
    let mut expected = PREFLIGHT.to_vec();
    expected.extend(["guard: state", "df", "state", "test v2 = v1"]);
    assert_eq!(fleet.ran("b"), expected);
    assert!(!fleet.ran("b").iter().any(|c| c == "upgrade"));
    assert_eq!(fleet.connections("b"), 1);
    assert_eq!(fleet.ran("a"), ONCE);
}

#[test]
fn findings_older_than_recheck_within_are_not_trusted() {
    let fleet = fleet();
    let stale = RECHECKED.replace("within: 10m", "within: 0s");
    turns(&fleet, &stale, Operator::default(), &|| {
        std::thread::sleep(Duration::from_millis(5));
    });
    assert_eq!(fleet.ran("c"), TWICE);
    assert_eq!(fleet.connections("c"), 1);
}

#[test]
fn without_a_recheck_step_the_whole_preflight_runs_again_on_the_kept_connection() {
    let fleet = fleet();
    let playbook = RECHECKED.replace("recheck:\n  step: state\n  within: 10m\n", "");
    turns(&fleet, &playbook, Operator::default(), &|| {});
    assert_eq!(fleet.ran("b"), TWICE);
    assert_eq!(fleet.connections("b"), 1);
}

#[test]
fn a_connection_that_died_while_its_host_waited_is_opened_again_not_reported_unreachable() {
    for silently in [false, true] {
        let fleet = fleet();
        let ran = turns(&fleet, RECHECKED, Operator::default(), &|| {
            fleet.kill("b", silently);
        });
        assert_eq!(ran.outcome("b"), Some(Outcome::Ok), "silently: {silently}");
        assert_eq!(fleet.connections("b"), 2, "silently: {silently}");
        assert_eq!(fleet.connections("a"), 1);
        // A silent death is found by the probe, which runs again on the new connection.
        assert_eq!(
            fleet.ran("b").last().map(String::as_str),
            Some("guard: state + upgrade")
        );
    }
}

#[test]
fn a_guard_lost_after_its_step_may_have_started_is_not_sent_again() {
    // The verdict never came back, but the upgrade may be running on the host: sending the
    // guard again would run it twice. The host ends unreachable, as a step lost mid-way.
    let fleet = fleet().on("b", "upgrade", Reply::Lose);
    let ran = turns(&fleet, RECHECKED, Operator::default(), &|| {});
    assert_eq!(ran.outcome("b"), Some(Outcome::Unreachable));
    assert_eq!(fleet.connections("b"), 1);
    let guards = fleet
        .ran("b")
        .iter()
        .filter(|c| c.starts_with("guard:"))
        .count();
    assert_eq!(guards, 1);
    assert_eq!(ran.outcome("a"), Some(Outcome::Ok));
}

#[test]
fn a_locked_playbook_reopens_a_connection_found_dead_by_the_lock() {
    let fleet = ["a", "b", "c"].iter().fold(fleet(), |f, h| {
        f.on(h, "echo taken", Reply::Exit(0, "taken\n"))
    });
    let locked = RECHECKED.replace("steps:", "lock:\n  dir: /l\nsteps:");
    let ran = turns(&fleet, &locked, Operator::default(), &|| {
        fleet.kill("c", true);
    });
    assert_eq!(ran.outcome("c"), Some(Outcome::Ok));
    assert_eq!(fleet.connections("c"), 2);
    assert_eq!(fleet.connections("b"), 1);
}

#[test]
fn past_the_budget_the_hosts_needed_last_reconnect_at_their_turn() {
    let fleet = fleet();
    let operator = Operator {
        options: JobOptions {
            waiting_connections: Some(1),
            ..Operator::default().options
        },
        forks: 3,
        ..Operator::default()
    };
    let ran = turns(&fleet, RECHECKED, operator, &|| {});
    assert!(["a", "b", "c"]
        .iter()
        .all(|h| ran.outcome(h) == Some(Outcome::Ok)));
    // `a` goes first: its connection is the one kept, whatever order the pre-flight
    // ended in; the others keep their findings and log in again.
    assert_eq!(fleet.connections("a"), 1);
    assert_eq!(fleet.connections("b"), 2);
    assert_eq!(fleet.connections("c"), 2);
    assert_eq!(fleet.ran("c"), ONCE);
}

#[test]
fn a_preflight_run_alone_keeps_no_connection_for_a_turn() {
    // As `fleetup check` runs it: should a run follow all the same, it starts afresh.
    let fleet = fleet();
    let operator = Operator {
        options: JobOptions {
            preflight_alone: true,
            ..Operator::default().options
        },
        ..Operator::default()
    };
    let ran = turns(&fleet, RECHECKED, operator, &|| {});
    assert!(ran.preflight.iter().all(|r| r.outcome == Outcome::Ok));
    for host in ["a", "b", "c"] {
        assert_eq!(fleet.connections(host), 2, "{host}");
        assert_eq!(fleet.ran(host), TWICE, "{host}: no findings were kept");
    }
}

#[test]
fn a_prompt_closes_the_waiting_connections_and_a_short_pause_keeps_them() {
    for (pause, logins) in [("prompt", 2), ("1ms", 1)] {
        let fleet = fleet();
        let paused = RECHECKED.replace(
            "recheck:",
            &format!("rollout:\n  pause_between_batches: {pause}\nrecheck:"),
        );
        let ran = turns(&fleet, &paused, going_on(|_| {}), &|| {});
        assert_eq!(ran.outcome("c"), Some(Outcome::Ok), "{pause}");
        assert_eq!(fleet.connections("c"), logins, "{pause}");
        assert_eq!(
            fleet.ran("c"),
            ONCE,
            "{pause}: the findings stand either way"
        );
    }
}

/// `RECHECKED` with a `verify:` step, run by the pauses of `rollout` (one of its lines).
fn verified(rollout: &str) -> String {
    RECHECKED.replace(
        "recheck:",
        &format!("rollout:\n  {rollout}\nverify:\n  - name: healthy\n    shell: healthy\nrecheck:"),
    )
}

/// An operator who goes on at every prompt, after `before(batch)`.
fn going_on(before: impl Fn(usize) + Send + Sync + 'static) -> Operator {
    Operator {
        options: JobOptions {
            prompt: Some(Prompt(std::sync::Arc::new(move |batch| {
                before(batch);
                Box::pin(async { true })
            }))),
            ..Operator::default().options
        },
        ..Operator::default()
    }
}

#[test]
fn the_pauses_verify_each_upgraded_host_over_the_connection_of_its_turn() {
    let fleet = fleet();
    let ran = turns(
        &fleet,
        &verified("pause_between_batches: 1ms"),
        Operator::default(),
        &|| {},
    );
    let verified = |times| [&ONCE[..], &["healthy"; 2][..times]].concat();
    // `a` is verified after the first batch and the second, `b` after the second; no
    // pause follows the last.
    for (host, times) in [("a", 2), ("b", 1), ("c", 0)] {
        assert_eq!(ran.outcome(host), Some(Outcome::Ok), "{host}");
        assert_eq!(fleet.ran(host), verified(times), "{host}");
        assert_eq!(fleet.connections(host), 1, "{host}: one login for the run");
    }
    assert_eq!(fleet.kept().open(), 0, "every connection closed at the end");
}

#[test]
fn a_verified_hosts_connection_lost_during_a_prompt_is_opened_again_once() {
    let fleet = fleet();
    let killer = fleet.clone();
    let operator = going_on(move |batch| {
        if batch == 1 {
            killer.kill("a", true);
        }
    });
    let ran = turns(
        &fleet,
        &verified("pause_between_batches: prompt"),
        operator,
        &|| {},
    );
    for host in ["a", "b", "c"] {
        assert_eq!(ran.outcome(host), Some(Outcome::Ok), "{host}");
    }
    // The silent death is found by the first verification, which runs again on a new
    // login (the lost command never reached the host); that one is kept for the next pause.
    assert_eq!(fleet.ran("a"), [&ONCE[..], &["healthy"; 2]].concat());
    assert_eq!(fleet.connections("a"), 2);
    // `b` waited through the first prompt, which closed its connection: it logs in at its
    // turn, and keeps that one for the second prompt.
    assert_eq!(fleet.connections("b"), 2);
    assert_eq!(fleet.ran("b"), [&ONCE[..], &["healthy"]].concat());
}

#[test]
fn hosts_before_the_canary_keep_their_connection_for_its_pause() {
    // Staged hosts go first, in a batch of their own that no pause follows; the canary's
    // pause verifies them.
    let fleet = fleet();
    let mut staged_first = three_batches();
    staged_first.batches[1].canary = true;
    let paused = verified("pause_after_canary: 1ms");
    let ran = run_turns(
        &fleet,
        &paused,
        &staged_first,
        Operator::default(),
        Some(&|| {}),
    );
    for (host, verified) in [("a", 1), ("b", 1), ("c", 0)] {
        assert_eq!(ran.outcome(host), Some(Outcome::Ok), "{host}");
        let times = fleet.ran(host).iter().filter(|c| *c == "healthy").count();
        assert_eq!(times, verified, "{host}");
        assert_eq!(fleet.connections(host), 1, "{host}");
    }
}

#[test]
fn a_verification_that_fails_or_loses_its_connection_mid_way_is_not_run_again() {
    for (deep, outcome) in [(Reply::Exit(1, ""), "failed"), (Reply::Lose, "lost")] {
        let fleet = fleet().on("a", "deep", deep);
        let playbook = verified("pause_between_batches: 1ms").replace(
            "    shell: healthy\n",
            "    shell: healthy\n  - name: deep\n    shell: deep\n",
        );
        let ran = turns(&fleet, &playbook, Operator::default(), &|| {});
        // The first pause halts the run on `a`; `b` never starts.
        assert_eq!(ran.outcome("b"), None, "{outcome}");
        let ran_a = fleet.ran("a");
        assert_eq!(
            ran_a.iter().filter(|c| *c == "healthy").count(),
            1,
            "{outcome}"
        );
        assert_eq!(fleet.connections("a"), 1, "{outcome}");
        assert_eq!(fleet.kept().open(), 0, "{outcome}");
    }
}

/// `RECHECKED` with a lock, and a last step after the upgrade.
fn locked() -> String {
    RECHECKED.replace("steps:", "lock:\n  dir: /l\nsteps:")
        + "  - name: finish\n    shell: finish\n"
}

fn lockable() -> Scripted {
    ["a", "b", "c"].iter().fold(fleet(), |f, h| {
        f.on(h, "echo taken", Reply::Exit(0, "taken\n"))
    })
}

#[test]
fn a_locked_host_runs_the_preflight_and_its_steps_once_with_the_lock_riding_first_and_last() {
    let fleet = lockable();
    let ran = turns(&fleet, &locked(), Operator::default(), &|| {});
    for host in ["a", "b", "c"] {
        assert_eq!(ran.outcome(host), Some(Outcome::Ok), "{host}");
        let mut expected = PREFLIGHT.to_vec();
        expected.extend(["guard: lock + state + upgrade", "ride: finish + release"]);
        // The pre-flight's steps, and the playbook's: nothing more.
        assert_eq!(fleet.ran(host), expected, "{host}");
    }
    // The views see the pre-flight stand before the upgrade starts.
    let of_c: Vec<String> = ran
        .events
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { host, name, .. } if host == "c" => Some(format!("start {name}")),
            Event::StepFinished { host, name, .. } if host == "c" => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        of_c,
        [
            "disk",
            "state",
            "upgradable",
            "start upgrade",
            "upgrade",
            "start finish",
            "finish"
        ]
    );
}

#[test]
fn a_failed_last_step_keeps_the_lock_until_the_release_of_its_own_outcome() {
    let fleet = lockable().on("b", "finish", Reply::Exit(1, ""));
    let ran = turns(&fleet, &locked(), Operator::default(), &|| {});
    assert_eq!(ran.outcome("b"), Some(Outcome::Failed));
    let ran_b = fleet.ran("b");
    assert_eq!(ran_b[4], "ride: finish");
    // The release of the failed host, on its own, with its audit line.
    assert!(ran_b[5].contains("outcome=failed"), "{ran_b:?}");
    assert_eq!(ran_b.len(), 6);
}

#[test]
fn a_host_locked_by_another_run_at_its_turn_is_refused_and_left_untouched() {
    let fleet = lockable();
    let ran = turns(&fleet, &locked(), Operator::default(), &|| {
        fleet.answer("b", "echo taken", Reply::Exit(0, HELD));
    });
    assert_eq!(ran.outcome("b"), Some(Outcome::Failed));
    let ran_b = fleet.ran("b");
    // The guard found the lock held and ran nothing; the lock was then judged as without
    // the guard, with a look of its own.
    assert_eq!(ran_b[3], "guard: lock");
    assert!(ran_b[4].contains("echo taken"));
    assert_eq!(ran_b.len(), 5, "{ran_b:?}");
    assert_eq!(fleet.ran("a").len(), 5);
}

#[test]
fn a_host_changed_before_its_locked_turn_keeps_the_lock_and_runs_its_preflight_again() {
    let fleet = lockable();
    let ran = turns(&fleet, &locked(), Operator::default(), &|| {
        fleet.answer("b", "state", Reply::Exit(0, "v2"));
    });
    assert_eq!(ran.outcome("b"), Some(Outcome::Failed));
    let mut expected = PREFLIGHT.to_vec();
    expected.extend(["guard: lock + state", "df", "state", "test v2 = v1"]);
    let ran_b = fleet.ran("b");
    assert_eq!(ran_b[..7], expected);
    // Then only the lock's release: the upgrade never ran.
    assert!(ran_b[7].contains("outcome=failed"), "{ran_b:?}");
    assert_eq!(ran_b.len(), 8);
}

/// Another run's lock, from another controller, taken a minute ago.
const HELD: &str = "held 60\n{\"run_id\":\"other\",\"operator\":\"bob\",\"controller\":\"elsewhere\",\"pid\":7,\"started\":4102444800}\n";

#[test]
fn a_host_with_no_step_to_run_sends_its_lock_and_probe_as_one_command() {
    let fleet = lockable();
    let nothing = locked().replace(
        "    shell: upgrade\n",
        "    when: false\n    shell: upgrade\n",
    );
    let nothing = nothing.replace(
        "    shell: finish\n",
        "    when: false\n    shell: finish\n",
    );
    let ran = turns(&fleet, &nothing, Operator::default(), &|| {});
    assert_eq!(ran.outcome("a"), Some(Outcome::Skipped));
    let ran_a = fleet.ran("a");
    assert_eq!(
        ran_a[..4],
        [&PREFLIGHT[..], &["guard: lock + state"]].concat()
    );
    // The release, on its own: no step ran to carry it.
    assert!(ran_a[4].contains("outcome=skipped"), "{ran_a:?}");
    assert_eq!(ran_a.len(), 5);
}

/// A `no_log` step carried by the turn's guard, as the first step of a later batch: its
/// command and what it printed stay out of the host's log, which still names it.
#[test]
fn a_no_log_step_carried_by_the_guard_keeps_its_command_and_output_out_of_the_log() {
    let fleet = fleet().on(
        "b",
        "upgrade --password",
        Reply::Exit(0, "hunter2 accepted"),
    );
    let playbook = RECHECKED.replace(
        "    shell: upgrade\n",
        "    shell: upgrade --password hunter2\n    no_log: true\n",
    );
    let ran = turns(&fleet, &playbook, Operator::default(), &|| {});
    assert_eq!(ran.outcome("b"), Some(Outcome::Ok));
    assert_eq!(
        fleet.ran("b")[3],
        "guard: state + upgrade --password hunter2"
    );
    let log = ran.host_log("b");
    assert!(!log.contains("hunter2"), "{log}");
    assert!(
        log.contains("] upgrade\n$ (hidden: no_log)\n(output hidden: no_log)"),
        "{log}"
    );
}
