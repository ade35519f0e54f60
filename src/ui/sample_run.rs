//! A scripted run for the views' tests: a canary that succeeds, a batch where one host fails
//! with stderr (carrying an escape sequence), a halt, and the run's end with a host never
//! started.

use std::time::Duration;

use crate::events::{Event, HaltReason, Outcome, Stamped, StepStatus};

/// 2026-11-25T04:31:00Z.
pub const T0: u64 = 1_795_581_060_000;

pub fn at(secs: u64, event: Event) -> Stamped {
    Stamped {
        at_ms: T0 + secs * 1000,
        event,
    }
}

pub fn step_started(host: &str, step: usize, name: &str) -> Event {
    Event::StepStarted {
        host: host.into(),
        step,
        of: 2,
        name: name.into(),
        rollback: false,
    }
}

pub fn step_finished(
    host: &str,
    step: usize,
    name: &str,
    status: StepStatus,
    rc: i64,
    ms: u64,
    stderr_tail: &[&str],
) -> Event {
    Event::StepFinished {
        host: host.into(),
        step,
        of: 2,
        name: name.into(),
        rollback: false,
        status,
        rc: Some(rc),
        duration: Duration::from_millis(ms),
        attempts: 1,
        message: None,
        stderr_tail: stderr_tail.iter().map(|s| s.to_string()).collect(),
    }
}

pub fn host_finished(
    host: &str,
    outcome: Outcome,
    changed_steps: usize,
    secs: u64,
    failed_step: Option<&str>,
) -> Event {
    Event::HostFinished {
        host: host.into(),
        outcome,
        changed: changed_steps > 0,
        changed_steps,
        duration: Duration::from_secs(secs),
        failed_step: failed_step.map(Into::into),
        message: None,
        log: format!("runs/r1/{host}.log"),
    }
}

/// The plan of [`run`]: a canary, two hosts, one host, five at once.
pub fn shape() -> crate::state::Shape {
    crate::state::Shape {
        batches: vec![1, 2, 1],
        canary: Some(0),
        forks: 5,
        ..Default::default()
    }
}

pub fn run() -> Vec<Stamped> {
    let mut events = canary();
    events.extend(failing_batch());
    events.extend(halt());
    events
}

/// The run starts, and its canary succeeds.
fn canary() -> Vec<Stamped> {
    use StepStatus::*;
    vec![
        at(
            0,
            Event::RunStarted {
                run_id: "r1".into(),
                playbook: "playbooks/up.yml".into(),
                name: "SimpleLogin upgrade".into(),
                pattern: "production".into(),
                limit: None,
                hosts: 4,
                batches: 3,
                forks: 5,
                run_dir: "runs/r1".into(),
            },
        ),
        at(
            0,
            Event::BatchStarted {
                batch: 1,
                of: 3,
                canary: true,
                hosts: vec!["prod-01".into()],
            },
        ),
        at(
            0,
            Event::HostStarted {
                host: "prod-01".into(),
                batch: 1,
                steps: 2,
            },
        ),
        at(1, step_started("prod-01", 1, "check the version")),
        at(
            1,
            step_finished("prod-01", 1, "check the version", Ok, 0, 300, &[]),
        ),
        at(1, step_started("prod-01", 2, "pull the new image")),
        at(
            3,
            step_finished("prod-01", 2, "pull the new image", Changed, 0, 2100, &[]),
        ),
        at(3, host_finished("prod-01", Outcome::Ok, 1, 3, None)),
        at(
            3,
            Event::BatchFinished {
                batch: 1,
                ok: 1,
                failed: 0,
                unreachable: 0,
            },
        ),
    ]
}

/// One host of the second batch fails with stderr; the other is skipped.
fn failing_batch() -> Vec<Stamped> {
    vec![
        at(
            4,
            Event::BatchStarted {
                batch: 2,
                of: 3,
                canary: false,
                hosts: vec!["prod-02".into(), "prod-03".into()],
            },
        ),
        at(
            4,
            Event::HostStarted {
                host: "prod-02".into(),
                batch: 2,
                steps: 2,
            },
        ),
        at(
            4,
            Event::HostStarted {
                host: "prod-03".into(),
                batch: 2,
                steps: 2,
            },
        ),
        at(5, step_started("prod-03", 2, "pull the new image")),
        at(
            5,
            step_finished(
                "prod-03",
                2,
                "pull the new image",
                StepStatus::Failed,
                1,
                300,
                &["\x1b[31mmanifest unknown\x1b[0m"],
            ),
        ),
        at(
            5,
            host_finished("prod-03", Outcome::Failed, 0, 1, Some("pull the new image")),
        ),
        at(6, host_finished("prod-02", Outcome::Skipped, 0, 2, None)),
        at(
            6,
            Event::BatchFinished {
                batch: 2,
                ok: 1,
                failed: 1,
                unreachable: 0,
            },
        ),
    ]
}

/// The run halts, with a host never started.
fn halt() -> Vec<Stamped> {
    vec![
        at(
            6,
            Event::Halted {
                reason: HaltReason::TooManyFailures {
                    failed: 1,
                    of: 2,
                    max_fail_percentage: 0.0,
                },
                batch: 2,
            },
        ),
        at(
            6,
            Event::RunFinished {
                duration: Duration::from_millis(6_400),
                untouched: vec!["prod-04".into()],
                exit_code: 2,
            },
        ),
    ]
}

/// A writer whose bytes the test reads back after the view has written them.
#[derive(Clone, Default)]
pub struct Capture(pub std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().map(|b| b.clone()).unwrap_or_default()).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
