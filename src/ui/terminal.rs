//! The view for an operator at a terminal: a header, one live line per host in flight, an
//! overall bar, and one line per finished host printed above them, so that the scrollback
//! keeps the history while the bottom of the screen shows the present.
//!
//! Events only change a [`Model`]; a ticker thread draws it ten times a second. Drawing per
//! event would redraw hundreds of times a second on a large fleet, and the elapsed times
//! must move even when no event arrives.

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use console::{measure_text_width, style, Term};
use indexmap::IndexMap;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Outcome, Stamped, StepStatus};
use crate::ui::recap::Recap;
use crate::ui::text::{
    clean, deferred, duration, elapsed, gate, halt_reason, outcome_label, pause_started, plural,
    resumed, step_label, verify_failed,
};
use crate::ui::View;

const TICK: Duration = Duration::from_millis(100);
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// Rows kept free of live lines, so that the header, the overall bar and the last finished
/// hosts stay visible and the live area never reaches the top of the screen.
const RESERVED_ROWS: usize = 6;
/// Stderr lines shown under a failed host; the rest is in its log.
const TAIL_LINES: usize = 5;
/// Host names longer than this do not push every live line's step off the screen.
const MAX_HOST_WIDTH: usize = 24;

pub struct TerminalView {
    multi: MultiProgress,
    screen: Arc<Mutex<Screen>>,
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    out: Box<dyn Write + Send>,
    recap: Recap,
    ended: bool,
    /// Makes the terminal's draw target again after a prompt hid the live lines (the
    /// operator's typing would otherwise shift them); `None` for test targets.
    live_target: Option<fn() -> ProgressDrawTarget>,
    /// The live lines are hidden while the operator answers a prompt.
    prompting: bool,
}

impl TerminalView {
    /// Draws on stdout, sized from the terminal on every tick so that resizing works.
    pub fn new() -> Self {
        let target = || ProgressDrawTarget::stdout_with_hz(20);
        let mut view = Self::with_target(target(), None, Box::new(std::io::stdout()));
        view.live_target = Some(target);
        view
    }

    /// Draws on `target` (e.g. a `TermLike` capturing what is drawn, in tests), as if the
    /// terminal had `size` (rows, columns) if given, else the size of stdout's terminal;
    /// the recap goes to `out`.
    pub fn with_target(
        target: ProgressDrawTarget,
        size: Option<(u16, u16)>,
        out: Box<dyn Write + Send>,
    ) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let text_bar = || {
            let style = ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            ProgressBar::new(0).with_style(style)
        };
        let header = multi.add(text_bar());
        let overall = multi.add(text_bar());
        let size = match size {
            Some((rows, cols)) => Size::Fixed(rows, cols),
            None => Size::Stdout(Term::stdout()),
        };
        let screen = Arc::new(Mutex::new(Screen {
            model: Model::default(),
            multi: multi.clone(),
            header,
            lines: Vec::new(),
            overall,
            size,
        }));
        let (stop, stopped) = mpsc::channel::<()>();
        let ticking = Arc::clone(&screen);
        // Ends when the sender is dropped: by `finish`, or with the view.
        let handle = std::thread::spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
                lock(&ticking).draw(now_ms());
            }
        });
        TerminalView {
            multi,
            screen,
            ticker: Some((stop, handle)),
            out,
            recap: Recap::default(),
            ended: false,
            live_target: None,
            prompting: false,
        }
    }

    fn screen(&self) -> MutexGuard<'_, Screen> {
        lock(&self.screen)
    }

    fn stop_ticker(&mut self) {
        if let Some((stop, handle)) = self.ticker.take() {
            drop(stop);
            let _ = handle.join();
        }
    }

    /// Clears the live lines and prints the recap below the finished hosts.
    fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.stop_ticker();
        // Detach every bar before the recap: a bar still attached when it is dropped makes
        // indicatif draw it again, below the recap.
        self.screen().retire();
        let _ = self.multi.clear();
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
        let _ = writeln!(self.out);
        for line in self.recap.render().lines() {
            let line = if line.starts_with("!!!") {
                style(line).red().bold().to_string()
            } else if line == "RECAP" {
                style(line).bold().to_string()
            } else {
                line.to_string()
            };
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }
}

impl Default for TerminalView {
    fn default() -> Self {
        Self::new()
    }
}

impl View for TerminalView {
    fn event(&mut self, e: &Stamped) {
        self.recap.push(e);
        {
            let shared = Arc::clone(&self.screen);
            let mut screen = lock(&shared);
            let printed = screen.model.apply(e);
            let width = screen.size().1;
            for p in printed {
                // Printed lines are not redrawn, so wrapping would be harmless; they are cut
                // so that a host's long stderr does not flood the screen. Loud lines are the
                // exception: a halt's reason must be read in full.
                let text = if p.tone == Tone::Loud {
                    p.text
                } else {
                    fit(&p.text, width)
                };
                let text = match p.tone {
                    Tone::Plain => text,
                    Tone::Good => style(text).green().to_string(),
                    Tone::Dim => style(text).dim().to_string(),
                    Tone::Bad => style(text).red().to_string(),
                    Tone::Loud => style(text).red().bold().reverse().to_string(),
                };
                if self.prompting {
                    // No live line is drawn while the operator answers: print directly.
                    let _ = writeln!(self.out, "{text}");
                    let _ = self.out.flush();
                } else {
                    let _ = self.multi.println(text);
                }
            }
        }
        match (&e.event, self.live_target) {
            (Event::PauseStarted { prompt: true, .. }, Some(_)) => {
                let _ = self.multi.clear();
                self.multi.set_draw_target(ProgressDrawTarget::hidden());
                self.prompting = true;
            }
            (Event::PauseFinished { .. } | Event::Halted { .. }, Some(target))
                if self.prompting =>
            {
                self.multi.set_draw_target(target());
                self.prompting = false;
            }
            _ => {}
        }
        if matches!(e.event, Event::RunFinished { .. }) {
            self.end();
        }
    }

    fn finish(&mut self) {
        self.end();
    }
}

impl Drop for TerminalView {
    fn drop(&mut self) {
        self.stop_ticker();
    }
}

/// A poisoned lock only means a draw panicked; the model is still worth drawing.
fn lock(screen: &Mutex<Screen>) -> MutexGuard<'_, Screen> {
    screen.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

enum Size {
    Fixed(u16, u16),
    Stdout(Term),
}

/// The bars and what they show; shared between the view and its ticker.
struct Screen {
    model: Model,
    multi: MultiProgress,
    header: ProgressBar,
    /// The live lines between the header and the overall bar.
    lines: Vec<ProgressBar>,
    overall: ProgressBar,
    size: Size,
}

impl Screen {
    fn retire(&mut self) {
        for bar in self
            .lines
            .drain(..)
            .chain([self.header.clone(), self.overall.clone()])
        {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }

    /// (rows, columns).
    fn size(&self) -> (usize, usize) {
        let (rows, cols) = match &self.size {
            Size::Fixed(r, c) => (*r, *c),
            Size::Stdout(term) => term.size_checked().unwrap_or((24, 80)),
        };
        (usize::from(rows.max(1)), usize::from(cols.max(10)))
    }

    fn draw(&mut self, now_ms: u64) {
        let (rows, width) = self.size();
        let live = self.model.live_lines(now_ms, rows, width);
        while self.lines.len() < live.len() {
            let style = ProgressStyle::with_template("{msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            let bar = self
                .multi
                .insert_before(&self.overall, ProgressBar::new(0).with_style(style));
            self.lines.push(bar);
        }
        while self.lines.len() > live.len() {
            if let Some(bar) = self.lines.pop() {
                self.multi.remove(&bar);
            }
        }
        self.header
            .set_message(style(self.model.header_line(width)).bold().to_string());
        for (bar, line) in self.lines.iter().zip(live) {
            bar.set_message(line);
        }
        self.overall
            .set_message(self.model.overall_line(now_ms, width));
    }
}

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
}

impl Printed {
    fn new(tone: Tone, text: impl Into<String>) -> Self {
        Printed {
            tone,
            text: text.into(),
        }
    }
}

/// What the terminal shows, updated by events and drawn by the ticker; pure, so that what
/// the operator sees is tested without a terminal.
#[derive(Debug, Default)]
pub struct Model {
    name: String,
    pattern: String,
    batch: usize,
    batches: usize,
    canary: bool,
    total: usize,
    done: usize,
    started_ms: Option<u64>,
    in_flight: IndexMap<String, InFlight>,
    /// Stopping, aborting, halted: shown in the header until the end.
    state: Option<String>,
}

#[derive(Debug)]
struct InFlight {
    started_ms: u64,
    step: Option<Current>,
    failures: Vec<Failure>,
}

#[derive(Debug)]
struct Current {
    label: String,
    name: String,
    started_ms: u64,
}

#[derive(Debug)]
struct Failure {
    label: String,
    name: String,
    status: StepStatus,
    rc: Option<i64>,
    message: Option<String>,
    stderr_tail: Vec<String>,
}

impl Model {
    /// Takes in one event; returns the lines to print above the live area.
    pub fn apply(&mut self, e: &Stamped) -> Vec<Printed> {
        let at = e.at_ms;
        match &e.event {
            Event::RunStarted {
                name,
                pattern,
                hosts,
                batches,
                ..
            } => {
                self.name = clean(name).into_owned();
                self.pattern = clean(pattern).into_owned();
                self.total = *hosts;
                self.batches = *batches;
                self.started_ms = Some(at);
                Vec::new()
            }
            Event::BatchStarted {
                batch,
                of,
                canary,
                hosts,
            } => {
                self.batch = *batch;
                self.batches = *of;
                self.canary = *canary;
                let kind = if *canary { " (canary)" } else { "" };
                vec![Printed::new(
                    Tone::Dim,
                    format!(
                        "── batch {batch} of {of}{kind}: {} host{}",
                        hosts.len(),
                        plural(hosts.len())
                    ),
                )]
            }
            Event::HostStarted { host, .. } => {
                self.in_flight.insert(
                    host.clone(),
                    InFlight {
                        started_ms: at,
                        step: None,
                        failures: Vec::new(),
                    },
                );
                Vec::new()
            }
            Event::StepStarted {
                host,
                step,
                of,
                name,
                rollback,
            } => {
                // A host whose start was not announced still deserves its live line.
                let h = self.in_flight.entry(host.clone()).or_insert(InFlight {
                    started_ms: at,
                    step: None,
                    failures: Vec::new(),
                });
                h.step = Some(Current {
                    label: step_label(*step, *of, *rollback),
                    name: clean(name).into_owned(),
                    started_ms: at,
                });
                Vec::new()
            }
            Event::StepFinished {
                host,
                step,
                of,
                name,
                rollback,
                status,
                rc,
                message,
                stderr_tail,
                ..
            } => {
                if matches!(status, StepStatus::Failed | StepStatus::Unreachable) {
                    if let Some(h) = self.in_flight.get_mut(host) {
                        h.failures.push(Failure {
                            label: step_label(*step, *of, *rollback),
                            name: clean(name).into_owned(),
                            status: *status,
                            rc: *rc,
                            message: message.as_deref().map(|m| clean(m).into_owned()),
                            stderr_tail: stderr_tail
                                .iter()
                                .map(|l| clean(l).into_owned())
                                .collect(),
                        });
                    }
                }
                Vec::new()
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
                self.done += 1;
                let flight = self.in_flight.shift_remove(host);
                finished_lines(
                    host,
                    *outcome,
                    *changed_steps,
                    *d,
                    failed_step,
                    message,
                    log,
                    flight,
                )
            }
            Event::BatchFinished { .. } => Vec::new(),
            Event::Stopping { reason } => {
                let n = self.in_flight.len();
                self.state = Some("STOPPING".into());
                vec![Printed::new(
                    Tone::Loud,
                    format!(
                        "■ STOPPING: {}. No new host starts; the {n} host{} in flight finish. Ctrl-C again aborts them.",
                        halt_reason(reason),
                        plural(n)
                    ),
                )]
            }
            Event::StepOutput { .. } => vec![],
            Event::RunResumed(r) => resumed(r)
                .into_iter()
                .map(|line| Printed::new(Tone::Loud, line))
                .collect(),
            Event::Reconnecting {
                host,
                attempt,
                of,
                delay_ms,
                error,
            } => vec![Printed::new(
                Tone::Loud,
                format!(
                "{}: connection lost after the point of no return ({}); reconnecting to roll back, attempt {attempt} of {of} in {}",
                clean(host),
                clean(error),
                duration(std::time::Duration::from_millis(*delay_ms))
            ),
            )],
            Event::Aborting => {
                self.state = Some("ABORTING".into());
                vec![Printed::new(Tone::Loud, format!("■ {}", crate::ui::text::ABORTING))]
            }
            Event::Abandoning => {
                self.state = Some("ABANDONING".into());
                vec![Printed::new(Tone::Loud, format!("■ {}", crate::ui::text::ABANDONING))]
            }
            Event::Halted { reason, batch } => {
                self.state = Some("HALTED".into());
                vec![Printed::new(
                    Tone::Loud,
                    format!("■ HALTED after batch {batch}: {}", halt_reason(reason)),
                )]
            }
            Event::RunFinished { .. } => {
                self.in_flight.clear();
                Vec::new()
            }
            Event::GateChecked(g) => {
                let tone = if g.verdict == crate::events::Verdict::Skipped { Tone::Loud } else { Tone::Dim };
                vec![Printed::new(tone, gate(g))]
            }
            Event::PauseStarted {
                batch,
                duration: wait,
                verifying,
                ..
            } => {
                self.state = Some("PAUSED".into());
                vec![Printed::new(Tone::Loud, pause_started(*batch, *wait, *verifying))]
            }
            Event::HostVerified { ok: true, .. } => Vec::new(),
            Event::HostVerified { host, message, .. } => vec![Printed::new(
                Tone::Loud,
                verify_failed(host, message.as_deref()),
            )],
            Event::PauseFinished { .. } => {
                self.state = None;
                Vec::new()
            }
            Event::Deferred {
                batch,
                of,
                reason,
                next_start_local,
                ..
            } => {
                self.state = Some("DEFERRED".into());
                vec![Printed::new(
                    Tone::Loud,
                    format!("■ {}", deferred(*batch, *of, reason, next_start_local.as_deref())),
                )]
            }
        }
    }

    pub fn header_line(&self, width: usize) -> String {
        let mut line = format!("{} on {}", self.name, self.pattern);
        if self.batch > 0 {
            line.push_str(&format!(" · batch {} of {}", self.batch, self.batches));
            if self.canary {
                line.push_str(" (canary)");
            }
        } else {
            line.push_str(" · connecting");
        }
        if let Some(state) = &self.state {
            line.push_str(" · ");
            line.push_str(state);
        }
        fit(&line, width)
    }

    /// The live lines: one per host in flight, oldest first, as many as fit in `rows`.
    pub fn live_lines(&self, now_ms: u64, rows: usize, width: usize) -> Vec<String> {
        let room = rows.saturating_sub(RESERVED_ROWS).max(1);
        let n = self.in_flight.len();
        let shown = if n <= room { n } else { room - 1 };
        let host_width = self
            .in_flight
            .keys()
            .take(shown)
            .map(|h| measure_text_width(&clean(h)))
            .max()
            .unwrap_or(0)
            .min(MAX_HOST_WIDTH);
        let frame = SPINNER[(now_ms / TICK.as_millis() as u64) as usize % SPINNER.len()];
        let mut lines: Vec<String> = self
            .in_flight
            .iter()
            .take(shown)
            .map(|(host, h)| {
                let (label, name, since) = match &h.step {
                    Some(s) => (s.label.as_str(), s.name.as_str(), s.started_ms),
                    None => ("", "connecting", h.started_ms),
                };
                let took = Duration::from_millis(now_ms.saturating_sub(since));
                host_line(frame, host, host_width, label, name, took, width)
            })
            .collect();
        if shown < n {
            lines.push(fit(&format!("  … and {} more running", n - shown), width));
        }
        lines
    }

    pub fn overall_line(&self, now_ms: u64, width: usize) -> String {
        let took = Duration::from_millis(now_ms.saturating_sub(self.started_ms.unwrap_or(now_ms)));
        overall_line(self.done, self.total, took, width)
    }
}

#[allow(clippy::too_many_arguments)]
fn finished_lines(
    host: &str,
    outcome: Outcome,
    changed_steps: usize,
    d: Duration,
    failed_step: &Option<String>,
    message: &Option<String>,
    log: &str,
    flight: Option<InFlight>,
) -> Vec<Printed> {
    let host = clean(host);
    let mut out = Vec::new();
    match outcome {
        Outcome::Ok => out.push(Printed::new(
            Tone::Good,
            format!("✓ {host}  ok  {changed_steps} changed  {}", duration(d)),
        )),
        Outcome::Skipped => out.push(Printed::new(
            Tone::Dim,
            format!("- {host}  skipped  {}", duration(d)),
        )),
        _ => {
            let failures = flight.map(|f| f.failures).unwrap_or_default();
            let at = match (failures.first(), failed_step) {
                (Some(f), _) => format!(" at {} {}", f.label, f.name),
                (None, Some(step)) => format!(" at {}", clean(step)),
                (None, None) => String::new(),
            };
            let tone = if outcome.leaves_host_down() {
                Tone::Loud
            } else {
                Tone::Bad
            };
            out.push(Printed::new(
                tone,
                format!("✗ {host}  {}{at}  {}", outcome_label(outcome), duration(d)),
            ));
            if let Some(m) = message {
                out.push(Printed::new(Tone::Plain, format!("    {}", clean(m))));
            }
            for f in &failures {
                if failures.len() > 1 || f.message.is_some() || f.rc.is_some() {
                    let rc = f.rc.map(|rc| format!(" (rc {rc})")).unwrap_or_default();
                    let why = f
                        .message
                        .as_deref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default();
                    let status = if f.status == StepStatus::Unreachable {
                        "unreachable"
                    } else {
                        "failed"
                    };
                    out.push(Printed::new(
                        Tone::Plain,
                        format!("    {} {} {status}{rc}{why}", f.label, f.name),
                    ));
                }
                let skip = f.stderr_tail.len().saturating_sub(TAIL_LINES);
                for l in f.stderr_tail.iter().skip(skip) {
                    out.push(Printed::new(Tone::Dim, format!("      │ {l}")));
                }
            }
            if outcome == Outcome::RollbackFailed {
                out.push(Printed::new(
                    Tone::Loud,
                    format!("    {host} NEEDS ATTENTION NOW: its rollback failed"),
                ));
            }
            out.push(Printed::new(Tone::Dim, format!("    log: {}", clean(log))));
        }
    }
    out
}

/// `⠋ prod-03  [6/14] pull the new image  12s`, fitted to `width`: the step's name is
/// shortened first, so that the host and the elapsed time stay visible.
pub fn host_line(
    frame: char,
    host: &str,
    host_width: usize,
    label: &str,
    name: &str,
    took: Duration,
    width: usize,
) -> String {
    let host = fit(&clean(host), host_width.max(1));
    let pad = host_width.saturating_sub(measure_text_width(&host));
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label} ")
    };
    let prefix = format!("{frame} {host}{}  {label}", " ".repeat(pad));
    let suffix = format!("  {}", elapsed(took));
    let room = width.saturating_sub(measure_text_width(&prefix) + measure_text_width(&suffix));
    if room < 4 {
        return fit(&format!("{prefix}{name}{suffix}"), width);
    }
    format!("{prefix}{}{suffix}", fit(&clean(name), room))
}

/// `[██████░░░░░░] 12/40 hosts · 3m12s · ETA ~8m00s`, fitted to `width`.
pub fn overall_line(done: usize, total: usize, took: Duration, width: usize) -> String {
    let bar_width = (width / 3).clamp(10, 30);
    let filled = (done * bar_width)
        .checked_div(total)
        .unwrap_or(0)
        .min(bar_width);
    let mut line = format!(
        "[{}{}] {done}/{total} host{} · {}",
        "█".repeat(filled),
        "░".repeat(bar_width - filled),
        plural(total),
        elapsed(took)
    );
    if done > 0 && done < total {
        // A rough guide: hosts take similar times, batches hide some of the waiting.
        let eta = took.mul_f64((total - done) as f64 / done as f64);
        line.push_str(&format!(" · ETA ~{}", elapsed(eta)));
    }
    fit(&line, width)
}

/// `s` cut to `width` columns, with `…` where it was cut.
pub fn fit(s: &str, width: usize) -> String {
    console::truncate_str(s, width, "…").into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::sample_run::{self, Capture, T0};

    #[test]
    fn a_host_line() {
        let line = host_line(
            '⠋',
            "prod-03",
            9,
            "[6/14]",
            "pull the new image",
            Duration::from_millis(12_400),
            80,
        );
        assert_eq!(line, "⠋ prod-03    [6/14] pull the new image  12s");
    }

    #[test]
    fn long_lines_are_cut_to_the_width_keeping_the_elapsed_time() {
        let name = "pull the new image from the registry, which is a long way away";
        let line = host_line(
            '⠋',
            "prod-03",
            7,
            "[6/14]",
            name,
            Duration::from_secs(75),
            40,
        );
        assert_eq!(measure_text_width(&line), 40);
        assert_eq!(line, "⠋ prod-03  [6/14] pull the new i…  1m15s");
        // Too narrow even for that: the whole line is cut.
        let line = host_line(
            '⠋',
            "prod-03",
            7,
            "[6/14]",
            name,
            Duration::from_secs(75),
            12,
        );
        assert_eq!(line, "⠋ prod-03  …");
        // Host names are cut to their column, and neutralised.
        let line = host_line(
            '⠋',
            "a-very-long\x1b[2J-host-name",
            8,
            "",
            "connecting",
            Duration::ZERO,
            80,
        );
        assert_eq!(line, "⠋ a-very-…  connecting  0s");
    }

    #[test]
    fn the_overall_bar() {
        assert_eq!(
            overall_line(1, 4, Duration::from_secs(30), 60),
            "[█████░░░░░░░░░░░░░░░] 1/4 hosts · 30s · ETA ~1m30s"
        );
        assert_eq!(
            overall_line(0, 0, Duration::ZERO, 30),
            "[░░░░░░░░░░] 0/0 hosts · 0s"
        );
        assert_eq!(
            measure_text_width(&overall_line(3, 9, Duration::from_secs(9), 20)),
            20
        );
    }

    fn model_in_batch_two() -> Model {
        let mut m = Model::default();
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
            "[██████░░░░░░░░░░░░░░░░░░░░] 1/4 hosts · 17s · ETA ~51s"
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
                "■ HALTED after batch 2: 1 of 2 hosts of the batch failed or were unreachable, over max_fail_percentage 0%",
            ]
        );
        assert_eq!(printed[8].tone, Tone::Loud);
        assert!(m.header_line(80).ends_with("· HALTED"));
        assert!(m.live_lines(T0, 24, 80).is_empty());
    }

    /// A terminal that keeps what is drawn on it.
    #[derive(Debug, Default, Clone)]
    struct Screen2(Arc<Mutex<String>>);

    impl indicatif::TermLike for Screen2 {
        fn width(&self) -> u16 {
            60
        }
        fn height(&self) -> u16 {
            20
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(&format!("{s}\n"))
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if let Ok(mut t) = self.0.lock() {
                t.push_str(s);
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn draws_on_a_forced_target_and_ends_with_the_recap() {
        let term = Screen2::default();
        let recap = Capture::default();
        let mut view = TerminalView::with_target(
            ProgressDrawTarget::term_like_with_hz(Box::new(term.clone()), 20),
            Some((20, 60)),
            Box::new(recap.clone()),
        );
        let events = sample_run::run();
        for e in &events[..13] {
            view.event(e);
        }
        std::thread::sleep(TICK * 3);
        for e in &events[13..] {
            view.event(e);
        }
        view.finish();
        let drawn = term.0.lock().map(|t| t.clone()).unwrap_or_default();
        assert!(drawn.contains("batch 2 of 3"), "{drawn}");
        assert!(
            drawn.contains("prod-03  [2/2] pull the new image"),
            "{drawn}"
        );
        assert!(
            drawn.contains("✗ prod-03  FAILED at [2/2] pull the new image"),
            "{drawn}"
        );
        let recap = recap.text();
        assert!(recap.contains("RECAP"), "{recap}");
        assert!(recap.contains("never started: prod-04"), "{recap}");
    }
}

/// A scripted run drawn on the real stdout terminal, to look at the view by eye (e.g. in
/// tmux): `cargo test --lib ui::terminal::demo -- --ignored --nocapture`.
#[cfg(test)]
mod demo {
    use super::*;
    use crate::ui::sample_run;

    #[test]
    #[ignore = "draws on the real terminal and takes seconds"]
    fn demo() {
        let mut view = TerminalView::new();
        let start = now_ms();
        let events = sample_run::run();
        let mut last = sample_run::T0;
        for mut e in events {
            std::thread::sleep(Duration::from_millis(e.at_ms.saturating_sub(last)));
            last = e.at_ms;
            e.at_ms = start + (e.at_ms - sample_run::T0);
            if let Event::BatchStarted { batch: 2, .. } = e.event {
                // Many hosts at once, more than the screen holds.
                for i in 0..3 {
                    view.event(&Stamped {
                        at_ms: e.at_ms,
                        event: Event::HostStarted {
                            host: format!("eu-west-{i:02}.example.org\x1b[2J"),
                            batch: 2,
                            steps: 14,
                        },
                    });
                }
            }
            view.event(&e);
        }
        view.finish();
    }
}
