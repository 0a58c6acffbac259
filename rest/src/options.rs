//! Settings of the table API.

use std::path::PathBuf;
use std::time::Duration;

/// What the table API serves and the limits it enforces.
#[derive(Clone, Debug)]
pub struct RestOptions {
    /// The SQLite database. It is opened lazily and never created: until the application has created it,
    /// requests answer 503.
    pub db_path: PathBuf,
    /// Tables (or views) reachable over HTTP. None by default; any other name answers 404 whether or not it
    /// exists.
    pub allowed_tables: Vec<String>,
    /// PATCH and DELETE without any filter are refused (400) unless this is true.
    pub allow_unfiltered_writes: bool,
    /// Size of the pool of read-only connections.
    pub read_connections: usize,
    /// How long a statement waits for a lock held by another connection (SQLite `busy_timeout`).
    pub busy_timeout: Duration,
    /// Limit on the database work of one request, waiting for a connection included; enforced by a SQLite
    /// progress handler that interrupts the running statement (answer 504).
    pub request_timeout: Duration,
    /// Largest accepted request body; larger ones answer 413.
    pub max_body_bytes: usize,
    /// Optional cap on the rows of one response, applied on top of `limit` and `Range`.
    pub max_rows: Option<usize>,
    /// Serve reads only: every write answers 405 (the database is a read replica that litecar keeps up to date).
    pub read_only: bool,
}

impl RestOptions {
    /// Defaults for everything but the database path.
    pub fn new(db_path: impl Into<PathBuf>) -> Self {
        RestOptions {
            db_path: db_path.into(),
            allowed_tables: Vec::new(),
            allow_unfiltered_writes: false,
            read_connections: 4,
            busy_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            max_body_bytes: 1024 * 1024,
            max_rows: None,
            read_only: false,
        }
    }
}

impl Default for RestOptions {
    fn default() -> Self {
        RestOptions::new(PathBuf::new())
    }
}
