//! Copying the WAL: whole committed transactions from the replicated position on, validated and compressed into the
//! spool as one segment per sync.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::cooperate::{Seal, frames, salt_bytes};
use super::{Shipper, SyncReport, with_parent};
use crate::compress::Lz4Writer;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{AtomicFile, write_atomically};
use crate::layout::Pos;
use crate::spool::SpoolKey;
use crate::state::Position;
use crate::wal::{self, Checksum, Committed, WAL_HEADER_SIZE, WalHeader};

/// Largest WAL tail read into memory while the application's checkpoint waits; a larger one is staged first.
const TAIL_IN_MEMORY: u64 = 32 << 20;

/// Committed frames read from the WAL, to be staged once the application's checkpoint no longer waits.
pub(super) struct Tail {
    pub(super) header: WalHeader,
    pub(super) start: u64,
    pub(super) seed: Checksum,
    pub(super) committed: Committed,
    pub(super) bytes: Vec<u8>,
}

impl Shipper {
    /// Open the WAL by its path, `None` if there is none, as long as the database's path still names our file. That is
    /// checked once the WAL is open: an application that swaps another database in by rename can only create that
    /// file's WAL after the rename, so if the database is still ours then, so is the WAL we opened. Without it, a
    /// rename in the middle of a sync could have the new file's frames copied into the old file's generation.
    pub(super) fn open_wal(&self) -> Result<Option<File>> {
        match self.open_existing_wal() {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            opened => opened.map(Some),
        }
    }

    /// [`Shipper::open_wal`], with a missing WAL as the error it is when we are about to copy from it.
    pub(super) fn open_existing_wal(&self) -> Result<File> {
        let f = File::open(&self.wal_path).at(&self.wal_path)?;
        self.ensure_still_at_path()?;
        Ok(f)
    }

    pub(super) fn read_wal_header(&self) -> Result<Option<WalHeader>> {
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
    pub(super) fn ship(&mut self, report: &mut SyncReport) -> Result<(), ShipError> {
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

    /// [`Shipper::ship`], with a WAL that no longer matches the position as `false`: the next sync deals with it.
    pub(super) fn ship_matching(&mut self, report: &mut SyncReport) -> Result<bool> {
        match self.ship(report) {
            Ok(()) => Ok(true),
            Err(ShipError::Mismatch) => Ok(false),
            Err(ShipError::Other(e)) => Err(e),
        }
    }

    /// Copy `[start, committed.end)` of the WAL (with the header first when the position is at 0) into the spool as
    /// one segment, re-validating the checksum chain while copying, then advance and persist the position.
    pub(super) fn stage_segment(
        &mut self,
        header: &WalHeader,
        start: u64,
        seed: Checksum,
        committed: wal::Committed,
        report: &mut SyncReport,
    ) -> Result<()> {
        self.stage_segment_from(header, start, seed, committed, None, report)
    }

    /// [`Shipper::stage_segment`], from `bytes` (the WAL from `start` on, read earlier) instead of the file when given.
    pub(super) fn stage_segment_from(
        &mut self,
        header: &WalHeader,
        start: u64,
        seed: Checksum,
        committed: wal::Committed,
        bytes: Option<&[u8]>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let p = self.position_ref()?;
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
            let len = committed.end - start;
            let copied = match bytes {
                Some(b) => wal::scan_with(&mut b.take(len), header, start, seed, |frame| enc.write_all(frame))?,
                None => {
                    let mut f = File::open(&wal_path)?;
                    f.seek(SeekFrom::Start(start))?;
                    let mut r = BufReader::with_capacity(1 << 20, f).take(len);
                    wal::scan_with(&mut r, header, start, seed, |frame| enc.write_all(frame))?
                }
            };
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
    pub(super) fn record_segment(
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
    /// Read the committed frames past our position into memory (a read from the page cache, where staging them
    /// takes fsyncs); `None` if they are more than [`TAIL_IN_MEMORY`] or the WAL no longer continues our position.
    pub(super) fn read_tail(&self) -> Result<Option<Tail>> {
        let p = self.position_ref()?;
        let header = p.header;
        let (start, seed) = shipping_start(p);
        if !frame_before_matches(&self.wal_path, &header, start, seed)? {
            return Ok(None);
        }
        let mut f = self.open_existing_wal()?;
        let len = f.metadata().at(&self.wal_path)?.len().saturating_sub(start);
        if len > TAIL_IN_MEMORY {
            return Ok(None);
        }
        f.seek(SeekFrom::Start(start)).at(&self.wal_path)?;
        let mut bytes = Vec::with_capacity(len as usize);
        f.take(TAIL_IN_MEMORY).read_to_end(&mut bytes).at(&self.wal_path)?;
        let committed = wal::scan(&mut bytes.as_slice(), &header, start, seed).at(&self.wal_path)?;
        bytes.truncate((committed.end - start) as usize);
        Ok(Some(Tail { header, start, seed, committed, bytes }))
    }

    pub(super) fn stage_tail(&mut self, t: Tail, report: &mut SyncReport) -> Result<()> {
        if t.committed.end > t.start {
            self.stage_segment_from(&t.header, t.start, t.seed, t.committed, Some(&t.bytes), report)?;
        }
        Ok(())
    }

    /// With the write lock held: copy everything committed past our position into memory, to be staged by
    /// [`Shipper::stage_locked_copy`] once the lock is released, so that the application waits for a read from the
    /// page cache and not for the spool's compression and fsyncs (a tail too large for memory is staged at once).
    /// `false` if the WAL no longer continues our position.
    pub(super) fn copy_locked(&mut self, report: &mut SyncReport) -> Result<bool> {
        // Left over from a copy whose lock was released on an error path: staged first, so that it is not lost.
        self.stage_locked_copy(report)?;
        let Some(t) = self.read_tail()? else { return self.ship_matching(report) };
        // Nothing can be appended while we hold the write lock: the copy is the whole WAL if the WAL-index agrees.
        let whole = self.app.index_view()?.is_some_and(|v| {
            v.salt == salt_bytes(&t.header) && u64::from(v.max_frame) == frames(&t.header, t.committed.end)
        });
        self.unstaged = Some((t, whole));
        Ok(true)
    }

    /// Stage what [`Shipper::copy_locked`] read into memory. The read lock was moved to the WAL's end before the write
    /// lock was released and has been held since, so the WAL can only have been restarted right there, and at most
    /// once: copied whole, it is sealed at its end, and the next WAL, whatever its header, follows it directly.
    pub(super) fn stage_locked_copy(&mut self, report: &mut SyncReport) -> Result<()> {
        let Some((t, whole)) = self.unstaged.take() else { return Ok(()) };
        let Some(p) = &self.position else { return Ok(()) };
        if p.header != t.header || shipping_start(p) != (t.start, t.seed) {
            // The position moved on since (the frames were copied another way).
            return Ok(());
        }
        // Our own restart frame while the database is idle waits in the WAL, as in `ship`.
        let idle = self.hold_restart_frame
            && p.pos.offset == 0
            && self.idle_mark == Some(Pos { index: p.pos.index, offset: t.committed.end });
        if idle {
            return Ok(());
        }
        let (header, end) = (t.header, t.committed.end);
        if let Err(e) = self.stage_tail(t, report) {
            self.seal = None;
            self.successor_of = None;
            return Err(e);
        }
        if whole && self.pinned && self.position.as_ref().is_some_and(|p| p.header == header && p.pos.offset == end) {
            let seal = Seal { header, end };
            self.seal = Some(seal);
            self.successor_of = Some(seal);
        }
        Ok(())
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

pub(super) enum ShipError {
    Mismatch,
    Other(Error),
}

impl From<Error> for ShipError {
    fn from(e: Error) -> Self {
        ShipError::Other(e)
    }
}

/// Whether the frame that ends at `end` is the one of the WAL described by `header` whose running checksum is
/// `checksum` (trivially true at the header's end).
pub(super) fn frame_before_matches(wal_path: &Path, header: &WalHeader, end: u64, checksum: Checksum) -> Result<bool> {
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

pub(super) fn shipping_start(p: &Position) -> (u64, Checksum) {
    if p.pos.offset == 0 { (WAL_HEADER_SIZE, p.header.checksum) } else { (p.pos.offset, p.checksum) }
}

/// How far the WAL file has been written over by the WAL that `header` starts: the end of the contiguous run of
/// frames carrying its salts (valid or not, since even a frame that fails its checksum has overwritten the bytes).
pub(super) fn overwritten_extent(wal_path: &Path, header: &WalHeader) -> Result<u64> {
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
