//! A bank-transfer workload whose invariant a reader can check at any moment: money moves between accounts in
//! transactions, so the total never changes. Blobs larger than a page, now and then a multi-megabyte transaction
//! and the application's own TRUNCATE checkpoints make the WAL do everything an application's does.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, OpenFlags};

use crate::{Shared, app_connection};

pub const ACCOUNTS: i64 = 200;
pub const INITIAL_BALANCE: i64 = 1_000;

pub fn create(path: &Path) {
    let c = app_connection(path);
    c.execute_batch(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, touched INTEGER NOT NULL DEFAULT 0);
         CREATE TABLE blobs (id INTEGER PRIMARY KEY, account INTEGER NOT NULL, data BLOB NOT NULL);
         CREATE TABLE commits (id INTEGER PRIMARY KEY, at_ns INTEGER NOT NULL);",
    )
    .expect("schema");
    c.execute(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
         INSERT INTO accounts (id, balance) SELECT i, ?2 FROM n",
        [ACCOUNTS, INITIAL_BALANCE],
    )
    .expect("accounts");
}

#[derive(Clone)]
pub struct Options {
    pub pause: Duration,
    /// Every this many transactions, one of several megabytes.
    pub big_every: Option<u64>,
    pub truncate_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self { pause: Duration::from_millis(5), big_every: Some(150), truncate_every: Some(Duration::from_millis(700)) }
    }
}

pub struct Bank {
    pub shared: Shared,
    handles: Vec<JoinHandle<()>>,
}

impl Bank {
    pub fn start(db: &Path, opts: Options) -> Self {
        let shared = Shared::default();
        let mut handles = vec![];
        let (path, s, o) = (db.to_owned(), shared.clone(), opts.clone());
        handles.push(std::thread::spawn(move || transfers(&path, &o, &s)));
        if let Some(every) = opts.truncate_every {
            let (path, s) = (db.to_owned(), shared.clone());
            handles.push(std::thread::spawn(move || {
                let conn = app_connection(&path);
                conn.busy_timeout(Duration::from_millis(100)).expect("busy timeout");
                while !s.stopped() {
                    std::thread::sleep(every);
                    let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
                }
            }));
        }
        Self { shared, handles }
    }

    pub fn committed(&self) -> u64 {
        self.shared.committed.load(Ordering::Relaxed)
    }

    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        crate::join_all(self.handles);
    }
}

fn transfers(db: &Path, opts: &Options, shared: &Shared) {
    let mut conn = app_connection(db);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut n = 0u64;
    while !shared.stopped() {
        n += 1;
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).expect("begin");
        let (from, to) = (rng.random_range(1..=ACCOUNTS), rng.random_range(1..=ACCOUNTS));
        let amount = rng.random_range(1..=50);
        tx.execute("UPDATE accounts SET balance = balance - ?2, touched = touched + 1 WHERE id = ?1", [from, amount])
            .expect("debit");
        tx.execute("UPDATE accounts SET balance = balance + ?2, touched = touched + 1 WHERE id = ?1", [to, amount])
            .expect("credit");
        if n.is_multiple_of(3) {
            // Larger than a page: overflow pages change with the row.
            tx.execute(
                "INSERT INTO blobs (account, data) VALUES (?1, randomblob(?2))",
                [from, rng.random_range(5_000..20_000)],
            )
            .expect("blob");
        }
        if n.is_multiple_of(11) {
            tx.execute("DELETE FROM blobs WHERE id IN (SELECT id FROM blobs ORDER BY random() LIMIT 2)", [])
                .expect("delete blobs");
        }
        if opts.big_every.is_some_and(|every| n.is_multiple_of(every)) {
            tx.execute(
                "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 24)
                 INSERT INTO blobs (account, data) SELECT ?1, randomblob(200000) FROM k",
                [to],
            )
            .expect("big transaction");
        }
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        tx.execute("INSERT INTO commits (at_ns) VALUES (?1)", [now.as_nanos() as i64]).expect("commit row");
        tx.commit().expect("commit");
        shared.committed.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(opts.pause);
    }
}

/// Check the invariant in one read transaction: every account there, the total unchanged, and the same answer
/// when asked twice (the snapshot holds). `Err` says what was wrong, including any SQLite error.
pub fn check(conn: &Connection) -> Result<(), String> {
    let sum = |c: &Connection| -> Result<(i64, i64), String> {
        c.query_row("SELECT count(*), coalesce(sum(balance), 0) FROM accounts", [], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(|e| format!("reading accounts: {e}"))
    };
    conn.execute_batch("BEGIN").map_err(|e| format!("begin: {e}"))?;
    let first = sum(conn);
    let blobs: Result<i64, String> = conn
        .query_row("SELECT count(*) FROM blobs WHERE length(data) = 0", [], |r| r.get(0))
        .map_err(|e| e.to_string());
    let second = sum(conn);
    conn.execute_batch("COMMIT").map_err(|e| format!("commit: {e}"))?;
    let (first, second) = (first?, second?);
    if blobs? != 0 {
        return Err("a blob is empty".into());
    }
    if first != (ACCOUNTS, ACCOUNTS * INITIAL_BALANCE) {
        return Err(format!("invariant broken: {first:?}"));
    }
    if first != second {
        return Err(format!("snapshot moved within a read transaction: {first:?} then {second:?}"));
    }
    Ok(())
}

/// A read-only connection, as a reader process would open the follower's copy.
pub fn reader(path: &Path) -> Connection {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open read-only");
    c.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    c
}

/// The newest commit's timestamp in a database, if any.
pub fn newest_commit(conn: &Connection) -> Option<i64> {
    conn.query_row("SELECT max(at_ns) FROM commits", [], |r| r.get(0)).ok().flatten()
}
