//! Bad input gives a clear error that names what is wrong, a non-zero exit, and no panic.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use litecar_e2e::workload;
use litecar_e2e::{Proc, eventually, litecar, litecar_bin, stderr};

/// A replica with two WAL indexes and several segments in the first.
fn replicated(dir: &Path) -> PathBuf {
    let db = dir.join("app.db");
    workload::create(&db);
    let (mut lc, replica) = replicating(dir, &db);
    let c = litecar_e2e::app_connection(&db);
    for i in 0..5 {
        c.execute("INSERT INTO events (writer, seq, payload) VALUES (1, ?1, randomblob(3000))", [i]).expect("insert");
        std::thread::sleep(Duration::from_millis(150));
    }
    eventually(Duration::from_secs(10), "segments", || segments(&replica).len() >= 3);
    assert!(lc.terminate().success());
    replica
}

fn segments(replica: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for g in std::fs::read_dir(replica.join("generations")).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(g.path().join("wal")).into_iter().flatten().flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

fn snapshot(replica: &Path) -> PathBuf {
    let g = std::fs::read_dir(replica.join("generations")).expect("gens").next().expect("a generation").expect("entry");
    g.path().join("snapshots/00000000.snapshot.lz4")
}

fn restore(dir: &Path, replica: &Path, out: &str) -> Output {
    litecar(&["restore", "-o", dir.join(out).to_str().expect("utf8"), &format!("file://{}", replica.display())], dir)
}

fn assert_fails_with(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1, got {:?}: {err}", o.status);
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "error does not mention {n:?}: {err}");
    }
}

#[test]
fn corrupt_segment_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = replicated(dir.path());
    let seg = segments(&replica).pop().expect("a segment");
    let mut bytes = std::fs::read(&seg).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&seg, bytes).expect("write");
    let name = seg.file_name().expect("name").to_string_lossy().into_owned();
    assert_fails_with(&restore(dir.path(), &replica, "out.db"), &["corrupt", &name]);
    assert!(!dir.path().join("out.db").exists(), "a failed restore must not leave an output database");
}

#[test]
fn truncated_snapshot_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = replicated(dir.path());
    let snap = snapshot(&replica);
    let len = std::fs::metadata(&snap).expect("stat").len();
    std::fs::OpenOptions::new().write(true).open(&snap).expect("open").set_len(len / 2).expect("truncate");
    assert_fails_with(&restore(dir.path(), &replica, "out.db"), &["corrupt", "00000000.snapshot.lz4"]);
}

#[test]
fn snapshot_that_is_not_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = replicated(dir.path());
    let mut w = litecar_replicate::test_utils::Lz4Writer::new(Vec::new());
    std::io::Write::write_all(&mut w, b"this is not a database at all, just text").expect("write");
    std::fs::write(snapshot(&replica), w.finish().expect("finish")).expect("write");
    assert_fails_with(&restore(dir.path(), &replica, "out.db"), &["not a SQLite database", "snapshot"]);
}

#[test]
fn missing_initial_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = replicated(dir.path());
    let first =
        segments(&replica).into_iter().find(|p| p.to_string_lossy().ends_with("_00000000.wal.lz4")).expect("first");
    std::fs::remove_file(&first).expect("rm");
    assert_fails_with(&restore(dir.path(), &replica, "out.db"), &["missing WAL segment", "00000000_00000000.wal.lz4"]);
}

#[test]
fn missing_middle_segment_is_a_gap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = replicated(dir.path());
    let segs = segments(&replica);
    std::fs::remove_file(&segs[1]).expect("rm");
    let o = restore(dir.path(), &replica, "out.db");
    let next = segs[2].file_name().expect("name").to_string_lossy().into_owned();
    assert_fails_with(&o, &[&next, "expected"]);
}

#[test]
fn no_backups() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    assert_fails_with(&restore(dir.path(), &empty, "out.db"), &["no backups found", "empty"]);
    // With -if-replica-exists a missing backup is not an error, for init containers on a first start.
    let o =
        litecar(&["restore", "-if-replica-exists", "-o", "out.db", &format!("file://{}", empty.display())], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!dir.path().join("out.db").exists());
}

#[test]
fn output_exists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let replica = replicated(dir.path());
    std::fs::write(dir.path().join("out.db"), b"keep me").expect("write");
    assert_fails_with(&restore(dir.path(), &replica, "out.db"), &["out.db", "already exists"]);
    assert_eq!(std::fs::read(dir.path().join("out.db")).expect("read"), b"keep me");
    let o = litecar(
        &["restore", "-if-db-not-exists", "-o", "out.db", &format!("file://{}", replica.display())],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(dir.path().join("out.db")).expect("read"), b"keep me");
}

#[test]
fn unreadable_replica_and_unwritable_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A replica "directory" that is a regular file.
    let not_dir = dir.path().join("file-not-dir");
    std::fs::write(&not_dir, b"x").expect("write");
    assert_fails_with(&restore(dir.path(), &not_dir, "out.db"), &["file-not-dir"]);

    let replica = replicated(dir.path());
    let o = litecar(&["restore", "-o", "/dev/null/out.db", &format!("file://{}", replica.display())], dir.path());
    assert_fails_with(&o, &["/dev/null"]);
}

#[test]
fn replicating_a_file_that_is_not_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("notes.db");
    std::fs::write(&db, "just some text, definitely not SQLite").expect("write");
    let o = litecar(&["replicate", db.to_str().expect("utf8"), "file://./replica"], dir.path());
    assert_fails_with(&o, &["notes.db", "not a SQLite database"]);
}

/// A running `litecar replicate` on `db`, with its replica and log in `dir`, once the first snapshot is out.
fn replicating(dir: &Path, db: &Path) -> (Proc, PathBuf) {
    let replica = dir.join("replica");
    let lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", db.to_str().expect("utf8"), &format!("file://{}", replica.display())],
        dir,
        &dir.join("litecar.log"),
    );
    eventually(Duration::from_secs(30), "the first snapshot", || replica.join("generations").exists());
    (lc, replica)
}

fn generations(replica: &Path) -> usize {
    std::fs::read_dir(replica.join("generations")).map_or(0, |d| d.count())
}

fn insert_rows(db: &Path, writer: i64) {
    let c = litecar_e2e::app_connection(db);
    for i in 0..5 {
        c.execute("INSERT INTO events (writer, seq, payload) VALUES (?1, ?2, randomblob(3000))", [writer, i])
            .expect("insert");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The database file and the given companions (`-wal`, `-shm`), as an application removes them.
fn remove_database(db: &Path, suffixes: &[&str]) {
    for suffix in suffixes {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}

/// `litecar restore` of `replica` into `out`, replacing any earlier output.
fn restore_into(dir: &Path, replica: &Path, out: &Path) -> Output {
    let _ = std::fs::remove_file(out);
    litecar(&["restore", "-o", out.to_str().expect("utf8"), &format!("file://{}", replica.display())], dir)
}

/// After litecar stopped: the replica restores to exactly what `db` holds.
fn assert_restores_to(dir: &Path, replica: &Path, db: &Path) {
    let out = dir.join("restored.db");
    let o = restore_into(dir, replica, &out);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(litecar_e2e::digest(&out), litecar_e2e::digest(db));
}

/// A directory with an application database and `litecar replicate` running on it.
fn replicated_app() -> (tempfile::TempDir, PathBuf, Proc, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    workload::create(&db);
    let (lc, replica) = replicating(dir.path(), &db);
    (dir, db, lc, replica)
}

/// Deleting the database under a running `litecar replicate` is reported by name and retried with backoff (not in a
/// busy loop). Once the application creates it again, litecar replicates the new file, in a new generation.
#[test]
fn a_deleted_database_is_reported_without_a_busy_loop_and_followed_once_recreated() {
    let (dir, db, mut lc, replica) = replicated_app();
    remove_database(&db, &["", "-wal", "-shm"]);
    std::thread::sleep(Duration::from_secs(3));
    let log = lc.log_text();
    let failures = log.lines().filter(|l| l.contains("sync failed")).count();
    assert!(
        log.contains(&format!("{} was deleted or replaced", db.display())),
        "the deletion is not reported by name:\n{log}"
    );
    // Backoff from 100 ms, doubling: at most about six attempts in three seconds.
    assert!((1..=8).contains(&failures), "{failures} failed syncs in 3 s:\n{log}");

    workload::create(&db);
    insert_rows(&db, 1);
    eventually(Duration::from_secs(30), "a generation for the new file", || generations(&replica) == 2);
    assert!(lc.terminate().success(), "{}", lc.log_text());
    assert_restores_to(dir.path(), &replica, &db);
}

/// A shutdown while the database is missing still exits 0 and keeps the replica as it was: restorable, and holding
/// what the deleted file had.
#[test]
fn shutting_down_while_the_database_is_missing_exits_cleanly() {
    let (dir, db, mut lc, replica) = replicated_app();
    insert_rows(&db, 1);
    let kept = dir.path().join("kept.db");
    litecar_e2e::app_connection(&db).execute("VACUUM INTO ?1", [kept.to_str().expect("utf8")]).expect("copy");
    let probe = dir.path().join("probe.db");
    eventually(Duration::from_secs(10), "every row in the replica", || {
        restore_into(dir.path(), &replica, &probe).status.success()
            && litecar_e2e::digest(&probe) == litecar_e2e::digest(&kept)
    });
    remove_database(&db, &["", "-wal", "-shm"]);
    eventually(Duration::from_secs(10), "the deletion noticed", || lc.log_text().contains("was deleted or replaced"));
    assert!(lc.terminate().success(), "{}", lc.log_text());
    assert_restores_to(dir.path(), &replica, &kept);
}

/// An application that swaps in another database file by rename (as it must: with the old WAL and shared memory
/// removed first) is followed: litecar lets go of the old file and replicates the new one in a new generation.
#[test]
fn a_database_replaced_by_rename_is_followed_in_a_new_generation() {
    let (dir, db, mut lc, replica) = replicated_app();
    insert_rows(&db, 1);
    let swapped_in = dir.path().join("swapped-in.db");
    workload::create(&swapped_in);
    insert_rows(&swapped_in, 2);
    remove_database(&db, &["-wal", "-shm"]);
    std::fs::rename(&swapped_in, &db).expect("swap the database in");

    insert_rows(&db, 3);
    eventually(Duration::from_secs(30), "a generation for the new file", || generations(&replica) == 2);
    assert!(lc.terminate().success(), "{}", lc.log_text());
    let log = lc.log_text();
    assert!(log.contains("replicating the database file now at the path"), "{log}");
    assert_restores_to(dir.path(), &replica, &db);
}

#[test]
fn bad_configs_name_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: &[(&str, &[&str])] = &[
        (
            "dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        retention: 3 days\n",
            &["3 days", "line 5"],
        ),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - name: r\n", &["line 4: dbs[0].replicas[0]", "url"]),
        ("dbs:\n  - path: /a.db\n    replicas:\n      - url: ftp://host/r\n", &["line 4", "ftp"]),
        ("dbs:\n  - path: [unclosed\n", &["line"]),
        ("logging:\n  level: loud\n", &["line 2: logging.level", "loud"]),
        (
            "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/p\n        endpoint: <ENDPOINT>\n",
            &["line 5: dbs[0].replicas[0].endpoint", "placeholder"],
        ),
    ];
    for (i, (text, needles)) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.yml"));
        std::fs::write(&cfg, text).expect("write");
        let o = litecar(&["replicate", "-config", cfg.to_str().expect("utf8")], dir.path());
        let mut all = vec![cfg.to_str().expect("utf8")];
        all.extend_from_slice(needles);
        assert_fails_with(&o, &all);
    }
    let o = litecar(&["replicate", "-config", "/nonexistent/litecar.yml"], dir.path());
    assert_fails_with(&o, &["/nonexistent/litecar.yml"]);
}

/// Litestream ignores keys it does not know, so real configs carry typos: a warning (naming line and the key
/// meant) by default, an error with -strict.
#[test]
fn unknown_keys_warn_and_strict_refuses_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.yml");
    let text = "dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        retension: 1h\n";
    std::fs::write(&cfg, text).expect("write");
    let o = litecar(&["databases", "-config", cfg.to_str().expect("utf8")], dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("line 5: unknown key `retension`") && stderr.contains("did you mean `retention`?"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains("/a.db"));
    let o = litecar(&["databases", "-strict", "-config", cfg.to_str().expect("utf8")], dir.path());
    assert_fails_with(&o, &["retension", "-strict"]);
}

#[test]
fn bad_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let o = litecar(&["restore", "-timestamp", "yesterday", "-o", "x.db", "file:///nowhere"], dir.path());
    assert_fails_with(&o, &["yesterday", "RFC 3339"]);
    let o = litecar(&["restore", "-index", "zz", "-o", "x.db", "file:///nowhere"], dir.path());
    assert_fails_with(&o, &["zz", "hexadecimal"]);
    let o = litecar(&["restore", "-generation", "../../etc", "-o", "x.db", "file:///nowhere"], dir.path());
    assert_fails_with(&o, &["../../etc", "generation"]);
    let o = litecar(&["restore", "file:///nowhere"], dir.path());
    assert_fails_with(&o, &["-o"]);
}
