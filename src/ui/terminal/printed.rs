//! The lines the terminal prints above its live area, once, as events arrive: batches,
//! each host as it ends (collapsed to one line, or its failure with the failing steps and
//! their stderr), and whatever stops, pauses or holds back the run.

use crate::events::{Event, Outcome, Stamped, StepStatus, Verdict};
use crate::state::{HostEnd, RunState, StepFailure};
use crate::ui::text::{
    clean, duration, halt_reason, outcome_label, plural, resumed, sentence, step_label,
};

/// Stderr lines shown under a failed host; the rest is in its log.
const TAIL_LINES: usize = 5;

/// How a printed line is shown; the text itself carries no escape codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Plain,
    Good,
    Dim,
    Bad,
    /// Halts, stops, aborts and failed rollbacks: they must not be missed.
    Loud,
}

/// A line to print above the live area, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printed {
    pub tone: Tone,
    pub text: String,
    /// Printed whole even when wider than the terminal: what an operator must copy (a
    /// backup's path to restore by hand) is never cut.
    pub whole: bool,
}

impl Printed {
    fn new(tone: Tone, text: impl Into<String>) -> Self {
        Printed {
            tone,
            text: text.into(),
            whole: false,
        }
    }

    fn whole(tone: Tone, text: impl Into<String>) -> Self {
        Printed {
            whole: true,
            ..Printed::new(tone, text)
        }
    }
}

/// The lines that tell `e`, in the run as `state` has it before `e`.
pub(super) fn printed(state: &RunState, e: &Stamped) -> Vec<Printed> {
    match &e.event {
        Event::HostFinished { host, .. } => {
            let failures = state.flight(host).map_or(&[][..], |f| &f.failures[..]);
            HostEnd::of(&e.event, e.at_ms)
                .map(|end| finished(host, &end, failures))
                .unwrap_or_default()
        }
        Event::RunResumed(r) => resumed(r)
            .into_iter()
            .map(|line| Printed::new(Tone::Loud, line))
            .collect(),
        Event::Stopping { reason } => {
            let n = state.flights().len();
            vec![Printed::new(
                Tone::Loud,
                format!(
                    "■ STOPPING: {}. No new host starts; the {n} host{} in flight finish. Ctrl-C again aborts them.",
                    halt_reason(reason),
                    plural(n)
                ),
            )]
        }
        event => one(event).into_iter().collect(),
    }
}

/// The line of an event told in one line, if it is shown.
fn one(e: &Event) -> Option<Printed> {
    if let Event::BatchStarted {
        batch,
        of,
        canary,
        hosts,
    } = e
    {
        let kind = if *canary { " (canary)" } else { "" };
        let n = hosts.len();
        let text = format!("── batch {batch} of {of}{kind}: {n} host{}", plural(n));
        return Some(Printed::new(Tone::Dim, text));
    }
    let text = sentence(e)?;
    Some(match e {
        Event::GateChecked(g) if g.verdict != Verdict::Skipped => Printed::new(Tone::Dim, text),
        // What ends or holds back the run is marked, as in the header.
        Event::Aborting | Event::Abandoning | Event::Halted { .. } | Event::Deferred { .. } => {
            Printed::new(Tone::Loud, format!("■ {text}"))
        }
        _ => Printed::new(Tone::Loud, text),
    })
}

/// A host that ended: one line when it is ok or skipped; otherwise where it failed, why,
/// the last lines of each failing step's stderr, and its log.
fn finished(host: &str, end: &HostEnd, failures: &[StepFailure]) -> Vec<Printed> {
    let host = clean(host);
    let took = duration(end.duration);
    match end.outcome {
        Outcome::Ok => {
            let text = format!("✓ {host}  ok  {} changed  {took}", end.changed_steps);
            return vec![Printed::new(Tone::Good, text)];
        }
        Outcome::Skipped => {
            return vec![Printed::new(
                Tone::Dim,
                format!("- {host}  skipped  {took}"),
            )]
        }
        _ => {}
    }
    let at = match (failures.first(), &end.failed_step) {
        (Some(f), _) => format!(" at {} {}", label(f), clean(&f.name)),
        (None, Some(step)) => format!(" at {}", clean(step)),
        (None, None) => String::new(),
    };
    let tone = if end.outcome.leaves_host_down() {
        Tone::Loud
    } else {
        Tone::Bad
    };
    let label = outcome_label(end.outcome);
    let mut out = vec![Printed::new(tone, format!("✗ {host}  {label}{at}  {took}"))];
    if let Some(m) = end.message.as_deref().and_then(|m| untold(m, failures)) {
        out.push(Printed::whole(Tone::Plain, format!("    {}", clean(m))));
    }
    for f in failures {
        out.extend(failure(f, failures.len() > 1));
    }
    if end.outcome == Outcome::RollbackFailed {
        out.push(Printed::new(
            Tone::Loud,
            format!("    {host} NEEDS ATTENTION NOW: its rollback failed"),
        ));
    }
    out.push(Printed::new(
        Tone::Dim,
        format!("    log: {}", clean(&end.log)),
    ));
    out
}

/// What the host's message adds to its failing steps' lines: the engine starts it with the
/// step's own reason (its message, else its last stderr line), which those lines show
/// already, and appends the playbook's `failure_note` (where the backup is).
fn untold<'a>(message: &'a str, failures: &[StepFailure]) -> Option<&'a str> {
    let told = failures
        .iter()
        .flat_map(|f| f.message.iter().chain(f.stderr_tail.last()));
    let mut rest = message;
    for t in told {
        if rest == t {
            return None;
        }
        if let Some(after) = rest
            .strip_prefix(t.as_str())
            .and_then(|r| r.strip_prefix("; "))
        {
            rest = after;
            break;
        }
    }
    Some(rest)
}

fn label(f: &StepFailure) -> String {
    step_label(f.number, f.of, f.rollback)
}

/// A failing step: what failed and why (unless the host's line said it all), and the
/// last lines of its stderr.
fn failure(f: &StepFailure, several: bool) -> Vec<Printed> {
    let mut out = Vec::new();
    if several || f.message.is_some() || f.rc.is_some() {
        let rc = f.rc.map(|rc| format!(" (rc {rc})")).unwrap_or_default();
        let why = f
            .message
            .as_deref()
            .map(|m| format!(": {}", clean(m)))
            .unwrap_or_default();
        let status = if f.status == StepStatus::Unreachable {
            "unreachable"
        } else {
            "failed"
        };
        out.push(Printed::new(
            Tone::Plain,
            format!("    {} {} {status}{rc}{why}", label(f), clean(&f.name)),
        ));
    }
    let skip = f.stderr_tail.len().saturating_sub(TAIL_LINES);
    for l in f.stderr_tail.iter().skip(skip) {
        out.push(Printed::new(Tone::Dim, format!("      │ {}", clean(l))));
    }
    out
}
