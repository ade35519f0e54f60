//! A staged rollout before it starts: what `fleetup plan` shows of it (the promotion
//! gate as the journal has it, the maintenance windows now, each batch's estimate), when
//! batch 1 may start, and what a run that cannot start now records. Pure: the play, the
//! journal's past runs and an instant in, typed answers out; `ui::staging` says them.

use std::time::Duration;

use jiff::Timestamp;

use crate::clock::{self, Clock};
use crate::events::{Event, GateVerdict, Verdict};
use crate::gate::Check;
use crate::journal::read::{self, PastRun};
use crate::play::Play;
use crate::playbook::Pause;
use crate::schedule::{self, Deferral};
use crate::window::{self, Slot, Windows};

/// What the plan shows of a staged rollout, read from the journal at one instant.
#[derive(Debug, Clone)]
pub struct Outlook {
    /// The promotion gate as the journal has it.
    pub gate: Option<Check>,
    /// Each distinct window set, with its hosts and whether it is open now.
    pub windows: Vec<WindowsNow>,
    /// How long a host takes (the slowest of the latest run of this playbook).
    pub per_host: Option<Duration>,
    /// Each batch's estimate, in plan order.
    pub estimates: Vec<Option<Duration>>,
}

/// A set of maintenance windows at the outlook's instant.
#[derive(Debug, Clone)]
pub struct WindowsNow {
    pub windows: Windows,
    /// How many of the run's hosts keep to it.
    pub hosts: usize,
    /// Open or closed now, and until when (`None`: it never opens).
    pub slot: Option<Slot>,
    pub now: Timestamp,
}

/// Milliseconds since the Unix epoch at `at`, as the journal stamps events.
pub fn epoch_ms(at: Timestamp) -> u64 {
    u64::try_from(at.as_millisecond()).unwrap_or(0)
}

/// The outlook of `play` at `now`, from the journal's `runs`.
pub fn outlook(play: &Play, runs: &[PastRun], now: Timestamp) -> Outlook {
    let windows = play
        .schedule
        .sets()
        .map(|(w, hosts)| WindowsNow {
            windows: w.clone(),
            hosts,
            slot: w.at(now),
            now,
        })
        .collect();
    let per_host = read::host_estimate(runs, &play.playbook.name, None);
    let estimates = play
        .plan
        .batches
        .iter()
        .map(|b| schedule::estimate(per_host, b.hosts.len(), play.rollout.forks))
        .collect();
    Outlook {
        gate: Check::new(play, runs, epoch_ms(now)),
        windows,
        per_host,
        estimates,
    }
}

/// When batch 1 may start, if not now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// At `at` (`local` in the windows' time zone).
    Wait {
        at: Timestamp,
        local: String,
        windows: String,
    },
    /// No window of the next week has room for it.
    Never {
        windows: String,
        estimate: Option<Duration>,
    },
}

/// When the first batch with hosts may start, seen at `now` with `per_host` as a host's
/// estimate; `None`: now.
pub fn first_start(play: &Play, now: Timestamp, per_host: Option<Duration>) -> Option<Start> {
    let first = play.plan.batches.iter().find(|b| !b.hosts.is_empty())?;
    let estimate = schedule::estimate(per_host, first.hosts.len(), play.rollout.forks);
    let windows = play.schedule.describe(&first.hosts);
    let Some(at) = play
        .schedule
        .next_start(&first.hosts, now, estimate.unwrap_or_default())
    else {
        return Some(Start::Never { windows, estimate });
    };
    if at <= now {
        return None;
    }
    let local = play
        .schedule
        .first_windows(&first.hosts)
        .map_or_else(|| at.to_string(), |w| window::local(at, w));
    Some(Start::Wait { at, local, windows })
}

/// A run that does not start now (no room this week, or `--no-wait`): what the journal
/// records and the operator is told.
#[derive(Debug, Clone, PartialEq)]
pub struct Deferred {
    /// The first batch with hosts, 1-based, of `of`.
    pub batch: usize,
    pub of: usize,
    pub reason: Deferral,
    pub estimate: Option<Duration>,
    /// When it could start, and that instant in the windows' time zone.
    pub next: Option<(Timestamp, String)>,
}

impl Deferred {
    /// `play`'s first batch, held back as `start` says.
    pub fn new(play: &Play, start: Start) -> Deferred {
        let (batch, of) = play
            .plan
            .batches
            .iter()
            .position(|b| !b.hosts.is_empty())
            .map_or((1, 1), |i| (i + 1, play.plan.batches.len()));
        let (reason, estimate, next) = match start {
            Start::Never { windows, estimate } => {
                (Deferral::NoRoomThisWeek { windows }, estimate, None)
            }
            Start::Wait { at, local, windows } => {
                (Deferral::NoWait { windows }, None, Some((at, local)))
            }
        };
        Deferred {
            batch,
            of,
            reason,
            estimate,
            next,
        }
    }

    /// The event the journal keeps, so that `history` tells why the run waits.
    pub fn event(&self) -> Event {
        Event::Deferred {
            batch: self.batch,
            of: self.of,
            reason: self.reason.clone(),
            estimate: self.estimate,
            next_start: self.next.as_ref().map(|(at, _)| clock::rfc3339(*at)),
            next_start_local: self.next.as_ref().map(|(_, local)| local.clone()),
        }
    }
}

/// The shifted clock's setting (`FLEETUP_NOW=...` at its time now), when the run is a
/// rehearsal: recorded wherever the time decided something.
pub fn rehearsal(clock: &Clock) -> Option<String> {
    clock
        .is_shifted()
        .then(|| format!("{}={}", clock::NOW_VAR, clock::rfc3339(clock.now())))
}

/// What every host's audit line adds: that the gate was skipped, that the clock was
/// shifted. `None` when neither.
pub fn audit_note(verdict: &GateVerdict, rehearsal: Option<String>) -> Option<String> {
    let skipped = (verdict.verdict == Verdict::Skipped).then(|| "gate=skipped".to_string());
    let notes: Vec<String> = skipped.into_iter().chain(rehearsal).collect();
    (!notes.is_empty()).then(|| notes.join(" "))
}

/// Whether a play pauses for the operator somewhere.
pub fn prompts(play: &Play) -> bool {
    let r = &play.playbook.rollout;
    r.pause_after_canary == Some(Pause::Prompt) || r.pause_between_batches == Some(Pause::Prompt)
}

/// Whether a wait told at `told` seconds left says so again at `secs`: every hour while
/// hours are left, every 10 minutes in the last hour, every minute in the last 10, every
/// 10 seconds in the last minute (so that a log shows the wait without a line a second).
pub fn milestone(told: u64, secs: u64) -> bool {
    let step = match secs {
        s if s > 3600 => 3600,
        s if s > 600 => 600,
        s if s > 60 => 60,
        _ => 10,
    };
    told / step != secs / step || told.saturating_sub(secs) >= step
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_wait_is_told_less_often() {
        assert!(milestone(7300, 7199));
        assert!(!milestone(7300, 7250));
        assert!(milestone(3000, 2399));
        assert!(!milestone(125, 121));
        assert!(milestone(125, 119));
        assert!(milestone(35, 29));
        assert!(!milestone(35, 31));
    }

    fn verdict(verdict: Verdict) -> GateVerdict {
        GateVerdict {
            require_staged: "staging".into(),
            soak: Duration::ZERO,
            verdict,
            detail: String::new(),
            runs: Vec::new(),
        }
    }

    #[test]
    fn the_audit_line_says_a_skipped_gate_and_a_shifted_clock() {
        assert_eq!(audit_note(&verdict(Verdict::Passed), None), None);
        assert_eq!(
            audit_note(&verdict(Verdict::Skipped), None).as_deref(),
            Some("gate=skipped")
        );
        let shifted = Some("FLEETUP_NOW=2026-12-05T01:58:00Z".to_string());
        assert_eq!(
            audit_note(&verdict(Verdict::Skipped), shifted.clone()).as_deref(),
            Some("gate=skipped FLEETUP_NOW=2026-12-05T01:58:00Z")
        );
        assert_eq!(
            audit_note(&verdict(Verdict::NotRequired), shifted).as_deref(),
            Some("FLEETUP_NOW=2026-12-05T01:58:00Z")
        );
    }

    #[test]
    fn a_deferral_is_journaled_with_when_it_could_start() {
        let at: Timestamp = "2026-12-04T09:00:00Z".parse().unwrap();
        let deferred = Deferred {
            batch: 2,
            of: 3,
            reason: Deferral::NoWait {
                windows: "daily 09:00-10:00 UTC".into(),
            },
            estimate: None,
            next: Some((at, "Fri 2026-12-04 09:00 UTC".into())),
        };
        let Event::Deferred {
            batch,
            of,
            next_start,
            next_start_local,
            ..
        } = deferred.event()
        else {
            panic!("a deferred event");
        };
        assert_eq!((batch, of), (2, 3));
        assert_eq!(next_start.as_deref(), Some("2026-12-04T09:00:00Z"));
        assert_eq!(
            next_start_local.as_deref(),
            Some("Fri 2026-12-04 09:00 UTC")
        );
    }

    #[test]
    fn a_shifted_clock_is_a_rehearsal() {
        assert_eq!(rehearsal(&Clock::system()), None);
        let at: Timestamp = "2026-12-05T01:58:00Z".parse().unwrap();
        let said = rehearsal(&Clock::starting_at(at)).unwrap();
        assert!(said.starts_with("FLEETUP_NOW=2026-12-05T01:58:"), "{said}");
    }
}
