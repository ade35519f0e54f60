//! What fleetup shows: renderings of plans and of run events for a terminal, a pipe, or a
//! program. Every run view is fed the same events the journal records, one at a time, and
//! decides alone how to show them.

pub mod json;
pub mod plain;
pub mod plan;
pub mod recap;
pub mod text;

#[cfg(test)]
mod fixture;

use crate::events::Stamped;

pub use recap::{recap, Recap};

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
}
