//! Prometheus metrics. Litestream 0.3's names and labels, so existing dashboards and alerts keep working, plus
//! litecar's own under `litecar_`. Replication state is read from each replicator's status at scrape time, by one
//! collector ([`ReplicationCollector`]); replica operations are counted as they happen.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use litecar_replicate::OpObserver;
use litecar_replicate::replicator::{APP_WAIT_BUCKETS, StatusHandle, WaitHistogram};
use litecar_rest::sync::lock;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};

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
    pub status: StatusHandle,
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
        let dbs: Arc<std::sync::Mutex<Vec<DbHandle>>> = Arc::default();
        registry.register(Box::new(ReplicationCollector::new(dbs.clone())?))?;
        Ok(Self { registry, ops: Arc::new(ops), dbs, checks: Arc::default(), followers: Arc::default() })
    }

    pub fn add_db(&self, db: DbHandle) {
        lock(&self.dbs).push(db);
    }

    pub fn add_readiness_check(&self, check: ReadinessCheck) {
        lock(&self.checks).push(check);
    }

    pub fn add_follower(&self, path: PathBuf, status: Arc<litecar_replicate::follow::FollowStatus>) {
        lock(&self.followers).push(crate::follow_metrics::FollowerHandle { path, status });
    }

    fn followers(&self) -> Vec<crate::follow_metrics::FollowerHandle> {
        lock(&self.followers).clone()
    }

    pub fn dbs(&self) -> Vec<DbHandle> {
        lock(&self.dbs).clone()
    }

    /// The text exposition format of every metric.
    pub fn render(&self) -> String {
        let mut families = self.registry.gather();
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

    /// Readiness: every database found and synced once, every replica reachable and its last upload successful.
    /// `Err` lists what is not ready.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems = vec![];
        for db in self.dbs() {
            let s = db.status.snapshot();
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
        let checks = lock(&self.checks).clone();
        for check in checks {
            problems.extend(check());
        }
        problems.extend(crate::follow_metrics::readiness(&self.followers()));
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// The families of replication state: name, help, type and labels. The order is that of the exposition.
const FAMILIES: &[(&str, &str, MetricType, &[&str])] = {
    use MetricType::{COUNTER as C, GAUGE as G, HISTOGRAM as H};
    const DB: &[&str] = &["db"];
    const MODE: &[&str] = &["db", "mode"];
    const NAME: &[&str] = &["db", "name"];
    &[
        ("litestream_db_size", "Size of the database file, in bytes", G, DB),
        ("litestream_wal_size", "Size of the WAL file, in bytes", G, DB),
        ("litestream_total_wal_bytes", "WAL bytes copied to the spool", C, DB),
        ("litestream_shadow_wal_index", "Current WAL index", G, DB),
        ("litestream_shadow_wal_size", "Bytes copied of the current WAL index", G, DB),
        ("litestream_sync_count", "Syncs", C, DB),
        ("litestream_sync_error_count", "Failed syncs", C, DB),
        ("litestream_sync_seconds", "Time spent syncing, in seconds", C, DB),
        ("litestream_checkpoint_count", "Checkpoints", C, MODE),
        ("litestream_checkpoint_error_count", "Failed checkpoints", C, MODE),
        ("litestream_checkpoint_seconds", "Time spent checkpointing, in seconds", C, MODE),
        ("litestream_replica_wal_bytes", "Bytes uploaded to the replica", C, NAME),
        ("litestream_replica_wal_index", "WAL index of the last segment uploaded", G, NAME),
        ("litestream_replica_wal_offset", "Offset of the last segment uploaded", G, NAME),
        (
            "litecar_replication_lag_seconds",
            "Age of the oldest committed data the replica does not have yet (0 when caught up)",
            G,
            NAME,
        ),
        ("litecar_pending_bytes", "Bytes in the spool that some replica still needs", G, DB),
        ("litecar_replica_last_sync_timestamp_seconds", "Unix time of the replica's last successful upload", G, NAME),
        ("litecar_replica_up", "1 when the replica's last operation succeeded", G, NAME),
        ("litecar_replica_upload_errors_total", "Failed uploads", C, NAME),
        ("litecar_retention_deleted_total", "Objects deleted by retention", C, NAME),
        ("litecar_snapshots_total", "Snapshots taken", C, DB),
        ("litecar_snapshot_bytes", "Compressed size of the last snapshot", G, DB),
        ("litecar_snapshot_seconds", "Time the last snapshot took, in seconds", G, DB),
        (
            "litecar_app_checkpoints_observed_total",
            "Checkpoints of the application (RESTART, TRUNCATE) that litecar stepped aside for",
            C,
            DB,
        ),
        (
            "litecar_app_wait_seconds",
            "How long each checkpoint of the application waited on litecar's read lock before litecar stepped aside",
            H,
            DB,
        ),
        (
            "litecar_write_lock_holds_total",
            "Times litecar held the database's write lock (the application's writers wait on it meanwhile)",
            C,
            DB,
        ),
        ("litecar_write_lock_hold_seconds", "How long each of litecar's holds of the write lock lasted", H, DB),
    ]
};

/// Every replicated database's state, built from its replicator's status at each scrape; registered once.
pub struct ReplicationCollector {
    dbs: Arc<std::sync::Mutex<Vec<DbHandle>>>,
    descs: Vec<Desc>,
}

impl ReplicationCollector {
    fn new(dbs: Arc<std::sync::Mutex<Vec<DbHandle>>>) -> Result<Self, prometheus::Error> {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(
                    (*name).into(),
                    (*help).into(),
                    labels.iter().map(|l| (*l).to_owned()).collect(),
                    Default::default(),
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { dbs, descs })
    }
}

impl Collector for ReplicationCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let dbs = lock(&self.dbs).clone();
        let mut out = Families::new();
        let now = SystemTime::now();
        for db in dbs {
            let s = db.status.snapshot();
            let path = db.path.display().to_string();
            let l = [path.as_str()];
            let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len()) as f64;
            out.add("litestream_db_size", &l, size(&db.path));
            out.add("litestream_wal_size", &l, size(&db.status.wal_path()));
            out.add("litestream_total_wal_bytes", &l, s.bytes_staged as f64);
            out.add("litestream_shadow_wal_index", &l, f64::from(s.index));
            out.add("litestream_shadow_wal_size", &l, s.offset as f64);
            out.add("litestream_sync_count", &l, s.syncs as f64);
            out.add("litestream_sync_error_count", &l, s.sync_errors as f64);
            out.add("litestream_sync_seconds", &l, s.sync_seconds);
            for mode in ["passive", "truncate"] {
                let (n, secs) = s.checkpoints.get(mode).copied().unwrap_or_default();
                out.add("litestream_checkpoint_count", &[&path, mode], n as f64);
                // A failed checkpoint fails its sync; they are counted there and as zero here.
                out.add("litestream_checkpoint_error_count", &[&path, mode], 0.0);
                out.add("litestream_checkpoint_seconds", &[&path, mode], secs);
            }
            out.add("litecar_pending_bytes", &l, s.pending_bytes as f64);
            out.add("litecar_snapshots_total", &l, s.snapshots as f64);
            out.add("litecar_snapshot_bytes", &l, s.last_snapshot_bytes as f64);
            out.add("litecar_snapshot_seconds", &l, s.last_snapshot_seconds);
            out.add("litecar_app_checkpoints_observed_total", &l, s.app_checkpoints_observed as f64);
            out.push("litecar_app_wait_seconds", histogram_metric(&path, &s.app_wait));
            out.add("litecar_write_lock_holds_total", &l, s.write_lock_hold.count as f64);
            out.push("litecar_write_lock_hold_seconds", histogram_metric(&path, &s.write_lock_hold));
            for r in &s.replicas {
                let rl = [path.as_str(), r.name.as_str()];
                out.add("litestream_replica_wal_bytes", &rl, r.uploaded_bytes as f64);
                out.add("litestream_replica_wal_index", &rl, f64::from(r.wal_index));
                out.add("litestream_replica_wal_offset", &rl, r.wal_offset as f64);
                let behind = r.oldest_pending.and_then(|t| now.duration_since(t).ok()).unwrap_or_default();
                out.add("litecar_replication_lag_seconds", &rl, behind.as_secs_f64());
                let epoch = |t: Option<SystemTime>| {
                    t.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok()).map_or(0.0, |d| d.as_secs_f64())
                };
                out.add("litecar_replica_last_sync_timestamp_seconds", &rl, epoch(r.last_upload));
                let up = r.reachable && r.consecutive_errors == 0;
                out.add("litecar_replica_up", &rl, if up { 1.0 } else { 0.0 });
                out.add("litecar_replica_upload_errors_total", &rl, r.errors as f64);
                out.add("litecar_retention_deleted_total", &rl, r.retention_deleted as f64);
            }
        }
        out.0
    }
}

/// The families of [`FAMILIES`], filled one series at a time.
struct Families(Vec<MetricFamily>);

impl Families {
    fn new() -> Self {
        Self(
            FAMILIES
                .iter()
                .map(|(name, help, kind, _)| {
                    let mut f = MetricFamily::default();
                    f.set_name((*name).into());
                    f.set_help((*help).into());
                    f.set_field_type(*kind);
                    f
                })
                .collect(),
        )
    }

    /// A counter or gauge series of family `name` with these label values.
    fn add(&mut self, name: &str, values: &[&str], value: f64) {
        let Some((_, _, kind, labels)) = FAMILIES.iter().find(|f| f.0 == name) else { return };
        let mut m = Metric::from_label(labels.iter().zip(values).map(|(l, v)| label(l, v)).collect());
        if *kind == MetricType::COUNTER {
            let mut c = prometheus::proto::Counter::default();
            c.set_value(value);
            m.set_counter(c);
        } else {
            let mut g = prometheus::proto::Gauge::default();
            g.set_value(value);
            m.set_gauge(g);
        }
        self.push(name, m);
    }

    fn push(&mut self, name: &str, metric: Metric) {
        if let Some(f) = self.0.iter_mut().find(|f| f.name() == name) {
            f.mut_metric().push(metric);
        }
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.into());
    l.set_value(value.into());
    l
}

/// A histogram of one database (`litecar_app_wait_seconds`, `litecar_write_lock_hold_seconds`): the replicator keeps
/// per-bucket counts, Prometheus wants them cumulative.
fn histogram_metric(db: &str, h: &WaitHistogram) -> prometheus::proto::Metric {
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
    let mut m = Metric::from_label(vec![label("db", db)]);
    m.set_histogram(histogram);
    m
}

#[cfg(test)]
mod tests {
    use litecar_replicate::replicator::{ReplicaStatus, Status};

    use super::*;

    #[test]
    fn replication_metrics_are_the_status_of_each_database() {
        let m = Metrics::new().expect("metrics");
        let mut status = Status {
            database_found: true,
            initial_sync: true,
            index: 3,
            offset: 8272,
            syncs: 7,
            sync_errors: 2,
            sync_seconds: 1.5,
            bytes_staged: 4096,
            snapshots: 2,
            last_snapshot_bytes: 555,
            last_snapshot_seconds: 0.25,
            app_checkpoints_observed: 1,
            pending_bytes: 100,
            ..Default::default()
        };
        status.checkpoints.insert("passive", (4, 0.5));
        status.app_wait.observe(0.003);
        status.write_lock_hold.observe(0.0004);
        status.write_lock_hold.observe(0.004);
        status.replicas.push(ReplicaStatus {
            name: "s3".into(),
            kind: "s3",
            reachable: true,
            uploaded_bytes: 999,
            wal_index: 3,
            wal_offset: 8272,
            last_upload: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1000)),
            errors: 5,
            retention_deleted: 6,
            ..Default::default()
        });
        let path = "/nonexistent/app.db";
        m.add_db(DbHandle { path: path.into(), status: StatusHandle::new(path, status) });
        let expected = [
            "# TYPE litestream_db_size gauge",
            r#"litestream_db_size{db="/nonexistent/app.db"} 0"#,
            r#"litestream_wal_size{db="/nonexistent/app.db"} 0"#,
            "# TYPE litestream_total_wal_bytes counter",
            r#"litestream_total_wal_bytes{db="/nonexistent/app.db"} 4096"#,
            r#"litestream_shadow_wal_index{db="/nonexistent/app.db"} 3"#,
            r#"litestream_shadow_wal_size{db="/nonexistent/app.db"} 8272"#,
            r#"litestream_sync_count{db="/nonexistent/app.db"} 7"#,
            r#"litestream_sync_error_count{db="/nonexistent/app.db"} 2"#,
            r#"litestream_sync_seconds{db="/nonexistent/app.db"} 1.5"#,
            r#"litestream_checkpoint_count{db="/nonexistent/app.db",mode="passive"} 4"#,
            r#"litestream_checkpoint_count{db="/nonexistent/app.db",mode="truncate"} 0"#,
            r#"litestream_checkpoint_error_count{db="/nonexistent/app.db",mode="passive"} 0"#,
            r#"litestream_checkpoint_seconds{db="/nonexistent/app.db",mode="passive"} 0.5"#,
            r#"litestream_replica_wal_bytes{db="/nonexistent/app.db",name="s3"} 999"#,
            r#"litestream_replica_wal_index{db="/nonexistent/app.db",name="s3"} 3"#,
            r#"litestream_replica_wal_offset{db="/nonexistent/app.db",name="s3"} 8272"#,
            r#"litecar_replication_lag_seconds{db="/nonexistent/app.db",name="s3"} 0"#,
            r#"litecar_pending_bytes{db="/nonexistent/app.db"} 100"#,
            r#"litecar_replica_last_sync_timestamp_seconds{db="/nonexistent/app.db",name="s3"} 1000"#,
            r#"litecar_replica_up{db="/nonexistent/app.db",name="s3"} 1"#,
            r#"litecar_replica_upload_errors_total{db="/nonexistent/app.db",name="s3"} 5"#,
            r#"litecar_retention_deleted_total{db="/nonexistent/app.db",name="s3"} 6"#,
            r#"litecar_snapshots_total{db="/nonexistent/app.db"} 2"#,
            r#"litecar_snapshot_bytes{db="/nonexistent/app.db"} 555"#,
            r#"litecar_snapshot_seconds{db="/nonexistent/app.db"} 0.25"#,
            r#"litecar_app_checkpoints_observed_total{db="/nonexistent/app.db"} 1"#,
            "# TYPE litecar_app_wait_seconds histogram",
            r#"litecar_app_wait_seconds_bucket{db="/nonexistent/app.db",le="0.002"} 0"#,
            r#"litecar_app_wait_seconds_bucket{db="/nonexistent/app.db",le="0.005"} 1"#,
            r#"litecar_app_wait_seconds_bucket{db="/nonexistent/app.db",le="+Inf"} 1"#,
            r#"litecar_app_wait_seconds_sum{db="/nonexistent/app.db"} 0.003"#,
            r#"litecar_app_wait_seconds_count{db="/nonexistent/app.db"} 1"#,
            "# TYPE litecar_write_lock_holds_total counter",
            r#"litecar_write_lock_holds_total{db="/nonexistent/app.db"} 2"#,
            "# TYPE litecar_write_lock_hold_seconds histogram",
            r#"litecar_write_lock_hold_seconds_bucket{db="/nonexistent/app.db",le="0.0005"} 1"#,
            r#"litecar_write_lock_hold_seconds_bucket{db="/nonexistent/app.db",le="0.002"} 1"#,
            r#"litecar_write_lock_hold_seconds_bucket{db="/nonexistent/app.db",le="0.005"} 2"#,
            r#"litecar_write_lock_hold_seconds_bucket{db="/nonexistent/app.db",le="+Inf"} 2"#,
            r#"litecar_write_lock_hold_seconds_sum{db="/nonexistent/app.db"} 0.0044"#,
            r#"litecar_write_lock_hold_seconds_count{db="/nonexistent/app.db"} 2"#,
        ];
        let text = m.render();
        for line in expected {
            assert!(text.lines().any(|l| l == line), "{line:?} missing from\n{text}");
        }
        let series =
            |t: &str| t.lines().filter(|l| l.contains("/nonexistent/app.db")).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(series(&text).len(), 54, "one series per family, mode and replica:\n{text}");
        assert_eq!(series(&m.render()), series(&text), "a scrape changes nothing");
    }

    #[test]
    fn no_replication_families_without_a_database() {
        let text = Metrics::new().expect("metrics").render();
        assert!(!text.contains("litestream_sync_count") && !text.contains("litecar_app_wait_seconds"), "{text}");
        assert!(text.contains("litecar_build_info"), "{text}");
    }

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
