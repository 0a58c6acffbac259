//! The shipper against real SQLite files, driving the situations the daemon meets only by chance: torn WAL tails,
//! restarts it did not make, truncated WALs.

use std::io::Write;
use std::sync::Arc;

use litecar_replicate::CheckpointPolicy;
use litecar_replicate::test_utils::{Shipper, Spool, wal_path};
use rusqlite::Connection;

use crate::common;
use common::*;

#[test]
fn torn_tail_is_never_shipped() {
    let (dir, c, mut s) = setup();
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    let report = s.sync().expect("sync");
    assert!(report.bytes > 0);
    let shipped_to = s.position().expect("position").pos.offset;

    // A torn frame: right salts, garbage page, bad checksum; then a half-written frame.
    let wal = wal_path(&dir.path().join("a.db"));
    let bytes = std::fs::read(&wal).expect("wal");
    let frame_size = 24 + 4096;
    let mut torn = bytes[bytes.len() - frame_size..].to_vec();
    torn[100] ^= 0xff;
    let mut f = std::fs::OpenOptions::new().append(true).open(&wal).expect("open wal");
    f.write_all(&torn).expect("append");
    f.write_all(&torn[..1000]).expect("append half");
    drop(f);

    let report = s.sync().expect("sync");
    assert_eq!(report.bytes, 0, "a torn frame was shipped");
    assert_eq!(s.position().expect("position").pos.offset, shipped_to);
    assert!(report.new_generation.is_none());
}

#[test]
fn restart_made_by_the_application_is_followed_without_a_new_generation() {
    let (dir, c, mut s) = setup();
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    c.execute("INSERT INTO t VALUES (2)", []).expect("insert");
    s.sync().expect("sync");
    let before = s.position().expect("position").clone();
    drop(s);

    // While litecar is down: a commit it has not copied, a complete checkpoint, and a commit that restarts the
    // WAL. The uncopied commit survives only in the old WAL's tail, past what the new WAL has overwritten.
    c.execute("INSERT INTO t VALUES (3)", []).expect("insert");
    let (busy, log, done): (i64, i64, i64) = c
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("checkpoint");
    assert_eq!((busy, log), (0, done), "checkpoint incomplete");
    c.execute("INSERT INTO t VALUES (4)", []).expect("insert");

    let state = dir.path().join("state");
    let spool = Arc::new(Spool::open(state.join("spool"), 1).expect("spool"));
    let mut s = Shipper::open(&dir.path().join("a.db"), &state, spool, CheckpointPolicy::default()).expect("reopen");
    let report = s.sync().expect("sync");
    let after = s.position().expect("position");
    assert!(report.new_generation.is_none(), "followed the restart with a new generation");
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.pos.index, before.pos.index + 1);
    assert_eq!(restore_from_spool(dir.path()), vec![1, 2, 3, 4]);
}

#[test]
fn our_own_checkpoint_restarts_the_wal_in_the_same_generation() {
    let (dir, c, mut s) = setup();
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    s.sync().expect("sync");
    let before = s.position().expect("position").clone();
    c.execute("INSERT INTO t VALUES (2)", []).expect("insert");
    s.checkpoint(false, &mut Default::default()).expect("checkpoint");
    c.execute("INSERT INTO t VALUES (3)", []).expect("insert");
    let report = s.sync().expect("sync");
    let after = s.position().expect("position");
    assert!(report.new_generation.is_none());
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.pos.index, before.pos.index + 1);
    assert_eq!(restore_from_spool(dir.path()), vec![1, 2, 3]);
}

#[test]
fn a_wal_truncated_behind_our_back_starts_a_new_generation() {
    let (dir, c, mut s) = setup();
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    s.sync().expect("sync");
    let generation = s.position().expect("position").generation.clone();
    drop(s);

    // While litecar is not running: commits it never saw, then a TRUNCATE checkpoint, then more commits.
    c.execute("INSERT INTO t VALUES (2)", []).expect("insert");
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("truncate");
    c.execute("INSERT INTO t VALUES (3)", []).expect("insert");

    let state = dir.path().join("state");
    let spool = Arc::new(Spool::open(state.join("spool"), 1).expect("spool"));
    let mut s = Shipper::open(&dir.path().join("a.db"), &state, spool, CheckpointPolicy::default()).expect("reopen");
    let report = s.sync().expect("sync");
    assert!(report.new_generation.is_some(), "row 2 can only be covered by a new snapshot");
    assert_ne!(s.position().expect("position").generation, generation);
}

#[test]
fn restart_resumes_the_same_generation() {
    let (dir, c, mut s) = setup();
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    s.sync().expect("sync");
    let before = s.position().expect("position").clone();
    drop(s);
    c.execute("INSERT INTO t VALUES (2)", []).expect("insert");
    let state = dir.path().join("state");
    let spool = Arc::new(Spool::open(state.join("spool"), 1).expect("spool"));
    let mut s = Shipper::open(&dir.path().join("a.db"), &state, spool, CheckpointPolicy::default()).expect("reopen");
    let report = s.sync().expect("sync");
    assert!(report.new_generation.is_none());
    assert!(report.bytes > 0);
    assert_eq!(s.position().expect("position").generation, before.generation);
}

#[test]
fn large_transactions_and_spilled_uncommitted_frames_ship_exactly_the_commits() {
    let (dir, c, mut s) = setup();
    c.execute_batch("CREATE TABLE big (b)").expect("schema");
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    // Larger than what one pass holds back in memory: the copy falls back to a second pass.
    c.execute_batch(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM n WHERE i < 2001) INSERT INTO t SELECT i FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1500)
           INSERT INTO big SELECT randomblob(4096) FROM n;
         COMMIT;",
    )
    .expect("large transaction");
    assert!(s.sync().expect("sync").bytes > 6 << 20);
    let mut expected: Vec<i64> = (1..=2001).collect();
    assert_eq!(restore_from_spool(dir.path()), expected);

    // A commit followed by a transaction whose pages spilled into the WAL before it committed.
    c.execute("INSERT INTO t VALUES (5000)", []).expect("insert");
    let spiller = app(&dir.path().join("a.db"));
    spiller.pragma_update(None, "cache_size", 10).expect("cache_size");
    spiller
        .execute_batch(
            "BEGIN;
             INSERT INTO t VALUES (6000);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
               INSERT INTO big SELECT randomblob(4096) FROM n;",
        )
        .expect("spill");
    let before = std::fs::metadata(wal_path(&dir.path().join("a.db"))).expect("wal").len();
    let shipped_to = s.position().expect("position").pos.offset;
    s.sync().expect("sync");
    let after = s.position().expect("position").pos.offset;
    assert!(after > shipped_to && after + 100 * 4096 < before, "the spilled frames were shipped");
    expected.push(5000);
    let _ = std::fs::remove_file(dir.path().join("restored.db"));
    assert_eq!(restore_from_spool(dir.path()), expected);

    spiller.execute_batch("ROLLBACK").expect("rollback");
    c.execute("INSERT INTO t VALUES (9999)", []).expect("insert");
    s.sync().expect("sync");
    expected.push(9999);
    let _ = std::fs::remove_file(dir.path().join("restored.db"));
    assert_eq!(restore_from_spool(dir.path()), expected);
}

#[test]
fn snapshots_hold_the_database_as_of_the_start_of_their_wal_index() {
    let (dir, c, mut s) = setup_with(CheckpointPolicy { min_page_count: 4, ..Default::default() });
    // The application checkpoints on its own, as SQLite does by default.
    c.pragma_update(None, "wal_autocheckpoint", 1).expect("autocheckpoint");
    s.sync().expect("first sync");
    let mut prepared = false;
    for i in 0..40 {
        c.execute("INSERT INTO t VALUES (?1)", [i]).expect("insert");
        let report = s.sync().expect("sync");
        if report.checkpointed.is_some() {
            prepared = false;
        } else if s.position().expect("position").pos.offset > 32 + 4 * (24 + 4096) {
            prepared = true;
        }
        // Stop right after our read lock moved forward without a restart: the application's own checkpoint has
        // since copied some of this WAL index into the database file.
        if prepared && i >= 20 {
            break;
        }
    }
    c.execute("INSERT INTO t VALUES (1000)", []).expect("insert");
    let rows: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count");

    s.snapshot().expect("snapshot");
    let p = s.position().expect("position").clone();
    assert_eq!(p.snapshot_index, p.pos.index, "no snapshot was taken");
    let snapshot = dir
        .path()
        .join(format!("state/spool/generations/{}/snapshots/{:08x}.snapshot.lz4", p.generation, p.snapshot_index));
    let out = dir.path().join("snapshot.db");
    let mut f = std::fs::File::create(&out).expect("create");
    litecar_replicate::test_utils::decompress_into(std::fs::File::open(&snapshot).expect("snapshot"), &mut f)
        .expect("decompress");
    drop(f);
    let in_snapshot: i64 =
        Connection::open(&out).expect("open").query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count");
    // Filed under the index it starts: every row committed before it, and its own segments replay from there.
    assert_eq!(p.pos.offset, 0, "the snapshot was filed under a WAL index that already had frames");
    assert_eq!(in_snapshot, rows);
    assert_eq!(restore_from_spool(dir.path()).len() as i64, rows);
}

#[test]
fn our_restart_frame_waits_for_the_next_write_but_not_for_a_close() {
    let policy = CheckpointPolicy { min_page_count: 4, write_lock_below_max: true, ..Default::default() };
    let (dir, c, mut s) = setup_with(policy.clone());
    s.sync().expect("first sync");
    let mut rows = 0;
    let checkpoint = |s: &mut Shipper, rows: &mut usize| {
        for _ in 0..200 {
            c.execute("INSERT INTO t VALUES (randomblob(20000))", []).expect("insert");
            *rows += 1;
            if s.sync().expect("sync").checkpointed.is_some() {
                return;
            }
        }
        panic!("no checkpoint completed");
    };
    checkpoint(&mut s, &mut rows);
    let index = s.position().expect("position").pos.index;
    for _ in 0..3 {
        assert_eq!(s.sync().expect("idle sync").staged, 0, "an idle database staged a segment");
    }
    c.execute("INSERT INTO t VALUES (7)", []).expect("insert");
    rows += 1;
    let report = s.sync().expect("sync");
    assert_eq!((report.staged, s.position().expect("position").pos.index), (1, index));
    assert_eq!(restore_from_spool(dir.path()).len(), rows);

    // Idle again after a restart; the application exits, then litecar: the held frame goes out with the close,
    // and the generation continues cleanly afterwards.
    checkpoint(&mut s, &mut rows);
    drop(c);
    s.close().expect("close");
    let c = app(&dir.path().join("a.db"));
    c.execute("INSERT INTO t VALUES (8)", []).expect("insert");
    rows += 1;
    let state = dir.path().join("state");
    let spool = Arc::new(Spool::open(state.join("spool"), 1).expect("spool"));
    let mut s = Shipper::open(&dir.path().join("a.db"), &state, spool, policy).expect("reopen");
    assert!(s.sync().expect("sync").new_generation.is_none());
    let _ = std::fs::remove_file(dir.path().join("restored.db"));
    assert_eq!(restore_from_spool(dir.path()).len(), rows);
    // Every WAL index has its segments (Litestream's restore walks the indexes one by one).
    let generation = s.position().expect("position").generation.to_string();
    let wal_dir = state.join(format!("spool/generations/{generation}/wal"));
    let mut indexes: Vec<u32> = std::fs::read_dir(&wal_dir)
        .expect("wal dir")
        .filter_map(|e| u32::from_str_radix(e.ok()?.file_name().to_str()?.get(..8)?, 16).ok())
        .collect();
    indexes.sort();
    indexes.dedup();
    assert_eq!(indexes, (0..=*indexes.last().expect("segments")).collect::<Vec<_>>());
}

#[test]
fn a_snapshot_is_due_once_the_wal_shipped_is_several_times_the_database() {
    let (_dir, c, mut s) = setup();
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (randomblob(1000000))", []).expect("insert");
    let mut shipped = 0;
    // The same row rewritten: the database stays small while the WAL grows.
    while shipped < 10 << 20 {
        c.execute("UPDATE t SET x = randomblob(1000000)", []).expect("update");
        shipped += s.sync().expect("sync").bytes;
    }
    assert!(!s.snapshot_due_by_size(), "due after only {shipped} bytes of WAL");
    while shipped < 17 << 20 {
        c.execute("UPDATE t SET x = randomblob(1000000)", []).expect("update");
        shipped += s.sync().expect("sync").bytes;
    }
    assert!(s.snapshot_due_by_size(), "not due after {shipped} bytes of WAL");
    s.snapshot().expect("snapshot");
    assert!(!s.snapshot_due_by_size());
}

#[test]
fn a_second_snapshot_in_the_same_wal_index_starts_a_new_index_first() {
    let (dir, c, mut s) = setup();
    s.sync().expect("first sync");
    let first = s.position().expect("position").snapshot_index;
    for round in 0..3 {
        for i in 0..10 {
            c.execute("INSERT INTO t VALUES (?1)", [round * 10 + i]).expect("insert");
        }
        let before = s.position().expect("position").clone();
        assert_eq!(before.snapshot_index, before.pos.index, "the last snapshot is of this index");
        s.snapshot().expect("snapshot");
        let after = s.position().expect("position").clone();
        // The same index again would stage the same key twice, and its snapshot would hold nothing new.
        assert!(after.snapshot_index > before.snapshot_index, "round {round}: {before:?} -> {after:?}");
        assert!(after.snapshot_index > first);
    }
    // With nothing written since, the last snapshot stands: no new index, nothing staged.
    let before = s.position().expect("position").clone();
    let report = s.snapshot().expect("idle snapshot");
    let after = s.position().expect("position").clone();
    assert_eq!((report.snapshots, after.pos.index), (0, before.pos.index), "{before:?} -> {after:?}");
    let rows: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count");
    assert_eq!(restore_from_spool(dir.path()).len() as i64, rows);
}

#[test]
fn a_segment_staged_when_the_position_cannot_be_saved_is_still_uploaded() {
    let (dir, c, spool, mut s) = setup_with_spool(CheckpointPolicy::default());
    let state = dir.path().join("state");
    s.sync().expect("first sync");

    // The position file is written through a temporary sibling; a directory in its place makes every save fail,
    // as a full disk would, while the spool still has room.
    let blocker = state.join("position.json.tmp");
    std::fs::create_dir(&blocker).expect("block saving");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    assert!(s.sync().is_err(), "saving the position cannot have succeeded");
    std::fs::remove_dir(&blocker).expect("unblock");
    c.execute("INSERT INTO t VALUES (2)", []).expect("insert");
    s.sync().expect("sync");

    let keys = |spool: &Spool| spool.pending(0).into_iter().map(|e| e.key).collect::<Vec<_>>();
    // A spool opened afresh takes every file in its directory as pending: what was staged.
    let staged = keys(&Spool::open(state.join("spool"), 1).expect("reopen spool"));
    assert_eq!(keys(&spool), staged, "every staged object is queued for upload");
    assert_eq!(restore_from_spool(dir.path()), [1, 2]);
}
