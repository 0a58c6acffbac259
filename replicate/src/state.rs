//! The replicator's position, kept next to the database so that a restart continues the same generation without
//! listing the replica.

use std::path::PathBuf;
use std::time::SystemTime;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_atomically;
use crate::layout::{Generation, Pos};
use crate::wal::{Checksum, WalHeader};

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub generation: Generation,
    /// WAL index (restart count within the generation) and the byte offset shipped up to. Offset 0 means the WAL
    /// header has not been shipped yet.
    pub pos: Pos,
    /// Header of the WAL that `pos.index` refers to.
    pub header: WalHeader,
    /// Running checksum at `pos.offset` (the header checksum while the offset is at or before the header's end).
    pub checksum: Checksum,
    /// Index of the last snapshot taken in this generation.
    pub snapshot_index: u32,
    pub snapshot_at: SystemTime,
    /// WAL bytes shipped since that snapshot; a new snapshot is due when this outgrows the database
    /// several times over.
    pub wal_bytes_since_snapshot: u64,
    /// The database file as a clean shutdown left it (everything copied, WAL possibly deleted by SQLite).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_close: Option<FileStamp>,
}

/// Identity and last modification of a file: any write to it (a checkpoint, say) changes the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileStamp {
    pub len: u64,
    pub modified_ns: i128,
    pub inode: u64,
}

impl FileStamp {
    pub fn of(file: &std::fs::File) -> std::io::Result<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = file.metadata()?;
        Ok(Self {
            len: m.len(),
            modified_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            inode: m.ino(),
        })
    }
}

pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    /// The saved position; `None` when there is none or it cannot be used (which starts a new generation).
    pub fn load(&self) -> Result<Option<Position>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::Io { path: self.path.clone(), source: e });
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(p) => Ok(Some(p)),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring unreadable state file; starting a new generation");
                Ok(None)
            }
        }
    }

    pub fn save(&self, position: &Position) -> Result<()> {
        let json = serde_json::to_vec_pretty(position)
            .map_err(|e| Error::State { path: self.path.clone(), message: e.to_string() })?;
        write_atomically(&self.path, |f| std::io::Write::write_all(f, &json)).at(&self.path)
    }
}
