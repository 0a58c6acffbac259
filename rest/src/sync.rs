//! Lock recovery, written once for the workspace.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, recovering it when a thread panicked while holding it: every value this crate guards stays
/// valid between statements (a cache, a queue), so the data is still good and the API keeps serving.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
