//! A run as its events tell it: one fold of the event stream that every reader shares (the
//! terminal's live lines, the recap, `history`, `show`, a resume, the promotion gate's
//! evidence), so that they can never disagree about what happened.
//!
//! [`RunState::apply`] takes the events in the order they were emitted or journaled. A
//! resumed run's journal holds several attempts, each opened by `run_started`: what belongs
//! to one attempt (how it stopped, halted, paused or ended: [`Attempt`]) starts again with
//! it; what belongs to the run (its hosts and how each ended, the attempts and the time they
//! took) carries on. Pure: no I/O, no clock, so every rule is proven on event lists.

mod eta;
mod host;
mod left;

use std::time::Duration;

use indexmap::IndexMap;

use crate::events::{Event, GateVerdict, HaltReason, Resumed, Stamped};

pub use eta::Shape;
pub use host::{Flight, Host, HostEnd, HostState, Reconnecting, StepAt, StepFailure};
pub use left::{resumption, Resumption};

/// Everything the events of a run say, folded as they arrive.
#[derive(Debug, Default, Clone)]
pub struct RunState {
    run: Option<RunInfo>,
    attempts: usize,
    first_at_ms: Option<u64>,
    last_at_ms: u64,
    /// When the attempt now running started; `None` once it finished.
    attempt_started_ms: Option<u64>,
    /// The finished (or killed) attempts' own durations added up.
    earlier_attempts: Duration,
    batch: Option<BatchAt>,
    /// Every host of a started batch (and every host an event named), in plan order.
    hosts: IndexMap<String, Host>,
    /// The hosts running now, oldest first.
    flights: IndexMap<String, Flight>,
    /// `host_finished` events: the overall progress.
    hosts_ended: usize,
    /// Hosts of the batch started last that have started.
    started_in_batch: usize,
    /// Events applied: orders hosts by when they started and ended.
    applied: u64,
    attempt: Attempt,
    gate: Option<GateVerdict>,
    /// A resumed run's hosts that ended ok in an earlier attempt and have no row here.
    earlier: Vec<String>,
    /// `notifier_failed` events: notifications that were not received.
    notifier_failures: Vec<Event>,
}

/// What `run_started` says of the latest attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub run_id: String,
    /// `-` for ad-hoc commands (`exec`), which have no playbook and cannot be resumed.
    pub playbook: String,
    pub name: String,
    pub pattern: String,
    /// `--limit`, which narrowed `pattern`.
    pub limit: Option<String>,
    /// Hosts of the attempt's plan.
    pub hosts: usize,
    pub run_dir: String,
    pub started_ms: u64,
}

impl RunInfo {
    /// Whether `fleetup run --resume` can continue the run.
    pub fn is_resumable(&self) -> bool {
        self.playbook != "-"
    }
}

/// The batch started last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchAt {
    /// 1-based.
    pub number: usize,
    pub of: usize,
    pub canary: bool,
}

impl BatchAt {
    /// The batch `e` starts, for a `batch_started` event.
    pub fn of(e: &Event) -> Option<BatchAt> {
        let Event::BatchStarted {
            batch, of, canary, ..
        } = e
        else {
            return None;
        };
        Some(BatchAt {
            number: *batch,
            of: *of,
            canary: *canary,
        })
    }
}

/// What one attempt did beyond its hosts; each `run_started` begins a new one.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Attempt {
    /// Why and after which batch the run halted.
    pub halted: Option<(HaltReason, usize)>,
    /// The first Ctrl-C (or a policy stop), before any halt.
    pub stopping: Option<HaltReason>,
    /// The second or third Ctrl-C: work in flight was cut short.
    pub aborted: bool,
    /// What the run is doing out of the ordinary now, latest first.
    pub stage: Option<Stage>,
    pub deferred: Option<Deferred>,
    pub finished: Option<RunEnd>,
    /// The pause going on now.
    pub pause: Option<PauseAt>,
}

/// A pause between batches, as `pause_started` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseAt {
    pub started_ms: u64,
    /// `None`: until the operator answers.
    pub duration: Option<Duration>,
}

/// A run's state out of the ordinary, as the terminal's header says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Stopping,
    Aborting,
    Abandoning,
    Halted,
    Paused,
    Deferred,
}

/// The batch that waits for the next maintenance window.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    pub batch: usize,
    /// When it would fit, in the window's own time zone.
    pub next_start_local: Option<String>,
}

/// What `run_finished` says.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub duration: Duration,
    pub untouched: Vec<String>,
    pub exit_code: u8,
}

/// How a run ended, as far as its journal (and whether its process lives) tells.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// Ran its last batch; `exit_code` says whether every host was ok.
    Completed {
        exit_code: u8,
    },
    Halted(HaltReason),
    /// Stopped by the operator (Ctrl-C, SIGTERM).
    Interrupted,
    /// Its process died without ending the run (kill -9, a crash, a power cut).
    Killed,
    Running,
    /// It never got past its pre-flight.
    NotStarted,
    /// A batch waits for the next maintenance window (exit code 3).
    Deferred,
}

impl Ended {
    /// The word `history --output json` says it with (a contract).
    pub fn word(&self) -> &'static str {
        match self {
            Ended::Completed { .. } => "completed",
            Ended::Halted(_) => "halted",
            Ended::Interrupted => "interrupted",
            Ended::Killed => "killed",
            Ended::Running => "running",
            Ended::NotStarted => "not started",
            Ended::Deferred => "deferred",
        }
    }
}

/// A host that ended ok (not skipped), as the promotion gate and the estimates read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub host: String,
    pub at_ms: u64,
    /// Whether a step changed the host (it went to the target in this run).
    pub changed: bool,
    pub duration: Duration,
}

impl RunState {
    /// The state after `events`.
    pub fn of(events: &[Stamped]) -> Self {
        let mut state = RunState::default();
        for e in events {
            state.apply(e);
        }
        state
    }

    /// Takes in one event.
    pub fn apply(&mut self, e: &Stamped) {
        self.applied += 1;
        self.first_at_ms.get_or_insert(e.at_ms);
        let at = e.at_ms;
        match &e.event {
            Event::RunStarted { .. } => self.run_started(at, &e.event),
            Event::RunResumed(Resumed { finished, .. }) => {
                // Replayed from the journal, these hosts have their rows already; live,
                // they are named once.
                self.earlier = finished
                    .iter()
                    .filter(|h| !self.hosts.contains_key(*h))
                    .cloned()
                    .collect();
            }
            Event::GateChecked(g) => self.gate = Some(g.clone()),
            Event::BatchStarted { hosts, .. } => {
                self.batch = BatchAt::of(&e.event);
                self.started_in_batch = 0;
                for h in hosts {
                    self.hosts.entry(h.clone()).or_default();
                }
            }
            Event::HostStarted { batch, .. } => {
                if self.batch.is_some_and(|b| b.number == *batch) {
                    self.started_in_batch += 1;
                }
                self.host_event(at, &e.event);
            }
            Event::StepStarted { .. }
            | Event::Reconnecting { .. }
            | Event::StepFinished { .. }
            | Event::HostFinished { .. } => self.host_event(at, &e.event),
            Event::RunFinished {
                duration,
                untouched,
                exit_code,
            } => {
                self.attempt.finished = Some(RunEnd {
                    duration: *duration,
                    untouched: untouched.clone(),
                    exit_code: *exit_code,
                });
                if let Some(start) = self.attempt_started_ms.take() {
                    self.earlier_attempts += Duration::from_millis(at.saturating_sub(start));
                }
            }
            Event::NotifierFailed { .. } => self.notifier_failures.push(e.event.clone()),
            Event::StepOutput { .. } | Event::BatchFinished { .. } | Event::HostVerified { .. } => {
            }
            Event::Stopping { .. }
            | Event::Aborting
            | Event::Abandoning
            | Event::Halted { .. }
            | Event::PauseStarted { .. }
            | Event::PauseFinished { .. }
            | Event::Deferred { .. } => self.attempt.apply(at, &e.event),
        }
        self.last_at_ms = self.last_at_ms.max(at);
    }

    fn run_started(&mut self, at: u64, e: &Event) {
        let Event::RunStarted {
            run_id,
            playbook,
            name,
            pattern,
            limit,
            hosts,
            run_dir,
            ..
        } = e
        else {
            return;
        };
        // The attempt before was killed: it lasted until its last event.
        if let Some(start) = self.attempt_started_ms {
            self.earlier_attempts += Duration::from_millis(self.last_at_ms.saturating_sub(start));
        }
        self.attempts += 1;
        self.attempt_started_ms = Some(at);
        self.attempt = Attempt::default();
        self.run = Some(RunInfo {
            run_id: run_id.clone(),
            playbook: playbook.clone(),
            name: name.clone(),
            pattern: pattern.clone(),
            limit: limit.clone(),
            hosts: *hosts,
            run_dir: run_dir.clone(),
            started_ms: at,
        });
    }

    /// The latest attempt's `run_started`.
    pub fn run(&self) -> Option<&RunInfo> {
        self.run.as_ref()
    }

    /// `run_started` events: 2 and more after resumes.
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// The latest attempt.
    pub fn attempt(&self) -> &Attempt {
        &self.attempt
    }

    pub fn batch(&self) -> Option<BatchAt> {
        self.batch
    }

    /// The `notifier_failed` events of the run, in order.
    pub fn notifier_failures(&self) -> &[Event] {
        &self.notifier_failures
    }

    /// Hosts of the batch started last that have started so far.
    pub fn started_in_batch(&self) -> usize {
        self.started_in_batch
    }

    /// The promotion gate's latest verdict.
    pub fn gate(&self) -> Option<&GateVerdict> {
        self.gate.as_ref()
    }

    /// A resumed run's hosts that ended ok in an earlier attempt not among these events.
    pub fn earlier(&self) -> &[String] {
        &self.earlier
    }

    /// Whether the latest attempt's last event has arrived.
    pub fn is_finished(&self) -> bool {
        self.attempt.finished.is_some()
    }

    /// The attempts' own durations added up (not the time between them); an attempt
    /// without its last event lasted until the last event it has.
    pub fn worked(&self) -> Duration {
        let running = self.attempt_started_ms.map_or(Duration::ZERO, |start| {
            Duration::from_millis(self.last_at_ms.saturating_sub(start))
        });
        self.earlier_attempts + running
    }

    /// From the first event to the last.
    pub fn span(&self) -> Duration {
        let first = self.first_at_ms.unwrap_or(self.last_at_ms);
        Duration::from_millis(self.last_at_ms.saturating_sub(first))
    }

    /// When the latest attempt started.
    pub fn started_ms(&self) -> Option<u64> {
        self.run.as_ref().map(|r| r.started_ms)
    }

    /// How the run ended; `Killed` while an attempt has not ended (the caller knows
    /// whether its process still runs).
    pub fn ended(&self) -> Ended {
        let a = &self.attempt;
        if self.attempts == 0 {
            return Ended::NotStarted;
        }
        // Ctrl-C wins over a halt the policy decided while the run was stopping.
        if matches!(&a.finished, Some(f) if f.exit_code == crate::exit::Exit::Interrupted.code()) {
            return Ended::Interrupted;
        }
        match (&a.halted, &a.deferred, &a.finished) {
            (Some((HaltReason::Interrupted, _)), _, _) => Ended::Interrupted,
            (Some((reason, _)), _, _) => Ended::Halted(reason.clone()),
            (None, Some(_), _) => Ended::Deferred,
            (None, None, Some(f)) => Ended::Completed {
                exit_code: f.exit_code,
            },
            (None, None, None) => Ended::Killed,
        }
    }
}

impl Attempt {
    fn apply(&mut self, at: u64, e: &Event) {
        match e {
            Event::Stopping { reason } => {
                self.stopping = Some(reason.clone());
                self.stage = Some(Stage::Stopping);
            }
            Event::Aborting => {
                self.aborted = true;
                self.stage = Some(Stage::Aborting);
            }
            Event::Abandoning => {
                self.aborted = true;
                self.stage = Some(Stage::Abandoning);
            }
            Event::Halted { reason, batch } => {
                self.halted = Some((reason.clone(), *batch));
                self.stage = Some(Stage::Halted);
            }
            Event::PauseStarted { duration, .. } => {
                self.stage = Some(Stage::Paused);
                self.pause = Some(PauseAt {
                    started_ms: at,
                    duration: *duration,
                });
            }
            Event::PauseFinished { .. } => {
                self.stage = None;
                self.pause = None;
            }
            Event::Deferred {
                batch,
                next_start_local,
                ..
            } => {
                self.deferred = Some(Deferred {
                    batch: *batch,
                    next_start_local: next_start_local.clone(),
                });
                self.stage = Some(Stage::Deferred);
            }
            _ => {}
        }
    }

    /// The run stopped before its last batch: halted, stopped, aborted or deferred.
    pub fn stopped_early(&self) -> bool {
        self.halted.is_some() || self.stopping.is_some() || self.aborted || self.deferred.is_some()
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
pub(crate) mod sample;
