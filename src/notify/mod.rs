//! Telling people what a run does while nobody watches it: a playbook's `notifications:`
//! and `--notify`, each a `command` (run on the controller, the event as JSON on stdin)
//! or a `webhook` (the event POSTed as JSON, with a `text` line that Slack, Mattermost
//! and Matrix hooks show as is), for the events chosen with `on:`.
//!
//! What is sent and to whom is decided here, purely; [`deliver`] does the I/O with a
//! timeout, and [`Notifications`] does it on a thread of its own, so that a notifier that
//! fails or hangs is a warning and never slows the rollout.

mod deliver;
mod worker;

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Value};

use crate::events::{Event, Outcome, Stamped};
use crate::ui::text::{deferral, halt_reason, outcome_label, selection, timestamp};

pub use deliver::{deliver, NotifyError};
pub use worker::{Failure, Notifications};

/// How long a notifier may take before it is given up (a webhook's whole request, a
/// command's run).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a notifier is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    RunStarted,
    Halted,
    Deferred,
    HostFailed,
    UnreachableMidUpgrade,
    RunFinished,
}

impl Trigger {
    /// Without `on:`: what a person must act on, and the end.
    pub const DEFAULT: [Trigger; 5] = [
        Trigger::Halted,
        Trigger::Deferred,
        Trigger::HostFailed,
        Trigger::UnreachableMidUpgrade,
        Trigger::RunFinished,
    ];

    /// The word of the `event` key and of `on:`.
    pub fn word(self) -> &'static str {
        match self {
            Trigger::RunStarted => "run_started",
            Trigger::Halted => "halted",
            Trigger::Deferred => "deferred",
            Trigger::HostFailed => "host_failed",
            Trigger::UnreachableMidUpgrade => "unreachable_mid_upgrade",
            Trigger::RunFinished => "run_finished",
        }
    }

    /// The trigger `e` pulls, if any. A host lost mid-upgrade is its own trigger; every
    /// other host that ended worse than skipped failed.
    pub fn of(e: &Event) -> Option<Trigger> {
        Some(match e {
            Event::RunStarted { .. } => Trigger::RunStarted,
            Event::Halted { .. } => Trigger::Halted,
            Event::Deferred { .. } => Trigger::Deferred,
            Event::HostFinished {
                outcome: Outcome::UnreachableMidUpgrade,
                ..
            } => Trigger::UnreachableMidUpgrade,
            Event::HostFinished { outcome, .. } if outcome.is_failure() => Trigger::HostFailed,
            Event::RunFinished { .. } => Trigger::RunFinished,
            _ => return None,
        })
    }
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A shell command on the controller (`sh -c`), the event on its stdin.
    Command(String),
    /// An `http://` or `https://` URL the event is POSTed to.
    Webhook(String),
}

impl Target {
    /// The target in a warning: a webhook's URL often carries its secret (Slack's do),
    /// so only its scheme and host are shown.
    pub fn describe(&self) -> String {
        match self {
            Target::Command(c) => {
                format!("command `{}`", c.split_whitespace().next().unwrap_or(""))
            }
            Target::Webhook(url) => {
                let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = host.rsplit('@').next().unwrap_or(host);
                let scheme = url.split_once("://").map_or("", |(s, _)| s);
                format!("webhook {scheme}://{host}/…")
            }
        }
    }
}

/// One notifier: where, for which events, within how long.
#[derive(Debug, Clone, PartialEq)]
pub struct Notifier {
    pub target: Target,
    pub on: Vec<Trigger>,
    pub timeout: Duration,
}

impl Notifier {
    /// `--notify`: `webhook:URL` or `command:CMD`, for the default events.
    pub fn parse_flag(s: &str) -> Result<Notifier, String> {
        let (kind, value) = s
            .split_once(':')
            .map(|(k, v)| (k.trim(), v.trim()))
            .ok_or_else(|| format!("`{s}`: use webhook:URL or command:COMMAND"))?;
        let target = match kind {
            "webhook" => webhook(value)?,
            "command" if !value.is_empty() => Target::Command(value.to_string()),
            _ => return Err(format!("`{s}`: use webhook:URL or command:COMMAND")),
        };
        Ok(Notifier {
            target,
            on: Trigger::DEFAULT.to_vec(),
            timeout: DEFAULT_TIMEOUT,
        })
    }

    pub fn wants(&self, trigger: Trigger) -> bool {
        self.on.contains(&trigger)
    }
}

fn webhook(url: &str) -> Result<Target, String> {
    if url.starts_with("https://") || url.starts_with("http://") {
        Ok(Target::Webhook(url.to_string()))
    } else {
        Err("a webhook is an http:// or https:// URL".to_string())
    }
}

/// A playbook's `notifications:` entry.
impl<'de> Deserialize<'de> for Notifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            command: Option<String>,
            webhook: Option<String>,
            on: Option<Vec<Trigger>>,
            timeout: Option<Timeout>,
        }
        /// Seconds (5) or a duration's text (5s, 1m).
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Timeout {
            Seconds(u64),
            Text(String),
        }
        use serde::de::Error;
        let raw = Raw::deserialize(d)?;
        let target = match (raw.command, raw.webhook) {
            (Some(c), None) if !c.trim().is_empty() => Target::Command(c),
            (None, Some(url)) => webhook(&url).map_err(D::Error::custom)?,
            _ => {
                return Err(D::Error::custom(
                    "a notification has one `command:` or one `webhook:`",
                ))
            }
        };
        let timeout = match raw.timeout {
            None => DEFAULT_TIMEOUT,
            Some(Timeout::Seconds(s)) => Duration::from_secs(s),
            Some(Timeout::Text(t)) => crate::duration::parse(&t)
                .map_err(|_| D::Error::custom("a timeout is seconds (5) or text (5s, 1m)"))?,
        };
        Ok(Notifier {
            target,
            on: raw.on.unwrap_or_else(|| Trigger::DEFAULT.to_vec()),
            timeout,
        })
    }
}

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
mod tests;
