//! How long a run has left, from its plan and what its events say so far.
//!
//! Hosts of a batch run in waves of `forks`, batches one after the other with their pauses
//! between, so the time left is the current batch's hosts still running or waiting for a
//! slot, then every later batch's waves and pauses, each host as long as the hosts known
//! so far took: this run's finished hosts, else the journal's last run of the playbook.
//! Pure: the clock is an argument.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::{RunState, Stage};
use crate::plan::Plan;
use crate::playbook::{Pause, RolloutSection};
use crate::schedule;

/// What the estimate knows of a run before it starts: its plan, its pauses, and how long a
/// host of its playbook took last time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shape {
    /// Each batch's hosts, in plan order (a resumed run's finished batches have none).
    pub batches: Vec<usize>,
    /// Which batch is the canary (the pause after it is `pause_after_canary`).
    pub canary: Option<usize>,
    pub forks: usize,
    /// Timed pauses; a `prompt` pause lasts as long as the operator takes, counted as none.
    pub pause_after_canary: Option<Duration>,
    pub pause_between_batches: Option<Duration>,
    /// How long a host took in the journal's last run of the playbook.
    pub journal_per_host: Option<Duration>,
}

impl Shape {
    /// The shape of `plan` run `forks` at a time with `rollout`'s pauses, a host taking
    /// `journal_per_host` until this run's own hosts tell.
    pub fn of_plan(
        plan: &Plan,
        forks: usize,
        rollout: &RolloutSection,
        journal_per_host: Option<Duration>,
    ) -> Shape {
        let timed = |p: Option<Pause>| match p {
            Some(Pause::For(d)) => Some(d),
            Some(Pause::Prompt) | None => None,
        };
        Shape {
            batches: plan.batches.iter().map(|b| b.hosts.len()).collect(),
            canary: plan.batches.iter().position(|b| b.canary),
            forks,
            // As the engine pauses: after the canary, `pause_between_batches` unless set.
            pause_after_canary: timed(rollout.pause_after_canary.or(rollout.pause_between_batches)),
            pause_between_batches: timed(rollout.pause_between_batches),
            journal_per_host,
        }
    }

    /// The whole plan, before it starts; `None` without a duration from the journal.
    pub fn total(&self) -> Option<Duration> {
        let per_host = self.journal_per_host?;
        Some(self.batches_after(0, per_host))
    }

    /// The time left at `now_ms` of the run `state` folds; `None` when it cannot be known
    /// (no host's duration yet) or is not going on (halted, deferred, finished, aborting).
    pub fn left(&self, state: &RunState, now_ms: u64) -> Option<Duration> {
        let attempt = state.attempt();
        if state.is_finished() || attempt.halted.is_some() || attempt.deferred.is_some() {
            return None;
        }
        let per_host = per_host(state).or(self.journal_per_host)?;
        let in_flight = in_flight(state, per_host, now_ms);
        match attempt.stage {
            // No new host starts: only those in flight are waited for.
            Some(Stage::Stopping) => return Some(in_flight.into_iter().max().unwrap_or_default()),
            Some(Stage::Aborting | Stage::Abandoning) => return None,
            _ => {}
        }
        let Some(batch) = state.batch() else {
            return Some(self.batches_after(0, per_host));
        };
        let index = batch.number.saturating_sub(1);
        if let Some(pause) = attempt.pause {
            let waited = Duration::from_millis(now_ms.saturating_sub(pause.started_ms));
            let left = pause.duration.unwrap_or_default().saturating_sub(waited);
            return Some(left + self.batches_after(index + 1, per_host));
        }
        let size = self.batches.get(index).copied().unwrap_or_default();
        let waiting = size.saturating_sub(state.started_in_batch());
        let current = self.waves(in_flight, waiting, per_host);
        let mut left = current + self.batches_after(index + 1, per_host);
        if self.next_with_hosts(index + 1).is_some() {
            left += self.pause_after(index);
        }
        Some(left)
    }

    /// The batch now: hosts in flight with the time each has left, then `waiting` hosts
    /// each taking the first free slot of `forks`.
    fn waves(&self, in_flight: Vec<Duration>, waiting: usize, per_host: Duration) -> Duration {
        let forks = self.forks.max(1);
        let free = forks.saturating_sub(in_flight.len());
        let mut slots: BinaryHeap<Reverse<Duration>> = in_flight
            .into_iter()
            .chain(std::iter::repeat_n(Duration::ZERO, free))
            .map(Reverse)
            .collect();
        let mut end = slots.iter().map(|Reverse(d)| *d).max().unwrap_or_default();
        for _ in 0..waiting {
            let Some(Reverse(free_at)) = slots.pop() else {
                break;
            };
            let done = free_at + per_host;
            end = end.max(done);
            slots.push(Reverse(done));
        }
        end
    }

    /// Batches from `first` on (0-based), each in waves of `forks`, with the pauses between.
    fn batches_after(&self, first: usize, per_host: Duration) -> Duration {
        let mut total = Duration::ZERO;
        let mut next = self.next_with_hosts(first);
        while let Some(i) = next {
            total +=
                schedule::estimate(Some(per_host), self.batches[i], self.forks).unwrap_or_default();
            next = self.next_with_hosts(i + 1);
            if next.is_some() {
                total += self.pause_after(i);
            }
        }
        total
    }

    /// The first batch with hosts from `from` on: a resumed run's finished batches are
    /// skipped, pause included.
    fn next_with_hosts(&self, from: usize) -> Option<usize> {
        (from..self.batches.len()).find(|&i| self.batches[i] > 0)
    }

    fn pause_after(&self, batch: usize) -> Duration {
        let pause = if self.canary == Some(batch) {
            self.pause_after_canary
        } else {
            self.pause_between_batches
        };
        pause.unwrap_or_default()
    }
}

/// How long a host takes as this run tells: the mean of its hosts that ended ok or
/// skipped (failed hosts end early, or late with a rollback: neither is a typical host).
fn per_host(state: &RunState) -> Option<Duration> {
    let took: Vec<Duration> = state
        .hosts()
        .values()
        .filter_map(|h| h.end.as_ref())
        .filter(|end| !end.outcome.is_failure())
        .map(|end| end.duration)
        .collect();
    let n = u32::try_from(took.len()).ok().filter(|n| *n > 0)?;
    Some(took.iter().sum::<Duration>() / n)
}

/// What each host in flight has left: a typical host's time less what it ran so far, or
/// for a host connecting again, at least until its next attempt.
fn in_flight(state: &RunState, per_host: Duration, now_ms: u64) -> Vec<Duration> {
    state
        .flights()
        .values()
        .map(|f| {
            let ran = Duration::from_millis(now_ms.saturating_sub(f.started_ms));
            let typical = per_host.saturating_sub(ran);
            let reconnect = f.reconnecting.map_or(Duration::ZERO, |r| {
                Duration::from_millis(r.at_ms.saturating_sub(now_ms))
            });
            typical.max(reconnect)
        })
        .collect()
}

#[cfg(test)]
mod tests;
