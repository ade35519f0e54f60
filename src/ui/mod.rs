//! What fleetup shows: renderings of plans and of run events for a terminal, a pipe, or a
//! program. Every run view is fed the same events the journal records, one at a time, and
//! decides alone how to show them.

pub mod plan;
pub mod recap;
pub mod text;

#[cfg(test)]
mod fixture;

pub use recap::{recap, Recap};
