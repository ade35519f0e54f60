//! Small text helpers shared by the run views: neutralising what hosts and inventories send
//! us, and the few formats (times, durations, halt reasons) every view must agree on.

use std::borrow::Cow;
use std::time::Duration;

use crate::events::{Event, GateVerdict, HaltReason, Outcome, Resumed, StepStatus, Verdict};
use crate::schedule::Deferral;

/// `s` made safe to print on one line: host names come from inventories and stderr from
/// hosts, and an escape sequence in either could move the cursor, retitle the window or hide
/// text from the operator. Control characters become visible escapes (`\x1b`), tabs become
/// spaces, and the bidirectional overrides that can reorder what is displayed are escaped too.
pub fn clean(s: &str) -> Cow<'_, str> {
    clean_with(s, false)
}

/// Like [`clean`], but keeps line breaks and tabs: for whole outputs shown as blocks.
/// A `\r` before a `\n` is dropped (Windows line endings are not an attack), any other `\r`
/// is escaped because it would let a later line overwrite an earlier one.
pub fn clean_block(s: &str) -> Cow<'_, str> {
    clean_with(s, true)
}

fn clean_with(s: &str, block: bool) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' if block => out.push(c),
            '\r' if block && chars.peek() == Some(&'\n') => {}
            '\t' => out.push(' '),
            c if needs_escape(c) => escape(c, &mut out),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// Unicode's invisible direction controls: the "Trojan Source" characters.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(c: char, out: &mut String) {
    use std::fmt::Write;
    let n = c as u32;
    let _ = if n < 0x100 {
        write!(out, "\\x{n:02x}")
    } else {
        write!(out, "\\u{{{n:x}}}")
    };
}

/// `at_ms` as an RFC 3339 UTC time to the second, e.g. `2026-11-25T04:31:02Z`.
pub fn timestamp(at_ms: u64) -> String {
    let at = jiff::Timestamp::from_millisecond(i64::try_from(at_ms).unwrap_or(i64::MAX));
    crate::clock::rfc3339(at.unwrap_or(jiff::Timestamp::UNIX_EPOCH))
}

/// A finished duration, precise enough to compare steps: `0.3s`, `12.4s`, `1m02s`, `1h05m`.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        whole(secs)
    }
}

/// A running time, in whole seconds so that it does not flicker: `12s`, `1m02s`, `1h05m`.
pub fn elapsed(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 60 {
        format!("{secs}s")
    } else {
        whole(secs)
    }
}

fn whole(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else {
        format!("{m}m{s:02}s")
    }
}

/// Why the run stopped, in words for the operator.
pub fn halt_reason(reason: &HaltReason) -> String {
    match reason {
        HaltReason::CanaryFailed { failed } => format!(
            "the canary batch failed ({failed} host{})",
            plural(*failed)
        ),
        HaltReason::TooManyFailures {
            failed,
            of,
            max_fail_percentage,
        } => format!(
            "{failed} of {of} host{} of the batch failed or {} unreachable, over max_fail_percentage {max_fail_percentage}%",
            plural(*of),
            were(*failed)
        ),
        HaltReason::HaltImmediately { host } => {
            format!("{} failed and --halt-immediately is set", clean(host))
        }
        HaltReason::Interrupted => "interrupted by the operator".to_string(),
        HaltReason::VerifyFailed { hosts } => {
            let names: Vec<_> = hosts.iter().map(|h| clean(h)).collect();
            format!(
                "{} upgraded host{} failed verification during the pause: {}",
                hosts.len(),
                plural(hosts.len()),
                names.join(", ")
            )
        }
        HaltReason::StoppedAtPause => "the operator stopped the run at a pause".to_string(),
    }
}

/// The promotion gate's verdict, in one line.
pub fn gate(g: &GateVerdict) -> String {
    let verdict = match g.verdict {
        Verdict::Passed => "passed",
        Verdict::Refused => "REFUSED",
        Verdict::Skipped => "SKIPPED with --skip-gate",
        Verdict::NotRequired => "not required",
    };
    format!(
        "promotion gate (`{}` must soak {}): {verdict}: {}",
        clean(&g.require_staged),
        duration(g.soak),
        clean(&g.detail)
    )
}

/// A pause starting after a batch.
pub fn pause_started(batch: usize, wait: Option<Duration>, verifying: usize) -> String {
    let how = match wait {
        Some(d) => format!("pausing {} before the next batch", duration(d)),
        None => "paused: press Enter to go on with the next batch, or type `stop` and Enter".into(),
    };
    let checks = if verifying > 0 {
        format!(
            "; verifying the {verifying} upgraded host{} meanwhile",
            plural(verifying)
        )
    } else {
        String::new()
    };
    format!("after batch {batch}: {how}{checks}")
}

/// A host that failed its verification during a pause.
pub fn verify_failed(host: &str, message: Option<&str>) -> String {
    format!(
        "{}: FAILED VERIFICATION: {}",
        clean(host),
        clean(message.unwrap_or("a verify step failed"))
    )
}

/// A batch that waits for the next maintenance window.
/// `why`: the deferral and the batch's estimate.
pub fn deferred(
    batch: usize,
    of: usize,
    why: (&Deferral, Option<Duration>),
    next: Option<&str>,
) -> String {
    let next = match next {
        Some(at) => format!("; the next window with room for it opens {}", clean(at)),
        None => "; no window of the next week has room for it".into(),
    };
    format!(
        "DEFERRED: batch {batch} of {of} does not start: {}{next}",
        clean(&deferral(why.0, why.1))
    )
}

/// Why a batch waits, in words; `estimate`: how long the batch would take.
pub fn deferral(reason: &Deferral, estimate: Option<Duration>) -> String {
    let about = estimate.map_or("?".into(), duration);
    match reason {
        Deferral::Closed { windows } => format!("the maintenance window is closed ({windows})"),
        Deferral::TooLong { windows, left } => format!(
            "it would take about {about} but the maintenance window ({windows}) closes in {}",
            duration(*left),
        ),
        Deferral::NoRoomThisWeek { windows } => format!(
            "no maintenance window of the next week ({windows}) has room for it (about {about})"
        ),
        Deferral::NoWait { windows } => {
            format!("--no-wait, and the maintenance window ({windows}) has no room for it now")
        }
    }
}

/// Rows as a table of left-aligned columns two spaces apart; a row's last cell is not
/// padded (it may be a long message) and does not widen its column.
pub fn align(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.iter().map(Vec::len).max().unwrap_or(0))
        .map(|i| {
            rows.iter()
                .filter(|r| r.len() > i + 1)
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 < row.len() {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    c.clone()
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// What a resumed run says first: which hosts it leaves alone, which it runs again, and
/// where the interrupted ones were.
pub fn resumed(r: &Resumed) -> Vec<String> {
    let names = |hosts: &[String]| {
        if hosts.is_empty() {
            "none".to_string()
        } else {
            hosts
                .iter()
                .map(|h| clean(h))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut lines = vec![
        format!(
            "resuming run {} (attempt {}): {} host{} finished earlier, left alone: {}",
            clean(&r.run_id),
            r.attempt,
            r.finished.len(),
            plural(r.finished.len()),
            names(&r.finished)
        ),
        format!("run again from their pre-flight: {}", names(&r.retry)),
    ];
    for i in &r.interrupted {
        lines.push(format!(
            "{}: interrupted in step `{}`",
            clean(&i.host),
            clean(&i.step)
        ));
    }
    for change in &r.changes {
        lines.push(format!("resumed with --force although {}", clean(change)));
    }
    lines
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The hosts a run selects: the playbook's pattern, and `--limit` when it narrowed it.
pub fn selection(pattern: &str, limit: Option<&str>) -> String {
    match limit {
        Some(limit) => format!("{} --limit {}", clean(pattern), clean(limit)),
        None => clean(pattern).into_owned(),
    }
}

/// The verb after `n` things: `1 host was`, `2 hosts were`.
pub fn were(n: usize) -> &'static str {
    if n == 1 {
        "was"
    } else {
        "were"
    }
}

/// `[6/14]`, or `[rollback 1/3]` so that nobody mistakes undoing for doing.
pub fn step_label(step: usize, of: usize, rollback: bool) -> String {
    if rollback {
        format!("[rollback {step}/{of}]")
    } else {
        format!("[{step}/{of}]")
    }
}

/// Failures in capitals, so that they stand out in a scrolling log and are easy to grep.
pub fn status_label(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Ok => "ok",
        StepStatus::Changed => "changed",
        StepStatus::Skipped => "skipped",
        StepStatus::Failed => "FAILED",
        StepStatus::Unreachable => "UNREACHABLE",
    }
}

pub fn outcome_label(o: Outcome) -> String {
    if o.is_failure() {
        o.label().to_uppercase()
    } else {
        o.label().to_string()
    }
}

/// The sentence every run view tells `e` with, for the events they all tell alike (the
/// gate, halts, aborts, pauses and failed verifications, deferrals, lost connections);
/// `None` for the others, which each view tells its own way.
pub fn sentence(e: &Event) -> Option<String> {
    Some(match e {
        Event::GateChecked(g) => gate(g),
        Event::Aborting => ABORTING.to_string(),
        Event::Abandoning => ABANDONING.to_string(),
        Event::Halted { reason, batch } => halted(reason, *batch),
        Event::PauseStarted {
            batch,
            duration: wait,
            verifying,
            ..
        } => pause_started(*batch, *wait, *verifying),
        Event::HostVerified {
            host,
            ok: false,
            message,
        } => verify_failed(host, message.as_deref()),
        Event::Deferred {
            batch,
            of,
            reason,
            estimate,
            next_start_local,
            ..
        } => deferred(
            *batch,
            *of,
            (reason, *estimate),
            next_start_local.as_deref(),
        ),
        Event::Reconnecting {
            host,
            attempt,
            of,
            delay_ms,
            error,
        } => reconnecting(host, *attempt, *of, Duration::from_millis(*delay_ms), error),
        Event::NotifierFailed {
            notifier,
            notification,
            error,
        } => format!(
            "warning: {} did not receive {}: {}; the run went on",
            clean(notifier),
            clean(notification),
            clean(error)
        ),
        _ => return None,
    })
}

/// A halt, after the batch it followed.
fn halted(reason: &HaltReason, batch: usize) -> String {
    format!("HALTED after batch {batch}: {}", halt_reason(reason))
}

/// A connection lost past the point of no return, and the attempt to reconnect.
fn reconnecting(host: &str, attempt: u32, of: u32, delay: Duration, error: &str) -> String {
    format!(
        "{}: connection lost after the point of no return ({}); reconnecting to roll back, attempt {attempt} of {of} in {}",
        clean(host),
        clean(error),
        duration(delay)
    )
}

/// The second Ctrl-C, as the views say it.
pub const ABORTING: &str = "ABORTING: terminating the upgrade commands in flight; hosts past their point of no return are rolled back (Ctrl-C again leaves them down)";
/// The third Ctrl-C.
pub const ABANDONING: &str =
    "ABANDONING: terminating the rollbacks; hosts past their point of no return are left DOWN";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_neutralised() {
        assert_eq!(clean("prod-03"), Cow::Borrowed("prod-03"));
        assert_eq!(clean("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(clean("bell\x07\x7f"), "bell\\x07\\x7f");
        // The C1 CSI introducer acts like ESC [ on some terminals.
        assert_eq!(clean("x\u{9b}31m"), "x\\x9b31m");
        assert_eq!(clean("a\tb\nc\rd"), "a b\\x0ac\\x0dd");
        assert_eq!(clean("admin\u{202e}txt.exe"), "admin\\u{202e}txt.exe");
        assert_eq!(clean("prød-ü"), "prød-ü");
    }

    #[test]
    fn blocks_keep_their_lines() {
        assert_eq!(clean_block("one\r\ntwo\tx\n"), "one\ntwo\tx\n");
        assert_eq!(
            clean_block("50%\rdone\x1b]0;pwned\x07"),
            "50%\\x0ddone\\x1b]0;pwned\\x07"
        );
    }

    #[test]
    fn counts_agree_with_their_verbs() {
        let one_of_one = HaltReason::TooManyFailures {
            failed: 1,
            of: 1,
            max_fail_percentage: 0.0,
        };
        assert!(
            halt_reason(&one_of_one)
                .starts_with("1 of 1 host of the batch failed or was unreachable,"),
            "{}",
            halt_reason(&one_of_one)
        );
        let two_of_five = HaltReason::TooManyFailures {
            failed: 2,
            of: 5,
            max_fail_percentage: 20.0,
        };
        assert!(halt_reason(&two_of_five)
            .starts_with("2 of 5 hosts of the batch failed or were unreachable,"));
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(timestamp(1_795_581_062_000), "2026-11-25T04:31:02Z");
        assert_eq!(duration(Duration::from_millis(300)), "0.3s");
        assert_eq!(duration(Duration::from_millis(2_140)), "2.1s");
        assert_eq!(duration(Duration::from_secs(62)), "1m02s");
        assert_eq!(duration(Duration::from_secs(3_900)), "1h05m");
        assert_eq!(elapsed(Duration::from_millis(12_900)), "12s");
        assert_eq!(elapsed(Duration::from_secs(600)), "10m00s");
    }
}
