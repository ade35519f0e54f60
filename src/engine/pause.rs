//! A pause between batches: time for the upgraded hosts to show a problem before more
//! hosts follow them. They are verified again during it (the playbook's `verify:`), and a
//! host that went bad halts the run before the next batch.

use std::time::{Duration, Instant};

use futures::stream::StreamExt;

use super::check::verify_host;
use super::run::Run;
use super::Prompt;
use crate::events::{Event, HaltReason};
use crate::play::HostInPlay;
use crate::playbook::Pause;
use crate::transport::Connector;

/// How often the upgraded hosts are verified during a long pause (and once at its end).
const VERIFY_EVERY: Duration = Duration::from_secs(30);

/// Pauses after batch `batch`, verifying `upgraded`; returns why the run must halt, if it
/// must.
pub(super) async fn pause<C: Connector>(
    run: &Run<'_, C>,
    pause: Pause,
    batch: usize,
    upgraded: &[&HostInPlay],
    prompt: Option<&Prompt>,
) -> Option<HaltReason> {
    let verifying = if run.job.playbook.verify.is_empty() {
        0
    } else {
        upgraded.len()
    };
    run.emit(Event::PauseStarted {
        batch,
        duration: match pause {
            Pause::For(d) => Some(d),
            Pause::Prompt => None,
        },
        prompt: pause == Pause::Prompt,
        verifying,
    });
    let started = Instant::now();
    // The operator's answer, asked once; without anyone to ask, a prompt cannot be
    // answered and the run stops there rather than going on unseen.
    let mut answer = match (pause, prompt) {
        (Pause::Prompt, Some(ask)) => Some((ask.0)(batch)),
        (Pause::Prompt, None) => return Some(HaltReason::StoppedAtPause),
        (Pause::For(_), _) => None,
    };
    loop {
        let left = match pause {
            Pause::For(d) => d.saturating_sub(started.elapsed()),
            Pause::Prompt => VERIFY_EVERY,
        };
        let mut done = left <= VERIFY_EVERY && pause != Pause::Prompt;
        let answered = async {
            match answer.as_mut() {
                Some(answer) => answer.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(left.min(VERIFY_EVERY)) => {}
            go_on = answered => {
                if !go_on {
                    return Some(HaltReason::StoppedAtPause);
                }
                answer = None;
                done = true;
            }
            _ = run.control.stop.cancelled() => return Some(HaltReason::Interrupted),
        }
        let failed = verify(run, upgraded).await;
        if !failed.is_empty() {
            return Some(HaltReason::VerifyFailed { hosts: failed });
        }
        if done {
            break;
        }
    }
    run.emit(Event::PauseFinished { batch });
    None
}

/// Verifies every upgraded host (at most `forks` at once); returns those that failed.
async fn verify<C: Connector>(run: &Run<'_, C>, upgraded: &[&HostInPlay]) -> Vec<String> {
    if run.job.playbook.verify.is_empty() {
        return Vec::new();
    }
    let checks = upgraded.iter().map(|h| async move {
        let ok = verify_host(run, h).await;
        (!ok).then(|| h.name.clone())
    });
    let mut failed: Vec<String> = futures::stream::iter(checks)
        .buffer_unordered(run.job.forks.max(1))
        .filter_map(|f| async move { f })
        .collect()
        .await;
    failed.sort();
    failed
}
