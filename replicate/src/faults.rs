//! A fault-injecting replica client for tests (after neon's remote_storage): wraps any backend and, at random,
//! fails requests before they are sent (a 503), loses the response of requests that succeeded, delays them, and
//! cuts downloads short. Code above it must keep replicating, lose nothing, and never accept a partial object.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::client::{ObjectClient, ObjectInfo};
use crate::error::ReplicaError;

#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Probability that a request fails before reaching the store.
    pub fail_before: f64,
    /// Probability that a request that succeeded is reported as failed (a lost response).
    pub fail_after: f64,
    /// Probability of a delay of up to `max_delay` before a request.
    pub delay: f64,
    pub max_delay: Duration,
    /// Probability that a download stops half way with a reset connection.
    pub truncate: f64,
}

impl FaultConfig {
    /// No random faults: only the outages and hangs a test asks for.
    pub fn none() -> Self {
        Self { fail_before: 0.0, fail_after: 0.0, delay: 0.0, max_delay: Duration::ZERO, truncate: 0.0 }
    }
}

impl Default for FaultConfig {
    fn default() -> Self {
        Self { fail_before: 0.2, fail_after: 0.1, delay: 0.2, max_delay: Duration::from_millis(300), truncate: 0.2 }
    }
}

#[derive(Debug)]
pub struct FaultyClient {
    inner: Arc<dyn ObjectClient>,
    config: FaultConfig,
    /// A full outage: every request fails until it is over.
    down: AtomicBool,
    /// A hung store: every request waits forever (until its caller gives up on it).
    hang: AtomicBool,
    pub injected: AtomicU64,
}

impl FaultyClient {
    pub fn new(inner: Arc<dyn ObjectClient>, config: FaultConfig) -> Self {
        Self { inner, config, down: AtomicBool::new(false), hang: AtomicBool::new(false), injected: AtomicU64::new(0) }
    }

    /// Start or end an outage of the store.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Start or end a hang: requests made meanwhile never answer.
    pub fn set_hang(&self, hang: bool) {
        self.hang.store(hang, Ordering::Relaxed);
    }

    fn roll(&self, p: f64) -> bool {
        let hit = rand::random::<f64>() < p;
        if hit {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        hit
    }

    fn fault(&self, op: &'static str, key: &str, message: &str) -> ReplicaError {
        ReplicaError::Backend {
            replica: self.inner.describe(),
            op,
            key: key.to_owned(),
            message: format!("injected fault: {message}"),
            permanent: false,
        }
    }

    async fn before(&self, op: &'static str, key: &str) -> Result<(), ReplicaError> {
        if self.hang.load(Ordering::Relaxed) {
            std::future::pending::<()>().await;
        }
        if self.roll(self.config.delay) {
            let ms = rand::random_range(0..=self.config.max_delay.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if self.down.load(Ordering::Relaxed) || self.roll(self.config.fail_before) {
            return Err(self.fault(op, key, "503 Service Unavailable"));
        }
        Ok(())
    }

    fn after<T>(&self, op: &'static str, key: &str, result: Result<T, ReplicaError>) -> Result<T, ReplicaError> {
        match result {
            Ok(_) if self.roll(self.config.fail_after) => {
                Err(self.fault(op, key, "connection reset before the response"))
            }
            other => other,
        }
    }
}

#[async_trait]
impl ObjectClient for FaultyClient {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
        self.before("list", prefix).await?;
        let r = self.inner.list_dirs(prefix).await;
        self.after("list", prefix, r)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        self.before("list", prefix).await?;
        let r = self.inner.list(prefix).await;
        self.after("list", prefix, r)
    }

    async fn put_file(&self, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError> {
        self.before("put", key).await?;
        let r = self.inner.put_file(key, src, created).await;
        self.after("put", key, r)
    }

    async fn get_file(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError> {
        self.before("get", key).await?;
        let n = self.inner.get_file(key, dst).await?;
        if self.roll(self.config.truncate) {
            // What a connection reset mid-body leaves behind: part of the file, and an error.
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(dst) {
                let _ = f.set_len(n / 2);
            }
            return Err(self.fault("get", key, "connection reset mid-body"));
        }
        self.after("get", key, Ok(n))
    }

    async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError> {
        let first = keys.first().map(String::as_str).unwrap_or_default();
        self.before("delete", first).await?;
        let r = self.inner.delete(keys).await;
        self.after("delete", first, r)
    }
}
