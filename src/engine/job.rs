//! What the engine is given: the [`Job`] (a playbook's steps over planned hosts), the
//! operator's [`JobOptions`] and [`Control`], and what it gives back.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::events::{Event, HaltReason, Outcome};
use crate::exit::Exit;
use crate::plan::Plan;
use crate::play::HostInPlay;
use crate::play::Play;
use crate::playbook::{Playbook, Step};
use crate::schedule::Schedule;

/// What the engine runs: a playbook's steps over planned hosts. `fleetup run` makes it from
/// a [`Play`]; `fleetup exec` from a playbook of one ad-hoc command.
#[derive(Clone, Copy)]
pub struct Job<'a> {
    pub playbook: &'a Playbook,
    /// The hosts' pattern, as the run names it.
    pub pattern: &'a str,
    /// `--limit`, which narrowed the pattern further.
    pub limit: Option<&'a str>,
    pub hosts: &'a [HostInPlay],
    pub plan: &'a Plan,
    /// No batch starts outside its hosts' maintenance windows.
    pub schedule: &'a Schedule,
    pub forks: usize,
    pub max_fail_percentage: f64,
    /// Send each step's output in the events too (`fleetup exec` shows it per host).
    pub capture_output: bool,
}

impl<'a> Job<'a> {
    pub fn from_play(play: &'a Play) -> Self {
        Job {
            playbook: &play.playbook,
            pattern: play.playbook.hosts.as_str(),
            limit: play.limit.as_deref(),
            hosts: &play.hosts,
            plan: &play.plan,
            schedule: &play.schedule,
            forks: play.rollout.forks,
            max_fail_percentage: play.rollout.max_fail_percentage,
            capture_output: false,
        }
    }

    /// The read-only pre-flight steps, run first on each host and fleet-wide before any.
    pub(super) fn preflight(&self) -> &'a [Step] {
        &self.playbook.steps[..self.playbook.preflight_len]
    }

    /// The hosts by name, for lookups in a fleet of any size.
    pub(super) fn host_index(&self) -> HashMap<&'a str, &'a HostInPlay> {
        self.hosts.iter().map(|h| (h.name.as_str(), h)).collect()
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
    /// Connections hosts waiting for their turn may keep open after the pre-flight; `None`:
    /// what the open-file limit leaves, measured when the pre-flight starts.
    pub waiting_connections: Option<usize>,
    /// No turn of its hosts follows the pre-flight (`fleetup check`, `fleetup status`, the
    /// report after a run, a gate's look at the stage before): no connection or finding is
    /// kept for a turn that does not come.
    pub preflight_alone: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnection_backs_off_exponentially_up_to_thirty_seconds() {
        let r = Reconnect::default();
        assert_eq!(r.delay_before(1), Duration::from_secs(1));
        assert_eq!(r.delay_before(3), Duration::from_secs(4));
        assert_eq!(r.delay_before(9), Duration::from_secs(30));
    }

    #[test]
    fn an_abort_ends_upgrade_commands_and_only_an_abandon_ends_rollbacks() {
        let c = Control::default();
        c.abort.cancel();
        assert!(c.ends(false).is_cancelled());
        assert!(!c.ends(true).is_cancelled());
        c.abandon.cancel();
        assert!(c.ends(true).is_cancelled());
    }
}
