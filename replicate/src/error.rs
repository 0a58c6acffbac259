use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// An error from a replica backend, naming the replica and the object at fault.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("replica {replica}: {key} not found")]
    NotFound { replica: String, key: String },
    #[error("replica {replica}: {op} {key}: {source}")]
    Io {
        replica: String,
        op: &'static str,
        key: String,
        #[source]
        source: io::Error,
    },
    #[error("replica {replica}: {op} {key}: {message}")]
    Backend { replica: String, op: &'static str, key: String, message: String, permanent: bool },
    #[error("replica {replica}: operation cancelled")]
    Cancelled { replica: String },
}

impl ReplicaError {
    /// Whether retrying the same request cannot help (missing object, bad credentials, missing bucket).
    pub fn is_permanent(&self) -> bool {
        match self {
            ReplicaError::NotFound { .. } => true,
            ReplicaError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::PermissionDenied
                    | io::ErrorKind::NotFound
                    | io::ErrorKind::InvalidInput
                    | io::ErrorKind::NotADirectory
                    | io::ErrorKind::IsADirectory
                    | io::ErrorKind::ReadOnlyFilesystem
            ),
            ReplicaError::Backend { permanent, .. } => *permanent,
            ReplicaError::Cancelled { .. } => true,
        }
    }
}

/// Errors of the replicator and of restore. Each names the database, replica, file or object at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{path} is not a SQLite database: {reason}")]
    NotADatabase { path: PathBuf, reason: String },
    #[error("{path}: {message}")]
    Wal { path: PathBuf, message: String },
    #[error(
        "{path} was deleted or replaced while litecar had it open; litecar lets go of the old file and replicates the \
         one at that path, in a new generation, once there is one"
    )]
    Replaced { path: PathBuf },
    #[error("replica {replica}: {message}")]
    Restore { replica: String, message: String },
    #[error("replica {replica}: corrupt {key}: {message}")]
    Corrupt { replica: String, key: String, message: String },
    #[error("{path}: restored database failed its integrity check: {message}")]
    Integrity { path: PathBuf, message: String },
    #[error("{path} already exists; remove it, pass -o with another path, or use --if-db-not-exists")]
    OutputExists { path: PathBuf },
    #[error("no backups found for {0}")]
    NoBackups(String),
    #[error("state file {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("{path} was written by another process; a follower's copy is read-only")]
    WrittenByOthers { path: PathBuf },
    #[error("cancelled")]
    Cancelled,
    /// An error of one sync, reported to every caller whose request that sync served; see [`Error::root`].
    #[error(transparent)]
    Shared(Arc<Error>),
}

impl Error {
    /// The error itself, looking through [`Error::Shared`]: match on this.
    pub fn root(&self) -> &Error {
        match self {
            Error::Shared(e) => e.root(),
            e => e,
        }
    }

    /// Whether retrying cannot help: a replica's permanent error (see [`ReplicaError::is_permanent`]) or a
    /// cancellation. Local errors (a full disk, a locked database) may go away and count as transient.
    pub fn is_permanent(&self) -> bool {
        match self.root() {
            Error::Replica(e) => e.is_permanent(),
            Error::Cancelled => true,
            _ => false,
        }
    }

    /// The error back from the one caller it was shared with, or still shared between several.
    pub(crate) fn unshare(e: Arc<Error>) -> Error {
        Arc::try_unwrap(e).unwrap_or_else(Error::Shared)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io { path: path.into(), source })
    }
}

pub(crate) trait SqlContext<T> {
    fn db(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> SqlContext<T> for rusqlite::Result<T> {
    fn db(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Sqlite { path: path.into(), source })
    }
}
