//! Fixtures of the shipper tests: an application connection with its own checkpoints off, a shipper over a fresh
//! database and spool, and a restore of what the spool holds.

use std::path::Path;
use std::sync::Arc;

use litecar_replicate::CheckpointPolicy;
use litecar_replicate::test_utils::{Shipper, Spool};
use rusqlite::Connection;

pub fn app(db: &Path) -> Connection {
    let c = Connection::open(db).expect("open");
    c.busy_timeout(std::time::Duration::from_secs(5)).expect("busy");
    c.pragma_update(None, "journal_mode", "wal").expect("wal");
    // The application checkpoints only when a test says so.
    c.pragma_update(None, "wal_autocheckpoint", 0).expect("autocheckpoint");
    c
}

pub fn setup() -> (tempfile::TempDir, Connection, Shipper) {
    // Checkpoints only when a test asks.
    setup_with(CheckpointPolicy { min_page_count: u64::MAX / 2, max_page_count: u64::MAX, ..Default::default() })
}

pub fn setup_with(policy: CheckpointPolicy) -> (tempfile::TempDir, Connection, Shipper) {
    let (dir, c, _, shipper) = setup_with_spool(policy);
    (dir, c, shipper)
}

pub fn setup_with_spool(policy: CheckpointPolicy) -> (tempfile::TempDir, Connection, Arc<Spool>, Shipper) {
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

/// Restore what the spool holds (it has the replica layout) and list the rows of `t`.
pub fn restore_from_spool(dir: &Path) -> Vec<i64> {
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

/// What the application's own PASSIVE checkpoint can copy: `(frames in the WAL, frames copied)`. It copies up to our
/// read lock, so the two are equal exactly when the read lock sits at the end of the WAL.
pub fn app_checkpoint(c: &Connection) -> (i64, i64) {
    c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(1)?, r.get(2)?))).expect("app checkpoint")
}

pub fn wait_for_background_checkpoint(s: &Shipper) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.checkpoint_in_background() {
        assert!(std::time::Instant::now() < deadline, "the background checkpoint never finished");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
