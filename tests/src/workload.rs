//! Application-like write workloads: several connections, mixed transaction sizes, the application's own
//! checkpoints, and a record of every committed transaction so a restore can be checked against it.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rand::{RngExt, SeedableRng};

use crate::{Shared, app_connection};

pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, seq INTEGER NOT NULL, payload BLOB NOT NULL,
    UNIQUE (writer, seq))";

pub fn create(path: &Path) {
    app_connection(path).execute_batch(SCHEMA).expect("schema");
}

/// Every (writer, seq) whose transaction commit returned success.
pub type Committed = Arc<Mutex<BTreeSet<(i64, i64)>>>;

pub struct Workload {
    pub shared: Shared,
    pub committed: Committed,
    handles: Vec<JoinHandle<()>>,
}

#[derive(Clone)]
pub struct Options {
    pub writers: usize,
    /// Largest transaction, in rows.
    pub max_tx_rows: usize,
    /// Largest payload per row.
    pub max_payload: usize,
    /// Run `PRAGMA wal_checkpoint(TRUNCATE)` from the application about this often.
    pub app_truncate_every: Option<Duration>,
    /// Pause between transactions per writer.
    pub pause: Duration,
    /// Writer ids start here, so several workloads over one database never collide.
    pub first_writer: i64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            writers: 3,
            max_tx_rows: 50,
            max_payload: 2000,
            app_truncate_every: Some(Duration::from_millis(700)),
            pause: Duration::from_millis(2),
            first_writer: 0,
        }
    }
}

impl Workload {
    pub fn start(db: &Path, opts: Options) -> Self {
        let shared = Shared::default();
        let committed: Committed = Arc::default();
        let mut handles = vec![];
        for w in 0..opts.writers {
            let (db, shared, committed, opts) = (db.to_owned(), shared.clone(), committed.clone(), opts.clone());
            handles.push(std::thread::spawn(move || {
                writer(&db, opts.first_writer + w as i64, &opts, &shared, &committed)
            }));
        }
        if let Some(every) = opts.app_truncate_every {
            let (db, shared) = (db.to_owned(), shared.clone());
            handles.push(std::thread::spawn(move || app_checkpointer(&db, every, &shared)));
        }
        Self { shared, committed, handles }
    }

    pub fn stop(self) -> Committed {
        self.shared.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        crate::join_all(self.handles);
        self.committed
    }
}

fn writer(db: &Path, id: i64, opts: &Options, shared: &Shared, committed: &Committed) {
    let mut conn = app_connection(db);
    let mut rng = rand::rngs::StdRng::seed_from_u64(id as u64 + 17);
    let mut seq = 0i64;
    while !shared.stopped() {
        let rows = rng.random_range(1..=opts.max_tx_rows);
        let mut batch = vec![];
        let tx = match conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate) {
            Ok(tx) => tx,
            Err(_) => continue,
        };
        let mut ok = true;
        for _ in 0..rows {
            seq += 1;
            let len = rng.random_range(0..=opts.max_payload);
            let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if tx.execute("INSERT INTO events (writer, seq, payload) VALUES (?1, ?2, ?3)", (id, seq, payload)).is_err()
            {
                ok = false;
                break;
            }
            batch.push((id, seq));
        }
        // Now and then an update and a delete, so pages are rewritten and freed too.
        if ok && seq % 7 == 0 {
            let _ = tx.execute("UPDATE events SET payload = x'00' WHERE writer = ?1 AND seq = ?2", (id, seq - 1));
        }
        if ok && tx.commit().is_ok() {
            committed.lock().expect("lock").extend(batch);
            shared.committed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        std::thread::sleep(opts.pause);
    }
}

fn app_checkpointer(db: &Path, every: Duration, shared: &Shared) {
    let conn = app_connection(db);
    // Like an application that checkpoints on its own; it must not wait long on litecar's read lock.
    conn.busy_timeout(Duration::from_millis(100)).expect("busy timeout");
    while !shared.stopped() {
        std::thread::sleep(every);
        let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
    }
}

/// The (writer, seq) pairs present in a database.
pub fn rows_in(db: &Path) -> BTreeSet<(i64, i64)> {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    let mut stmt = c.prepare("SELECT writer, seq FROM events").expect("select");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("rows").collect::<Result<_, _>>().expect("rows")
}
