//! Full disks, for real: small tmpfs mounts under the spool, under a file replica and under a restore's output.
//! Replication waits with the WAL kept whole and catches up once there is room again, in the same generation;
//! a restore fails with the path and the cause, and leaves nothing behind.

use std::path::Path;
use std::time::Duration;

use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{SmallDisk, digest, eventually, litecar, stderr};
use litecar_replicate::CheckpointPolicy;
use litecar_replicate::Generation;
use litecar_replicate::backend::{self, Backend};
use litecar_replicate::replicator::{DbOptions, DbReplicator, ReplicaOptions, Status, StatusHandle, state_dir};
use litecar_replicate::restore::{self, RestoreOptions, Target};
use tokio_util::sync::CancellationToken;

const NO_SPACE: &str = "No space left on device";

fn replicator(db: &Path, replica: &Path) -> DbReplicator {
    let replica = backend::connect("file", &Backend::File { path: replica.to_owned() }).expect("file replica");
    DbReplicator::new(
        DbOptions {
            path: db.to_owned(),
            monitor_interval: Duration::from_millis(500),
            checkpoint: CheckpointPolicy { min_page_count: 200, ..Default::default() },
            shutdown_timeout: Duration::from_secs(30),
        },
        vec![ReplicaOptions {
            replica,
            sync_interval: Duration::from_millis(100),
            snapshot_interval: None,
            retention: None,
            retention_check_interval: Duration::from_secs(3600),
        }],
    )
}

fn generations(replica: &Path) -> usize {
    std::fs::read_dir(replica.join("generations")).expect("generations").count()
}

/// Restore the latest state from `replica` and compare it with the source and with every committed transaction.
fn assert_restores(db: &Path, replica: &Path, committed: &workload::Committed) {
    let out = db.with_file_name("restored.db");
    let replica = backend::connect("file", &Backend::File { path: replica.to_owned() }).expect("file replica");
    runtime().block_on(async {
        let plan = restore::plan(&replica, &Target::default()).await.expect("plan").expect("a backup");
        let opts = RestoreOptions { output: out.clone(), parallelism: 4, full_integrity_check: true };
        restore::restore(&replica, &plan, &opts, &|_| {}).await.expect("restore");
    });
    assert!(committed.lock().expect("lock").is_subset(&workload::rows_in(&out)), "committed rows lost");
    assert_eq!(digest(&out), digest(db));
}

/// While the application writes on (each commit an event, each sync a wake for the uploads), failed attempts are
/// retried with a growing backoff: a few in three seconds, where retrying on every wake makes 15 to 30.
fn assert_backs_off(what: &str, failures: impl Fn() -> u64) {
    let before = failures();
    std::thread::sleep(Duration::from_secs(3));
    let during = failures() - before;
    assert!(during <= 8, "{during} failed {what} in 3 s of a full disk");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Replication in this process, beside an application writing every `pause`, both past their first uploads.
struct Replicating {
    rt: tokio::runtime::Runtime,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<litecar_replicate::Result<()>>,
    shared: StatusHandle,
    writes: Workload,
    generation: Generation,
}

impl Replicating {
    fn start(db: &Path, replica: &Path, pause: Duration) -> Self {
        let rt = runtime();
        let cancel = CancellationToken::new();
        let r = replicator(db, replica);
        let shared = r.status();
        let task = rt.spawn(r.run(cancel.clone()));
        let writes = Workload::start(db, Options { writers: 2, pause, ..Options::default() });
        let status = || shared.snapshot();
        eventually(Duration::from_secs(30), "the first uploads", || status().replicas[0].uploaded >= 3);
        let generation = status().generation.expect("a generation");
        Self { rt, cancel, task, shared, writes, generation }
    }

    fn status(&self) -> Status {
        self.shared.snapshot()
    }

    fn commits(&self) -> u64 {
        self.writes.shared.committed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Once the disk has room again: wait until `healthy` holds and three more objects were uploaded.
    fn catch_up(&self, healthy: impl Fn(&Status) -> bool) {
        let uploaded = self.status().replicas[0].uploaded;
        eventually(Duration::from_secs(30), "syncs and uploads again", || {
            let s = self.status();
            healthy(&s) && s.replicas[0].uploaded >= uploaded + 3
        });
    }

    /// Stop writing, then replication; the outage must not have cost a new generation.
    fn stop(self) -> (workload::Committed, Status) {
        let committed = self.writes.stop();
        self.cancel.cancel();
        self.rt.block_on(self.task).expect("join").expect("replicator");
        let status = self.shared.snapshot();
        assert_eq!(status.generation.as_ref(), Some(&self.generation), "the outage cost a new generation");
        (committed, status)
    }
}

#[test]
fn a_full_spool_disk_keeps_the_wal_and_catches_up_in_the_same_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    workload::create(&db);
    let disk = SmallDisk::mount(&state_dir(&db).join("spool"), 64 << 20);
    // Commits far enough apart that litecar listens to file-system events rather than polling at the busy cadence.
    let run = Replicating::start(&db, &replica, Duration::from_millis(200));

    let ballast = disk.fill();
    eventually(Duration::from_secs(30), "syncs failing on the full spool", || run.status().sync_errors >= 3);
    let error = run.status().last_sync_error.expect("the failed sync's error");
    assert!(
        error.contains(NO_SPACE) && error.contains("spool"),
        "the error names neither the spool nor the cause: {error}"
    );
    assert_backs_off("syncs", || run.status().sync_errors);
    let committed_during_outage = run.commits();
    eventually(Duration::from_secs(30), "the application writing on", || run.commits() >= committed_during_outage + 20);

    std::fs::remove_file(&ballast).expect("free the disk");
    run.catch_up(|s| s.last_sync_error.is_none());
    let (committed, _) = run.stop();
    assert_eq!(generations(&replica), 1);
    assert_restores(&db, &replica, &committed);
}

/// The sidecar's usual layout: the database, its WAL, litecar's position and spool all on one volume, which fills up
/// under the application.
#[test]
fn a_full_volume_under_the_application_and_litecar_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = dir.path().join("volume");
    let disk = SmallDisk::mount(&volume, 96 << 20);
    let db = volume.join("app.db");
    let replica = dir.path().join("replica");
    workload::create(&db);
    let run = Replicating::start(&db, &replica, Duration::from_millis(10));

    let ballast = disk.fill();
    // The application's commits fail once its WAL cannot grow; wait until they have stopped for a while.
    let mut last = (run.commits(), std::time::Instant::now());
    eventually(Duration::from_secs(60), "the application's commits failing on the full volume", || {
        if run.commits() != last.0 {
            last = (run.commits(), std::time::Instant::now());
        }
        last.1.elapsed() > Duration::from_secs(1)
    });

    std::fs::remove_file(&ballast).expect("free the disk");
    let resumed = run.commits();
    eventually(Duration::from_secs(30), "the application committing again", || run.commits() >= resumed + 50);
    run.catch_up(|s| s.last_sync_error.is_none());
    let (committed, _) = run.stop();
    assert_eq!(generations(&replica), 1);
    assert_restores(&db, &replica, &committed);
}

#[test]
fn a_full_replica_disk_holds_uploads_in_the_spool_until_there_is_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    workload::create(&db);
    let disk = SmallDisk::mount(&replica, 64 << 20);
    let run = Replicating::start(&db, &replica, Duration::from_millis(10));

    let ballast = disk.fill();
    eventually(Duration::from_secs(30), "uploads failing on the full replica", || {
        run.status().replicas[0].consecutive_errors >= 2
    });
    let error = run.status().replicas[0].last_error.clone().expect("the failed upload's error");
    assert!(error.contains(NO_SPACE), "the error does not say the disk is full: {error}");
    assert_backs_off("uploads", || run.status().replicas[0].errors);
    eventually(Duration::from_secs(30), "segments queued in the spool", || run.status().pending_bytes > 0);
    assert_eq!(run.status().sync_errors, 0, "staging must not depend on the replica");

    std::fs::remove_file(&ballast).expect("free the disk");
    run.catch_up(|s| s.replicas[0].consecutive_errors == 0);
    let (committed, status) = run.stop();
    assert_eq!(status.pending_bytes, 0, "the spool was not drained at shutdown");
    let leftovers: Vec<_> = walk(&replica).into_iter().filter(|p| p.extension().is_some_and(|e| e == "tmp")).collect();
    assert!(leftovers.is_empty(), "temporary files left in the replica: {leftovers:?}");
    assert_restores(&db, &replica, &committed);
}

#[test]
fn a_restore_onto_a_full_disk_fails_naming_the_output_and_leaves_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    let replica = dir.path().join("replica");
    workload::create(&db);
    let c = litecar_e2e::app_connection(&db);
    for i in 0..400 {
        c.execute("INSERT INTO events (writer, seq, payload) VALUES (0, ?1, randomblob(8000))", [i]).expect("insert");
    }
    let rt = runtime();
    let cancel = CancellationToken::new();
    let r = replicator(&db, &replica);
    let st = r.status();
    let task = rt.spawn(r.run(cancel.clone()));
    eventually(Duration::from_secs(30), "the first uploads", || st.snapshot().replicas[0].uploaded >= 2);
    cancel.cancel();
    rt.block_on(task).expect("join").expect("replicator");

    let small = dir.path().join("small");
    let _disk = SmallDisk::mount(&small, 1 << 20);
    let out = small.join("restored.db");
    let o =
        litecar(&["restore", "-o", out.to_str().expect("utf-8"), &format!("file://{}", replica.display())], dir.path());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "restore onto a full disk: {err}");
    assert!(
        err.contains(NO_SPACE) && err.contains(small.to_str().expect("utf-8")),
        "the error names neither the output nor the cause: {err}"
    );
    assert_eq!(err.matches(NO_SPACE).count(), 1, "the cause is said more than once: {err}");
    let left: Vec<_> = std::fs::read_dir(&small).expect("read_dir").map(|e| e.expect("entry").path()).collect();
    assert!(left.is_empty(), "a failed restore left files behind: {left:?}");

    // With room, the same command succeeds.
    let roomy = dir.path().join("roomy.db");
    let o = litecar(
        &["restore", "-o", roomy.to_str().expect("utf-8"), &format!("file://{}", replica.display())],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(digest(&roomy), digest(&db));
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = vec![];
    for e in std::fs::read_dir(dir).expect("read_dir").map(|e| e.expect("entry")) {
        if e.file_type().expect("type").is_dir() {
            files.extend(walk(&e.path()));
        } else {
            files.push(e.path());
        }
    }
    files
}
