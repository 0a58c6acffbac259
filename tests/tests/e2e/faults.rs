//! Object-store misbehaviour: injected 5xx, lost responses, delays and cut-off downloads; wrong credentials and a
//! missing bucket; and how many requests replication makes.

use std::sync::Arc;
use std::time::Duration;

use litecar_e2e::emulators;
use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{digest, eventually, litecar, stderr};
use litecar_replicate::CheckpointPolicy;
use litecar_replicate::backend::{self, Backend, S3Settings};
use litecar_replicate::replicator::{DbOptions, DbReplicator, ReplicaOptions};
use litecar_replicate::restore::{self, RestoreOptions, Target};
use litecar_replicate::test_utils::{FaultConfig, FaultyClient};
use litecar_replicate::{ObjectClient, Replica};
use tokio_util::sync::CancellationToken;

fn s3_replica(bucket: &str) -> Replica {
    emulators::create_s3_bucket(bucket);
    let settings = S3Settings {
        bucket: bucket.to_owned(),
        path: "app".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(emulators::s3_endpoint().to_owned()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..Default::default()
    };
    backend::connect("s3", &Backend::S3(settings)).expect("connect")
}

fn options(replica: Replica, sync_interval: Duration) -> ReplicaOptions {
    ReplicaOptions {
        replica,
        sync_interval,
        snapshot_interval: None,
        retention: None,
        retention_check_interval: Duration::from_secs(3600),
    }
}

fn db_options(db: &std::path::Path) -> DbOptions {
    DbOptions {
        path: db.to_owned(),
        monitor_interval: Duration::from_millis(500),
        checkpoint: CheckpointPolicy { min_page_count: 200, ..Default::default() },
        shutdown_timeout: Duration::from_secs(60),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

#[test]
fn replication_survives_a_faulty_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    workload::create(&db);
    let clean = s3_replica(&format!("faults{:08x}", rand::random::<u32>()));
    let faulty_client = Arc::new(FaultyClient::new(clean.client.clone(), FaultConfig::default()));
    let faulty = Replica::new("s3", faulty_client.clone() as Arc<dyn ObjectClient>);

    let rt = runtime();
    let cancel = CancellationToken::new();
    let replicator = DbReplicator::new(db_options(&db), vec![options(faulty.clone(), Duration::from_millis(200))]);
    let status = replicator.status();
    let task = rt.spawn(replicator.run(cancel.clone()));
    let w = Workload::start(&db, Options::default());
    std::thread::sleep(Duration::from_secs(5));
    let committed = w.stop();
    cancel.cancel();
    rt.block_on(task).expect("join").expect("replicator");

    let injected = faulty_client.injected.load(std::sync::atomic::Ordering::Relaxed);
    assert!(injected > 10, "only {injected} faults injected");
    let upload_errors: u64 = status.snapshot().replicas.iter().map(|r| r.errors).sum();
    assert!(upload_errors > 0, "no upload ever failed, so the test proved nothing");

    // Restore through a faulty client too: cut-off downloads and lost responses are retried, never accepted. About
    // one attempt in five fails, so with restore's retry budget every object still arrives.
    let restore_faults =
        FaultConfig { fail_before: 0.08, fail_after: 0.05, delay: 0.2, truncate: 0.08, ..FaultConfig::default() };
    let restoring = Arc::new(FaultyClient::new(clean.client.clone(), restore_faults));
    let faulty = Replica::new("s3", restoring.clone() as Arc<dyn ObjectClient>);
    let out = dir.path().join("restored.db");
    rt.block_on(async {
        let plan = restore::plan(&faulty, &Target::default()).await.expect("plan").expect("a backup");
        let opts = RestoreOptions { output: out.clone(), parallelism: 4, full_integrity_check: true };
        restore::restore(&faulty, &plan, &opts, &|_| {}).await.expect("restore");
    });
    assert!(restoring.injected.load(std::sync::atomic::Ordering::Relaxed) > 0, "the restore met no fault");
    let rows = workload::rows_in(&out);
    assert!(committed.lock().expect("lock").is_subset(&rows), "committed rows lost");
    assert_eq!(digest(&out), digest(&db));
}

/// A staged segment deleted from the spool while the store is down can never reach the replica. The queue must not
/// wait for it forever, and the replica must become restorable again: a new generation starts.
#[test]
fn a_segment_lost_from_the_spool_starts_a_new_generation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    workload::create(&db);
    let clean = backend::connect("file", &Backend::File { path: dir.path().join("replica") }).expect("file replica");
    let no_faults = FaultConfig { fail_before: 0.0, fail_after: 0.0, delay: 0.0, truncate: 0.0, ..Default::default() };
    let store = Arc::new(FaultyClient::new(clean.client.clone(), no_faults));
    let replica = Replica::new("file", store.clone() as Arc<dyn ObjectClient>);

    let rt = runtime();
    let cancel = CancellationToken::new();
    let replicator = DbReplicator::new(db_options(&db), vec![options(replica, Duration::from_millis(100))]);
    let status = replicator.status();
    let task = rt.spawn(replicator.run(cancel.clone()));
    let w = Workload::start(&db, Options { writers: 1, pause: Duration::from_millis(20), ..Options::default() });
    let uploaded = || status.snapshot().replicas[0].uploaded;
    eventually(Duration::from_secs(30), "the first uploads", || uploaded() >= 3);
    let first = status.snapshot().generation.clone().expect("a generation");

    store.set_down(true);
    let spooled = || -> Vec<std::path::PathBuf> {
        let wal =
            litecar_replicate::replicator::state_dir(&db).join("spool/generations").join(first.to_string()).join("wal");
        std::fs::read_dir(wal).map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect()).unwrap_or_default()
    };
    eventually(Duration::from_secs(30), "segments queued behind the outage", || spooled().len() >= 3);
    let mut queued = spooled();
    queued.sort();
    std::fs::remove_file(&queued[0]).expect("delete a queued segment");
    store.set_down(false);

    eventually(Duration::from_secs(30), "a new generation", || status.snapshot().generation.as_ref() != Some(&first));
    let at_new_generation = uploaded();
    eventually(Duration::from_secs(30), "uploads in the new generation", || uploaded() >= at_new_generation + 3);
    let committed = w.stop();
    cancel.cancel();
    rt.block_on(task).expect("join").expect("replicator");

    let out = dir.path().join("restored.db");
    rt.block_on(async {
        let plan = restore::plan(&clean, &Target::default()).await.expect("plan").expect("a backup");
        assert_ne!(plan.generation, first, "the latest backup is still the generation with the hole");
        let opts = RestoreOptions { output: out.clone(), parallelism: 4, full_integrity_check: true };
        restore::restore(&clean, &plan, &opts, &|_| {}).await.expect("restore");
    });
    assert!(committed.lock().expect("lock").is_subset(&workload::rows_in(&out)), "committed rows lost");
    assert_eq!(digest(&out), digest(&db));
}

/// A replica emptied while litecar was stopped, and one added to the configuration since, hold no snapshot of the
/// generation litecar goes on with. Segments alone cannot be restored: both get a new generation, before anything
/// more is written, and both restore every committed transaction.
#[test]
fn replicas_without_a_snapshot_of_the_generation_get_a_new_one_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    workload::create(&db);
    let replica_at =
        |name: &str| backend::connect("file", &Backend::File { path: dir.path().join(name) }).expect("file replica");
    let rt = runtime();
    let start = |replicas: Vec<Replica>| {
        let cancel = CancellationToken::new();
        let replicas = replicas.into_iter().map(|r| options(r, Duration::from_millis(100))).collect();
        let replicator = DbReplicator::new(db_options(&db), replicas);
        let status = replicator.status();
        (cancel.clone(), rt.spawn(replicator.run(cancel)), status)
    };
    let latest = |replica: &Replica| rt.block_on(restore::plan(replica, &Target::default())).expect("plan");

    let (cancel, task, status) = start(vec![replica_at("a")]);
    let w = Workload::start(&db, Options { writers: 1, pause: Duration::from_millis(20), ..Options::default() });
    eventually(Duration::from_secs(30), "the first uploads", || status.snapshot().replicas[0].uploaded >= 3);
    let mut committed = w.stop().lock().expect("lock").clone();
    cancel.cancel();
    rt.block_on(task).expect("join").expect("replicator");
    let first = status.snapshot().generation.clone().expect("a generation");
    std::fs::remove_dir_all(dir.path().join("a")).expect("empty replica a");

    let (cancel, task, status) = start(vec![replica_at("a"), replica_at("b")]);
    for name in ["a", "b"] {
        eventually(Duration::from_secs(30), &format!("a backup in replica {name} without new writes"), || {
            latest(&replica_at(name)).is_some_and(|plan| plan.generation != first)
        });
    }
    let more = Options { writers: 1, first_writer: 1, pause: Duration::from_millis(20), ..Options::default() };
    let w = Workload::start(&db, more);
    let uploaded = || status.snapshot().replicas.iter().map(|r| r.uploaded).min().unwrap_or(0);
    let at_restart = uploaded();
    eventually(Duration::from_secs(30), "uploads after the restart", || uploaded() >= at_restart + 3);
    committed.extend(w.stop().lock().expect("lock").iter().cloned());
    cancel.cancel();
    rt.block_on(task).expect("join").expect("replicator");

    for name in ["a", "b"] {
        let replica = replica_at(name);
        let plan = latest(&replica).expect("a backup");
        let out = dir.path().join(format!("restored-{name}.db"));
        let opts = RestoreOptions { output: out.clone(), parallelism: 4, full_integrity_check: true };
        rt.block_on(restore::restore(&replica, &plan, &opts, &|_| {})).expect("restore");
        assert!(committed.is_subset(&workload::rows_in(&out)), "committed rows missing from replica {name}");
        assert_eq!(digest(&out), digest(&db), "replica {name}");
    }
}

/// At 10 transactions a second with `sync-interval: 1s`, about one PUT a second and no LIST; nothing while idle.
#[test]
fn requests_are_few_and_none_while_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    workload::create(&db);
    let replica = s3_replica(&format!("economy{:08x}", rand::random::<u32>()));
    let ops = replica.ops.clone();
    let rt = runtime();
    let cancel = CancellationToken::new();
    let task = rt
        .spawn(DbReplicator::new(db_options(&db), vec![options(replica, Duration::from_secs(1))]).run(cancel.clone()));
    std::thread::sleep(Duration::from_secs(3));
    let counts = || ops.counts().iter().map(|(_, n)| *n).collect::<Vec<_>>();

    let before_idle = counts();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(counts(), before_idle, "requests while the database was idle (PUT, GET, LIST, DELETE)");

    let c = litecar_e2e::app_connection(&db);
    for i in 0..60 {
        c.execute("INSERT INTO events (writer, seq, payload) VALUES (1, ?1, x'01')", [i]).expect("insert");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let after = counts();
    let puts = after[0] - before_idle[0];
    assert!((3..=9).contains(&puts), "{puts} PUTs for 6 s of writes at 10 tx/s with sync-interval 1s");
    assert_eq!(after[2], before_idle[2], "LIST requests during steady replication");
    assert_eq!(after[1], before_idle[1], "GET requests during replication");
    cancel.cancel();
    rt.block_on(task).expect("join").expect("replicator");
}

fn config_with(dir: &std::path::Path, replica: &str) -> std::path::PathBuf {
    let db = dir.join("app.db");
    workload::create(&db);
    let cfg = dir.join("c.yml");
    std::fs::write(&cfg, format!("dbs:\n  - path: {}\n    replicas:\n      - {replica}\n", db.display()))
        .expect("write");
    cfg
}

#[test]
fn missing_bucket_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config_with(
        dir.path(),
        &format!(
            "url: s3://no-such-bucket-{:08x}/app\n        endpoint: {}\n        access-key-id: test\n        secret-access-key: test",
            rand::random::<u32>(),
            emulators::s3_endpoint()
        ),
    );
    let started = std::time::Instant::now();
    let o = litecar(&["replicate", "-config", cfg.to_str().expect("utf8")], dir.path());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("s3://no-such-bucket-") && err.contains("NoSuchBucket"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "a permanent error was retried for {:?}", started.elapsed());
}

#[test]
fn wrong_credentials_are_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let container = format!("creds{:08x}", rand::random::<u32>());
    emulators::create_azure_container(&container);
    let cfg = config_with(
        dir.path(),
        &format!(
            "url: abs://{}@{container}/app\n        endpoint: {}\n        account-key: {}",
            emulators::AZURITE_ACCOUNT,
            emulators::azure_endpoint(),
            "d3JvbmcgcGFzc3dvcmQgd3JvbmcgcGFzc3dvcmQgd3JvbmcgcGFzc3dvcmQ="
        ),
    );
    let started = std::time::Instant::now();
    let o = litecar(&["replicate", "-config", cfg.to_str().expect("utf8")], dir.path());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&format!("abs://{}@{container}/app", emulators::AZURITE_ACCOUNT)), "{err}");
    assert!(!err.contains("d3JvbmcgcGFzc3dvcmQ"), "the key leaked into the error: {err}");
    assert!(started.elapsed() < Duration::from_secs(30), "a permanent error was retried for {:?}", started.elapsed());
}
