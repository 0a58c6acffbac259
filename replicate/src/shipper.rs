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

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::checkpointer::Checkpointer;
use crate::compress::Lz4Writer;
use crate::error::{Error, IoContext, Result, SqlContext};
use crate::fsutil::{AtomicFile, write_atomically};
use crate::layout::{Generation, MAX_INDEX, Pos};
use crate::spool::{Loss, Spool, SpoolKey};
use crate::state::{FileStamp, Position, StateFile};
use crate::wal::{self, Checksum, WAL_HEADER_SIZE, WalHeader};

pub const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";
/// A snapshot is due once the WAL shipped since the last one exceeds this many times the database's size.
pub const SNAPSHOT_WAL_FACTOR: u64 = 4;

#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// PASSIVE checkpoint once the current WAL holds this many frames.
    pub min_page_count: u64,
    /// Past this many frames in the WAL file, also restart and shrink the WAL (never by blocking the application).
    pub max_page_count: u64,
    /// PASSIVE checkpoint at least this often while there are new frames.
    pub interval: Duration,
    /// How long a checkpoint may wait for the application's write transaction to finish. Our own hold on the write
    /// lock lasts only for the final copy of a few frames and a PASSIVE checkpoint of them.
    pub lock_timeout: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            min_page_count: 1000,
            max_page_count: 10_000,
            interval: Duration::from_secs(60),
            lock_timeout: Duration::from_millis(200),
        }
    }
}

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
    /// Generation, position and last snapshot time after the call.
    pub position: Option<(Generation, Pos, SystemTime)>,
}

pub struct Shipper {
    db_path: PathBuf,
    wal_path: PathBuf,
    policy: CheckpointPolicy,
    pin: Connection,
    lock: Connection,
    ckpt: Connection,
    background: Checkpointer,
    pinned: bool,
    locked: bool,
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
}

/// Where [`Shipper::prepare_checkpoint`] left the read lock, and how many times in a row it did.
#[derive(Debug, Clone, Copy)]
struct Prepared {
    offset: u64,
    rounds: u32,
}

/// The checkpoint under the write lock copies what was written since the read lock last moved, with two fsyncs, while
/// the application waits (SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms…). Under heavy writes, the read
/// lock is moved and the background checkpoint rerun until that is at most this much.
const LOCKED_CHECKPOINT_BYTES: u64 = 1 << 20;
/// …but not more often than this in a row, so that a writer faster than the disk still gets checkpointed.
const MAX_PREPARE_ROUNDS: u32 = 8;

enum Restart {
    Followed,
    Lost(&'static str),
}

/// How often the write lock is tried while the application holds it.
const LOCK_POLL: Duration = Duration::from_micros(50);

std::thread_local! {
    /// Tries left for the write lock being taken on this (the shipper's) thread.
    static LOCK_TRIES_LEFT: std::cell::Cell<i32> = const { std::cell::Cell::new(0) };
}

fn poll_for_lock(attempt: i32) -> bool {
    if attempt >= LOCK_TRIES_LEFT.with(|t| t.get()) {
        return false;
    }
    std::thread::sleep(LOCK_POLL);
    true
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
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
        let lock = open()?;
        // A restart written by this connection truncates the WAL file to about `min_page_count` frames, which bounds
        // the disk the WAL keeps without making the application grow the file again after every checkpoint.
        let page_size: i64 = lock.query_row("PRAGMA page_size", [], |r| r.get(0)).db(db_path)?;
        let limit = (policy.min_page_count as i64).saturating_mul(page_size + wal::FRAME_HEADER_SIZE as i64);
        lock.pragma_update(None, "journal_size_limit", limit).db(db_path)?;
        let ckpt = open()?;
        let background = Checkpointer::start(open()?, db_path.to_owned()).at(db_path)?;
        let state = StateFile::new(state_dir.join("position.json"));
        let position = state.load()?;
        Ok(Self {
            wal_path: wal_path(db_path),
            db_path: db_path.to_owned(),
            policy,
            pin,
            lock,
            ckpt,
            background,
            pinned: false,
            locked: false,
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
        })
    }

    pub fn position(&self) -> Option<&Position> {
        self.position.as_ref()
    }

    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    /// Copy whatever has been committed since the last call, then checkpoint if the policy says so.
    pub fn sync(&mut self) -> Result<SyncReport> {
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
            tracing::info!(db = %self.db_path.display(), index = p_index(&self.position), "continuing the generation after a clean shutdown");
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
                (Some(_), None) => Some("the WAL was removed or truncated while litecar was not watching it"),
                (Some(p), Some(h)) if p.header.is_followed_by(&h) => match self.follow_restart(h, &mut report)? {
                    Some(Restart::Followed) => None,
                    Some(Restart::Lost(why)) => Some(why),
                    // The application holds the write lock; try again on the next event.
                    None => return Ok(report),
                },
                (Some(_), Some(_)) => Some("the WAL was restarted more than once between two reads"),
            }
        };
        if let Some(reason) = reason {
            self.start_generation(reason, &mut report)?;
        }
        if !unchanged {
            self.maybe_checkpoint(&mut report)?;
        }
        report.position = self.position.as_ref().map(|p| (p.generation.clone(), p.pos, p.snapshot_at));
        Ok(report)
    }

    /// Take a snapshot at the current WAL index (after copying everything committed so far).
    pub fn snapshot(&mut self) -> Result<SyncReport> {
        let mut report = self.sync()?;
        let Some(p) = &self.position else {
            return Ok(report);
        };
        let index = p.pos.index;
        if p.snapshot_index == index && p.wal_bytes_since_snapshot == 0 {
            // Nothing was written since this index's snapshot: it still stands.
            return Ok(report);
        }
        // A snapshot is filed under a WAL index whose database file is exactly the state the index starts from. Start
        // a fresh index first when frames of this one may be in the file, or when this index already has its snapshot
        // (the same bytes again, under the same key, would not shorten a restore by a single frame).
        if self.index_backfilled || p.snapshot_index == index {
            self.checkpoint(false, &mut report)?;
            if self.index_backfilled || p_index(&self.position) == index {
                tracing::debug!(db = %self.db_path.display(), "snapshot postponed: the WAL could not be restarted yet");
                return Ok(report);
            }
        }
        let Some(p) = &self.position else {
            return Ok(report);
        };
        let (generation, index, header) = (p.generation.clone(), p.pos.index, p.header);
        if self.stage_snapshot(&generation, index, &mut report)? && self.read_wal_header()? == Some(header) {
            let p = self.position_mut()?;
            p.snapshot_index = index;
            p.snapshot_at = SystemTime::now();
            p.wal_bytes_since_snapshot = 0;
            report.position = Some((p.generation.clone(), p.pos, p.snapshot_at));
            self.save()?;
        }
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
        Ok(report)
    }

    /// Whether a background checkpoint is copying frames right now.
    pub fn checkpoint_in_background(&self) -> bool {
        self.background.is_running()
    }

    /// Whether the WAL shipped since the last snapshot has grown past [`SNAPSHOT_WAL_FACTOR`] times the database, so
    /// a restore would replay more than that. A snapshot copies the whole database: at one database's worth of WAL,
    /// a database that mostly grows would have every byte it writes compressed and uploaded twice.
    pub fn snapshot_due_by_size(&self) -> bool {
        let db_size = std::fs::metadata(&self.db_path).map(|m| m.len()).unwrap_or(0);
        self.position.as_ref().is_some_and(|p| p.wal_bytes_since_snapshot > SNAPSHOT_WAL_FACTOR * db_size.max(4 << 20))
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
                        tracing::warn!(db = %self.db_path.display(), error = %e, "final copy failed")
                    }
                }
            }
        }
        self.unpin()?;
        let close = |c: Connection| c.close().map_err(|(_, e)| e);
        close(std::mem::replace(&mut self.pin, Connection::open_in_memory().db(&self.db_path)?)).db(&self.db_path)?;
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

    fn position_mut(&mut self) -> Result<&mut Position> {
        self.position
            .as_mut()
            .ok_or_else(|| Error::Wal { path: self.wal_path.clone(), message: "no replication position".into() })
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

    fn pin(&mut self) -> Result<()> {
        if !self.pinned {
            self.pin.execute_batch("BEGIN").db(&self.db_path)?;
            self.pin.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())).db(&self.db_path)?;
            self.pinned = true;
        }
        Ok(())
    }

    fn unpin(&mut self) -> Result<()> {
        if self.pinned {
            self.pin.execute_batch("COMMIT").db(&self.db_path)?;
            self.pinned = false;
        }
        Ok(())
    }

    /// Take the database's write lock, waiting at most `timeout` for the application's writer. `Ok(false)` if the
    /// application still holds it.
    fn try_write_lock(&mut self, timeout: Duration) -> Result<bool> {
        // SQLite's default busy handler sleeps 1, 2, 5, 10... ms between attempts; an application that commits in a
        // tight loop frees the write lock for microseconds between transactions and would never be caught. Poll
        // often instead: a try is one fcntl call.
        LOCK_TRIES_LEFT.with(|t| t.set((timeout.as_micros() / LOCK_POLL.as_micros()).max(1) as i32));
        self.lock.busy_handler(Some(poll_for_lock)).db(&self.db_path)?;
        match self.lock.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                self.locked = true;
                Ok(true)
            }
            Err(e) if is_busy(&e) => Ok(false),
            Err(e) => Err(Error::Sqlite { path: self.db_path.clone(), source: e }),
        }
    }

    fn write_unlock(&mut self) -> Result<()> {
        if self.locked {
            self.locked = false;
            self.lock.execute_batch("ROLLBACK").db(&self.db_path)?;
        }
        Ok(())
    }

    /// With the write lock held: commit a no-op (which restarts a fully checkpointed WAL), and leave the WAL pinned
    /// so that no one else can restart or truncate it once the commit releases the write lock.
    ///
    /// The read lock is moved before the commit, not after: in between, the application could write, checkpoint
    /// and restart the WAL twice, and the frames of the WAL in the middle would be lost to the replica (a new
    /// generation). Taken before the commit, on a fully checkpointed WAL, the read lock sits on the database file:
    /// that does not stop our commit's restart, which only waits for readers inside the WAL, but it stops every
    /// checkpoint from copying anything, so the new WAL can never be fully checkpointed, hence never restarted. On
    /// a WAL not fully checkpointed, it holds a snapshot inside the WAL, which stops any restart, ours included.
    fn touch_pinned(&mut self) -> Result<()> {
        let touched = self.unpin().and_then(|()| self.pin()).and_then(|()| self.touch_and_commit());
        if touched.is_err() {
            self.write_unlock()?;
        }
        touched
    }

    /// Commit a write that changes nothing (`user_version` set to its own value). It gives the WAL a frame, and if
    /// the WAL was fully checkpointed it makes this connection restart it.
    fn touch_and_commit(&mut self) -> Result<()> {
        let v: i64 = self.lock.query_row("PRAGMA user_version", [], |r| r.get(0)).db(&self.db_path)?;
        self.lock.pragma_update(None, "user_version", v).db(&self.db_path)?;
        self.locked = false;
        self.lock.execute_batch("COMMIT").db(&self.db_path)
    }

    /// Open the WAL by its path, `None` if there is none, as long as the database's path still names our file. That is
    /// checked once the WAL is open: an application that swaps another database in by rename can only create that
    /// file's WAL after the rename, so if the database is still ours then, so is the WAL we opened. Without it, a
    /// rename in the middle of a sync could have the new file's frames copied into the old file's generation.
    fn open_wal(&self) -> Result<Option<File>> {
        match self.open_existing_wal() {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            opened => opened.map(Some),
        }
    }

    /// [`Shipper::open_wal`], with a missing WAL as the error it is when we are about to copy from it.
    fn open_existing_wal(&self) -> Result<File> {
        let f = File::open(&self.wal_path).at(&self.wal_path)?;
        self.ensure_still_at_path()?;
        Ok(f)
    }

    fn read_wal_header(&self) -> Result<Option<WalHeader>> {
        let Some(mut f) = self.open_wal()? else {
            return Ok(None);
        };
        let mut buf = [0u8; WAL_HEADER_SIZE as usize];
        match f.read_exact(&mut buf) {
            Ok(()) => Ok(WalHeader::parse(&buf).ok()),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(Error::Io { path: self.wal_path.clone(), source: e }),
        }
    }

    /// Stage everything committed past the current position of the current WAL.
    fn ship(&mut self, report: &mut SyncReport) -> Result<(), ShipError> {
        let p = self.position.as_ref().ok_or(ShipError::Mismatch)?;
        let header = p.header;
        let (start, seed) = shipping_start(p);
        let key = SpoolKey::Segment { generation: p.generation.clone(), pos: p.pos };
        let mut f = self.open_existing_wal()?;
        // The frame just before our position must still be the one we shipped.
        if !frame_before_matches(&self.wal_path, &header, start, seed)? {
            return Err(ShipError::Mismatch);
        }
        f.seek(SeekFrom::Start(start)).at(&self.wal_path)?;
        if self.hold_restart_frame && p.pos.offset == 0 && self.idle_mark.is_some_and(|m| m.index == p.pos.index) {
            // Right after our own restart the WAL holds just our no-op commit: it changes no data, so it waits in
            // the WAL for the application's next write rather than costing an upload while the database is idle.
            let committed = wal::scan(&mut BufReader::new(&mut f), &header, start, seed).at(&self.wal_path)?;
            if self.idle_mark == Some(Pos { index: p.pos.index, offset: committed.end }) {
                return Ok(());
            }
            f.seek(SeekFrom::Start(start)).at(&self.wal_path)?;
        }
        // One pass: validate and compress together, holding back each transaction until its commit frame.
        let path = self.spool.path_for(&key);
        let created = SystemTime::now();
        let mut copy = OnePassCopy::new(&path, (p.pos.offset == 0).then(|| header.encode()));
        let committed =
            wal::scan_with(&mut BufReader::with_capacity(1 << 20, f), &header, start, seed, |frame| copy.frame(frame))
                .at(&path)?;
        if committed.end == start {
            return Ok(());
        }
        match copy.finish(committed.end - start).at(&path)? {
            Some(size) => self.record_segment(key, path, size, created, committed, report)?,
            // A transaction too large to hold back: copy the committed range in a second pass.
            None => self.stage_segment(&header, start, seed, committed, report)?,
        }
        Ok(())
    }

    /// Copy `[start, committed.end)` of the WAL (with the header first when the position is at 0) into the spool as
    /// one segment, re-validating the checksum chain while copying, then advance and persist the position.
    fn stage_segment(
        &mut self,
        header: &WalHeader,
        start: u64,
        seed: Checksum,
        committed: wal::Committed,
        report: &mut SyncReport,
    ) -> Result<()> {
        let p = self
            .position
            .as_ref()
            .ok_or_else(|| Error::Wal { path: self.wal_path.clone(), message: "no replication position".into() })?;
        let pos = p.pos;
        let key = SpoolKey::Segment { generation: p.generation.clone(), pos };
        let path = self.spool.path_for(&key);
        let created = SystemTime::now();
        let wal_path = self.wal_path.clone();
        let mut size = 0;
        with_parent(&path)?;
        write_atomically(&path, |out| {
            let mut enc = Lz4Writer::new(BufWriter::with_capacity(1 << 20, &mut *out));
            if pos.offset == 0 {
                enc.write_all(&header.encode())?;
            }
            let mut f = File::open(&wal_path)?;
            f.seek(SeekFrom::Start(start))?;
            let mut r = BufReader::with_capacity(1 << 20, f).take(committed.end - start);
            let copied = wal::scan_with(&mut r, header, start, seed, |frame| enc.write_all(frame))?;
            if copied.end != committed.end || copied.checksum != committed.checksum {
                return Err(io::Error::other("the WAL changed while it was being copied"));
            }
            enc.finish()?.into_inner().map_err(|e| e.into_error())?;
            size = out.metadata()?.len();
            Ok(())
        })
        .at(&path)?;
        self.record_segment(key, path, size, created, committed, report)
    }

    /// A segment is in the spool: advance and persist the position.
    fn record_segment(
        &mut self,
        key: SpoolKey,
        path: PathBuf,
        size: u64,
        created: SystemTime,
        committed: wal::Committed,
        report: &mut SyncReport,
    ) -> Result<()> {
        let p = self.position_mut()?;
        let shipped = committed.end - p.pos.offset;
        p.pos.offset = committed.end;
        p.checksum = committed.checksum;
        p.wal_bytes_since_snapshot += shipped;
        // Queued for upload before the position is saved: if saving fails (a full disk), the next sync goes on from
        // the position in memory, and a segment left out of the queue would be a hole in the replica. A stale saved
        // position only makes the next start stage the same key again.
        self.spool.insert(key, path, size, created);
        report.staged += 1;
        report.bytes += shipped;
        self.save()
    }

    /// The WAL was restarted once since we last read it. Under the write lock, recover the old WAL's committed tail
    /// if the new WAL has not overwritten it, then continue with the next index.
    fn follow_restart(&mut self, new: WalHeader, report: &mut SyncReport) -> Result<Option<Restart>> {
        if !self.try_write_lock(self.policy.lock_timeout)? {
            return Ok(None);
        }
        let outcome = self.recover_old_tail(new, report);
        if matches!(outcome, Ok(Restart::Followed)) {
            // Whoever restarted the WAL may have checkpointed some of the new one already.
            self.index_backfilled = true;
            // Re-take the read lock inside the new WAL while no one can write, so it stays pinned.
            let repin = self.unpin().and_then(|()| self.pin());
            self.write_unlock()?;
            repin?;
        } else {
            self.write_unlock()?;
        }
        outcome.map(Some)
    }

    fn recover_old_tail(&mut self, new: WalHeader, report: &mut SyncReport) -> Result<Restart> {
        if self.read_wal_header()? != Some(new) {
            return Ok(Restart::Lost("the WAL was restarted more than once between two reads"));
        }
        let p = self
            .position
            .as_ref()
            .ok_or_else(|| Error::Wal { path: self.wal_path.clone(), message: "no replication position".into() })?;
        let old = p.header;
        let (start, seed) = shipping_start(p);
        if p.pos.index >= MAX_INDEX {
            return Ok(Restart::Lost("the WAL index reached its maximum"));
        }
        let overwritten = overwritten_extent(&self.wal_path, &new)?;
        // The old WAL's tail is only readable if the new WAL has not reached our position and the file was not
        // truncated (TRUNCATE checkpoints, journal_size_limit) below it: the frame ending at our position must still
        // be the one we shipped.
        if overwritten > start || !frame_before_matches(&self.wal_path, &old, start, seed)? {
            return Ok(Restart::Lost("the WAL was restarted and overwritten before litecar copied its end"));
        }
        let mut f = self.open_existing_wal()?;
        f.seek(SeekFrom::Start(start)).at(&self.wal_path)?;
        let committed = wal::scan(&mut BufReader::with_capacity(1 << 20, f), &old, start, seed).at(&self.wal_path)?;
        if committed.end > start {
            tracing::debug!(db = %self.db_path.display(), bytes = committed.end - start, "copied the end of a restarted WAL");
            self.stage_segment(&old, start, seed, committed, report)?;
        }
        let p = self.position_mut()?;
        p.pos = Pos { index: p.pos.index + 1, offset: 0 };
        p.header = new;
        p.checksum = new.checksum;
        self.save()?;
        match self.ship(report) {
            Ok(()) => Ok(Restart::Followed),
            Err(ShipError::Mismatch) => Ok(Restart::Lost("the new WAL did not validate")),
            Err(ShipError::Other(e)) => Err(e),
        }
    }

    fn start_generation(&mut self, reason: &str, report: &mut SyncReport) -> Result<()> {
        tracing::info!(db = %self.db_path.display(), reason, "starting a new generation");
        // The generation starts with a WAL that holds a frame and that no one else can restart from here on.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.try_write_lock(self.policy.lock_timeout.max(Duration::from_millis(500)))? {
            if Instant::now() > deadline {
                return Err(Error::Wal {
                    path: self.db_path.clone(),
                    message: "could not take the write lock to start a generation: the application holds it".into(),
                });
            }
        }
        self.touch_pinned()?;
        let header = self.read_wal_header()?.ok_or_else(|| Error::Wal {
            path: self.wal_path.clone(),
            message: "no valid WAL header after a write".into(),
        })?;
        let generation = Generation::random();
        if !self.stage_snapshot(&generation, 0, report)? {
            return Err(Error::Wal {
                path: self.db_path.clone(),
                message: "the WAL restarted while the first snapshot was taken".into(),
            });
        }
        self.index_backfilled = true;
        self.position = Some(Position {
            generation: generation.clone(),
            pos: Pos { index: 0, offset: 0 },
            header,
            checksum: header.checksum,
            snapshot_index: 0,
            snapshot_at: SystemTime::now(),
            wal_bytes_since_snapshot: 0,
            clean_close: None,
        });
        self.save()?;
        report.new_generation = Some(generation.to_string());
        match self.ship(report) {
            Ok(()) => Ok(()),
            Err(ShipError::Mismatch) => Err(Error::Wal {
                path: self.wal_path.clone(),
                message: "the WAL changed while a new generation was started".into(),
            }),
            Err(ShipError::Other(e)) => Err(e),
        }
    }

    /// Stream the database file into the spool as a snapshot. Must be called while pinned: the pages a checkpoint
    /// may write meanwhile all come from the current WAL, which a restore replays on top. Returns false (and stages
    /// nothing) if the WAL restarted during the copy.
    fn stage_snapshot(&mut self, generation: &Generation, index: u32, report: &mut SyncReport) -> Result<bool> {
        let started = Instant::now();
        let before = self.read_wal_header()?;
        let key = SpoolKey::Snapshot { generation: generation.clone(), index };
        let path = self.spool.path_for(&key);
        let created = SystemTime::now();
        with_parent(&path)?;
        let mut size = 0;
        let mut db_file = &self.db_file;
        write_atomically(&path, |out| {
            let mut enc = Lz4Writer::new(BufWriter::with_capacity(1 << 20, &mut *out));
            db_file.seek(SeekFrom::Start(0))?;
            io::copy(&mut BufReader::with_capacity(1 << 20, &mut db_file), &mut enc)?;
            enc.finish()?.into_inner().map_err(|e| e.into_error())?;
            size = out.metadata()?.len();
            Ok(())
        })
        .at(&path)?;
        if self.read_wal_header()? != before {
            let _ = std::fs::remove_file(&path);
            return Ok(false);
        }
        self.spool.insert(key, path, size, created);
        report.staged += 1;
        report.snapshots += 1;
        report.snapshot_bytes += size;
        report.snapshot_seconds += started.elapsed().as_secs_f64();
        tracing::info!(db = %self.db_path.display(), %generation, index, size, "snapshot staged");
        Ok(true)
    }

    /// Prepare or complete a checkpoint when one is due; `true` if that copied the WAL under the write lock.
    fn maybe_checkpoint(&mut self, report: &mut SyncReport) -> Result<bool> {
        let Some(p) = &self.position else {
            return Ok(false);
        };
        let frame_size = p.header.frame_size();
        let frames = p.pos.offset.saturating_sub(WAL_HEADER_SIZE) / frame_size;
        let file_frames = std::fs::metadata(&self.wal_path)
            .map(|m| m.len().saturating_sub(WAL_HEADER_SIZE) / frame_size)
            .unwrap_or(0);
        if Some(p.pos) == self.idle_mark {
            // Only our own restart frame is in the WAL: nothing to checkpoint while the database is idle.
            return Ok(false);
        }
        let urgent = file_frames >= self.policy.max_page_count;
        let due = frames >= self.policy.min_page_count
            || (frames > 0 && self.last_checkpoint.elapsed() >= self.policy.interval);
        let prepared = self.prepared;
        if !(due || urgent) || (prepared.is_some() && self.background.is_running()) {
            return Ok(false);
        }
        // Copy what is new outside the write lock, so that holding it covers only the last few frames.
        if !self.ship_matching(report)? {
            return Ok(false);
        }
        match prepared {
            None => self.prepare_checkpoint(1, report),
            Some(p) => {
                let since = self.position.as_ref().map_or(0, |pos| pos.pos.offset.saturating_sub(p.offset));
                if since > LOCKED_CHECKPOINT_BYTES && p.rounds < MAX_PREPARE_ROUNDS {
                    self.prepare_checkpoint(p.rounds + 1, report)
                } else {
                    self.checkpoint(urgent, report)
                }
            }
        }
    }

    /// Move the read lock up to everything shipped, under the write lock so that nothing unshipped can be
    /// checkpointed and overwritten in between. Until now the read lock held the application's own checkpoints
    /// (SQLite's `wal_autocheckpoint`) back; from here they copy the shipped frames into the database themselves, in
    /// the application's process, and a background checkpoint copies what they leave; the checkpoint at the next due
    /// sync, under the write lock, has only the frames written since to copy. The caller has just shipped, so the
    /// write lock covers only what arrived since.
    fn prepare_checkpoint(&mut self, round: u32, report: &mut SyncReport) -> Result<bool> {
        if !self.try_write_lock(self.policy.lock_timeout)? {
            return Ok(false);
        }
        let moved = self.ship_and_repin_locked(report);
        let unlocked = self.write_unlock();
        let moved = match moved {
            Ok(m) => m,
            Err(e) => {
                self.pin()?;
                return Err(e);
            }
        };
        unlocked?;
        self.prepared =
            moved.then(|| Prepared { offset: self.position.as_ref().map_or(0, |p| p.pos.offset), rounds: round });
        self.index_backfilled |= moved;
        if moved {
            // Whatever the application's checkpoints leave, copied without blocking anyone.
            self.background.request();
        }
        Ok(moved)
    }

    /// PASSIVE checkpoint with the write lock held from the final copy through the checkpoint, so no frame can be
    /// checkpointed (and later overwritten) before it is copied. When the checkpoint completes, the WAL is restarted
    /// by our own connection under the write lock (a no-op commit), so the old WAL is known to be complete, its file
    /// shrinks to `journal_size_limit`, and the read lock we take next sits inside the new WAL.
    ///
    /// `true` if the WAL was copied under the write lock.
    pub fn checkpoint(&mut self, urgent: bool, report: &mut SyncReport) -> Result<bool> {
        let timeout = if urgent { self.policy.lock_timeout * 5 } else { self.policy.lock_timeout };
        self.prepared = None;
        if !self.try_write_lock(timeout)? {
            tracing::debug!(db = %self.db_path.display(), "checkpoint skipped: the application holds the write lock");
            return Ok(false);
        }
        let started = Instant::now();
        let result = self.checkpoint_locked(report);
        report.checkpoint_seconds += started.elapsed().as_secs_f64();
        let unlocked = self.write_unlock();
        let outcome = match result {
            Ok(c) => c,
            Err(e) => {
                self.pin()?;
                return Err(e);
            }
        };
        unlocked?;
        let Some(complete) = outcome else {
            self.pin()?;
            return Ok(false);
        };
        self.last_checkpoint = Instant::now();
        report.checkpointed = Some(if urgent { "truncate" } else { "passive" });
        if complete {
            self.restart_wal(report)?;
        }
        self.pin()?;
        Ok(true)
    }

    /// After a complete checkpoint (and with no read lock held): take the write lock, copy anything written since,
    /// and commit a no-op so that this connection restarts the WAL. Nothing can be appended to the old WAL between
    /// our last copy and the restart.
    fn restart_wal(&mut self, report: &mut SyncReport) -> Result<()> {
        if !self.try_write_lock(self.policy.lock_timeout)? {
            return Ok(());
        }
        let old = self.position.as_ref().map(|p| p.header);
        let shipped = match self.read_wal_header()? {
            h if h == old => match self.ship(report) {
                Ok(()) => true,
                Err(ShipError::Mismatch) => false,
                Err(ShipError::Other(e)) => {
                    self.write_unlock()?;
                    return Err(e);
                }
            },
            // The application restarted it first; the next sync follows that restart.
            _ => false,
        };
        if !shipped {
            return self.write_unlock();
        }
        // Only now, with the write lock held, move the read lock: a restart needs every reader out of the WAL, and
        // with the write lock ours is the only connection that can restart or truncate it.
        self.touch_pinned()?;
        let (Some(old), Some(new)) = (old, self.read_wal_header()?) else { return Ok(()) };
        let p = self.position_mut()?;
        if old.is_followed_by(&new) && p.pos.index < MAX_INDEX {
            // Our commit restarted the WAL, so the old one ended exactly where we stopped copying.
            p.pos = Pos { index: p.pos.index + 1, offset: 0 };
            p.header = new;
            p.checksum = new.checksum;
            self.save()?;
            // Our read lock, taken on the database file before the restart, lets nothing of the new WAL be
            // checkpointed.
            self.index_backfilled = false;
        }
        let frame_size = new.frame_size();
        self.idle_mark = self
            .position
            .as_ref()
            .map(|p| Pos { index: p.pos.index, offset: p.pos.offset.max(WAL_HEADER_SIZE) + frame_size });
        Ok(())
    }

    /// With the write lock held: copy the WAL, then move our read lock to the newest snapshot, so that it does not
    /// hold checkpoints back but still keeps anyone else from restarting or truncating the WAL once we let go of the
    /// write lock. `false` if the WAL could not be copied (a restart or rewrite the next sync deals with).
    fn ship_and_repin_locked(&mut self, report: &mut SyncReport) -> Result<bool> {
        let current = self.position.as_ref().map(|p| p.header);
        if self.read_wal_header()? != current {
            return Ok(false);
        }
        if !self.ship_matching(report)? {
            return Ok(false);
        }
        self.unpin()?;
        self.pin()?;
        Ok(true)
    }

    /// [`Shipper::ship`], with a WAL that no longer matches the position as `false`: the next sync deals with it.
    fn ship_matching(&mut self, report: &mut SyncReport) -> Result<bool> {
        match self.ship(report) {
            Ok(()) => Ok(true),
            Err(ShipError::Mismatch) => Ok(false),
            Err(ShipError::Other(e)) => Err(e),
        }
    }

    /// Copy the WAL and checkpoint it; `None` if it could not be copied (a restart or rewrite the next sync deals
    /// with), else whether the checkpoint completed.
    fn checkpoint_locked(&mut self, report: &mut SyncReport) -> Result<Option<bool>> {
        if !self.ship_and_repin_locked(report)? {
            return Ok(None);
        }
        // The application's own checkpoint may be running (it runs after its commits, outside the write lock), and
        // ours cannot run beside it; it has little left to copy once it cannot append, so wait for it briefly.
        let started = Instant::now();
        let (busy, log, done) = loop {
            let (busy, log, done): (i64, i64, i64) = self
                .ckpt
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .db(&self.db_path)?;
            if busy == 0 || started.elapsed() >= self.policy.lock_timeout {
                break (busy, log, done);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        self.index_backfilled = true;
        tracing::debug!(db = %self.db_path.display(), busy, log, done, "passive checkpoint");
        Ok(Some(busy == 0 && log == done))
    }
}

/// Largest transaction held back in memory while copying in one pass; larger ones take a second pass.
const ONE_PASS_TXN_LIMIT: usize = 4 << 20;

/// Compresses validated frames into a spool file as they are read, holding back the frames of the transaction in
/// progress until its commit frame arrives, so that the segment ends on a commit without reading the WAL twice. The
/// spool file is created at the first commit frame: a sync that finds nothing new writes nothing.
struct OnePassCopy<'a> {
    path: &'a Path,
    wal_header: Option<[u8; WAL_HEADER_SIZE as usize]>,
    pending: Vec<u8>,
    out: Option<Lz4Writer<BufWriter<AtomicFile>>>,
    written: u64,
    too_large: bool,
}

impl<'a> OnePassCopy<'a> {
    fn new(path: &'a Path, wal_header: Option<[u8; WAL_HEADER_SIZE as usize]>) -> Self {
        Self { path, wal_header, pending: Vec::new(), out: None, written: 0, too_large: false }
    }

    fn frame(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.too_large {
            return Ok(());
        }
        self.pending.extend_from_slice(frame);
        if wal::FrameHeader::parse(frame).commit_db_size == 0 {
            if self.pending.len() > ONE_PASS_TXN_LIMIT {
                self.too_large = true;
                self.pending = Vec::new();
            }
            return Ok(());
        }
        let out = match &mut self.out {
            Some(out) => out,
            None => {
                if let Some(dir) = self.path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut enc = Lz4Writer::new(BufWriter::with_capacity(1 << 20, AtomicFile::create(self.path)?));
                if let Some(h) = &self.wal_header {
                    enc.write_all(h)?;
                }
                self.out.insert(enc)
            }
        };
        out.write_all(&self.pending)?;
        self.written += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Commit the spool file, which must hold exactly `committed` bytes of frames; its size, or `None` when a
    /// transaction was too large to hold back and nothing was committed.
    fn finish(self, committed: u64) -> io::Result<Option<u64>> {
        if self.too_large {
            return Ok(None);
        }
        let Some(enc) = self.out else {
            return Err(io::Error::other("committed frames were found but none were copied"));
        };
        if self.written != committed {
            return Err(io::Error::other(format!(
                "copied {} bytes of frames, {committed} are committed",
                self.written
            )));
        }
        let mut file = enc.finish()?.into_inner().map_err(|e| e.into_error())?;
        let size = file.file().metadata()?.len();
        file.commit()?;
        Ok(Some(size))
    }
}

enum ShipError {
    Mismatch,
    Other(Error),
}

impl From<Error> for ShipError {
    fn from(e: Error) -> Self {
        ShipError::Other(e)
    }
}

fn file_identity(m: &std::fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (m.dev(), m.ino())
}

/// Whether the frame that ends at `end` is the one of the WAL described by `header` whose running checksum is
/// `checksum` (trivially true at the header's end).
fn frame_before_matches(wal_path: &Path, header: &WalHeader, end: u64, checksum: Checksum) -> Result<bool> {
    if end <= WAL_HEADER_SIZE {
        return Ok(true);
    }
    let mut f = File::open(wal_path).at(wal_path)?;
    let mut fh = [0u8; wal::FRAME_HEADER_SIZE as usize];
    f.seek(SeekFrom::Start(end - header.frame_size())).at(wal_path)?;
    if f.read_exact(&mut fh).is_err() {
        return Ok(false);
    }
    let fh = wal::FrameHeader::parse(&fh);
    Ok(fh.salt1 == header.salt1 && fh.salt2 == header.salt2 && fh.checksum == checksum)
}

fn p_index(p: &Option<Position>) -> u32 {
    p.as_ref().map_or(0, |p| p.pos.index)
}

fn shipping_start(p: &Position) -> (u64, Checksum) {
    if p.pos.offset == 0 { (WAL_HEADER_SIZE, p.header.checksum) } else { (p.pos.offset, p.checksum) }
}

/// How far the WAL file has been written over by the WAL that `header` starts: the end of the contiguous run of
/// frames carrying its salts (valid or not, since even a frame that fails its checksum has overwritten the bytes).
fn overwritten_extent(wal_path: &Path, header: &WalHeader) -> Result<u64> {
    let f = File::open(wal_path).at(wal_path)?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    r.seek(SeekFrom::Start(WAL_HEADER_SIZE)).at(wal_path)?;
    let mut frame = vec![0u8; header.frame_size() as usize];
    let mut end = WAL_HEADER_SIZE;
    while r.read_exact(&mut frame).is_ok() {
        let fh = wal::FrameHeader::parse(&frame);
        if fh.salt1 != header.salt1 || fh.salt2 != header.salt2 {
            break;
        }
        end += header.frame_size();
    }
    Ok(end)
}

fn with_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).at(dir),
        None => Ok(()),
    }
}

pub fn wal_path(db_path: &Path) -> PathBuf {
    let mut s = db_path.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(db: &Path) -> Connection {
        let c = Connection::open(db).expect("open");
        c.pragma_update(None, "journal_mode", "wal").expect("wal");
        c.pragma_update(None, "wal_autocheckpoint", 0).expect("autocheckpoint");
        c.execute_batch("CREATE TABLE IF NOT EXISTS t (x)").expect("schema");
        c
    }

    /// A database at `db` with one row, the application's connection to it, and a shipper that has copied that row.
    fn replicating_one_row(db: &Path) -> (Connection, Shipper) {
        let c = app(db);
        let dir = db.parent().expect("the database's directory");
        let spool = Arc::new(Spool::open(dir.join("spool"), 1).expect("spool"));
        let mut s = Shipper::open(db, dir, spool, CheckpointPolicy::default()).expect("shipper");
        s.sync().expect("first sync");
        c.execute("INSERT INTO t VALUES (1)", []).expect("insert");
        s.sync().expect("sync");
        (c, s)
    }

    /// Everything an application can do in the moment after our restart commit releases the write lock: commit,
    /// checkpoint with TRUNCATE, and again. Had our read lock been taken only after that moment, the second WAL's
    /// commit would be gone from every WAL, and only a new generation could cover it.
    #[test]
    fn the_wal_our_checkpoint_restarts_is_pinned_before_the_write_lock_is_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("a.db");
        let (c, mut s) = replicating_one_row(&db);
        let before = s.position().expect("position").clone();

        let mut report = SyncReport::default();
        assert!(s.try_write_lock(Duration::from_secs(1)).expect("lock"), "write lock");
        let complete = s.checkpoint_locked(&mut report);
        s.write_unlock().expect("unlock");
        assert_eq!(complete.expect("checkpoint"), Some(true), "the checkpoint copied the whole WAL");
        s.restart_wal(&mut report).expect("restart");
        let restarted = s.read_wal_header().expect("header").expect("a WAL");
        assert!(before.header.is_followed_by(&restarted), "our commit restarted the WAL");

        c.busy_timeout(Duration::from_millis(20)).expect("busy timeout");
        for x in [2, 3] {
            c.execute("INSERT INTO t VALUES (?1)", [x]).expect("insert");
            let (busy, _, _): (i64, i64, i64) = c
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .expect("application checkpoint");
            assert_eq!(busy, 1, "the application's TRUNCATE checkpoint got past our read lock");
        }
        assert_eq!(s.read_wal_header().expect("header"), Some(restarted), "the WAL was restarted again");
        let report = s.sync().expect("sync");
        assert_eq!(report.new_generation, None);
        let after = s.position().expect("position");
        assert_eq!((&after.generation, after.pos.index), (&before.generation, before.pos.index + 1));
    }

    /// An application swaps another database in by rename (removing the old WAL and shared memory first, as it must)
    /// and writes to it, in the middle of one of our syncs: the WAL now at the path is the new file's, and reading it
    /// says so instead of returning its header as ours.
    #[test]
    fn a_wal_read_after_the_database_was_swapped_by_rename_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("a.db");
        let (c, s) = replicating_one_row(&db);
        drop(c);

        let swapped_in = dir.path().join("b.db");
        drop(app(&swapped_in));
        for suffix in ["-wal", "-shm"] {
            std::fs::remove_file(format!("{}{suffix}", db.display())).expect("remove the old WAL files");
        }
        std::fs::rename(&swapped_in, &db).expect("swap the database in");
        let new_file = app(&db);
        new_file.execute("INSERT INTO t VALUES (2)", []).expect("write to the new file");
        assert!(wal_path(&db).exists(), "the new file has a WAL");

        let header = s.read_wal_header();
        assert!(matches!(header, Err(Error::Replaced { .. })), "{header:?}");
    }
}
