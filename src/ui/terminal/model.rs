//! What the terminal shows, drawn from the run's [`RunState`]: the header, the live lines
//! of the hosts in flight and the overall bar. Pure, so that what the operator sees is
//! tested without a terminal.

use std::time::Duration;

use console::measure_text_width;

use super::layout::{fit, host_line, overall_line};
use super::printed::{printed, Printed};
use super::TICK;
use crate::events::Stamped;
use crate::state::{RunState, Shape, Stage};
use crate::ui::text::{clean, selection, step_label};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// Rows kept free of live lines, so that the header, the overall bar and the last finished
/// hosts stay visible and the live area never reaches the top of the screen.
const RESERVED_ROWS: usize = 6;
/// Host names longer than this do not push every live line's step off the screen.
const MAX_HOST_WIDTH: usize = 24;

/// The run as the terminal draws it, updated by events and drawn by the ticker.
#[derive(Debug, Default)]
pub struct Model {
    state: RunState,
    /// The run's plan, for the time left.
    eta: Shape,
}

impl Model {
    pub fn new(eta: Shape) -> Self {
        Model {
            state: RunState::default(),
            eta,
        }
    }

    /// Takes in one event; returns the lines to print above the live area.
    pub fn apply(&mut self, e: &Stamped) -> Vec<Printed> {
        // A host's end is told with its flight's failures, which the event ends.
        let lines = printed(&self.state, e);
        self.state.apply(e);
        lines
    }

    pub fn state(&self) -> &RunState {
        &self.state
    }

    pub fn header_line(&self, width: usize) -> String {
        let (name, hosts) = self
            .state
            .run()
            .map(|r| {
                let hosts = selection(&r.pattern, r.limit.as_deref());
                (clean(&r.name).into_owned(), hosts)
            })
            .unwrap_or_default();
        let mut line = format!("{name} on {hosts}");
        match self.state.batch() {
            Some(b) => {
                line.push_str(&format!(" · batch {} of {}", b.number, b.of));
                if b.canary {
                    line.push_str(" (canary)");
                }
            }
            None => line.push_str(" · connecting"),
        }
        if let Some(stage) = self.state.attempt().stage {
            line.push_str(" · ");
            line.push_str(stage_word(stage));
        }
        fit(&line, width)
    }

    /// The live lines: one per host in flight, oldest first, as many as fit in `rows`.
    pub fn live_lines(&self, now_ms: u64, rows: usize, width: usize) -> Vec<String> {
        if self.state.is_finished() {
            return Vec::new();
        }
        let flights = self.state.flights();
        let room = rows.saturating_sub(RESERVED_ROWS).max(1);
        let n = flights.len();
        let shown = if n <= room { n } else { room - 1 };
        let host_width = flights
            .keys()
            .take(shown)
            .map(|h| measure_text_width(&clean(h)))
            .max()
            .unwrap_or(0)
            .min(MAX_HOST_WIDTH);
        let frame = SPINNER[(now_ms / TICK.as_millis() as u64) as usize % SPINNER.len()];
        let mut lines: Vec<String> = flights
            .iter()
            .take(shown)
            .map(|(host, h)| {
                let (label, name, since) = match (&h.reconnecting, &h.step) {
                    (Some(r), _) => (
                        String::new(),
                        format!("reconnecting, attempt {}/{}", r.attempt, r.of),
                        h.started_ms,
                    ),
                    (None, Some(s)) => (
                        step_label(s.number, s.of, s.rollback),
                        clean(&s.name).into_owned(),
                        s.started_ms,
                    ),
                    (None, None) => (String::new(), "connecting".to_string(), h.started_ms),
                };
                let took = Duration::from_millis(now_ms.saturating_sub(since));
                host_line(frame, host, host_width, &label, &name, took, width)
            })
            .collect();
        if shown < n {
            lines.push(fit(&format!("  … and {} more running", n - shown), width));
        }
        lines
    }

    pub fn overall_line(&self, now_ms: u64, width: usize) -> String {
        let started = self.state.started_ms().unwrap_or(now_ms);
        let took = Duration::from_millis(now_ms.saturating_sub(started));
        let total = self.state.run().map_or(0, |r| r.hosts);
        let left = self.eta.left(&self.state, now_ms);
        overall_line(self.state.hosts_ended(), total, took, left, width)
    }
}

/// The header's word for a run out of the ordinary.
fn stage_word(stage: Stage) -> &'static str {
    match stage {
        Stage::Stopping => "STOPPING",
        Stage::Aborting => "ABORTING",
        Stage::Abandoning => "ABANDONING",
        Stage::Halted => "HALTED",
        Stage::Paused => "PAUSED",
        Stage::Deferred => "DEFERRED",
    }
}

#[cfg(test)]
mod tests {
    use super::super::printed::Tone;
    use super::*;
    use crate::events::Event;
    use crate::ui::sample_run::{self, T0};

    fn model_in_batch_two() -> Model {
        let mut m = Model::new(sample_run::shape());
        for e in sample_run::run().iter().take(13) {
            m.apply(e);
        }
        m
    }

    #[test]
    fn live_lines_show_each_host_in_flight_with_its_step() {
        let m = model_in_batch_two();
        let now = T0 + 17_000;
        let lines = m.live_lines(now, 24, 80);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" prod-02  connecting  13s"), "{lines:?}");
        assert!(
            lines[1].ends_with(" prod-03  [2/2] pull the new image  12s"),
            "{lines:?}"
        );
        assert_eq!(
            m.header_line(80),
            "SimpleLogin upgrade on production · batch 2 of 3"
        );
        assert_eq!(
            m.overall_line(now, 80),
            "[██████░░░░░░░░░░░░░░░░░░░░] 1/4 hosts · 17s · ETA ~3s"
        );
        // Early in batch 2 the hosts in flight have most of a host's time left (prod-01
        // took 3 s), then batch 3.
        assert_eq!(
            m.overall_line(T0 + 5_000, 80),
            "[██████░░░░░░░░░░░░░░░░░░░░] 1/4 hosts · 5s · ETA ~5s"
        );
    }

    #[test]
    fn the_header_names_the_limit_beside_the_pattern() {
        let mut m = Model::default();
        let mut events = sample_run::run();
        if let Event::RunStarted { limit, .. } = &mut events[0].event {
            *limit = Some("prod-0[1:3]".into());
        }
        m.apply(&events[0]);
        assert_eq!(
            m.header_line(80),
            "SimpleLogin upgrade on production --limit prod-0[1:3] · connecting"
        );
    }

    #[test]
    fn a_reconnecting_host_says_so_on_its_line() {
        let mut m = model_in_batch_two();
        m.apply(&sample_run::at(
            15,
            Event::Reconnecting {
                host: "prod-03".into(),
                attempt: 3,
                of: 5,
                delay_ms: 4_000,
                error: "connection refused".into(),
            },
        ));
        let lines = m.live_lines(T0 + 16_000, 24, 80);
        assert!(
            lines[1].ends_with(" prod-03  reconnecting, attempt 3/5  12s"),
            "{lines:?}"
        );
        // The estimate waits for the attempt (3 s away), then batch 3.
        assert!(
            m.overall_line(T0 + 16_000, 80).ends_with(" · ETA ~6s"),
            "{}",
            m.overall_line(T0 + 16_000, 80)
        );
    }

    #[test]
    fn more_hosts_than_rows_end_in_a_count() {
        let mut m = Model::default();
        for i in 0..50 {
            m.apply(&sample_run::at(
                0,
                Event::HostStarted {
                    host: format!("prod-{i:02}"),
                    batch: 1,
                    steps: 3,
                },
            ));
        }
        let lines = m.live_lines(T0, 24, 80);
        assert_eq!(lines.len(), 24 - RESERVED_ROWS);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("  … and 33 more running")
        );
        // A tiny terminal still says something.
        assert_eq!(m.live_lines(T0, 3, 80), vec!["  … and 50 more running"]);
    }

    #[test]
    fn a_failed_host_collapses_to_its_line_with_the_failing_step_and_stderr() {
        let mut m = Model::default();
        let mut printed = Vec::new();
        for e in sample_run::run() {
            printed.extend(m.apply(&e));
        }
        let texts: Vec<_> = printed.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "── batch 1 of 3 (canary): 1 host",
                "✓ prod-01  ok  1 changed  3.0s",
                "── batch 2 of 3: 2 hosts",
                "✗ prod-03  FAILED at [2/2] pull the new image  1.0s",
                "    [2/2] pull the new image failed (rc 1)",
                "      │ \\x1b[31mmanifest unknown\\x1b[0m",
                "    log: runs/r1/prod-03.log",
                "- prod-02  skipped  2.0s",
                "■ HALTED after batch 2: 1 of 2 hosts of the batch failed or was unreachable, over max_fail_percentage 0%",
            ]
        );
        assert_eq!(printed[8].tone, Tone::Loud);
        assert!(m.header_line(80).ends_with("· HALTED"));
        assert!(m.live_lines(T0, 24, 80).is_empty());
    }
}
