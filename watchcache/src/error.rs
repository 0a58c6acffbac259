//! Errors that name the resource type, key, index or query term at fault.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sqlite: {what}: {source}")]
    Sqlite {
        what: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{resource}: object has no metadata.name: {object}")]
    NoName { resource: String, object: String },
    #[error("{resource} {key} already exists")]
    AlreadyExists { resource: String, key: String },
    #[error("{resource} {key} not found")]
    NotFound { resource: String, key: String },
    #[error("{resource}: index {index} does not exist")]
    UnknownIndex { resource: String, index: String },
    #[error("{resource}: indexer conflict: {index} is already registered")]
    IndexerConflict { resource: String, index: String },
    #[error("bad query term `{term}`: {reason}")]
    Query { term: String, reason: String },
    #[error("bad field path `{path}`: {reason}")]
    FieldPath { path: String, reason: String },
    #[error("{resource}: resource version {requested} is too old, the event log starts after {compacted}")]
    Expired { resource: String, requested: u64, compacted: u64 },
    #[error("{resource}: resource version {requested} is newer than the store's {current}")]
    TooNew { resource: String, requested: u64, current: u64 },
    #[error("{resource} {key}: stored JSON: {source}")]
    Json {
        resource: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{resource}: the watcher fell {behind} events behind and was cut off; watch again or relist")]
    TooSlow { resource: String, behind: u64 },
    /// The event log or a stored row is not what the writer wrote: an internal error, not a bad request.
    #[error("{resource}: corrupt event log: {detail}")]
    Corrupt { resource: String, detail: String },
    #[error("{resource}: the relist was superseded by a newer one")]
    Superseded { resource: String },
    #[error("blocking SQLite task failed: {0}")]
    Join(String),
    #[error("kubernetes {resource}: {message}")]
    Kube { resource: String, message: String },
}

/// Attach what was being done to a SQLite error.
pub(crate) trait SqlContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> SqlContext<T> for std::result::Result<T, rusqlite::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sqlite { what: what(), source })
    }
}
