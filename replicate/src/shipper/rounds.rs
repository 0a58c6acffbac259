//! Checkpoints without the write lock, so that an application without a busy timeout never meets it.
//!
//! A round moves the read lock to the end of the WAL (everything before it is shipped; see
//! [`Shipper::handover_shipped`]) and has the background checkpointer copy the WAL into the database up to there,
//! while the shipper goes on copying frames. When a round leaves the WAL fully checkpointed and shipped, the read lock
//! moves onto the database file and the WAL is sealed at its end: the application's next writer restarts it (SQLite
//! restarts a fully checkpointed WAL when no reader is inside it), and the next sync follows that restart in the same
//! generation. The end of a round is looked for between syncs too (see [`Shipper::cooperate`]), so that the seal comes
//! before the application's next commit, not with it.
//!
//! A writer that never pauses for as long as a round takes keeps that from happening: rounds go on, and only once the
//! WAL itself reaches `max_page_count` frames is the write lock taken, for a checkpoint of the few frames written since
//! the last round.
//!
//! A round costs the shipping thread nothing it would not spend on a sync: no fsync runs on it (the background
//! checkpoint syncs the WAL and the database itself, off the thread that ships commits, so a slow disk delays no
//! commit's upload), and it ships only what a sync would have. After a round that left the WAL behind, the next one
//! starts only once it is worth its fsyncs: the WAL grew by [`Shipper::round_step`] frames since, or the application
//! has been quiet for as long as the last round's checkpoint took, and at least [`QUIET_BEFORE_ROUND`], so that the
//! next one may end before its next commit and seal the WAL.
//!
//! A round is not free for the application either: its checkpoint holds SQLite's checkpoint lock, and an application's
//! own checkpoint that finds that lock taken returns busy at once, without waiting out its busy timeout. Rounds that
//! cannot seal the WAL are kept few for that reason too.

use std::time::{Duration, Instant};

use super::applocks::IndexView;
use super::cooperate::{frames, salt_bytes};
use super::{Shipper, SyncReport};
use crate::error::Result;
use crate::layout::Pos;
use crate::wal::WAL_HEADER_SIZE;

/// Rounds in a row before giving up until the WAL has grown by `min_page_count` frames more.
const MAX_ROUNDS: u32 = 64;
/// Rounds in a row, once the WAL has reached `max_page_count` frames, before the write lock is taken.
const URGENT_ROUNDS: u32 = 8;
/// The least pause of the application that starts a round before the WAL has grown by a step. Commits in a burst
/// leave gaps of a millisecond or two, shorter than any round: a round started in one is overtaken by the next commit
/// and leaves the WAL behind, having held the checkpoint lock for nothing (docs/benchmarks.md measures what that costs
/// an application that runs its own checkpoints).
const QUIET_BEFORE_ROUND: Duration = Duration::from_millis(5);

/// Rounds run so far for the checkpoint that is due, and what the last one saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rounds {
    count: u32,
    /// Where the last round moved the read lock: its checkpoint copies (and syncs) the WAL up to there.
    pos: Pos,
    /// When the last round's background checkpoint was requested, and how long it took once it is over.
    requested: Instant,
    took: Option<Duration>,
    /// The WAL's last frame as last seen, and since when it is that one: how long the application has been quiet.
    end: u64,
    end_since: Instant,
}

impl Rounds {
    fn saw_end(&mut self, end: u64) {
        if end != self.end {
            self.end = end;
            self.end_since = Instant::now();
        }
    }

    /// The last round's checkpoint is over (the caller checked): how long it took.
    fn took(&mut self) -> Duration {
        *self.took.get_or_insert_with(|| self.requested.elapsed())
    }
}

impl Shipper {
    /// Start, go on with or finish the rounds of a due checkpoint, the background checkpoint of the last round being
    /// over. `urgent`: the WAL has reached `max_page_count` frames; `oversized`: so has its file, which only our own
    /// restart shrinks. `true` if the WAL was copied under the write lock.
    pub(super) fn checkpoint_rounds(&mut self, urgent: bool, oversized: bool, report: &mut SyncReport) -> Result<bool> {
        if !self.ship_matching(report)? {
            self.rounds = None;
            return Ok(false);
        }
        let count = match self.rounds {
            None => 0,
            Some(r) => {
                self.round_checkpoint_over(r);
                if self.seal_checkpointed()? {
                    self.rounds_over(true);
                    if oversized {
                        // Our restart, not the application's, truncates the file to `journal_size_limit`.
                        self.restart_wal(report)?;
                    }
                    return Ok(false);
                }
                r.count
            }
        };
        if urgent && count >= URGENT_ROUNDS {
            self.rounds = None;
            return self.checkpoint(true, report);
        }
        if count >= MAX_ROUNDS && !urgent {
            self.rounds_over(false);
            return Ok(false);
        }
        let end = self.shipped_frames();
        if !self.next_round_worth_it(end) {
            return Ok(false);
        }
        self.start_round(count + 1, report)?;
        Ok(false)
    }

    /// Frames shipped of the current WAL.
    fn shipped_frames(&self) -> u64 {
        self.position.as_ref().map_or(0, |p| frames(&p.header, p.pos.offset))
    }

    /// How much the WAL must grow after a round that left it behind for the next one to be worth its fsyncs: an eighth
    /// of what makes a checkpoint due, so that a writer that never pauses costs about eight rounds per due checkpoint.
    pub(super) fn round_step(&self) -> u64 {
        (self.policy.min_page_count / 8).max(1)
    }

    /// Whether, the last round's checkpoint being over, another one is worth starting now with the WAL ending at
    /// frame `end` (see the module's documentation). `true` if no round ran yet.
    fn next_round_worth_it(&mut self, end: u64) -> bool {
        let step = self.round_step();
        let Some(r) = self.rounds.as_mut() else { return true };
        r.saw_end(end);
        let grown = end.saturating_sub(frames_at(r.pos, &self.position));
        worth_a_round(grown, step, r.end_since.elapsed(), r.took())
    }

    /// Between syncs (every millisecond while the application writes): once the last round's background checkpoint
    /// is over, seal the WAL if it left it fully checkpointed, before the application commits again, or else start
    /// the next round if it is worth it, without waiting for the next sync. Whether to take the write lock at last
    /// is left to syncs.
    pub(super) fn poll_rounds(&mut self, report: &mut SyncReport) -> Result<bool> {
        let Some(r) = self.rounds else { return Ok(false) };
        if self.background.is_running() || !self.pinned {
            return Ok(false);
        }
        self.round_checkpoint_over(r);
        if self.seal_checkpointed()? {
            self.rounds_over(true);
        } else if r.count < MAX_ROUNDS && self.wal_end()?.is_some_and(|end| self.next_round_worth_it(end)) {
            self.start_round(r.count + 1, report)?;
        } else {
            return Ok(false);
        }
        report.position = self.position.as_ref().map(|p| (p.generation.clone(), p.pos, p.snapshot_at));
        Ok(true)
    }

    fn start_round(&mut self, count: u32, report: &mut SyncReport) -> Result<()> {
        self.rounds = None;
        if self.position.as_ref().is_some_and(|p| Some(p.pos) == self.idle_mark) {
            return Ok(());
        }
        // No fsync here: the background checkpoint syncs the WAL and the database itself, off this thread.
        if !self.ship_matching(report)? {
            return Ok(());
        }
        self.handover_shipped()?;
        self.index_backfilled = true;
        // What was committed just before the read lock moved: the background checkpoint may copy it too.
        if !self.ship_matching(report)? {
            return Ok(());
        }
        self.background.request();
        report.checkpointed = Some("passive");
        tracing::debug!(round = count, "checkpoint round without the write lock");
        let Some(pos) = self.position.as_ref().map(|p| p.pos) else { return Ok(()) };
        let now = Instant::now();
        let end = self.shipped_frames();
        self.rounds = Some(Rounds { count, pos, requested: now, took: None, end, end_since: now });
        Ok(())
    }

    /// The WAL's last frame as the WAL-index shows it, `None` if it is no longer the WAL we ship (the next sync
    /// follows that).
    fn wal_end(&self) -> Result<Option<u64>> {
        let Some(header) = self.position.as_ref().map(|p| p.header) else { return Ok(None) };
        let view = self.app.index_view()?;
        Ok(view.filter(|v| v.salt == salt_bytes(&header)).map(|v| u64::from(v.max_frame)))
    }

    /// The last round's background checkpoint is over. It synced the WAL up to where the round moved the read lock
    /// (unless the application's own checkpoints had left it nothing to copy, having synced it themselves): a checkpoint
    /// under the write lock soon after need not sync it again (see [`Shipper::sync_before_locking`]).
    fn round_checkpoint_over(&mut self, r: Rounds) {
        self.files_synced_at = Some(r.pos);
    }

    /// The checkpoint is over, with the WAL sealed or not. One that left the WAL behind (the application wrote
    /// throughout) is tried again once the WAL has grown by as much again, or after the interval.
    fn rounds_over(&mut self, sealed: bool) {
        tracing::debug!(sealed, rounds = self.rounds.map_or(0, |r| r.count), "checkpoint without the write lock over");
        self.rounds = None;
        self.sealed_at = if sealed { self.position.as_ref().map(|p| p.pos) } else { None };
        self.last_checkpoint = std::time::Instant::now();
        let frames =
            self.position.as_ref().map_or(0, |p| p.pos.offset.saturating_sub(WAL_HEADER_SIZE) / p.header.frame_size());
        self.unlocked_retry_frames = if sealed { 0 } else { frames + self.policy.min_page_count };
    }

    /// If the WAL ends, fully checkpointed, where we copied it, move the read lock onto the database file (see
    /// [`Shipper::handover_shipped`]): the WAL is then sealed. `true` if it is.
    fn seal_checkpointed(&mut self) -> Result<bool> {
        let Some(p) = &self.position else { return Ok(false) };
        let (header, end) = (p.header, p.pos.offset);
        let checkpointed = |v: &IndexView| {
            v.salt == salt_bytes(&header)
                && u64::from(v.max_frame) == frames(&header, end)
                && v.backfilled == v.max_frame
        };
        if !self.app.index_view()?.is_some_and(|v| checkpointed(&v)) {
            return Ok(false);
        }
        self.handover_shipped()?;
        // Looked at again with the new read lock held: the WAL still ends, fully checkpointed, where we copied it.
        Ok(self.app.index_view()?.is_some_and(|v| checkpointed(&v)))
    }
}

/// Whether a round is worth starting when the WAL has grown by `grown` frames since the last one, which was a
/// checkpoint that took `took`, and the application has been quiet for `quiet`.
fn worth_a_round(grown: u64, step: u64, quiet: Duration, took: Duration) -> bool {
    grown >= step || (grown > 0 && quiet >= took.max(QUIET_BEFORE_ROUND))
}

/// The frame a position in the current WAL ends at, 0 for another WAL.
fn frames_at(pos: Pos, current: &Option<crate::state::Position>) -> u64 {
    current.as_ref().filter(|p| p.pos.index == pos.index).map_or(0, |p| frames(&p.header, pos.offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_wal_grown_by_a_step_is_worth_a_round_at_once() {
        assert!(worth_a_round(125, 125, Duration::ZERO, 40 * MS));
        assert!(!worth_a_round(124, 125, Duration::ZERO, 40 * MS));
    }

    #[test]
    fn a_pause_between_commits_of_a_burst_is_not_worth_a_round_however_quick_the_last_one() {
        assert!(!worth_a_round(3, 125, 2 * MS, MS / 2));
        assert!(!worth_a_round(3, 125, QUIET_BEFORE_ROUND - MS / 10, MS));
        assert!(worth_a_round(3, 125, QUIET_BEFORE_ROUND, MS));
    }

    #[test]
    fn a_pause_shorter_than_the_last_round_took_is_not_worth_another() {
        assert!(!worth_a_round(3, 125, 30 * MS, 40 * MS));
        assert!(worth_a_round(3, 125, 40 * MS, 40 * MS));
    }

    #[test]
    fn nothing_new_is_never_worth_a_round() {
        assert!(!worth_a_round(0, 125, Duration::from_secs(60), MS));
    }
}
