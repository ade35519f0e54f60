//! `fleetup run --html-report FILE`: the page rewritten as the run goes, so that someone
//! can follow an unattended rollout, or read how far it got after a crash, in a browser.
//! A view like the others: it is fed the run's events and never slows the hosts (it draws
//! on the views' thread), and a page that cannot be written is a warning, said once.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{html, load, read, write, ReportError, Sources};
use crate::events::{Event, Stamped};
use crate::journal::RunDir;
use crate::ui::View;

/// A large fleet's page takes a moment to build: not more often than this.
const EVERY: Duration = Duration::from_secs(2);

pub struct LiveReport {
    run: RunDir,
    path: PathBuf,
    sources: Sources,
    written: Option<Instant>,
    failed: bool,
}

impl LiveReport {
    /// The report of `run` at `path`, starting from what its journal holds (a resumed run's
    /// earlier attempts); the events of this attempt arrive as the views'.
    pub fn new(run: &RunDir, path: PathBuf) -> Result<LiveReport, ReportError> {
        let mut sources = load(run)?;
        sources.running = true;
        Ok(LiveReport {
            run: run.clone(),
            path,
            sources,
            written: None,
            failed: false,
        })
    }

    fn write(&mut self) {
        read::read_files(&self.run, &mut self.sources);
        self.written = Some(Instant::now());
        if let Err(e) = write(&self.path, &html(&self.sources)) {
            if !std::mem::replace(&mut self.failed, true) {
                eprintln!("warning: {e}; the run goes on");
            }
        }
    }
}

impl View for LiveReport {
    fn event(&mut self, e: &Stamped) {
        self.sources.events.push(e.clone());
        let due = self.written.is_none_or(|at| at.elapsed() >= EVERY);
        // What changes the page's story is shown at once; steps wait for the next turn.
        let telling = matches!(
            e.event,
            Event::RunStarted { .. }
                | Event::BatchStarted { .. }
                | Event::Halted { .. }
                | Event::Deferred { .. }
                | Event::PauseStarted { .. }
                | Event::Stopping { .. }
        );
        if telling || due {
            self.write();
        }
    }

    fn finish(&mut self) {
        self.sources.running = false;
        self.write();
    }
}
