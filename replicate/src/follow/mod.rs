//! Read replicas: keep a live, read-only copy of a database from its replica (`litecar follow`).
//!
//! The follower restores the latest snapshot into a private file and moves it into place, then keeps applying the
//! replica's new WAL segments, each batch as one SQLite transaction of its own ([`apply`]), so that readers in other
//! processes always see a state the writer's database went through. A new generation, or a copy that someone else
//! wrote to, is rebuilt privately and swapped in as one transaction too: readers never see an empty or half-built
//! database. Where it is, and the page count and first page it left, are kept beside the database ([`cursor`]), so a
//! restart carries on from there when the copy still matches, and rebuilds it when not.

mod apply;
mod cursor;
mod pace;
mod source;
mod status;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use status::{FollowSnapshot, FollowStatus};

use self::apply::Target;
use self::cursor::{Cursor, CursorFile, Saved};
use crate::client::Replica;
use crate::error::{Error, IoContext, Result};
use crate::layout::{Generation, Pos};
use crate::restore;
use crate::sync::lock;

/// How often an object store is asked for new segments (and the fallback for file replicas without file-system
/// events). Around a busy writer's expected uploads a follower polls more often, and while idle it backs off to
/// [`MAX_IDLE_FACTOR`] times this ([`pace`]).
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
pub use pace::MAX_IDLE_FACTOR;
/// How often an idle follower looks for a new generation (one listing of the generations)...
const GENERATION_CHECK_INTERVAL: Duration = Duration::from_secs(10);
/// ...and once its polls have backed off all the way.
const IDLE_GENERATION_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// Compressed segment bytes fetched and applied in one transaction at most.
const MAX_BATCH_BYTES: u64 = 64 << 20;
/// Polls in a row that find the next segment missing or corrupt before the follower reports it and looks for a
/// snapshot to start over from.
const STUCK_POLLS: u32 = 5;

#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// The follower's database.
    pub path: PathBuf,
    pub replica: Replica,
    pub poll_interval: Duration,
}

pub struct Follower {
    opts: FollowOptions,
    status: Arc<FollowStatus>,
    replica_name: String,
}

/// A follower's copy and where it is in the replica.
struct Live {
    target: Shared,
    cursor: Cursor,
    /// When the newest object applied was written to the replica.
    newest: SystemTime,
    /// Generations looked at already, which need no second look.
    known: BTreeSet<Generation>,
}

/// What one poll found.
enum Step {
    Idle,
    /// `drained`: the batch took everything listed (the live loop continues from there).
    Applied {
        any: bool,
        drained: bool,
        error: Option<Error>,
    },
}

impl Follower {
    pub fn new(opts: FollowOptions) -> Self {
        let replica_name = opts.replica.describe();
        Self { opts, status: Arc::default(), replica_name }
    }

    pub fn status(&self) -> Arc<FollowStatus> {
        self.status.clone()
    }

    fn scratch(&self) -> PathBuf {
        let name = self.opts.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        dir_of(&self.opts.path).join(format!(".{name}.litecar-follow"))
    }

    /// Follow until `cancel`. Returns an error only for what retrying cannot fix (an unwritable output path, a file
    /// there that is not a follower's copy); replica errors are logged and retried, and the copy stays readable.
    pub async fn run(self, cancel: CancellationToken) -> Result<()> {
        let wake = Arc::new(Notify::new());
        let watcher = source::watch_file_replica(&self.opts.replica, wake.clone());
        let events = watcher.is_some();
        let mut live = loop {
            match self.start().await {
                Ok(Some(live)) => break live,
                Ok(None) => {
                    tracing::info!(replica = %self.replica_name, "no backup in the replica yet; waiting for one")
                }
                Err(e @ (Error::Replica(_) | Error::Corrupt { .. } | Error::Restore { .. })) => {
                    self.status.failed(&e);
                    tracing::warn!(error = %e, "follow: cannot restore yet; retrying");
                }
                Err(e) => return Err(e),
            }
            if sleep_or_cancel(self.opts.poll_interval, &cancel).await {
                return Ok(());
            }
        };
        tracing::info!(db = %self.opts.path.display(), generation = %live.cursor.generation, pos = %live.cursor.pos, "following");
        let mut pace = pace::Pace::new(self.opts.poll_interval);
        let mut stuck = 0u32;
        let mut last_generation_check: Option<Instant> = None;
        while !cancel.is_cancelled() {
            if live.target.run(|t| t.written_by_others()).await? {
                self.rebuild_written(&mut live, &cancel).await;
                continue;
            }
            let polled = Instant::now();
            let wait = match self.step(&mut live).await {
                Ok(Step::Idle) => {
                    self.status.caught_up();
                    stuck = 0;
                    let every =
                        if pace.backed_off() { IDLE_GENERATION_CHECK_INTERVAL } else { GENERATION_CHECK_INTERVAL };
                    if last_generation_check.is_none_or(|t| t.elapsed() >= every) {
                        last_generation_check = Some(Instant::now());
                        if let Err(e) = self.check_generations(&mut live, false).await {
                            self.status.failed(&e);
                            tracing::warn!(error = %e, "follow: looking for a new generation failed");
                        }
                    }
                    let wait = pace.empty(polled);
                    if events { self.opts.poll_interval } else { wait }
                }
                Ok(Step::Applied { drained, error: None, .. }) => {
                    stuck = 0;
                    if !drained {
                        self.status.still_behind();
                        continue;
                    }
                    self.status.caught_up();
                    let wait = pace.found(polled);
                    if events { self.opts.poll_interval } else { wait }
                }
                Ok(Step::Applied { any, error: Some(e), .. }) => {
                    stuck = if any { 1 } else { stuck + 1 };
                    if stuck >= STUCK_POLLS {
                        self.status.stuck(&e);
                        tracing::error!(error = %e, "follow: cannot apply the replica's next segment; the copy stays at its last good state");
                        stuck = 0;
                        // The writer may have started over in a new generation, past the damage.
                        if let Err(e) = self.check_generations(&mut live, true).await {
                            self.status.failed(&e);
                            tracing::warn!(error = %e, "follow: looking for a new generation failed");
                        }
                    }
                    self.opts.poll_interval
                }
                Err(Error::WrittenByOthers { .. }) => {
                    self.rebuild_written(&mut live, &cancel).await;
                    continue;
                }
                Err(e) if is_fatal(&e) => return Err(e),
                Err(e) => {
                    self.status.failed(&e);
                    tracing::warn!(error = %e, "follow: reading the replica failed; the copy stays as it is");
                    pace.empty(polled).max(self.opts.poll_interval)
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = wake.notified(), if events => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        drop(watcher);
        Ok(())
    }

    /// Rebuild a copy that another process wrote to.
    async fn rebuild_written(&self, live: &mut Live, cancel: &CancellationToken) {
        tracing::warn!(
            db = %self.opts.path.display(),
            "the follower's database was written by another process; rebuilding it from the replica"
        );
        if let Err(e) = self.rebuild(live, None).await {
            self.status.failed(&e);
            tracing::error!(error = %e, "follow: rebuilding the copy failed; retrying");
            sleep_or_cancel(self.opts.poll_interval, cancel).await;
        }
    }

    /// Open the copy as it is if it matches its cursor, rebuild it if not, or restore it if there is none yet.
    /// `None` while the replica holds no backup.
    async fn start(&self) -> Result<Option<Live>> {
        let path = &self.opts.path;
        let dir = dir_of(path);
        std::fs::create_dir_all(&dir).at(&dir)?;
        let scratch = self.scratch();
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir(&scratch).at(&scratch)?;
        let cursor_file = CursorFile::for_db(path);
        if path.exists() {
            let saved = match cursor_file.load() {
                Saved::Missing => {
                    return Err(Error::Io {
                        path: path.clone(),
                        source: std::io::Error::other(format!(
                            "exists but is not a follower's copy ({} is missing); remove it or follow into another path",
                            cursor_file.path().display()
                        )),
                    });
                }
                Saved::Unreadable => None,
                Saved::Cursor(c) => Some(c),
            };
            let target = Shared::new(
                blocking(path, {
                    let path = path.clone();
                    move || Target::open(&path)
                })
                .await?,
            );
            if let Some(cursor) = saved {
                let fingerprint = target.run(|t| t.fingerprint()).await?;
                if fingerprint == (cursor.db_pages, cursor.page1_hash) {
                    tracing::info!(db = %path.display(), "resuming from the copy's last applied position");
                    return Ok(Some(Live { target, cursor, newest: SystemTime::UNIX_EPOCH, known: BTreeSet::new() }));
                }
            }
            tracing::warn!(db = %path.display(), "the copy is not what the follower last left; rebuilding it from the replica");
            let Some((cursor, newest)) = self.replace(&target, None).await? else {
                return Err(Error::NoBackups(self.replica_name.clone()));
            };
            return Ok(Some(Live { target, cursor, newest, known: BTreeSet::new() }));
        }
        let Some((next, cursor, newest)) = self.build(None).await? else {
            return Ok(None);
        };
        // The cursor first: a crash before the rename leaves a cursor without a copy, which restores afresh.
        cursor_file.save(&cursor)?;
        std::fs::rename(&next, path).at(path)?;
        std::fs::File::open(&dir).and_then(|d| d.sync_all()).at(&dir)?;
        let target = Shared::new(
            blocking(path, {
                let path = path.clone();
                move || Target::open(&path)
            })
            .await?,
        );
        Ok(Some(Live { target, cursor, newest, known: BTreeSet::new() }))
    }

    /// Restore `generation` (default: the latest) into a private file beside the database and bring it up to
    /// date. `None` when the replica has no backup of it.
    async fn build(&self, generation: Option<Generation>) -> Result<Option<(PathBuf, Cursor, SystemTime)>> {
        let replica = &self.opts.replica;
        let Some(mut plan) = restore::plan(replica, &restore::Target { generation, ..Default::default() }).await?
        else {
            return Ok(None);
        };
        plan.segments.clear();
        let next = self.scratch().join("next.db");
        remove_db_files(&next);
        let opts = restore::RestoreOptions { output: next.clone(), parallelism: 4, full_integrity_check: false };
        restore::restore(replica, &plan, &opts, &|_| {}).await?;
        let target = Shared::new(
            blocking(&next, {
                let next = next.clone();
                move || Target::open(&next)
            })
            .await?,
        );
        let (db_pages, page1_hash) = target.run(|t| t.fingerprint()).await?;
        let cursor = Cursor {
            generation: plan.generation.clone(),
            pos: Pos { index: plan.snapshot.index, offset: 0 },
            header: None,
            checksum: (0, 0),
            last_name: format!("{:08x}", plan.snapshot.index),
            db_pages,
            page1_hash,
        };
        let mut live = Live { target, cursor, newest: plan.snapshot.created, known: BTreeSet::new() };
        // Up to what the replica held when we looked: a busy writer would otherwise keep us from ever finishing.
        loop {
            match self.step(&mut live).await? {
                Step::Idle => break,
                Step::Applied { error: Some(e), .. } => return Err(e),
                Step::Applied { any: true, drained: false, error: None } => {}
                Step::Applied { .. } => break,
            }
        }
        drop(live.target);
        Ok(Some((next, live.cursor, live.newest)))
    }

    /// Apply what the replica holds past the cursor (up to a batch's worth), as one transaction.
    async fn step(&self, live: &mut Live) -> Result<Step> {
        let replica = &self.opts.replica;
        let started = Instant::now();
        let listed = replica.segments_after(&live.cursor.generation, &live.cursor.last_name).await?;
        if listed.is_empty() {
            return Ok(Step::Idle);
        }
        let newest_listed = listed.iter().map(|s| s.created).max().unwrap_or(live.newest);
        self.status
            .behind(newest_listed.duration_since(live.newest).unwrap_or_default(), listed.iter().map(|s| s.size).sum());
        let mut total = 0;
        let take = listed
            .iter()
            .take_while(|s| {
                total += s.size;
                total <= MAX_BATCH_BYTES
            })
            .count()
            .max(1);
        let listed_at = started.elapsed();
        let decoded = source::fetch(replica, &self.scratch(), &listed[..take]).await?;
        let fetched_at = started.elapsed();
        let (batch, error) = apply::check(&self.replica_name, &live.cursor, decoded);
        let drained = take == listed.len() && error.is_none();
        if batch.is_empty() {
            return Ok(Step::Applied { any: false, drained, error });
        }
        let (cursor, commits, newest) =
            live.target.run(move |t| t.apply(&batch).map(|c| (c, batch.commits, batch.newest))).await?;
        let applied_at = started.elapsed();
        CursorFile::for_db(&live.target.path()).save(&cursor)?;
        tracing::debug!(
            segments = take,
            commits,
            list_ms = listed_at.as_millis(),
            fetch_ms = (fetched_at - listed_at).as_millis(),
            apply_ms = (applied_at - fetched_at).as_millis(),
            save_ms = (started.elapsed() - applied_at).as_millis(),
            "follow: batch applied"
        );
        live.cursor = cursor;
        live.newest = newest.unwrap_or(live.newest);
        self.status.applied(commits);
        Ok(Step::Applied { any: true, drained, error })
    }

    /// Switch to a newer generation if the replica has one (or any other when ours is gone). `stuck` also starts
    /// over from our own generation's latest snapshot, past a segment that cannot be applied.
    async fn check_generations(&self, live: &mut Live, stuck: bool) -> Result<()> {
        let replica = &self.opts.replica;
        let generations = replica.generations().await?;
        let ours_exists = generations.contains(&live.cursor.generation);
        let mut best: Option<restore::Plan> = None;
        for g in generations {
            if (g == live.cursor.generation && !stuck) || live.known.contains(&g) {
                continue;
            }
            let Some(plan) =
                restore::plan(replica, &restore::Target { generation: Some(g.clone()), ..Default::default() }).await?
            else {
                continue;
            };
            if g != live.cursor.generation {
                live.known.insert(g);
            }
            if best.as_ref().is_none_or(|b| plan.updated() > b.updated()) {
                best = Some(plan);
            }
        }
        let Some(best) = best else { return Ok(()) };
        let newer = best.updated() > live.newest || !ours_exists;
        let restart = stuck && best.generation == live.cursor.generation && best.snapshot.index > live.cursor.pos.index;
        if !(newer || restart) {
            return Ok(());
        }
        tracing::info!(
            db = %self.opts.path.display(),
            from = %live.cursor.generation,
            to = %best.generation,
            "switching to the replica's newer generation"
        );
        self.rebuild(live, Some(best.generation)).await?;
        self.status.switched_generation();
        Ok(())
    }

    /// Replace the copy's content with a fresh restore of `generation` (default: the latest), in one transaction.
    async fn rebuild(&self, live: &mut Live, generation: Option<Generation>) -> Result<()> {
        let rebuilding = generation.is_none();
        let Some((cursor, newest)) = self.replace(&live.target, generation).await? else {
            return Err(Error::NoBackups(self.replica_name.clone()));
        };
        live.cursor = cursor;
        live.newest = newest;
        if rebuilding {
            self.status.rebuilt();
        }
        Ok(())
    }

    /// Restore `generation` privately and write it over `target`, in one transaction; the cursor after it. `None`
    /// when the replica has no backup of it.
    async fn replace(&self, target: &Shared, generation: Option<Generation>) -> Result<Option<(Cursor, SystemTime)>> {
        let Some((next, mut cursor, newest)) = self.build(generation).await? else {
            return Ok(None);
        };
        let source = next.clone();
        let replaced = target.run(move |t| t.replace_with(&source)).await;
        remove_db_files(&next);
        (cursor.db_pages, cursor.page1_hash) = replaced?;
        CursorFile::for_db(&self.opts.path).save(&cursor)?;
        Ok(Some((cursor, newest)))
    }
}

/// Errors about the follower's own files, which polling again cannot fix.
fn is_fatal(e: &Error) -> bool {
    matches!(e, Error::Sqlite { .. } | Error::State { .. } | Error::NotADatabase { .. })
        || matches!(e, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied)
}

fn dir_of(path: &Path) -> PathBuf {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned()
}

fn remove_db_files(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Sleep for `d`; `true` if cancelled meanwhile.
async fn sleep_or_cancel(d: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

async fn blocking<T: Send + 'static>(path: &Path, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(std::io::Error::other).at(path)?
}

/// The follower's database connection, used from blocking threads one call at a time.
#[derive(Clone)]
struct Shared(Arc<std::sync::Mutex<Target>>);

impl Shared {
    fn new(target: Target) -> Self {
        Self(Arc::new(std::sync::Mutex::new(target)))
    }

    /// Run blocking SQLite work on the database on a blocking thread.
    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Target) -> Result<T> + Send + 'static) -> Result<T> {
        let shared = self.0.clone();
        let path = self.path();
        tokio::task::spawn_blocking(move || f(&mut lock(&shared))).await.map_err(std::io::Error::other).at(path)?
    }

    fn path(&self) -> PathBuf {
        lock(&self.0).path().to_owned()
    }
}
