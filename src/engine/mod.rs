//! The engine: drives the plan's batches in order, at most `forks` hosts at once, applies
//! the failure policy after each batch, and stops safely when told to. It never prints:
//! everything it does is an [`Event`].
//!
//! Safety rules, in the order they matter:
//! - a host in the middle of its steps is never abandoned: a halt or a first Ctrl-C stops
//!   *scheduling*, and in-flight hosts finish their steps (or their rollback);
//! - a second Ctrl-C (`Control::abort`) terminates the upgrade commands in flight, on the
//!   hosts themselves, and the hosts past their point of no return are then rolled back:
//!   stopping must not leave a mail server down;
//! - only a third (`Control::abandon`) stops those rollbacks too, and each host it leaves is
//!   reported `DOWN, NOT ROLLED BACK`, by name, with the resume that finishes it;
//! - a batch starts only when every host of the previous batch has ended.

mod emitter;
mod host;
mod pause;
pub mod policy;
pub mod target;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::connect::Transport;
use crate::events::{Event, HaltReason, Outcome};
use crate::exit::Exit;
use crate::journal::RunDir;
use crate::plan::Plan;
use crate::play::{HostInPlay, Play};
use crate::playbook::{AuditSection, LockSection, Pause, Step};
use crate::schedule::{self, Schedule};
use crate::template::Templates;
pub use emitter::Emitter;

/// What the engine runs: a playbook's steps over planned hosts. `fleetup run` builds it
/// from a [`Play`]; `fleetup exec` from one ad-hoc command.
#[derive(Clone)]
pub struct Job<'a> {
    pub name: &'a str,
    pub playbook: String,
    pub pattern: &'a str,
    /// Every step of a host, the pre-flight ones first.
    pub steps: &'a [Step],
    /// How many of `steps` are the read-only pre-flight.
    pub preflight_len: usize,
    /// Columns summing up a host after its pre-flight.
    pub report: &'a [(String, String)],
    pub rollback: &'a [Step],
    pub point_of_no_return: Option<usize>,
    /// Appended to the message of a host that failed after its point of no return.
    pub failure_note: Option<&'a str>,
    pub hosts: &'a [HostInPlay],
    pub plan: &'a Plan,
    pub forks: usize,
    pub max_fail_percentage: f64,
    /// Send each step's output in the events too (`fleetup exec` shows it per host).
    pub capture_output: bool,
    /// Take a lock on each host before its first step (the playbook's `lock:`).
    pub lock: Option<&'a LockSection>,
    pub audit: &'a AuditSection,
    /// Checked again on the upgraded hosts during a pause.
    pub verify: &'a [Step],
    pub pause_after_canary: Option<Pause>,
    pub pause_between_batches: Option<Pause>,
    /// No batch starts outside its hosts' maintenance windows.
    pub schedule: &'a Schedule,
}

impl<'a> Job<'a> {
    pub fn from_play(play: &'a Play) -> Self {
        Job {
            name: &play.playbook.name,
            playbook: play.playbook.path().display().to_string(),
            pattern: play.playbook.hosts.as_str(),
            steps: &play.playbook.steps,
            preflight_len: play.playbook.preflight_len,
            report: &play.playbook.report,
            rollback: &play.playbook.rollback,
            point_of_no_return: play.playbook.point_of_no_return(),
            failure_note: play.playbook.failure_note.as_deref(),
            hosts: &play.hosts,
            plan: &play.plan,
            forks: play.rollout.forks,
            max_fail_percentage: play.rollout.max_fail_percentage,
            capture_output: false,
            lock: play.playbook.lock.as_ref(),
            audit: &play.playbook.audit,
            verify: &play.playbook.verify,
            pause_after_canary: play.playbook.rollout.pause_after_canary,
            pause_between_batches: play.playbook.rollout.pause_between_batches,
            schedule: &play.schedule,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Stop starting hosts as soon as one fails (Ansible's any_errors_fatal).
    pub halt_immediately: bool,
    pub connect_timeout: Duration,
    pub reconnect: Reconnect,
    /// Take over stale host locks (`--break-lock`).
    pub break_lock: bool,
    /// Told right after `run_started`: a resume's `run_resumed`, the gate's verdict.
    pub announce: Vec<Event>,
    /// What time it is, for the maintenance windows.
    pub clock: Clock,
    /// How long a host took in earlier runs (the slowest), to estimate batches until
    /// this run's own hosts tell.
    pub host_estimate: Option<Duration>,
    /// Asks the operator at a `prompt` pause; `None` when nobody can answer.
    pub prompt: Option<Prompt>,
    /// Words added to every host's audit line (e.g. `gate=skipped`).
    pub audit_note: Option<String>,
}

/// Asks the operator whether to go on after a pause, and answers `true` to go on.
#[derive(Clone)]
pub struct Prompt(pub Arc<dyn Fn(usize) -> BoxFuture<'static, bool> + Send + Sync>);

impl std::fmt::Debug for Prompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Prompt")
    }
}

/// How hard fleetup tries to reach a host again whose connection was lost after its point
/// of no return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    pub attempts: u32,
    /// Before the first attempt; doubled before each next one, at most 30 s.
    pub delay: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            attempts: 5,
            delay: Duration::from_secs(1),
        }
    }
}

impl Reconnect {
    pub fn delay_before(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.delay
            .saturating_mul(factor)
            .min(Duration::from_secs(30))
    }
}

/// How the operator stops a run: `stop` (first Ctrl-C) lets in-flight hosts finish;
/// `abort` (second Ctrl-C) terminates their upgrade commands, and the hosts past their point
/// of no return are rolled back; `abandon` (third Ctrl-C) terminates the rollbacks too.
#[derive(Debug, Clone, Default)]
pub struct Control {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
    pub abandon: CancellationToken,
}

impl Control {
    /// What ends a step's command: an abort for the upgrade, only an abandon for a rollback.
    pub fn ends(&self, rollback: bool) -> &CancellationToken {
        if rollback {
            &self.abandon
        } else {
            &self.abort
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct JobReport {
    /// Hosts that were started, in the order they ended.
    pub outcomes: Vec<(String, Outcome)>,
    pub halted: Option<HaltReason>,
    /// Hosts of the plan that were never started.
    pub untouched: Vec<String>,
    pub exit: Exit,
}

/// How a host's read-only pre-flight went, and its report columns.
#[derive(Debug, Clone)]
pub struct PreflightResult {
    pub host: String,
    /// Ok, Failed or Unreachable.
    pub outcome: Outcome,
    pub report: Vec<(String, String)>,
    /// Why it failed or was unreachable.
    pub message: Option<String>,
    /// The host's version now, as the playbook's `audit.from` reads it.
    pub version: Option<String>,
}

/// Runs the pre-flight steps on every host of the plan at once (at most `forks`), before
/// any host changes: a fleet with an unreachable or unhealthy host is known before the
/// canary starts. Nothing here changes a host; no event is emitted (the caller shows the
/// results), but every host's output goes to its log as usual.
pub async fn preflight(
    spec: &Job<'_>,
    transport: &Transport,
    run_dir: &RunDir,
    options: &JobOptions,
    control: &Control,
) -> Vec<PreflightResult> {
    let (silent, _) = tokio::sync::mpsc::unbounded_channel();
    let silent = Emitter::new(silent);
    let templates = Templates::new();
    let shared = host::Shared::new(
        spec, &templates, transport, &silent, control, run_dir, options,
    );
    let names: Vec<&String> = spec.plan.batches.iter().flat_map(|b| &b.hosts).collect();
    let hosts = names
        .iter()
        .filter_map(|n| spec.hosts.iter().find(|h| &h.name == *n));
    futures::stream::iter(hosts.map(|h| host::preflight_host(&shared, h)))
        .buffered(spec.forks.max(1))
        .collect()
        .await
}

/// Runs `spec` to its end, a halt, or an interruption.
pub async fn execute(
    spec: &Job<'_>,
    transport: &Transport,
    run_dir: &RunDir,
    options: &JobOptions,
    control: &Control,
    events: &Emitter,
) -> JobReport {
    let started = Instant::now();
    // Whatever a host or a command says reaches the views and the journal without the
    // run's secrets.
    let events = &events.clone().redacting(run_dir.redactor().clone());
    let emit = |event| events.emit(event);
    let batches = &spec.plan.batches;
    emit(Event::RunStarted {
        run_id: run_dir.id.clone(),
        playbook: spec.playbook.clone(),
        name: spec.name.to_string(),
        pattern: spec.pattern.to_string(),
        hosts: spec.plan.host_count(),
        batches: batches.len(),
        forks: spec.forks,
        run_dir: run_dir.path.display().to_string(),
    });
    for event in &options.announce {
        emit(event.clone());
    }
    let templates = Templates::new();
    let shared = host::Shared::new(
        spec, &templates, transport, events, control, run_dir, options,
    );
    let forks = spec.forks.max(1);
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    let mut untouched: Vec<String> = Vec::new();
    let mut halted = None;
    let mut deferred = false;
    // The slowest host this run upgraded so far: the best estimate of the next batches.
    let mut slowest: Option<Duration> = None;
    let last = batches.iter().rposition(|b| !b.hosts.is_empty());

    for (b, batch) in batches.iter().enumerate() {
        let number = b + 1;
        if halted.is_some() || deferred || control.stop.is_cancelled() {
            untouched.extend(batch.hosts.iter().cloned());
            continue;
        }
        // A resumed run's batch whose hosts all finished earlier.
        if batch.hosts.is_empty() {
            continue;
        }
        let estimate =
            schedule::estimate(slowest.or(options.host_estimate), batch.hosts.len(), forks);
        let now = options.clock.now();
        if let Err(why) = spec.schedule.check(&batch.hosts, now, estimate) {
            let next = spec
                .schedule
                .next_start(&batch.hosts, now, estimate.unwrap_or_default());
            let local = |at| {
                spec.schedule
                    .first_windows(&batch.hosts)
                    .map(|w| crate::window::local(at, w))
            };
            emit(Event::Deferred {
                batch: number,
                of: batches.len(),
                reason: why,
                estimate,
                next_start: next.map(crate::clock::rfc3339),
                next_start_local: next.and_then(local),
            });
            deferred = true;
            untouched.extend(batch.hosts.iter().cloned());
            continue;
        }
        emit(Event::BatchStarted {
            batch: number,
            of: batches.len(),
            canary: batch.canary,
            hosts: batch.hosts.clone(),
        });
        let mut queue = batch.hosts.iter();
        let mut running = FuturesUnordered::new();
        let mut batch_outcomes = Vec::new();
        let mut stop_scheduling: Option<HaltReason> = None;
        loop {
            while running.len() < forks && stop_scheduling.is_none() && !control.stop.is_cancelled()
            {
                let Some(name) = queue.next() else { break };
                let Some(host) = spec.hosts.iter().find(|h| &h.name == name) else {
                    continue;
                };
                let shared = &shared;
                running.push(async move {
                    let started = Instant::now();
                    let end = host::run_host(shared, host, number).await;
                    (name, end, started.elapsed())
                });
            }
            let Some((name, end, took)) = running.next().await else {
                break;
            };
            let outcome = end.outcome;
            // A host already at the target takes a second: only an upgrade's duration
            // estimates the next batches.
            if outcome == Outcome::Ok && end.changed {
                slowest = slowest.max(Some(took));
            }
            batch_outcomes.push(outcome);
            outcomes.push((name.clone(), outcome));
            if outcome.is_failure() && options.halt_immediately && stop_scheduling.is_none() {
                let reason = HaltReason::HaltImmediately { host: name.clone() };
                emit(Event::Stopping {
                    reason: reason.clone(),
                });
                stop_scheduling = Some(reason);
            }
        }
        untouched.extend(queue.cloned());
        let count = |f: fn(&Outcome) -> bool| batch_outcomes.iter().filter(|o| f(o)).count();
        emit(Event::BatchFinished {
            batch: number,
            ok: count(|o| !o.is_failure()),
            failed: count(|o| o.is_failure() && *o != Outcome::Unreachable),
            unreachable: count(|o| *o == Outcome::Unreachable),
        });
        // An interrupted batch fails hosts on purpose: the operator stopped it, not a policy.
        halted = stop_scheduling
            .or_else(|| {
                control
                    .stop
                    .is_cancelled()
                    .then_some(HaltReason::Interrupted)
            })
            .or_else(|| {
                policy::halt_after_batch(&batch_outcomes, batch.canary, spec.max_fail_percentage)
            });
        if halted.is_none() && Some(b) != last {
            let pause = if batch.canary {
                spec.pause_after_canary.or(spec.pause_between_batches)
            } else {
                spec.pause_between_batches
            };
            if let Some(pause) = pause {
                let upgraded: Vec<&HostInPlay> = outcomes
                    .iter()
                    .filter(|(_, o)| !o.is_failure())
                    .filter_map(|(name, _)| spec.hosts.iter().find(|h| &h.name == name))
                    .collect();
                halted =
                    pause::pause(&shared, pause, number, &upgraded, options.prompt.as_ref()).await;
            }
        }
        if let Some(reason) = &halted {
            emit(Event::Halted {
                reason: reason.clone(),
                batch: number,
            });
        }
    }

    let interrupted = control.stop.is_cancelled() || control.abort.is_cancelled();
    let exit = match &halted {
        // Every host ended ok, yet one went bad after: the run failed.
        Some(HaltReason::VerifyFailed { .. }) if !interrupted => Exit::HostFailed,
        Some(HaltReason::StoppedAtPause) => Exit::Interrupted,
        _ => policy::exit_code(outcomes.iter().map(|(_, o)| *o), interrupted, deferred),
    };
    events
        .emit_durable(Event::RunFinished {
            duration: started.elapsed(),
            untouched: untouched.clone(),
            exit_code: exit.code(),
        })
        .await;
    JobReport {
        outcomes,
        halted,
        untouched,
        exit,
    }
}
