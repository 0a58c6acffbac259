//! Connections: a pool of read-only ones and a single writer, each connection owned by a pool thread.
//!
//! Each request runs as one transaction on one connection on a pool thread (see [`workers`]), so SQLite work
//! never blocks the async executor. Reads get a consistent snapshot (schema and rows alike); writes take the
//! write lock up front (`BEGIN IMMEDIATE`) so they wait in `busy_timeout` instead of failing on lock upgrade.
//! The request deadline is enforced twice: while the job waits in the queue, and by a progress handler that
//! interrupts the statement that runs past it.

mod errors;
pub mod schema;
mod workers;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::oneshot;

pub(crate) use errors::map_sqlite;
use schema::{Schema, SchemaCache};
use workers::{Job, Session, Workers};

use crate::error::RestError;

/// SQLite VM instructions between two checks of the deadline: frequent enough to stop within a millisecond or
/// so, rare enough to cost nothing measurable.
const PROGRESS_OPS: i32 = 1000;

/// What database work can fail with: a SQLite error, mapped to an API error by [`Database::run`] (which knows
/// whether the deadline had passed), or an API error decided by the work itself.
#[derive(Debug)]
pub(crate) enum DbError {
    Sqlite(rusqlite::Error),
    Rest(RestError),
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        DbError::Sqlite(error)
    }
}

impl From<RestError> for DbError {
    fn from(error: RestError) -> Self {
        DbError::Rest(error)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    Read,
    Write,
}

/// How a successful request's transaction ends: committed, or rolled back for a dry run (`Prefer: tx=rollback`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum End {
    Commit,
    Rollback,
}

/// Where a queued job stands; the request and the pool thread race for it when the deadline passes.
const QUEUED: u8 = 0;
const STARTED: u8 = 1;
const ABANDONED: u8 = 2;

pub(crate) struct Database {
    readers: Workers,
    writer: Workers,
    schema: Arc<SchemaCache>,
    request_timeout: Duration,
}

impl Database {
    pub fn new(
        path: &Path,
        allowed: Vec<String>,
        read_connections: usize,
        busy_timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        Database {
            readers: Workers::new("read", path.to_owned(), Access::Read, read_connections.max(1), busy_timeout),
            writer: Workers::new("write", path.to_owned(), Access::Write, 1, busy_timeout),
            schema: Arc::new(SchemaCache::new(allowed)),
            request_timeout,
        }
    }

    /// Runs `work` in one transaction on a pooled connection on a pool thread; commits when it returns
    /// `Ok`. `table` names the table in error messages.
    pub async fn run<T, F>(&self, access: Access, table: &str, started: Instant, work: F) -> Result<T, RestError>
    where
        F: FnOnce(&Connection, &Schema) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        self.run_ending(access, End::Commit, table, started, work).await
    }

    /// [`Database::run`], ending a successful transaction as `end` says.
    pub async fn run_ending<T, F>(
        &self,
        access: Access,
        end: End,
        table: &str,
        started: Instant,
        work: F,
    ) -> Result<T, RestError>
    where
        F: FnOnce(&Connection, &Schema) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let limit_ms = self.request_timeout.as_millis();
        let timeout = || RestError::Timeout { table: table.to_owned(), limit_ms };
        let deadline =
            started.checked_add(self.request_timeout).unwrap_or_else(|| started + Duration::from_secs(86400));
        let workers = match access {
            Access::Read => &self.readers,
            Access::Write => &self.writer,
        };
        let (reply, mut outcome) = oneshot::channel();
        let claim = Arc::new(AtomicU8::new(QUEUED));
        let job_claim = Arc::clone(&claim);
        let schema = Arc::clone(&self.schema);
        let table_name = table.to_owned();
        let job: Job = Box::new(move |session| {
            // A request that gave up (timed out in the queue, or dropped by its client) is not run.
            if reply.is_closed()
                || job_claim.compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire).is_err()
            {
                return;
            }
            let result = run_job(session, (access, end), &schema, deadline, &table_name, limit_ms, work);
            // The request may have been dropped meanwhile; then nobody is waiting for the answer.
            let _ = reply.send(result);
        });
        workers.submit(job).map_err(RestError::Internal)?;
        let failed = |_| RestError::Internal(format!("database task for table `{table}` failed"));
        match tokio::time::timeout_at(deadline.into(), &mut outcome).await {
            Ok(result) => result.map_err(failed)?,
            Err(_) => {
                if claim.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return Err(timeout());
                }
                // Already running: its progress handler stops it at the deadline, and its outcome (a commit
                // included) is what the client must be told.
                outcome.await.map_err(failed)?
            }
        }
    }
}

/// One request's database work on a pool thread: deadline armed, one transaction, connection kept only if
/// it is clean.
fn run_job<T>(
    session: &mut Session<'_>,
    access: (Access, End),
    schema: &SchemaCache,
    deadline: Instant,
    table: &str,
    limit_ms: u128,
    work: impl FnOnce(&Connection, &Schema) -> Result<T, DbError>,
) -> Result<T, RestError> {
    let failed = |e: rusqlite::Error| map_sqlite(e, table, Instant::now() >= deadline, limit_ms);
    if Instant::now() >= deadline {
        return Err(RestError::Timeout { table: table.to_owned(), limit_ms });
    }
    let mut rescue = session.rescue();
    let conn = session.connection().map_err(failed)?;
    let armed = conn.progress_handler(
        PROGRESS_OPS,
        Some(move || {
            let now = Instant::now();
            rescue.check(now);
            now >= deadline
        }),
    );
    let result = armed.map_err(failed).and_then(|()| in_transaction(conn, access, schema, work, failed));
    let disarmed = conn.progress_handler(0, None::<fn() -> bool>);
    // A connection left inside a transaction (say, a rollback that was itself interrupted) is dropped, which
    // rolls it back, rather than handed to the next request.
    if disarmed.is_err() || !conn.is_autocommit() {
        session.discard();
    }
    result
}

/// Runs `sql` (BEGIN, COMMIT, ROLLBACK) from the connection's statement cache: parsing them anew would cost
/// more than running them.
fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn in_transaction<T>(
    conn: &Connection,
    (access, end): (Access, End),
    schema: &SchemaCache,
    work: impl FnOnce(&Connection, &Schema) -> Result<T, DbError>,
    failed: impl Fn(rusqlite::Error) -> RestError,
) -> Result<T, RestError> {
    let begin = match access {
        Access::Read => "BEGIN DEFERRED",
        // The write lock is taken up front so the request waits in `busy_timeout` instead of failing on lock
        // upgrade.
        Access::Write => "BEGIN IMMEDIATE",
    };
    exec_cached(conn, begin).map_err(&failed)?;
    let outcome = schema.load(conn).map_err(&failed).and_then(|schema| {
        work(conn, &schema).map_err(|e| match e {
            DbError::Sqlite(e) => failed(e),
            DbError::Rest(e) => e,
        })
    });
    let finish = match end {
        End::Commit => "COMMIT",
        End::Rollback => "ROLLBACK",
    };
    let committed = outcome.and_then(|value| exec_cached(conn, finish).map(|()| value).map_err(&failed));
    if committed.is_err() && !conn.is_autocommit() {
        // Best effort: if even this fails the connection is still in a transaction and gets discarded.
        let _ = exec_cached(conn, "ROLLBACK");
    }
    committed
}
