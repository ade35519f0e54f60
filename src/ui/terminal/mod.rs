//! The view for an operator at a terminal: a header, one live line per host in flight, an
//! overall bar, and one line per finished host printed above them, so that the scrollback
//! keeps the history while the bottom of the screen shows the present.
//!
//! Events only change a [`Model`]; a ticker thread draws it ten times a second. Drawing per
//! event would redraw hundreds of times a second on a large fleet, and the elapsed times
//! must move even when no event arrives.

mod layout;
mod model;
mod printed;

use std::io::Write;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use console::{style, Term};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{Event, Stamped};
use crate::mutex::lock;
use crate::state::Shape;
use crate::ui::recap;
use crate::ui::tty::QuietControlKeys;
use crate::ui::View;

pub use layout::{fit, host_line, overall_line};
pub use model::Model;
pub use printed::{Printed, Tone};

const TICK: Duration = Duration::from_millis(100);

pub struct TerminalView {
    multi: MultiProgress,
    screen: Arc<Mutex<Screen>>,
    ticker: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
    out: Box<dyn Write + Send>,
    ended: bool,
    /// Makes the terminal's draw target again after a prompt hid the live lines (the
    /// operator's typing would otherwise shift them); `None` for test targets.
    live_target: Option<fn() -> ProgressDrawTarget>,
    /// The live lines are hidden while the operator answers a prompt.
    prompting: bool,
    /// No `^C` echo shifts the live lines while they are drawn; `None` for test targets.
    quiet: Option<QuietControlKeys>,
}

impl TerminalView {
    /// Draws on stdout, sized from the terminal on every tick so that resizing works; the
    /// overall bar tells the time left from `eta`.
    pub fn new(eta: Shape) -> Self {
        let target = || ProgressDrawTarget::stdout_with_hz(20);
        let mut view = Self::with_target(target(), None, Box::new(std::io::stdout()), eta);
        view.live_target = Some(target);
        view.quiet = Some(QuietControlKeys::new());
        view
    }

    /// Draws on `target` (e.g. a `TermLike` capturing what is drawn, in tests), as if the
    /// terminal had `size` (rows, columns) if given, else the size of stdout's terminal;
    /// the recap goes to `out`.
    pub fn with_target(
        target: ProgressDrawTarget,
        size: Option<(u16, u16)>,
        out: Box<dyn Write + Send>,
        eta: Shape,
    ) -> Self {
        let multi = MultiProgress::with_draw_target(target);
        let header = multi.add(text_bar());
        let overall = multi.add(text_bar());
        let size = match size {
            Some((rows, cols)) => Size::Fixed(rows, cols),
            None => Size::Stdout(Term::stdout()),
        };
        let screen = Arc::new(Mutex::new(Screen {
            model: Model::new(eta),
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
            ended: false,
            live_target: None,
            prompting: false,
            quiet: None,
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
        self.quiet = None;
        let recap = recap::render(self.screen().model.state());
        let _ = writeln!(self.out);
        for line in recap.lines() {
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

impl View for TerminalView {
    fn event(&mut self, e: &Stamped) {
        {
            // Printed with the screen held, so that the ticker never draws a host gone
            // from the live lines before its line is printed.
            let shared = Arc::clone(&self.screen);
            let mut screen = lock(&shared);
            let width = screen.size().1;
            for p in screen.model.apply(e) {
                let text = styled(p, width);
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

/// A printed line as the terminal shows it. Printed lines are not redrawn, so wrapping
/// would be harmless; they are cut so that a host's long stderr does not flood the screen.
/// Loud lines are the exception, a halt's reason must be read in full, and so are lines
/// marked whole (a backup's path).
fn styled(p: Printed, width: usize) -> String {
    let text = if p.tone == Tone::Loud || p.whole {
        p.text
    } else {
        fit(&p.text, width)
    };
    match p.tone {
        Tone::Plain => text,
        Tone::Good => style(text).green().to_string(),
        Tone::Dim => style(text).dim().to_string(),
        Tone::Bad => style(text).red().to_string(),
        Tone::Loud => style(text).red().bold().reverse().to_string(),
    }
}

/// A bar that shows only its message: every line of the view is one.
fn text_bar() -> ProgressBar {
    let style =
        ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner());
    ProgressBar::new(0).with_style(style)
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
            let bar = self.multi.insert_before(&self.overall, text_bar());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ui::sample_run::{self, Capture};

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
    fn a_failure_is_told_once_and_the_backup_path_is_never_cut() {
        use crate::events::{Outcome, StepStatus};
        use sample_run::at;
        let backup =
            "/var/lib/simplelogin/fleetup/backups/sl-prod-07-20261205T031502-v4.65.0.sql.gz";
        let why = "migration 0042 failed: relation \"alias\" already exists";
        let mut model = Model::default();
        let mut printed = Vec::new();
        for e in [
            at(
                0,
                Event::HostStarted {
                    host: "sl-prod-07".into(),
                    batch: 1,
                    steps: 14,
                },
            ),
            at(
                0,
                Event::StepStarted {
                    host: "sl-prod-07".into(),
                    step: 9,
                    of: 14,
                    name: "migrate the database".into(),
                    rollback: false,
                },
            ),
            at(
                1,
                Event::StepFinished {
                    host: "sl-prod-07".into(),
                    step: 9,
                    of: 14,
                    name: "migrate the database".into(),
                    rollback: false,
                    status: StepStatus::Failed,
                    rc: Some(1),
                    duration: Duration::from_secs(3),
                    attempts: 1,
                    message: None,
                    stderr_tail: vec!["upgrading...".into(), why.into()],
                },
            ),
            at(
                9,
                Event::HostFinished {
                    host: "sl-prod-07".into(),
                    outcome: Outcome::RolledBack,
                    changed: true,
                    changed_steps: 8,
                    duration: Duration::from_secs(9),
                    failed_step: Some("migrate the database".into()),
                    message: Some(format!("{why}; database backup: {backup}")),
                    log: "runs/r1/sl-prod-07.log".into(),
                },
            ),
        ] {
            printed.extend(model.apply(&e));
        }
        let shown: Vec<String> = printed.into_iter().map(|p| styled(p, 60)).collect();
        let all = console::strip_ansi_codes(&shown.join("\n")).into_owned();
        assert_eq!(all.matches("migration 0042 failed").count(), 1, "{all}");
        assert!(
            all.contains(&format!("\n    database backup: {backup}\n")),
            "{all}"
        );
    }

    #[test]
    fn draws_on_a_forced_target_and_ends_with_the_recap() {
        let term = Screen2::default();
        let recap = Capture::default();
        let mut view = TerminalView::with_target(
            ProgressDrawTarget::term_like_with_hz(Box::new(term.clone()), 20),
            Some((20, 60)),
            Box::new(recap.clone()),
            sample_run::shape(),
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
        let mut view = TerminalView::new(sample_run::shape());
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
