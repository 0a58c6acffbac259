//! One uploader per replica: sends the spool's pending entries in order, at most one round per `sync-interval`,
//! and backs off while the replica fails; the entries wait in the spool meanwhile.
//!
//! Where the WAL is staged at this replica's `sync-interval` (no other replica has a shorter one), the staging already
//! makes at most one round per interval, and each freshly staged segment is sent at once: a round timer of the
//! uploader's own, not aligned with the staging's, would add up to another interval to the replication lag. Only
//! where another replica has the WAL staged more often does the uploader pace its rounds itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ReplicaOptions;
use super::backoff::{Backoff, UPLOAD_BACKOFF_MAX};
use super::status::StatusHandle;
use crate::client::Replica;
use crate::error::ReplicaError;
use crate::layout::Generation;
use crate::spool::{Spool, SpoolEntry, SpoolKey};

/// How an upload loop is woken and stopped.
pub(super) struct UploadSignals {
    /// New objects in the spool.
    pub wake: Arc<Notify>,
    /// Wakes the sync loop (an object was lost from the spool).
    pub sync_wake: Arc<Notify>,
    /// Shutdown began: the spool is being drained.
    pub drain: CancellationToken,
    /// The drain's deadline passed.
    pub stop: CancellationToken,
}

/// `staging_interval` is the time the sync loop leaves between stagings: the shortest `sync-interval` of all replicas.
pub(super) async fn upload_loop(
    i: usize,
    opts: ReplicaOptions,
    staging_interval: Duration,
    spool: Arc<Spool>,
    status: StatusHandle,
    signals: UploadSignals,
) {
    let UploadSignals { wake, sync_wake, drain, stop } = signals;
    let replica = &opts.replica;
    let paced_by_staging = opts.sync_interval <= staging_interval;
    let mut backoff = Backoff::new(UPLOAD_BACKOFF_MAX);
    let mut drain_retried = false;
    // Generations checked for a snapshot in this replica, and whether it had one. Segments of a generation the
    // replica has no snapshot of are useless to it; the first check of the current one happens at start-up, so that
    // a replica emptied (or added) while litecar was stopped gets a new generation even if nothing is written.
    let mut restorable: BTreeMap<Generation, bool> = BTreeMap::new();
    loop {
        let current = status.lock().generation.clone();
        let unchecked = current.filter(|g| !restorable.contains_key(g));
        if spool.pending(i).is_empty() && unchecked.is_none() {
            backoff.reset();
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            }
            continue;
        }
        if backoff.failing() {
            // Wakes come with every sync: they must not cut a backoff short, or a failing store is retried at the
            // sync cadence. A shutdown's drain gets one retry at once.
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = drain.cancelled(), if !drain_retried => drain_retried = true,
                _ = tokio::time::sleep(backoff.delay()) => {}
            }
        }
        let started = Instant::now();
        let entries = spool.pending(i);
        let segment_generations = entries.iter().filter_map(|e| match &e.key {
            SpoolKey::Segment { generation, .. } => Some(generation),
            SpoolKey::Snapshot { .. } => None,
        });
        let mut check_failed = false;
        for generation in unchecked.iter().chain(segment_generations) {
            if restorable.contains_key(generation) {
                continue;
            }
            let checked = tokio::select! {
                _ = stop.cancelled() => return,
                r = check_restorable(i, replica, &spool, generation, &sync_wake) => r,
            };
            match checked {
                Ok(has) => _ = restorable.insert(generation.clone(), has),
                Err(e) => {
                    status.replica_failed(i, &e);
                    backoff.fail();
                    tracing::error!(generation = %generation, error = %e, permanent = e.is_permanent(), "listing the replica's snapshots failed");
                    check_failed = true;
                    break;
                }
            }
        }
        let entries = if check_failed { vec![] } else { entries };
        for entry in entries {
            if restorable.get(entry.key.generation()) == Some(&false) {
                // This replica cannot restore the generation: its entries are given up (those staged before the
                // check already were), until the new generation begins.
                spool.mark_uploaded(i, &entry);
                continue;
            }
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = upload(replica, &entry) => r,
            };
            if result.is_ok() {
                spool.mark_uploaded(i, &entry);
            }
            let mut s = status.lock();
            s.pending_bytes = spool.pending_bytes();
            let rs = &mut s.replicas[i];
            rs.oldest_pending = spool.oldest_pending(i);
            match result {
                Ok(()) => {
                    rs.uploaded += 1;
                    rs.uploaded_bytes += entry.size;
                    rs.last_upload = Some(SystemTime::now());
                    rs.last_error = None;
                    rs.consecutive_errors = 0;
                    rs.reachable = true;
                    match &entry.key {
                        SpoolKey::Segment { pos, .. } => {
                            rs.wal_index = pos.index;
                            rs.wal_offset = pos.offset;
                        }
                        SpoolKey::Snapshot { generation, .. } => _ = restorable.insert(generation.clone(), true),
                    }
                    drop(s);
                    backoff.reset();
                }
                Err(e) if spool.discard_if_lost(&entry) => {
                    rs.errors += 1;
                    rs.last_error = Some(format!("{} was lost from the spool: {e}", entry.key.object_key()));
                    drop(s);
                    tracing::error!(key = %entry.key.object_key(), path = %entry.path.display(), error = %e, "a staged object was deleted before it was uploaded; its generation can no longer be restored past it, so a new one starts");
                    // The sync loop starts the new generation; the rest of the queue goes on meanwhile.
                    sync_wake.notify_one();
                }
                Err(e) => {
                    drop(s);
                    status.replica_failed(i, &e);
                    backoff.fail();
                    tracing::error!(key = %entry.key.object_key(), error = %e, permanent = e.is_permanent(), "upload failed");
                    break;
                }
            }
        }
        // At most one upload round per sync interval, where the staging does not see to that already.
        if !paced_by_staging
            && let Some(rest) = opts.sync_interval.checked_sub(started.elapsed())
            && !rest.is_zero()
            && !backoff.failing()
        {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(rest) => {}
            }
        }
    }
}

/// Whether replica `i` can restore `generation`: it holds a snapshot of it, or one is on its way from the spool. If
/// not, the generation is given up for this replica and reported lost, and the sync loop is woken to start a new one.
async fn check_restorable(
    i: usize,
    replica: &Replica,
    spool: &Spool,
    generation: &Generation,
    sync_wake: &Notify,
) -> Result<bool, ReplicaError> {
    if spool.snapshot_pending(i, generation) || !replica.snapshots(generation).await?.is_empty() {
        return Ok(true);
    }
    tracing::warn!(generation = %generation, "the replica holds no snapshot of the generation (it was emptied, or added, since the generation began); a new generation starts");
    spool.snapshot_missing(i, replica.describe(), generation);
    sync_wake.notify_one();
    Ok(false)
}

async fn upload(replica: &Replica, entry: &SpoolEntry) -> Result<(), ReplicaError> {
    match &entry.key {
        SpoolKey::Snapshot { generation, index } => {
            replica.put_snapshot(generation, *index, &entry.path, entry.created).await
        }
        SpoolKey::Segment { generation, pos } => {
            replica.put_segment(generation, *pos, &entry.path, entry.created).await
        }
    }
}
