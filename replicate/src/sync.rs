//! Lock recovery, written once for the crate.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering it when a thread panicked while holding it: every value this crate guards stays
/// valid between statements (a queue of segments, a status, a connection), so the data is still good and
/// replication goes on.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
