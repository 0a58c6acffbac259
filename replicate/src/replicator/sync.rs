//! The sync loop: turns file-system events (or, where there are none, polling) into syncs on the shipper thread,
//! batching commits into one segment per sync interval and backing off while syncs fail.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::actor::ShipperHandle;
use super::backoff::{Backoff, SYNC_BACKOFF_MAX};
use super::status::StatusHandle;
use crate::shipper::SyncReport;
use crate::spool::{Loss, Spool};
use crate::watch::WalWatch;

pub(super) struct SyncLoop {
    pub shipper: ShipperHandle,
    pub status: StatusHandle,
    pub spool: Arc<Spool>,
    pub upload_wake: Vec<Arc<Notify>>,
    /// Woken by the WAL watch, and by uploaders that found an object lost from the spool.
    pub wake: Arc<Notify>,
    pub watch: WalWatch,
    pub monitor_interval: Duration,
    /// The shortest sync interval of the replicas: commits within it are batched into one segment.
    pub staging_interval: Duration,
}

impl SyncLoop {
    /// Sync until `cancel`; what the replicas lost from the spool is carried into the final sync.
    pub(super) async fn run(&mut self, cancel: &CancellationToken) -> Vec<Loss> {
        let mut last_sync = Instant::now() - self.staging_interval;
        let mut backoff = Backoff::new(SYNC_BACKOFF_MAX);
        let mut first = true;
        let mut lost = vec![];
        loop {
            let failing = backoff.failing();
            if !std::mem::take(&mut first) {
                // File-system events (those of a failed sync's own writes among them) must not cut a backoff short:
                // that would turn a lasting failure into a busy loop.
                let wait = if failing { backoff.delay() } else { self.watch.wait(self.monitor_interval) };
                tokio::select! {
                    _ = cancel.cancelled() => return lost,
                    _ = self.wake.notified(), if !failing => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            let since = last_sync.elapsed();
            if since < self.staging_interval {
                tokio::select! {
                    _ = cancel.cancelled() => return lost,
                    _ = tokio::time::sleep(self.staging_interval - since) => {}
                }
            }
            last_sync = Instant::now();
            let started = Instant::now();
            lost.extend(self.spool.take_lost());
            let result = self.shipper.sync(lost.clone()).await;
            self.status.lock().sync_seconds += started.elapsed().as_secs_f64();
            match result {
                Ok(report) => {
                    backoff.reset();
                    lost.clear();
                    if self.watch.after_sync(report.bytes > 0) {
                        self.wake.notify_one();
                    }
                    self.synced(&report);
                }
                Err(e) => {
                    backoff.fail();
                    {
                        let mut s = self.status.lock();
                        s.sync_errors += 1;
                        s.last_sync_error = Some(e.to_string());
                    }
                    tracing::error!(error = %e, "sync failed");
                }
            }
        }
    }

    /// The sync of a shutdown, after [`SyncLoop::run`] returned `lost`.
    pub(super) async fn final_sync(&self, mut lost: Vec<Loss>) {
        lost.extend(self.spool.take_lost());
        match self.shipper.sync(lost).await {
            Ok(report) => self.synced(&report),
            Err(e) => tracing::error!(error = %e, "final sync failed"),
        }
    }

    fn synced(&self, report: &SyncReport) {
        self.status.record(report, &self.spool, &self.upload_wake, true);
    }
}
