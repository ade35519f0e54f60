//! The recap at the end of a run: what happened to each host and what to do next. It is
//! rendered from the run's [`RunState`] only, so that the recap of a run replayed from its
//! journal is the same as the one its operator saw.

mod advice;
mod table;

use std::fmt::Write;

use crate::events::{Outcome, Stamped};
use crate::state::RunState;
use crate::ui::text::{clean, duration};

/// The recap of the events of one run.
pub fn recap(events: &[Stamped]) -> String {
    render(&RunState::of(events))
}

/// The recap of the run in `state`, as lines of text without escape codes.
pub fn render(state: &RunState) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "RECAP");
    table::write(state, &mut out);
    totals(state, &mut out);
    advice::write(state, &mut out);
    for failure in state.notifier_failures() {
        if let Some(line) = crate::ui::text::sentence(failure) {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Every outcome, best first: the order the totals count them in.
const OUTCOMES: [Outcome; 8] = [
    Outcome::Ok,
    Outcome::Skipped,
    Outcome::Unreachable,
    Outcome::Failed,
    Outcome::RolledBack,
    Outcome::UnreachableMidUpgrade,
    Outcome::RollbackFailed,
    Outcome::Abandoned,
];

fn totals(state: &RunState, out: &mut String) {
    let outcomes = state.outcomes();
    let mut counts: Vec<String> = OUTCOMES
        .into_iter()
        .filter_map(|o| {
            let n = outcomes.iter().filter(|(_, x)| *x == o).count();
            (n > 0).then(|| format!("{n} {}", o.label()))
        })
        .collect();
    if !state.earlier().is_empty() {
        counts.push(format!(
            "{} finished in an earlier attempt",
            state.earlier().len()
        ));
    }
    let unfinished = state.unfinished().len();
    if unfinished > 0 {
        counts.push(format!("{unfinished} unfinished"));
    }
    let untouched = state.untouched();
    if !untouched.is_empty() {
        counts.push(format!("{} not started", untouched.len()));
    }
    let finished = state.attempt().finished.as_ref();
    let total = finished.map_or_else(|| state.span(), |f| f.duration);
    let _ = writeln!(out);
    let _ = write!(
        out,
        "{} in {}",
        if counts.is_empty() {
            "nothing done".into()
        } else {
            counts.join(", ")
        },
        duration(total)
    );
    match finished {
        Some(f) => {
            let _ = writeln!(out, " (exit code {})", f.exit_code);
        }
        None => {
            let _ = writeln!(out, " (the run ended without its final event)");
        }
    }
    if !untouched.is_empty() {
        let names: Vec<_> = untouched.iter().map(|h| clean(h)).collect();
        let _ = writeln!(out, "never started: {}", names.join(" "));
    }
}

#[cfg(test)]
mod tests;
