//! The view for pipes, CI and cron: one timestamped line per thing that happened, no escape
//! codes, so that logs can be grepped and diffed; the recap at the end.

use std::io::Write;

use crate::events::{Event, Stamped, StepStatus};
use crate::state::{RunState, Shape};
use crate::ui::recap;
use crate::ui::text::{
    clean, duration, elapsed, halt_reason, outcome_label, plural, resumed, selection, sentence,
    status_label, step_label, timestamp,
};
use crate::ui::View;

pub struct PlainView {
    out: Box<dyn Write + Send>,
    state: RunState,
    recap_written: bool,
    /// Tells the time left at the end of each batch.
    eta: Shape,
}

impl PlainView {
    pub fn new(out: Box<dyn Write + Send>, eta: Shape) -> Self {
        PlainView {
            out,
            state: RunState::default(),
            recap_written: false,
            eta,
        }
    }

    fn write_recap(&mut self) {
        if self.recap_written {
            return;
        }
        self.recap_written = true;
        let text = recap::render(&self.state);
        let _ = writeln!(self.out);
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

impl View for PlainView {
    fn event(&mut self, e: &Stamped) {
        self.state.apply(e);
        // `BatchFinished` does not repeat how many batches there are.
        let batches = self.state.batch().map_or(0, |b| b.of);
        let ts = timestamp(e.at_ms);
        let mut lines = lines(&e.event, batches);
        if let (Event::BatchFinished { .. }, Some(line)) = (&e.event, lines.last_mut()) {
            // Nothing is said after the last batch, nor of less than a second.
            let left = self.eta.left(&self.state, e.at_ms);
            if let Some(left) = left.filter(|l| l.as_secs() > 0) {
                line.push_str(&format!("; about {} left", elapsed(left)));
            }
        }
        for line in lines {
            // A closed pipe must not stop the run: the journal still records everything.
            let _ = writeln!(self.out, "{ts} {line}");
        }
        let _ = self.out.flush();
        if matches!(e.event, Event::RunFinished { .. }) {
            self.write_recap();
        }
    }

    fn finish(&mut self) {
        self.write_recap();
    }
}

/// The lines (without their timestamp) that tell one event.
pub fn lines(e: &Event, batches: usize) -> Vec<String> {
    match e {
        Event::StepStarted { .. } | Event::StepFinished { .. } | Event::StepOutput { .. } => {
            step_lines(e)
        }
        Event::HostStarted { .. }
        | Event::HostFinished { .. }
        | Event::Reconnecting { .. }
        | Event::HostVerified { .. } => host_lines(e),
        _ => run_lines(e, batches),
    }
}

/// The lines of the run's and its batches' events.
fn run_lines(e: &Event, batches: usize) -> Vec<String> {
    let line = match e {
        Event::RunStarted {
            run_id,
            playbook,
            name,
            pattern,
            limit,
            hosts,
            batches,
            forks,
            run_dir,
        } => format!(
            "run {}: {} ({}) on `{}`: {hosts} host{} in {batches} batch{}, {forks} at once; logs in {}",
            clean(run_id),
            clean(name),
            clean(playbook),
            selection(pattern, limit.as_deref()),
            plural(*hosts),
            if *batches == 1 { "" } else { "es" },
            clean(run_dir),
        ),
        Event::RunResumed(r) => return resumed(r),
        Event::BatchStarted {
            batch,
            of,
            canary,
            hosts,
        } => {
            let names: Vec<_> = hosts.iter().map(|h| clean(h)).collect();
            format!(
                "batch {batch}/{of}{}: started: {}",
                if *canary { " (canary)" } else { "" },
                names.join(" ")
            )
        }
        Event::BatchFinished {
            batch,
            ok,
            failed,
            unreachable,
        } => format!(
            "batch {batch}/{batches}: finished: {ok} ok, {failed} failed, {unreachable} unreachable"
        ),
        Event::RunFinished {
            duration: d,
            untouched,
            exit_code,
        } => format!(
            "run finished in {} with exit code {exit_code}; {} host{} never started",
            duration(*d),
            untouched.len(),
            plural(untouched.len())
        ),
        _ => return stop_lines(e),
    };
    vec![line]
}

/// The lines of what stops, pauses or holds back the run.
fn stop_lines(e: &Event) -> Vec<String> {
    let line = match e {
        Event::Stopping { reason } => format!(
            "STOPPING: {}: no new host starts; hosts in flight finish",
            halt_reason(reason)
        ),
        Event::PauseFinished { batch } => format!("after batch {batch}: pause over"),
        _ => return sentence(e).into_iter().collect(),
    };
    vec![line]
}

/// The lines of a host's start and end, and of what happens to it between its steps.
fn host_lines(e: &Event) -> Vec<String> {
    let line = match e {
        Event::HostStarted { host, steps, .. } => {
            format!("{}: started ({steps} step{})", clean(host), plural(*steps))
        }
        Event::HostFinished {
            host,
            outcome,
            changed_steps,
            duration: d,
            failed_step,
            message,
            log,
            ..
        } => {
            let mut line = format!("{}: {}", clean(host), outcome_label(*outcome));
            if let Some(step) = failed_step {
                line.push_str(&format!(" at \"{}\"", clean(step)));
            }
            line.push_str(&format!(
                " ({changed_steps} step{} changed, {})",
                plural(*changed_steps),
                duration(*d)
            ));
            if let Some(m) = message {
                line.push_str(&format!(": {}", clean(m)));
            }
            if outcome.is_failure() {
                line.push_str(&format!("; log: {}", clean(log)));
            }
            line
        }
        _ => return sentence(e).into_iter().collect(),
    };
    vec![line]
}

/// The lines of a step's start and end; its output is in the host's log.
fn step_lines(e: &Event) -> Vec<String> {
    match e {
        Event::StepStarted {
            host,
            step,
            of,
            name,
            rollback,
        } => vec![format!(
            "{} {} {}: started",
            clean(host),
            step_label(*step, *of, *rollback),
            clean(name)
        )],
        Event::StepFinished {
            host,
            step,
            of,
            name,
            rollback,
            status,
            rc,
            duration: d,
            attempts,
            message,
            stderr_tail,
        } => {
            let host = clean(host);
            let mut facts = Vec::new();
            if let Some(rc) = rc {
                facts.push(format!("rc {rc}"));
            }
            facts.push(duration(*d));
            if *attempts > 1 {
                facts.push(format!("{attempts} attempts"));
            }
            let mut line = format!(
                "{host} {} {}: {} ({})",
                step_label(*step, *of, *rollback),
                clean(name),
                status_label(*status),
                facts.join(", ")
            );
            let failed = matches!(status, StepStatus::Failed | StepStatus::Unreachable);
            // The reason in words if there is one, otherwise stderr's last line, which is
            // usually the error; the rest of stderr follows on its own lines.
            let summary = message.as_deref().or(if failed {
                stderr_tail.last().map(String::as_str)
            } else {
                None
            });
            if let Some(s) = summary {
                line.push_str(": ");
                line.push_str(&clean(s));
            }
            let mut out = vec![line];
            if failed && (message.is_some() || stderr_tail.len() > 1) {
                out.extend(
                    stderr_tail
                        .iter()
                        .map(|l| format!("{host}   stderr: {}", clean(l))),
                );
            }
            out
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::sample_run::{self, Capture};

    #[test]
    fn the_first_line_names_the_limit_beside_the_pattern() {
        let mut started = sample_run::run().remove(0).event;
        if let Event::RunStarted { limit, .. } = &mut started {
            *limit = Some("prod-03".into());
        }
        let line = lines(&started, 0).join("\n");
        assert!(
            line.contains(" on `production --limit prod-03`: 4 hosts in 3 batches"),
            "{line}"
        );
    }

    #[test]
    fn a_scripted_run_line_by_line() {
        let capture = Capture::default();
        let mut view = PlainView::new(Box::new(capture.clone()), sample_run::shape());
        for e in sample_run::run() {
            view.event(&e);
        }
        view.finish();
        let text = capture.text();
        let expected = "\
2026-11-25T04:31:00Z run r1: SimpleLogin upgrade (playbooks/up.yml) on `production`: 4 hosts in 3 batches, 5 at once; logs in runs/r1
2026-11-25T04:31:00Z batch 1/3 (canary): started: prod-01
2026-11-25T04:31:00Z prod-01: started (2 steps)
2026-11-25T04:31:01Z prod-01 [1/2] check the version: started
2026-11-25T04:31:01Z prod-01 [1/2] check the version: ok (rc 0, 0.3s)
2026-11-25T04:31:01Z prod-01 [2/2] pull the new image: started
2026-11-25T04:31:03Z prod-01 [2/2] pull the new image: changed (rc 0, 2.1s)
2026-11-25T04:31:03Z prod-01: ok (1 step changed, 3.0s)
2026-11-25T04:31:03Z batch 1/3: finished: 1 ok, 0 failed, 0 unreachable; about 6s left
2026-11-25T04:31:04Z batch 2/3: started: prod-02 prod-03
2026-11-25T04:31:04Z prod-02: started (2 steps)
2026-11-25T04:31:04Z prod-03: started (2 steps)
2026-11-25T04:31:05Z prod-03 [2/2] pull the new image: started
2026-11-25T04:31:05Z prod-03 [2/2] pull the new image: FAILED (rc 1, 0.3s): \\x1b[31mmanifest unknown\\x1b[0m
2026-11-25T04:31:05Z prod-03: FAILED at \"pull the new image\" (0 steps changed, 1.0s); log: runs/r1/prod-03.log
2026-11-25T04:31:06Z prod-02: skipped (0 steps changed, 2.0s)
2026-11-25T04:31:06Z batch 2/3: finished: 1 ok, 1 failed, 0 unreachable; about 2s left
2026-11-25T04:31:06Z HALTED after batch 2: 1 of 2 hosts of the batch failed or was unreachable, over max_fail_percentage 0%
2026-11-25T04:31:06Z run finished in 6.4s with exit code 2; 1 host never started

RECAP
";
        let (head, recap) = text.split_at(expected.len().min(text.len()));
        for (n, (got, want)) in head.lines().zip(expected.lines()).enumerate() {
            assert_eq!(got, want, "line {}", n + 1);
        }
        assert_eq!(head, expected);
        // The recap is printed once, at the run's end, not again by `finish`.
        assert_eq!(recap.matches("HOST").count(), 1, "{recap}");
        assert!(!text.contains('\x1b'), "no escape codes: {text}");
    }

    #[test]
    fn failure_with_a_message_shows_the_whole_stderr_tail() {
        let e = Event::StepFinished {
            host: "prod-07".into(),
            step: 3,
            of: 3,
            name: "start the new containers".into(),
            rollback: true,
            status: StepStatus::Failed,
            rc: None,
            duration: std::time::Duration::from_secs(30),
            attempts: 3,
            message: Some("timed out after 30s".into()),
            stderr_tail: vec!["waiting for db".into(), "still waiting".into()],
        };
        assert_eq!(
            lines(&e, 3),
            vec![
                "prod-07 [rollback 3/3] start the new containers: FAILED (30.0s, 3 attempts): timed out after 30s",
                "prod-07   stderr: waiting for db",
                "prod-07   stderr: still waiting",
            ]
        );
    }

    #[test]
    fn stopping_and_aborting() {
        use crate::events::HaltReason;
        let stop = Event::Stopping {
            reason: HaltReason::Interrupted,
        };
        assert_eq!(
            lines(&stop, 3),
            vec![
                "STOPPING: interrupted by the operator: no new host starts; hosts in flight finish"
            ]
        );
        assert_eq!(
            lines(&Event::Aborting, 3),
            vec!["ABORTING: terminating the upgrade commands in flight; hosts past their point of no return are rolled back (Ctrl-C again leaves them down)"]
        );
        assert_eq!(
            lines(&Event::Abandoning, 3),
            vec!["ABANDONING: terminating the rollbacks; hosts past their point of no return are left DOWN"]
        );
    }

    #[test]
    fn the_recap_is_printed_by_finish_when_the_run_ended_without_its_last_event() {
        let capture = Capture::default();
        let mut view = PlainView::new(Box::new(capture.clone()), sample_run::shape());
        for e in sample_run::run().iter().take(12) {
            view.event(e);
        }
        view.finish();
        view.finish();
        let text = capture.text();
        assert_eq!(text.matches("RECAP").count(), 1, "{text}");
        assert!(text.contains("without its final event"), "{text}");
    }
}
