//! `fleetup show RUN --html`: a run as one self-contained HTML page, for the people who
//! review a night's rollout the next morning. Inline CSS and SVG, no script, no network:
//! the file can be mailed, attached to a ticket or opened years later.
//!
//! It is made from the journal alone (the run's record, its events, its pre-flight table
//! and its hosts' logs), so it shows any past run, and a resumed run's every attempt.
//! Everything from hosts and inventories is escaped; the journal holds it redacted.

mod hosts;
mod live;
mod read;
mod svg;
pub mod timeline;

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::events::{Outcome, Stamped};
use crate::journal::read::Summary;
use crate::journal::RunRecord;
use crate::state::RunState;
use crate::ui::history::{heading, Entry};
use crate::ui::text::{duration, gate};

pub use live::LiveReport;
pub use read::{load, preflight_json, write, Before, ReportError};

/// What the report is made of, as the journal keeps it.
#[derive(Debug, Clone)]
pub struct Sources {
    pub record: RunRecord,
    pub events: Vec<Stamped>,
    /// The last pre-flight's table, as the run printed it.
    pub preflight: Option<String>,
    /// The last pre-flight's rows: each host's `report:` columns before the upgrade.
    pub before: Vec<read::Before>,
    /// The same columns read once the run was over (`run --html-report`), if they were.
    pub after: Vec<read::Before>,
    /// Each host's log (its steps' commands and output), by host.
    pub logs: BTreeMap<String, String>,
    /// Whether a live process runs it now (the page is rewritten as it goes).
    pub running: bool,
}

const STYLE: &str = include_str!("style.css");

/// The page.
pub fn html(s: &Sources) -> String {
    let state = RunState::of(&s.events);
    let hosts = s.record.plan.iter().map(|b| b.hosts.len()).sum();
    let summary = Summary::of(&state, hosts, s.running);
    let entry = Entry {
        record: &s.record,
        summary: &summary,
    };
    let mut out = String::with_capacity(64 * 1024 + s.events.len() * 200);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <title>fleetup run {}</title><style>{STYLE}</style></head><body>\n",
        escape(&s.record.run_id)
    );
    header(s, &entry, &state, &mut out);
    legend(&mut out);
    for attempt in timeline::attempts(&s.events) {
        svg::attempt(&attempt, &mut out);
    }
    hosts::section(s, &state, &mut out);
    hosts::preflight(s, &mut out);
    out.push_str("</body></html>\n");
    out
}

/// Who ran what, where, when, under which gate and windows, and how it ended.
fn header(s: &Sources, entry: &Entry<'_>, state: &RunState, out: &mut String) {
    let r = &s.record;
    let selection = match &r.limit {
        Some(limit) => format!("{} --limit {limit}", r.pattern),
        None => r.pattern.clone(),
    };
    let ended = entry.summary.ended.word();
    let _ = write!(
        out,
        "<header class=\"ended-{}\"><h1>{} <small>run {}</small></h1><p class=\"ended\">{}</p><dl>",
        escape(&ended.replace(' ', "-")),
        escape(&r.playbook_name),
        escape(&r.run_id),
        escape(&heading(entry)),
    );
    let mut row = |k: &str, v: &str| {
        let _ = write!(out, "<dt>{k}</dt><dd>{}</dd>", escape(v));
    };
    row("operator", &format!("{} on {}", r.operator, r.controller));
    row("started", &r.started);
    row("playbook", &r.playbook.display().to_string());
    if !r.target.is_empty() {
        row("target", &r.target.join(", "));
    }
    row("hosts", &selection);
    row(
        "rollout",
        &format!(
            "serial {} · canary {} · max_fail_percentage {}% · forks {}",
            r.rollout.serial, r.rollout.canary, r.rollout.max_fail_percentage, r.rollout.forks
        ),
    );
    if let Some(g) = state.gate().or(r.gate.as_ref()) {
        row("gate", &gate(g));
    }
    if !r.windows.is_empty() {
        row("windows", &r.windows.join(" · "));
    }
    row(
        "work",
        &format!(
            "{} in {} attempt{}",
            duration(entry.summary.duration),
            entry.summary.attempts,
            if entry.summary.attempts == 1 { "" } else { "s" }
        ),
    );
    out.push_str("</dl></header>\n");
}

fn legend(out: &mut String) {
    out.push_str("<p class=\"legend\">");
    for (class, word) in [
        ("ok", "ok"),
        ("changed", "changed"),
        ("skipped", "skipped"),
        ("failed", "failed"),
        ("rolledback", "rollback step"),
        ("unreachable", "unreachable"),
        ("interrupted", "interrupted"),
        ("pause", "pause"),
        ("halt", "halt / stop"),
        ("deferral", "deferral"),
    ] {
        let _ = write!(out, "<span class=\"key {class}\"></span>{word} ");
    }
    out.push_str("</p>\n");
}

impl Sources {
    /// The playbook's `report:` columns, as the pre-flight read them.
    fn preflight_columns(&self) -> Vec<String> {
        let mut columns: Vec<String> = Vec::new();
        for c in self.before.iter().flat_map(|b| b.report.keys()) {
            if !columns.contains(c) {
                columns.push(c.clone());
            }
        }
        columns
    }

    fn preflight_row(&self, host: &str) -> Option<&indexmap::IndexMap<String, String>> {
        row(&self.before, host)
    }

    fn after_row(&self, host: &str) -> Option<&indexmap::IndexMap<String, String>> {
        row(&self.after, host)
    }
}

fn row<'a>(rows: &'a [read::Before], host: &str) -> Option<&'a indexmap::IndexMap<String, String>> {
    rows.iter().find(|b| b.host == host).map(|b| &b.report)
}

/// The CSS class of a host's outcome.
pub(crate) fn outcome_class(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok => "ok",
        Outcome::Skipped => "skipped",
        Outcome::Unreachable => "unreachable",
        Outcome::Failed => "failed",
        Outcome::RolledBack => "rolledback",
        Outcome::UnreachableMidUpgrade | Outcome::RollbackFailed | Outcome::Abandoned => "down",
    }
}

/// `s` safe as HTML text or an attribute's value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters (a host's escape sequences) are shown, not passed on.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
