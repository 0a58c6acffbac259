//! The async half of replication for one database: waits for the database, turns file-system events (or, where
//! there are none, polling) into syncs on the shipper thread, and runs one uploader per replica plus snapshot and
//! retention schedules. Cancelling the token makes a final sync and drains the spool within a deadline.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::client::Replica;
use crate::error::{Error, IoContext, Result};
use crate::layout::Generation;
use crate::shipper::{CheckpointPolicy, Shipper, SyncReport};
use crate::spool::{Loss, Spool, SpoolEntry, SpoolKey};
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

/// What the replicator has done so far, for metrics, readiness and tests.
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
    pub checkpoints: std::collections::BTreeMap<&'static str, (u64, f64)>,
    /// Checkpoints of another process that litecar stepped aside for, and how long each waited on our read lock.
    pub app_checkpoints_observed: u64,
    pub app_wait: WaitHistogram,
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

/// A histogram of waits, counted per bucket of [`APP_WAIT_BUCKETS`] (not cumulative), plus everything above.
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
    fn record_snapshots(&mut self, report: &SyncReport) {
        if report.snapshots > 0 {
            self.snapshots += report.snapshots;
            self.last_snapshot_bytes = report.snapshot_bytes;
            self.last_snapshot_seconds = report.snapshot_seconds;
        }
    }
}

pub type SharedStatus = Arc<Mutex<Status>>;

enum Command {
    /// Sync, then deal with what the replicas lost, if anything.
    Sync(Vec<Loss>, oneshot::Sender<Result<SyncReport>>),
    Snapshot(oneshot::Sender<Result<SyncReport>>),
}

/// The directory next to the database that holds litecar's position and spool (`.<name>-litecar`).
pub fn state_dir(db: &Path) -> PathBuf {
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    db.parent().unwrap_or(Path::new(".")).join(format!(".{name}-litecar"))
}

pub struct DbReplicator {
    opts: DbOptions,
    replicas: Vec<ReplicaOptions>,
    status: SharedStatus,
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
        Self { opts, replicas, status: Arc::new(Mutex::new(status)) }
    }

    pub fn status(&self) -> SharedStatus {
        self.status.clone()
    }

    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let db = self.opts.path.clone();
        // One LIST per replica at start-up: a permanent error (credentials, missing bucket) stops here, clearly,
        // rather than failing every upload later. A transient one is retried by the uploader.
        for (i, r) in self.replicas.iter().enumerate() {
            // Bounded: a store that is down must not hold up copying the WAL into the spool.
            let check = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = tokio::time::timeout(Duration::from_secs(5), r.replica.generations()) => r,
            };
            match check {
                Ok(Ok(_)) => self.status.lock().unwrap_or_else(|p| p.into_inner()).replicas[i].reachable = true,
                Ok(Err(e)) if e.is_permanent() => return Err(e.into()),
                Ok(Err(e)) => {
                    tracing::warn!(replica = %r.replica.describe(), error = %e, "replica not reachable yet; will retry")
                }
                Err(_) => tracing::warn!(replica = %r.replica.describe(), "replica not answering yet; will retry"),
            }
        }
        if !wait_for_database(&db, self.opts.monitor_interval, &cancel).await {
            return Ok(());
        }
        let dir = state_dir(&db);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let spool = Arc::new(Spool::open(dir.join("spool"), self.replicas.len())?);
        let open = {
            let (db, dir, spool, policy) = (db.clone(), dir.clone(), spool.clone(), self.opts.checkpoint.clone());
            move || Shipper::open(&db, &dir, spool.clone(), policy.clone())
        };
        let (shipper, open) = tokio::task::spawn_blocking(move || (open(), open))
            .await
            .map_err(|e| Error::Io { path: db.clone(), source: std::io::Error::other(e) })?;
        let shipper = shipper?;
        self.status.lock().unwrap_or_else(|p| p.into_inner()).database_found = true;
        let upload_wake: Vec<Arc<Notify>> = self.replicas.iter().map(|_| Arc::new(Notify::new())).collect();
        let (cmd_tx, cmd_rx) = mpsc::channel();
        let stepped_aside = {
            let (status, spool, upload_wake) = (self.status.clone(), spool.clone(), upload_wake.clone());
            move |report: &SyncReport| record(&status, report, &spool, &upload_wake, false)
        };
        let shipper_thread = spawn_shipper(shipper, open, cmd_rx, stepped_aside)?;

        let wake = Arc::new(Notify::new());
        let staging_interval = self.replicas.iter().map(|r| r.sync_interval).min().unwrap_or_default();
        let mut watch = WalWatch::new(&db, wake.clone(), staging_interval);
        let upload_stop = CancellationToken::new();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, r) in self.replicas.iter().enumerate() {
            let signals = UploadSignals {
                wake: upload_wake[i].clone(),
                sync_wake: wake.clone(),
                drain: cancel.clone(),
                stop: upload_stop.clone(),
            };
            tasks.spawn(upload_loop(i, r.clone(), spool.clone(), self.status.clone(), signals));
        }
        let maintenance_stop = cancel.child_token();
        for r in self.replicas.iter().filter(|r| r.retention.is_some() || r.snapshot_interval.is_some()) {
            tasks.spawn(maintenance_loop(
                r.clone(),
                cmd_tx.clone(),
                self.status.clone(),
                upload_wake.clone(),
                maintenance_stop.clone(),
            ));
        }

        let mut last_sync = Instant::now() - staging_interval;
        let mut backoff = Backoff::new(SYNC_BACKOFF_MAX);
        let mut first = true;
        let mut lost = vec![];
        loop {
            let failing = backoff.failures > 0;
            if !std::mem::take(&mut first) {
                // File-system events (those of a failed sync's own writes among them) must not cut a backoff short:
                // that would turn a lasting failure into a busy loop.
                let wait = if failing { backoff.delay() } else { watch.wait(self.opts.monitor_interval) };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = wake.notified(), if !failing => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            // Batch commits into one segment per sync interval.
            let since = last_sync.elapsed();
            if since < staging_interval {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(staging_interval - since) => {}
                }
            }
            last_sync = Instant::now();
            let started = Instant::now();
            lost.extend(spool.take_lost());
            let result = request(&cmd_tx, |reply| Command::Sync(lost.clone(), reply)).await;
            self.status.lock().unwrap_or_else(|p| p.into_inner()).sync_seconds += started.elapsed().as_secs_f64();
            match result {
                Ok(report) => {
                    backoff.reset();
                    lost.clear();
                    if watch.after_sync(report.bytes > 0) {
                        wake.notify_one();
                    }
                    self.after_sync(&report, &spool, &upload_wake);
                }
                Err(e) => {
                    backoff.fail();
                    {
                        let mut s = self.status.lock().unwrap_or_else(|p| p.into_inner());
                        s.sync_errors += 1;
                        s.last_sync_error = Some(e.to_string());
                    }
                    tracing::error!(db = %db.display(), error = %e, "sync failed");
                }
            }
        }

        // Final sync, then give the uploaders until the deadline to empty the spool.
        maintenance_stop.cancel();
        lost.extend(spool.take_lost());
        match request(&cmd_tx, |reply| Command::Sync(lost, reply)).await {
            Ok(report) => self.after_sync(&report, &spool, &upload_wake),
            Err(e) => tracing::error!(db = %db.display(), error = %e, "final sync failed"),
        }
        drop(cmd_tx);
        // The shipper's close makes one last copy under the write lock; wait for it before draining the spool.
        let _ = tokio::task::spawn_blocking(move || shipper_thread.join()).await;
        let deadline = Instant::now() + self.opts.shutdown_timeout;
        while !spool.is_empty() && Instant::now() < deadline {
            for w in &upload_wake {
                w.notify_one();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !spool.is_empty() {
            tracing::warn!(db = %db.display(), pending_bytes = spool.pending_bytes(), "shutdown deadline reached with uploads pending; they are kept in the spool and sent on the next start");
        }
        upload_stop.cancel();
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    fn after_sync(&self, report: &SyncReport, spool: &Spool, upload_wake: &[Arc<Notify>]) {
        record(&self.status, report, spool, upload_wake, true);
    }
}

/// Record what a sync (or, when `sync` is false, stepping aside for another process's checkpoint) did, and wake the
/// uploaders if there is something new for them.
fn record(status: &SharedStatus, report: &SyncReport, spool: &Spool, upload_wake: &[Arc<Notify>], sync: bool) {
    let mut generation_changed = false;
    {
        let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
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

async fn request(
    tx: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<Result<SyncReport>>) -> Command,
) -> Result<SyncReport> {
    let (reply, rx) = oneshot::channel();
    tx.send(make(reply)).map_err(|_| Error::Cancelled)?;
    rx.await.map_err(|_| Error::Cancelled)?
}

/// The shipper's thread. When the database is deleted or replaced under it, it lets go of the old file (whose WAL
/// and locks the application no longer uses) and, at the next command, opens whatever is at the path then, as a
/// restart would: a new generation.
fn spawn_shipper(
    shipper: Shipper,
    reopen: impl Fn() -> Result<Shipper> + Send + 'static,
    rx: mpsc::Receiver<Command>,
    stepped_aside: impl Fn(&SyncReport) + Send + 'static,
) -> Result<std::thread::JoinHandle<()>> {
    let name =
        format!("litecar-ship-{}", shipper.db_path().file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    let db = shipper.db_path().to_owned();
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let mut current = Some(shipper);
            let mut last_write = Instant::now();
            loop {
                // Between commands: is another process's checkpoint waiting for our read lock? Every millisecond while
                // the database is being written (writers would wait behind that checkpoint), less often when idle
                // (syncs still come every monitor-interval then, finding nothing new).
                let poll =
                    if last_write.elapsed() < COOPERATE_IDLE_AFTER { COOPERATE_POLL } else { COOPERATE_POLL_IDLE };
                let cmd = match rx.recv_timeout(poll) {
                    Ok(cmd) => cmd,
                    Err(RecvTimeoutError::Timeout) => {
                        if let Some(s) = current.as_mut()
                            && cooperate(s, &stepped_aside)
                        {
                            last_write = Instant::now();
                        }
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                };
                let shipper = match current {
                    Some(ref mut s) => s,
                    None => match reopen() {
                        Ok(s) => {
                            tracing::info!(db = %db.display(), "replicating the database file now at the path");
                            current.insert(s)
                        }
                        Err(e) => {
                            send_all(cmd.replies(), &Err(e));
                            continue;
                        }
                    },
                };
                let wrote = |r: &Result<SyncReport>| r.as_ref().is_ok_and(|r| r.bytes > 0 || !r.app_waits.is_empty());
                let replaced = match cmd {
                    Command::Sync(mut lost, reply) => {
                        // Coalesce a burst of queued syncs into this one.
                        let mut replies = vec![reply];
                        let mut snapshot = vec![];
                        while let Ok(more) = rx.try_recv() {
                            match more {
                                Command::Sync(more_lost, r) => {
                                    lost.extend(more_lost);
                                    replies.push(r);
                                }
                                Command::Snapshot(r) => snapshot.push(r),
                            }
                        }
                        let mut result = if lost.is_empty() { shipper.sync() } else { shipper.objects_lost(&lost) };
                        if result.is_ok() && shipper.snapshot_due_by_size() {
                            result = shipper.snapshot();
                        }
                        let replaced = matches!(result, Err(Error::Replaced { .. }));
                        if wrote(&result) {
                            last_write = Instant::now();
                        }
                        send_all(replies, &result);
                        if !snapshot.is_empty() {
                            // A replaced file gets no snapshot: the one at the path starts its own generation.
                            send_all(snapshot, &if replaced { result } else { shipper.snapshot() });
                        }
                        replaced
                    }
                    Command::Snapshot(reply) => {
                        let result = shipper.snapshot();
                        let replaced = matches!(result, Err(Error::Replaced { .. }));
                        let _ = reply.send(result);
                        replaced
                    }
                };
                if replaced && let Some(old) = current.take() {
                    close(old, &db);
                }
                // A command may have given up the write lock to a checkpoint that waits for us.
                if let Some(s) = current.as_mut() {
                    _ = cooperate(s, &stepped_aside);
                }
            }
            if let Some(shipper) = current {
                close(shipper, &db);
            }
        })
        .map_err(|e| Error::Io { path: PathBuf::from("shipper thread"), source: e })
}

/// How often the shipper thread looks, between commands, for another process's checkpoint waiting for its read lock.
const COOPERATE_POLL: Duration = Duration::from_millis(1);
/// …and once no sync found anything new for this long (nothing is being written), this often: an idle poll costs a thread
/// wake-up and a system call, and a checkpoint of an idle database holds up no writer.
const COOPERATE_POLL_IDLE: Duration = Duration::from_millis(10);
const COOPERATE_IDLE_AFTER: Duration = Duration::from_secs(2);

/// Whether it stepped aside (the application is busy with its database).
fn cooperate(shipper: &mut Shipper, stepped_aside: &impl Fn(&SyncReport)) -> bool {
    match shipper.cooperate() {
        Ok(Some(report)) => {
            stepped_aside(&report);
            return true;
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(db = %shipper.db_path().display(), error = %e, "stepping aside for the application's checkpoint failed")
        }
    }
    false
}

fn close(shipper: Shipper, db: &Path) {
    if let Err(e) = shipper.close() {
        tracing::warn!(db = %db.display(), error = %e, "releasing the read lock failed");
    }
}

impl Command {
    fn replies(self) -> Vec<oneshot::Sender<Result<SyncReport>>> {
        match self {
            Command::Sync(_, reply) | Command::Snapshot(reply) => vec![reply],
        }
    }
}

fn send_all(replies: Vec<oneshot::Sender<Result<SyncReport>>>, result: &Result<SyncReport>) {
    for r in replies {
        let copy = match result {
            Ok(report) => Ok(report.clone()),
            Err(e) => Err(Error::Relayed(e.to_string())),
        };
        let _ = r.send(copy);
    }
}

/// Wait until the database file exists and is not empty. `false` if cancelled first.
async fn wait_for_database(db: &Path, interval: Duration, cancel: &CancellationToken) -> bool {
    let mut logged = false;
    loop {
        if std::fs::metadata(db).is_ok_and(|m| m.len() > 0) {
            return true;
        }
        if !logged {
            tracing::info!(db = %db.display(), "waiting for the database to be created");
            logged = true;
        }
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = tokio::time::sleep(interval.min(Duration::from_millis(250))) => {}
        }
    }
}

struct Backoff {
    failures: u32,
    max: Duration,
}

/// A failing sync is local (a full disk, a database gone): retried soon enough to notice a fix within seconds.
const SYNC_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A failing store may be down for long; retries must not add to its load.
const UPLOAD_BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Backoff {
    fn new(max: Duration) -> Self {
        Self { failures: 0, max }
    }
    fn reset(&mut self) {
        self.failures = 0;
    }
    fn fail(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }
    /// Exponential from 100 ms up to the maximum, with jitter so that many pods do not retry in step.
    fn delay(&self) -> Duration {
        let max_ms = u64::try_from(self.max.as_millis()).unwrap_or(u64::MAX);
        let base = 100u64.saturating_mul(1 << self.failures.min(16)).min(max_ms);
        Duration::from_millis(base / 2 + rand::random_range(0..=base / 2))
    }
}

/// How an upload loop is woken and stopped.
struct UploadSignals {
    /// New objects in the spool.
    wake: Arc<Notify>,
    /// Wakes the sync loop (an object was lost from the spool).
    sync_wake: Arc<Notify>,
    /// Shutdown began: the spool is being drained.
    drain: CancellationToken,
    /// The drain's deadline passed.
    stop: CancellationToken,
}

async fn upload_loop(i: usize, opts: ReplicaOptions, spool: Arc<Spool>, status: SharedStatus, signals: UploadSignals) {
    let UploadSignals { wake, sync_wake, drain, stop } = signals;
    let replica = &opts.replica;
    let mut backoff = Backoff::new(UPLOAD_BACKOFF_MAX);
    let mut drain_retried = false;
    // Generations checked for a snapshot in this replica, and whether it had one. Segments of a generation the
    // replica has no snapshot of are useless to it; the first check of the current one happens at start-up, so that
    // a replica emptied (or added) while litecar was stopped gets a new generation even if nothing is written.
    let mut restorable: BTreeMap<Generation, bool> = BTreeMap::new();
    loop {
        let current = status.lock().unwrap_or_else(|p| p.into_inner()).generation.clone();
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
        if backoff.failures > 0 {
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
                    record_failure(&status, i, &e, &mut backoff);
                    tracing::error!(replica = %replica.describe(), generation = %generation, error = %e, permanent = e.is_permanent(), "listing the replica's snapshots failed");
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
            let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
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
                    tracing::error!(replica = %replica.describe(), key = %entry.key.object_key(), path = %entry.path.display(), error = %e, "a staged object was deleted before it was uploaded; its generation can no longer be restored past it, so a new one starts");
                    // The sync loop starts the new generation; the rest of the queue goes on meanwhile.
                    sync_wake.notify_one();
                }
                Err(e) => {
                    drop(s);
                    record_failure(&status, i, &e, &mut backoff);
                    tracing::error!(replica = %replica.describe(), key = %entry.key.object_key(), error = %e, permanent = e.is_permanent(), "upload failed");
                    break;
                }
            }
        }
        // At most one upload round per sync interval.
        if let Some(rest) = opts.sync_interval.checked_sub(started.elapsed())
            && !rest.is_zero()
            && backoff.failures == 0
        {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(rest) => {}
            }
        }
    }
}

fn record_failure(status: &SharedStatus, i: usize, e: &crate::error::ReplicaError, backoff: &mut Backoff) {
    let mut s = status.lock().unwrap_or_else(|p| p.into_inner());
    let rs = &mut s.replicas[i];
    rs.errors += 1;
    rs.consecutive_errors += 1;
    rs.last_error = Some(e.to_string());
    backoff.fail();
}

/// Whether replica `i` can restore `generation`: it holds a snapshot of it, or one is on its way from the spool. If
/// not, the generation is given up for this replica and reported lost, and the sync loop is woken to start a new one.
async fn check_restorable(
    i: usize,
    replica: &Replica,
    spool: &Spool,
    generation: &Generation,
    sync_wake: &Notify,
) -> std::result::Result<bool, crate::error::ReplicaError> {
    if spool.snapshot_pending(i, generation) || !replica.snapshots(generation).await?.is_empty() {
        return Ok(true);
    }
    tracing::warn!(replica = %replica.describe(), generation = %generation, "the replica holds no snapshot of the generation (it was emptied, or added, since the generation began); a new generation starts");
    spool.snapshot_missing(i, replica.describe(), generation);
    sync_wake.notify_one();
    Ok(false)
}

async fn upload(replica: &Replica, entry: &SpoolEntry) -> std::result::Result<(), crate::error::ReplicaError> {
    match &entry.key {
        SpoolKey::Snapshot { generation, index } => {
            replica.put_snapshot(generation, *index, &entry.path, entry.created).await
        }
        SpoolKey::Segment { generation, pos } => {
            replica.put_segment(generation, *pos, &entry.path, entry.created).await
        }
    }
}

/// Snapshots at `snapshot-interval`, and retention every `retention-check-interval`.
async fn maintenance_loop(
    opts: ReplicaOptions,
    cmd: mpsc::Sender<Command>,
    status: SharedStatus,
    upload_wake: Vec<Arc<Notify>>,
    stop: CancellationToken,
) {
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
            match request(&cmd, Command::Snapshot).await {
                Ok(r) => {
                    status.lock().unwrap_or_else(|p| p.into_inner()).record_snapshots(&r);
                    upload_wake.iter().for_each(|w| w.notify_one())
                }
                Err(e) => {
                    tracing::error!(replica = %opts.replica.describe(), error = %e, "snapshot failed")
                }
            }
        }
        if let (Some(retention), Some(t)) = (opts.retention, next_retention)
            && t <= now
        {
            next_retention = Some(now + opts.retention_check_interval);
            let (current, snapshot_at) = {
                let s = status.lock().unwrap_or_else(|p| p.into_inner());
                (s.generation.clone(), s.snapshot_at)
            };
            // Like Litestream: a snapshot older than the window is renewed first, so the window stays restorable.
            if snapshot_at.is_some_and(|t| t.elapsed().unwrap_or_default() > retention)
                && let Err(e) = request(&cmd, Command::Snapshot).await
            {
                tracing::error!(replica = %opts.replica.describe(), error = %e, "snapshot failed");
            }
            if let Some(current) = current {
                match crate::retention::enforce(&opts.replica, &current, retention, SystemTime::now()).await {
                    Ok(r) => {
                        let deleted = (r.snapshots_deleted + r.segments_deleted) as u64;
                        if deleted > 0 || r.generations_deleted > 0 {
                            tracing::info!(
                                replica = %opts.replica.describe(), current = %current,
                                generations = r.generations_deleted, snapshots = r.snapshots_deleted,
                                segments = r.segments_deleted, "retention deleted old backups"
                            );
                        }
                        if let Some(rs) = status
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .replicas
                            .iter_mut()
                            .find(|s| s.name == opts.replica.name)
                        {
                            rs.retention_deleted += deleted;
                        }
                        tracing::debug!(replica = %opts.replica.describe(), ?r, "retention enforced")
                    }
                    Err(e) => {
                        tracing::error!(replica = %opts.replica.describe(), error = %e, "retention failed")
                    }
                }
            }
        }
    }
}
