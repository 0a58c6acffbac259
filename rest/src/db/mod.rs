//! Connections: a pool of read-only ones and a single writer, used from blocking threads only.
//!
//! Each request runs as one transaction on one connection inside `spawn_blocking`, so SQLite work never
//! blocks the async executor. Reads get a consistent snapshot (schema and rows alike); writes take the write
//! lock up front (`BEGIN IMMEDIATE`) so they wait in `busy_timeout` instead of failing on lock upgrade. The
//! request deadline is enforced twice: while waiting for a connection, and by a progress handler that
//! interrupts the statement that runs past it.

mod errors;
pub mod schema;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::Semaphore;

pub(crate) use errors::map_sqlite;
use schema::{Schema, SchemaCache};

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

struct Pool {
    path: PathBuf,
    access: Access,
    busy_timeout: Duration,
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Pool {
    fn new(path: &Path, access: Access, size: usize, busy_timeout: Duration) -> Self {
        Pool {
            path: path.to_owned(),
            access,
            busy_timeout,
            idle: Mutex::new(Vec::with_capacity(size)),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    /// Connections are opened on first use, so the API can start before the application creates the database.
    /// The file is never created here: that is the application's job.
    fn checkout(&self) -> rusqlite::Result<Connection> {
        if let Some(conn) = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            return Ok(conn);
        }
        let flags = match self.access {
            Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
            Access::Write => OpenFlags::SQLITE_OPEN_READ_WRITE,
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        if self.access == Access::Write {
            // Writes made through the API honour declared foreign keys (a violation answers 409).
            conn.pragma_update(None, "foreign_keys", true)?;
        }
        Ok(conn)
    }

    fn checkin(&self, conn: Connection) {
        // A connection left inside a transaction (say, a rollback that was itself interrupted) is dropped, which
        // rolls it back, rather than handed to the next request.
        if conn.is_autocommit() {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
    }
}

pub(crate) struct Database {
    readers: Arc<Pool>,
    writer: Arc<Pool>,
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
            readers: Arc::new(Pool::new(path, Access::Read, read_connections.max(1), busy_timeout)),
            writer: Arc::new(Pool::new(path, Access::Write, 1, busy_timeout)),
            schema: Arc::new(SchemaCache::new(allowed)),
            request_timeout,
        }
    }

    /// Runs `work` in one transaction on a pooled connection on a blocking thread; commits when it returns
    /// `Ok`. `table` names the table in error messages.
    pub async fn run<T, F>(&self, access: Access, table: &str, started: Instant, work: F) -> Result<T, RestError>
    where
        F: FnOnce(&Connection, &Schema) -> Result<T, DbError> + Send + 'static,
        T: Send + 'static,
    {
        let limit_ms = self.request_timeout.as_millis();
        let timeout = || RestError::Timeout { table: table.to_owned(), limit_ms };
        let deadline =
            started.checked_add(self.request_timeout).unwrap_or_else(|| started + Duration::from_secs(86400));
        let pool = match access {
            Access::Read => Arc::clone(&self.readers),
            Access::Write => Arc::clone(&self.writer),
        };
        let permit = tokio::time::timeout_at(deadline.into(), Arc::clone(&pool.permits).acquire_owned())
            .await
            .map_err(|_| timeout())?
            .map_err(|_| RestError::Internal("connection pool closed".into()))?;
        let schema = Arc::clone(&self.schema);
        let table_name = table.to_owned();
        let joined = tokio::task::spawn_blocking(move || {
            // Held until the connection is back in the pool, even if the request is dropped meanwhile.
            let _permit = permit;
            let failed = |e: rusqlite::Error| map_sqlite(e, &table_name, Instant::now() >= deadline, limit_ms);
            if Instant::now() >= deadline {
                return Err(RestError::Timeout { table: table_name.clone(), limit_ms });
            }
            let mut conn = pool.checkout().map_err(failed)?;
            let armed = conn.progress_handler(PROGRESS_OPS, Some(move || Instant::now() >= deadline));
            let result = armed.map_err(failed).and_then(|()| in_transaction(&mut conn, access, &schema, work, failed));
            let disarmed = conn.progress_handler(0, None::<fn() -> bool>);
            if disarmed.is_ok() {
                pool.checkin(conn);
            }
            result
        })
        .await;
        match joined {
            Ok(result) => result,
            Err(error) => Err(RestError::Internal(format!("database task for table `{table}` failed: {error}"))),
        }
    }
}

fn in_transaction<T>(
    conn: &mut Connection,
    access: Access,
    schema: &SchemaCache,
    work: impl FnOnce(&Connection, &Schema) -> Result<T, DbError>,
    failed: impl Fn(rusqlite::Error) -> RestError,
) -> Result<T, RestError> {
    let behavior = match access {
        Access::Read => TransactionBehavior::Deferred,
        Access::Write => TransactionBehavior::Immediate,
    };
    let tx = conn.transaction_with_behavior(behavior).map_err(&failed)?;
    let schema = schema.load(&tx).map_err(&failed)?;
    let value = work(&tx, &schema).map_err(|e| match e {
        DbError::Sqlite(e) => failed(e),
        DbError::Rest(e) => e,
    })?;
    tx.commit().map_err(&failed)?;
    Ok(value)
}
