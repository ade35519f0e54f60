use std::time::Duration;

use super::*;
use crate::events::{Event, HaltReason, Outcome, Stamped};
use crate::ui::sample_run::{self, at, host_finished};

#[test]
fn table_counts_untouched_and_advice() {
    assert_eq!(
        recap(&sample_run::run()),
        "\
RECAP
HOST     OUTCOME  CHANGED  TIME  FAILED STEP
prod-01  ok             1  3.0s
prod-02  skipped        0  2.0s
prod-03  FAILED         0  1.0s  pull the new image

1 ok, 1 skipped, 1 failed, 1 not started in 6.4s (exit code 2)
never started: prod-04

halted after batch 2: 1 of 2 hosts of the batch failed or was unreachable, over max_fail_percentage 0%
next: fix the cause on prod-03, then resume the run with `fleetup run --resume r1` and the same -i: finished hosts are left alone
logs of every host: runs/r1
"
    );
}

#[test]
fn a_deferred_run_after_a_skipped_gate_says_both() {
    let mut events: Vec<Stamped> = sample_run::run()
        .into_iter()
        .filter(|e| !matches!(e.event, Event::Halted { .. } | Event::RunFinished { .. }))
        .collect();
    events.insert(
        1,
        at(
            0,
            Event::GateChecked(crate::events::GateVerdict {
                require_staged: "staging".into(),
                soak: Duration::from_secs(86400),
                verdict: crate::events::Verdict::Skipped,
                detail: "no successful run took stg-1 of `staging` to v2".into(),
                runs: vec![],
            }),
        ),
    );
    events.push(at(
        7,
        Event::Deferred {
            batch: 3,
            of: 3,
            reason: crate::schedule::Deferral::Closed {
                windows: "sat 02:00-05:00 UTC".into(),
            },
            estimate: None,
            next_start: Some("2026-12-05T02:00:00Z".into()),
            next_start_local: Some("Sat 2026-12-05 02:00 UTC".into()),
        },
    ));
    let text = recap(&events);
    assert!(
        text.contains("WARNING: the promotion gate was skipped with --skip-gate (no successful run took stg-1"),
        "{text}"
    );
    assert!(
        text.contains("deferred: batch 3 and the ones after it wait for the next maintenance window (Sat 2026-12-05 02:00 UTC)"),
        "{text}"
    );
    assert!(text.contains("`fleetup run --resume r1`"), "{text}");
}

#[test]
fn rows_follow_the_plan_not_the_order_hosts_finished_in() {
    let text = recap(&sample_run::run());
    let rows: Vec<_> = text.lines().filter(|l| l.starts_with("prod-")).collect();
    assert!(rows[1].starts_with("prod-02") && rows[2].starts_with("prod-03"));
}

#[test]
fn a_failed_rollback_is_called_out_first_and_loudly() {
    let mut events = sample_run::run();
    events.insert(
        15,
        at(
            6,
            host_finished(
                "prod-02",
                Outcome::RollbackFailed,
                3,
                2,
                Some("start the new containers"),
            ),
        ),
    );
    events.retain(|e| !matches!(&e.event, Event::HostFinished { host, outcome: Outcome::Skipped, .. } if host == "prod-02"));
    let text = recap(&events);
    assert!(
        text.contains("prod-02  ROLLBACK FAILED        3  2.0s  start the new containers"),
        "{text}"
    );
    assert!(
        text.contains("1 ok, 1 failed, 1 ROLLBACK FAILED, 1 not started"),
        "{text}"
    );
    let advice: Vec<_> = text.lines().skip_while(|l| !l.starts_with("!!!")).collect();
    assert_eq!(
        advice[0],
        "!!! prod-02 NEEDS ATTENTION NOW: its rollback failed, it may be down; see its log"
    );
    // A host whose rollback failed is not among those to simply fix and retry.
    assert!(
        text.contains("next: fix the cause on prod-03, then resume the run"),
        "{text}"
    );
}

#[test]
fn an_interrupted_run_says_how_to_continue_and_which_hosts_were_cut_short() {
    let mut events: Vec<Stamped> = sample_run::run().into_iter().take(12).collect();
    events.push(at(
        5,
        Event::Stopping {
            reason: HaltReason::Interrupted,
        },
    ));
    events.push(at(5, Event::Aborting));
    events.push(at(
        6,
        Event::RunFinished {
            duration: Duration::from_secs(6),
            untouched: vec!["prod-04".into()],
            exit_code: 99,
        },
    ));
    let text = recap(&events);
    assert!(text.contains("prod-02  UNFINISHED"), "{text}");
    assert!(
        text.contains("1 ok, 2 unfinished, 1 not started in 6.0s (exit code 99)"),
        "{text}"
    );
    assert!(
        text.contains("!!! 2 hosts were interrupted in the middle of their upgrade, check them before running again: prod-02, prod-03"),
        "{text}"
    );
    assert!(
        text.contains("stopped: interrupted by the operator"),
        "{text}"
    );
    assert!(
        text.contains("next: resume the run with `fleetup run --resume r1`"),
        "{text}"
    );
}

#[test]
fn a_clean_run_gives_no_advice() {
    let events: Vec<Stamped> = sample_run::run().into_iter().take(9).collect();
    let mut events = events;
    events.push(at(
        3,
        Event::RunFinished {
            duration: Duration::from_secs(3),
            untouched: vec![],
            exit_code: 0,
        },
    ));
    assert_eq!(
        recap(&events),
        "\
RECAP
HOST     OUTCOME  CHANGED  TIME  FAILED STEP
prod-01  ok             1  3.0s

1 ok in 3.0s (exit code 0)
"
    );
}

#[test]
fn host_names_and_messages_are_neutralised() {
    let events = vec![
        at(
            0,
            Event::BatchStarted {
                batch: 1,
                of: 1,
                canary: false,
                hosts: vec!["evil\x1b]0;x\x07".into()],
            },
        ),
        at(
            1,
            Event::HostFinished {
                host: "evil\x1b]0;x\x07".into(),
                outcome: Outcome::Failed,
                changed: false,
                changed_steps: 0,
                duration: Duration::from_secs(1),
                failed_step: Some("step\x1b[2J".into()),
                message: Some("boom\x1b[H".into()),
                log: "l".into(),
            },
        ),
    ];
    let text = recap(&events);
    assert!(!text.contains('\x1b'), "{text}");
    assert!(text.contains("evil\\x1b]0;x\\x07  FAILED"), "{text}");
    assert!(text.contains("step\\x1b[2J: boom\\x1b[H"), "{text}");
}
