//! Stopping a command that must not run on: past its timeout, or once its run is
//! cancelled, it is sent TERM, then KILL if it has not ended after a grace period; some time
//! after KILL the transport stops waiting for its output (what is left of it then cannot
//! be stopped from here).
//!
//! [`Termination`] decides what to do and when, from events and instants it is given
//! ([`Termination::on`], [`Termination::sent`], [`Termination::deadline`]: no I/O, no
//! clock). [`Termination::next`] waits for those events, on a timer and a cancellation
//! waiter kept from one call to the next: a command's output comes in many messages, and
//! a wait made anew for each registered both again (`next` was 1.8 % of the controller's
//! CPU on the upgrade at forks 20 in perf, 0.9 % since). Each transport only delivers the
//! signal it is told to ([`crate::ssh`] from a second channel, [`super::local`] with
//! `killpg`) and says when it has, since the grace period runs from then.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::{CancellationToken, ExecRequest, TransportError};

/// A command whose run is already cancelled is not started.
pub(crate) fn not_cancelled(request: &ExecRequest<'_>, host: &str) -> Result<(), TransportError> {
    match &request.cancel {
        Some(token) if token.is_cancelled() => Err(TransportError::Cancelled {
            host: host.to_string(),
        }),
        _ => Ok(()),
    }
}

/// A signal sent to a command's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Term,
    Kill,
}

impl Signal {
    /// The name without `SIG`, as `kill -s` takes it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// What the transport must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Send this signal to the command's processes, then call [`Termination::sent`].
    Send(Signal),
    /// Stop waiting for the command's output.
    Abandon,
}

/// What happened while the command ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The instant [`Termination::deadline`] gave has passed.
    Deadline,
    /// The request's cancellation token was cancelled.
    Cancelled,
}

/// How long each stage of a termination lasts; each transport has its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Grace {
    /// From TERM delivered to KILL.
    pub(crate) before_kill: Duration,
    /// From KILL delivered to abandoning the output.
    pub(crate) after_kill: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Running, until this instant if it has a timeout.
    Running(Option<Instant>),
    /// The transport is delivering this signal.
    Sending(Signal),
    /// TERM was delivered: KILL at this instant.
    Termed(Instant),
    /// KILL was delivered: abandon at this instant.
    Killed(Instant),
    Abandoned,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    TimedOut(Duration),
    Cancelled,
}

/// The termination of one command: why it is being stopped, and where that stands.
#[derive(Debug)]
pub(crate) struct Termination {
    timeout: Option<Duration>,
    cancel: CancellationToken,
    grace: Grace,
    phase: Phase,
    reason: Option<Reason>,
    /// Made at the first wait, inside the runtime: the rest needs no clock.
    waits: Option<Waits>,
}

/// What [`Termination::next`] waits on.
#[derive(Debug)]
struct Waits {
    timer: Pin<Box<Sleep>>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl Termination {
    /// The command has started at `now`: its timeout runs from here.
    pub(crate) fn start(request: &ExecRequest<'_>, grace: Grace, now: Instant) -> Self {
        Termination {
            timeout: request.timeout,
            cancel: request.cancel.clone().unwrap_or_default(),
            grace,
            phase: Phase::Running(request.timeout.map(|t| now + t)),
            reason: None,
            waits: None,
        }
    }

    /// When [`Event::Deadline`] is due, if ever in the present phase.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running(at) => at,
            Phase::Termed(at) | Phase::Killed(at) => Some(at),
            Phase::Sending(_) | Phase::Abandoned => None,
        }
    }

    /// Whether a cancellation still matters: once stopping, it changes nothing.
    fn listens_for_cancel(&self) -> bool {
        matches!(self.phase, Phase::Running(_))
    }

    /// What to do about `event`, if anything.
    pub(crate) fn on(&mut self, event: Event) -> Option<Step> {
        let step = match (self.phase, event) {
            (Phase::Running(_), Event::Deadline) => {
                self.reason = Some(Reason::TimedOut(self.timeout.unwrap_or_default()));
                Step::Send(Signal::Term)
            }
            (Phase::Running(_), Event::Cancelled) => {
                self.reason = Some(Reason::Cancelled);
                Step::Send(Signal::Term)
            }
            (Phase::Termed(_), Event::Deadline) => Step::Send(Signal::Kill),
            (Phase::Killed(_), Event::Deadline) => Step::Abandon,
            _ => return None,
        };
        self.phase = match step {
            Step::Send(signal) => Phase::Sending(signal),
            Step::Abandon => Phase::Abandoned,
        };
        Some(step)
    }

    /// The signal of the last [`Step::Send`] was delivered at `now`.
    pub(crate) fn sent(&mut self, now: Instant) {
        self.phase = match self.phase {
            Phase::Sending(Signal::Term) => Phase::Termed(now + self.grace.before_kill),
            Phase::Sending(Signal::Kill) => Phase::Killed(now + self.grace.after_kill),
            other => other,
        };
    }

    /// Waits for the next step. Cancel-safe: nothing changes until a step is returned.
    pub(crate) async fn next(&mut self) -> Step {
        loop {
            let deadline = self.deadline();
            let listens = self.listens_for_cancel();
            let cancel = &self.cancel;
            let waits = self.waits.get_or_insert_with(|| Waits {
                timer: Box::pin(tokio::time::sleep_until(
                    deadline.unwrap_or_else(Instant::now),
                )),
                cancelled: Box::pin(cancel.clone().cancelled_owned()),
            });
            if let Some(at) = deadline.filter(|at| *at != waits.timer.deadline()) {
                waits.timer.as_mut().reset(at);
            }
            let event = tokio::select! {
                () = waits.timer.as_mut(), if deadline.is_some() => Event::Deadline,
                () = waits.cancelled.as_mut(), if listens => Event::Cancelled,
                else => std::future::pending().await,
            };
            if let Some(step) = self.on(event) {
                return step;
            }
        }
    }

    /// The error `exec` returns when the command was stopped; `None` when it ran to its end.
    pub(crate) fn error(&self, host: &str) -> Option<TransportError> {
        let host = host.to_string();
        self.reason.map(|reason| match reason {
            Reason::TimedOut(timeout) => TransportError::CommandTimedOut { host, timeout },
            Reason::Cancelled => TransportError::Cancelled { host },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE: Grace = Grace {
        before_kill: Duration::from_secs(2),
        after_kill: Duration::from_secs(3),
    };

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn a_timed_out_command_gets_term_then_kill_then_is_abandoned() {
        let t0 = Instant::now();
        let mut t = Termination::start(&ExecRequest::new("x").timeout(secs(10)), GRACE, t0);
        assert_eq!(t.deadline(), Some(t0 + secs(10)));
        assert!(t.error("h").is_none());

        assert_eq!(t.on(Event::Deadline), Some(Step::Send(Signal::Term)));
        // No clock runs while the signal is on its way: the grace starts once it arrived.
        assert_eq!(t.deadline(), None);
        t.sent(t0 + secs(11));
        assert_eq!(t.deadline(), Some(t0 + secs(13)));
        // A cancellation now changes nothing: the command is already being stopped.
        assert_eq!(t.on(Event::Cancelled), None);

        assert_eq!(t.on(Event::Deadline), Some(Step::Send(Signal::Kill)));
        t.sent(t0 + secs(14));
        assert_eq!(t.deadline(), Some(t0 + secs(17)));
        assert_eq!(t.on(Event::Deadline), Some(Step::Abandon));
        assert_eq!(t.deadline(), None);
        assert_eq!(t.on(Event::Deadline), None);

        let e = t.error("h").expect("stopped");
        assert!(
            matches!(e, TransportError::CommandTimedOut { ref host, timeout } if host == "h" && timeout == secs(10)),
            "{e}"
        );
    }

    #[test]
    fn a_cancelled_command_is_stopped_the_same_way() {
        let t0 = Instant::now();
        let mut t = Termination::start(&ExecRequest::new("x"), GRACE, t0);
        assert_eq!(t.deadline(), None, "no timeout, no deadline");
        assert_eq!(t.on(Event::Cancelled), Some(Step::Send(Signal::Term)));
        t.sent(t0);
        assert_eq!(t.deadline(), Some(t0 + secs(2)));
        assert!(matches!(
            t.error("h"),
            Some(TransportError::Cancelled { .. })
        ));
    }

    #[test]
    fn a_command_that_ends_alone_is_not_an_error() {
        let t = Termination::start(&ExecRequest::new("x"), GRACE, Instant::now());
        assert!(t.error("h").is_none());
    }

    #[test]
    fn an_already_cancelled_command_is_not_started() {
        let token = CancellationToken::new();
        let r = ExecRequest::new("x").cancel(token.clone());
        assert!(not_cancelled(&r, "h").is_ok());
        token.cancel();
        assert!(matches!(
            not_cancelled(&r, "h"),
            Err(TransportError::Cancelled { .. })
        ));
        assert!(not_cancelled(&ExecRequest::new("x"), "h").is_ok());
    }

    #[test]
    fn signal_names_are_those_kill_takes() {
        assert_eq!((Signal::Term.name(), Signal::Kill.name()), ("TERM", "KILL"));
    }

    #[tokio::test]
    async fn next_waits_for_the_timeout_or_the_cancellation() {
        let r = ExecRequest::new("x").timeout(Duration::from_millis(20));
        let mut t = Termination::start(&r, GRACE, Instant::now());
        assert_eq!(t.next().await, Step::Send(Signal::Term));
        assert!(matches!(
            t.error("h"),
            Some(TransportError::CommandTimedOut { .. })
        ));

        let token = CancellationToken::new();
        let r = ExecRequest::new("x")
            .timeout(secs(60))
            .cancel(token.clone());
        let mut t = Termination::start(&r, GRACE, Instant::now());
        token.cancel();
        assert_eq!(t.next().await, Step::Send(Signal::Term));
        assert!(matches!(
            t.error("h"),
            Some(TransportError::Cancelled { .. })
        ));
    }
}
