//! What happens during a run, as the engine tells it. The engine never prints: it emits
//! these events, and the views (progress bars, plain lines, JSON lines, the recap) and the
//! journal are all built from the same stream, so they can never disagree.
//!
//! The JSON form (`--output json`, one object per line, `"event"` naming the kind) is a
//! contract for other programs: add fields, never rename them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::schedule::Deferral;
use crate::secret::Redactor;

/// How a host ended. Ordered from best to worst, so the worst of several is `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every step ran; `changed` says whether any changed the host.
    Ok,
    /// A `when` skipped the work (e.g. already at the target version); nothing changed.
    Skipped,
    /// Never reached, or lost before its point of no return.
    Unreachable,
    /// A step failed before the point of no return: the host is as it was.
    Failed,
    /// A step failed after the point of no return, and the rollback succeeded.
    RolledBack,
    /// The connection was lost after the point of no return and could not be re-opened:
    /// the host may be down, half-upgraded.
    UnreachableMidUpgrade,
    /// The rollback itself failed: the host needs a person now.
    RollbackFailed,
    /// Past its point of no return when the operator abandoned the run (a third Ctrl-C):
    /// left as it was, neither upgraded nor rolled back. `--resume` finishes it.
    Abandoned,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Skipped => "skipped",
            Outcome::Unreachable => "unreachable",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled back",
            Outcome::UnreachableMidUpgrade => "UNREACHABLE MID-UPGRADE",
            Outcome::RollbackFailed => "ROLLBACK FAILED",
            Outcome::Abandoned => "DOWN, NOT ROLLED BACK",
        }
    }

    /// The host may be down now and needs a person: its rollback failed, it was lost
    /// mid-upgrade, or the operator abandoned it past its point of no return.
    pub fn leaves_host_down(self) -> bool {
        matches!(
            self,
            Outcome::RollbackFailed | Outcome::UnreachableMidUpgrade | Outcome::Abandoned
        )
    }

    /// Counts against `max_fail_percentage`: everything but ok and skipped.
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Ok | Outcome::Skipped)
    }
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Ok,
    Changed,
    /// Its `when` was false.
    Skipped,
    Failed,
    /// The connection was lost while it ran: its effect on the host is unknown.
    Unreachable,
}

/// Why a run stopped before its last batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum HaltReason {
    /// A host of the canary batch failed.
    CanaryFailed { failed: usize },
    /// The batch's failed and unreachable hosts exceeded `max_fail_percentage`.
    TooManyFailures {
        failed: usize,
        of: usize,
        max_fail_percentage: f64,
    },
    /// `--halt-immediately` and a host failed.
    HaltImmediately { host: String },
    /// The operator pressed Ctrl-C (or sent SIGTERM).
    Interrupted,
    /// Upgraded hosts failed their verification during a pause.
    VerifyFailed { hosts: Vec<String> },
    /// The operator answered `stop` at a pause.
    StoppedAtPause,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    RunStarted {
        run_id: String,
        playbook: String,
        name: String,
        pattern: String,
        /// `--limit`, which narrows `pattern` further.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<String>,
        hosts: usize,
        batches: usize,
        forks: usize,
        /// Where the per-host logs are written.
        run_dir: String,
    },
    /// `fleetup run --resume`: the run goes on in its own journal, after `run_started`.
    RunResumed(Resumed),
    /// The promotion gate's verdict, after `run_started` (not on a resume).
    GateChecked(GateVerdict),
    BatchStarted {
        /// 1-based.
        batch: usize,
        of: usize,
        canary: bool,
        hosts: Vec<String>,
    },
    HostStarted {
        host: String,
        batch: usize,
        /// Steps in the host's upgrade (rollback not counted).
        steps: usize,
    },
    StepStarted {
        host: String,
        /// 1-based, within `steps` or within the rollback.
        step: usize,
        of: usize,
        name: String,
        rollback: bool,
    },
    StepFinished {
        host: String,
        step: usize,
        of: usize,
        name: String,
        rollback: bool,
        status: StepStatus,
        /// The exit code of the last attempt, when the command ran to its end.
        rc: Option<i64>,
        #[serde(rename = "duration_ms", with = "crate::millis")]
        duration: Duration,
        attempts: u32,
        /// Why it failed, in words (timeout, signal, template error, lost connection...).
        message: Option<String>,
        /// The last lines of its stderr when it failed.
        stderr_tail: Vec<String>,
    },
    /// A step's output, for views that show it (only when the run asks for it: `exec`).
    /// At most the first MiB of stdout and the last 8 KiB of stderr; the log has it all.
    StepOutput {
        host: String,
        step: usize,
        stdout: String,
        stderr: String,
    },
    HostFinished {
        host: String,
        outcome: Outcome,
        changed: bool,
        /// Steps that changed the host.
        changed_steps: usize,
        #[serde(rename = "duration_ms", with = "crate::millis")]
        duration: Duration,
        /// The step that failed, for every outcome worse than skipped.
        failed_step: Option<String>,
        message: Option<String>,
        /// Where the host's full output is.
        log: String,
    },
    BatchFinished {
        batch: usize,
        ok: usize,
        failed: usize,
        unreachable: usize,
    },
    /// The first Ctrl-C: no new host starts; hosts in flight finish.
    Stopping {
        reason: HaltReason,
    },
    /// The second Ctrl-C: upgrade commands in flight are being terminated; hosts past their
    /// point of no return are rolled back.
    Aborting,
    /// The third Ctrl-C: rollbacks are terminated too; hosts past their point of no return
    /// are left down.
    Abandoning,
    /// A host's connection was lost after its point of no return: fleetup connects again
    /// (after `delay_ms`) to roll it back, since the interrupted step's effect is unknown.
    Reconnecting {
        host: String,
        attempt: u32,
        of: u32,
        delay_ms: u64,
        /// Why the previous attempt (or the connection) failed.
        error: String,
    },
    Halted {
        reason: HaltReason,
        batch: usize,
    },
    /// A pause after `batch`: `duration_ms`, or until the operator answers (`prompt`).
    /// `verifying` upgraded hosts are checked again during it.
    PauseStarted {
        batch: usize,
        #[serde(rename = "duration_ms", with = "crate::millis::opt")]
        duration: Option<Duration>,
        prompt: bool,
        verifying: usize,
    },
    /// An upgraded host's verification during a pause.
    HostVerified {
        host: String,
        ok: bool,
        message: Option<String>,
    },
    PauseFinished {
        batch: usize,
    },
    /// Batch `batch` did not start: its maintenance window is closed or too short for its
    /// estimate. The run ends with exit code 3; `--resume` continues it.
    Deferred {
        batch: usize,
        of: usize,
        #[serde(flatten)]
        reason: Deferral,
        /// The batch's estimated duration, when known.
        #[serde(rename = "estimate_ms", with = "crate::millis::opt")]
        estimate: Option<Duration>,
        /// When the batch would fit (RFC 3339), within the next week.
        next_start: Option<String>,
        /// `next_start` in the window's own time zone, for people.
        next_start_local: Option<String>,
    },
    /// A notification (`notifications:`, `--notify`) that did not reach its notifier; the
    /// run went on without it.
    NotifierFailed {
        /// The notifier: `command `NAME`` or `webhook SCHEME://HOST/…` (a webhook's path,
        /// which often holds its secret, left out).
        notifier: String,
        /// The notification's event (`halted`, `run_finished`...).
        notification: String,
        error: String,
    },
    RunFinished {
        #[serde(rename = "duration_ms", with = "crate::millis")]
        duration: Duration,
        /// Hosts of the plan that were never started.
        untouched: Vec<String>,
        exit_code: u8,
    },
}

/// What a resumed run leaves alone and what it does again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resumed {
    pub run_id: String,
    /// 2 for the first resume.
    pub attempt: usize,
    /// Hosts that ended ok or skipped earlier: not touched again.
    pub finished: Vec<String>,
    /// Hosts that failed, were unreachable or were interrupted: run again from their
    /// pre-flight.
    pub retry: Vec<String>,
    /// Hosts that were in the middle of a step when the previous attempt died.
    pub interrupted: Vec<Interrupted>,
    /// What changed in the playbook or inventory since, when `--force` resumed anyway.
    pub changes: Vec<String>,
}

/// What the promotion gate found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateVerdict {
    pub require_staged: String,
    #[serde(rename = "soak_ms", with = "crate::millis")]
    pub soak: Duration,
    pub verdict: Verdict,
    /// In words: the evidence, or what was missing when skipped.
    pub detail: String,
    /// The runs that upgraded the staged group.
    pub runs: Vec<String>,
}

/// The promotion gate's decision; in JSON `passed`, `refused`, `skipped` or `not_required`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Passed,
    /// The run did not start (it is only in `run.json`, never in an event).
    Refused,
    /// `--skip-gate` overrode a gate that would have refused.
    Skipped,
    /// Every host of the run is in the staged group.
    NotRequired,
}

/// A host that was in a step when fleetup died.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupted {
    pub host: String,
    pub step: String,
}

impl Event {
    /// Hides secrets in the texts that come from hosts or from rendered commands (output,
    /// messages, errors). Names and enum tags are fleetup's own and stay as they are.
    pub fn redact(&mut self, redactor: &Redactor) {
        if redactor.is_empty() {
            return;
        }
        match self {
            Event::StepFinished {
                message,
                stderr_tail,
                ..
            } => {
                redactor.option(message);
                stderr_tail.iter_mut().for_each(|l| redactor.string(l));
            }
            Event::StepOutput { stdout, stderr, .. } => {
                redactor.string(stdout);
                redactor.string(stderr);
            }
            Event::HostFinished { message, .. } | Event::HostVerified { message, .. } => {
                redactor.option(message);
            }
            Event::Reconnecting { error, .. } | Event::NotifierFailed { error, .. } => {
                redactor.string(error)
            }
            _ => {}
        }
    }
}

/// An event with the time it happened, as the views and the journal receive it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    /// Unix time in milliseconds.
    pub at_ms: u64,
    #[serde(flatten)]
    pub event: Event,
}

impl Stamped {
    pub fn now(event: Event) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Stamped { at_ms, event }
    }
}

/// Where events go: the engine holds one and never blocks on it.
pub type EventSender = tokio::sync::mpsc::UnboundedSender<Stamped>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape() {
        let e = Stamped {
            at_ms: 5,
            event: Event::StepFinished {
                host: "h".into(),
                step: 2,
                of: 14,
                name: "pull".into(),
                rollback: false,
                status: StepStatus::Failed,
                rc: Some(1),
                duration: Duration::from_millis(1500),
                attempts: 1,
                message: None,
                stderr_tail: vec!["manifest unknown".into()],
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "step_finished");
        assert_eq!(v["at_ms"], 5);
        assert_eq!(v["status"], "failed");
        assert_eq!(v["duration_ms"], 1500);
        let halted = serde_json::to_value(Event::Halted {
            reason: HaltReason::CanaryFailed { failed: 1 },
            batch: 1,
        })
        .unwrap();
        assert_eq!(halted["reason"]["reason"], "canary_failed");
    }

    #[test]
    fn a_deferral_is_a_reason_word_beside_its_details_and_reads_back() {
        let deferred = Event::Deferred {
            batch: 2,
            of: 3,
            reason: Deferral::TooLong {
                windows: "sat 02:00-05:00 UTC".into(),
                left: Duration::from_secs(600),
            },
            estimate: Some(Duration::from_secs(900)),
            next_start: None,
            next_start_local: None,
        };
        let v = serde_json::to_value(&deferred).unwrap();
        assert_eq!(v["reason"], "too_long");
        assert_eq!(v["windows"], "sat 02:00-05:00 UTC");
        assert_eq!(
            (v["left_ms"].as_u64(), v["estimate_ms"].as_u64()),
            (Some(600_000), Some(900_000))
        );
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, deferred);
    }

    #[test]
    fn resumed_runs_read_back_from_their_json_lines() {
        let e = Stamped {
            at_ms: 7,
            event: Event::RunResumed(Resumed {
                run_id: "r1".into(),
                attempt: 2,
                finished: vec!["a".into()],
                retry: vec!["b".into()],
                interrupted: vec![Interrupted {
                    host: "b".into(),
                    step: "pull".into(),
                }],
                changes: vec![],
            }),
        };
        let line = serde_json::to_string(&e).unwrap();
        assert_eq!(
            line,
            r#"{"at_ms":7,"event":"run_resumed","run_id":"r1","attempt":2,"finished":["a"],"retry":["b"],"interrupted":[{"host":"b","step":"pull"}],"changes":[]}"#
        );
        assert_eq!(serde_json::from_str::<Stamped>(&line).unwrap(), e);
    }

    #[test]
    fn outcomes_order_from_best_to_worst() {
        assert!(Outcome::RollbackFailed > Outcome::RolledBack);
        assert!(Outcome::Failed > Outcome::Unreachable);
        assert!(!Outcome::Skipped.is_failure());
        assert!(Outcome::Unreachable.is_failure());
    }
}
