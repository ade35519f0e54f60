//! What a resume has left to do: the plan's hosts that did not end ok or skipped.

use super::{HostState, RunState};
use crate::events::Interrupted;
use crate::plan::Batch;

/// What a resume does: the plan's batches with only the hosts left to do (batches keep
/// their places, so their numbers stay those of the first attempt).
#[derive(Debug, Clone, PartialEq)]
pub struct Resumption {
    pub batches: Vec<Batch>,
    /// Ended ok or skipped: not touched again.
    pub finished: Vec<String>,
    /// Failed, unreachable, rolled back or interrupted: run again from their pre-flight.
    pub retry: Vec<String>,
    pub interrupted: Vec<Interrupted>,
}

/// What is left of `plan` when each host stands as `state_of` says (`None`: never started).
pub fn resumption(plan: &[Batch], state_of: impl Fn(&str) -> Option<HostState>) -> Resumption {
    let mut r = Resumption {
        batches: Vec::with_capacity(plan.len()),
        finished: Vec::new(),
        retry: Vec::new(),
        interrupted: Vec::new(),
    };
    for batch in plan {
        let mut left = Vec::new();
        for host in &batch.hosts {
            match state_of(host) {
                Some(HostState::Finished(o)) if !o.is_failure() => {
                    r.finished.push(host.clone());
                    continue;
                }
                Some(HostState::Finished(_)) => r.retry.push(host.clone()),
                Some(HostState::Running { step }) => {
                    r.retry.push(host.clone());
                    r.interrupted.push(Interrupted {
                        host: host.clone(),
                        step: step.unwrap_or_else(|| "its start".into()),
                    });
                }
                None => {}
            }
            left.push(host.clone());
        }
        r.batches.push(Batch {
            hosts: left,
            ..batch.clone()
        });
    }
    r
}

impl RunState {
    /// What a resume of this run has left of `plan`.
    pub fn left(&self, plan: &[Batch]) -> Resumption {
        resumption(plan, |host| self.host_state(host))
    }
}
