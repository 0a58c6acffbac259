//! The replicator's shutdown against a store that stops answering, and how its uploads follow the staging.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::*;
use crate::client::{ObjectClient, ObjectInfo};
use crate::error::ReplicaError;
use crate::faults::{FaultConfig, FaultyClient};
use crate::file::FileClient;

async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..600 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_while_the_store_hangs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let app = rusqlite::Connection::open(&db).expect("open");
    app.pragma_update(None, "journal_mode", "wal").expect("wal");
    app.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").expect("write");

    let store = Arc::new(FaultyClient::new(Arc::new(FileClient::new(dir.path().join("replica"))), FaultConfig::none()));
    let replica = ReplicaOptions {
        replica: Replica::new("hangs", store.clone()),
        sync_interval: Duration::ZERO,
        snapshot_interval: None,
        // Retention lists the replica every 50 ms: one of those calls is in flight when the store hangs.
        retention: Some(Duration::from_secs(3600)),
        retention_check_interval: Duration::from_millis(50),
    };
    let opts = DbOptions {
        path: db.clone(),
        monitor_interval: Duration::from_millis(50),
        checkpoint: CheckpointPolicy::default(),
        shutdown_timeout: Duration::from_millis(200),
    };
    let replicator = DbReplicator::new(opts, vec![replica]);
    let status = replicator.status();
    let cancel = CancellationToken::new();
    let run = tokio::spawn(replicator.run(cancel.clone()));
    eventually("the first uploads", || status.snapshot().replicas[0].uploaded >= 2).await;

    store.set_hang(true);
    app.execute("INSERT INTO t VALUES (2)", []).expect("write");
    eventually("a sync of the new write", || status.snapshot().bytes_staged > 0 && status.snapshot().pending_bytes > 0)
        .await;
    // Retention and the upload of the new segment now wait on the store.
    tokio::time::sleep(Duration::from_millis(200)).await;
    cancel.cancel();
    let ended = tokio::time::timeout(Duration::from_secs(10), run).await;
    ended.expect("shutdown ends although the store never answers").expect("the task").expect("a clean shutdown");
    assert!(status.snapshot().pending_bytes > 0, "what the store did not take stays in the spool");
}

/// A file replica that records, for every WAL segment it is sent, when it was sent and how long after its staging.
#[derive(Debug)]
struct Recorder {
    inner: FileClient,
    segments: Mutex<Vec<(SystemTime, Duration)>>,
}

impl Recorder {
    fn new(root: &Path) -> Arc<Self> {
        Arc::new(Self { inner: FileClient::new(root), segments: Mutex::default() })
    }

    fn segments(&self) -> Vec<(SystemTime, Duration)> {
        self.segments.lock().expect("lock").clone()
    }
}

#[async_trait]
impl ObjectClient for Recorder {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
        self.inner.list_dirs(prefix).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        self.inner.list(prefix).await
    }
    async fn put_file(&self, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError> {
        if key.contains("/wal/") {
            let now = SystemTime::now();
            self.segments.lock().expect("lock").push((now, now.duration_since(created).unwrap_or_default()));
        }
        self.inner.put_file(key, src, created).await
    }
    async fn get_file(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError> {
        self.inner.get_file(key, dst).await
    }
    async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError> {
        self.inner.delete(keys).await
    }
}

fn replica_options(replica: Replica, sync_interval: Duration, snapshot_interval: Option<Duration>) -> ReplicaOptions {
    ReplicaOptions {
        replica,
        sync_interval,
        snapshot_interval,
        retention: None,
        retention_check_interval: Duration::from_secs(3600),
    }
}

/// Replicate a database written every 20 ms for `seconds` to `replicas`, then shut down.
async fn replicate_busy_writer(dir: &Path, replicas: Vec<ReplicaOptions>, seconds: u64) {
    let db = dir.join("app.db");
    let app = rusqlite::Connection::open(&db).expect("open");
    app.pragma_update(None, "journal_mode", "wal").expect("wal");
    app.execute_batch("CREATE TABLE t (x)").expect("schema");
    let opts = DbOptions {
        path: db,
        monitor_interval: Duration::from_millis(50),
        checkpoint: CheckpointPolicy::default(),
        shutdown_timeout: Duration::from_secs(5),
    };
    let cancel = CancellationToken::new();
    let run = tokio::spawn(DbReplicator::new(opts, replicas).run(cancel.clone()));
    let writes = tokio::task::spawn_blocking(move || {
        let end = std::time::Instant::now() + Duration::from_secs(seconds);
        while std::time::Instant::now() < end {
            app.execute("INSERT INTO t VALUES (randomblob(100))", []).expect("write");
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    writes.await.expect("the writer");
    cancel.cancel();
    run.await.expect("the task").expect("a clean shutdown");
}

/// With the staging at the replica's own sync interval, each segment is sent as soon as it is staged, also after
/// rounds that the staging did not start (snapshots, here): no timer of the uploader's holds a segment back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_is_uploaded_as_soon_as_it_is_staged_when_the_staging_paces_the_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Recorder::new(&dir.path().join("replica"));
    let interval = Duration::from_secs(1);
    // Snapshots every 450 ms wake rounds out of step with the staging.
    let replica = replica_options(Replica::new("r", store.clone()), interval, Some(Duration::from_millis(450)));
    replicate_busy_writer(dir.path(), vec![replica], 6).await;
    let segments = store.segments();
    assert!(segments.len() >= 5, "{segments:?}");
    let waits: Vec<Duration> = segments.iter().map(|(_, wait)| *wait).collect();
    assert!(waits.iter().all(|w| *w < interval / 2), "segments waited after their staging: {waits:?}");
}

/// Where another replica has the WAL staged at every commit, a replica with a longer sync interval still gets at most
/// one upload round per interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slower_replica_beside_a_faster_one_gets_one_round_per_interval() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fast =
        replica_options(Replica::new("fast", Arc::new(FileClient::new(dir.path().join("fast")))), Duration::ZERO, None);
    let store = Recorder::new(&dir.path().join("slow"));
    let interval = Duration::from_millis(500);
    let slow = replica_options(Replica::new("slow", store.clone()), interval, None);
    replicate_busy_writer(dir.path(), vec![fast, slow], 3).await;
    let sent: Vec<SystemTime> = store.segments().iter().map(|(at, _)| *at).collect();
    // A round sends its segments back to back; rounds are an interval apart.
    let rounds = 1 + sent.windows(2).filter(|w| w[1].duration_since(w[0]).unwrap_or_default() > interval / 2).count();
    assert!(sent.len() > rounds * 2, "the faster staging did not give this replica several segments per round");
    assert!(rounds <= 3 * 2 + 2, "{rounds} rounds in 3 s at a 500 ms interval: {sent:?}");
}
