//! fleetup: upgrade a fleet of self-hosted SimpleLogin servers over SSH, canary first,
//! in batches, halting before the next batch when a host fails.
//!
//! The flow is inputs → play → plan → engine → events → views. The modules that read
//! and check the operator's input ([`inventory`], [`playbook`], [`template`], [`plan`],
//! [`play`]) are pure apart from reading their files, and never contact a host.

// Functions stay under 80 lines (clippy.toml): a longer one hides a missing type or step.
#![warn(clippy::too_many_lines)]

pub mod cksum;
pub mod clock;
pub mod connect;
pub mod diagnostic;
pub mod duration;
pub mod engine;
pub mod events;
pub mod exit;
pub mod gate;
pub mod identity;
pub mod inventory;
pub mod journal;
pub mod lock;
pub mod millis;
mod mutex;
pub mod notify;
pub mod open_files;
pub mod plan;
pub mod play;
pub mod playbook;
pub mod registered;
pub mod report;
pub mod resume;
pub mod schedule;
pub mod secret;
pub mod ssh;
pub mod staging;
pub mod state;
pub mod template;
pub mod transport;
pub mod ui;
pub mod vars;
pub mod vault;
pub mod window;
pub mod yaml;
