use super::*;

fn app(db: &Path) -> Connection {
    let c = Connection::open(db).expect("open");
    c.pragma_update(None, "journal_mode", "wal").expect("wal");
    c.pragma_update(None, "wal_autocheckpoint", 0).expect("autocheckpoint");
    c.execute_batch("CREATE TABLE IF NOT EXISTS t (x)").expect("schema");
    c
}

/// A database at `db` with one row, the application's connection to it, and a shipper that has copied that row.
fn replicating_one_row(db: &Path) -> (Connection, Shipper) {
    let c = app(db);
    let dir = db.parent().expect("the database's directory");
    let spool = Arc::new(Spool::open(dir.join("spool"), 1).expect("spool"));
    let mut s = Shipper::open(db, dir, spool, CheckpointPolicy::default()).expect("shipper");
    s.sync().expect("first sync");
    c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
    s.sync().expect("sync");
    (c, s)
}

/// Everything an application can do in the moment after our restart commit releases the write lock: commit,
/// checkpoint with TRUNCATE, and again. Had our read lock been taken only after that moment, the second WAL's
/// commit would be gone from every WAL, and only a new generation could cover it.
#[test]
fn the_wal_our_checkpoint_restarts_is_pinned_before_the_write_lock_is_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("a.db");
    let (c, mut s) = replicating_one_row(&db);
    let before = s.position().expect("position").clone();

    let mut report = SyncReport::default();
    assert!(s.try_write_lock(Duration::from_secs(1)).expect("lock"), "write lock");
    let complete = s.checkpoint_locked(&mut report);
    s.write_unlock().expect("unlock");
    assert_eq!(complete.expect("checkpoint"), Some(true), "the checkpoint copied the whole WAL");
    s.restart_wal(&mut report).expect("restart");
    let restarted = s.read_wal_header().expect("header").expect("a WAL");
    assert!(before.header.is_followed_by(&restarted), "our commit restarted the WAL");

    c.busy_timeout(Duration::from_millis(20)).expect("busy timeout");
    for x in [2, 3] {
        c.execute("INSERT INTO t VALUES (?1)", [x]).expect("insert");
        let (busy, _, _): (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("application checkpoint");
        assert_eq!(busy, 1, "the application's TRUNCATE checkpoint got past our read lock");
    }
    assert_eq!(s.read_wal_header().expect("header"), Some(restarted), "the WAL was restarted again");
    let report = s.sync().expect("sync");
    assert_eq!(report.new_generation, None);
    let after = s.position().expect("position");
    assert_eq!((&after.generation, after.pos.index), (&before.generation, before.pos.index + 1));
}

/// An application swaps another database in by rename (removing the old WAL and shared memory first, as it must)
/// and writes to it, in the middle of one of our syncs: the WAL now at the path is the new file's, and reading it
/// says so instead of returning its header as ours.
#[test]
fn a_wal_read_after_the_database_was_swapped_by_rename_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("a.db");
    let (c, s) = replicating_one_row(&db);
    drop(c);

    let swapped_in = dir.path().join("b.db");
    drop(app(&swapped_in));
    for suffix in ["-wal", "-shm"] {
        std::fs::remove_file(format!("{}{suffix}", db.display())).expect("remove the old WAL files");
    }
    std::fs::rename(&swapped_in, &db).expect("swap the database in");
    let new_file = app(&db);
    new_file.execute("INSERT INTO t VALUES (2)", []).expect("write to the new file");
    assert!(wal::wal_path(&db).exists(), "the new file has a WAL");

    let header = s.read_wal_header();
    assert!(matches!(header, Err(Error::Replaced { .. })), "{header:?}");
}
