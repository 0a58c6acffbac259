//! Prometheus metrics. Litestream 0.3's names and labels, so existing dashboards and alerts keep working, plus
//! litecar's own under `litecar_`. Replication state is read from each replicator's status at scrape time; replica
//! operations are counted as they happen.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use litecar_replicate::client::OpObserver;
use litecar_replicate::replicator::{APP_WAIT_BUCKETS, SharedStatus, WaitHistogram};
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{
    CounterVec, Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Metrics updated as replica operations complete.
#[derive(Debug, Clone)]
pub struct OpMetrics {
    total: IntCounterVec,
    bytes: IntCounterVec,
    errors: IntCounterVec,
    seconds: HistogramVec,
}

impl OpMetrics {
    /// Create the zero-valued series of a backend type, so rates and alerts work before the first error.
    pub fn init(&self, kind: &'static str) {
        for op in ["PUT", "GET", "LIST", "DELETE"] {
            self.total.with_label_values(&[kind, op]);
            self.bytes.with_label_values(&[kind, op]);
            self.errors.with_label_values(&[kind, op]);
            self.seconds.with_label_values(&[kind, op]);
        }
    }
}

impl OpObserver for OpMetrics {
    fn observe(&self, kind: &'static str, op: &'static str, elapsed: Duration, bytes: u64, ok: bool) {
        self.total.with_label_values(&[kind, op]).inc();
        self.bytes.with_label_values(&[kind, op]).inc_by(bytes);
        self.seconds.with_label_values(&[kind, op]).observe(elapsed.as_secs_f64());
        if !ok {
            self.errors.with_label_values(&[kind, op]).inc();
        }
    }
}

/// A database whose replicator status is exported.
#[derive(Debug, Clone)]
pub struct DbHandle {
    pub path: PathBuf,
    pub status: SharedStatus,
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub ops: Arc<OpMetrics>,
    dbs: Arc<std::sync::Mutex<Vec<DbHandle>>>,
    /// Other parts' readiness (the watch-cache's first lists): each returns what is not ready yet.
    checks: Arc<std::sync::Mutex<Vec<ReadinessCheck>>>,
    followers: Arc<std::sync::Mutex<Vec<crate::follow_metrics::FollowerHandle>>>,
}

pub type ReadinessCheck = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let labels = &["replica_type", "operation"];
        let ops = OpMetrics {
            total: IntCounterVec::new(
                Opts::new("litestream_replica_operation_total", "Replica operations, by backend type and operation"),
                labels,
            )?,
            bytes: IntCounterVec::new(
                Opts::new("litestream_replica_operation_bytes", "Bytes moved by replica operations"),
                labels,
            )?,
            errors: IntCounterVec::new(
                Opts::new("litecar_replica_operation_errors_total", "Replica operations that failed"),
                labels,
            )?,
            seconds: HistogramVec::new(
                HistogramOpts::new("litecar_replica_operation_seconds", "Latency of replica operations")
                    .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
                labels,
            )?,
        };
        registry.register(Box::new(ops.total.clone()))?;
        registry.register(Box::new(ops.bytes.clone()))?;
        registry.register(Box::new(ops.errors.clone()))?;
        registry.register(Box::new(ops.seconds.clone()))?;
        let build = GaugeVec::new(Opts::new("litecar_build_info", "Build information; always 1"), &["version"])?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1.0);
        registry.register(Box::new(build))?;
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Self {
            registry,
            ops: Arc::new(ops),
            dbs: Arc::default(),
            checks: Arc::default(),
            followers: Arc::default(),
        })
    }

    pub fn add_db(&self, db: DbHandle) {
        self.dbs.lock().unwrap_or_else(|p| p.into_inner()).push(db);
    }

    pub fn add_readiness_check(&self, check: ReadinessCheck) {
        self.checks.lock().unwrap_or_else(|p| p.into_inner()).push(check);
    }

    pub fn add_follower(&self, path: PathBuf, status: Arc<litecar_replicate::follow::FollowStatus>) {
        self.followers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(crate::follow_metrics::FollowerHandle { path, status });
    }

    fn followers(&self) -> Vec<crate::follow_metrics::FollowerHandle> {
        self.followers.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn dbs(&self) -> Vec<DbHandle> {
        self.dbs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
        match self.status_families() {
            Ok(f) => families.extend(f),
            Err(e) => tracing::error!(error = %e, "building replication metrics failed"),
        }
        match crate::follow_metrics::families(&self.followers()) {
            Ok(f) => families.extend(f),
            Err(e) => tracing::error!(error = %e, "building follower metrics failed"),
        }
        // A family without series (no replicated database in a follower-only process) cannot be encoded.
        families.retain(|f| !f.get_metric().is_empty());
        families.sort_by(|a, b| a.name().cmp(b.name()));
        let mut out = vec![];
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    fn status_families(&self) -> Result<Vec<MetricFamily>, prometheus::Error> {
        let g = |name: &str, help: &str, labels: &[&str]| GaugeVec::new(Opts::new(name, help), labels);
        let c = |name: &str, help: &str, labels: &[&str]| CounterVec::new(Opts::new(name, help), labels);
        let db_size = g("litestream_db_size", "Size of the database file, in bytes", &["db"])?;
        let wal_size = g("litestream_wal_size", "Size of the WAL file, in bytes", &["db"])?;
        let total_wal = c("litestream_total_wal_bytes", "WAL bytes copied to the spool", &["db"])?;
        let shadow_index = g("litestream_shadow_wal_index", "Current WAL index", &["db"])?;
        let shadow_size = g("litestream_shadow_wal_size", "Bytes copied of the current WAL index", &["db"])?;
        let sync_count = c("litestream_sync_count", "Syncs", &["db"])?;
        let sync_errors = c("litestream_sync_error_count", "Failed syncs", &["db"])?;
        let sync_seconds = c("litestream_sync_seconds", "Time spent syncing, in seconds", &["db"])?;
        let ckpt_count = c("litestream_checkpoint_count", "Checkpoints", &["db", "mode"])?;
        let ckpt_errors = c("litestream_checkpoint_error_count", "Failed checkpoints", &["db", "mode"])?;
        let ckpt_seconds = c("litestream_checkpoint_seconds", "Time spent checkpointing, in seconds", &["db", "mode"])?;
        let r_bytes = c("litestream_replica_wal_bytes", "Bytes uploaded to the replica", &["db", "name"])?;
        let r_index = g("litestream_replica_wal_index", "WAL index of the last segment uploaded", &["db", "name"])?;
        let r_offset = g("litestream_replica_wal_offset", "Offset of the last segment uploaded", &["db", "name"])?;
        let lag = g(
            "litecar_replication_lag_seconds",
            "Age of the oldest committed data the replica does not have yet (0 when caught up)",
            &["db", "name"],
        )?;
        let pending = g("litecar_pending_bytes", "Bytes in the spool that some replica still needs", &["db"])?;
        let last_sync = g(
            "litecar_replica_last_sync_timestamp_seconds",
            "Unix time of the replica's last successful upload",
            &["db", "name"],
        )?;
        let up = g("litecar_replica_up", "1 when the replica's last operation succeeded", &["db", "name"])?;
        let failures = c("litecar_replica_upload_errors_total", "Failed uploads", &["db", "name"])?;
        let retention = c("litecar_retention_deleted_total", "Objects deleted by retention", &["db", "name"])?;
        let snapshots = c("litecar_snapshots_total", "Snapshots taken", &["db"])?;
        let snap_bytes = g("litecar_snapshot_bytes", "Compressed size of the last snapshot", &["db"])?;
        let snap_seconds = g("litecar_snapshot_seconds", "Time the last snapshot took, in seconds", &["db"])?;
        let app_checkpoints = c(
            "litecar_app_checkpoints_observed_total",
            "Checkpoints of the application (RESTART, TRUNCATE) that litecar stepped aside for",
            &["db"],
        )?;
        let mut app_wait = app_wait_family();

        let now = SystemTime::now();
        for db in self.dbs() {
            let path = db.path.display().to_string();
            let s = db.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let l = &[path.as_str()];
            db_size.with_label_values(l).set(std::fs::metadata(&db.path).map_or(0, |m| m.len()) as f64);
            let wal = litecar_replicate::wal::wal_path(&db.path);
            wal_size.with_label_values(l).set(std::fs::metadata(wal).map_or(0, |m| m.len()) as f64);
            total_wal.with_label_values(l).inc_by(s.bytes_staged as f64);
            shadow_index.with_label_values(l).set(f64::from(s.index));
            shadow_size.with_label_values(l).set(s.offset as f64);
            sync_count.with_label_values(l).inc_by(s.syncs as f64);
            sync_errors.with_label_values(l).inc_by(s.sync_errors as f64);
            sync_seconds.with_label_values(l).inc_by(s.sync_seconds);
            for mode in ["passive", "truncate"] {
                let (n, secs) = s.checkpoints.get(mode).copied().unwrap_or_default();
                ckpt_count.with_label_values(&[&path, mode]).inc_by(n as f64);
                ckpt_seconds.with_label_values(&[&path, mode]).inc_by(secs);
                // A failed checkpoint fails its sync; they are counted there and as zero here.
                ckpt_errors.with_label_values(&[&path, mode]).inc_by(0.0);
            }
            pending.with_label_values(l).set(s.pending_bytes as f64);
            snapshots.with_label_values(l).inc_by(s.snapshots as f64);
            snap_bytes.with_label_values(l).set(s.last_snapshot_bytes as f64);
            snap_seconds.with_label_values(l).set(s.last_snapshot_seconds);
            app_checkpoints.with_label_values(l).inc_by(s.app_checkpoints_observed as f64);
            app_wait.mut_metric().push(app_wait_metric(&path, &s.app_wait));
            for r in &s.replicas {
                let rl = &[path.as_str(), r.name.as_str()];
                r_bytes.with_label_values(rl).inc_by(r.uploaded_bytes as f64);
                r_index.with_label_values(rl).set(f64::from(r.wal_index));
                r_offset.with_label_values(rl).set(r.wal_offset as f64);
                let behind = r.oldest_pending.and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
                lag.with_label_values(rl).set(behind.as_secs_f64());
                let epoch = |t: Option<SystemTime>| {
                    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64())
                };
                last_sync.with_label_values(rl).set(epoch(r.last_upload));
                up.with_label_values(rl).set(if r.reachable && r.consecutive_errors == 0 { 1.0 } else { 0.0 });
                failures.with_label_values(rl).inc_by(r.errors as f64);
                retention.with_label_values(rl).inc_by(r.retention_deleted as f64);
            }
        }
        let mut out = vec![];
        for collector in [
            &db_size as &dyn Collector,
            &wal_size,
            &total_wal,
            &shadow_index,
            &shadow_size,
            &sync_count,
            &sync_errors,
            &sync_seconds,
            &ckpt_count,
            &ckpt_errors,
            &ckpt_seconds,
            &r_bytes,
            &r_index,
            &r_offset,
            &lag,
            &pending,
            &last_sync,
            &up,
            &failures,
            &retention,
            &snapshots,
            &snap_bytes,
            &snap_seconds,
            &app_checkpoints,
        ] {
            out.extend(collector.collect());
        }
        out.push(app_wait);
        Ok(out)
    }

    /// Readiness: every database found and synced once, every replica reachable and its last upload successful.
    /// `Err` lists what is not ready.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems = vec![];
        for db in self.dbs() {
            let s = db.status.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let path = db.path.display();
            if !s.database_found {
                problems.push(format!("{path}: waiting for the database"));
            } else if !s.initial_sync {
                problems.push(format!("{path}: initial sync not done"));
            }
            for r in &s.replicas {
                if !r.reachable {
                    problems.push(format!("{path}: replica {} not reachable", r.name));
                } else if r.consecutive_errors > 0 {
                    let why = r.last_error.as_deref().unwrap_or("upload failed");
                    problems.push(format!("{path}: replica {}: {why}", r.name));
                }
            }
        }
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner()).clone();
        for check in checks {
            problems.extend(check());
        }
        problems.extend(crate::follow_metrics::readiness(&self.followers()));
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// `litecar_app_wait_seconds`: built from the buckets the replicator keeps, as a histogram that lives across scrapes.
fn app_wait_family() -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name("litecar_app_wait_seconds".into());
    f.set_help(
        "How long each checkpoint of the application waited on litecar's read lock before litecar stepped aside".into(),
    );
    f.set_field_type(prometheus::proto::MetricType::HISTOGRAM);
    f
}

fn app_wait_metric(db: &str, h: &WaitHistogram) -> prometheus::proto::Metric {
    let mut label = prometheus::proto::LabelPair::default();
    label.set_name("db".into());
    label.set_value(db.into());
    let mut cumulative = 0;
    let buckets = APP_WAIT_BUCKETS
        .iter()
        .zip(h.buckets)
        .map(|(bound, n)| {
            cumulative += n;
            let mut b = prometheus::proto::Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            b
        })
        .collect();
    let mut histogram = prometheus::proto::Histogram::default();
    histogram.set_sample_count(h.count);
    histogram.set_sample_sum(h.sum);
    histogram.set_bucket(buckets);
    let mut m = prometheus::proto::Metric::from_label(vec![label]);
    m.set_histogram(histogram);
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_includes_other_parts_checks() {
        let m = Metrics::new().expect("metrics");
        assert_eq!(m.readiness(), Ok(()));
        let warming = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let w = warming.clone();
        m.add_readiness_check(Arc::new(move || {
            if w.load(std::sync::atomic::Ordering::SeqCst) {
                vec!["watchcache v1/Pod: warming up".into()]
            } else {
                vec![]
            }
        }));
        assert_eq!(m.readiness(), Err(vec!["watchcache v1/Pod: warming up".to_owned()]));
        warming.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(m.readiness(), Ok(()));
    }
}
