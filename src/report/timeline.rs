//! What the report's timeline shows, folded from the journal's events: each attempt of the
//! run on its own time axis, its batches, one row per host with a bar per step, and the
//! moments that held the run back (pauses, the halt, deferrals, the operator's stop).
//! Pure: events in, shapes out.

use std::time::Duration;

use crate::events::{Event, Outcome, Stamped, StepStatus};
use crate::ui::text::{deferral, halt_reason};

/// How a step's bar is coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Ok,
    Changed,
    Skipped,
    Failed,
    Unreachable,
    /// A step of the rollback.
    RolledBack,
    /// Started and never finished: the attempt ended (killed, abandoned) while it ran.
    Interrupted,
}

impl Kind {
    pub fn of(status: StepStatus, rollback: bool) -> Kind {
        match (rollback, status) {
            (_, StepStatus::Failed) => Kind::Failed,
            (_, StepStatus::Unreachable) => Kind::Unreachable,
            (true, _) => Kind::RolledBack,
            (false, StepStatus::Ok) => Kind::Ok,
            (false, StepStatus::Changed) => Kind::Changed,
            (false, StepStatus::Skipped) => Kind::Skipped,
        }
    }

    /// The CSS class and the legend's word.
    pub fn class(self) -> &'static str {
        match self {
            Kind::Ok => "ok",
            Kind::Changed => "changed",
            Kind::Skipped => "skipped",
            Kind::Failed => "failed",
            Kind::Unreachable => "unreachable",
            Kind::RolledBack => "rolledback",
            Kind::Interrupted => "interrupted",
        }
    }
}

/// One step on a host's row.
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    pub start_ms: u64,
    pub end_ms: u64,
    pub label: String,
    pub kind: Kind,
    /// Why it failed, in the engine's words.
    pub message: Option<String>,
}

/// A host's row in one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub host: String,
    pub bars: Vec<Bar>,
    pub outcome: Option<Outcome>,
    pub duration: Option<Duration>,
}

/// A batch as one attempt ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRows {
    pub number: usize,
    pub of: usize,
    pub canary: bool,
    pub rows: Vec<Row>,
}

/// A moment or a span on the time axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    pub start_ms: u64,
    /// `None`: an instant.
    pub end_ms: Option<u64>,
    pub kind: MarkKind,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkKind {
    Pause,
    Halt,
    Deferral,
    Stop,
}

impl MarkKind {
    pub fn class(self) -> &'static str {
        match self {
            MarkKind::Pause => "pause",
            MarkKind::Halt => "halt",
            MarkKind::Deferral => "deferral",
            MarkKind::Stop => "stop",
        }
    }
}

/// One `run_started` and what followed until the next.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Attempt {
    pub number: usize,
    pub start_ms: u64,
    pub end_ms: u64,
    pub batches: Vec<BatchRows>,
    pub marks: Vec<Mark>,
}

/// The attempts of a run, in order.
pub fn attempts(events: &[Stamped]) -> Vec<Attempt> {
    let mut out: Vec<Attempt> = Vec::new();
    for e in events {
        if let Event::RunStarted { .. } = e.event {
            close(out.last_mut());
            out.push(Attempt {
                number: out.len() + 1,
                start_ms: e.at_ms,
                end_ms: e.at_ms,
                ..Attempt::default()
            });
        }
        if let Some(a) = out.last_mut() {
            a.end_ms = a.end_ms.max(e.at_ms);
            a.apply(e);
        }
    }
    close(out.last_mut());
    out
}

/// Steps still open when an attempt ended were cut short by its end.
fn close(attempt: Option<&mut Attempt>) {
    let Some(a) = attempt else { return };
    let end = a.end_ms;
    for bar in a
        .batches
        .iter_mut()
        .flat_map(|b| &mut b.rows)
        .flat_map(|r| &mut r.bars)
    {
        if bar.kind == Kind::Interrupted {
            bar.end_ms = end;
        }
    }
    for mark in &mut a.marks {
        if mark.kind == MarkKind::Pause && mark.end_ms.is_none() {
            mark.end_ms = Some(end);
        }
    }
}

impl Attempt {
    fn apply(&mut self, e: &Stamped) {
        let at = e.at_ms;
        match &e.event {
            Event::BatchStarted {
                batch,
                of,
                canary,
                hosts,
            } => self.batches.push(BatchRows {
                number: *batch,
                of: *of,
                canary: *canary,
                rows: hosts.iter().map(|h| Row::new(h)).collect(),
            }),
            Event::StepStarted {
                host,
                step,
                of,
                name,
                rollback,
            } => {
                let label = crate::ui::text::step_label(*step, *of, *rollback);
                self.row(host).bars.push(Bar {
                    start_ms: at,
                    end_ms: at,
                    label: format!("{label} {name}"),
                    kind: Kind::Interrupted,
                    message: None,
                });
            }
            Event::StepFinished { .. } => self.step_finished(at, &e.event),
            Event::HostFinished {
                host,
                outcome,
                duration,
                ..
            } => {
                let row = self.row(host);
                row.outcome = Some(*outcome);
                row.duration = Some(*duration);
            }
            _ => self.mark(at, &e.event),
        }
    }

    fn step_finished(&mut self, at: u64, e: &Event) {
        let Event::StepFinished {
            host,
            rollback,
            status,
            message,
            stderr_tail,
            ..
        } = e
        else {
            return;
        };
        let row = self.row(host);
        if let Some(bar) = row
            .bars
            .iter_mut()
            .rev()
            .find(|b| b.kind == Kind::Interrupted)
        {
            bar.end_ms = at;
            bar.kind = Kind::of(*status, *rollback);
            bar.message = message.clone().or_else(|| stderr_tail.last().cloned());
        }
    }

    /// The host's row in its batch (a row of its own when no batch named it).
    fn row(&mut self, host: &str) -> &mut Row {
        let found = self
            .batches
            .iter()
            .rposition(|b| b.rows.iter().any(|r| r.host == host));
        let batch = match found {
            Some(i) => i,
            None => {
                if self.batches.is_empty() {
                    self.batches.push(BatchRows {
                        number: 0,
                        of: 0,
                        canary: false,
                        rows: Vec::new(),
                    });
                }
                let last = self.batches.len() - 1;
                self.batches[last].rows.push(Row::new(host));
                last
            }
        };
        let rows = &mut self.batches[batch].rows;
        let i = rows.iter().position(|r| r.host == host).unwrap_or(0);
        &mut rows[i]
    }

    fn mark(&mut self, at: u64, e: &Event) {
        let (kind, text) = match e {
            Event::PauseStarted { batch, .. } => {
                (MarkKind::Pause, format!("pause after batch {batch}"))
            }
            Event::PauseFinished { .. } => {
                if let Some(m) = self
                    .marks
                    .iter_mut()
                    .rev()
                    .find(|m| m.kind == MarkKind::Pause)
                {
                    m.end_ms = Some(at);
                }
                return;
            }
            Event::Halted { reason, batch } => (
                MarkKind::Halt,
                format!("halted after batch {batch}: {}", halt_reason(reason)),
            ),
            Event::Deferred {
                batch,
                reason,
                estimate,
                ..
            } => (
                MarkKind::Deferral,
                format!("batch {batch} deferred: {}", deferral(reason, *estimate)),
            ),
            Event::Stopping { reason } => {
                (MarkKind::Stop, format!("stopping: {}", halt_reason(reason)))
            }
            Event::Aborting => (MarkKind::Stop, "aborting".to_string()),
            Event::Abandoning => (MarkKind::Stop, "abandoning".to_string()),
            _ => return,
        };
        self.marks.push(Mark {
            start_ms: at,
            end_ms: None,
            kind,
            text,
        });
    }
}

impl Row {
    fn new(host: &str) -> Row {
        Row {
            host: host.to_string(),
            bars: Vec::new(),
            outcome: None,
            duration: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::HaltReason;
    use crate::state::sample::{at, started};

    fn step(ms: u64, host: &str, n: usize, rollback: bool, status: Option<StepStatus>) -> Stamped {
        let name = format!("step {n}");
        at(
            ms,
            match status {
                None => Event::StepStarted {
                    host: host.into(),
                    step: n,
                    of: 2,
                    name,
                    rollback,
                },
                Some(status) => Event::StepFinished {
                    host: host.into(),
                    step: n,
                    of: 2,
                    name,
                    rollback,
                    status,
                    rc: Some(0),
                    duration: Duration::from_millis(1),
                    attempts: 1,
                    message: None,
                    stderr_tail: vec!["boom".into()],
                },
            },
        )
    }

    fn batch(ms: u64, n: usize, hosts: &[&str]) -> Stamped {
        at(
            ms,
            Event::BatchStarted {
                batch: n,
                of: 2,
                canary: n == 1,
                hosts: hosts.iter().map(|h| h.to_string()).collect(),
            },
        )
    }

    #[test]
    fn each_attempt_has_its_batches_rows_bars_and_marks() {
        let events = vec![
            started(0),
            batch(0, 1, &["a"]),
            step(10, "a", 1, false, None),
            step(20, "a", 1, false, Some(StepStatus::Changed)),
            step(20, "a", 2, false, None),
            step(30, "a", 2, false, Some(StepStatus::Failed)),
            step(31, "a", 1, true, None),
            step(40, "a", 1, true, Some(StepStatus::Ok)),
            at(
                50,
                Event::Halted {
                    reason: HaltReason::CanaryFailed { failed: 1 },
                    batch: 1,
                },
            ),
            started(1000),
            batch(1000, 2, &["b"]),
            step(1010, "b", 1, false, None),
        ];
        let attempts = attempts(&events);
        assert_eq!(attempts.len(), 2);
        let first = &attempts[0];
        let kinds: Vec<Kind> = first.batches[0].rows[0]
            .bars
            .iter()
            .map(|b| b.kind)
            .collect();
        assert_eq!(kinds, vec![Kind::Changed, Kind::Failed, Kind::RolledBack]);
        assert_eq!(
            first.batches[0].rows[0].bars[1].message.as_deref(),
            Some("boom")
        );
        assert_eq!(first.marks[0].kind, MarkKind::Halt);
        assert!(first.marks[0]
            .text
            .starts_with("halted after batch 1: the canary"));
        // The second attempt was killed in its step: the bar runs to its last event.
        let second = &attempts[1];
        assert_eq!((second.number, second.start_ms), (2, 1000));
        let bar = &second.batches[0].rows[0].bars[0];
        assert_eq!(
            (bar.kind, bar.start_ms, bar.end_ms),
            (Kind::Interrupted, 1010, 1010)
        );
        assert_eq!(bar.label, "[1/2] step 1");
    }
}
