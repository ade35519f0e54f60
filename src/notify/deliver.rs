//! Sending one notification, within the notifier's timeout: a command gets the message on
//! its stdin and is killed when it overruns; a webhook gets it POSTed, TLS verified.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Notifier, Target};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("cannot start it: {0}")]
    Spawn(std::io::Error),
    #[error("it exited with {0}")]
    Exit(std::process::ExitStatus),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Http(String),
}

/// Sends `message` to `notifier`; an error says why it was not received.
pub fn deliver(notifier: &Notifier, message: &Value) -> Result<(), NotifyError> {
    let body = message.to_string();
    match &notifier.target {
        Target::Command(command) => run(command, &body, notifier.timeout),
        Target::Webhook(url) => post(url, &body, notifier.timeout),
    }
}

fn run(command: &str, body: &str, timeout: Duration) -> Result<(), NotifyError> {
    let mut child = Command::new("sh")
        .args(["-c", command])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(NotifyError::Spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that does not read its input is its own business.
        let _ = stdin.write_all(body.as_bytes());
    }
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(NotifyError::Exit(status)),
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NotifyError::Timeout(timeout));
            }
        }
    }
}

fn post(url: &str, body: &str, timeout: Duration) -> Result<(), NotifyError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .map(drop)
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => NotifyError::Timeout(timeout),
            // The URL is left out: it often carries the hook's secret.
            other => NotifyError::Http(other.to_string().replace(url, "the URL")),
        })
}
