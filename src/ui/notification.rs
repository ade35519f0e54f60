//! What a notification says (`notifications:`, `--notify`): the event as JSON with a
//! `text` line that Slack, Mattermost and Matrix hooks show as is.

use serde_json::{json, Value};

use crate::events::{Event, Stamped};
use crate::notify::Trigger;
use crate::ui::text::{deferral, halt_reason, outcome_label, selection, timestamp};

/// What a notifier receives for `e` (already redacted, as every event the views get):
/// `event` (the trigger's word), `text` (one line for people), `run_id`, `at`, and the
/// event itself under `details`.
pub fn message(e: &Stamped, trigger: Trigger, run: &RunLabel) -> Value {
    json!({
        "event": trigger.word(),
        "text": text(&e.event, run),
        "run_id": run.run_id,
        "playbook": run.name,
        "hosts": run.hosts,
        "at": timestamp(e.at_ms),
        "details": e,
    })
}

/// The run as notifications name it, from its `run_started`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunLabel {
    pub run_id: String,
    pub name: String,
    /// The playbook's pattern, and `--limit`.
    pub hosts: String,
}

impl RunLabel {
    pub fn of(e: &Event) -> Option<RunLabel> {
        let Event::RunStarted {
            run_id,
            name,
            pattern,
            limit,
            ..
        } = e
        else {
            return None;
        };
        Some(RunLabel {
            run_id: run_id.clone(),
            name: name.clone(),
            hosts: selection(pattern, limit.as_deref()),
        })
    }
}

/// The one line a chat shows.
fn text(e: &Event, run: &RunLabel) -> String {
    let what = match e {
        Event::RunStarted { hosts, batches, .. } => {
            format!("started: {hosts} hosts in {batches} batches")
        }
        Event::Halted { reason, batch } => {
            format!("HALTED after batch {batch}: {}", halt_reason(reason))
        }
        Event::Deferred {
            batch,
            reason,
            estimate,
            next_start_local,
            ..
        } => format!(
            "DEFERRED: batch {batch} waits: {}; next window {}",
            deferral(reason, *estimate),
            next_start_local.as_deref().unwrap_or("none this week")
        ),
        Event::HostFinished {
            host,
            outcome,
            failed_step,
            message,
            ..
        } => {
            let at = failed_step
                .as_deref()
                .map(|s| format!(" at `{s}`"))
                .unwrap_or_default();
            let why = message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            format!("{host} {}{at}{why}", outcome_label(*outcome))
        }
        Event::RunFinished {
            exit_code,
            untouched,
            ..
        } => format!(
            "finished with exit code {exit_code}; {} host(s) never started",
            untouched.len()
        ),
        _ => String::new(),
    };
    format!(
        "fleetup {} on {} (run {}): {what}",
        run.name, run.hosts, run.run_id
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::events::{HaltReason, Outcome};

    #[test]
    fn the_text_line_says_which_run_and_what_happened() {
        let run = RunLabel {
            run_id: "r1".into(),
            name: "Upgrade SimpleLogin".into(),
            hosts: "simplelogin --limit production".into(),
        };
        let halted = Stamped {
            at_ms: 1_795_581_062_000,
            event: Event::Halted {
                reason: HaltReason::CanaryFailed { failed: 1 },
                batch: 1,
            },
        };
        let m = message(&halted, Trigger::Halted, &run);
        assert_eq!(m["event"], "halted");
        assert_eq!(
            m["text"],
            "fleetup Upgrade SimpleLogin on simplelogin --limit production (run r1): HALTED after batch 1: the canary batch failed (1 host)"
        );
        assert_eq!(m["at"], "2026-11-25T04:31:02Z");
        assert_eq!(m["details"]["reason"]["reason"], "canary_failed");
        let failed = Stamped {
            at_ms: 0,
            event: Event::HostFinished {
                host: "prod-02".into(),
                outcome: Outcome::RolledBack,
                changed: true,
                changed_steps: 3,
                duration: Duration::from_secs(40),
                failed_step: Some("migrate".into()),
                message: Some("rc 1; database backup: /var/backups/sl.sql.gz".into()),
                log: "l".into(),
            },
        };
        let text = message(&failed, Trigger::HostFailed, &run)["text"].to_string();
        assert!(
            text.contains(
                "prod-02 ROLLED BACK at `migrate`: rc 1; database backup: /var/backups/sl.sql.gz"
            ),
            "{text}"
        );
    }
}
