//! fleetup: upgrade a fleet of self-hosted SimpleLogin servers over SSH, canary first,
//! in batches, halting before the next batch when a host fails.
pub mod ssh;
pub mod transport;
