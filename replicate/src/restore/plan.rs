//! What to restore: the generation, the latest snapshot at or before the target (a WAL index or a point in time),
//! and every WAL segment after it up to the target.

use std::time::SystemTime;

use crate::client::{Replica, SegmentInfo, SnapshotInfo};
use crate::error::Result;
use crate::layout::Generation;

#[derive(Debug, Clone, Default)]
pub struct Target {
    pub generation: Option<Generation>,
    /// Restore up to and including this WAL index.
    pub index: Option<u32>,
    /// Restore the state as of this time.
    pub timestamp: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub replica: String,
    pub generation: Generation,
    pub snapshot: SnapshotInfo,
    pub segments: Vec<SegmentInfo>,
}

impl Plan {
    /// When the newest object of the plan was written: how recent the data it restores is.
    pub fn updated(&self) -> SystemTime {
        self.segments.iter().map(|s| s.created).chain([self.snapshot.created]).max().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    pub fn bytes(&self) -> u64 {
        self.snapshot.size + self.segments.iter().map(|s| s.size).sum::<u64>()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSummary {
    pub generation: Generation,
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
}

/// When a generation's data starts and ends, for listing.
pub async fn summarize(replica: &Replica, generation: &Generation) -> Result<GenerationSummary> {
    let snaps = replica.snapshots(generation).await?;
    let segs = replica.segments(generation).await?;
    let times = snaps.iter().map(|s| s.created).chain(segs.iter().map(|s| s.created));
    let (first, last) = times.fold((None, None), |(lo, hi): (Option<SystemTime>, Option<SystemTime>), t| {
        (Some(lo.map_or(t, |l| l.min(t))), Some(hi.map_or(t, |h| h.max(t))))
    });
    Ok(GenerationSummary { generation: generation.clone(), first, last })
}

/// Work out what to restore from `replica`; `Ok(None)` when it holds nothing that matches the target.
pub async fn plan(replica: &Replica, target: &Target) -> Result<Option<Plan>> {
    let generations = match &target.generation {
        Some(g) => vec![g.clone()],
        None => replica.generations().await?,
    };
    let mut best: Option<(SystemTime, Plan)> = None;
    for generation in generations {
        let Some(plan) = plan_generation(replica, &generation, target).await? else {
            continue;
        };
        let updated = plan.updated();
        if best.as_ref().is_none_or(|(t, _)| updated >= *t) {
            best = Some((updated, plan));
        }
    }
    Ok(best.map(|(_, p)| p))
}

async fn plan_generation(replica: &Replica, generation: &Generation, target: &Target) -> Result<Option<Plan>> {
    let snapshots = replica.snapshots(generation).await?;
    let snapshot = snapshots
        .into_iter()
        .filter(|s| target.index.is_none_or(|i| s.index <= i))
        .filter(|s| target.timestamp.is_none_or(|t| s.created <= t))
        .max_by_key(|s| s.index);
    let Some(snapshot) = snapshot else {
        return Ok(None);
    };
    let mut segments = vec![];
    for s in replica.segments(generation).await? {
        if s.pos.index < snapshot.index {
            continue;
        }
        if target.index.is_some_and(|i| s.pos.index > i) || target.timestamp.is_some_and(|t| s.created > t) {
            break;
        }
        segments.push(s);
    }
    Ok(Some(Plan { replica: replica.name.clone(), generation: generation.clone(), snapshot, segments }))
}
