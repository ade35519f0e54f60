//! Notifications sent on threads of their own, one per notifier with a bounded queue: the
//! run hands an event over without waiting, a slow notifier delays only itself, and what
//! could not be sent comes back as a [`Failure`] for the recap and the journal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{deliver, Notifier, Trigger};

/// Messages a notifier may have waiting; past that, new ones are dropped (and said so).
const QUEUE: usize = 64;

/// A notification that did not reach its notifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The notifier, as a warning may name it (a webhook's secret path left out).
    pub notifier: String,
    /// The trigger's word.
    pub event: String,
    pub error: String,
}

struct Lane {
    notifier: Notifier,
    tx: Option<SyncSender<(Trigger, Value)>>,
    handle: Option<JoinHandle<()>>,
    /// What was handed over, in order, and how many of those the thread is done with.
    offered: Vec<Trigger>,
    done: Arc<AtomicUsize>,
}

/// The run's notifiers at work.
pub struct Notifications {
    lanes: Vec<Lane>,
    report: Sender<Failure>,
    failed: Receiver<Failure>,
}

impl Notifications {
    /// Starts a thread per notifier; `None` without any.
    pub fn start(notifiers: Vec<Notifier>) -> Option<Notifications> {
        if notifiers.is_empty() {
            return None;
        }
        let (report, failed) = mpsc::channel();
        let lanes = notifiers
            .into_iter()
            .map(|notifier| {
                let (tx, rx) = mpsc::sync_channel(QUEUE);
                let done = Arc::new(AtomicUsize::new(0));
                let handle = spawn(notifier.clone(), rx, report.clone(), done.clone());
                Lane {
                    notifier,
                    tx: Some(tx),
                    handle,
                    offered: Vec::new(),
                    done,
                }
            })
            .collect();
        Some(Notifications {
            lanes,
            report,
            failed,
        })
    }

    /// Whether a notifier wants to hear of `trigger`.
    pub fn wants(&self, trigger: Trigger) -> bool {
        self.lanes.iter().any(|l| l.notifier.wants(trigger))
    }

    /// Hands `message` to the notifiers that want `trigger`, without waiting for any.
    pub fn offer(&mut self, trigger: Trigger, message: &Value) {
        for lane in self.lanes.iter_mut().filter(|l| l.notifier.wants(trigger)) {
            let Some(tx) = &lane.tx else { continue };
            match tx.try_send((trigger, message.clone())) {
                Ok(()) => lane.offered.push(trigger),
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    let _ = self.report.send(Failure {
                        notifier: lane.notifier.target.describe(),
                        event: trigger.word().into(),
                        error: format!("not sent: {QUEUE} notifications were still waiting"),
                    });
                }
            }
        }
    }

    /// What failed since the last call.
    pub fn failures(&self) -> Vec<Failure> {
        self.failed.try_iter().collect()
    }

    /// No more events: waits up to `grace` for what is queued to be sent, then gives up on
    /// the rest; returns what failed.
    pub fn finish(mut self, grace: Duration) -> Vec<Failure> {
        let deadline = Instant::now() + grace;
        for lane in &mut self.lanes {
            lane.tx = None;
        }
        let mut late = Vec::new();
        for lane in &mut self.lanes {
            let Some(handle) = lane.handle.take() else {
                continue;
            };
            while !handle.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if handle.is_finished() {
                let _ = handle.join();
                continue;
            }
            // The one being sent and those behind it.
            let done = lane.done.load(Ordering::SeqCst).min(lane.offered.len());
            let pending: Vec<&str> = lane.offered[done..].iter().map(|t| t.word()).collect();
            late.push(Failure {
                notifier: lane.notifier.target.describe(),
                event: pending.join(", "),
                error: format!("not sent within {}s of the run's end", grace.as_secs()),
            });
        }
        let mut failures = self.failures();
        failures.extend(late);
        failures
    }
}

fn spawn(
    notifier: Notifier,
    rx: Receiver<(Trigger, Value)>,
    report: Sender<Failure>,
    done: Arc<AtomicUsize>,
) -> Option<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("notify".into())
        .spawn(move || {
            for (trigger, message) in rx {
                let sent = deliver(&notifier, &message);
                done.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = sent {
                    let _ = report.send(Failure {
                        notifier: notifier.target.describe(),
                        event: trigger.word().into(),
                        error: e.to_string(),
                    });
                }
            }
        })
        .ok()
}
