//! The lock protocol: the read lock (`pin`) that keeps the application's frames in place until they are copied, and
//! the write lock (`lock`) held, for milliseconds, while the last frames are copied and checkpointed.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::ErrorCode;

use super::applocks::AppLocks;
use super::cooperate::Seal;
use super::{Shipper, SyncReport};
use crate::error::{Error, Result, SqlContext};

/// How often the write lock is tried while the application holds it.
const LOCK_POLL: Duration = Duration::from_micros(50);
/// Every this many tries (a millisecond), whether the write lock's holder is a checkpoint waiting for our read lock.
const CHECKPOINTER_CHECK_TRIES: i32 = 20;

std::thread_local! {
    /// Tries left for the write lock being taken on this (the shipper's) thread.
    static LOCK_TRIES_LEFT: Cell<i32> = const { Cell::new(0) };
    /// The database's lock table, for the write lock being taken on this thread.
    static LOCK_TABLE: RefCell<Option<Arc<AppLocks>>> = const { RefCell::new(None) };
    /// The last try gave up because another process's checkpoint holds the write lock and waits for our read lock.
    static CHECKPOINTER_SEEN: Cell<bool> = const { Cell::new(false) };
}

fn poll_for_lock(attempt: i32) -> bool {
    if attempt >= LOCK_TRIES_LEFT.with(|t| t.get()) {
        return false;
    }
    // Waiting on would keep both sides waiting for the application's whole busy timeout: give up at once and let
    // the caller step aside (see `cooperate`).
    if attempt % CHECKPOINTER_CHECK_TRIES == 0
        && LOCK_TABLE
            .with(|t| t.borrow().as_ref().is_some_and(|l| matches!(l.checkpointer_with_write_lock(), Ok(Some(_)))))
    {
        CHECKPOINTER_SEEN.with(|s| s.set(true));
        return false;
    }
    std::thread::sleep(LOCK_POLL);
    true
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

impl Shipper {
    pub(super) fn pin(&mut self) -> Result<()> {
        if !self.pinned {
            self.pin.execute_batch("BEGIN").db(&self.db_path)?;
            self.pin.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())).db(&self.db_path)?;
            self.pinned = true;
        }
        Ok(())
    }

    pub(super) fn unpin(&mut self) -> Result<()> {
        if self.pinned {
            self.pin.execute_batch("COMMIT").db(&self.db_path)?;
            self.pinned = false;
            if !self.locked {
                // Without the read lock and without the write lock, anyone may restart the WAL, more than once.
                self.successor_of = None;
            }
        }
        Ok(())
    }

    /// Move the read lock to the newest state of the WAL without ever letting go of it: a read transaction on the
    /// spare connection begins first, then the old one ends, and the two connections swap roles. Where `unpin` and
    /// `pin` leave a moment without a read lock (in which a loaded machine may keep us off the CPU for milliseconds,
    /// and the application restart the WAL twice), this leaves none.
    ///
    /// On a WAL fully copied into the database the new read lock sits on the database file (SQLite's read lock 0),
    /// which lets a checkpoint restart the WAL but lets no checkpoint copy anything, so the WAL can be restarted at
    /// most once, and only where it ends now. Otherwise it sits at the WAL's last commit, which lets a checkpoint copy
    /// everything but restart nothing.
    pub(super) fn handover_pin(&mut self) -> Result<()> {
        if !self.pinned {
            return self.pin();
        }
        self.spare.execute_batch("BEGIN").db(&self.db_path)?;
        if let Err(e) = self.spare.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(())) {
            let _ = self.spare.execute_batch("ROLLBACK");
            return Err(Error::Sqlite { path: self.db_path.clone(), source: e });
        }
        std::mem::swap(&mut self.pin, &mut self.spare);
        if let Err(e) = self.spare.execute_batch("COMMIT") {
            let _ = self.spare.execute_batch("ROLLBACK");
            return Err(Error::Sqlite { path: self.db_path.clone(), source: e });
        }
        Ok(())
    }

    /// Take the database's write lock, waiting at most `timeout` for the application's writer. `Ok(false)` if the
    /// application still holds it.
    pub(super) fn try_write_lock(&mut self, timeout: Duration) -> Result<bool> {
        // SQLite's default busy handler sleeps 1, 2, 5, 10... ms between attempts; an application that commits in a
        // tight loop frees the write lock for microseconds between transactions and would never be caught. Poll
        // often instead: a try is one fcntl call.
        LOCK_TRIES_LEFT.with(|t| t.set((timeout.as_micros() / LOCK_POLL.as_micros()).max(1) as i32));
        LOCK_TABLE.with(|t| *t.borrow_mut() = Some(self.app.clone()));
        CHECKPOINTER_SEEN.with(|s| s.set(false));
        self.lock.busy_handler(Some(poll_for_lock)).db(&self.db_path)?;
        let begun = self.lock.execute_batch("BEGIN IMMEDIATE");
        // Only the shipper may hold the `-shm` file open: closing the last descriptor releases our locks.
        LOCK_TABLE.with(|t| *t.borrow_mut() = None);
        if CHECKPOINTER_SEEN.with(|s| s.get()) {
            self.checkpointer_waiting = true;
        }
        match begun {
            Ok(()) => {
                self.locked = true;
                self.lock_taken = Instant::now();
                Ok(true)
            }
            Err(e) if is_busy(&e) => Ok(false),
            Err(e) => Err(Error::Sqlite { path: self.db_path.clone(), source: e }),
        }
    }

    pub(super) fn write_unlock(&mut self) -> Result<()> {
        if self.locked {
            self.locked = false;
            let rolled_back = self.lock.execute_batch("ROLLBACK").db(&self.db_path);
            self.lock_released();
            rolled_back?;
        }
        Ok(())
    }

    /// Count a hold of the write lock, which the application may have waited on, from `BEGIN IMMEDIATE` to its end.
    fn lock_released(&mut self) {
        let held = self.lock_taken.elapsed().as_secs_f64();
        tracing::debug!(held_ms = held * 1e3, "write lock released");
        self.lock_holds.push(held);
    }

    /// Hand the write-lock holds counted since the last call over to `report`.
    pub(super) fn report_lock_holds(&mut self, report: &mut SyncReport) {
        report.write_lock_holds.append(&mut self.lock_holds);
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
    pub(super) fn touch_pinned(&mut self) -> Result<()> {
        let touched = self.unpin().and_then(|()| self.pin()).and_then(|()| self.touch_and_commit());
        if touched.is_err() {
            self.write_unlock()?;
        }
        touched
    }

    /// [`Shipper::handover_pin`] right after everything committed was shipped, without the write lock. The WAL is then
    /// sealed where the copy ends: no checkpoint could copy past our old read lock, which sat at most there, so if
    /// the new read lock lands on the database file (the WAL was fully checkpointed as it was taken), the WAL ended
    /// exactly there and can be restarted only there, once; if it lands inside the WAL, nothing can restart it. Either
    /// way the next WAL, whatever its header, directly follows the copy, as long as this read lock is held.
    pub(super) fn handover_shipped(&mut self) -> Result<()> {
        self.handover_pin()?;
        if let Some(p) = &self.position {
            let seal = Seal { header: p.header, end: p.pos.offset };
            self.seal = Some(seal);
            self.successor_of = Some(seal);
        }
        Ok(())
    }

    /// Commit a write that changes nothing (`user_version` set to its own value). It gives the WAL a frame, and if
    /// the WAL was fully checkpointed it makes this connection restart it.
    pub(super) fn touch_and_commit(&mut self) -> Result<()> {
        let v: i64 = self.lock.query_row("PRAGMA user_version", [], |r| r.get(0)).db(&self.db_path)?;
        self.lock.pragma_update(None, "user_version", v).db(&self.db_path)?;
        self.locked = false;
        let committed = self.lock.execute_batch("COMMIT").db(&self.db_path);
        self.lock_released();
        committed
    }
}
