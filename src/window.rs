//! Maintenance windows: `sat,sun 02:00-05:00 Europe/Paris`. Pure: an instant in, whether a
//! window is open at it (and until when) or when the next one opens out.
//!
//! Times are the wall-clock times of the window's own time zone, so a window keeps its
//! local hours across daylight-saving changes: on the night clocks go forward, 02:00 does
//! not exist in Paris and the window opens at 03:00 (two hours long); on the night they go
//! back, 02:00-05:00 lasts four hours. jiff resolves both the way cron-like tools do
//! ("compatible": a time in the gap moves forward, a time in the fold takes its first
//! occurrence), with its own bundled time-zone data so that every controller agrees.

use std::fmt;
use std::time::Duration;

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// The host variable that holds a host's windows (text, or a list of texts).
pub const VAR: &str = "window";

/// One window, as written.
#[derive(Debug, Clone)]
pub struct Window {
    text: String,
    /// Days on which the window opens (it may close the next day).
    days: [bool; 7],
    start: Time,
    end: Time,
    tz: TimeZone,
}

/// Where an instant falls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A window is open and closes at `closes`.
    Open { closes: Timestamp },
    /// No window is open; the next one opens at `opens`.
    Closed { opens: Timestamp },
}

/// One or more windows: open when any of them is.
#[derive(Debug, Clone, Default)]
pub struct Windows(Vec<Window>);

const DAYS: [(&str, Weekday); 7] = [
    ("mon", Weekday::Monday),
    ("tue", Weekday::Tuesday),
    ("wed", Weekday::Wednesday),
    ("thu", Weekday::Thursday),
    ("fri", Weekday::Friday),
    ("sat", Weekday::Saturday),
    ("sun", Weekday::Sunday),
];

const FORMAT: &str =
    "a window is DAYS HH:MM-HH:MM TIME_ZONE, e.g. `sat,sun 02:00-05:00 Europe/Paris` (days: mon..sun, ranges like mon-fri, or daily)";

impl Window {
    pub fn parse(text: &str) -> Result<Window, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let [days, hours, zone] = words[..] else {
            return Err(format!("`{text}`: {FORMAT}"));
        };
        let days = parse_days(days).map_err(|e| format!("`{text}`: {e}; {FORMAT}"))?;
        let (start, end) = hours
            .split_once('-')
            .ok_or_else(|| format!("`{text}`: no `-` between start and end; {FORMAT}"))?;
        let time = |s: &str| {
            Time::strptime("%H:%M", s).map_err(|_| {
                format!("`{text}`: `{s}` is not a time of day as HH:MM (00:00 to 23:59)")
            })
        };
        let (start, end) = (time(start)?, time(end)?);
        let tz = TimeZone::get(zone).map_err(|_| {
            format!("`{text}`: `{zone}` is not a time zone of the IANA database (e.g. Europe/Paris, America/New_York, UTC)")
        })?;
        Ok(Window {
            text: words.join(" "),
            days,
            start,
            end,
            tz,
        })
    }

    /// The window that opens on `date` (a date of its own time zone), as instants; `None`
    /// when it does not open that day. An end at or before the start is the next day's.
    fn on(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        if !self.days[date.weekday().to_monday_zero_offset() as usize] {
            return None;
        }
        let end_date = if self.end <= self.start {
            date.tomorrow().ok()?
        } else {
            date
        };
        let opens = date
            .to_datetime(self.start)
            .to_zoned_datetime(self.tz.clone())
            .ok()?;
        let closes = end_date
            .to_datetime(self.end)
            .to_zoned_datetime(self.tz.clone())
            .ok()?;
        Some((opens.timestamp(), closes.timestamp()))
    }

    /// The openings around `now`: from the day before (a window open since yesterday) to a
    /// week and a day after.
    fn openings(&self, now: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let today = now.to_zoned_datetime(self.tz.clone()).date();
        (-1i64..=8).filter_map(move |d| {
            today
                .checked_add(d.days())
                .ok()
                .and_then(|day| self.on(day))
        })
    }
}

fn parse_days(text: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    if matches!(text, "daily" | "*") {
        return Ok([true; 7]);
    }
    let index = |name: &str| {
        DAYS.iter()
            .position(|(short, _)| name.to_ascii_lowercase().starts_with(short) && name.len() >= 3)
            .ok_or_else(|| format!("`{name}` is not a day of the week"))
    };
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (index(from)?, index(to)?);
                // mon-fri, or fri-mon across the week's end.
                let mut d = from;
                loop {
                    days[d] = true;
                    if d == to {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days[index(part)?] = true,
        }
    }
    Ok(days)
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Windows {
    pub fn new(windows: Vec<Window>) -> Self {
        Windows(windows)
    }

    /// Parses each text; the first error is returned.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Windows, String> {
        texts
            .iter()
            .map(|t| Window::parse(t.as_ref()))
            .collect::<Result<_, _>>()
            .map(Windows)
    }

    /// A host variable's windows: one text or a list of texts.
    pub fn from_value(value: &serde_json::Value) -> Result<Windows, String> {
        match value {
            serde_json::Value::String(text) => Windows::parse(&[text]),
            serde_json::Value::Array(items) => {
                let texts: Option<Vec<&str>> = items.iter().map(|v| v.as_str()).collect();
                let texts = texts.ok_or("a list of windows holds texts only")?;
                Windows::parse(&texts)
            }
            _ => Err(format!("a window is text, or a list of texts; {FORMAT}")),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a window is open at `now` (closing at the latest end of those open), or when
    /// the next one opens. `None` without windows: always open.
    pub fn at(&self, now: Timestamp) -> Option<Slot> {
        if self.0.is_empty() {
            return None;
        }
        let openings: Vec<(Timestamp, Timestamp)> =
            self.0.iter().flat_map(|w| w.openings(now)).collect();
        let closes = openings
            .iter()
            .filter(|(o, c)| *o <= now && now < *c)
            .map(|(_, c)| *c)
            .max();
        if let Some(mut closes) = closes {
            // Windows that overlap or touch make one: open until the last of them closes.
            while let Some(later) = openings
                .iter()
                .filter(|(o, c)| *o <= closes && *c > closes)
                .map(|(_, c)| *c)
                .max()
            {
                closes = later;
            }
            return Some(Slot::Open { closes });
        }
        let opens = openings
            .iter()
            .map(|(o, _)| *o)
            .filter(|o| *o > now)
            .min()
            // Windows with days always open within eight days; this is unreachable.
            .unwrap_or(now);
        Some(Slot::Closed { opens })
    }

    /// The first instant from `now` at which a window is open with at least `needed` left,
    /// within the next eight days; `None` when no window is that long.
    pub fn next_fit(&self, now: Timestamp, needed: Duration) -> Option<Timestamp> {
        let needed = jiff::SignedDuration::try_from(needed).ok()?;
        let mut starts: Vec<(Timestamp, Timestamp)> =
            self.0.iter().flat_map(|w| w.openings(now)).collect();
        starts.sort();
        starts.into_iter().find_map(|(opens, _)| {
            let from = opens.max(now);
            match self.at(from)? {
                Slot::Open { closes } if closes.duration_since(from) >= needed => Some(from),
                _ => None,
            }
        })
    }
}

impl fmt::Display for Windows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let texts: Vec<String> = self.0.iter().map(|w| w.to_string()).collect();
        f.write_str(&texts.join("; "))
    }
}

/// An instant as the operator reads it: in the time zone of the windows it belongs to.
pub fn local(at: Timestamp, windows: &Windows) -> String {
    let tz = windows.0.first().map_or(TimeZone::UTC, |w| w.tz.clone());
    at.to_zoned_datetime(tz)
        .strftime("%a %Y-%m-%d %H:%M %Z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn windows(texts: &[&str]) -> Windows {
        Windows::parse(texts).unwrap()
    }

    #[test]
    fn open_inside_closed_outside() {
        // 2026-12-05 is a Saturday; Paris is UTC+1 in winter.
        let w = windows(&["sat,sun 02:00-05:00 Europe/Paris"]);
        assert_eq!(
            w.at(at("2026-12-05T01:30:00Z")),
            Some(Slot::Open {
                closes: at("2026-12-05T04:00:00Z")
            })
        );
        assert_eq!(
            w.at(at("2026-12-05T04:00:00Z")),
            Some(Slot::Closed {
                opens: at("2026-12-06T01:00:00Z")
            })
        );
        // From a Monday, the next opening is Saturday's.
        assert_eq!(
            w.at(at("2026-12-07T12:00:00Z")),
            Some(Slot::Closed {
                opens: at("2026-12-12T01:00:00Z")
            })
        );
    }

    #[test]
    fn a_window_past_midnight_belongs_to_the_day_it_opens() {
        let w = windows(&["fri 22:00-02:00 UTC"]);
        // Saturday 01:00 is inside Friday's window.
        assert_eq!(
            w.at(at("2026-12-05T01:00:00Z")),
            Some(Slot::Open {
                closes: at("2026-12-05T02:00:00Z")
            })
        );
        assert!(matches!(
            w.at(at("2026-12-05T23:00:00Z")),
            Some(Slot::Closed { .. })
        ));
    }

    #[test]
    fn spring_forward_shortens_the_window_to_the_hours_that_exist() {
        // 2027-03-28: Paris goes from 02:00 CET straight to 03:00 CEST.
        let w = windows(&["sun 02:00-05:00 Europe/Paris"]);
        let Some(Slot::Closed { opens }) = w.at(at("2027-03-27T12:00:00Z")) else {
            panic!("closed on Saturday")
        };
        // 03:00 CEST = 01:00 UTC; closes at 05:00 CEST = 03:00 UTC: two hours.
        assert_eq!(opens, at("2027-03-28T01:00:00Z"));
        let Some(Slot::Open { closes }) = w.at(opens) else {
            panic!("open at its opening")
        };
        assert_eq!(closes, at("2027-03-28T03:00:00Z"));
        // The UTC hour before is still closed (it is 01:xx CET in Paris).
        assert!(matches!(
            w.at(at("2027-03-28T00:30:00Z")),
            Some(Slot::Closed { .. })
        ));
    }

    #[test]
    fn fall_back_lengthens_the_window_by_the_repeated_hour() {
        // 2026-10-25: Paris goes from 03:00 CEST back to 02:00 CET. The window opens at
        // the first 02:00 (CEST, 00:00 UTC) and closes at 05:00 CET (04:00 UTC).
        let w = windows(&["sun 02:00-05:00 Europe/Paris"]);
        assert_eq!(
            w.at(at("2026-10-25T00:00:00Z")),
            Some(Slot::Open {
                closes: at("2026-10-25T04:00:00Z")
            })
        );
        // The next Sunday is on winter time: 01:00 to 04:00 UTC.
        assert_eq!(
            w.at(at("2026-10-25T04:00:00Z")),
            Some(Slot::Closed {
                opens: at("2026-11-01T01:00:00Z")
            })
        );
        // Four hours fit that night, not on an ordinary one.
        let four = Duration::from_secs(4 * 3600);
        assert_eq!(
            w.next_fit(at("2026-10-24T12:00:00Z"), four),
            Some(at("2026-10-25T00:00:00Z"))
        );
        assert_eq!(w.next_fit(at("2026-10-26T12:00:00Z"), four), None);
    }

    #[test]
    fn a_batch_that_does_not_fit_waits_for_a_longer_window_or_the_next_one() {
        let w = windows(&["daily 02:00-03:00 UTC", "sat 01:00-06:00 UTC"]);
        // At Friday 02:30 only 30 minutes are left: a 45-minute batch fits on Saturday.
        let fri = at("2026-12-04T02:30:00Z");
        assert_eq!(
            w.next_fit(fri, Duration::from_secs(45 * 60)),
            Some(at("2026-12-05T01:00:00Z"))
        );
        // Ten minutes fit now.
        assert_eq!(w.next_fit(fri, Duration::from_secs(600)), Some(fri));
        // Overlapping windows: open until the later end.
        assert_eq!(
            w.at(at("2026-12-05T02:30:00Z")),
            Some(Slot::Open {
                closes: at("2026-12-05T06:00:00Z")
            })
        );
    }

    #[test]
    fn windows_that_overlap_or_touch_are_one() {
        // At 02:30 only the first is open, yet there is no break until 06:00.
        let w = windows(&["daily 02:00-04:00 UTC", "daily 03:00-06:00 UTC"]);
        assert_eq!(
            w.at(at("2026-12-05T02:30:00Z")),
            Some(Slot::Open {
                closes: at("2026-12-05T06:00:00Z")
            })
        );
        // Back to back: Friday night runs into Saturday's window.
        let w = windows(&["fri 22:00-00:00 UTC", "sat 00:00-04:00 UTC"]);
        assert_eq!(
            w.at(at("2026-12-04T23:00:00Z")),
            Some(Slot::Open {
                closes: at("2026-12-05T04:00:00Z")
            })
        );
        // Always open: never closes within the days looked at.
        let always = windows(&["daily 00:00-00:00 UTC"]);
        let Some(Slot::Open { closes }) = always.at(at("2026-12-05T23:00:00Z")) else {
            panic!("always open")
        };
        assert!(closes >= at("2026-12-12T00:00:00Z"), "{closes}");
        assert_eq!(
            always.next_fit(at("2026-12-05T23:00:00Z"), Duration::from_secs(2 * 3600)),
            Some(at("2026-12-05T23:00:00Z"))
        );
    }

    #[test]
    fn day_lists_and_ranges() {
        assert_eq!(
            parse_days("mon-fri").unwrap(),
            [true, true, true, true, true, false, false]
        );
        assert_eq!(
            parse_days("fri-mon").unwrap(),
            [true, false, false, false, true, true, true]
        );
        assert_eq!(
            parse_days("Sat,sunday").unwrap(),
            [false, false, false, false, false, true, true]
        );
        assert_eq!(parse_days("daily").unwrap(), [true; 7]);
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        let err = |t: &str| Window::parse(t).unwrap_err();
        assert!(err("sat 02:00-05:00").contains("DAYS HH:MM-HH:MM TIME_ZONE"));
        assert!(err("sat 02:00-05:00 Europe/Pariss").contains("`Europe/Pariss` is not a time zone"));
        assert!(err("sam 02:00-05:00 UTC").contains("`sam` is not a day"));
        assert!(err("sat 2-5 UTC").contains("`2` is not a time of day"));
        assert!(err("sat 02:00-25:00 UTC").contains("`25:00`"));
        assert_eq!(
            Window::parse("sat  02:00-05:00   UTC").unwrap().to_string(),
            "sat 02:00-05:00 UTC"
        );
    }

    #[test]
    fn no_windows_is_always_open() {
        assert_eq!(Windows::default().at(at("2026-12-05T01:30:00Z")), None);
    }
}
