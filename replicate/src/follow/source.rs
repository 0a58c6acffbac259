//! Reading the replica for a follower: fetching and decompressing segments, and waking up when a file replica
//! changes.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use futures::{FutureExt, StreamExt, TryStreamExt};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

use super::apply::Decoded;
use crate::client::{Replica, SegmentInfo};
use crate::compress::lz4_reader;
use crate::error::{Error, IoContext, Result};
use crate::layout;

/// Segments fetched at once: a GET of a small segment is mostly waiting.
const PARALLEL_FETCHES: usize = 8;

/// Fetch and decompress `segments`, in order.
pub async fn fetch(replica: &Replica, scratch: &Path, segments: &[SegmentInfo]) -> Result<Vec<Decoded>> {
    futures::stream::iter(segments.iter().enumerate())
        .map(|(i, seg)| fetch_one(replica, scratch, i, seg))
        .buffered(PARALLEL_FETCHES)
        .try_collect()
        // Boxed where the lifetimes are concrete: a caller spawning the follower could not prove it Send otherwise.
        .boxed()
        .await
}

async fn fetch_one(replica: &Replica, scratch: &Path, i: usize, seg: &SegmentInfo) -> Result<Decoded> {
    let key = layout::wal_segment_key(&seg.generation, seg.pos);
    let (path, downloaded) = match replica.client.local_path(&key) {
        Some(p) => (p, false),
        None => {
            let dst = scratch.join(format!("segment-{i}.lz4"));
            replica.get_segment(&seg.generation, seg.pos, &dst).await?;
            (dst, true)
        }
    };
    let name = replica.describe();
    let decoded = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::Replica(crate::ReplicaError::NotFound { replica: name.clone(), key: key.clone() })
            }
            _ => Error::Io { path: path.clone(), source: e },
        })?;
        let mut bytes = Vec::new();
        let read = lz4_reader(std::io::BufReader::new(file)).read_to_end(&mut bytes);
        if downloaded {
            let _ = std::fs::remove_file(&path);
        }
        read.map_err(|e| Error::Corrupt { replica: name, key, message: e.to_string() })?;
        Ok::<_, Error>(bytes)
    })
    .await
    .map_err(std::io::Error::other)
    .at(scratch)??;
    Ok(Decoded { pos: seg.pos, created: seg.created, bytes: decoded })
}

/// Wakes `wake` when anything under a file replica's directory changes; `None` where the file system has no events
/// (the follower then polls).
pub fn watch_file_replica(replica: &Replica, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let root = replica.client.local_path("")?;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // A finished object is renamed into place: its name ends in .lz4 (temporaries in .tmp).
        if let Ok(event) = event
            && matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
            && event.paths.iter().any(|p| p.extension().is_none_or(|e| e == "lz4"))
        {
            wake.notify_one();
        }
    })
    .ok()?;
    match watcher.watch(&root, RecursiveMode::Recursive) {
        Ok(()) => Some(watcher),
        Err(e) => {
            tracing::debug!(error = %e, "no file-system events for the replica; polling");
            None
        }
    }
}
