//! The replica-client abstraction. A backend stores opaque objects under keys relative to the replica's root; the
//! Litestream layout on top of it ([`Replica`]) is written once for every backend.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::error::ReplicaError;
use crate::layout::{self, Generation, Pos};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Last path component of the key.
    pub name: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// One storage backend (file directory, S3 bucket prefix, ...). Keys are `/`-separated and relative to the root.
#[async_trait]
pub trait ObjectClient: Send + Sync + fmt::Debug {
    /// A description for messages, such as `file:///backups/app` (never a credential).
    fn describe(&self) -> String;
    /// Backend type for metrics and messages: `file`, `s3`, `abs`, `gcs`.
    fn kind(&self) -> &'static str;
    /// Names of the immediate sub-"directories" of `prefix`.
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError>;
    /// Objects directly under `prefix`. A missing prefix is an empty list.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError>;
    /// Objects directly under `prefix` whose names sort after `start_after`, in one request where the store can
    /// start a listing there (S3's `start-after`), so that a follower polling for new segments never lists the
    /// ones it already has.
    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        let mut all = self.list(prefix).await?;
        all.retain(|o| o.name.as_str() > start_after);
        Ok(all)
    }
    /// Store the file at `src` as `key`. `created` is the time the data was staged, which backends that can keep it
    /// use as the object's timestamp. Returns only once the object is durable.
    async fn put_file(&self, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError>;
    /// Copy object `key` into the local file `dst` (created or truncated); returns its size.
    async fn get_file(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError>;
    /// Delete objects; keys that do not exist are not an error.
    async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError>;
    /// Where object `key` can be read in place, for backends that are local directories: restore then reads it
    /// without copying it first.
    fn local_path(&self, _key: &str) -> Option<std::path::PathBuf> {
        None
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub generation: Generation,
    pub index: u32,
    pub size: u64,
    pub created: SystemTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub generation: Generation,
    pub pos: Pos,
    pub size: u64,
    pub created: SystemTime,
}

/// Operations made on a replica (one per object, whatever the number of HTTP requests behind it), for metrics and
/// for the request-economy tests.
#[derive(Debug, Default)]
pub struct OpCounters {
    pub put: AtomicU64,
    pub get: AtomicU64,
    pub list: AtomicU64,
    pub delete: AtomicU64,
    pub put_bytes: AtomicU64,
    pub get_bytes: AtomicU64,
}

impl OpCounters {
    /// `(operation, count)` pairs, named as Litestream's `litestream_replica_operation_total` labels them.
    pub fn counts(&self) -> [(&'static str, u64); 4] {
        [
            ("PUT", self.put.load(Ordering::Relaxed)),
            ("GET", self.get.load(Ordering::Relaxed)),
            ("LIST", self.list.load(Ordering::Relaxed)),
            ("DELETE", self.delete.load(Ordering::Relaxed)),
        ]
    }
}

/// Told about every replica operation as it completes, for latency and error metrics.
pub trait OpObserver: Send + Sync + fmt::Debug {
    /// `op` is PUT, GET, LIST or DELETE; `kind` the backend type (file, s3, abs, gcs).
    fn observe(&self, kind: &'static str, op: &'static str, elapsed: std::time::Duration, bytes: u64, ok: bool);
}

/// A named replica: a backend plus the Litestream layout.
///
/// Reads, listings and deletes are idempotent, so a transient failure is retried, once per request, by exactly one
/// layer: the client itself where it retries (object_store's retry for S3, Azure and GCS, see
/// [`crate::backend::connect`]), else this type (`retry_transient`). Uploads are never retried here: the uploader
/// retries them from the spool with its own backoff.
#[derive(Debug, Clone)]
pub struct Replica {
    pub name: String,
    pub client: Arc<dyn ObjectClient>,
    pub ops: Arc<OpCounters>,
    observer: Option<Arc<dyn OpObserver>>,
    /// Whether this type retries reads; false where the client retries them itself.
    retry_reads: bool,
}

impl Replica {
    pub fn new(name: impl Into<String>, client: Arc<dyn ObjectClient>) -> Self {
        Self { name: name.into(), client, ops: Arc::default(), observer: None, retry_reads: true }
    }

    /// For clients that retry transient failures themselves: one retry layer, not one inside another.
    pub(crate) fn retried_by_client(mut self) -> Self {
        self.retry_reads = false;
        self
    }

    /// This replica over `wrap(client)`, such as an encrypting layer; counters, observer and retry layer are kept.
    pub fn wrap_client(self, wrap: impl FnOnce(Arc<dyn ObjectClient>) -> Arc<dyn ObjectClient>) -> Self {
        Self { client: wrap(self.client.clone()), ..self }
    }

    async fn retried<T, Fut>(&self, op: impl FnMut() -> Fut) -> Result<T, ReplicaError>
    where
        Fut: std::future::Future<Output = Result<T, ReplicaError>>,
    {
        if self.retry_reads { retry_transient(op).await } else { once(op).await }
    }

    pub fn with_observer(mut self, observer: Arc<dyn OpObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn count(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Time `f` and report it to the observer.
    async fn observed<T>(
        &self,
        op: &'static str,
        bytes: impl Fn(&T) -> u64,
        f: impl std::future::Future<Output = Result<T, ReplicaError>>,
    ) -> Result<T, ReplicaError> {
        let started = std::time::Instant::now();
        let r = f.await;
        if let Some(o) = &self.observer {
            o.observe(self.client.kind(), op, started.elapsed(), r.as_ref().map_or(0, &bytes), r.is_ok());
        }
        r
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
        self.retried(|| {
            self.count(&self.ops.list);
            self.observed("LIST", |_| 0, self.client.list_dirs(prefix))
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        self.retried(|| {
            self.count(&self.ops.list);
            self.observed("LIST", |_| 0, self.client.list(prefix))
        })
        .await
    }

    async fn put(&self, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError> {
        self.count(&self.ops.put);
        let size = std::fs::metadata(src).map(|m| m.len()).unwrap_or(0);
        self.observed("PUT", |_| size, self.client.put_file(key, src, created)).await?;
        self.ops.put_bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    async fn get(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError> {
        let n = self
            .retried(|| {
                self.count(&self.ops.get);
                self.observed("GET", |n| *n, self.client.get_file(key, dst))
            })
            .await?;
        self.ops.get_bytes.fetch_add(n, Ordering::Relaxed);
        Ok(n)
    }

    /// Delete objects by key; missing ones are fine.
    pub async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError> {
        self.retried(|| {
            self.ops.delete.fetch_add(keys.len() as u64, Ordering::Relaxed);
            self.observed("DELETE", |_| 0, self.client.delete(keys))
        })
        .await
    }

    /// Generations present on the replica, sorted; entries that are not generation ids are ignored.
    pub async fn generations(&self) -> Result<Vec<Generation>, ReplicaError> {
        let mut gens: Vec<Generation> = self
            .list_dirs(layout::GENERATIONS_DIR)
            .await?
            .into_iter()
            .filter_map(|d| Generation::parse(&d).ok())
            .collect();
        gens.sort();
        Ok(gens)
    }

    /// WAL segments of a generation whose file names sort after `start_after` (a segment's or snapshot's file name
    /// or a prefix of one), by position: one LIST request.
    pub async fn segments_after(
        &self,
        generation: &Generation,
        start_after: &str,
    ) -> Result<Vec<SegmentInfo>, ReplicaError> {
        let prefix = layout::wal_dir(generation);
        let objects = self
            .retried(|| {
                self.count(&self.ops.list);
                self.observed("LIST", |_| 0, self.client.list_after(&prefix, start_after))
            })
            .await?;
        Ok(segment_infos(generation, objects))
    }

    /// Snapshots of a generation, by index.
    pub async fn snapshots(&self, generation: &Generation) -> Result<Vec<SnapshotInfo>, ReplicaError> {
        let mut out: Vec<SnapshotInfo> = self
            .list(&layout::snapshots_dir(generation))
            .await?
            .into_iter()
            .filter_map(|o| {
                Some(SnapshotInfo {
                    generation: generation.clone(),
                    index: layout::parse_snapshot_file_name(&o.name)?,
                    size: o.size,
                    created: o.modified,
                })
            })
            .collect();
        out.sort_by_key(|s| s.index);
        Ok(out)
    }

    /// WAL segments of a generation, by position.
    pub async fn segments(&self, generation: &Generation) -> Result<Vec<SegmentInfo>, ReplicaError> {
        Ok(segment_infos(generation, self.list(&layout::wal_dir(generation)).await?))
    }

    pub async fn put_snapshot(
        &self,
        generation: &Generation,
        index: u32,
        src: &Path,
        created: SystemTime,
    ) -> Result<(), ReplicaError> {
        self.put(&layout::snapshot_key(generation, index), src, created).await
    }

    pub async fn put_segment(
        &self,
        generation: &Generation,
        pos: Pos,
        src: &Path,
        created: SystemTime,
    ) -> Result<(), ReplicaError> {
        self.put(&layout::wal_segment_key(generation, pos), src, created).await
    }

    pub async fn get_snapshot(&self, generation: &Generation, index: u32, dst: &Path) -> Result<u64, ReplicaError> {
        self.get(&layout::snapshot_key(generation, index), dst).await
    }

    pub async fn get_segment(&self, generation: &Generation, pos: Pos, dst: &Path) -> Result<u64, ReplicaError> {
        self.get(&layout::wal_segment_key(generation, pos), dst).await
    }

    /// Delete a whole generation: its snapshots and segments.
    pub async fn delete_generation(&self, generation: &Generation) -> Result<(), ReplicaError> {
        let mut keys: Vec<String> =
            self.segments(generation).await?.iter().map(|s| layout::wal_segment_key(generation, s.pos)).collect();
        keys.extend(self.snapshots(generation).await?.iter().map(|s| layout::snapshot_key(generation, s.index)));
        self.delete(&keys).await
    }
}

async fn once<T, Fut>(mut op: impl FnMut() -> Fut) -> Result<T, ReplicaError>
where
    Fut: std::future::Future<Output = Result<T, ReplicaError>>,
{
    op().await
}

/// Retry an idempotent operation (reads, deletes) on transient errors: exponential backoff with jitter, a few
/// attempts. Uploads are not retried here: the uploader keeps failed ones in the spool and retries them itself.
async fn retry_transient<T, F, Fut>(mut op: F) -> Result<T, ReplicaError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ReplicaError>>,
{
    const ATTEMPTS: u32 = 8;
    let mut delay = std::time::Duration::from_millis(50);
    for attempt in 1.. {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_permanent() || attempt >= ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::debug!(error = %e, attempt, "transient replica error; retrying");
                let jitter = rand::random_range(0..=delay.as_millis() as u64 / 2);
                tokio::time::sleep(delay + std::time::Duration::from_millis(jitter)).await;
                delay = (delay * 2).min(std::time::Duration::from_secs(5));
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}

/// The WAL segments among a generation's `wal/` objects, by position (other names are skipped).
fn segment_infos(generation: &Generation, objects: Vec<ObjectInfo>) -> Vec<SegmentInfo> {
    let mut out: Vec<SegmentInfo> = objects
        .into_iter()
        .filter_map(|o| {
            Some(SegmentInfo {
                generation: generation.clone(),
                pos: layout::parse_wal_segment_file_name(&o.name)?,
                size: o.size,
                created: o.modified,
            })
        })
        .collect();
    out.sort_by_key(|s| s.pos);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails its first `failures` listings with a transient error; counts every call.
    #[derive(Debug, Default)]
    struct Flaky {
        failures: u64,
        calls: AtomicU64,
    }

    #[async_trait]
    impl ObjectClient for Flaky {
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn kind(&self) -> &'static str {
            "file"
        }
        async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
            if self.calls.fetch_add(1, Ordering::Relaxed) < self.failures {
                let message = "503 Service Unavailable".into();
                return Err(ReplicaError::Backend {
                    replica: self.describe(),
                    op: "list",
                    key: prefix.into(),
                    message,
                    permanent: false,
                });
            }
            Ok(vec![])
        }
        async fn list(&self, _: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
            Ok(vec![])
        }
        async fn put_file(&self, _: &str, _: &Path, _: SystemTime) -> Result<(), ReplicaError> {
            Ok(())
        }
        async fn get_file(&self, _: &str, _: &Path) -> Result<u64, ReplicaError> {
            Ok(0)
        }
        async fn delete(&self, _: &[String]) -> Result<(), ReplicaError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_read_is_retried_by_one_layer_only() {
        let flaky = Arc::new(Flaky { failures: 1, ..Default::default() });
        let replica = Replica::new("flaky", flaky.clone());
        assert_eq!(replica.generations().await.expect("retried"), vec![]);
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 2, "a client that does not retry is retried here");

        let flaky = Arc::new(Flaky { failures: 1, ..Default::default() });
        let replica = Replica::new("flaky", flaky.clone()).retried_by_client();
        let e = replica.generations().await.expect_err("not retried again");
        assert!(!e.is_permanent(), "{e}");
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 1, "a client that retries itself is not retried again");

        let flaky = Arc::new(Flaky { failures: 1, ..Default::default() });
        let wrapped = Replica::new("flaky", flaky.clone()).retried_by_client().wrap_client(|c| c);
        wrapped.generations().await.expect_err("not retried again");
        assert_eq!(flaky.calls.load(Ordering::Relaxed), 1, "wrapping the client keeps the retry layer");
    }
}
