//! Getting out of the way of the application's own RESTART and TRUNCATE checkpoints.
//!
//! Such a checkpoint takes the write lock and then waits, for as long as its busy timeout, for every reader to leave
//! the WAL; our read lock never leaves on its own, so every writer of the application would wait behind it. Polled
//! every millisecond, [`Shipper::cooperate`] sees it waiting (the lock table says another process holds the
//! checkpoint and write locks), copies every frame still in the WAL (no one can append while it holds the write
//! lock), lets go of the read lock, and takes it again as soon as the checkpoint is over. The WAL copied to its end
//! in that moment is "sealed": when the checkpoint then restarts it (and TRUNCATE empties the file), the next sync
//! follows the restart in the same generation without needing the old WAL's bytes.
//!
//! The read lock is moved rather than released, so that the WAL can be restarted only where the copy ends. Where SQLite
//! places a moved read lock is its own choice, though, and under load it can land on the very lock the checkpoint
//! needs next; a checkpoint still holding the write lock after [`HOLD_MAX`] therefore gets the read lock released
//! outright. The WAL-index then tells, once the read lock is taken again, whether the WAL was restarted just once.

use std::time::{Duration, Instant};

use super::applocks::IndexView;
use super::copy::Tail;
use super::generation::Restart;
use super::{Shipper, SyncReport};
use crate::error::Result;
use crate::wal::{WAL_HEADER_SIZE, WalHeader};

/// How long we wait for the application's checkpoint to finish before taking the read lock again regardless.
const APP_CHECKPOINT_MAX: Duration = Duration::from_secs(1);
/// How long we keep a read lock, moved out of the checkpoint's way, while the checkpoint still holds the write lock.
/// A healthy checkpoint is through in milliseconds; one that is not may be waiting for the very lock we hold (SQLite
/// may place a moved read lock where the checkpoint needs it next), and then every writer of the application waits
/// with it. Past this, we let go of the read lock altogether, as if the WAL had not been copied.
const HOLD_MAX: Duration = Duration::from_millis(50);
/// How often its end is checked meanwhile.
const APP_CHECKPOINT_POLL: Duration = Duration::from_micros(100);
/// How often the read lock is moved again while a checkpoint we step aside for still holds the write lock.
const REHANDOVER: Duration = Duration::from_millis(2);

/// A WAL copied to its end while another process's checkpoint held the write lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Seal {
    pub(super) header: WalHeader,
    pub(super) end: u64,
}

impl Shipper {
    /// If another process's checkpoint holds the write lock (and so waits for our read lock, or soon will), step aside
    /// for it: copy the WAL to its end, release the read lock, wait for the checkpoint to finish and take the read
    /// lock again. Otherwise, seal the WAL if our own checkpoint without the write lock has just left it fully
    /// checkpointed (see `rounds`). `None` when there was nothing to do.
    pub fn cooperate(&mut self) -> Result<Option<SyncReport>> {
        let mut report = SyncReport::default();
        let acted = self.step_aside(&mut report)? || self.poll_rounds(&mut report)?;
        Ok(acted.then_some(report))
    }

    /// [`Shipper::cooperate`], adding to `report`; whether it stepped aside.
    pub(super) fn step_aside(&mut self, report: &mut SyncReport) -> Result<bool> {
        let seen = std::mem::take(&mut self.checkpointer_waiting);
        if !self.pinned {
            return Ok(false);
        }
        let Some(pid) = self.app.checkpointer_with_write_lock()? else {
            if seen {
                tracing::debug!("the checkpoint that held the write lock is over");
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
        // Whatever the copy did, the application must not wait on us: the read lock moves out of the way in any case,
        // and a WAL not copied is dealt with by the next sync (recovered from the old WAL, or a new generation).
        let (sealed, whole) = match copied {
            Ok(true) => (true, self.copy_is_whole(pid, tail.as_ref()).unwrap_or(false)),
            Ok(false) => (false, false),
            Err(e) => {
                tracing::warn!(error = %e, "copying the WAL before the application's checkpoint failed");
                (false, false)
            }
        };
        self.seal = if sealed { self.copy_end(tail.as_ref()) } else { None };
        // A copied WAL is stepped aside for by moving the read lock to its end without letting go of it. Nothing past
        // our old read lock could be checkpointed, and it sat at most where the copy ends, so the new one lets the WAL
        // be restarted only there, once (see `handover_shipped`): the WAL is sealed where the copy ends, even if the
        // application's other connections append to it meanwhile (they hold the write lock, not the checkpoint).
        let handed = sealed
            && match self.handover_pin() {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "moving the read lock for the application's checkpoint failed");
                    false
                }
            };
        let held = if handed { self.wait_holding_pin(started) } else { None };
        let (released, finished) = match held {
            Some((released, finished)) => {
                self.successor_of = self.seal;
                (released, finished)
            }
            None => {
                let held_for = started.elapsed();
                self.unpin()?;
                if handed {
                    tracing::debug!(
                        held_ms = held_for.as_secs_f64() * 1e3,
                        "the application's checkpoint still waits: letting go of the read lock"
                    );
                }
                let released = started.elapsed();
                let finished = self.wait_for_app_checkpoint();
                self.pin()?;
                self.prove_successor()?;
                (released, held_for + finished)
            }
        };
        self.index_backfilled = true;
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
            pid,
            sealed,
            whole,
            successor_proven = self.successor_of.is_some(),
            copied_bytes = report.bytes - bytes_before,
            released_after_ms = released.as_secs_f64() * 1e3,
            checkpoint_ms = finished.as_secs_f64() * 1e3,
            "stepped aside for the application's checkpoint"
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
                let followed = self.recover_old_tail(h, report).map(|r| matches!(r, Restart::Followed));
                // What the new WAL holds was read into memory: staged with the rest once the checkpoint goes on.
                if let Some((t, _)) = self.unstaged.take() {
                    *tail = Some(t);
                }
                followed
            }
            Ok(None) => Ok(self.sealed_and_emptied()),
            Ok(Some(_)) => Ok(false),
            Err(e) => Err(e),
        };
        self.hold_restart_frame = hold;
        result
    }

    /// Where our copy of the WAL ends: the tail read into memory, or else the position.
    fn copy_end(&self, tail: Option<&Tail>) -> Option<Seal> {
        let p = self.position.as_ref()?;
        Some(match tail {
            Some(t) if t.committed.end > t.start => Seal { header: t.header, end: t.committed.end },
            _ => Seal { header: p.header, end: p.pos.offset },
        })
    }

    /// Whether what we copied is the whole WAL as SQLite's WAL-index describes it, with the same process still holding
    /// the checkpoint and write locks. For the log: the process may be the application's, whose writer holds the
    /// write lock while another of its connections waits to checkpoint (locks are per process).
    fn copy_is_whole(&self, pid: i32, tail: Option<&Tail>) -> Result<bool> {
        let Some(Seal { header, end }) = self.copy_end(tail) else { return Ok(false) };
        let Some(view) = self.app.index_view()? else { return Ok(false) };
        let complete = view.salt == salt_bytes(&header) && u64::from(view.max_frame) == frames(&header, end)
            || view.max_frame == 0 && self.read_wal_header()?.is_none();
        Ok(complete && self.app.checkpointer_with_write_lock()? == Some(pid))
    }

    /// Wait, holding the read lock moved to the sealed WAL's end, until the checkpoint we step aside for is over or
    /// has restarted the WAL. That read lock lets the checkpoint copy the whole WAL; once it has, the read lock moves
    /// onto the database file, where it lets the checkpoint restart the WAL. Each move is a handover without a gap
    /// (see [`Shipper::handover_pin`]), repeated every [`REHANDOVER`] in case the last one could not take the lock it
    /// aimed for (SQLite falls back to another while the checkpoint briefly holds it). Anything appended meanwhile to
    /// the sealed WAL voids the seal.
    ///
    /// Returns when our read lock stopped standing in the checkpoint's way (measured from `started`), and how long
    /// the wait took; `None` if the checkpoint still holds the write lock after [`HOLD_MAX`].
    fn wait_holding_pin(&mut self, started: Instant) -> Option<(Duration, Duration)> {
        let waiting = Instant::now();
        let mut released = started.elapsed();
        let mut moved_at = Instant::now();
        let mut on_database = false;
        loop {
            if waiting.elapsed() >= HOLD_MAX {
                return None;
            }
            let Some(seal) = self.seal else { break };
            if let Ok(Some(view)) = self.app.index_view() {
                if view.salt != salt_bytes(&seal.header) {
                    // Restarted: the checkpoint is done with the WAL, and our read lock allowed exactly this restart.
                    break;
                }
                if u64::from(view.max_frame) > frames(&seal.header, seal.end) {
                    // The application writes: whatever holds its checkpoint back, it is not us. Our read lock stays
                    // where it is, which keeps the WAL from being checkpointed past our copy, hence from being
                    // restarted anywhere but at its end; the next sync copies the rest.
                    break;
                }
                let copied = view.backfilled == view.max_frame;
                if (copied && !on_database) || moved_at.elapsed() >= REHANDOVER {
                    match self.handover_pin() {
                        Ok(()) => {
                            moved_at = Instant::now();
                            if copied && !on_database {
                                on_database = true;
                                released = started.elapsed();
                            }
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "moving the read lock failed");
                        }
                    }
                }
            }
            match self.app.checkpointer_with_write_lock() {
                Ok(Some(_)) => std::thread::sleep(APP_CHECKPOINT_POLL),
                _ => break,
            }
        }
        Some((released, waiting.elapsed()))
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
                    tracing::debug!("frames were appended to the WAL after it was copied; it is not sealed");
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
pub(super) fn frames(header: &WalHeader, end: u64) -> u64 {
    end.saturating_sub(WAL_HEADER_SIZE) / header.frame_size()
}

/// The WAL-index shows the WAL of `old` restarted exactly once (SQLite adds one to the first salt) and still empty.
fn restarted_once(old: &WalHeader, view: &IndexView) -> bool {
    view.max_frame == 0 && view.salt[..4] == old.salt1.wrapping_add(1).to_be_bytes()
}

pub(super) fn salt_bytes(h: &WalHeader) -> [u8; 8] {
    let mut s = [0u8; 8];
    s[..4].copy_from_slice(&h.salt1.to_be_bytes());
    s[4..].copy_from_slice(&h.salt2.to_be_bytes());
    s
}
