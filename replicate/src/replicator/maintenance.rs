//! Per replica with a schedule: snapshots at `snapshot-interval`, and retention every `retention-check-interval`.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ReplicaOptions;
use super::actor::ShipperHandle;
use super::status::StatusHandle;
use crate::layout::Generation;

pub(super) struct Maintenance {
    /// The replica's index in the status.
    pub i: usize,
    pub opts: ReplicaOptions,
    pub shipper: ShipperHandle,
    pub status: StatusHandle,
    pub upload_wake: Vec<Arc<Notify>>,
    /// Also cancels the replica's calls in flight.
    pub stop: CancellationToken,
}

impl Maintenance {
    pub(super) async fn run(self) {
        let (opts, stop) = (&self.opts, &self.stop);
        let mut next_snapshot = opts.snapshot_interval.map(|d| Instant::now() + d);
        let mut next_retention = opts.retention.map(|_| Instant::now() + opts.retention_check_interval);
        loop {
            let next = [next_snapshot, next_retention].into_iter().flatten().min();
            let Some(next) = next else { return };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep_until(next.into()) => {}
            }
            let now = Instant::now();
            if next_snapshot.is_some_and(|t| t <= now) {
                next_snapshot = opts.snapshot_interval.map(|d| now + d);
                self.snapshot().await;
            }
            if let (Some(retention), Some(t)) = (opts.retention, next_retention)
                && t <= now
            {
                next_retention = Some(now + opts.retention_check_interval);
                let (current, snapshot_at) = {
                    let s = self.status.lock();
                    (s.generation.clone(), s.snapshot_at)
                };
                // Like Litestream: a snapshot older than the window is renewed first, so the window stays restorable.
                if snapshot_at.is_some_and(|t| t.elapsed().unwrap_or_default() > retention)
                    && let Err(e) = self.shipper.snapshot().await
                {
                    tracing::error!(error = %e, "snapshot failed");
                }
                if let Some(current) = current {
                    self.enforce_retention(&current, retention).await;
                }
            }
        }
    }

    async fn snapshot(&self) {
        match self.shipper.snapshot().await {
            Ok(r) => {
                {
                    let mut s = self.status.lock();
                    s.record_snapshots(&r);
                    s.record_lock_holds(&r);
                }
                self.upload_wake.iter().for_each(|w| w.notify_one())
            }
            Err(e) => tracing::error!(error = %e, "snapshot failed"),
        }
    }

    async fn enforce_retention(&self, current: &Generation, retention: std::time::Duration) {
        match crate::retention::enforce(&self.opts.replica, current, retention, SystemTime::now()).await {
            Ok(r) => {
                let deleted = (r.snapshots_deleted + r.segments_deleted) as u64;
                if deleted > 0 || r.generations_deleted > 0 {
                    tracing::info!(
                        current = %current, generations = r.generations_deleted, snapshots = r.snapshots_deleted,
                        segments = r.segments_deleted, "retention deleted old backups"
                    );
                }
                self.status.lock().replicas[self.i].retention_deleted += deleted;
                tracing::debug!(?r, "retention enforced")
            }
            Err(_) if self.stop.is_cancelled() => tracing::debug!("retention interrupted by the shutdown"),
            Err(e) => tracing::error!(error = %e, "retention failed"),
        }
    }
}
