//! The recap's table: one row per host of the started batches, in plan order.

use std::fmt::Write;

use console::measure_text_width;

use crate::state::{Host, RunState};
use crate::ui::text::{clean, duration, outcome_label};

const HEAD: [&str; 5] = ["HOST", "OUTCOME", "CHANGED", "TIME", "FAILED STEP"];

/// The table of the hosts `state` knows, but for those never started of the run's
/// untouched hosts (the totals name them).
pub(super) fn write(state: &RunState, out: &mut String) {
    let untouched = state.untouched();
    let rows: Vec<[String; 5]> = state
        .hosts()
        .iter()
        .filter(|(h, r)| r.started || !untouched.contains(&h.as_str()))
        .map(|(name, host)| row(name, host))
        .collect();
    if rows.is_empty() {
        let _ = writeln!(out, "no host was started");
        return;
    }
    let mut widths = HEAD.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(measure_text_width(cell));
        }
    }
    let _ = writeln!(out, "{}", line(&widths, HEAD));
    for row in &rows {
        let _ = writeln!(out, "{}", line(&widths, row.each_ref().map(String::as_str)));
    }
}

fn row(name: &str, host: &Host) -> [String; 5] {
    let name = clean(name).into_owned();
    let Some(end) = &host.end else {
        return if host.started {
            [
                name,
                "UNFINISHED".into(),
                "?".into(),
                "-".into(),
                "interrupted mid-upgrade".into(),
            ]
        } else {
            [
                name,
                "not started".into(),
                "-".into(),
                "-".into(),
                String::new(),
            ]
        };
    };
    let mut failed = end
        .failed_step
        .as_deref()
        .map(clean)
        .unwrap_or_default()
        .into_owned();
    if let Some(m) = &end.message {
        if !failed.is_empty() {
            failed.push_str(": ");
        }
        failed.push_str(&clean(m));
    }
    [
        name,
        outcome_label(end.outcome),
        end.changed_steps.to_string(),
        duration(end.duration),
        failed,
    ]
}

/// One row, padded by display width so that names with wide characters still align;
/// the counts and times are aligned right, the last column is not padded.
fn line(widths: &[usize; 5], cells: [&str; 5]) -> String {
    let mut l = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i == 4 {
            l.push_str(cell);
            continue;
        }
        let pad = " ".repeat(widths[i].saturating_sub(measure_text_width(cell)));
        if i == 2 || i == 3 {
            l.push_str(&pad);
            l.push_str(cell);
        } else {
            l.push_str(cell);
            l.push_str(&pad);
        }
        l.push_str("  ");
    }
    l.trim_end().to_string()
}
