//! A staged rollout before it starts, in words: the plan's outlook lines, the wait for a
//! maintenance window, and a run deferred to a later one. The decisions are `staging`'s.

use std::time::Duration;

use jiff::Timestamp;

use crate::clock;
use crate::staging::{Deferred, Outlook, WindowsNow};
use crate::ui::plan;
use crate::ui::text::{elapsed, plural};
use crate::window::{self, Slot};

/// The outlook as the plan shows it.
pub fn outlook(o: &Outlook) -> plan::Outlook {
    plan::Outlook {
        gate: o.gate.as_ref().map(crate::ui::gate::outlook),
        windows: o.windows.iter().map(windows_now).collect(),
        per_host: o.per_host,
        estimates: o.estimates.clone(),
    }
}

/// A window set, its hosts, and whether it is open now.
fn windows_now(w: &WindowsNow) -> String {
    let until = |at: Timestamp| {
        format!(
            "{} ({})",
            elapsed(clock::until(w.now, at)),
            window::local(at, &w.windows)
        )
    };
    let state = match w.slot {
        Some(Slot::Open { closes }) => format!("open now, closes in {}", until(closes)),
        Some(Slot::Closed { opens }) => format!("closed now, opens in {}", until(opens)),
        None => String::new(),
    };
    format!(
        "{} ({} host{}): {state}",
        w.windows,
        w.hosts,
        plural(w.hosts)
    )
}

/// Asks whether to wait for batch 1's window, `left` from now.
pub fn wait_question(local: &str, left: Duration) -> String {
    format!(
        "batch 1 can start at {local} (in {}): wait for it, then upgrade without asking again? [y/N] ",
        elapsed(left)
    )
}

/// The countdown's line, `secs` before batch 1 starts at `at`.
pub fn waiting(windows: &str, secs: u64, at: &str) -> String {
    format!(
        "waiting for the maintenance window ({windows}): batch 1 starts in {} (at {at}); Ctrl-C cancels",
        elapsed(Duration::from_secs(secs))
    )
}

/// A run that does not start now, and what the operator can do about it (`resume` is
/// the command that continues it).
pub fn deferred(d: &Deferred, resume: &str) -> String {
    let next = d.next.as_ref().map(|(_, local)| local.as_str());
    format!(
        "{}. Nothing was contacted: {}",
        crate::ui::text::deferred(d.batch, d.of, (&d.reason, d.estimate), next),
        match next {
            Some(_) => format!("run `{resume}` then"),
            None => "widen the window, or make the batch smaller with --serial".to_string(),
        }
    )
}
