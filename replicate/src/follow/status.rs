//! What a follower reports: how far behind it is and what it has done, read by the metrics endpoint.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct FollowStatus {
    lag_ms: AtomicU64,
    bytes_behind: AtomicU64,
    transactions: AtomicU64,
    generation_switches: AtomicU64,
    rebuilds: AtomicU64,
    errors: AtomicU64,
    caught_up: AtomicBool,
}

/// A copy of a follower's status at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FollowSnapshot {
    /// How much older the newest applied transaction is than the newest one in the replica.
    pub lag_seconds: f64,
    /// Compressed size of the segments in the replica not yet applied.
    pub bytes_behind: u64,
    pub transactions_applied: u64,
    pub generation_switches: u64,
    /// Copies rebuilt from the replica because they were written by someone else or no longer consistent.
    pub rebuilds: u64,
    pub errors: u64,
    /// Whether the follower has applied everything the replica held at its last look.
    pub caught_up: bool,
}

impl FollowStatus {
    pub fn snapshot(&self) -> FollowSnapshot {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FollowSnapshot {
            lag_seconds: load(&self.lag_ms) as f64 / 1000.0,
            bytes_behind: load(&self.bytes_behind),
            transactions_applied: load(&self.transactions),
            generation_switches: load(&self.generation_switches),
            rebuilds: load(&self.rebuilds),
            errors: load(&self.errors),
            caught_up: self.caught_up.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn behind(&self, lag: std::time::Duration, bytes: u64) {
        self.lag_ms.store(lag.as_millis() as u64, Ordering::Relaxed);
        self.bytes_behind.store(bytes, Ordering::Relaxed);
    }

    pub(crate) fn caught_up(&self) {
        self.behind(std::time::Duration::ZERO, 0);
        self.caught_up.store(true, Ordering::Relaxed);
    }

    pub(crate) fn applied(&self, transactions: u64) {
        self.transactions.fetch_add(transactions, Ordering::Relaxed);
    }

    pub(crate) fn switched_generation(&self) {
        self.generation_switches.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rebuilt(&self) {
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}
