//! The time a run believes it is. Windows and the promotion gate's soak read it, so that a
//! run can be rehearsed (and tested) at another instant without waiting for it:
//! `FLEETUP_NOW=2026-12-05T01:58:00Z` starts the clock there, and it runs at the real pace
//! from then on (a countdown still counts real seconds).

use std::time::{Duration, Instant};

use jiff::Timestamp;

/// The variable that sets the clock's start.
pub const NOW_VAR: &str = "FLEETUP_NOW";

#[derive(Debug, Clone, Copy, Default)]
pub struct Clock {
    /// The instant the clock showed at `since`; `None`: the system's clock.
    origin: Option<(Timestamp, Instant)>,
}

impl Clock {
    pub fn system() -> Self {
        Clock { origin: None }
    }

    /// A clock that shows `at` now and runs on from it.
    pub fn starting_at(at: Timestamp) -> Self {
        Clock {
            origin: Some((at, Instant::now())),
        }
    }

    /// `FLEETUP_NOW` when set (an RFC 3339 instant), else the system's clock.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(NOW_VAR) {
            Err(_) => Ok(Clock::system()),
            Ok(text) => text
                .trim()
                .parse::<Timestamp>()
                .map(Clock::starting_at)
                .map_err(|e| {
                    format!("{NOW_VAR}={text} is not an instant such as 2026-12-05T01:58:00Z: {e}")
                }),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self.origin {
            None => Timestamp::now(),
            Some((at, since)) => {
                let elapsed = jiff::SignedDuration::try_from(since.elapsed()).unwrap_or_default();
                at.checked_add(elapsed).unwrap_or(at)
            }
        }
    }

    /// Whether this clock is not the system's (a rehearsal), for messages.
    pub fn is_shifted(&self) -> bool {
        self.origin.is_some()
    }
}

/// An instant to the second, as RFC 3339 in UTC: `2026-12-05T01:58:00Z`.
pub fn rfc3339(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `secs` after the Unix epoch, as [`rfc3339`] writes it (the epoch itself when out of range).
pub fn rfc3339_unix(secs: i64) -> String {
    rfc3339(Timestamp::from_second(secs).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// How long from `now` to `then`, zero when it is past.
pub fn until(now: Timestamp, then: Timestamp) -> Duration {
    Duration::try_from(then.duration_since(now)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_started_clock_runs_on_from_its_start() {
        let at: Timestamp = "2026-12-05T01:58:00Z".parse().unwrap();
        let clock = Clock::starting_at(at);
        let now = clock.now();
        assert!(now >= at && until(at, now) < Duration::from_secs(5));
        assert_eq!(until(now, at), Duration::ZERO);
    }
}
