//! The shipper's checkpoints against real SQLite files: how they bound the WAL, when they may take the write lock,
//! and how they step aside for the application's own.

use std::path::Path;

use litecar_replicate::CheckpointPolicy;
use litecar_replicate::test_utils::wal_path;

use crate::common;
use common::*;

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

/// After a round that left the WAL behind (the application wrote meanwhile), the next one waits until the WAL has
/// grown by an eighth of `min_page_count` frames: a writer that commits a frame between every two syncs gets a round
/// every other sync, not one per sync, and no sync stages more than the one segment it would without rounds.
#[test]
fn rounds_after_one_that_left_the_wal_behind_wait_for_the_wal_to_grow() {
    let (dir, c, mut s) =
        setup_with(CheckpointPolicy { min_page_count: 16, max_page_count: 100_000, ..Default::default() });
    s.sync().expect("first sync");
    let (mut rows, mut rounds, mut syncs) = (0, 0, 0);
    while s.position().expect("position").pos.offset < 32 + 16 * (24 + 4096) {
        c.execute("INSERT INTO t VALUES (randomblob(100))", []).expect("insert");
        rows += 1;
        s.sync().expect("sync");
    }
    for _ in 0..40 {
        c.execute("INSERT INTO t VALUES (randomblob(100))", []).expect("insert");
        rows += 1;
        let report = s.sync().expect("sync");
        syncs += 1;
        assert!(report.staged <= 1, "one sync staged {} segments", report.staged);
        rounds += usize::from(report.checkpointed.is_some());
        wait_for_background_checkpoint(&s);
    }
    // Two frames (16 / 8) between rounds: one round every other sync, give or take the first.
    assert!((syncs / 2 - 1..=syncs / 2 + 1).contains(&rounds), "{rounds} rounds in {syncs} syncs");
    assert_eq!(restore_from_spool(dir.path()).len(), rows);
}

/// A round is also worth starting, whatever the WAL grew by, once the application has been quiet for as long as the
/// last round's checkpoint took: the shipper starts it between syncs, it ends before the next commit and seals the
/// WAL, and the application's next write restarts it.
#[test]
fn a_pause_of_the_application_starts_the_round_that_seals_the_wal() {
    let (dir, c, mut s) = setup_with(CheckpointPolicy { min_page_count: 16, ..Default::default() });
    s.sync().expect("first sync");
    let mut rows = 0;
    while s.position().expect("position").pos.offset < 32 + 16 * (24 + 4096) {
        c.execute("INSERT INTO t VALUES (randomblob(100))", []).expect("insert");
        rows += 1;
        s.sync().expect("sync");
    }
    // The first round runs at the sync that finds the checkpoint due; a commit after it leaves the WAL behind.
    c.execute("INSERT INTO t VALUES (randomblob(100))", []).expect("insert");
    assert_eq!(s.sync().expect("sync").checkpointed, Some("passive"), "the due checkpoint started no round");
    wait_for_background_checkpoint(&s);
    c.execute("INSERT INTO t VALUES (randomblob(100))", []).expect("insert");
    rows += 2;
    assert_eq!(s.sync().expect("sync").checkpointed, None, "one frame more is not worth a round at once");
    let index = s.position().expect("position").pos.index;

    // Longer than the last round's checkpoint took, which was measured up to the sync that found it over.
    std::thread::sleep(std::time::Duration::from_millis(500));
    let report = s.cooperate().expect("cooperate").expect("a round between syncs");
    assert_eq!(report.checkpointed, Some("passive"));
    wait_for_background_checkpoint(&s);
    s.cooperate().expect("cooperate");
    c.execute("INSERT INTO t VALUES (randomblob(100))", []).expect("insert");
    rows += 1;
    assert_eq!(s.sync().expect("sync").new_generation, None);
    assert_eq!(s.position().expect("position").pos.index, index + 1, "the application did not restart the WAL");
    assert_eq!(restore_from_spool(dir.path()).len(), rows);
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
