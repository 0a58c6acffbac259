//! The replicator's one backoff: exponential with jitter, used by the sync loop and by each uploader.

use std::time::Duration;

/// A failing sync is local (a full disk, a database gone): retried soon enough to notice a fix within seconds.
pub(super) const SYNC_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A failing store may be down for long; retries must not add to its load.
pub(super) const UPLOAD_BACKOFF_MAX: Duration = Duration::from_secs(30);

pub(super) struct Backoff {
    failures: u32,
    max: Duration,
}

impl Backoff {
    pub(super) fn new(max: Duration) -> Self {
        Self { failures: 0, max }
    }

    pub(super) fn failing(&self) -> bool {
        self.failures > 0
    }

    pub(super) fn reset(&mut self) {
        self.failures = 0;
    }

    pub(super) fn fail(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    /// Exponential from 100 ms up to the maximum, with jitter so that many pods do not retry in step.
    pub(super) fn delay(&self) -> Duration {
        let max_ms = u64::try_from(self.max.as_millis()).unwrap_or(u64::MAX);
        let base = 100u64.saturating_mul(1 << self.failures.min(16)).min(max_ms);
        Duration::from_millis(base / 2 + rand::random_range(0..=base / 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_to_the_maximum_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(5));
        assert!(!b.failing());
        b.fail();
        assert!(b.failing());
        let first = b.delay();
        assert!(first >= Duration::from_millis(100) && first <= Duration::from_millis(200), "{first:?}");
        for _ in 0..40 {
            b.fail();
        }
        let last = b.delay();
        assert!(last >= Duration::from_millis(2500) && last <= Duration::from_secs(5), "{last:?}");
        b.reset();
        assert!(!b.failing());
    }
}
