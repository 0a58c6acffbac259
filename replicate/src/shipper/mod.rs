//! The blocking half of replication: reads the application's WAL and stages whole committed transactions into the
//! spool, takes snapshots, and runs lock-safe checkpoints. It owns three SQLite connections and runs on a dedicated
//! thread.
//!
//! Safety rests on one SQLite fact: a WAL can only be restarted (overwritten from its start) when no reader holds a
//! snapshot inside it. The `pin` connection keeps a read transaction open at all times except inside our own
//! checkpoint, so the application's frames stay in place until they are copied. Any restart we did not see coming
//! is detected from the WAL header (checkpoint sequence and salt), and what the old WAL still holds past our
//! position is recovered under the write lock; when that cannot be proven complete, a new generation starts with a
//! snapshot, so nothing committed is ever skipped silently.

mod applocks;
mod checkpoint;
pub(crate) mod checkpointer;
mod cooperate;
mod copy;
mod generation;
mod lock;
mod rounds;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use self::applocks::AppLocks;
pub use self::checkpoint::CheckpointPolicy;
use self::checkpoint::Prepared;
use self::checkpointer::Checkpointer;
use self::cooperate::Seal;
use self::copy::ShipError;
use self::generation::Restart;
use self::rounds::Rounds;
use crate::error::{Error, IoContext, Result, SqlContext};
use crate::layout::{Generation, Pos};
use crate::spool::{Loss, Spool};
use crate::state::{FileStamp, Position, StateFile};
use crate::wal;

pub const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// What one call to [`Shipper::sync`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SyncReport {
    pub staged: usize,
    pub bytes: u64,
    pub new_generation: Option<String>,
    pub checkpointed: Option<&'static str>,
    pub checkpoint_seconds: f64,
    /// Snapshots staged by this call: total compressed bytes and seconds spent.
    pub snapshot_bytes: u64,
    pub snapshot_seconds: f64,
    pub snapshots: u64,
    /// How long each checkpoint of the application that we stepped aside for waited on our read lock.
    pub app_waits: Vec<f64>,
    /// How long each hold of the write lock by litecar lasted, in seconds (the application's writers wait on it).
    pub write_lock_holds: Vec<f64>,
    /// Generation, position and last snapshot time after the call.
    pub position: Option<(Generation, Pos, SystemTime)>,
}

pub struct Shipper {
    db_path: PathBuf,
    wal_path: PathBuf,
    policy: CheckpointPolicy,
    pin: Connection,
    /// Takes over the read lock from `pin` without a gap (see [`Shipper::handover_pin`]).
    spare: Connection,
    lock: Connection,
    ckpt: Connection,
    background: Checkpointer,
    pinned: bool,
    locked: bool,
    /// When the write lock was last taken, and the holds since the last report (see [`SyncReport::write_lock_holds`]).
    lock_taken: Instant,
    lock_holds: Vec<f64>,
    state: StateFile,
    position: Option<Position>,
    spool: Arc<Spool>,
    last_checkpoint: Instant,
    /// Position right after our own restart frame; a WAL holding nothing else needs no checkpoint.
    idle_mark: Option<Pos>,
    /// Leave our own restart frame in the WAL until the application writes (every copy but the last one on close).
    hold_restart_frame: bool,
    /// The read lock was moved up to the shipped position by [`Shipper::prepare_checkpoint`]; the next due sync
    /// completes the checkpoint.
    prepared: Option<Prepared>,
    /// Frames of the current WAL may have been checkpointed into the database file (our read lock moved past the
    /// start of the WAL without a restart), so the file is no longer the database as of the start of this WAL
    /// index, which is what a snapshot filed under the index must hold.
    index_backfilled: bool,
    /// The database file, opened once for snapshots. POSIX drops every lock a process holds on a file when any
    /// descriptor of it is closed, so opening and closing the database ourselves would silently release SQLite's
    /// locks (and our pin with them). Declared last so that it is closed after the connections.
    db_file: File,
    /// Device and inode of `db_file`, to tell whether `db_path` still names it.
    db_identity: (u64, u64),
    /// The WAL last copied to its end while another process's checkpoint held the write lock.
    seal: Option<Seal>,
    /// The sealed WAL whose next WAL, whatever its header, is proven to follow it directly.
    successor_of: Option<Seal>,
    /// Frames copied into memory under the write lock, to be staged once it is released, and whether they are the
    /// whole WAL.
    unstaged: Option<(copy::Tail, bool)>,
    /// After a checkpoint without the write lock that left the WAL behind, the WAL's size at which to try again.
    unlocked_retry_frames: u64,
    /// The checkpoint without the write lock under way.
    rounds: Option<Rounds>,
    /// Where the last checkpoint without the write lock sealed the WAL: nothing to do until the application writes.
    sealed_at: Option<Pos>,
    /// Taking the write lock gave up because another process's checkpoint held it.
    checkpointer_waiting: bool,
    /// Where the WAL was last synced up to before a checkpoint (see [`Shipper::sync_before_locking`]).
    files_synced_at: Option<Pos>,
    /// The lock table in the `-shm` file. Declared last, like `db_file`, and for the same reason.
    app: Arc<AppLocks>,
}

/// Check that `file` holds a SQLite database (or is still empty).
fn check_sqlite_header(file: &File, path: &Path) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match file.read_at(&mut head[n..], n as u64).at(path)? {
            0 => break,
            k => n += k,
        }
    }
    if n == 0 || (n == 16 && &head == SQLITE_HEADER) {
        Ok(())
    } else {
        Err(Error::NotADatabase {
            path: path.to_owned(),
            reason: "the file does not start with the SQLite header".into(),
        })
    }
}

impl Shipper {
    pub fn open(db_path: &Path, state_dir: &Path, spool: Arc<Spool>, policy: CheckpointPolicy) -> Result<Self> {
        let db_file = File::open(db_path).at(db_path)?;
        check_sqlite_header(&db_file, db_path)?;
        let db_identity = file_identity(&db_file.metadata().at(db_path)?);
        let open = || -> Result<Connection> {
            let c = Connection::open_with_flags(
                db_path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .db(db_path)?;
            c.busy_timeout(Duration::from_secs(5)).db(db_path)?;
            // Our connections never checkpoint on their own: checkpoints happen only where we decide.
            c.pragma_update(None, "wal_autocheckpoint", 0).db(db_path)?;
            Ok(c)
        };
        let pin = open()?;
        let mode: String =
            pin.query_row("PRAGMA journal_mode = wal", [], |r| r.get(0)).map_err(|e| match e.sqlite_error_code() {
                Some(ErrorCode::NotADatabase) => {
                    Error::NotADatabase { path: db_path.to_owned(), reason: e.to_string() }
                }
                _ => Error::Sqlite { path: db_path.to_owned(), source: e },
            })?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Wal {
                path: db_path.to_owned(),
                message: format!("could not switch the database to WAL mode (journal_mode is {mode})"),
            });
        }
        let spare = open()?;
        let lock = open()?;
        // A restart written by this connection truncates the WAL file to about `min_page_count` frames, which bounds
        // the disk the WAL keeps without making the application grow the file again after every checkpoint.
        let page_size: i64 = lock.query_row("PRAGMA page_size", [], |r| r.get(0)).db(db_path)?;
        let limit = (policy.min_page_count as i64).saturating_mul(page_size + wal::FRAME_HEADER_SIZE as i64);
        lock.pragma_update(None, "journal_size_limit", limit).db(db_path)?;
        // Its commits change nothing (they only make it restart the WAL): they need no fsync while the application waits.
        lock.pragma_update(None, "synchronous", "NORMAL").db(db_path)?;
        let ckpt = open()?;
        // The read of `journal_mode` above made SQLite create the `-shm` file.
        let app = Arc::new(AppLocks::open(db_path)?);
        let background = Checkpointer::start(open()?, db_path.to_owned()).at(db_path)?;
        let state = StateFile::new(state_dir.join("position.json"));
        let position = state.load()?;
        Ok(Self {
            wal_path: wal::wal_path(db_path),
            db_path: db_path.to_owned(),
            policy,
            pin,
            spare,
            lock,
            ckpt,
            background,
            pinned: false,
            locked: false,
            lock_taken: Instant::now(),
            lock_holds: Vec::new(),
            state,
            position,
            spool,
            last_checkpoint: Instant::now(),
            idle_mark: None,
            prepared: None,
            hold_restart_frame: true,
            index_backfilled: true,
            db_file,
            db_identity,
            seal: None,
            successor_of: None,
            unstaged: None,
            unlocked_retry_frames: 0,
            rounds: None,
            sealed_at: None,
            checkpointer_waiting: false,
            files_synced_at: None,
            app,
        })
    }

    #[cfg(any(test, feature = "test-utils"))]
    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Copy whatever has been committed since the last call, then checkpoint if the policy says so.
    pub fn sync(&mut self) -> Result<SyncReport> {
        let mut report = self.sync_wal()?;
        self.report_lock_holds(&mut report);
        Ok(report)
    }

    fn sync_wal(&mut self) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        self.ensure_still_at_path()?;
        self.pin()?;
        let header = self.read_wal_header()?;
        // After a clean close, SQLite may have checkpointed and deleted the WAL as the last connection went away.
        // If the database file is exactly as we left it, nothing was checkpointed since: the next WAL continues
        // the generation.
        let clean_close = self.position.as_mut().and_then(|p| p.clean_close.take());
        if let (Some(stamp), Some(p)) = (clean_close, &self.position)
            && stamp == FileStamp::of(&self.db_file).at(&self.db_path)?
            && header.is_none_or(|h| h != p.header && !p.header.is_followed_by(&h))
        {
            let Some(h) = header else {
                // No WAL yet: keep waiting for the application's first write, as long as the file stays unchanged.
                let p = self.position_mut()?;
                p.clean_close = Some(stamp);
                report.position = Some((p.generation.clone(), p.pos, p.snapshot_at));
                return Ok(report);
            };
            let p = self.position_mut()?;
            p.pos = Pos { index: p.pos.index + 1, offset: 0 };
            p.header = h;
            p.checksum = h.checksum;
            self.save()?;
            tracing::info!(index = p_index(&self.position), "continuing the generation after a clean shutdown");
        }
        let header = self.read_wal_header()?;
        let unchanged = matches!((&self.position, header), (Some(p), Some(h)) if h == p.header);
        let reason = if unchanged {
            // A due checkpoint copies the WAL under the write lock anyway: one segment per sync, not two.
            let copied = self.maybe_checkpoint(&mut report)?;
            match if copied { Ok(()) } else { self.ship(&mut report) } {
                Ok(()) => None,
                Err(ShipError::Mismatch) => Some("the WAL no longer matches the replicated position"),
                Err(ShipError::Other(e)) => return Err(e),
            }
        } else {
            match (&self.position, header) {
                (None, _) => Some("no saved replication position"),
                // Emptied by a TRUNCATE checkpoint we stepped aside for: the next write starts the next index.
                (Some(_), None) if self.sealed_and_emptied() => None,
                (Some(_), None) => Some("the WAL was removed or truncated while litecar was not watching it"),
                (Some(p), Some(h)) if p.header.is_followed_by(&h) || self.is_proven_successor(&h) => {
                    match self.follow_restart(h, &mut report)? {
                        Some(Restart::Followed) => None,
                        Some(Restart::Lost(why)) => Some(why),
                        // The application holds the write lock; try again on the next event.
                        None => return Ok(report),
                    }
                }
                (Some(_), Some(_)) => Some("the WAL was restarted more than once between two reads"),
            }
        };
        if let Some(reason) = reason {
            tracing::debug!(
                reason, position = ?self.position.as_ref().map(|p| (p.header, p.pos)),
                wal = ?header, seal = ?self.seal, successor_of = ?self.successor_of, "the WAL cannot be followed"
            );
            self.start_generation(reason, &mut report)?;
        }
        if !unchanged {
            self.maybe_checkpoint(&mut report)?;
        }
        report.position = self.position.as_ref().map(|p| (p.generation.clone(), p.pos, p.snapshot_at));
        Ok(report)
    }

    /// A replica lost what it needs to restore a generation (an object lost from the spool, or the replica's own
    /// copy): nothing can fill that hole, so a restore of the latest state would stop short of it. If the current
    /// generation is among them, start a new one (with its snapshot); losses in older generations only cost their
    /// history.
    pub fn objects_lost(&mut self, lost: &[Loss]) -> Result<SyncReport> {
        let mut report = self.sync()?;
        let current = self.position.as_ref().map(|p| p.generation.clone());
        let Some(loss) = lost.iter().find(|l| Some(l.generation()) == current.as_ref()) else {
            return Ok(report);
        };
        self.start_generation(&loss.to_string(), &mut report)?;
        report.position = self.position.as_ref().map(|p| (p.generation.clone(), p.pos, p.snapshot_at));
        self.report_lock_holds(&mut report);
        Ok(report)
    }

    /// Whether a background checkpoint is copying frames right now.
    #[cfg(any(test, feature = "test-utils"))]
    pub fn checkpoint_in_background(&self) -> bool {
        self.background.is_running()
    }

    /// Shut down: copy the last commits while holding the write lock, then close our connections with that lock
    /// still held by the last one, so that if its close checkpoints (and deletes) the WAL, that checkpoint holds
    /// nothing we have not copied. A stamp of the database file afterwards lets the next start continue the
    /// generation if the WAL is gone but the file is unchanged.
    pub fn close(mut self) -> Result<()> {
        // Its connection must be gone before ours close: the last connection to close is the one that checkpoints.
        self.background.stop();
        // The WAL may be checkpointed and deleted as we close: everything in it must be in the spool first.
        self.hold_restart_frame = false;
        let locked = self.try_write_lock(self.policy.lock_timeout * 5)?;
        if locked {
            let current = self.position.as_ref().map(|p| p.header);
            if current.is_some() && self.read_wal_header()? == current {
                match self.ship(&mut SyncReport::default()) {
                    Ok(()) | Err(ShipError::Mismatch) => {}
                    Err(ShipError::Other(e)) => {
                        tracing::warn!(error = %e, "final copy failed")
                    }
                }
            }
        }
        self.unpin()?;
        let close = |c: Connection| c.close().map_err(|(_, e)| e);
        close(std::mem::replace(&mut self.pin, Connection::open_in_memory().db(&self.db_path)?)).db(&self.db_path)?;
        close(std::mem::replace(&mut self.spare, Connection::open_in_memory().db(&self.db_path)?)).db(&self.db_path)?;
        close(std::mem::replace(&mut self.ckpt, Connection::open_in_memory().db(&self.db_path)?)).db(&self.db_path)?;
        // Closing rolls back the empty write transaction and releases the lock as the connection goes.
        close(std::mem::replace(&mut self.lock, Connection::open_in_memory().db(&self.db_path)?)).db(&self.db_path)?;
        self.locked = false;
        if locked && self.position.is_some() {
            let stamp = FileStamp::of(&self.db_file).at(&self.db_path)?;
            self.position_mut()?.clean_close = Some(stamp);
            self.save()?;
        }
        Ok(())
    }

    fn position_ref(&self) -> Result<&Position> {
        self.position.as_ref().ok_or_else(|| no_position(&self.wal_path))
    }

    fn position_mut(&mut self) -> Result<&mut Position> {
        self.position.as_mut().ok_or_else(|| no_position(&self.wal_path))
    }

    /// After a delete of the database or a rename over it, the application writes to another file than ours, and
    /// copying ours on would hide that.
    fn ensure_still_at_path(&self) -> Result<()> {
        match std::fs::metadata(&self.db_path) {
            Ok(m) if file_identity(&m) == self.db_identity => Ok(()),
            Ok(_) => Err(Error::Replaced { path: self.db_path.clone() }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Error::Replaced { path: self.db_path.clone() }),
            Err(e) => Err(Error::Io { path: self.db_path.clone(), source: e }),
        }
    }

    fn save(&self) -> Result<()> {
        match &self.position {
            Some(p) => self.state.save(p),
            None => Ok(()),
        }
    }
}

/// The shipper was asked to go on from a position it does not have (a generation always starts with one).
fn no_position(wal_path: &Path) -> Error {
    Error::Wal { path: wal_path.to_owned(), message: "no replication position".into() }
}

fn file_identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

fn p_index(p: &Option<Position>) -> u32 {
    p.as_ref().map_or(0, |p| p.pos.index)
}

fn with_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).at(dir),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
