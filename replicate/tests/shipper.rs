//! The shipper against real SQLite files, driving the situations the daemon meets only by chance: torn WAL tails,
//! restarts it did not make, truncated WALs.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use litecar_replicate::CheckpointPolicy;
use litecar_replicate::test_utils::{Shipper, Spool, wal_path};
use rusqlite::Connection;

fn app(db: &Path) -> Connection {
    let c = Connection::open(db).expect("open");
    c.busy_timeout(std::time::Duration::from_secs(5)).expect("busy");
    c.pragma_update(None, "journal_mode", "wal").expect("wal");
    // The application checkpoints only when a test says so.
    c.pragma_update(None, "wal_autocheckpoint", 0).expect("autocheckpoint");
    c
}

fn setup() -> (tempfile::TempDir, Connection, Shipper) {
    // Checkpoints only when a test asks.
    setup_with(CheckpointPolicy { min_page_count: u64::MAX / 2, max_page_count: u64::MAX, ..Default::default() })
}

fn setup_with(policy: CheckpointPolicy) -> (tempfile::TempDir, Connection, Shipper) {
    let (dir, c, _, shipper) = setup_with_spool(policy);
    (dir, c, shipper)
}

fn setup_with_spool(policy: CheckpointPolicy) -> (tempfile::TempDir, Connection, Arc<Spool>, Shipper) {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("a.db");
    let c = app(&db);
    c.execute_batch("CREATE TABLE t (x)").expect("schema");
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("mkdir");
    let spool = Arc::new(Spool::open(state.join("spool"), 1).expect("spool"));
    let shipper = Shipper::open(&db, &state, spool.clone(), policy).expect("open shipper");
    (dir, c, spool, shipper)
}

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

/// Restore what the spool holds (it has the replica layout) and list the rows of `t`.
fn restore_from_spool(dir: &Path) -> Vec<i64> {
    use litecar_replicate::restore::{self, RestoreOptions, Target};
    let replica =
        litecar_replicate::Replica::new("spool", Arc::new(litecar_replicate::FileClient::new(dir.join("state/spool"))));
    let out = dir.join("restored.db");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let plan = restore::plan(&replica, &Target::default()).await.expect("plan").expect("something to restore");
        let opts = RestoreOptions { output: out.clone(), parallelism: 2, full_integrity_check: true };
        restore::restore(&replica, &plan, &opts, &|_| {}).await.expect("restore");
    });
    let c = Connection::open(&out).expect("open restored");
    let mut stmt =
        c.prepare("SELECT CASE typeof(x) WHEN 'integer' THEN x ELSE -1 END FROM t ORDER BY rowid").expect("select");
    stmt.query_map([], |r| r.get(0)).expect("rows").collect::<Result<_, _>>().expect("rows")
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
fn checkpoints_bound_the_wal_file() {
    let (dir, c, mut s) =
        setup_with(CheckpointPolicy { min_page_count: 4, write_lock_below_max: true, ..Default::default() });
    s.sync().expect("first sync");
    let wal = wal_path(&dir.path().join("a.db"));
    let (mut checkpoints, mut largest, mut rows) = (0, 0, 0);
    // Checkpoints complete a sync or more after they are prepared, once the background copy is done.
    while checkpoints < 5 && rows < 500 {
        c.execute("INSERT INTO t VALUES (randomblob(20000))", []).expect("insert");
        rows += 1;
        largest = largest.max(std::fs::metadata(&wal).expect("wal").len());
        if s.sync().expect("sync").checkpointed.is_some() {
            checkpoints += 1;
            // Our restart truncated the file to journal_size_limit (min-checkpoint-page-count frames).
            let len = std::fs::metadata(&wal).expect("wal").len();
            assert!(len <= 32 + 4 * (24 + 4096), "WAL is still {len} bytes after a checkpoint");
        }
    }
    assert!(checkpoints >= 5, "{checkpoints} checkpoints in {rows} syncs");
    assert!(largest > 32 + 4 * (24 + 4096), "the test never grew the WAL past the limit");
    assert_eq!(restore_from_spool(dir.path()).len(), rows);
}

/// By default a due checkpoint takes no write lock: run in the background, it leaves the WAL fully checkpointed, and
/// the shipper, looking for that between the application's writes, seals the WAL where it was copied; the application's
/// next write restarts it (with the random salts SQLite gives a connection's first restart), and the shipper follows
/// each restart in the same generation. The WAL file stops growing.
#[test]
fn checkpoints_without_the_write_lock_let_the_application_restart_the_wal() {
    let (dir, c, mut s) = setup_with(CheckpointPolicy { min_page_count: 4, ..Default::default() });
    s.sync().expect("first sync");
    let generation = s.position().expect("position").generation.clone();
    let wal = wal_path(&dir.path().join("a.db"));
    let mut largest = 0;
    for _ in 0..200 {
        c.execute("INSERT INTO t VALUES (randomblob(20000))", []).expect("insert");
        assert_eq!(s.sync().expect("sync").new_generation, None);
        // What the replicator's thread does every millisecond between commands.
        wait_for_background_checkpoint(&s);
        s.cooperate().expect("cooperate");
        largest = largest.max(std::fs::metadata(&wal).expect("wal").len());
    }
    let p = s.position().expect("position");
    assert_eq!(p.generation, generation);
    assert!(p.pos.index >= 10, "the application restarted the WAL only {} times", p.pos.index);
    assert!(largest <= 32 + 32 * (24 + 4096), "the WAL grew to {largest} bytes");
    assert_eq!(restore_from_spool(dir.path()).len(), 200);
}

/// An application that commits between every two syncs never lets a round end with the WAL fully checkpointed. Once
/// the WAL holds `max_page_count` frames, and a few rounds later, the checkpoint takes the write lock for what came
/// since the last round and restarts the WAL itself, in the same generation, and every commit is in the spool.
#[test]
fn a_writer_that_never_pauses_meets_the_write_lock_only_past_the_wal_limit() {
    let (dir, c, mut s) = setup_with(CheckpointPolicy { min_page_count: 4, max_page_count: 24, ..Default::default() });
    s.sync().expect("first sync");
    let generation = s.position().expect("position").generation.clone();
    let (mut rows, mut locked_at) = (0, None);
    while locked_at.is_none() && rows < 300 {
        c.execute("INSERT INTO t VALUES (randomblob(3000))", []).expect("insert");
        rows += 1;
        let frames_before = s.position().expect("position").pos.offset.saturating_sub(32) / (24 + 4096);
        let report = s.sync().expect("sync");
        assert_eq!(report.new_generation, None);
        if report.checkpointed == Some("truncate") {
            locked_at = Some(frames_before);
        }
        wait_for_background_checkpoint(&s);
    }
    let frames = locked_at.expect("no checkpoint took the write lock");
    assert!(frames >= 24, "the write lock was taken with only {frames} frames in the WAL");
    let p = s.position().expect("position");
    assert_eq!(p.generation, generation);
    assert!(p.pos.index >= 1, "the WAL was not restarted");
    assert_eq!(restore_from_spool(dir.path()).len(), rows);
}

/// What the application's own PASSIVE checkpoint can copy: `(frames in the WAL, frames copied)`. It copies up to our
/// read lock, so the two are equal exactly when the read lock sits at the end of the WAL.
fn app_checkpoint(c: &Connection) -> (i64, i64) {
    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).expect("app checkpoint")
}

fn wait_for_background_checkpoint(s: &Shipper) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.checkpoint_in_background() {
        assert!(std::time::Instant::now() < deadline, "the background checkpoint never finished");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn much_written_since_the_read_lock_moved_moves_it_again_instead_of_checkpointing_under_the_write_lock() {
    let (dir, c, mut s) =
        setup_with(CheckpointPolicy { min_page_count: 4, write_lock_below_max: true, ..Default::default() });
    s.sync().expect("first sync");
    let header = |dir: &Path| std::fs::read(wal_path(&dir.join("a.db"))).expect("wal")[..32].to_vec();
    c.execute("INSERT INTO t VALUES (randomblob(40000))", []).expect("insert");
    // The sync that copies the frames finds the checkpoint due; the next one moves the read lock, and no more.
    assert_eq!(s.sync().expect("sync").checkpointed, None);
    assert_eq!(s.sync().expect("sync").checkpointed, None, "the first due sync only moves the read lock");
    wait_for_background_checkpoint(&s);
    let (log, copied) = app_checkpoint(&c);
    assert_eq!(copied, log, "the read lock did not move to the end of the WAL");
    let before = header(dir.path());

    // Over a megabyte since the read lock moved: copying that under the write lock would stall the application.
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
         INSERT INTO t SELECT randomblob(20000) FROM n",
        [],
    )
    .expect("a large transaction");
    let report = s.sync().expect("sync");
    assert_eq!(report.checkpointed, None, "checkpointed {} bytes under the write lock", report.bytes);
    assert_eq!(header(dir.path()), before, "the WAL was restarted");
    wait_for_background_checkpoint(&s);
    let (log, copied) = app_checkpoint(&c);
    // 2 MB of pages: over 256 frames of 4 KiB.
    assert!(log > 256 && copied == log, "the read lock did not move again ({copied} of {log} frames)");

    // Little since: now the checkpoint completes under the write lock and restarts the WAL.
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    assert_eq!(s.sync().expect("sync").checkpointed, Some("passive"));
    assert_ne!(header(dir.path()), before, "the WAL was not restarted");
    assert_eq!(restore_from_spool(dir.path()).len(), 102);
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

/// Another process's TRUNCATE checkpoint takes the write lock and waits for our read lock. `cooperate` sees it in the
/// lock table (our own process's locks are never reported, another's are), copies the commits it had not copied yet,
/// steps aside so that the checkpoint completes at once instead of after its busy timeout, and the next sync follows
/// the emptied WAL in the same generation.
#[test]
fn another_process_truncate_checkpoint_is_stepped_aside_for() {
    let (dir, c, mut s) = setup();
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    s.sync().expect("sync");
    let before = s.position().expect("position").clone();
    c.execute("INSERT INTO t VALUES (2)", []).expect("insert");
    assert!(s.cooperate().expect("cooperate").is_none(), "stepped aside with no checkpoint waiting");

    // The application's process: a commit just before its checkpoint, then TRUNCATE with a 10 s busy timeout.
    let db = dir.path().join("a.db");
    let script = "import sqlite3, sys, time\n\
                  c = sqlite3.connect(sys.argv[1], timeout=10, isolation_level=None)\n\
                  c.execute('INSERT INTO t VALUES (3)')\n\
                  t = time.monotonic()\n\
                  busy = c.execute('PRAGMA wal_checkpoint(TRUNCATE)').fetchone()[0]\n\
                  print(busy, time.monotonic() - t)\n";
    let app = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&db)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    let report = loop {
        if let Some(r) = s.cooperate().expect("cooperate") {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "the waiting checkpoint was never seen");
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let out = app.wait_with_output().expect("application");
    let out = String::from_utf8_lossy(&out.stdout);
    let (busy, seconds) = out.trim().split_once(' ').expect("busy and seconds");
    assert_eq!(busy, "0", "the application's checkpoint did not complete: {out}");
    assert!(seconds.parse::<f64>().expect("seconds") < 5.0, "the checkpoint waited out its busy timeout: {out}");
    assert_eq!(report.app_waits.len(), 1);
    assert!(report.bytes > 0, "the commits before the checkpoint were not copied first");
    assert_eq!(std::fs::metadata(wal_path(&db)).expect("wal").len(), 0, "TRUNCATE emptied the WAL");

    c.execute("INSERT INTO t VALUES (4)", []).expect("insert");
    let report = s.sync().expect("sync");
    let after = s.position().expect("position");
    assert!(report.new_generation.is_none(), "followed the application's restart with a new generation");
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.pos.index, before.pos.index + 1);
    assert_eq!(restore_from_spool(dir.path()), vec![1, 2, 3, 4]);
}
