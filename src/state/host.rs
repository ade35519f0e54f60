//! The hosts of a run: which are running now and in which step, how each one ended, and
//! where each got to, as a resume reads it.

use std::time::Duration;

use indexmap::IndexMap;

use super::{Finish, RunState};
use crate::events::{Event, Outcome, StepStatus};

/// A host of the run.
#[derive(Debug, Default, Clone)]
pub struct Host {
    /// It was started (in any attempt).
    pub started: bool,
    /// How it ended last (in any attempt).
    pub end: Option<HostEnd>,
    /// When it was first started, in events applied: the order resume reads hosts in.
    first_started: Option<u64>,
}

/// What `host_finished` says.
#[derive(Debug, Clone, PartialEq)]
pub struct HostEnd {
    pub outcome: Outcome,
    pub changed: bool,
    pub changed_steps: usize,
    pub duration: Duration,
    /// The step that failed, for every outcome worse than skipped.
    pub failed_step: Option<String>,
    pub message: Option<String>,
    /// Where the host's full output is.
    pub log: String,
    pub at_ms: u64,
    /// In events applied: the order hosts ended in.
    order: u64,
}

impl HostEnd {
    /// The end `e` tells, for a `host_finished` event.
    pub fn of(e: &Event, at_ms: u64) -> Option<HostEnd> {
        let Event::HostFinished {
            outcome,
            changed,
            changed_steps,
            duration,
            failed_step,
            message,
            log,
            ..
        } = e
        else {
            return None;
        };
        Some(HostEnd {
            outcome: *outcome,
            changed: *changed,
            changed_steps: *changed_steps,
            duration: *duration,
            failed_step: failed_step.clone(),
            message: message.clone(),
            log: log.clone(),
            at_ms,
            order: 0,
        })
    }
}

/// A host running now.
#[derive(Debug, Clone, PartialEq)]
pub struct Flight {
    pub started_ms: u64,
    /// The step it is in, or last finished; `None` before its first.
    pub step: Option<StepAt>,
    /// Its steps that failed or lost the connection, in order.
    pub failures: Vec<StepFailure>,
    /// Its connection was lost and fleetup is connecting again, until its next step.
    pub reconnecting: Option<Reconnecting>,
}

/// A host whose connection fleetup is opening again, as `reconnecting` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnecting {
    pub attempt: u32,
    pub of: u32,
    /// When this attempt connects, after its delay.
    pub at_ms: u64,
}

/// A step as `step_started` names it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepAt {
    /// 1-based, within `of` or within the rollback.
    pub number: usize,
    pub of: usize,
    pub name: String,
    pub rollback: bool,
    pub started_ms: u64,
}

/// A step that failed or lost the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct StepFailure {
    pub number: usize,
    pub of: usize,
    pub name: String,
    pub rollback: bool,
    pub status: StepStatus,
    pub rc: Option<i64>,
    pub message: Option<String>,
    pub stderr_tail: Vec<String>,
}

/// Where a host got to, as its last events say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostState {
    /// Started and not finished: fleetup stopped while it ran. `step` is the step it was
    /// in (or had last finished), `None` before its first step.
    Running {
        step: Option<String>,
    },
    Finished(Outcome),
}

impl RunState {
    pub(super) fn host_event(&mut self, at: u64, e: &Event) {
        let order = self.applied;
        match e {
            Event::HostStarted { host, .. } => {
                self.started(host, order);
                self.flights.insert(host.clone(), Flight::new(at));
            }
            Event::StepStarted { host, .. } => {
                self.started(host, order);
                // A host whose start was not announced still has its flight.
                let flight = self
                    .flights
                    .entry(host.clone())
                    .or_insert_with(|| Flight::new(at));
                flight.step = StepAt::of(e, at);
                flight.reconnecting = None;
            }
            Event::Reconnecting {
                host,
                attempt,
                of,
                delay_ms,
                ..
            } => {
                if let Some(flight) = self.flights.get_mut(host) {
                    flight.reconnecting = Some(Reconnecting {
                        attempt: *attempt,
                        of: *of,
                        at_ms: at.saturating_add(*delay_ms),
                    });
                }
            }
            Event::StepFinished { host, .. } => {
                if let (Some(flight), Some(failure)) =
                    (self.flights.get_mut(host), StepFailure::of(e))
                {
                    flight.failures.push(failure);
                }
            }
            Event::HostFinished { host, .. } => {
                self.started(host, order);
                self.flights.shift_remove(host);
                self.hosts_ended += 1;
                let end = HostEnd::of(e, at).map(|end| HostEnd { order, ..end });
                if let Some(h) = self.hosts.get_mut(host) {
                    h.end = end;
                }
            }
            _ => {}
        }
    }

    fn started(&mut self, host: &str, order: u64) {
        let h = self.hosts.entry(host.to_string()).or_default();
        h.started = true;
        h.first_started.get_or_insert(order);
    }

    /// Every host of a started batch (and every host an event named), in plan order.
    pub fn hosts(&self) -> &IndexMap<String, Host> {
        &self.hosts
    }

    /// The hosts started and not ended, oldest first: running now, or, once the attempt
    /// is over, cut short by its end.
    pub fn flights(&self) -> &IndexMap<String, Flight> {
        &self.flights
    }

    pub fn flight(&self, host: &str) -> Option<&Flight> {
        self.flights.get(host)
    }

    /// `host_finished` events so far.
    pub fn hosts_ended(&self) -> usize {
        self.hosts_ended
    }

    /// Where `host` got to: `None` when it was never started.
    pub fn host_state(&self, host: &str) -> Option<HostState> {
        if let Some(flight) = self.flights.get(host) {
            let step = flight.step.as_ref().map(StepAt::journal_name);
            return Some(HostState::Running { step });
        }
        let end = self.hosts.get(host)?.end.as_ref()?;
        Some(HostState::Finished(end.outcome))
    }

    /// Every host that was started, in the order it was first started, with its state.
    pub fn host_states(&self) -> IndexMap<String, HostState> {
        let mut started: Vec<(u64, &str)> = self
            .hosts
            .iter()
            .filter_map(|(name, h)| h.first_started.map(|at| (at, name.as_str())))
            .collect();
        started.sort_unstable();
        started
            .into_iter()
            .filter_map(|(_, name)| Some((name.to_string(), self.host_state(name)?)))
            .collect()
    }

    /// The hosts that ended and how, in plan order.
    pub fn outcomes(&self) -> Vec<(&str, Outcome)> {
        self.hosts
            .iter()
            .filter_map(|(h, r)| r.end.as_ref().map(|e| (h.as_str(), e.outcome)))
            .collect()
    }

    /// Started and never ended: cut short mid-upgrade.
    pub fn unfinished(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|(_, h)| h.started && h.end.is_none())
            .map(|(h, _)| h.as_str())
            .collect()
    }

    /// The hosts the run never started: as its last event says, or, without it, the hosts
    /// of started batches that never started (the only ones known to be left).
    pub fn untouched(&self) -> Vec<&str> {
        match &self.attempt.finished {
            Some(f) => f.untouched.iter().map(String::as_str).collect(),
            None => self
                .hosts
                .iter()
                .filter(|(_, h)| !h.started)
                .map(|(h, _)| h.as_str())
                .collect(),
        }
    }

    /// The hosts that ended ok (not skipped), in the order they ended.
    pub fn finishes(&self) -> Vec<Finish> {
        let mut ended: Vec<(&str, &HostEnd)> = self
            .hosts
            .iter()
            .filter_map(|(h, r)| r.end.as_ref().map(|e| (h.as_str(), e)))
            .filter(|(_, e)| e.outcome == Outcome::Ok)
            .collect();
        ended.sort_by_key(|(_, e)| e.order);
        ended
            .into_iter()
            .map(|(host, e)| Finish {
                host: host.to_string(),
                at_ms: e.at_ms,
                changed: e.changed,
                duration: e.duration,
            })
            .collect()
    }
}

impl Flight {
    fn new(started_ms: u64) -> Self {
        Flight {
            started_ms,
            step: None,
            failures: Vec::new(),
            reconnecting: None,
        }
    }
}

impl StepAt {
    /// The step `e` starts, for a `step_started` event at `at_ms`.
    pub fn of(e: &Event, at_ms: u64) -> Option<StepAt> {
        let Event::StepStarted {
            step,
            of,
            name,
            rollback,
            ..
        } = e
        else {
            return None;
        };
        Some(StepAt {
            number: *step,
            of: *of,
            name: name.clone(),
            rollback: *rollback,
            started_ms: at_ms,
        })
    }

    /// The step as the journal names it: a rollback's steps say so.
    pub fn journal_name(&self) -> String {
        if self.rollback {
            format!("rollback: {}", self.name)
        } else {
            self.name.clone()
        }
    }
}

impl StepFailure {
    /// The failure `e` tells, for a `step_finished` that failed or lost the connection.
    pub fn of(e: &Event) -> Option<StepFailure> {
        let Event::StepFinished {
            step,
            of,
            name,
            rollback,
            status: status @ (StepStatus::Failed | StepStatus::Unreachable),
            rc,
            message,
            stderr_tail,
            ..
        } = e
        else {
            return None;
        };
        Some(StepFailure {
            number: *step,
            of: *of,
            name: name.clone(),
            rollback: *rollback,
            status: *status,
            rc: *rc,
            message: message.clone(),
            stderr_tail: stderr_tail.clone(),
        })
    }
}
