//! Locking a mutex whose holder panicked. Every mutex of fleetup guards state that is
//! written whole under the lock (a map entry, a screen model, a ledger line), so a panic
//! elsewhere leaves it consistent: the run goes on with it rather than panicking in turn.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
