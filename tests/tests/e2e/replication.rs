//! Replication end to end: the real `litecar` binary, real SQLite files written concurrently, processes killed at
//! random, point-in-time restore.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{Proc, digest, eventually, litecar, litecar_bin, row_count, stderr};
use rand::RngExt;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir") }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn db(&self) -> PathBuf {
        self.path("app.db")
    }
    fn replica_url(&self) -> String {
        format!("file://{}", self.path("replica").display())
    }
    /// A config for app.db with a file replica; `extra_db` lines go under the database entry.
    fn config(&self, extra_db: &str) -> PathBuf {
        let cfg = self.path("litecar.yml");
        let text = format!(
            "dbs:\n  - path: {}\n{extra_db}    replicas:\n      - url: {}\n",
            self.db().display(),
            self.replica_url()
        );
        std::fs::write(&cfg, text).expect("write config");
        cfg
    }
    fn start(&self, cfg: &Path) -> Proc {
        Proc::spawn(
            &litecar_bin(),
            &["replicate", "-config", cfg.to_str().expect("utf8")],
            self.dir.path(),
            &self.path("litecar.log"),
        )
    }
    fn restore(&self, out: &str, extra: &[&str]) -> PathBuf {
        let out_path = self.path(out);
        let url = self.replica_url();
        let mut args = vec!["restore", "-o", out_path.to_str().expect("utf8")];
        args.extend_from_slice(extra);
        args.push(&url);
        let o = litecar(&args, self.dir.path());
        assert!(o.status.success(), "restore {extra:?} failed: {}", stderr(&o));
        out_path
    }
    fn segment_indexes(&self) -> Vec<u32> {
        let mut out = vec![];
        let gens = self.path("replica/generations");
        for g in std::fs::read_dir(gens).into_iter().flatten().flatten() {
            for f in std::fs::read_dir(g.path().join("wal")).into_iter().flatten().flatten() {
                if let Some(pos) =
                    litecar_replicate::test_utils::layout::parse_wal_segment_file_name(&f.file_name().to_string_lossy())
                {
                    out.push(pos.index);
                }
            }
        }
        out
    }
}

/// Several writers with mixed transaction sizes and the application's own TRUNCATE checkpoints, while litecar
/// checkpoints too: the restore equals the source.
#[test]
fn concurrent_writers_restore_equals_source() {
    let env = Env::new();
    workload::create(&env.db());
    // Past 200 frames litecar restarts the WAL itself (under its write lock), beside the application's restarts:
    // with four writers that never pause, on a loaded machine, the application's own TRUNCATE (busy timeout 100 ms)
    // may not get through.
    let cfg = env.config(
        "    min-checkpoint-page-count: 100\n    max-checkpoint-page-count: 200\n    checkpoint-interval: 1s\n",
    );
    let mut lc = env.start(&cfg);
    let w = Workload::start(&env.db(), Options { writers: 4, ..Default::default() });
    std::thread::sleep(Duration::from_secs(6));
    let committed = w.stop();
    assert!(committed.lock().expect("lock").len() > 500, "the workload wrote too little to mean anything");
    let status = lc.terminate();
    assert!(status.success(), "litecar exit {status:?}; log:\n{}", lc.log_text());

    let restored = env.restore("restored.db", &[]);
    assert_eq!(digest(&restored), digest(&env.db()), "log:\n{}", lc.log_text());
    // The application's TRUNCATE checkpoints complete now that litecar steps aside for them, and each restart is
    // followed in the same generation.
    let generations = std::fs::read_dir(env.path("replica/generations")).expect("generations").count();
    assert_eq!(generations, 1, "replication restarted with a new generation; log:\n{}", lc.log_text());
    assert!(env.segment_indexes().iter().any(|i| *i > 0), "no checkpoint restarted the WAL; log:\n{}", lc.log_text());
}

/// `kill -9` of litecar at random moments during heavy writes, restarting it each time: nothing committed is lost.
#[test]
fn kill9_of_litecar_loses_no_committed_transaction() {
    let env = Env::new();
    workload::create(&env.db());
    let cfg = env.config("    min-checkpoint-page-count: 200\n");
    let w = Workload::start(&env.db(), Options::default());
    let mut rng = rand::rng();
    for _ in 0..5 {
        let mut lc = env.start(&cfg);
        std::thread::sleep(Duration::from_millis(rng.random_range(150..900)));
        lc.kill9();
    }
    let mut lc = env.start(&cfg);
    std::thread::sleep(Duration::from_millis(500));
    let committed = w.stop();
    assert!(lc.terminate().success(), "log:\n{}", lc.log_text());

    let restored = env.restore("restored.db", &[]);
    let rows = workload::rows_in(&restored);
    let missing: Vec<_> = committed.lock().expect("lock").difference(&rows).take(5).copied().collect();
    assert!(missing.is_empty(), "committed rows missing from the restore, e.g. {missing:?}; log:\n{}", lc.log_text());
    assert_eq!(digest(&restored), digest(&env.db()));
}

/// The application killed in the middle of a large transaction (whose pages spilled into the WAL): the
/// uncommitted frames are never shipped, and everything committed is.
#[test]
fn app_killed_mid_transaction() {
    let env = Env::new();
    workload::create(&env.db());
    let cfg = env.config("");
    let mut lc = env.start(&cfg);
    let w = Workload::start(&env.db(), Options { app_truncate_every: None, ..Default::default() });

    let mut app = std::process::Command::new("sqlite3")
        .arg(env.db())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sqlite3 (Debian package sqlite3) runs");
    {
        use std::io::Write;
        let stdin = app.stdin.as_mut().expect("stdin");
        // A transaction far larger than the page cache, so SQLite spills uncommitted frames into the WAL.
        writeln!(stdin, ".timeout 30000\nPRAGMA cache_size = 50;\nBEGIN IMMEDIATE;").expect("write");
        for i in 0..300 {
            writeln!(stdin, "INSERT INTO events (writer, seq, payload) VALUES (99, {i}, randomblob(20000));")
                .expect("write");
        }
        stdin.flush().expect("flush");
    }
    std::thread::sleep(Duration::from_millis(1500));
    app.kill().expect("kill -9 the app");
    let _ = app.wait();
    std::thread::sleep(Duration::from_millis(500));
    let committed = w.stop();
    assert!(lc.terminate().success(), "log:\n{}", lc.log_text());

    let restored = env.restore("restored.db", &[]);
    let rows = workload::rows_in(&restored);
    assert!(rows.iter().all(|(writer, _)| *writer != 99), "rows of the killed transaction were restored");
    assert!(committed.lock().expect("lock").is_subset(&rows));
    assert_eq!(digest(&restored), digest(&env.db()));
}

/// Insert `n` rows in one transaction.
fn insert_batch(db: &Path, from: i64, n: i64) {
    let mut c = litecar_e2e::app_connection(db);
    let tx = c.transaction().expect("begin");
    for i in from..from + n {
        tx.execute("INSERT INTO events (writer, seq, payload) VALUES (1, ?1, x'01')", [i]).expect("insert");
    }
    tx.commit().expect("commit");
}

/// Point-in-time restore returns exactly the state at the requested time, and at every WAL index a state that
/// existed (each batch is one transaction, so 0, 10 or 20 rows), never going backwards.
#[test]
fn point_in_time_restore() {
    let env = Env::new();
    workload::create(&env.db());
    // Checkpoint (and so restart the WAL) after every sync with new frames: each batch lands in its own index.
    let cfg = env.config("    min-checkpoint-page-count: 1\n");
    let mut lc = env.start(&cfg);
    let latest_count = |name: &str| {
        let p = env.path(name);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
        let o = litecar(&["restore", "-o", p.to_str().expect("utf8"), &env.replica_url()], env.dir.path());
        if o.status.success() { row_count(&p, "events") } else { -1 }
    };

    insert_batch(&env.db(), 0, 10);
    eventually(Duration::from_secs(10), "batch A replicated", || latest_count("probe.db") == 10);
    std::thread::sleep(Duration::from_millis(1100));
    let t_a = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(1100));

    insert_batch(&env.db(), 10, 10);
    eventually(Duration::from_secs(10), "batch B replicated", || latest_count("probe.db") == 20);
    assert!(lc.terminate().success());

    let at_time = env.restore("at-time.db", &["-timestamp", &t_a]);
    assert_eq!(row_count(&at_time, "events"), 10, "restore at {t_a}");
    let mut indexes = env.segment_indexes();
    indexes.sort();
    indexes.dedup();
    let counts: Vec<i64> = indexes
        .iter()
        .map(|i| row_count(&env.restore(&format!("at-index-{i}.db"), &["-index", &format!("{i:x}")]), "events"))
        .collect();
    assert!(
        counts.iter().all(|c| [0, 10, 20].contains(c)),
        "a WAL index restored a state that never existed: {counts:?}"
    );
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(counts.contains(&10) && counts.last() == Some(&20), "{counts:?} over indexes {indexes:?}");
    assert_eq!(row_count(&env.restore("latest.db", &[]), "events"), 20);
}

/// The database does not exist yet when litecar starts: it waits, then replicates it.
#[test]
fn waits_for_the_database_to_exist() {
    let env = Env::new();
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", env.db().to_str().expect("utf8"), &env.replica_url()],
        env.dir.path(),
        &env.path("litecar.log"),
    );
    std::thread::sleep(Duration::from_millis(700));
    workload::create(&env.db());
    insert_batch(&env.db(), 0, 3);
    eventually(Duration::from_secs(10), "a snapshot", || env.path("replica/generations").exists());
    let status = lc.terminate();
    assert!(status.success(), "log:\n{}", lc.log_text());
    assert_eq!(row_count(&env.restore("r.db", &[]), "events"), 3);
}

/// `-exec`: the child's exit code is passed through, and what it wrote is replicated by the final sync.
#[test]
fn exec_passes_exit_code_and_syncs_last_writes() {
    let env = Env::new();
    workload::create(&env.db());
    let db = env.db();
    let script = format!(
        "sh -c 'sleep 0.5; sqlite3 -cmd \".timeout 10000\" {} \"INSERT INTO events (writer, seq, payload) VALUES (5, 1, zeroblob(1))\"; exit 3'",
        db.display()
    );
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", "-exec", &script, db.to_str().expect("utf8"), &env.replica_url()],
        env.dir.path(),
        &env.path("litecar.log"),
    );
    let status = lc.wait_timeout(Duration::from_secs(30));
    assert_eq!(status.code(), Some(3), "log:\n{}", lc.log_text());
    assert_eq!(row_count(&env.restore("r.db", &[]), "events"), 1, "log:\n{}", lc.log_text());
}

/// SIGTERM with a child: the signal is forwarded and its exit status (killed by SIGTERM: 143) comes back.
#[test]
fn sigterm_is_forwarded_to_the_exec_child() {
    let env = Env::new();
    workload::create(&env.db());
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", "-exec", "sleep 60", env.db().to_str().expect("utf8"), &env.replica_url()],
        env.dir.path(),
        &env.path("litecar.log"),
    );
    eventually(Duration::from_secs(10), "replication started", || env.path("replica/generations").exists());
    let status = lc.terminate();
    assert_eq!(status.code(), Some(143), "log:\n{}", lc.log_text());
}

/// The same replica restored twice gives the same bytes of data, and restoring leaves no temporary files.
#[test]
fn restore_leaves_no_temporary_files() {
    let env = Env::new();
    workload::create(&env.db());
    insert_batch(&env.db(), 0, 50);
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", env.db().to_str().expect("utf8"), &env.replica_url()],
        env.dir.path(),
        &env.path("litecar.log"),
    );
    eventually(Duration::from_secs(10), "replicated", || env.path("replica/generations").exists());
    assert!(lc.terminate().success());
    let out_dir = env.path("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let restored = env.restore("out/r.db", &["-parallelism", "3"]);
    let names: Vec<String> = std::fs::read_dir(&out_dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["r.db"], "restore left other files behind");
    assert_eq!(digest(&restored), digest(&env.db()));
}
