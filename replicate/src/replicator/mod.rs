//! The async half of replication for one database: waits for the database, runs the sync loop ([`sync`]) that
//! drives the shipper thread ([`actor`]), one uploader per replica ([`upload`]) and the snapshot and retention
//! schedules ([`maintenance`]). Cancelling the token makes a final sync and drains the spool within a deadline.

mod actor;
mod backoff;
mod maintenance;
mod status;
mod sync;
mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use self::status::{APP_WAIT_BUCKETS, ReplicaStatus, Status, StatusHandle, WaitHistogram};
use crate::client::Replica;
use crate::error::{Error, IoContext, Result};
use crate::shipper::{CheckpointPolicy, Shipper};
use crate::spool::Spool;
use crate::watch::WalWatch;

#[derive(Debug, Clone)]
pub struct DbOptions {
    pub path: PathBuf,
    /// Polling fallback for file systems without change events.
    pub monitor_interval: Duration,
    pub checkpoint: CheckpointPolicy,
    /// How long a shutdown may spend uploading what is still in the spool.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    pub replica: Replica,
    /// At most one upload round per interval; zero ships each commit as it happens.
    pub sync_interval: Duration,
    pub snapshot_interval: Option<Duration>,
    pub retention: Option<Duration>,
    pub retention_check_interval: Duration,
}

/// The directory next to the database that holds litecar's position and spool (`.<name>-litecar`).
pub fn state_dir(db: &Path) -> PathBuf {
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    db.parent().unwrap_or(Path::new(".")).join(format!(".{name}-litecar"))
}

pub struct DbReplicator {
    opts: DbOptions,
    replicas: Vec<ReplicaOptions>,
    status: StatusHandle,
}

impl DbReplicator {
    pub fn new(opts: DbOptions, replicas: Vec<ReplicaOptions>) -> Self {
        let status = Status {
            replicas: replicas
                .iter()
                .map(|r| ReplicaStatus {
                    name: r.replica.name.clone(),
                    kind: r.replica.client.kind(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let status = StatusHandle::new(opts.path.clone(), status);
        Self { opts, replicas, status }
    }

    pub fn status(&self) -> StatusHandle {
        self.status.clone()
    }

    /// Replicate until `cancel`, then make a final sync and drain the spool. Its events are in a `db` span.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let span = tracing::info_span!("db", db = %self.opts.path.display());
        self.serve(cancel).instrument(span).await
    }

    async fn serve(self, cancel: CancellationToken) -> Result<()> {
        if !self.check_replicas(&cancel).await? || !self.wait_for_database(&cancel).await {
            return Ok(());
        }
        let db = &self.opts.path;
        let dir = state_dir(db);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let spool = Arc::new(Spool::open(dir.join("spool"), self.replicas.len())?);
        let upload_wake: Vec<Arc<Notify>> = self.replicas.iter().map(|_| Arc::new(Notify::new())).collect();
        let (shipper, shipper_thread) = self.start_shipper(&dir, &spool, &upload_wake).await?;

        let wake = Arc::new(Notify::new());
        let staging_interval = self.replicas.iter().map(|r| r.sync_interval).min().unwrap_or_default();
        let upload_stop = CancellationToken::new();
        let maintenance_stop = cancel.child_token();
        let mut tasks = JoinSet::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let signals = upload::UploadSignals {
                wake: upload_wake[i].clone(),
                sync_wake: wake.clone(),
                drain: cancel.clone(),
                stop: upload_stop.clone(),
            };
            // Every remote call ends when its task is told to stop, even one the store never answers.
            let opts = ReplicaOptions { replica: r.replica.cancellable(upload_stop.clone()), ..r.clone() };
            let task = upload::upload_loop(i, opts, staging_interval, spool.clone(), self.status.clone(), signals);
            tasks.spawn(task.instrument(replica_span(&r.replica)));
        }
        for (i, r) in self.replicas.iter().enumerate() {
            if r.retention.is_some() || r.snapshot_interval.is_some() {
                let m = maintenance::Maintenance {
                    i,
                    opts: ReplicaOptions { replica: r.replica.cancellable(maintenance_stop.clone()), ..r.clone() },
                    shipper: shipper.clone(),
                    status: self.status.clone(),
                    upload_wake: upload_wake.clone(),
                    stop: maintenance_stop.clone(),
                };
                tasks.spawn(m.run().instrument(replica_span(&r.replica)));
            }
        }

        let mut sync = sync::SyncLoop {
            shipper,
            status: self.status.clone(),
            spool: spool.clone(),
            upload_wake: upload_wake.clone(),
            watch: WalWatch::new(db, wake.clone(), staging_interval),
            wake,
            monitor_interval: self.opts.monitor_interval,
            staging_interval,
        };
        let lost = sync.run(&cancel).await;

        // Final sync, then give the uploaders until the deadline to empty the spool.
        maintenance_stop.cancel();
        sync.final_sync(lost).await;
        drop(sync);
        // The shipper's close makes one last copy under the write lock; wait for it before draining the spool.
        let _ = tokio::task::spawn_blocking(move || shipper_thread.join()).await;
        drain(&spool, &upload_wake, self.opts.shutdown_timeout).await;
        upload_stop.cancel();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// One LIST per replica at start-up: a permanent error (credentials, missing bucket) stops here, clearly,
    /// rather than failing every upload later. A transient one is retried by the uploader. `false` if cancelled.
    async fn check_replicas(&self, cancel: &CancellationToken) -> Result<bool> {
        for (i, r) in self.replicas.iter().enumerate() {
            let span = replica_span(&r.replica);
            // Bounded: a store that is down must not hold up copying the WAL into the spool.
            let check = tokio::select! {
                _ = cancel.cancelled() => return Ok(false),
                r = tokio::time::timeout(Duration::from_secs(5), r.replica.generations()).instrument(span.clone()) => r,
            };
            match check {
                Ok(Ok(_)) => self.status.lock().replicas[i].reachable = true,
                Ok(Err(e)) if e.is_permanent() => return Err(e.into()),
                Ok(Err(e)) => tracing::warn!(parent: &span, error = %e, "replica not reachable yet; will retry"),
                Err(_) => tracing::warn!(parent: &span, "replica not answering yet; will retry"),
            }
        }
        Ok(true)
    }

    /// Wait until the database file exists and is not empty. `false` if cancelled first.
    async fn wait_for_database(&self, cancel: &CancellationToken) -> bool {
        let mut logged = false;
        loop {
            if std::fs::metadata(&self.opts.path).is_ok_and(|m| m.len() > 0) {
                return true;
            }
            if !logged {
                tracing::info!("waiting for the database to be created");
                logged = true;
            }
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = tokio::time::sleep(self.opts.monitor_interval.min(Duration::from_millis(250))) => {}
            }
        }
    }

    /// Open the database on a blocking thread, then hand it to the shipper thread.
    async fn start_shipper(
        &self,
        dir: &Path,
        spool: &Arc<Spool>,
        upload_wake: &[Arc<Notify>],
    ) -> Result<(actor::ShipperHandle, std::thread::JoinHandle<()>)> {
        let db = self.opts.path.clone();
        let open = {
            let (db, dir, spool, policy) = (db.clone(), dir.to_owned(), spool.clone(), self.opts.checkpoint.clone());
            move || Shipper::open(&db, &dir, spool.clone(), policy.clone())
        };
        let (shipper, open) = tokio::task::spawn_blocking(move || (open(), open))
            .await
            .map_err(|e| Error::Io { path: db, source: std::io::Error::other(e) })?;
        let shipper = shipper?;
        self.status.lock().database_found = true;
        let stepped_aside = {
            let (status, spool, upload_wake) = (self.status.clone(), spool.clone(), upload_wake.to_vec());
            move |report: &_| status.record(report, &spool, &upload_wake, false)
        };
        actor::spawn(shipper, open, stepped_aside)
    }
}

/// The span of a replica's tasks, inside the database's.
fn replica_span(replica: &Replica) -> tracing::Span {
    tracing::info_span!("replica", replica = %replica.describe())
}

/// Keep waking the uploaders until the spool is empty or `timeout` has passed.
async fn drain(spool: &Spool, upload_wake: &[Arc<Notify>], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !spool.is_empty() && Instant::now() < deadline {
        for w in upload_wake {
            w.notify_one();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if !spool.is_empty() {
        tracing::warn!(
            pending_bytes = spool.pending_bytes(),
            "shutdown deadline reached with uploads pending; they are kept in the spool and sent on the next start"
        );
    }
}

#[cfg(test)]
mod tests;
