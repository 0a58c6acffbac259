//! The replicator's shutdown against a store that stops answering.

use std::sync::Arc;
use std::time::Duration;

use super::*;
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
