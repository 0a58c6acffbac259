//! What a follower reports: how far behind it is and what it has done, read by the metrics endpoint.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Failed polls in a row after which a follower is reported not ready.
const FAILURES_NOT_READY: u64 = 3;
/// How long a follower may keep finding more to apply than it has applied before it is reported not ready.
pub const BEHIND_NOT_READY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct FollowStatus {
    lag_ms: AtomicU64,
    bytes_behind: AtomicU64,
    transactions: AtomicU64,
    generation_switches: AtomicU64,
    rebuilds: AtomicU64,
    errors: AtomicU64,
    caught_up: AtomicBool,
    /// Failed polls since the last good one.
    failures: AtomicU64,
    trouble: Mutex<Trouble>,
}

#[derive(Debug, Default)]
struct Trouble {
    /// The last failed poll's error.
    last_error: Option<String>,
    /// A segment the follower cannot apply, and why.
    stuck: Option<String>,
    /// Since when every poll has found more than it applied.
    behind_since: Option<Instant>,
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

    /// The follower applied everything the replica held at its last look.
    pub(crate) fn caught_up(&self) {
        self.behind(std::time::Duration::ZERO, 0);
        self.caught_up.store(true, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        *self.trouble() = Trouble::default();
    }

    /// A poll found more than it could apply at once.
    pub(crate) fn still_behind(&self) {
        self.trouble().behind_since.get_or_insert_with(Instant::now);
    }

    pub(crate) fn applied(&self, transactions: u64) {
        self.transactions.fetch_add(transactions, Ordering::Relaxed);
        self.failures.store(0, Ordering::Relaxed);
        let mut t = self.trouble();
        (t.last_error, t.stuck) = (None, None);
    }

    /// A poll of the replica failed.
    pub(crate) fn failed(&self, error: &dyn std::fmt::Display) {
        self.error();
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.trouble().last_error = Some(error.to_string());
    }

    /// The replica's next segment cannot be applied, poll after poll.
    pub(crate) fn stuck(&self, error: &dyn std::fmt::Display) {
        self.error();
        self.trouble().stuck = Some(error.to_string());
    }

    /// Why the follower is not ready: it never caught up yet, its polls keep failing, it cannot apply the next
    /// segment, or it has been behind for long. `None` when ready.
    pub fn not_ready(&self) -> Option<String> {
        let t = self.trouble();
        if let Some(why) = &t.stuck {
            return Some(format!("cannot apply the replica's next segment: {why}"));
        }
        let failures = self.failures.load(Ordering::Relaxed);
        if failures >= FAILURES_NOT_READY {
            let why = t.last_error.as_deref().unwrap_or("unknown error");
            return Some(format!("{failures} polls of the replica failed in a row, the last: {why}"));
        }
        if !self.caught_up.load(Ordering::Relaxed) {
            return Some("catching up with its replica".into());
        }
        match t.behind_since.map(|s| s.elapsed()) {
            Some(d) if d >= BEHIND_NOT_READY => Some(format!("behind its replica for {} s", d.as_secs())),
            _ => None,
        }
    }

    fn trouble(&self) -> std::sync::MutexGuard<'_, Trouble> {
        crate::sync::lock(&self.trouble)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_follows_failures_stuck_segments_and_catching_up() {
        let s = FollowStatus::default();
        assert_eq!(s.not_ready().as_deref(), Some("catching up with its replica"));
        s.caught_up();
        assert_eq!(s.not_ready(), None);
        s.failed(&"LIST s3://b/app: connection refused");
        s.failed(&"LIST s3://b/app: connection refused");
        assert_eq!(s.not_ready(), None, "a failed poll or two is not a problem yet");
        s.failed(&"LIST s3://b/app: connection refused");
        let why = s.not_ready().expect("not ready");
        assert!(why.contains("3 polls") && why.contains("connection refused"), "{why}");
        s.caught_up();
        assert_eq!(s.not_ready(), None);
        s.stuck(&"corrupt segment generations/x/wal/00000001_00000000.wal.lz4");
        assert!(s.not_ready().expect("stuck").contains("00000001_00000000.wal.lz4"));
        s.applied(3);
        assert_eq!(s.not_ready(), None);
        s.still_behind();
        assert_eq!(s.not_ready(), None, "just behind");
        s.trouble().behind_since = Some(Instant::now() - BEHIND_NOT_READY);
        assert!(s.not_ready().expect("behind").contains("behind its replica for 60 s"));
        s.caught_up();
        assert_eq!(s.not_ready(), None);
        assert_eq!(s.snapshot().errors, 4);
    }
}
