//! The checkpoint policy: when a checkpoint is due, and the lock-safe PASSIVE checkpoint under the write lock,
//! followed by our own restart of the WAL. By default a due checkpoint runs in rounds without the write lock (see
//! `rounds`), and the write lock is taken only when those cannot keep the WAL below `max_page_count` frames; the
//! PASSIVE checkpoints that run beside shipping live in `checkpointer`.

use std::time::{Duration, Instant};

use super::{Shipper, SyncReport};
use crate::error::{IoContext, Result, SqlContext};
use crate::layout::{MAX_INDEX, Pos};
use crate::wal::WAL_HEADER_SIZE;

#[derive(Debug, Clone)]
pub struct CheckpointPolicy {
    /// PASSIVE checkpoint once the current WAL holds this many frames.
    pub min_page_count: u64,
    /// Once the WAL holds this many frames and checkpoints without the write lock still leave it behind (the
    /// application never pauses long enough), the checkpoint takes the write lock for the few frames written since
    /// its last round, and restarts the WAL. A WAL file this large is shrunk by our own restart.
    pub max_page_count: u64,
    /// PASSIVE checkpoint at least this often while there are new frames.
    pub interval: Duration,
    /// How long a checkpoint may wait for the application's write transaction to finish. Our own hold on the write
    /// lock lasts only for the final copy of a few frames and a PASSIVE checkpoint of them.
    pub lock_timeout: Duration,
    /// Whether a due checkpoint below `max_page_count` takes the write lock to restart the WAL itself. By default it
    /// never does, so that an application without a busy timeout never meets litecar's write lock: the application's
    /// next writer restarts a fully checkpointed WAL instead.
    pub write_lock_below_max: bool,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            min_page_count: 1000,
            max_page_count: 10_000,
            interval: Duration::from_secs(60),
            lock_timeout: Duration::from_millis(200),
            write_lock_below_max: false,
        }
    }
}

/// Where [`Shipper::prepare_checkpoint`] left the read lock, and how many times in a row it did.
#[derive(Debug, Clone, Copy)]
pub(super) struct Prepared {
    offset: u64,
    rounds: u32,
}

/// The checkpoint under the write lock copies what was written since the read lock last moved, with two fsyncs, while
/// the application waits (SQLite's busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ms…). Under heavy writes, the read
/// lock is moved and the background checkpoint rerun until that is at most this much.
const LOCKED_CHECKPOINT_BYTES: u64 = 1 << 20;
/// …but not more often than this in a row, so that a writer faster than the disk still gets checkpointed.
const MAX_PREPARE_ROUNDS: u32 = 8;
/// How long a checkpoint under our write lock waits for another process's checkpoint to finish.
const APP_CHECKPOINT_GRACE: Duration = Duration::from_millis(5);

impl Shipper {
    /// Run, go on with or complete a checkpoint when one is due; `true` if that copied the WAL under the write lock.
    pub(super) fn maybe_checkpoint(&mut self, report: &mut SyncReport) -> Result<bool> {
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
        let due = frames >= self.policy.min_page_count.max(self.unlocked_retry_frames)
            || (frames > 0 && self.last_checkpoint.elapsed() >= self.policy.interval);
        if self.background.is_running() && (self.prepared.is_some() || self.rounds.is_some()) {
            return Ok(false);
        }
        if !self.policy.write_lock_below_max {
            // The WAL itself, not its file (which keeps its size when the application restarts the WAL), decides
            // whether the write lock is needed at last.
            let urgent = frames >= self.policy.max_page_count;
            if !(due || urgent || self.rounds.is_some()) || self.sealed_at == Some(p.pos) {
                return Ok(false);
            }
            let oversized = file_frames >= self.policy.max_page_count;
            return self.checkpoint_rounds(urgent, oversized, report);
        }
        let urgent = file_frames >= self.policy.max_page_count;
        let prepared = self.prepared;
        if !(due || urgent) {
            return Ok(false);
        }
        // Copy what is new outside the write lock, so that holding it covers only the last few frames.
        if !self.ship_matching(report)? {
            return Ok(false);
        }
        self.unlocked_retry_frames = 0;
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
    pub(super) fn prepare_checkpoint(&mut self, round: u32, report: &mut SyncReport) -> Result<bool> {
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
        if moved {
            self.stage_locked_copy(report)?;
        }
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
        self.rounds = None;
        self.sync_before_locking()?;
        if !self.try_write_lock(timeout)? {
            tracing::debug!("checkpoint skipped: the application holds the write lock");
            return Ok(false);
        }
        let started = Instant::now();
        let result = self.checkpoint_locked(report);
        let held = started.elapsed();
        report.checkpoint_seconds += held.as_secs_f64();
        let unlocked = self.write_unlock();
        tracing::debug!(held_ms = held.as_secs_f64() * 1e3, "checkpoint under the write lock");
        let outcome = match result {
            Ok(c) => c,
            Err(e) => {
                self.pin()?;
                return Err(e);
            }
        };
        unlocked?;
        self.stage_locked_copy(report)?;
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

    /// Make the checkpoint under the write lock cheap: wait for a background checkpoint to finish (ours could not
    /// run beside it), and sync the files (see [`Shipper::sync_files`]) unless an earlier sync, ours or the last
    /// round's checkpoint's, covers all but a round's worth of frames (see [`Shipper::round_step`]): its fsyncs would
    /// hold up the commits waiting to be shipped for next to nothing.
    pub(super) fn sync_before_locking(&mut self) -> Result<()> {
        let deadline = Instant::now() + self.policy.lock_timeout;
        while self.background.is_running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let covered = match (&self.position, self.files_synced_at) {
            (Some(p), Some(synced)) if synced.index == p.pos.index => {
                p.pos.offset.saturating_sub(synced.offset) / p.header.frame_size() < self.round_step()
            }
            _ => false,
        };
        if covered {
            return Ok(());
        }
        self.sync_files()
    }

    /// Sync the WAL and the database file before a checkpoint that may reach the end of the WAL. That checkpoint
    /// syncs both again, and its syncs then write only the frames appended since and the pages of those frames, not
    /// everything that the application's commits (with `synchronous` below FULL) and the checkpoints that stopped
    /// short of the WAL's end (SQLite syncs the database file only at the end) left to the page cache.
    pub(super) fn sync_files(&mut self) -> Result<()> {
        if let Some(wal) = self.open_wal()? {
            wal.sync_data().at(&self.wal_path)?;
        }
        self.db_file.sync_data().at(&self.db_path)?;
        self.files_synced_at = self.position.as_ref().map(|p| p.pos);
        tracing::debug!("synced the WAL and the database file before a checkpoint under the write lock");
        Ok(())
    }

    /// After a complete checkpoint (and with no read lock held): take the write lock, copy anything written since,
    /// and commit a no-op so that this connection restarts the WAL. Nothing can be appended to the old WAL between
    /// our last copy and the restart.
    pub(super) fn restart_wal(&mut self, report: &mut SyncReport) -> Result<()> {
        if !self.try_write_lock(self.policy.lock_timeout)? {
            return Ok(());
        }
        let old = self.position.as_ref().map(|p| p.header);
        let shipped = match self.read_wal_header()? {
            h if h == old => match self.copy_locked(report) {
                Ok(copied) => copied,
                Err(e) => {
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
        self.stage_locked_copy(report)?;
        // Our own commit follows the copy in the WAL: the copy no longer ends it.
        self.seal = None;
        self.successor_of = None;
        let (Some(old), Some(new)) = (old, self.read_wal_header()?) else { return Ok(()) };
        if old.is_followed_by(&new) && self.position_ref()?.pos.index < MAX_INDEX {
            // Our commit restarted the WAL, so the old one ended exactly where we stopped copying.
            self.rounds = None;
            let p = self.position_mut()?;
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

    /// With the write lock held: copy the WAL (into memory, staged once the lock is released), then move our read
    /// lock to the newest snapshot, so that it does not hold checkpoints back but still keeps anyone else from
    /// restarting or truncating the WAL anywhere but at its end once we let go of the write lock. `false` if the WAL
    /// could not be copied (a restart or rewrite the next sync deals with).
    pub(super) fn ship_and_repin_locked(&mut self, report: &mut SyncReport) -> Result<bool> {
        let current = self.position.as_ref().map(|p| p.header);
        if self.read_wal_header()? != current {
            return Ok(false);
        }
        if !self.copy_locked(report)? {
            return Ok(false);
        }
        self.handover_pin()?;
        Ok(true)
    }

    /// Copy the WAL and checkpoint it; `None` if it could not be copied (a restart or rewrite the next sync deals
    /// with), else whether the checkpoint completed.
    pub(super) fn checkpoint_locked(&mut self, report: &mut SyncReport) -> Result<Option<bool>> {
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
            // Only another process's checkpoint is worth waiting for (a reader of the application's is not going to
            // leave because we wait), and not for long: one that holds the checkpoint lock while we hold the write
            // lock may be a RESTART or TRUNCATE waiting for the write lock, which cannot finish until we let go.
            if busy == 0
                || started.elapsed() >= self.policy.lock_timeout.min(APP_CHECKPOINT_GRACE)
                || !self.app.checkpoint_running()?
            {
                break (busy, log, done);
            }
            std::thread::sleep(Duration::from_millis(2));
        };
        self.index_backfilled = true;
        tracing::debug!(busy, log, done, "passive checkpoint");
        let complete = busy == 0 && log == done;
        if complete && matches!(self.unstaged, Some((_, true))) {
            // Onto the database file: the WAL, copied whole, is sealed where the copy ends, and the application's next
            // writer can restart it even if it comes before our own restart.
            self.handover_pin()?;
        }
        Ok(Some(complete))
    }
}
