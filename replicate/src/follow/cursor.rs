//! How far a follower has applied the replica, kept beside its database so that a restart resumes from there.

use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::layout::{Generation, Pos};
use crate::wal::{Checksum, WalHeader};

/// The replica position a follower's database is at.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    pub generation: Generation,
    /// The next segment to apply: WAL index and byte offset (0 when the index's header is still to come).
    pub pos: Pos,
    /// Header of WAL `pos.index`, once its first segment is applied.
    pub header: Option<WalHeader>,
    /// Running checksum of WAL `pos.index` at `pos.offset`.
    pub checksum: Checksum,
    /// File name of the last object applied (snapshot or segment): listings start after it.
    pub last_name: String,
    /// Database size in pages after the last applied transaction.
    pub db_pages: u32,
    /// Hash of page 1 after the last applied transaction, to notice a copy that moved on without us.
    pub page1_hash: u32,
}

/// The cursor's file: written after each applied batch, through a temporary file and a rename.
pub struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    /// The cursor of the follower whose database is `db`: a hidden file beside it.
    pub fn for_db(db: &Path) -> Self {
        let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        Self { path: dir.join(format!(".{name}.litecar-follow.json")) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved cursor: [`Saved::Missing`] when there is none, [`Saved::Unreadable`] when it cannot be read (the
    /// follower then rebuilds its copy).
    pub fn load(&self) -> Saved {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Saved::Missing,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "unreadable follower cursor");
                return Saved::Unreadable;
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(c) => Saved::Cursor(c),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "unreadable follower cursor");
                Saved::Unreadable
            }
        }
    }

    /// Replace the cursor, through a temporary file and a rename, without waiting for the disk: it is written after
    /// the transaction it records is on disk (the copy syncs each commit), so whatever a crash leaves is an older
    /// cursor, which the copy's fingerprint tells apart or whose segments apply again to the same pages, or an
    /// unreadable one, which rebuilds the copy.
    pub fn save(&self, cursor: &Cursor) -> Result<()> {
        let json =
            serde_json::to_vec(cursor).map_err(|e| Error::State { path: self.path.clone(), message: e.to_string() })?;
        let mut tmp = self.path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        std::fs::write(&tmp, &json).at(&tmp)?;
        std::fs::rename(&tmp, &self.path).at(&self.path)
    }
}

/// What [`CursorFile::load`] found.
pub enum Saved {
    Missing,
    Unreadable,
    Cursor(Cursor),
}

pub fn page_hash(page: &[u8]) -> u32 {
    twox_hash::XxHash32::oneshot(0, page)
}
