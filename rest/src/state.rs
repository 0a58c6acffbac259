//! What the handlers share: settings, connections, metrics.

use std::collections::HashSet;
use std::sync::Arc;

use crate::db::Database;
use crate::error::RestError;
use crate::metrics::RestMetrics;
use crate::options::RestOptions;

/// The table API's state; cheap to clone. Build one per database and hand it to [`router`](crate::router).
#[derive(Clone)]
pub struct RestState {
    inner: Arc<Inner>,
}

struct Inner {
    options: RestOptions,
    db: Database,
    metrics: RestMetrics,
}

impl RestState {
    /// Checks the options; opens nothing yet (connections are opened on first use, see [`RestOptions::db_path`]).
    pub fn new(options: RestOptions, metrics: RestMetrics) -> Result<Self, RestError> {
        if options.read_connections == 0 {
            return Err(RestError::Config("read_connections must be at least 1".into()));
        }
        if options.request_timeout.is_zero() {
            return Err(RestError::Config("request_timeout must be positive".into()));
        }
        let mut seen = HashSet::new();
        for table in &options.allowed_tables {
            if table.is_empty() || table.contains('/') {
                return Err(RestError::Config(format!("allowed table name `{table}` is not usable in a URL path")));
            }
            if !seen.insert(table.as_str()) {
                return Err(RestError::Config(format!("allowed table `{table}` is listed twice")));
            }
        }
        let db = Database::new(
            &options.db_path,
            options.allowed_tables.clone(),
            options.read_connections,
            options.busy_timeout,
            options.request_timeout,
        );
        Ok(RestState { inner: Arc::new(Inner { options, db, metrics }) })
    }

    pub fn options(&self) -> &RestOptions {
        &self.inner.options
    }

    pub(crate) fn db(&self) -> &Database {
        &self.inner.db
    }

    pub(crate) fn metrics(&self) -> &RestMetrics {
        &self.inner.metrics
    }

    pub(crate) fn is_read_only(&self) -> bool {
        self.inner.options.read_only
    }

    pub(crate) fn is_allowed(&self, table: &str) -> bool {
        self.inner.options.allowed_tables.iter().any(|t| t == table)
    }
}
