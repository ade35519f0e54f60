//! What fleetup shows: renderings of plans and of run events for a terminal, a pipe, or a
//! program. Every run view is fed the same events the journal records, one at a time, and
//! decides alone how to show them.

pub mod exec;
pub mod gate;
pub mod history;
pub mod host_keys;
pub mod inventory;
pub mod json;
pub mod notification;
pub mod plain;
pub mod plan;
pub mod preflight;
pub mod recap;
pub mod staging;
pub mod start;
pub mod terminal;
pub mod text;
pub mod tty;

#[cfg(test)]
mod sample_run;

use std::io::IsTerminal;

use crate::events::Stamped;
use crate::state::Shape;

pub use recap::recap;

/// A rendering of a run's events.
pub trait View: Send {
    /// Shows one event; events arrive in the order the engine emitted them.
    fn event(&mut self, e: &Stamped);
    /// Called once after the last event (or when the run ends without one): clears live
    /// lines, prints the recap if it was not printed yet, flushes.
    fn finish(&mut self) {}
}

/// Two views fed the same events: what stdout shows, and a report kept beside it.
pub struct Both(pub Box<dyn View>, pub Box<dyn View>);

impl View for Both {
    fn event(&mut self, e: &Stamped) {
        self.0.event(e);
        self.1.event(e);
    }

    fn finish(&mut self) {
        self.0.finish();
        self.1.finish();
    }
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
/// The text views tell the time left from the run's `eta` shape.
pub fn view(format: ViewFormat, is_terminal: bool, eta: Shape) -> Box<dyn View> {
    let stdout = || Box::new(std::io::stdout());
    match (format, is_terminal) {
        (ViewFormat::Exec, _) => Box::new(exec::ExecView::new(stdout())),
        (ViewFormat::Json, _) => Box::new(json::JsonView::new(stdout())),
        (ViewFormat::Text, true) => Box::new(terminal::TerminalView::new(eta)),
        (ViewFormat::Text, false) => Box::new(plain::PlainView::new(stdout(), eta)),
    }
}

/// Whether stdout can show live progress: a terminal, and one that understands cursor
/// movement (`TERM=dumb` is how editors' shells and some CI say it does not).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal() && !console::is_dumb()
}
