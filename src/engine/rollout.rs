//! The batches of a run in order: each starts only when the previous one has ended, inside
//! its hosts' maintenance windows, with at most `forks` hosts at once; after each, the
//! failure policy and the pause.

use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};

use super::host_run::{run_host, Turn};
use super::run::Run;
use super::{pause, policy, JobOptions, JobReport};
use crate::events::{Event, HaltReason, Outcome};
use crate::plan::Batch;
use crate::play::HostInPlay;
use crate::playbook::Pause;
use crate::schedule;
use crate::transport::{close_all, Connector};

/// The longest pause through which hosts waiting for a later batch keep their connections.
/// A longer one (or a prompt, which may last hours) closes them: a login at the host's turn
/// costs a few milliseconds, while sessions held idle for hours keep an sshd process per
/// host, show in `who`, and outlive an operator's reboot or sshd restart during the pause.
const KEEP_THROUGH_PAUSE: Duration = Duration::from_secs(10 * 60);

/// Where the run stands between batches.
#[derive(Default)]
pub(super) struct Rollout {
    /// Hosts that were started, in the order they ended.
    outcomes: Vec<(String, Outcome)>,
    /// Hosts of the plan that were never started.
    untouched: Vec<String>,
    halted: Option<HaltReason>,
    deferred: bool,
    /// The slowest host this run upgraded so far: the best estimate of the next batches.
    slowest: Option<Duration>,
}

/// One batch as the run numbers it.
#[derive(Clone, Copy)]
pub(super) struct BatchAt<'b> {
    pub batch: &'b Batch,
    /// From 1.
    pub number: usize,
    pub of: usize,
    /// The last batch with hosts: no pause after it.
    pub last: bool,
}

impl Rollout {
    /// Runs one batch, or leaves its hosts untouched when the run has stopped.
    pub async fn batch<C: Connector>(
        &mut self,
        run: &Run<'_, C>,
        options: &JobOptions,
        at: BatchAt<'_>,
    ) {
        let hosts = &at.batch.hosts;
        if self.halted.is_some() || self.deferred || run.control.stop.is_cancelled() {
            self.untouched.extend(hosts.iter().cloned());
            return;
        }
        // A resumed run's batch whose hosts all finished earlier.
        if hosts.is_empty() {
            return;
        }
        if let Some(event) = self.deferral(run, options, at) {
            run.emit(event);
            self.deferred = true;
            self.untouched.extend(hosts.iter().cloned());
            return;
        }
        run.emit(Event::BatchStarted {
            batch: at.number,
            of: at.of,
            canary: at.batch.canary,
            hosts: hosts.clone(),
        });
        let (outcomes, halted_immediately) = self.hosts(run, options, at).await;
        let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count();
        run.emit(Event::BatchFinished {
            batch: at.number,
            ok: count(|o| !o.is_failure()),
            failed: count(|o| o.is_failure() && *o != Outcome::Unreachable),
            unreachable: count(|o| *o == Outcome::Unreachable),
        });
        let max_fail = run.job.max_fail_percentage;
        self.halted =
            policy::halt_reason(halted_immediately, run.control.stop.is_cancelled(), || {
                policy::halt_after_batch(&outcomes, at.batch.canary, max_fail)
            });
        if self.halted.is_none() && !at.last {
            self.pause(run, options, at).await;
        }
        if let Some(reason) = &self.halted {
            run.emit(Event::Halted {
                reason: reason.clone(),
                batch: at.number,
            });
        }
    }

    /// The `deferred` event of a batch that does not fit its hosts' windows now.
    fn deferral<C: Connector>(
        &self,
        run: &Run<'_, C>,
        options: &JobOptions,
        at: BatchAt<'_>,
    ) -> Option<Event> {
        let hosts = &at.batch.hosts;
        let windows = run.job.schedule;
        let forks = run.job.forks.max(1);
        let estimate =
            schedule::estimate(self.slowest.or(options.host_estimate), hosts.len(), forks);
        let now = options.clock.now();
        let reason = windows.check(hosts, now, estimate).err()?;
        let next = windows.next_start(hosts, now, estimate.unwrap_or_default());
        let local = |at| {
            windows
                .first_windows(hosts)
                .map(|w| crate::window::local(at, w))
        };
        Some(Event::Deferred {
            batch: at.number,
            of: at.of,
            reason,
            estimate,
            next_start: next.map(crate::clock::rfc3339),
            next_start_local: next.and_then(local),
        })
    }

    /// Runs the batch's hosts, at most `forks` at once; returns their outcomes and, under
    /// `--halt-immediately`, the failure that stopped starting more.
    async fn hosts<C: Connector>(
        &mut self,
        run: &Run<'_, C>,
        options: &JobOptions,
        at: BatchAt<'_>,
    ) -> (Vec<Outcome>, Option<HaltReason>) {
        let forks = run.job.forks.max(1);
        // A pause to come verifies the batch's hosts: they keep their connections.
        let verified_later = pause_to_come(run, at.number);
        let mut queue = at.batch.hosts.iter();
        let mut running = FuturesUnordered::new();
        let mut outcomes = Vec::new();
        let mut stop_scheduling: Option<HaltReason> = None;
        loop {
            while running.len() < forks
                && stop_scheduling.is_none()
                && !run.control.stop.is_cancelled()
            {
                let Some(name) = queue.next() else { break };
                let Some(host) = run.host(name) else { continue };
                running.push(async move {
                    let started = Instant::now();
                    let end = run_host(
                        run,
                        host,
                        Turn {
                            batch: at.number,
                            verified_later,
                        },
                    )
                    .await;
                    (name, end, started.elapsed())
                });
            }
            let Some((name, end, took)) = running.next().await else {
                break;
            };
            // A host already at the target takes a second: only an upgrade's duration
            // estimates the next batches.
            if end.outcome == Outcome::Ok && end.changed {
                self.slowest = self.slowest.max(Some(took));
            }
            outcomes.push(end.outcome);
            self.outcomes.push((name.clone(), end.outcome));
            if end.outcome.is_failure() && options.halt_immediately && stop_scheduling.is_none() {
                let reason = HaltReason::HaltImmediately { host: name.clone() };
                run.emit(Event::Stopping {
                    reason: reason.clone(),
                });
                stop_scheduling = Some(reason);
            }
        }
        self.untouched.extend(queue.cloned());
        (outcomes, stop_scheduling)
    }

    /// The pause after a batch (the canary's own, else the one between batches), which
    /// verifies the hosts upgraded so far.
    async fn pause<C: Connector>(
        &mut self,
        run: &Run<'_, C>,
        options: &JobOptions,
        at: BatchAt<'_>,
    ) {
        let Some(pause) = pause_after(run, at.batch.canary) else {
            return;
        };
        let long = match pause {
            Pause::For(d) => d > KEEP_THROUGH_PAUSE,
            Pause::Prompt => true,
        };
        let kept = run.connector.kept();
        if long {
            close_all(kept.release_waiting()).await;
        }
        let upgraded: Vec<&HostInPlay> = self
            .outcomes
            .iter()
            .filter(|(_, o)| !o.is_failure())
            .filter_map(|(name, _)| run.host(name))
            .collect();
        self.halted = pause::pause(run, pause, at.number, &upgraded, options.prompt.as_ref()).await;
        if !pause_to_come(run, at.number + 1) {
            close_all(kept.release_verified()).await;
        }
    }

    /// How the run ended, once every batch has had its turn.
    pub fn report(self, interrupted: bool) -> JobReport {
        let exit = policy::run_exit(
            self.halted.as_ref(),
            self.outcomes.iter().map(|(_, o)| *o),
            interrupted,
            self.deferred,
        );
        JobReport {
            outcomes: self.outcomes,
            halted: self.halted,
            untouched: self.untouched,
            exit,
        }
    }
}

/// The pause after a batch: the canary's own, else the one between batches.
fn pause_after<C: Connector>(run: &Run<'_, C>, canary: bool) -> Option<Pause> {
    let rollout = &run.job.playbook.rollout;
    match canary {
        true => rollout.pause_after_canary.or(rollout.pause_between_batches),
        false => rollout.pause_between_batches,
    }
}

/// Whether a pause after batch `from` (from 1) or a later one verifies the hosts upgraded:
/// there is none after the last batch with hosts.
fn pause_to_come<C: Connector>(run: &Run<'_, C>, from: usize) -> bool {
    let batches = &run.job.plan.batches;
    let Some(last) = run.job.plan.last_with_hosts() else {
        return false;
    };
    let verifies = !run.job.playbook.verify.is_empty();
    let pauses = |b: &Batch| !b.hosts.is_empty() && pause_after(run, b.canary).is_some();
    verifies
        && batches[..last]
            .iter()
            .skip(from.saturating_sub(1))
            .any(pauses)
}
