//! What other processes are doing with the database, read from SQLite's own locks without taking any.
//!
//! SQLite's WAL-index locks are POSIX byte-range locks on the `-shm` file, at byte 120 + n: WRITE = 0,
//! CKPT = 1, RECOVER = 2, READ(k) = 3 + k. A RESTART or TRUNCATE checkpoint takes CKPT, then WRITE, and then waits
//! (in its busy handler, both locks held) until every reader has left the part of the WAL it must copy or restart.
//! `F_GETLK` reports a lock that another process holds and never our own process's, so asking for CKPT and WRITE
//! tells, without blocking anyone, that another process is checkpointing with the write lock: while it holds it, no
//! one can append to the WAL.
//!
//! The `-shm` file is opened once and kept open for the shipper's life: POSIX drops every lock a process holds on a
//! file when any descriptor of it is closed, so closing it early would silently release SQLite's locks (our read
//! lock among them).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use crate::error::{Error, IoContext, Result};

/// First lock byte in the `-shm` file (`WALINDEX_LOCK_OFFSET`).
const LOCK_BASE: i64 = 120;
const WRITE: i64 = 0;
const CKPT: i64 = 1;

/// The part of the WAL-index that says how far the WAL goes: the header (written twice, the copies equal when it is
/// consistent) and the checkpoint information after it.
const HEADER_SIZE: usize = 48;
const MX_FRAME: usize = 16;
const SALT: usize = 32;
const N_BACKFILL: usize = 96;
const N_BACKFILL_ATTEMPTED: usize = 128;

/// The WAL as SQLite's WAL-index describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexView {
    /// Frames in the WAL, up to the last commit.
    pub(super) max_frame: u32,
    /// Frames of the WAL already copied into the database file.
    pub(super) backfilled: u32,
    /// Frames of the WAL a checkpoint has started to copy into the database file: set before the first page is
    /// written, cleared only when the WAL restarts.
    pub(super) backfill_attempted: u32,
    /// The WAL header's salts, as they appear in the file (bytes 16..24).
    pub(super) salt: [u8; 8],
}

pub(super) struct AppLocks {
    shm: File,
    path: PathBuf,
}

impl AppLocks {
    /// Open the `-shm` file of `db_path`, which SQLite creates as the first connection opens a WAL database.
    pub(super) fn open(db_path: &Path) -> Result<Self> {
        let mut s = db_path.as_os_str().to_owned();
        s.push("-shm");
        let path = PathBuf::from(s);
        let shm = File::open(&path).at(&path)?;
        Ok(Self { shm, path })
    }

    /// The process, not ours, that holds lock `n` of the WAL-index, if any.
    fn holder(&self, n: i64) -> Result<Option<i32>> {
        let mut lock = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: LOCK_BASE + n,
            l_len: 1,
            l_pid: 0,
        };
        fcntl(&self.shm, FcntlArg::F_GETLK(&mut lock))
            .map_err(|e| Error::Io { path: self.path.clone(), source: e.into() })?;
        Ok((lock.l_type != libc::F_UNLCK as libc::c_short).then_some(lock.l_pid))
    }

    /// Another process is checkpointing with the write lock held (a RESTART or TRUNCATE checkpoint, which waits for
    /// readers): its process id. One `fcntl` when no one checkpoints, two otherwise.
    pub(super) fn checkpointer_with_write_lock(&self) -> Result<Option<i32>> {
        let Some(pid) = self.holder(CKPT)? else { return Ok(None) };
        Ok((self.holder(WRITE)? == Some(pid)).then_some(pid))
    }

    /// Another process holds the checkpoint lock (any checkpoint, PASSIVE ones included).
    pub(super) fn checkpoint_running(&self) -> Result<bool> {
        Ok(self.holder(CKPT)?.is_some())
    }

    /// The WAL-index's view of the WAL; `None` while its two header copies differ (a writer is updating it).
    pub(super) fn index_view(&self) -> Result<Option<IndexView>> {
        let mut buf = [0u8; N_BACKFILL_ATTEMPTED + 4];
        let mut n = 0;
        while n < buf.len() {
            match self.shm.read_at(&mut buf[n..], n as u64).at(&self.path)? {
                0 => return Ok(None),
                k => n += k,
            }
        }
        if buf[..HEADER_SIZE] != buf[HEADER_SIZE..2 * HEADER_SIZE] {
            return Ok(None);
        }
        // The WAL-index is in the machine's byte order; the salts are copied from the WAL header as they are.
        let u32_at = |at: usize| u32::from_ne_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        let mut salt = [0u8; 8];
        salt.copy_from_slice(&buf[SALT..SALT + 8]);
        Ok(Some(IndexView {
            max_frame: u32_at(MX_FRAME),
            backfilled: u32_at(N_BACKFILL),
            backfill_attempted: u32_at(N_BACKFILL_ATTEMPTED),
            salt,
        }))
    }
}
