//! The recap at the end of a run: what happened to each host and what to do next. It is
//! built only from the events, so that the recap of a run replayed from its journal is the
//! same as the one its operator saw.

use std::fmt::Write;
use std::time::Duration;

use indexmap::IndexMap;

use crate::events::{Event, HaltReason, Outcome, Resumed, Stamped};
use crate::ui::text::{clean, duration, halt_reason, outcome_label};

/// The recap of the events of one run.
pub fn recap(events: &[Stamped]) -> String {
    let mut r = Recap::default();
    for e in events {
        r.push(e);
    }
    r.render()
}

/// Accumulates what the recap needs as the events arrive, so that views need not keep the
/// whole stream of a long run.
#[derive(Debug, Default, Clone)]
pub struct Recap {
    run_dir: Option<String>,
    first_at_ms: Option<u64>,
    last_at_ms: u64,
    /// Every host of a started batch, in plan order, and what became of it.
    hosts: IndexMap<String, Row>,
    halted: Option<(HaltReason, usize)>,
    /// The first Ctrl-C, when the run was stopped before halting on its own.
    stopping: Option<HaltReason>,
    aborted: bool,
    finished: Option<Finished>,
    /// A resumed run's hosts that ended ok in an earlier attempt.
    earlier: Vec<String>,
    /// The run id, when `fleetup run --resume` can continue the run.
    resumable: Option<String>,
    /// The batch that waits for the next maintenance window, and when that opens.
    deferred: Option<(usize, Option<String>)>,
    /// What the promotion gate would have refused, when `--skip-gate` overrode it.
    gate_skipped: Option<String>,
}

#[derive(Debug, Default, Clone)]
struct Row {
    started: bool,
    finished: Option<HostEnd>,
}

#[derive(Debug, Clone)]
struct HostEnd {
    outcome: Outcome,
    changed_steps: usize,
    duration: Duration,
    failed_step: Option<String>,
    message: Option<String>,
}

#[derive(Debug, Clone)]
struct Finished {
    duration: Duration,
    untouched: Vec<String>,
    exit_code: u8,
}

impl Recap {
    pub fn push(&mut self, e: &Stamped) {
        self.first_at_ms.get_or_insert(e.at_ms);
        self.last_at_ms = self.last_at_ms.max(e.at_ms);
        match &e.event {
            Event::RunStarted {
                run_dir,
                run_id,
                playbook,
                ..
            } => {
                // A resumed run starts again: only its last attempt's ending counts.
                self.run_dir = Some(run_dir.clone());
                // Ad-hoc commands (`exec`) have no playbook and no journal to resume.
                self.resumable = (playbook != "-").then(|| run_id.clone());
                self.stopping = None;
                self.aborted = false;
                self.halted = None;
                self.finished = None;
                self.deferred = None;
            }
            Event::RunResumed(Resumed { finished, .. }) => {
                // Replayed from the journal, these hosts have their rows already; live,
                // they are named once.
                self.earlier = finished
                    .iter()
                    .filter(|h| !self.hosts.contains_key(*h))
                    .cloned()
                    .collect();
            }
            Event::BatchStarted { hosts, .. } => {
                for h in hosts {
                    self.hosts.entry(h.clone()).or_default();
                }
            }
            Event::HostStarted { host, .. } => {
                self.hosts.entry(host.clone()).or_default().started = true
            }
            Event::HostFinished {
                host,
                outcome,
                changed_steps,
                duration,
                failed_step,
                message,
                ..
            } => {
                let row = self.hosts.entry(host.clone()).or_default();
                row.started = true;
                row.finished = Some(HostEnd {
                    outcome: *outcome,
                    changed_steps: *changed_steps,
                    duration: *duration,
                    failed_step: failed_step.clone(),
                    message: message.clone(),
                });
            }
            Event::Stopping { reason } => self.stopping = Some(reason.clone()),
            Event::Aborting | Event::Abandoning => self.aborted = true,
            Event::Halted { reason, batch } => self.halted = Some((reason.clone(), *batch)),
            Event::RunFinished {
                duration,
                untouched,
                exit_code,
            } => {
                self.finished = Some(Finished {
                    duration: *duration,
                    untouched: untouched.clone(),
                    exit_code: *exit_code,
                })
            }
            Event::Deferred {
                batch,
                next_start_local,
                ..
            } => self.deferred = Some((*batch, next_start_local.clone())),
            Event::GateChecked(g) => {
                self.gate_skipped =
                    (g.verdict == crate::events::Verdict::Skipped).then(|| g.detail.clone());
            }
            Event::StepStarted { .. }
            | Event::StepFinished { .. }
            | Event::StepOutput { .. }
            | Event::Reconnecting { .. }
            | Event::BatchFinished { .. }
            | Event::PauseStarted { .. }
            | Event::HostVerified { .. }
            | Event::PauseFinished { .. } => {}
        }
    }

    /// Whether the run's last event has arrived.
    pub fn is_finished(&self) -> bool {
        self.finished.is_some()
    }

    /// The recap as lines of text, without escape codes.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "RECAP");
        self.table(&mut out);
        self.totals(&mut out);
        self.advice(&mut out);
        out
    }

    fn untouched(&self) -> Vec<&str> {
        match &self.finished {
            Some(f) => f.untouched.iter().map(String::as_str).collect(),
            // Without the last event, the hosts of started batches that never started are
            // the only ones we know were left.
            None => self
                .hosts
                .iter()
                .filter(|(_, r)| !r.started)
                .map(|(h, _)| h.as_str())
                .collect(),
        }
    }

    fn table(&self, out: &mut String) {
        let untouched = self.untouched();
        let rows: Vec<[String; 5]> = self
            .hosts
            .iter()
            .filter(|(h, r)| r.started || !untouched.contains(&h.as_str()))
            .map(|(host, row)| {
                let host = clean(host).into_owned();
                match &row.finished {
                    Some(end) => {
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
                        let label = outcome_label(end.outcome);
                        [
                            host,
                            label,
                            end.changed_steps.to_string(),
                            duration(end.duration),
                            failed,
                        ]
                    }
                    None if row.started => [
                        host,
                        "UNFINISHED".into(),
                        "?".into(),
                        "-".into(),
                        "interrupted mid-upgrade".into(),
                    ],
                    None => [
                        host,
                        "not started".into(),
                        "-".into(),
                        "-".into(),
                        String::new(),
                    ],
                }
            })
            .collect();
        if rows.is_empty() {
            let _ = writeln!(out, "no host was started");
            return;
        }
        let head = ["HOST", "OUTCOME", "CHANGED", "TIME", "FAILED STEP"];
        let mut widths = head.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(console::measure_text_width(cell));
            }
        }
        let line = |cells: [&str; 5]| {
            let mut l = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i == 4 {
                    l.push_str(cell);
                } else {
                    // Padding by display width, so names with wide characters still align.
                    let pad = widths[i].saturating_sub(console::measure_text_width(cell));
                    let right = i == 2 || i == 3;
                    if right {
                        l.push_str(&" ".repeat(pad));
                    }
                    l.push_str(cell);
                    if !right {
                        l.push_str(&" ".repeat(pad));
                    }
                    l.push_str("  ");
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(head));
        for row in &rows {
            let _ = writeln!(out, "{}", line(row.each_ref().map(String::as_str)));
        }
    }

    fn outcomes(&self) -> Vec<(&str, Outcome)> {
        self.hosts
            .iter()
            .filter_map(|(h, r)| r.finished.as_ref().map(|e| (h.as_str(), e.outcome)))
            .collect()
    }

    fn totals(&self, out: &mut String) {
        let outcomes = self.outcomes();
        let mut counts: Vec<String> = [
            Outcome::Ok,
            Outcome::Skipped,
            Outcome::Unreachable,
            Outcome::Failed,
            Outcome::RolledBack,
            Outcome::UnreachableMidUpgrade,
            Outcome::RollbackFailed,
            Outcome::Abandoned,
        ]
        .into_iter()
        .filter_map(|o| {
            let n = outcomes.iter().filter(|(_, x)| *x == o).count();
            (n > 0).then(|| format!("{n} {}", o.label()))
        })
        .collect();
        if !self.earlier.is_empty() {
            counts.push(format!(
                "{} finished in an earlier attempt",
                self.earlier.len()
            ));
        }
        let unfinished = self.unfinished().len();
        if unfinished > 0 {
            counts.push(format!("{unfinished} unfinished"));
        }
        let untouched = self.untouched();
        if !untouched.is_empty() {
            counts.push(format!("{} not started", untouched.len()));
        }
        let total = match &self.finished {
            Some(f) => f.duration,
            None => {
                Duration::from_millis(self.last_at_ms - self.first_at_ms.unwrap_or(self.last_at_ms))
            }
        };
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
        match &self.finished {
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

    fn unfinished(&self) -> Vec<&str> {
        self.hosts
            .iter()
            .filter(|(_, r)| r.started && r.finished.is_none())
            .map(|(h, _)| h.as_str())
            .collect()
    }

    fn advice(&self, out: &mut String) {
        let outcomes = self.outcomes();
        let with = |o: Outcome| -> Vec<String> {
            outcomes
                .iter()
                .filter(|(_, x)| *x == o)
                .map(|(h, _)| clean(h).into_owned())
                .collect()
        };
        let mut lines = Vec::new();
        if let Some(detail) = &self.gate_skipped {
            lines.push(format!(
                "WARNING: the promotion gate was skipped with --skip-gate ({})",
                clean(detail)
            ));
        }
        // First and loudest: a host left half-upgraded by a failed rollback is down now.
        for host in with(Outcome::RollbackFailed) {
            lines.push(format!(
                "!!! {host} NEEDS ATTENTION NOW: its rollback failed, it may be down; see its log"
            ));
        }
        for host in with(Outcome::Abandoned) {
            lines.push(format!(
                "!!! {host} IS DOWN, NOT ROLLED BACK: abandoned past its point of no return; resume the run to finish or roll it back"
            ));
        }
        for host in with(Outcome::UnreachableMidUpgrade) {
            lines.push(format!(
                "!!! {host} NEEDS ATTENTION NOW: unreachable mid-upgrade, it may be down; see its log for the last step and the backup"
            ));
        }
        // One line for all of them: an abort can cut short every host in flight at once.
        let unfinished: Vec<_> = self.unfinished().into_iter().map(clean).collect();
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
        for host in with(Outcome::RolledBack) {
            lines.push(format!("{host} was rolled back to its previous version"));
        }
        let to_fix: Vec<String> = outcomes
            .iter()
            .filter(|(_, o)| {
                matches!(
                    o,
                    Outcome::Failed | Outcome::RolledBack | Outcome::Unreachable
                )
            })
            .map(|(h, _)| clean(h).into_owned())
            .collect();
        if let Some((reason, batch)) = &self.halted {
            lines.push(format!(
                "halted after batch {batch}: {}",
                halt_reason(reason)
            ));
        } else if let Some(reason) = &self.stopping {
            lines.push(format!("stopped: {}", halt_reason(reason)));
        }
        if let Some((batch, next)) = &self.deferred {
            lines.push(format!(
                "deferred: batch {batch} and the ones after it wait for the next maintenance window{}",
                next.as_deref()
                    .map(|at| format!(" ({})", clean(at)))
                    .unwrap_or_default()
            ));
        }
        let stopped_early = self.halted.is_some()
            || self.stopping.is_some()
            || self.aborted
            || self.deferred.is_some();
        let again = match &self.resumable {
            Some(id) => format!(
                "resume the run with `fleetup run --resume {}` and the same -i: finished hosts are left alone",
                clean(id)
            ),
            None => {
                "run again: finished hosts are skipped by the playbook's own checks".to_string()
            }
        };
        if !to_fix.is_empty() {
            lines.push(format!(
                "next: fix the cause on {}, then {again}",
                to_fix.join(", ")
            ));
        } else if stopped_early {
            lines.push(format!("next: {again}"));
        }
        if !lines.is_empty() {
            if let Some(dir) = &self.run_dir {
                lines.push(format!("logs of every host: {}", clean(dir)));
            }
            let _ = writeln!(out);
            for l in lines {
                let _ = writeln!(out, "{l}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::sample_run::{self, at, host_finished};

    #[test]
    fn table_counts_untouched_and_advice() {
        assert_eq!(
            recap(&sample_run::run()),
            "\
RECAP
HOST     OUTCOME  CHANGED  TIME  FAILED STEP
prod-01  ok             1  3.0s
prod-02  skipped        0  2.0s
prod-03  FAILED         0  1.0s  pull the new image

1 ok, 1 skipped, 1 failed, 1 not started in 6.4s (exit code 2)
never started: prod-04

halted after batch 2: 1 of 2 hosts of the batch failed or were unreachable, over max_fail_percentage 0%
next: fix the cause on prod-03, then resume the run with `fleetup run --resume r1` and the same -i: finished hosts are left alone
logs of every host: runs/r1
"
        );
    }

    #[test]
    fn a_deferred_run_after_a_skipped_gate_says_both() {
        let mut events: Vec<Stamped> = sample_run::run()
            .into_iter()
            .filter(|e| !matches!(e.event, Event::Halted { .. } | Event::RunFinished { .. }))
            .collect();
        events.insert(
            1,
            at(
                0,
                Event::GateChecked(crate::events::GateVerdict {
                    require_staged: "staging".into(),
                    soak: Duration::from_secs(86400),
                    verdict: crate::events::Verdict::Skipped,
                    detail: "no successful run took stg-1 of `staging` to v2".into(),
                    runs: vec![],
                }),
            ),
        );
        events.push(at(
            7,
            Event::Deferred {
                batch: 3,
                of: 3,
                reason: crate::schedule::Deferral::Closed {
                    windows: "sat 02:00-05:00 UTC".into(),
                },
                estimate: None,
                next_start: Some("2026-12-05T02:00:00Z".into()),
                next_start_local: Some("Sat 2026-12-05 02:00 UTC".into()),
            },
        ));
        let text = recap(&events);
        assert!(
            text.contains("WARNING: the promotion gate was skipped with --skip-gate (no successful run took stg-1"),
            "{text}"
        );
        assert!(
            text.contains("deferred: batch 3 and the ones after it wait for the next maintenance window (Sat 2026-12-05 02:00 UTC)"),
            "{text}"
        );
        assert!(text.contains("`fleetup run --resume r1`"), "{text}");
    }

    #[test]
    fn rows_follow_the_plan_not_the_order_hosts_finished_in() {
        let text = recap(&sample_run::run());
        let rows: Vec<_> = text.lines().filter(|l| l.starts_with("prod-")).collect();
        assert!(rows[1].starts_with("prod-02") && rows[2].starts_with("prod-03"));
    }

    #[test]
    fn a_failed_rollback_is_called_out_first_and_loudly() {
        let mut events = sample_run::run();
        events.insert(
            15,
            at(
                6,
                host_finished(
                    "prod-02",
                    Outcome::RollbackFailed,
                    3,
                    2,
                    Some("start the new containers"),
                ),
            ),
        );
        events.retain(|e| !matches!(&e.event, Event::HostFinished { host, outcome: Outcome::Skipped, .. } if host == "prod-02"));
        let text = recap(&events);
        assert!(
            text.contains("prod-02  ROLLBACK FAILED        3  2.0s  start the new containers"),
            "{text}"
        );
        assert!(
            text.contains("1 ok, 1 failed, 1 ROLLBACK FAILED, 1 not started"),
            "{text}"
        );
        let advice: Vec<_> = text.lines().skip_while(|l| !l.starts_with("!!!")).collect();
        assert_eq!(
            advice[0],
            "!!! prod-02 NEEDS ATTENTION NOW: its rollback failed, it may be down; see its log"
        );
        // A host whose rollback failed is not among those to simply fix and retry.
        assert!(
            text.contains("next: fix the cause on prod-03, then resume the run"),
            "{text}"
        );
    }

    #[test]
    fn an_interrupted_run_says_how_to_continue_and_which_hosts_were_cut_short() {
        let mut events: Vec<Stamped> = sample_run::run().into_iter().take(12).collect();
        events.push(at(
            5,
            Event::Stopping {
                reason: HaltReason::Interrupted,
            },
        ));
        events.push(at(5, Event::Aborting));
        events.push(at(
            6,
            Event::RunFinished {
                duration: Duration::from_secs(6),
                untouched: vec!["prod-04".into()],
                exit_code: 99,
            },
        ));
        let text = recap(&events);
        assert!(text.contains("prod-02  UNFINISHED"), "{text}");
        assert!(
            text.contains("1 ok, 2 unfinished, 1 not started in 6.0s (exit code 99)"),
            "{text}"
        );
        assert!(
            text.contains("!!! 2 hosts were interrupted in the middle of their upgrade, check them before running again: prod-02, prod-03"),
            "{text}"
        );
        assert!(
            text.contains("stopped: interrupted by the operator"),
            "{text}"
        );
        assert!(
            text.contains("next: resume the run with `fleetup run --resume r1`"),
            "{text}"
        );
    }

    #[test]
    fn a_clean_run_gives_no_advice() {
        let events: Vec<Stamped> = sample_run::run().into_iter().take(9).collect();
        let mut events = events;
        events.push(at(
            3,
            Event::RunFinished {
                duration: Duration::from_secs(3),
                untouched: vec![],
                exit_code: 0,
            },
        ));
        assert_eq!(
            recap(&events),
            "\
RECAP
HOST     OUTCOME  CHANGED  TIME  FAILED STEP
prod-01  ok             1  3.0s

1 ok in 3.0s (exit code 0)
"
        );
    }

    #[test]
    fn host_names_and_messages_are_neutralised() {
        let events = vec![
            at(
                0,
                Event::BatchStarted {
                    batch: 1,
                    of: 1,
                    canary: false,
                    hosts: vec!["evil\x1b]0;x\x07".into()],
                },
            ),
            at(
                1,
                Event::HostFinished {
                    host: "evil\x1b]0;x\x07".into(),
                    outcome: Outcome::Failed,
                    changed: false,
                    changed_steps: 0,
                    duration: Duration::from_secs(1),
                    failed_step: Some("step\x1b[2J".into()),
                    message: Some("boom\x1b[H".into()),
                    log: "l".into(),
                },
            ),
        ];
        let text = recap(&events);
        assert!(!text.contains('\x1b'), "{text}");
        assert!(text.contains("evil\\x1b]0;x\\x07  FAILED"), "{text}");
        assert!(text.contains("step\\x1b[2J: boom\\x1b[H"), "{text}");
    }
}
