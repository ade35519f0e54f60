//! Telling people what a run does while nobody watches it: a playbook's `notifications:`
//! and `--notify`, each a `command` (run on the controller, the event as JSON on stdin)
//! or a `webhook` (the event POSTed as JSON, with a `text` line that Slack, Mattermost
//! and Matrix hooks show as is), for the events chosen with `on:`.
//!
//! Who is told what is decided here, purely (what the message says is the views':
//! `ui::notification`); [`deliver`] does the I/O with a timeout, and [`Notifications`]
//! does it on a thread per notifier, so that a notifier that fails or hangs is a warning
//! and never slows the rollout.

mod deliver;
mod worker;

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

use crate::events::{Event, Outcome};

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

#[cfg(test)]
mod tests;
