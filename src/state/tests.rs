use std::time::Duration;

use super::sample::{at, batches, host_finished, host_started, killed_in_batch_2, started};
use super::*;
use crate::events::{Interrupted, Outcome, StepStatus};

fn failed_step(host: &str, ms: u64) -> Stamped {
    at(
        ms,
        Event::StepFinished {
            host: host.into(),
            step: 2,
            of: 3,
            name: "pull".into(),
            rollback: false,
            status: StepStatus::Failed,
            rc: Some(1),
            duration: Duration::from_millis(1),
            attempts: 1,
            message: None,
            stderr_tail: vec!["manifest unknown".into()],
        },
    )
}

fn batch_started(batch: usize, hosts: &[&str]) -> Stamped {
    at(
        1,
        Event::BatchStarted {
            batch,
            of: 3,
            canary: batch == 1,
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        },
    )
}

#[test]
fn where_each_host_stands_after_a_killed_attempt() {
    let state = RunState::of(&killed_in_batch_2());
    let states: Vec<_> = state.host_states().into_iter().collect();
    assert_eq!(
        states,
        [
            ("a".into(), HostState::Finished(Outcome::Ok)),
            ("b".into(), HostState::Finished(Outcome::Skipped)),
            (
                "c".into(),
                HostState::Running {
                    step: Some("stop".into())
                }
            ),
            ("d".into(), HostState::Finished(Outcome::Failed)),
        ]
    );
    assert_eq!(state.host_state("e"), None);
    assert_eq!(state.unfinished(), ["c"]);
    assert_eq!(state.ended(), Ended::Killed);
    assert_eq!(state.worked(), Duration::from_millis(400));
    let left = state.left(&batches());
    assert_eq!(
        (left.finished, left.retry),
        (vec!["a".into(), "b".into()], vec!["c".into(), "d".into()])
    );
    assert_eq!(
        left.interrupted,
        [Interrupted {
            host: "c".into(),
            step: "stop".into()
        }]
    );
}

#[test]
fn a_resumed_attempt_starts_its_own_ending_and_keeps_the_hosts() {
    let mut events = killed_in_batch_2();
    events.push(at(
        1500,
        Event::Halted {
            reason: HaltReason::CanaryFailed { failed: 1 },
            batch: 1,
        },
    ));
    let halted = RunState::of(&events);
    assert_eq!(halted.attempt().stage, Some(Stage::Halted));
    assert!(halted.attempt().stopped_early());
    events.push(started(10_000));
    events.push(host_started("c"));
    let state = RunState::of(&events);
    assert_eq!(state.attempts(), 2);
    assert_eq!(state.attempt(), &Attempt::default());
    assert_eq!(state.ended(), Ended::Killed);
    // The first attempt lasted until its last event, the second so far none.
    assert_eq!(state.worked(), Duration::from_millis(500));
    assert_eq!(state.span(), Duration::from_millis(9_000));
    // Started again: from its pre-flight, no step yet.
    assert_eq!(
        state.host_state("c"),
        Some(HostState::Running { step: None })
    );
}

#[test]
fn a_flight_keeps_its_step_and_failures_until_its_host_ends() {
    let mut state = RunState::of(&killed_in_batch_2());
    state.apply(&failed_step("c", 1500));
    let flight = &state.flights()["c"];
    assert_eq!(flight.step.as_ref().map(|s| s.name.as_str()), Some("stop"));
    assert_eq!(flight.failures.len(), 1);
    assert_eq!(flight.failures[0].stderr_tail, ["manifest unknown"]);
    // A step that did not fail is no failure; a host not in flight keeps none.
    assert_eq!(
        StepFailure::of(&host_finished(1, "c", Outcome::Ok).event),
        None
    );
    state.apply(&failed_step("a", 1500));
    assert!(state.flight("a").is_none());
    let ended = state.hosts_ended();
    state.apply(&host_finished(1600, "c", Outcome::Failed));
    assert!(state.flights().is_empty());
    assert_eq!(state.hosts_ended(), ended + 1);
    assert_eq!(
        state.hosts()["c"].end.as_ref().map(|e| e.outcome),
        Some(Outcome::Failed)
    );
}

#[test]
fn hosts_follow_the_plan_and_finishes_the_order_hosts_ended_in() {
    let events = vec![
        started(0),
        batch_started(2, &["x", "y", "z"]),
        host_started("y"),
        host_started("x"),
        host_finished(300, "x", Outcome::Ok),
        host_finished(200, "y", Outcome::Ok),
    ];
    let state = RunState::of(&events);
    let plan: Vec<_> = state.hosts().keys().map(String::as_str).collect();
    assert_eq!(plan, ["x", "y", "z"]);
    let started: Vec<_> = state.host_states().into_keys().collect();
    assert_eq!(started, ["y", "x"]);
    let finishes: Vec<_> = state.finishes().into_iter().map(|f| f.host).collect();
    assert_eq!(finishes, ["x", "y"]);
    // Without the run's last event, the hosts of started batches never started are left.
    assert_eq!(state.untouched(), ["z"]);
    assert_eq!(
        state.batch().map(|b| (b.number, b.of, b.canary)),
        Some((2, 3, false))
    );
}

#[test]
fn how_an_attempt_ends() {
    let finished = |exit_code| {
        at(
            900,
            Event::RunFinished {
                duration: Duration::from_millis(900),
                untouched: vec!["e".into()],
                exit_code,
            },
        )
    };
    let mut events = vec![started(0)];
    assert_eq!(RunState::of(&[]).ended(), Ended::NotStarted);
    assert_eq!(RunState::of(&events).ended(), Ended::Killed);
    events.push(at(
        10,
        Event::Stopping {
            reason: HaltReason::Interrupted,
        },
    ));
    events.push(at(20, Event::Aborting));
    let stopping = RunState::of(&events);
    assert!(stopping.attempt().aborted);
    assert_eq!(stopping.attempt().stage, Some(Stage::Aborting));
    events.push(finished(99));
    let state = RunState::of(&events);
    assert_eq!(state.ended(), Ended::Interrupted);
    assert!(state.is_finished());
    assert_eq!(state.untouched(), ["e"]);
    assert_eq!(
        RunState::of(&[started(0), finished(0)]).ended(),
        Ended::Completed { exit_code: 0 }
    );
    let pause = [
        started(0),
        at(
            5,
            Event::PauseStarted {
                batch: 1,
                duration: None,
                prompt: true,
                verifying: 0,
            },
        ),
    ];
    assert_eq!(RunState::of(&pause).attempt().stage, Some(Stage::Paused));
    let mut over = pause.to_vec();
    over.push(at(6, Event::PauseFinished { batch: 1 }));
    assert_eq!(RunState::of(&over).attempt().stage, None);
}

#[test]
fn a_resume_names_only_the_earlier_hosts_it_has_no_row_for() {
    let resumed = |finished: &[&str]| {
        at(
            1,
            Event::RunResumed(Resumed {
                run_id: "r".into(),
                attempt: 2,
                finished: finished.iter().map(|h| h.to_string()).collect(),
                retry: vec![],
                interrupted: vec![],
                changes: vec![],
            }),
        )
    };
    let live = RunState::of(&[started(0), resumed(&["a", "b"])]);
    assert_eq!(live.earlier(), ["a", "b"]);
    let mut replayed = killed_in_batch_2();
    replayed.push(started(5000));
    replayed.push(resumed(&["a", "b"]));
    assert!(RunState::of(&replayed).earlier().is_empty());
}
