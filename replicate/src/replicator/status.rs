//! What a replicator has done so far, for metrics, readiness and tests. The replicator's tasks write it; readers get
//! a copy through a [`StatusHandle`] and never hold its lock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use crate::layout::Generation;
use crate::shipper::SyncReport;
use crate::spool::Spool;

/// A copy of a replicator's status at one moment.
#[derive(Debug, Default, Clone)]
pub struct Status {
    /// The database file exists and the shipper has opened it.
    pub database_found: bool,
    /// The first sync completed (a generation exists and the WAL was copied).
    pub initial_sync: bool,
    pub generation: Option<Generation>,
    pub index: u32,
    pub offset: u64,
    pub syncs: u64,
    pub sync_errors: u64,
    /// Why the last sync failed; `None` once one succeeds.
    pub last_sync_error: Option<String>,
    pub sync_seconds: f64,
    pub bytes_staged: u64,
    pub last_sync: Option<SystemTime>,
    pub snapshot_at: Option<SystemTime>,
    pub snapshots: u64,
    pub last_snapshot_bytes: u64,
    pub last_snapshot_seconds: f64,
    /// Per checkpoint mode (passive, truncate): count and seconds.
    pub checkpoints: BTreeMap<&'static str, (u64, f64)>,
    /// Checkpoints of another process that litecar stepped aside for, and how long each waited on our read lock.
    pub app_checkpoints_observed: u64,
    pub app_wait: WaitHistogram,
    /// How long each hold of the write lock by litecar lasted (the application's writers wait on it).
    pub write_lock_hold: WaitHistogram,
    /// Bytes in the spool that some replica still needs.
    pub pending_bytes: u64,
    pub replicas: Vec<ReplicaStatus>,
}

#[derive(Debug, Default, Clone)]
pub struct ReplicaStatus {
    pub name: String,
    pub kind: &'static str,
    /// The start-up check (one LIST) succeeded.
    pub reachable: bool,
    pub uploaded: u64,
    pub uploaded_bytes: u64,
    /// Position of the last WAL segment uploaded.
    pub wal_index: u32,
    pub wal_offset: u64,
    pub last_upload: Option<SystemTime>,
    pub errors: u64,
    /// Failed attempts since the last success; 0 when healthy.
    pub consecutive_errors: u64,
    pub last_error: Option<String>,
    /// Staging time of the oldest object this replica does not have yet.
    pub oldest_pending: Option<SystemTime>,
    pub retention_deleted: u64,
}

/// Upper bounds, in seconds, of the buckets of [`WaitHistogram`].
pub const APP_WAIT_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// A histogram of waits (or lock holds), counted per bucket of [`APP_WAIT_BUCKETS`] (not cumulative), plus everything above.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WaitHistogram {
    pub buckets: [u64; APP_WAIT_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl WaitHistogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(i) = APP_WAIT_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

impl Status {
    pub(crate) fn record_lock_holds(&mut self, report: &SyncReport) {
        for held in &report.write_lock_holds {
            self.write_lock_hold.observe(*held);
        }
    }

    pub(crate) fn record_snapshots(&mut self, report: &SyncReport) {
        if report.snapshots > 0 {
            self.snapshots += report.snapshots;
            self.last_snapshot_bytes = report.snapshot_bytes;
            self.last_snapshot_seconds = report.snapshot_seconds;
        }
    }
}

/// A replicator's status as its readers see it: the database's paths and a copy of the status on demand.
#[derive(Debug, Clone)]
pub struct StatusHandle {
    db: PathBuf,
    status: Arc<Mutex<Status>>,
}

impl StatusHandle {
    /// A handle on `status` for the database at `db`; the replicator makes its own, and a metrics test one of a
    /// status it chose.
    pub fn new(db: impl Into<PathBuf>, status: Status) -> Self {
        Self { db: db.into(), status: Arc::new(Mutex::new(status)) }
    }

    /// A copy of the status now.
    pub fn snapshot(&self) -> Status {
        self.lock().clone()
    }

    /// The replicated database.
    pub fn db_path(&self) -> &Path {
        &self.db
    }

    /// The database's WAL file.
    pub fn wal_path(&self) -> PathBuf {
        crate::wal::wal_path(&self.db)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Status> {
        crate::sync::lock(&self.status)
    }

    /// Record what a sync (or, when `sync` is false, stepping aside for another process's checkpoint) did, and wake
    /// the uploaders if there is something new for them.
    pub(crate) fn record(&self, report: &SyncReport, spool: &Spool, upload_wake: &[Arc<Notify>], sync: bool) {
        let mut generation_changed = false;
        {
            let mut s = self.lock();
            if sync {
                s.syncs += 1;
                s.last_sync_error = None;
                s.initial_sync = true;
                s.last_sync = Some(SystemTime::now());
            }
            s.bytes_staged += report.bytes;
            if let Some(mode) = report.checkpointed {
                let entry = s.checkpoints.entry(mode).or_default();
                entry.0 += 1;
                entry.1 += report.checkpoint_seconds;
            }
            for wait in &report.app_waits {
                s.app_checkpoints_observed += 1;
                s.app_wait.observe(*wait);
            }
            s.record_lock_holds(report);
            s.record_snapshots(report);
            s.pending_bytes = spool.pending_bytes();
            for (i, r) in s.replicas.iter_mut().enumerate() {
                r.oldest_pending = spool.oldest_pending(i);
            }
            if let Some((generation, pos, snapshot_at)) = &report.position {
                // The uploaders check that each replica can restore a new generation, even before it has data.
                generation_changed = s.generation.as_ref() != Some(generation);
                s.generation = Some(generation.clone());
                s.index = pos.index;
                s.offset = pos.offset;
                s.snapshot_at = Some(*snapshot_at);
            }
        }
        if report.staged > 0 || generation_changed {
            for w in upload_wake {
                w.notify_one();
            }
        }
    }

    /// Record a failed attempt of replica `i`.
    pub(crate) fn replica_failed(&self, i: usize, e: &crate::error::ReplicaError) {
        let mut s = self.lock();
        let rs = &mut s.replicas[i];
        rs.errors += 1;
        rs.consecutive_errors += 1;
        rs.last_error = Some(e.to_string());
    }
}
