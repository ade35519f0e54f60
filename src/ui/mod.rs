//! What fleetup shows: renderings of plans (and, with the engine, of run events) for a
//! terminal, a pipe, or a program.

pub mod plan;
