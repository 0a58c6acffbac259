//! Whatever an application does with its own database, litecar never makes it wait: real SQLite applications
//! (`bench/sqlite_app.py`, Python's sqlite3, in their own processes) run their own TRUNCATE and RESTART checkpoints,
//! VACUUM, VACUUM INTO, long read transactions, journal-mode switches, `wal_autocheckpoint=0`, `synchronous=OFF`,
//! from several processes, beside `litecar replicate`; every application operation succeeds and the replica restores
//! to exactly the source, rows committed just before each application checkpoint included.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use litecar_e2e::{Proc, digest, eventually, free_port, http_get, litecar, litecar_bin, stderr};
use rand::{RngExt, SeedableRng};
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
    port: u16,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir"), port: free_port() }
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
    fn start_litecar(&self) -> Proc {
        self.start_litecar_with("")
    }
    /// [`Env::start_litecar`], with `db_keys` added to the database's configuration.
    fn start_litecar_with(&self, db_keys: &str) -> Proc {
        if !self.db().exists() {
            // The application's schema, in WAL mode, made by the application itself.
            finish(self.app(&["--seconds", "0", "--writers", "0", "--checkpoint", "none"]));
        }
        let cfg = self.path("litecar.yml");
        let text = format!(
            "addr: 127.0.0.1:{}\ndbs:\n  - path: {}\n{db_keys}    replicas:\n      - url: {}\n",
            self.port,
            self.db().display(),
            self.replica_url()
        );
        std::fs::write(&cfg, text).expect("write config");
        let lc = Proc::spawn(
            &litecar_bin(),
            &["replicate", "-config", cfg.to_str().expect("utf8")],
            self.dir.path(),
            &self.path("litecar.log"),
        );
        eventually(Duration::from_secs(20), "litecar's first sync", || self.metric("litestream_sync_count") >= 1.0);
        lc
    }
    /// The sum of a metric's samples (0 while litecar does not answer).
    fn metric(&self, name: &str) -> f64 {
        let (_, body) = http_get(self.port, "/metrics");
        body.lines()
            .filter(|l| l.split(['{', ' ']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
    /// Start the application; `args` are `bench/sqlite_app.py`'s options.
    fn app(&self, args: &[&str]) -> Child {
        Command::new("python3")
            .arg(app_script())
            .arg(self.db())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs")
    }
    fn restore(&self, out: &str) -> PathBuf {
        let out_path = self.path(out);
        let url = self.replica_url();
        let o = litecar(&["restore", "-o", out_path.to_str().expect("utf8"), &url], self.dir.path());
        assert!(o.status.success(), "restore failed: {}", stderr(&o));
        out_path
    }
    fn generations(&self) -> usize {
        std::fs::read_dir(self.path("replica/generations")).map_or(0, |d| d.count())
    }
    /// Stop litecar once it has copied everything, then check that the replica restores to exactly the source.
    fn assert_replica_equals_source(&self, mut lc: Proc) {
        // A last write of ours, so that the final sync has something to wait for on every path.
        rusqlite::Connection::open(self.db())
            .and_then(|c| c.execute_batch("PRAGMA busy_timeout=5000; CREATE TABLE IF NOT EXISTS done(x)"))
            .expect("final write");
        assert!(lc.terminate().success(), "litecar exits 0\n{}", lc.log_text());
        let restored = self.restore("restored.db");
        assert_eq!(digest(&restored), digest(&self.db()), "restored database differs from the source");
    }
}

fn app_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/sqlite_app.py")
}

/// Wait for the application and parse its JSON summary.
fn finish(app: Child) -> Value {
    let out = app.wait_with_output().expect("application runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "application failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("application summary {text:?}: {e}"))
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// No write failed, every checkpoint of the application succeeded (a checkpoint that waited out its busy timeout on
/// our read lock reports itself busy), and every other operation succeeded.
fn assert_app_never_failed(s: &Value) {
    assert_eq!(count(s, "write_errors"), 0, "write errors: {s}");
    assert_eq!(count(s, "checkpoints_ok"), count(s, "checkpoints"), "checkpoints that did not complete: {s}");
    for op in s["ops"].as_array().expect("ops") {
        assert!(op["error"].is_null(), "application operation failed: {op}");
    }
}

/// The small application of the stall report: two threads insert a row every 5 ms, and a TRUNCATE checkpoint every
/// 300 ms. Each checkpoint completes, litecar counts it, and it stays in one generation.
#[test]
fn application_truncate_checkpoints_complete_beside_litecar() {
    let env = Env::new();
    let lc = env.start_litecar();
    let s = finish(env.app(&["--seconds", "4", "--checkpoint", "TRUNCATE", "--checkpoint-every-ms", "300"]));
    assert_app_never_failed(&s);
    assert!(count(&s, "checkpoints") >= 3, "{s}");
    assert!(env.metric("litecar_app_checkpoints_observed_total") >= 1.0, "no application checkpoint was observed");
    assert!(env.metric("litecar_app_wait_seconds_count") >= 1.0);
    assert!(lc.log_text().contains("stepped aside for the application's checkpoint"), "{}", lc.log_text());
    env.assert_replica_equals_source(lc);
    assert_eq!(env.generations(), 1, "following the application's restarts needs no new generation");
}

/// RESTART leaves the old WAL's bytes in the file (TRUNCATE empties it): both are followed in one generation.
#[test]
fn application_restart_checkpoints_complete_beside_litecar() {
    let env = Env::new();
    let lc = env.start_litecar();
    let s = finish(env.app(&["--seconds", "3", "--checkpoint", "RESTART", "--checkpoint-every-ms", "250"]));
    assert_app_never_failed(&s);
    env.assert_replica_equals_source(lc);
    assert_eq!(env.generations(), 1, "following the application's restarts needs no new generation");
}

/// A mixed application in three processes: VACUUM, VACUUM INTO, long read transactions, updates and deletes, no
/// automatic checkpoints, synchronous=OFF, TRUNCATE checkpoints now and then.
#[test]
fn mixed_applications_in_several_processes_never_fail() {
    let env = Env::new();
    let lc = env.start_litecar();
    let apps: Vec<Child> = (0..3)
        .map(|i| {
            let (base, seed) = ((i * 10).to_string(), i.to_string());
            let checkpoint = if i == 0 { "TRUNCATE" } else { "none" };
            env.app(&[
                "--seconds",
                "4",
                "--writers",
                "1",
                "--every-ms",
                "3",
                "--writer-id-base",
                &base,
                "--seed",
                &seed,
                "--checkpoint",
                checkpoint,
                "--checkpoint-every-ms",
                "400",
                "--synchronous",
                "OFF",
                "--autocheckpoint",
                "0",
                "--ops",
                "vacuum,vacuum_into,long_read,update,delete",
                "--ops-every-ms",
                "700",
            ])
        })
        .collect();
    for app in apps {
        assert_app_never_failed(&finish(app));
    }
    env.assert_replica_equals_source(lc);
}

/// The application switches to journal_mode=DELETE and back. SQLite refuses to leave WAL mode while another
/// connection has the database open (at once, without its busy handler: "database is locked"), so beside litecar, as
/// beside any reader, the switch fails and the application stays in WAL mode; nothing else of the application fails,
/// and the replica stays exact.
#[test]
fn journal_mode_switches_are_refused_by_sqlite_and_harm_nothing() {
    let env = Env::new();
    let lc = env.start_litecar();
    let s = finish(env.app(&[
        "--seconds",
        "3",
        "--checkpoint",
        "TRUNCATE",
        "--ops",
        "journal_switch",
        "--ops-every-ms",
        "500",
    ]));
    let ops = s["ops"].as_array().expect("ops");
    assert!(!ops.is_empty(), "{s}");
    for op in ops {
        assert_eq!(op["error"], "journal_switch: database is locked", "{op}");
    }
    let mut rest = s.clone();
    rest["ops"] = Value::Array(vec![]);
    assert_app_never_failed(&rest);
    env.assert_replica_equals_source(lc);
    assert_eq!(env.generations(), 1, "following the application's restarts needs no new generation");
}

/// Property-style: random applications (operations, timings, checkpoint modes, processes) while litecar is killed
/// with SIGKILL and restarted at random moments. Every application operation succeeds and the replica restores to
/// exactly the source. Bounded in time; the seed is printed so that a failure can be replayed (`APP_SEED`).
#[test]
fn random_applications_with_litecar_killed_at_random() {
    let seed = std::env::var("APP_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| rand::rng().random());
    println!("APP_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let env = Env::new();
    let mut lc = env.start_litecar();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut round = 0;
    while Instant::now() < deadline {
        round += 1;
        let ops = ["vacuum", "vacuum_into", "long_read", "update", "delete"];
        let picked: Vec<&str> = ops.iter().copied().filter(|_| rng.random_bool(0.5)).collect();
        let apps: Vec<Child> = (0..rng.random_range(1..=3))
            .map(|i| {
                let mode = ["TRUNCATE", "RESTART", "PASSIVE", "FULL", "none"][rng.random_range(0..5)];
                let args: Vec<String> = [
                    "--seconds",
                    &format!("{:.2}", rng.random_range(1.0..3.0)),
                    "--writers",
                    &rng.random_range(1..=3).to_string(),
                    "--every-ms",
                    &rng.random_range(1..=10).to_string(),
                    "--checkpoint",
                    mode,
                    "--checkpoint-every-ms",
                    &rng.random_range(50..=600).to_string(),
                    "--ops",
                    &picked.join(","),
                    "--ops-every-ms",
                    &rng.random_range(200..=1000).to_string(),
                    "--synchronous",
                    ["OFF", "NORMAL", "FULL"][rng.random_range(0..3)],
                    "--autocheckpoint",
                    ["0", "100", "1000"][rng.random_range(0..3)],
                    "--writer-id-base",
                    &(round * 100 + i * 10).to_string(),
                    "--seed",
                    &rng.random::<u32>().to_string(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                env.app(&args.iter().map(String::as_str).collect::<Vec<_>>())
            })
            .collect();
        if rng.random_bool(0.6) {
            std::thread::sleep(Duration::from_millis(rng.random_range(100..1500)));
            lc.kill9();
            std::thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            lc = env.start_litecar();
        }
        for app in apps {
            let s = finish(app);
            // Writes and other operations never fail. A checkpoint may find another one running (the other
            // applications', or litecar's own PASSIVE one) and return at once without completing, as it would
            // without litecar; none waits out its busy timeout (5 s) on litecar's read lock.
            let log = || cooperation_log(&lc);
            assert_eq!(count(&s, "write_errors"), 0, "write errors: {s}\nlitecar:\n{}", log());
            for op in s["ops"].as_array().expect("ops") {
                assert!(op["error"].is_null(), "application operation failed: {op}\nlitecar:\n{}", log());
            }
            let slowest = s["checkpoint_max_ms"].as_f64().expect("checkpoint_max_ms");
            assert!(slowest < 2500.0, "a checkpoint waited {slowest} ms: {s}\nlitecar:\n{}", log());
        }
    }
    env.assert_replica_equals_source(lc);
}

/// What litecar logged of its cooperation with the applications lately, for a failure's message.
fn cooperation_log(lc: &Proc) -> String {
    let text = lc.log_text();
    let lines: Vec<&str> =
        text.lines().filter(|l| l.contains("WARN") || l.contains("ERROR") || l.contains("stepped aside")).collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// An application with a busy timeout of 0 fails at once whenever litecar holds the write lock. litecar checkpoints
/// every hundred frames or so here, and its checkpoints take no write lock while the application pauses between
/// writes (the application's own writer then restarts the WAL, which litecar follows in the same generation): every
/// write succeeds.
#[test]
fn application_without_busy_timeout_writes_beside_litecar_checkpoints() {
    let env = Env::new();
    let lc = env.start_litecar_with("    min-checkpoint-page-count: 100\n    checkpoint-interval: 1s\n");
    // The generation's start took the write lock, for its snapshot, before the application ran.
    let holds_before = env.metric("litecar_write_lock_holds_total");
    let s = finish(env.app(&[
        "--seconds",
        "4",
        "--busy-ms",
        "0",
        "--writers",
        "1",
        "--every-ms",
        "3",
        "--checkpoint",
        "none",
    ]));
    assert_app_never_failed(&s);
    assert!(count(&s, "writes") > 200, "the application wrote too little to mean anything: {s}");
    assert!(env.metric("litestream_checkpoint_count") >= 3.0, "litecar did not checkpoint during the run");
    assert_eq!(
        env.metric("litecar_write_lock_holds_total"),
        holds_before,
        "litecar took the write lock while the application paused between writes"
    );
    env.assert_replica_equals_source(lc);
    assert_eq!(env.generations(), 1, "following the application's restarts needs no new generation");
}

/// Past `max-checkpoint-page-count` frames litecar must have the WAL restarted, and an application without a busy
/// timeout still never meets litecar's write lock as long as it pauses between writes for as long as a checkpoint of
/// a few frames takes (two fsyncs; 100 ms leaves room for a loaded machine's): litecar checkpoints in rounds without
/// the write lock, each copying the few frames written during the last, until one ends between two commits; the
/// application's own writer then restarts the WAL. Several times the limit in frames pass through the WAL.
#[test]
fn application_without_busy_timeout_writing_past_the_wal_limit_never_fails() {
    let env = Env::new();
    let lc = env.start_litecar_with(
        "    min-checkpoint-page-count: 4\n    max-checkpoint-page-count: 16\n    checkpoint-interval: 1s\n",
    );
    let s = finish(env.app(&[
        "--seconds",
        "8",
        "--busy-ms",
        "0",
        "--writers",
        "1",
        "--every-ms",
        "100",
        "--checkpoint",
        "none",
    ]));
    assert_app_never_failed(&s);
    assert!(count(&s, "writes") > 64, "the application wrote too little to pass the WAL limit: {s}");
    let wal = std::fs::metadata(env.path("app.db-wal")).map_or(0, |m| m.len());
    assert!(wal <= 32 + 32 * (4096 + 24), "the WAL file grew to {wal} bytes");
    env.assert_replica_equals_source(lc);
    assert_eq!(env.generations(), 1, "following the application's restarts needs no new generation");
}

/// The application's long reads keep every checkpoint round from leaving the WAL fully checkpointed: once the WAL
/// holds `max-checkpoint-page-count` frames litecar takes the write lock, and each hold is counted and measured, for
/// an operator to see what the application waited on.
#[test]
fn write_lock_holds_under_wal_limit_pressure_are_counted_and_measured() {
    let env = Env::new();
    let lc = env.start_litecar_with(
        "    min-checkpoint-page-count: 20\n    max-checkpoint-page-count: 100\n    checkpoint-interval: 1s\n",
    );
    let holds_before = env.metric("litecar_write_lock_holds_total");
    let s = finish(env.app(&[
        "--seconds",
        "4",
        "--writers",
        "1",
        "--every-ms",
        "1",
        "--checkpoint",
        "none",
        "--ops",
        "long_read",
        "--ops-every-ms",
        "1000",
    ]));
    assert_app_never_failed(&s);
    assert!(count(&s, "writes") > 500, "the application wrote too little to pass the WAL limit: {s}");
    let holds = env.metric("litecar_write_lock_holds_total");
    assert!(holds > holds_before, "no hold of the write lock counted past the WAL limit ({holds})");
    assert_eq!(env.metric("litecar_write_lock_hold_seconds_count"), holds, "one measurement per hold");
    let held = env.metric("litecar_write_lock_hold_seconds_sum");
    assert!(held > 0.0 && held / holds < 1.0, "{holds} holds lasted {held} s in all");
    env.assert_replica_equals_source(lc);
    assert_eq!(env.generations(), 1, "the restarts under the write lock need no new generation");
}
