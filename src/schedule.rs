//! When a batch may start: inside its hosts' maintenance windows, with time left for its
//! estimated duration. Pure, so that the rule operators rely on ("no batch starts that
//! cannot end inside the window") is proven in tests.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::clock::until;
use crate::window::{Slot, Windows};

/// The windows of a run's hosts: several sets when hosts' `window` variables differ.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    /// Each distinct set of windows, with the hosts it applies to.
    sets: Vec<(Windows, Vec<String>)>,
}

/// Why a batch does not start now; `ui::text::deferral` says it in words. In the
/// `deferred` event it is the `reason` (`closed`, `too_long`, ...) beside its details; the
/// batch's estimate is the event's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Deferral {
    /// A window of some of its hosts is closed.
    Closed { windows: String },
    /// It would not end before a window closes.
    TooLong {
        windows: String,
        #[serde(rename = "left_ms", with = "crate::millis")]
        left: Duration,
    },
    /// No window of the next week has room for it (before the run starts).
    NoRoomThisWeek { windows: String },
    /// `--no-wait`, and the window has no room for it now.
    NoWait { windows: String },
}

impl Schedule {
    /// `windows` of each host, by name; hosts with no windows are never held back.
    pub fn new(windows: Vec<(String, Windows)>) -> Self {
        let mut sets: Vec<(Windows, Vec<String>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (host, w) in windows {
            if w.is_empty() {
                continue;
            }
            let key = w.to_string();
            match index.get(&key) {
                Some(&i) => sets[i].1.push(host),
                None => {
                    index.insert(key, sets.len());
                    sets.push((w, vec![host]));
                }
            }
        }
        Schedule { sets }
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }

    /// The distinct window sets and how many hosts each applies to.
    pub fn sets(&self) -> impl Iterator<Item = (&Windows, usize)> {
        self.sets.iter().map(|(w, hosts)| (w, hosts.len()))
    }

    /// The window sets that apply to any of `hosts`.
    fn for_hosts<'a>(&'a self, hosts: &'a [String]) -> impl Iterator<Item = &'a Windows> + 'a {
        self.sets
            .iter()
            .filter(move |(_, members)| members.iter().any(|m| hosts.contains(m)))
            .map(|(w, _)| w)
    }

    /// Whether a batch of `hosts` estimated to take `estimate` may start at `now`.
    pub fn check(
        &self,
        hosts: &[String],
        now: Timestamp,
        estimate: Option<Duration>,
    ) -> Result<(), Deferral> {
        for windows in self.for_hosts(hosts) {
            match windows.at(now) {
                None => {}
                Some(Slot::Closed { .. }) => {
                    return Err(Deferral::Closed {
                        windows: windows.to_string(),
                    })
                }
                Some(Slot::Open { closes }) => {
                    let left = until(now, closes);
                    if estimate.is_some_and(|e| e > left) {
                        return Err(Deferral::TooLong {
                            windows: windows.to_string(),
                            left,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The first instant from `now` at which a batch of `hosts` taking `needed` fits in
    /// every window of its hosts at once; `None` when none is found (each set's windows are
    /// looked at eight days ahead of each candidate, for a bounded number of candidates).
    pub fn next_start(
        &self,
        hosts: &[String],
        now: Timestamp,
        needed: Duration,
    ) -> Option<Timestamp> {
        let sets: Vec<&Windows> = self.for_hosts(hosts).collect();
        let mut candidate = now;
        // Each round moves to the latest of the sets' next fits; when none moves, they all
        // fit. Windows repeat weekly, so a few rounds settle it.
        for _ in 0..64 {
            let mut latest = candidate;
            for w in &sets {
                latest = latest.max(w.next_fit(candidate, needed)?);
            }
            if latest == candidate {
                return Some(candidate);
            }
            candidate = latest;
        }
        None
    }

    /// The windows of `hosts` in words, for messages.
    pub fn describe(&self, hosts: &[String]) -> String {
        let texts: Vec<String> = self.for_hosts(hosts).map(|w| w.to_string()).collect();
        texts.join(" and ")
    }

    /// The windows that apply to `hosts`, for showing instants in their time zone.
    pub fn first_windows(&self, hosts: &[String]) -> Option<&Windows> {
        self.sets
            .iter()
            .find(|(_, members)| members.iter().any(|m| hosts.contains(m)))
            .map(|(w, _)| w)
    }
}

/// A batch's estimated duration: its hosts in waves of `forks`, each wave as long as the
/// slowest host seen (`per_host`). `None` until a host's duration is known.
pub fn estimate(per_host: Option<Duration>, hosts: usize, forks: usize) -> Option<Duration> {
    let waves = hosts.div_ceil(forks.max(1)) as u32;
    per_host.map(|d| d.saturating_mul(waves))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn names(ns: &[&str]) -> Vec<String> {
        ns.iter().map(|s| s.to_string()).collect()
    }

    fn schedule() -> Schedule {
        let paris = Windows::parse(&["sat,sun 02:00-05:00 Europe/Paris"]).unwrap();
        let utc = Windows::parse(&["daily 00:00-06:00 UTC"]).unwrap();
        Schedule::new(vec![
            ("a".into(), paris.clone()),
            ("b".into(), paris),
            ("c".into(), utc),
            ("d".into(), Windows::default()),
        ])
    }

    #[test]
    fn a_batch_starts_only_when_it_fits_in_every_window_of_its_hosts() {
        let s = schedule();
        // Saturday 03:00 Paris (02:00 UTC): three hours left in Paris, four in UTC.
        let now = at("2026-12-05T02:00:00Z");
        assert_eq!(
            s.check(&names(&["a", "c"]), now, Some(Duration::from_secs(3600))),
            Ok(())
        );
        assert_eq!(
            s.check(
                &names(&["a", "c"]),
                now,
                Some(Duration::from_secs(3 * 3600))
            ),
            Err(Deferral::TooLong {
                windows: "sat,sun 02:00-05:00 Europe/Paris".into(),
                left: Duration::from_secs(2 * 3600),
            })
        );
        // Without an estimate, an open window is enough.
        assert_eq!(s.check(&names(&["a"]), now, None), Ok(()));
        // A Monday: Paris is closed, UTC open, a host without windows always fits.
        let monday = at("2026-12-07T02:00:00Z");
        assert!(matches!(
            s.check(&names(&["b"]), monday, None),
            Err(Deferral::Closed { .. })
        ));
        assert_eq!(s.check(&names(&["c", "d"]), monday, None), Ok(()));
    }

    #[test]
    fn the_next_start_is_when_every_window_has_room() {
        let s = schedule();
        let monday = at("2026-12-07T12:00:00Z");
        // Paris opens Saturday 01:00 UTC, when the UTC window is open until 06:00.
        assert_eq!(
            s.next_start(&names(&["a", "c"]), monday, Duration::from_secs(3600)),
            Some(at("2026-12-12T01:00:00Z"))
        );
        // Four hours never fit in Paris's three (but for the night clocks go back).
        assert_eq!(
            s.next_start(&names(&["a"]), monday, Duration::from_secs(4 * 3600)),
            None
        );
        assert_eq!(
            s.next_start(&names(&["d"]), monday, Duration::from_secs(3600)),
            Some(monday)
        );
    }

    #[test]
    fn estimates_count_waves_of_forks() {
        let five = Duration::from_secs(300);
        assert_eq!(estimate(Some(five), 25, 10), Some(five * 3));
        assert_eq!(estimate(Some(five), 1, 10), Some(five));
        assert_eq!(estimate(None, 5, 10), None);
    }
}
