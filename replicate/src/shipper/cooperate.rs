//! Getting out of the way of the application's own RESTART and TRUNCATE checkpoints.
//!
//! Such a checkpoint takes the write lock and then waits, for as long as its busy timeout, for every reader to leave
//! the WAL; our read lock never leaves on its own, so every writer of the application would wait behind it. Polled
//! every millisecond, [`Shipper::cooperate`] sees it waiting (the lock table says another process holds the
//! checkpoint and write locks), copies every frame still in the WAL (no one can append while it holds the write
//! lock), lets go of the read lock, and takes it again as soon as the checkpoint is over. The WAL copied to its end
//! in that moment is "sealed": when the checkpoint then restarts it (and TRUNCATE empties the file), the next sync
//! follows the restart in the same generation without needing the old WAL's bytes.

use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

use super::applocks::IndexView;
use super::copy::{frame_before_matches, shipping_start};
use super::generation::Restart;
use super::{Shipper, SyncReport};
use crate::error::{IoContext, Result};
use crate::wal::{self, Checksum, Committed, WAL_HEADER_SIZE, WalHeader};

/// How long we wait for the application's checkpoint to finish before taking the read lock again regardless.
const APP_CHECKPOINT_MAX: Duration = Duration::from_secs(1);
/// How often its end is checked meanwhile.
const APP_CHECKPOINT_POLL: Duration = Duration::from_micros(100);

/// Largest WAL tail read into memory while the application's checkpoint waits; a larger one is staged first.
const TAIL_IN_MEMORY: u64 = 32 << 20;

/// Committed frames read from the WAL, to be staged once the application's checkpoint no longer waits.
struct Tail {
    header: WalHeader,
    start: u64,
    seed: Checksum,
    committed: Committed,
    bytes: Vec<u8>,
}

/// A WAL copied to its end while another process's checkpoint held the write lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seal {
    pub(super) header: WalHeader,
    pub(super) end: u64,
}

impl Shipper {
    /// If another process's checkpoint holds the write lock (and so waits for our read lock, or soon will), step aside
    /// for it: copy the WAL to its end, release the read lock, wait for the checkpoint to finish and take the read
    /// lock again. `None` when there was nothing to step aside for.
    pub fn cooperate(&mut self) -> Result<Option<SyncReport>> {
        let mut report = SyncReport::default();
        Ok(self.step_aside(&mut report)?.then_some(report))
    }

    /// [`Shipper::cooperate`], adding to `report`; whether it stepped aside.
    pub(super) fn step_aside(&mut self, report: &mut SyncReport) -> Result<bool> {
        let seen = std::mem::take(&mut self.checkpointer_waiting);
        if !self.pinned {
            return Ok(false);
        }
        let Some(pid) = self.app.checkpointer_with_write_lock()? else {
            if seen {
                tracing::debug!(db = %self.db_path.display(), "the checkpoint that held the write lock is over");
            }
            return Ok(false);
        };
        // An empty WAL holds no checkpoint back (our read lock is then on the database file, and there is nothing to
        // copy or restart): the checkpoint we stepped aside for may still hold its locks while it finishes.
        if self.app.index_view()?.is_some_and(|v| v.max_frame == 0) {
            return Ok(false);
        }
        let started = Instant::now();
        let bytes_before = report.bytes;
        let mut tail = None;
        let copied = self.copy_to_the_end(&mut tail, report);
        // Whatever the copy did, the application must not wait on us: the read lock goes in any case, and a WAL not
        // proven complete is dealt with by the next sync (recovered from the old WAL, or a new generation).
        let sealed = match copied {
            Ok(true) => self.seal_if_complete(pid, tail.as_ref())?,
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(db = %self.db_path.display(), error = %e, "copying the WAL before the application's checkpoint failed");
                false
            }
        };
        if !sealed {
            self.seal = None;
        }
        self.unpin()?;
        let released = started.elapsed();
        let finished = self.wait_for_app_checkpoint();
        self.pin()?;
        self.index_backfilled = true;
        self.prove_successor()?;
        if let Some(tail) = tail {
            // Staged only now, with its fsyncs, so that the application waited only for the WAL to be read. If it
            // cannot be staged, the copy is not whole: the next sync finds the WAL restarted behind our position.
            if let Err(e) = self.stage_tail(tail, report) {
                self.seal = None;
                self.successor_of = None;
                return Err(e);
            }
        }
        report.app_waits.push(released.as_secs_f64());
        tracing::info!(
            db = %self.db_path.display(), pid, sealed, successor_proven = self.successor_of.is_some(),
            copied_bytes = report.bytes - bytes_before, released_after_ms = released.as_secs_f64() * 1e3,
            checkpoint_ms = finished.as_secs_f64() * 1e3, "stepped aside for the application's checkpoint"
        );
        report.position = self.position.as_ref().map(|p| (p.generation.clone(), p.pos, p.snapshot_at));
        Ok(true)
    }

    /// Copy every committed frame, following a restart first if the WAL was restarted since we last read it. The
    /// application's checkpoint holds the write lock, so our own is neither needed nor available. `false` if the WAL
    /// is not one we can continue (the next sync decides what to do).
    fn copy_to_the_end(&mut self, tail: &mut Option<Tail>, report: &mut SyncReport) -> Result<bool> {
        let Some(p) = &self.position else { return Ok(false) };
        let old = p.header;
        // Even our own idle restart frame: the checkpoint is about to restart or empty the WAL.
        let hold = std::mem::replace(&mut self.hold_restart_frame, false);
        let result = match self.read_wal_header() {
            Ok(Some(h)) if h == old => match self.read_tail() {
                Ok(Some(t)) => {
                    *tail = Some(t);
                    Ok(true)
                }
                Ok(None) => self.ship_matching(report),
                Err(e) => Err(e),
            },
            Ok(Some(h)) if old.is_followed_by(&h) || self.is_proven_successor(&h) => {
                self.recover_old_tail(h, report).map(|r| matches!(r, Restart::Followed))
            }
            Ok(None) => Ok(self.sealed_and_emptied()),
            Ok(Some(_)) => Ok(false),
            Err(e) => Err(e),
        };
        self.hold_restart_frame = hold;
        result
    }

    /// Read the committed frames past our position into memory (a read from the page cache, where staging them
    /// takes fsyncs); `None` if they are more than [`TAIL_IN_MEMORY`] or the WAL no longer continues our position.
    fn read_tail(&self) -> Result<Option<Tail>> {
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

    fn stage_tail(&mut self, t: Tail, report: &mut SyncReport) -> Result<()> {
        if t.committed.end > t.start {
            self.stage_segment_from(&t.header, t.start, t.seed, t.committed, Some(&t.bytes), report)?;
        }
        Ok(())
    }

    /// Whether what we copied is the whole WAL as SQLite's WAL-index describes it, with the same checkpointer still
    /// holding the write lock; if so, remember the WAL as sealed.
    fn seal_if_complete(&mut self, pid: i32, tail: Option<&Tail>) -> Result<bool> {
        let Some(p) = &self.position else { return Ok(false) };
        let (header, end) = match tail {
            Some(t) if t.committed.end > t.start => (t.header, t.committed.end),
            _ => (p.header, p.pos.offset),
        };
        let Some(view) = self.app.index_view()? else { return Ok(false) };
        let complete = view.salt == salt_bytes(&header) && u64::from(view.max_frame) == frames(&header, end)
            || view.max_frame == 0 && self.read_wal_header()?.is_none();
        if !complete || self.app.checkpointer_with_write_lock()? != Some(pid) {
            return Ok(false);
        }
        self.seal = Some(Seal { header, end });
        Ok(true)
    }

    /// Wait (without any lock of ours) until no other process holds the checkpoint lock, or until the checkpoint has
    /// restarted the WAL (it holds the write lock until it returns, so taking the read lock then is harmless, and as
    /// early as can be): taking the read lock while the checkpoint still has to copy or restart would stop it again.
    /// Anything appended meanwhile to the sealed WAL voids the seal.
    fn wait_for_app_checkpoint(&mut self) -> Duration {
        let started = Instant::now();
        while started.elapsed() < APP_CHECKPOINT_MAX {
            if let Some(seal) = self.seal
                && let Ok(Some(view)) = self.app.index_view()
            {
                if view.salt == salt_bytes(&seal.header) && u64::from(view.max_frame) > frames(&seal.header, seal.end) {
                    tracing::debug!(db = %self.db_path.display(), "frames were appended to the WAL after it was copied; it is not sealed");
                    self.seal = None;
                } else if restarted_once(&seal.header, &view) {
                    break;
                }
            }
            match self.app.checkpoint_running() {
                Ok(true) => std::thread::sleep(APP_CHECKPOINT_POLL),
                _ => break,
            }
        }
        started.elapsed()
    }

    /// With the read lock just taken again: whether the WAL that appears next is, whatever its header says, the one
    /// that directly follows the sealed WAL. SQLite writes a new WAL's header with the writing connection's own
    /// checkpoint count, and with fresh random salts if that connection never restarted a WAL itself, so after another
    /// connection's restart the header alone cannot tell one restart from several.
    ///
    /// The WAL-index tells: either the sealed WAL is still current and fully copied into the database (our read lock
    /// then sits on the database file, where it lets the next writer restart the WAL once but stops every checkpoint
    /// of the next WAL, hence any second restart), or it shows the WAL restarted once (first salt + 1) and still
    /// empty (the same then holds). Otherwise the next sync decides from the header alone.
    fn prove_successor(&mut self) -> Result<()> {
        self.successor_of = None;
        let Some(seal) = self.seal else { return Ok(()) };
        let Some(view) = self.app.index_view()? else { return Ok(()) };
        let unrestarted = view.salt == salt_bytes(&seal.header)
            && u64::from(view.max_frame) == frames(&seal.header, seal.end)
            && view.backfilled == view.max_frame;
        if unrestarted || restarted_once(&seal.header, &view) {
            self.successor_of = Some(seal);
        }
        Ok(())
    }

    /// Whether `new` is the WAL that directly follows the sealed one at our position (see [`Shipper::prove_successor`]).
    pub(super) fn is_proven_successor(&self, new: &WalHeader) -> bool {
        self.sealed_and_emptied() && self.successor_of == self.seal && self.seal.is_some_and(|s| s.header != *new)
    }

    /// The WAL at our position was copied to its end while another process's checkpoint held the write lock (and may
    /// since have been emptied by it): the next WAL continues from exactly there.
    pub(super) fn sealed_and_emptied(&self) -> bool {
        self.position.as_ref().is_some_and(|p| self.seal == Some(Seal { header: p.header, end: p.pos.offset }))
    }
}

/// Frames in a WAL copied up to `end`.
fn frames(header: &WalHeader, end: u64) -> u64 {
    end.saturating_sub(WAL_HEADER_SIZE) / header.frame_size()
}

/// The WAL-index shows the WAL of `old` restarted exactly once (SQLite adds one to the first salt) and still empty.
fn restarted_once(old: &WalHeader, view: &IndexView) -> bool {
    view.max_frame == 0 && view.salt[..4] == old.salt1.wrapping_add(1).to_be_bytes()
}

fn salt_bytes(h: &WalHeader) -> [u8; 8] {
    let mut s = [0u8; 8];
    s[..4].copy_from_slice(&h.salt1.to_be_bytes());
    s[4..].copy_from_slice(&h.salt2.to_be_bytes());
    s
}
