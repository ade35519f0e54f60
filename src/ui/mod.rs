//! What fleetup shows: renderings of plans and of run events for a terminal, a pipe, or a
//! program. Every run view is fed the same events the journal records, one at a time, and
//! decides alone how to show them.

pub mod exec;
pub mod gate;
pub mod history;
pub mod inventory;
pub mod json;
pub mod plain;
pub mod plan;
pub mod preflight;
pub mod recap;
pub mod staging;
pub mod terminal;
pub mod text;

#[cfg(test)]
mod sample_run;

use std::io::IsTerminal;

use crate::events::Stamped;

pub use recap::recap;

/// A rendering of a run's events.
pub trait View: Send {
    /// Shows one event; events arrive in the order the engine emitted them.
    fn event(&mut self, e: &Stamped);
    /// Called once after the last event (or when the run ends without one): clears live
    /// lines, prints the recap if it was not printed yet, flushes.
    fn finish(&mut self) {}
}

/// What the operator asked for with `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewFormat {
    #[default]
    Text,
    Json,
    /// `fleetup exec`: each host's output as one block.
    Exec,
}

/// The view for a run writing to stdout: JSON lines when asked for, whatever stdout is;
/// otherwise progress bars on a terminal and plain lines anywhere else (pipes, CI, cron).
pub fn view(format: ViewFormat, is_terminal: bool) -> Box<dyn View> {
    match (format, is_terminal) {
        (ViewFormat::Exec, _) => Box::new(exec::ExecView::new(Box::new(std::io::stdout()))),
        (ViewFormat::Json, _) => Box::new(json::JsonView::new(Box::new(std::io::stdout()))),
        (ViewFormat::Text, true) => Box::new(terminal::TerminalView::new()),
        (ViewFormat::Text, false) => Box::new(plain::PlainView::new(Box::new(std::io::stdout()))),
    }
}

/// Whether stdout can show live progress: a terminal, and one that understands cursor
/// movement (`TERM=dumb` is how editors' shells and some CI say it does not).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal() && !console::is_dumb()
}
