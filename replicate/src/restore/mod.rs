//! Restore: choose a generation, the latest snapshot at or before the target, and every WAL segment after it
//! (module `plan`); download them in parallel into a scratch directory, then rebuild the database one WAL index at a
//! time, letting SQLite checkpoint each validated WAL (modules `segments` and `apply`). The result is checked, made
//! durable and renamed into place; nothing temporary is left.

mod apply;
mod plan;
mod segments;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{FutureExt, StreamExt, TryStreamExt};

use self::apply::{Source, apply};
pub use self::plan::{GenerationSummary, Plan, Target, plan, summarize};
use crate::client::Replica;
use crate::error::{Error, IoContext, Result};
use crate::layout::{self, Generation};

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub output: PathBuf,
    pub parallelism: usize,
    /// Run `PRAGMA integrity_check` (slow, thorough) instead of `quick_check`.
    pub full_integrity_check: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    pub generation: Generation,
    pub snapshot_index: u32,
    pub last_index: u32,
    pub segments: usize,
    pub bytes_downloaded: u64,
}

/// Bytes downloaded so far, reported as restore goes (for progress displays).
pub type Progress<'a> = dyn Fn(u64) + Send + Sync + 'a;

/// Carry out `plan` into `opts.output`, which must not exist yet.
pub async fn restore(
    replica: &Replica,
    plan: &Plan,
    opts: &RestoreOptions,
    progress: &Progress<'_>,
) -> Result<RestoreSummary> {
    if opts.output.exists() {
        return Err(Error::OutputExists { path: opts.output.clone() });
    }
    let out_dir = match opts.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&out_dir).at(&out_dir)?;
    let file_name = opts.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let scratch = tempfile_dir(&out_dir, &file_name)?;
    let result = restore_into(replica, plan, opts, progress, &scratch).await;
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn tempfile_dir(dir: &Path, name: &str) -> Result<PathBuf> {
    for _ in 0..16 {
        let p = dir.join(format!(".{name}.litecar-restore-{:08x}", rand::random::<u32>()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::Io { path: p, source: e }),
        }
    }
    Err(Error::Io { path: dir.to_owned(), source: io::Error::other("could not create a scratch directory") })
}

async fn restore_into(
    replica: &Replica,
    plan: &Plan,
    opts: &RestoreOptions,
    progress: &Progress<'_>,
    scratch: &Path,
) -> Result<RestoreSummary> {
    let downloaded = AtomicU64::new(0);
    // Every object of the plan: the snapshot first, then the segments. A local replica is read in place; anything
    // else is downloaded into the scratch directory, `parallelism` at a time.
    let mut objects: Vec<(String, Option<layout::Pos>)> =
        vec![(layout::snapshot_key(&plan.generation, plan.snapshot.index), None)];
    objects.extend(plan.segments.iter().map(|s| (layout::wal_segment_key(&plan.generation, s.pos), Some(s.pos))));
    let sources: Vec<Source> = objects
        .iter()
        .enumerate()
        .map(|(i, (key, _))| match replica.client.local_path(key) {
            Some(path) => Source { path, downloaded: false },
            None => Source { path: scratch.join(format!("{i:08}.lz4")), downloaded: true },
        })
        .collect();
    futures::stream::iter(objects.iter().zip(&sources).filter(|(_, source)| source.downloaded).map(
        |((_, pos), Source { path: dst, .. })| {
            let downloaded = &downloaded;
            async move {
                let n = match pos {
                    None => replica.get_snapshot(&plan.generation, plan.snapshot.index, dst).await?,
                    Some(p) => replica.get_segment(&plan.generation, *p, dst).await?,
                };
                let total = downloaded.fetch_add(n, Ordering::Relaxed) + n;
                progress(total);
                Ok::<_, Error>(())
            }
        },
    ))
    .buffer_unordered(opts.parallelism.max(1))
    .try_collect::<Vec<()>>()
    // Boxed where the closures' lifetimes are concrete, so that a task spawning a restore can be proven Send.
    .boxed()
    .await?;

    let work_db = scratch.join("db");
    let plan_owned = plan.clone();
    let replica_name = replica.describe();
    let full = opts.full_integrity_check;
    let (work, scratch) = (work_db.clone(), scratch.to_owned());
    tokio::task::spawn_blocking(move || apply(&replica_name, &plan_owned, &sources, &scratch, &work, full))
        .await
        .map_err(|e| Error::Io { path: work_db.clone(), source: io::Error::other(e) })??;

    fs::rename(&work_db, &opts.output).at(&opts.output)?;
    if let Some(dir) = opts.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    }
    Ok(RestoreSummary {
        generation: plan.generation.clone(),
        snapshot_index: plan.snapshot.index,
        last_index: plan.segments.last().map_or(plan.snapshot.index, |s| s.pos.index),
        segments: plan.segments.len(),
        bytes_downloaded: downloaded.into_inner(),
    })
}

impl Replica {
    pub fn describe(&self) -> String {
        if self.name.is_empty() {
            self.client.describe()
        } else {
            format!("{} ({})", self.name, self.client.describe())
        }
    }
}
