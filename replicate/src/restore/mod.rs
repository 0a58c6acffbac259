//! Restore: choose a generation, the latest snapshot at or before the target, and every WAL segment after it
//! (module `plan`); download them in parallel into a scratch directory, then rebuild the database one WAL index at a
//! time, letting SQLite checkpoint each validated WAL (modules `segments` and `apply`). The result is checked, made
//! durable and renamed into place; nothing temporary is left, also when the restore is cancelled.

mod apply;
mod plan;
mod segments;

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{FutureExt, StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

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
    restore_cancellable(replica, plan, opts, progress, &CancellationToken::new()).await
}

/// [`restore`], ending soon after `cancel` with [`Error::Cancelled`] (or the replica's `Cancelled` error): a download
/// in flight is dropped, even one the store never answers, and the rebuild stops at its next step. The output is
/// then left untouched and the scratch directory removed.
pub async fn restore_cancellable(
    replica: &Replica,
    plan: &Plan,
    opts: &RestoreOptions,
    progress: &Progress<'_>,
    cancel: &CancellationToken,
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
    let replica = replica.cancellable(cancel.clone());
    let result = restore_into(&replica, plan, opts, progress, &scratch, cancel).await;
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
    cancel: &CancellationToken,
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
    let (work, scratch, stop) = (work_db.clone(), scratch.to_owned(), cancel.clone());
    let span = tracing::Span::current();
    let rebuilt = tokio::task::spawn_blocking(move || {
        span.in_scope(|| apply(&replica_name, &plan_owned, &sources, &scratch, &work, full, &stop))
    });
    // The rebuild checks the token between its steps; the caller need not wait for that.
    tokio::select! {
        r = rebuilt => r.map_err(|e| Error::Io { path: work_db.clone(), source: io::Error::other(e) })??,
        _ = cancel.cancelled() => return Err(Error::Cancelled),
    }

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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::compress::Lz4Writer;
    use crate::error::ReplicaError;
    use crate::faults::{FaultConfig, FaultyClient};
    use crate::file::FileClient;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_restore_ends_while_the_store_hangs_and_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("src.db");
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").expect("fill");
        drop(conn);
        let generation = Generation::parse("0123456789abcdef").expect("generation");
        let snapshot = dir.path().join("replica").join(layout::snapshot_key(&generation, 0));
        fs::create_dir_all(snapshot.parent().expect("parent")).expect("mkdir");
        let mut w = Lz4Writer::new(File::create(&snapshot).expect("create"));
        w.write_all(&fs::read(&db).expect("read")).expect("compress");
        w.finish().expect("finish");

        let store =
            Arc::new(FaultyClient::new(Arc::new(FileClient::new(dir.path().join("replica"))), FaultConfig::none()));
        let replica = Replica::new("hangs", store.clone());
        let plan = plan(&replica, &Target::default()).await.expect("plan").expect("a backup");
        let out = dir.path().join("out");
        let opts = |name: &str| RestoreOptions { output: out.join(name), parallelism: 2, full_integrity_check: false };
        restore(&replica, &plan, &opts("ok.db"), &|_| {}).await.expect("a restore while the store answers");

        store.set_hang(true);
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let (cancel, opts) = (cancel.clone(), opts("hung.db"));
            async move { restore_cancellable(&replica, &plan, &opts, &|_| {}, &cancel).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!task.is_finished(), "the download waits on the store");
        cancel.cancel();
        let ended = tokio::time::timeout(Duration::from_secs(5), task).await.expect("ends once cancelled");
        let e = ended.expect("the task").expect_err("cancelled");
        assert!(matches!(e, Error::Replica(ReplicaError::Cancelled { .. }) | Error::Cancelled), "{e:?}");
        let left: Vec<String> =
            fs::read_dir(&out).expect("out").map(|e| e.expect("entry").file_name().to_string_lossy().into()).collect();
        assert_eq!(left, ["ok.db"], "a cancelled restore leaves neither its output nor its scratch directory");
    }
}
