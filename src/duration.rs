//! Durations as people write and read them (`90s`, `1h 30m`, `2 days`), through jiff's
//! friendly format: the one time crate fleetup needs, for windows as for timeouts.

use std::time::Duration;

use jiff::{SignedDuration, Span, SpanRelativeTo};

/// Reads a duration: jiff's friendly format (`10s`, `1h30m`, `3 mins`, `2d`, `1w`) or
/// ISO 8601 (`PT90S`). A day is 24 hours; months and years, whose length varies, are
/// refused, as is a negative duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let span: Span = text.parse().map_err(|e| format!("{e}"))?;
    let signed = span
        .to_duration(SpanRelativeTo::days_are_24_hours())
        .map_err(|e| format!("{e}"))?;
    Duration::try_from(signed).map_err(|_| format!("{text} is negative"))
}

/// A duration in the same friendly words (`1h 30m`, `10s`, `1s 500ms`).
pub fn friendly(d: Duration) -> String {
    match SignedDuration::try_from(d) {
        Ok(d) => format!("{d:#}"),
        Err(_) => format!("{}s", d.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_operators_write_reads_as_they_mean_it() {
        let s = Duration::from_secs;
        assert_eq!(parse("90s"), Ok(s(90)));
        assert_eq!(parse(" 1h 30m "), Ok(s(5400)));
        assert_eq!(parse("3 mins"), Ok(s(180)));
        assert_eq!(parse("2d"), Ok(s(172_800)));
        assert_eq!(parse("1w"), Ok(s(604_800)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("PT90S"), Ok(s(90)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert!(parse("1 month").is_err());
        assert!(parse("soon").is_err());
        assert!(parse("-5s").is_err());
    }

    #[test]
    fn durations_are_shown_in_the_same_words() {
        assert_eq!(friendly(Duration::from_secs(10)), "10s");
        assert_eq!(friendly(Duration::from_secs(5400)), "1h 30m");
        assert_eq!(friendly(Duration::from_millis(1500)), "1s 500ms");
        assert_eq!(friendly(Duration::ZERO), "0s");
    }
}
