//! Read replicas end to end: a writer replicating with the real `litecar replicate` to a file replica and to the
//! S3 emulator, `litecar follow` processes keeping copies of it, and readers in this process checking, the whole
//! time, that a copy never shows a half-applied transaction nor fails a read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use litecar_e2e::bank::{self, Bank};
use litecar_e2e::{Proc, digest, emulators, eventually, litecar, litecar_bin, stderr};

struct Env {
    dir: tempfile::TempDir,
    bucket: String,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir"), bucket: String::new() }
    }
    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }
    fn file_url(&self) -> String {
        format!("file://{}", self.path("replica").display())
    }
    fn s3_replica(&self) -> String {
        format!(
            "      - url: s3://{}/app\n        endpoint: {}\n        access-key-id: test\n        secret-access-key: test\n",
            self.bucket,
            emulators::s3_endpoint()
        )
    }
    /// `litecar replicate` of app.db to the file replica, and to S3 when `s3`.
    /// The application's database with the bank workload committing and a writer replicating it (to S3 too when
    /// `s3`), once the first commits are in.
    fn start_bank(&self, s3: bool, options: bank::Options) -> (PathBuf, Proc, Bank) {
        let db = self.path("app.db");
        bank::create(&db);
        let writer = self.start_writer(s3);
        let bank = Bank::start(&db, options);
        eventually(Duration::from_secs(30), "the first commits", || bank.committed() > 20);
        (db, writer, bank)
    }

    fn start_writer(&self, s3: bool) -> Proc {
        let cfg = self.path("writer.yml");
        let mut text = format!(
            "dbs:\n  - path: {}\n    replicas:\n      - url: {}\n",
            self.path("app.db").display(),
            self.file_url()
        );
        if s3 {
            text.push_str(&self.s3_replica());
        }
        std::fs::write(&cfg, text).expect("write config");
        Proc::spawn(
            &litecar_bin(),
            &["replicate", "-config", cfg.to_str().expect("utf8")],
            self.dir.path(),
            &self.path("writer.log"),
        )
    }
    fn follow(&self, name: &str, args: &[&str]) -> Proc {
        let out = self.path(name);
        let mut all = vec!["follow", "-o", out.to_str().expect("utf8")];
        all.extend_from_slice(args);
        Proc::spawn(&litecar_bin(), &all, self.dir.path(), &self.path(&format!("{name}.log")))
    }
    /// A follower of the S3 replica, by config file.
    fn follow_s3(&self, name: &str, addr: Option<u16>) -> Proc {
        let cfg = self.path(&format!("{name}.yml"));
        let mut text = format!(
            "follow:\n  - path: {}\n    poll-interval: 200ms\n{}",
            self.path(name).display(),
            self.s3_replica().replacen("      - url", "    url", 1).replace("\n        ", "\n    ")
        );
        if let Some(port) = addr {
            text = format!("addr: 127.0.0.1:{port}\n{text}");
        }
        std::fs::write(&cfg, text).expect("write config");
        Proc::spawn(
            &litecar_bin(),
            &["follow", "-config", cfg.to_str().expect("utf8")],
            self.dir.path(),
            &self.path(&format!("{name}.log")),
        )
    }
}

/// Readers of a follower's copy, each checking the invariant in a loop until stopped.
struct Readers {
    stop: Arc<AtomicBool>,
    checks: Arc<AtomicU64>,
    handles: Vec<JoinHandle<Vec<String>>>,
}

impl Readers {
    fn start(paths: &[PathBuf]) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let checks = Arc::new(AtomicU64::new(0));
        let handles = paths
            .iter()
            .map(|p| {
                let (p, stop, checks) = (p.clone(), stop.clone(), checks.clone());
                std::thread::spawn(move || {
                    let mut problems = vec![];
                    // One connection for the whole run: its cached schema and pages must follow the copy along.
                    let conn = bank::reader(&p);
                    while !stop.load(Ordering::Relaxed) {
                        if let Err(e) = bank::check(&conn) {
                            problems.push(format!("{}: {e}", p.display()));
                        }
                        checks.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    problems
                })
            })
            .collect();
        Self { stop, checks, handles }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let problems: Vec<String> = self.handles.into_iter().flat_map(|h| h.join().expect("reader")).collect();
        assert!(
            problems.is_empty(),
            "readers saw {} problems, first: {:?}",
            problems.len(),
            &problems[..problems.len().min(5)]
        );
        self.checks.load(Ordering::Relaxed)
    }
}

fn integrity_ok(path: &Path) {
    let c = bank::reader(path);
    let r: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    assert_eq!(r, "ok", "{}", path.display());
}

fn wait_equal(writer: &Path, copy: &Path, limit: Duration) {
    let want = digest(writer);
    let mut last = String::new();
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        last = digest(copy);
        if last == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{} never caught up with the writer: {last} vs {want}", copy.display());
}

fn wait_for_copy(path: &Path) {
    eventually(Duration::from_secs(60), "the follower's first copy", || path.exists());
}

/// The whole story on one writer: two followers (file replica and S3) with readers on both, a mixed workload, the
/// replicator killed while the application truncates its WAL (a new generation), a follower killed and restarted.
#[test]
fn followers_track_the_writer_through_generations_and_kills_without_readers_seeing_a_torn_state() {
    let mut env = Env::new();
    env.bucket = format!("follow-{:08x}", rand::random::<u32>());
    emulators::create_s3_bucket(&env.bucket);
    let (db, mut writer, bank) = env.start_bank(true, bank::Options::default());

    let url = env.file_url();
    let mut from_file = env.follow("file-copy.db", &[&url]);
    let metrics_port = litecar_e2e::free_port();
    let mut from_s3 = env.follow_s3("s3-copy.db", Some(metrics_port));
    let (file_copy, s3_copy) = (env.path("file-copy.db"), env.path("s3-copy.db"));
    wait_for_copy(&file_copy);
    wait_for_copy(&s3_copy);
    let readers = Readers::start(&[file_copy.clone(), s3_copy.clone()]);
    eventually(Duration::from_secs(60), "a multi-megabyte transaction", || bank.committed() > 320);

    // The replicator dies while the application truncates its WAL: the restarted one starts a new generation.
    writer.kill9();
    std::thread::sleep(Duration::from_millis(1500));
    let mut writer = env.start_writer(true);
    let generations = || std::fs::read_dir(env.path("replica/generations")).map_or(0, |d| d.count());
    eventually(Duration::from_secs(30), "a second generation", || generations() >= 2);

    // The file follower dies and comes back: it resumes from its cursor.
    from_file.kill9();
    let before = bank.committed();
    eventually(Duration::from_secs(30), "more commits", || bank.committed() > before + 50);
    let mut from_file = env.follow("file-copy.db", &[&url]);
    std::thread::sleep(Duration::from_secs(2));

    bank.stop();
    wait_equal(&db, &file_copy, Duration::from_secs(30));
    wait_equal(&db, &s3_copy, Duration::from_secs(30));
    let checks = readers.stop();
    assert!(checks > 100, "readers made only {checks} checks");
    integrity_ok(&file_copy);
    integrity_ok(&s3_copy);

    let log = std::fs::read_to_string(env.path("file-copy.db.log")).expect("log");
    assert!(log.contains("resuming from the copy's last applied position"), "no resume:\n{log}");
    // The follower's span names the database and the replica on each of its events.
    let resumed = log.lines().find(|l| l.contains("resuming from")).expect("the resume line");
    assert!(resumed.contains(file_copy.to_str().expect("utf8")) && resumed.contains(&url), "{resumed}");
    let (status, body) = litecar_e2e::http_get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    for name in [
        "litecar_follow_lag_seconds",
        "litecar_follow_transactions_applied_total",
        "litecar_follow_generation_switches_total",
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    let switches = body
        .lines()
        .find(|l| l.starts_with("litecar_follow_generation_switches_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok());
    assert!(switches.is_some_and(|s| s >= 1.0), "no generation switch counted:\n{body}");
    assert_eq!(litecar_e2e::http_get(metrics_port, "/readyz").0, 200);

    for p in [&mut from_file, &mut from_s3, &mut writer] {
        assert!(p.terminate().success(), "exit: {}", p.log_text());
    }
}

/// Writes made to a follower's copy by someone else are noticed and undone by a rebuild from the replica.
#[test]
fn a_copy_written_by_someone_else_is_rebuilt() {
    let env = Env::new();
    let db = env.path("app.db");
    bank::create(&db);
    let mut writer = env.start_writer(false);
    let bank = Bank::start(&db, bank::Options { big_every: None, truncate_every: None, ..Default::default() });
    let url = env.file_url();
    let mut follower = env.follow("copy.db", &[&url]);
    let copy = env.path("copy.db");
    wait_for_copy(&copy);
    std::thread::sleep(Duration::from_millis(500));
    {
        let c = litecar_e2e::app_connection(&copy);
        c.execute("UPDATE accounts SET balance = balance + 1000 WHERE id = 1", []).expect("foreign write");
    }
    eventually(Duration::from_secs(20), "the rebuild log line", || {
        follower.log_text().contains("written by another process; rebuilding it from the replica")
    });
    bank.stop();
    wait_equal(&db, &copy, Duration::from_secs(90));
    bank::check(&bank::reader(&copy)).expect("invariant after the rebuild");
    follower.terminate();
    writer.terminate();
}

/// Bad input: a follower's output that cannot be written, a file there that is not a copy, a corrupt segment, a
/// replica that disappears. Each gets an error naming what is wrong, and the last good copy stays readable.
#[test]
fn bad_input_names_the_object_or_path_and_keeps_the_last_good_copy() {
    let env = Env::new();
    let (db, mut writer, bank) =
        env.start_bank(false, bank::Options { big_every: None, truncate_every: None, ..Default::default() });
    let url = env.file_url();

    // Not writable: a file where the output's directory should be.
    std::fs::write(env.path("blocker"), "x").expect("blocker");
    let bad = env.path("blocker/copy.db");
    let o = litecar(&["follow", "-o", bad.to_str().expect("utf8"), &url], env.dir.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("blocker"), "{}", stderr(&o));

    // Not a copy: a database that the follower did not make is left alone.
    let other = env.path("other.db");
    bank::create(&other);
    let o = litecar(&["follow", "-o", other.to_str().expect("utf8"), &url], env.dir.path());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a follower's copy"), "{}", stderr(&o));

    // A segment corrupted in the replica: the follower reports it by name and the copy stays at its last good state.
    let mut follower = env.follow("copy.db", &[&url]);
    let copy = env.path("copy.db");
    wait_for_copy(&copy);
    bank.stop();
    wait_equal(&db, &copy, Duration::from_secs(90));
    let good = digest(&copy);
    assert!(follower.terminate().success());
    let c = litecar_e2e::app_connection(&db);
    let (corrupted, _, _) = corrupt_next_segment(&env.path("replica"), || {
        c.execute("UPDATE accounts SET touched = touched + 1 WHERE id = 2", []).expect("write");
    });
    let mut follower = env.follow("copy.db", &[&url]);
    eventually(Duration::from_secs(60), "the corrupt segment reported", || follower.log_text().contains(&corrupted));
    assert_eq!(digest(&copy), good, "the copy moved past a corrupt segment");
    bank::check(&bank::reader(&copy)).expect("the last good copy is readable");

    // The replica disappears: the copy stays readable and the follower keeps running.
    writer.terminate();
    std::fs::remove_dir_all(env.path("replica")).expect("remove replica");
    std::thread::sleep(Duration::from_secs(2));
    bank::check(&bank::reader(&copy)).expect("readable without its replica");
    assert!(follower.terminate().success());
}

/// Write to the database until a new segment appears in the replica, then corrupt it; returns its name, its path and
/// its content before.
fn corrupt_next_segment(replica: &Path, mut write: impl FnMut()) -> (String, PathBuf, Vec<u8>) {
    let list = || -> Vec<PathBuf> {
        let mut out = vec![];
        for g in std::fs::read_dir(replica.join("generations")).into_iter().flatten().flatten() {
            for s in std::fs::read_dir(g.path().join("wal")).into_iter().flatten().flatten() {
                out.push(s.path());
            }
        }
        out
    };
    let before = list();
    for _ in 0..200 {
        write();
        std::thread::sleep(Duration::from_millis(50));
        if let Some(new) = list().into_iter().find(|p| !before.contains(p)) {
            let original = std::fs::read(&new).expect("segment");
            let mut bytes = original.clone();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            std::fs::write(&new, bytes).expect("corrupt");
            let name = new.file_name().expect("name").to_string_lossy().into_owned();
            return (name, new, original);
        }
    }
    panic!("no new segment appeared");
}

/// /readyz follows the follower: not ready, naming the segment, while the replica's next segment cannot be applied;
/// ready again once it is applied and the copy has caught up.
#[test]
fn readiness_turns_false_while_the_follower_is_stuck_and_true_once_caught_up() {
    let env = Env::new();
    let (db, mut writer, bank) =
        env.start_bank(false, bank::Options { big_every: None, truncate_every: None, ..Default::default() });
    bank.stop();
    let metrics_port = litecar_e2e::free_port();
    let (cfg, copy) = (env.path("follower.yml"), env.path("copy.db"));
    std::fs::write(
        &cfg,
        format!("addr: 127.0.0.1:{metrics_port}\nfollow:\n  - path: {}\n    url: {}\n", copy.display(), env.file_url()),
    )
    .expect("config");
    let follow = || {
        Proc::spawn(
            &litecar_bin(),
            &["follow", "-config", cfg.to_str().expect("utf8")],
            env.dir.path(),
            &env.path("f.log"),
        )
    };
    let ready = || litecar_e2e::http_get(metrics_port, "/readyz");
    let mut follower = follow();
    eventually(Duration::from_secs(60), "the follower ready", || ready().0 == 200);
    assert!(follower.terminate().success());

    let c = litecar_e2e::app_connection(&db);
    let (name, segment, original) = corrupt_next_segment(&env.path("replica"), || {
        c.execute("UPDATE accounts SET touched = touched + 1 WHERE id = 2", []).expect("write");
    });
    let mut follower = follow();
    eventually(Duration::from_secs(60), "not ready, naming the segment", || {
        let (status, body) = ready();
        status == 503 && body.contains(&name) && body.contains(copy.to_str().expect("utf8"))
    });
    std::fs::write(&segment, original).expect("repair the segment");
    eventually(Duration::from_secs(60), "ready again", || ready().0 == 200);
    wait_equal(&db, &copy, Duration::from_secs(30));
    assert!(follower.terminate().success());
    assert!(writer.terminate().success());
}

/// litecar's REST API over a follower's copy serves reads and refuses writes with 405 and a JSON error.
#[test]
fn the_rest_api_over_a_follower_is_read_only() {
    let env = Env::new();
    let db = env.path("app.db");
    bank::create(&db);
    let mut writer = env.start_writer(false);
    let (rest_port, metrics_port) = (litecar_e2e::free_port(), litecar_e2e::free_port());
    let cfg = env.path("follower.yml");
    let copy = env.path("copy.db");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{metrics_port}\nfollow:\n  - path: {}\n    url: {}\nrest:\n  addr: 127.0.0.1:{rest_port}\n  \
             auth: none\n  allowed-tables: [accounts]\n",
            copy.display(),
            env.file_url()
        ),
    )
    .expect("config");
    let mut follower = Proc::spawn(
        &litecar_bin(),
        &["follow", "-config", cfg.to_str().expect("utf8")],
        env.dir.path(),
        &env.path("f.log"),
    );
    eventually(Duration::from_secs(30), "the follower ready", || {
        litecar_e2e::http_get(metrics_port, "/readyz").0 == 200
    });
    let (status, body) = litecar_e2e::http_get(rest_port, "/accounts?id=eq.1&select=balance");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&bank::INITIAL_BALANCE.to_string()), "{body}");
    let (status, body) = http_post(rest_port, "/accounts", r#"{"id": 9999, "balance": 1}"#);
    assert_eq!(status, 405, "{body}");
    assert!(body.contains("read replica"), "{body}");
    assert!(follower.terminate().success());
    assert!(writer.terminate().success());
}

fn http_post(port: u16, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default())
}

/// A store that takes connections and never answers: SIGTERM ends a follower and a restore promptly all the same,
/// the restore saying why, writing no output and leaving nothing behind.
#[test]
fn sigterm_ends_a_follower_and_a_restore_promptly_while_the_store_never_answers() {
    let env = Env::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = vec![];
        for c in listener.incoming().flatten() {
            held.push(c);
        }
    });
    let replica = format!(
        "url: s3://silent/app\n    endpoint: http://127.0.0.1:{port}\n    region: us-east-1\n    access-key-id: x\n    \
         secret-access-key: x\n"
    );
    let prompt_exit = |p: &mut Proc, what: &str| {
        // Long enough to be waiting on the store.
        std::thread::sleep(Duration::from_secs(2));
        let started = std::time::Instant::now();
        p.signal(nix::sys::signal::Signal::SIGTERM);
        let status = p.wait_timeout(Duration::from_secs(30));
        let took = started.elapsed();
        assert!(took < Duration::from_secs(3), "{what} took {took:?} to end after SIGTERM:\n{}", p.log_text());
        status
    };

    let cfg = env.path("follower.yml");
    std::fs::write(&cfg, format!("follow:\n  - path: {}\n    {replica}", env.path("copy.db").display())).expect("cfg");
    let mut follower = Proc::spawn(
        &litecar_bin(),
        &["follow", "-config", cfg.to_str().expect("utf8")],
        env.dir.path(),
        &env.path("f.log"),
    );
    let status = prompt_exit(&mut follower, "the follower");
    assert!(status.success(), "{}", follower.log_text());

    let (cfg, db, out) = (env.path("writer.yml"), env.path("app.db"), env.path("out/restored.db"));
    let replica = replica.replace("\n    ", "\n        ");
    std::fs::write(&cfg, format!("dbs:\n  - path: {}\n    replicas:\n      - {replica}", db.display())).expect("cfg");
    let mut restore =
        Proc::spawn(&litecar_bin(), &litecar_e2e::restore_args(&cfg, &out, &db), env.dir.path(), &env.path("r.log"));
    let status = prompt_exit(&mut restore, "the restore");
    assert!(!status.success(), "an interrupted restore must fail");
    let log = restore.log_text();
    assert!(log.contains("restore interrupted by SIGTERM; the output was not written"), "{log}");
    assert!(!out.exists());
    let left = std::fs::read_dir(env.path("out")).map_or(0, |d| d.count());
    assert_eq!(left, 0, "the restore left files behind");
}
