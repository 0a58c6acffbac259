//! Generations: following a WAL restart someone else made within the same generation, and starting a new generation
//! (with its snapshot) when the WAL's history can no longer be proven complete.

use std::io::{self, BufReader, BufWriter, Seek, SeekFrom};
use std::time::{Duration, Instant, SystemTime};

use super::cooperate::salt_bytes;
use super::copy::{ShipError, frame_before_matches, overwritten_extent, shipping_start};
use super::{Shipper, SyncReport, p_index, with_parent};
use crate::compress::Lz4Writer;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::write_atomically;
use crate::layout::{Generation, MAX_INDEX, Pos};
use crate::spool::SpoolKey;
use crate::state::Position;
use crate::wal::{self, WalHeader};

/// A snapshot is due once the WAL shipped since the last one exceeds this many times the database's size.
pub const SNAPSHOT_WAL_FACTOR: u64 = 4;

pub(super) enum Restart {
    Followed,
    Lost(&'static str),
}

impl Shipper {
    /// Take a snapshot at the current WAL index (after copying everything committed so far), restarting the WAL under
    /// the write lock first if need be.
    pub fn snapshot(&mut self) -> Result<SyncReport> {
        let mut report = self.snapshot_at_index_start(true)?;
        self.report_lock_holds(&mut report);
        Ok(report)
    }

    /// [`Shipper::snapshot`] when one is due by size: by default without ever taking the write lock (postponed until
    /// the application next restarts the WAL), since it is tried again after every sync until it succeeds.
    pub fn snapshot_by_size(&mut self) -> Result<SyncReport> {
        let mut report = self.snapshot_at_index_start(self.policy.write_lock_below_max)?;
        self.report_lock_holds(&mut report);
        Ok(report)
    }

    fn snapshot_at_index_start(&mut self, may_lock: bool) -> Result<SyncReport> {
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
        let untouched = self.index_backfilled && self.index_untouched()?;
        if (self.index_backfilled && !untouched) || p.snapshot_index == index {
            if !may_lock {
                tracing::debug!("snapshot postponed until the WAL restarts");
                return Ok(report);
            }
            self.checkpoint(false, &mut report)?;
            if self.index_backfilled || p_index(&self.position) == index {
                tracing::debug!("snapshot postponed: the WAL could not be restarted yet");
                return Ok(report);
            }
        }
        let Some(p) = &self.position else {
            return Ok(report);
        };
        let (generation, index, header) = (p.generation.clone(), p.pos.index, p.header);
        let recheck = self.index_backfilled;
        if self.stage_snapshot(&generation, index, recheck, &mut report)? && self.read_wal_header()? == Some(header) {
            let p = self.position_mut()?;
            p.snapshot_index = index;
            p.snapshot_at = SystemTime::now();
            p.wal_bytes_since_snapshot = 0;
            report.position = Some((p.generation.clone(), p.pos, p.snapshot_at));
            self.save()?;
        }
        Ok(report)
    }

    /// Whether the WAL shipped since the last snapshot has grown past [`SNAPSHOT_WAL_FACTOR`] times the database, so
    /// a restore would replay more than that. A snapshot copies the whole database: at one database's worth of WAL,
    /// a database that mostly grows would have every byte it writes compressed and uploaded twice.
    pub fn snapshot_due_by_size(&self) -> bool {
        let db_size = std::fs::metadata(&self.db_path).map(|m| m.len()).unwrap_or(0);
        self.position.as_ref().is_some_and(|p| p.wal_bytes_since_snapshot > SNAPSHOT_WAL_FACTOR * db_size.max(4 << 20))
    }

    /// The WAL was restarted once since we last read it. Under the write lock, recover the old WAL's committed tail
    /// if the new WAL has not overwritten it, then continue with the next index.
    pub(super) fn follow_restart(&mut self, new: WalHeader, report: &mut SyncReport) -> Result<Option<Restart>> {
        if self.sealed_and_emptied() && self.position.as_ref().is_some_and(|p| p.pos.index < MAX_INDEX) {
            // The old WAL was copied to its end, so nothing of it is left to recover under the write lock, and our
            // read lock (held since, or taken inside the new WAL) lets no one restart the WAL again: moved into the
            // new WAL without a gap, it keeps it in place until it is copied.
            self.handover_pin()?;
            if self.read_wal_header()? != Some(new) {
                return Ok(None);
            }
            self.index_backfilled = true;
            self.advance_to(new)?;
            return Ok(Some(match self.ship(report) {
                Ok(()) => Restart::Followed,
                Err(ShipError::Mismatch) => Restart::Lost("the new WAL did not validate"),
                Err(ShipError::Other(e)) => return Err(e),
            }));
        }
        if !self.try_write_lock(self.policy.lock_timeout)? {
            return Ok(None);
        }
        let outcome = self.recover_old_tail(new, report);
        if matches!(outcome, Ok(Restart::Followed)) {
            // Whoever restarted the WAL may have checkpointed some of the new one already.
            self.index_backfilled = true;
            // Re-take the read lock inside the new WAL while no one can write, so it stays pinned.
            let repin = self.handover_pin();
            self.write_unlock()?;
            repin?;
            self.stage_locked_copy(report)?;
        } else {
            self.write_unlock()?;
        }
        outcome.map(Some)
    }

    pub(super) fn recover_old_tail(&mut self, new: WalHeader, report: &mut SyncReport) -> Result<Restart> {
        if self.read_wal_header()? != Some(new) {
            return Ok(Restart::Lost("the WAL was restarted more than once between two reads"));
        }
        let p = self.position_ref()?;
        let old = p.header;
        let (start, seed) = shipping_start(p);
        if p.pos.index >= MAX_INDEX {
            return Ok(Restart::Lost("the WAL index reached its maximum"));
        }
        let overwritten = overwritten_extent(&self.wal_path, &new)?;
        // The old WAL's tail is only readable if the new WAL has not reached our position and the file was not
        // truncated (TRUNCATE checkpoints, journal_size_limit) below it: the frame ending at our position must still
        // be the one we shipped.
        // A WAL copied to its end while the checkpoint that restarted it held the write lock needs no proof.
        let sealed = self.sealed_and_emptied();
        if overwritten > start || !frame_before_matches(&self.wal_path, &old, start, seed)? {
            if !sealed {
                return Ok(Restart::Lost("the WAL was restarted and overwritten before litecar copied its end"));
            }
        } else {
            let mut f = self.open_existing_wal()?;
            f.seek(SeekFrom::Start(start)).at(&self.wal_path)?;
            let committed =
                wal::scan(&mut BufReader::with_capacity(1 << 20, f), &old, start, seed).at(&self.wal_path)?;
            if committed.end > start {
                tracing::debug!(bytes = committed.end - start, "copied the end of a restarted WAL");
                self.stage_segment(&old, start, seed, committed, report)?;
            }
        }
        self.advance_to(new)?;
        // Whoever holds the write lock (we or the checkpoint we step aside for) waits only for a read into memory.
        Ok(if self.copy_locked(report)? { Restart::Followed } else { Restart::Lost("the new WAL did not validate") })
    }

    /// Continue the generation with the next WAL index, whose WAL `new` starts.
    fn advance_to(&mut self, new: WalHeader) -> Result<()> {
        self.seal = None;
        self.successor_of = None;
        // A checkpoint under way was for the old WAL.
        self.rounds = None;
        let p = self.position_mut()?;
        p.pos = Pos { index: p.pos.index + 1, offset: 0 };
        p.header = new;
        p.checksum = new.checksum;
        self.save()
    }

    pub(super) fn start_generation(&mut self, reason: &str, report: &mut SyncReport) -> Result<()> {
        tracing::info!(reason, "starting a new generation");
        // The generation starts with a WAL that holds a frame and that no one else can restart from here on.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.try_write_lock(self.policy.lock_timeout.max(Duration::from_millis(500)))? {
            // A checkpoint of the application's holds it, waiting for our read lock.
            self.step_aside(report)?;
            if Instant::now() > deadline {
                return Err(Error::Wal {
                    path: self.db_path.clone(),
                    message: "could not take the write lock to start a generation: the application holds it".into(),
                });
            }
        }
        self.touch_pinned()?;
        self.rounds = None;
        let header = self.read_wal_header()?.ok_or_else(|| Error::Wal {
            path: self.wal_path.clone(),
            message: "no valid WAL header after a write".into(),
        })?;
        let generation = Generation::random();
        if !self.stage_snapshot(&generation, 0, false, report)? {
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

    /// No checkpoint has started copying frames of the current WAL into the database file, so the file is still the
    /// database as of the start of this WAL index, even if our read lock has moved since.
    fn index_untouched(&self) -> Result<bool> {
        let Some(p) = &self.position else { return Ok(false) };
        let salt = salt_bytes(&p.header);
        Ok(self.app.index_view()?.is_some_and(|v| v.salt == salt && v.backfill_attempted == 0))
    }

    /// Stream the database file into the spool as a snapshot. Must be called while pinned: the pages a checkpoint
    /// may write meanwhile all come from the current WAL, which a restore replays on top. Returns false (and stages
    /// nothing) if the WAL restarted during the copy, or, with `untouched`, if a checkpoint started copying frames of
    /// the current WAL into the file before the copy was over.
    pub(super) fn stage_snapshot(
        &mut self,
        generation: &Generation,
        index: u32,
        untouched: bool,
        report: &mut SyncReport,
    ) -> Result<bool> {
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
        if self.read_wal_header()? != before || (untouched && !self.index_untouched()?) {
            let _ = std::fs::remove_file(&path);
            return Ok(false);
        }
        self.spool.insert(key, path, size, created);
        report.staged += 1;
        report.snapshots += 1;
        report.snapshot_bytes += size;
        report.snapshot_seconds += started.elapsed().as_secs_f64();
        tracing::info!(%generation, index, size, "snapshot staged");
        Ok(true)
    }
}
