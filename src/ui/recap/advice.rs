//! The recap's last lines: the hosts that need a person first, then why the run stopped,
//! then what to do next.

use std::fmt::Write;

use crate::events::{Outcome, Verdict};
use crate::state::RunState;
use crate::ui::text::{clean, halt_reason};

/// The advice, if there is any, and where every host's log is.
pub(super) fn write(state: &RunState, out: &mut String) {
    let mut lines = attention(state);
    lines.extend(stops(state));
    lines.extend(next(state));
    if lines.is_empty() {
        return;
    }
    if let Some(run) = state.run() {
        lines.push(format!("logs of every host: {}", clean(&run.run_dir)));
    }
    let _ = writeln!(out);
    for l in lines {
        let _ = writeln!(out, "{l}");
    }
}

fn with(state: &RunState, outcome: Outcome) -> Vec<String> {
    state
        .outcomes()
        .into_iter()
        .filter(|(_, o)| *o == outcome)
        .map(|(h, _)| clean(h).into_owned())
        .collect()
}

/// What must not be missed: a skipped gate, then the hosts that may be down, loudest
/// first, then the ones cut short and the ones rolled back.
fn attention(state: &RunState) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(g) = state.gate().filter(|g| g.verdict == Verdict::Skipped) {
        lines.push(format!(
            "WARNING: the promotion gate was skipped with --skip-gate ({})",
            clean(&g.detail)
        ));
    }
    // First and loudest: a host left half-upgraded by a failed rollback is down now.
    let down = [
        (Outcome::RollbackFailed, "NEEDS ATTENTION NOW: its rollback failed, it may be down; see its log"),
        (Outcome::Abandoned, "IS DOWN, NOT ROLLED BACK: abandoned past its point of no return; resume the run to finish or roll it back"),
        (Outcome::UnreachableMidUpgrade, "NEEDS ATTENTION NOW: unreachable mid-upgrade, it may be down; see its log for the last step and the backup"),
    ];
    for (outcome, why) in down {
        lines.extend(
            with(state, outcome)
                .into_iter()
                .map(|h| format!("!!! {h} {why}")),
        );
    }
    // One line for all of them: an abort can cut short every host in flight at once.
    let unfinished: Vec<_> = state.unfinished().into_iter().map(clean).collect();
    match unfinished.len() {
        0 => {}
        1 => lines.push(format!(
            "!!! {} was interrupted in the middle of its upgrade: check it before running again",
            unfinished[0]
        )),
        n => lines.push(format!(
            "!!! {n} hosts were interrupted in the middle of their upgrade, check them before running again: {}",
            unfinished.join(", ")
        )),
    }
    for host in with(state, Outcome::RolledBack) {
        lines.push(format!("{host} was rolled back to its previous version"));
    }
    lines
}

/// Why the run stopped before its last batch.
fn stops(state: &RunState) -> Vec<String> {
    let a = state.attempt();
    let mut lines = Vec::new();
    if let Some((reason, batch)) = &a.halted {
        lines.push(format!(
            "halted after batch {batch}: {}",
            halt_reason(reason)
        ));
    } else if let Some(reason) = &a.stopping {
        lines.push(format!("stopped: {}", halt_reason(reason)));
    }
    if let Some(d) = &a.deferred {
        lines.push(format!(
            "deferred: batch {} and the ones after it wait for the next maintenance window{}",
            d.batch,
            d.next_start_local
                .as_deref()
                .map(|at| format!(" ({})", clean(at)))
                .unwrap_or_default()
        ));
    }
    lines
}

/// What to do next: fix the hosts that failed, and run again or resume.
fn next(state: &RunState) -> Option<String> {
    let to_fix: Vec<String> = state
        .outcomes()
        .into_iter()
        .filter(|(_, o)| {
            matches!(
                o,
                Outcome::Failed | Outcome::RolledBack | Outcome::Unreachable
            )
        })
        .map(|(h, _)| clean(h).into_owned())
        .collect();
    let again = match state.run().filter(|r| r.is_resumable()) {
        Some(run) => format!(
            "resume the run with `fleetup run --resume {}` and the same -i: finished hosts are left alone",
            clean(&run.run_id)
        ),
        None => "run again: finished hosts are skipped by the playbook's own checks".to_string(),
    };
    if !to_fix.is_empty() {
        Some(format!(
            "next: fix the cause on {}, then {again}",
            to_fix.join(", ")
        ))
    } else if state.attempt().stopped_early() {
        Some(format!("next: {again}"))
    } else {
        None
    }
}
