//! Retention: drop snapshots, segments and whole generations that fall out of the retention window, always
//! keeping what a restore of the current generation's newest state needs.

use std::time::{Duration, SystemTime};

use crate::client::Replica;
use crate::error::ReplicaError;
use crate::layout::{self, Generation};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionReport {
    pub generations_deleted: usize,
    pub snapshots_deleted: usize,
    pub segments_deleted: usize,
}

pub async fn enforce(
    replica: &Replica,
    current: &Generation,
    retention: Duration,
    now: SystemTime,
) -> Result<RetentionReport, ReplicaError> {
    let cutoff = now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
    let mut report = RetentionReport::default();
    for generation in replica.generations().await? {
        let snapshots = replica.snapshots(&generation).await?;
        let mut keep_from = snapshots.iter().filter(|s| s.created >= cutoff).map(|s| s.index).min();
        if &generation == current {
            // The newest snapshot of the live generation always stays, whatever its age.
            let newest = snapshots.iter().map(|s| s.index).max();
            keep_from = match (keep_from, newest) {
                (Some(k), _) => Some(k),
                (None, n) => n,
            };
        }
        let Some(keep_from) = keep_from else {
            if &generation != current {
                replica.delete_generation(&generation).await?;
                report.generations_deleted += 1;
            }
            continue;
        };
        let mut keys: Vec<String> = vec![];
        for s in snapshots.iter().filter(|s| s.index < keep_from) {
            keys.push(layout::snapshot_key(&generation, s.index));
            report.snapshots_deleted += 1;
        }
        for s in replica.segments(&generation).await?.iter().filter(|s| s.pos.index < keep_from) {
            keys.push(layout::wal_segment_key(&generation, s.pos));
            report.segments_deleted += 1;
        }
        if !keys.is_empty() {
            replica.delete(&keys).await?;
        }
    }
    Ok(report)
}
