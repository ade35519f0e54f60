//! A killed run's journal and its plan, for the tests of what is read back from events
//! (the run's state, a resume, `history`'s summary).

use std::time::Duration;

use crate::events::{Event, Outcome, Stamped, StepStatus};
use crate::plan::Batch;

pub fn at(ms: u64, event: Event) -> Stamped {
    Stamped { at_ms: ms, event }
}

pub fn started(ms: u64) -> Stamped {
    at(
        ms,
        Event::RunStarted {
            run_id: "r".into(),
            playbook: "p".into(),
            name: "n".into(),
            pattern: "all".into(),
            limit: None,
            hosts: 4,
            batches: 2,
            forks: 2,
            run_dir: "d".into(),
        },
    )
}

pub fn host_started(host: &str) -> Stamped {
    at(
        1,
        Event::HostStarted {
            host: host.into(),
            batch: 1,
            steps: 3,
        },
    )
}

pub fn step_started(host: &str, name: &str) -> Stamped {
    at(
        2,
        Event::StepStarted {
            host: host.into(),
            step: 1,
            of: 3,
            name: name.into(),
            rollback: false,
        },
    )
}

pub fn host_finished(ms: u64, host: &str, outcome: Outcome) -> Stamped {
    at(
        ms,
        Event::HostFinished {
            host: host.into(),
            outcome,
            changed: true,
            changed_steps: 1,
            duration: Duration::from_millis(5),
            failed_step: None,
            message: None,
            log: "l".into(),
        },
    )
}

pub fn batches() -> Vec<Batch> {
    vec![
        Batch {
            hosts: vec!["a".into()],
            canary: true,
            staged: false,
        },
        Batch {
            hosts: vec!["b".into(), "c".into(), "d".into()],
            canary: false,
            staged: false,
        },
        Batch {
            hosts: vec!["e".into()],
            canary: false,
            staged: false,
        },
    ]
}

/// A run killed in batch 2: `a` and `b` done, `c` in its pull, `d` failed earlier.
pub fn killed_in_batch_2() -> Vec<Stamped> {
    vec![
        started(1000),
        host_started("a"),
        host_finished(1100, "a", Outcome::Ok),
        host_started("b"),
        host_started("c"),
        host_started("d"),
        step_started("c", "pull"),
        host_finished(1200, "b", Outcome::Skipped),
        host_finished(1300, "d", Outcome::Failed),
        at(
            1400,
            Event::StepFinished {
                host: "c".into(),
                step: 1,
                of: 3,
                name: "pull".into(),
                rollback: false,
                status: StepStatus::Changed,
                rc: Some(0),
                duration: Duration::from_millis(1),
                attempts: 1,
                message: None,
                stderr_tail: vec![],
            },
        ),
        step_started("c", "stop"),
    ]
}
