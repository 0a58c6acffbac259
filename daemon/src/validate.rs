//! `validation-interval`: every interval, each replica that sets it is restored to a scratch file and compared with
//! its database; results count in `litecar_replica_validation_total{db,name,status}` and Litestream's
//! `litestream_replica_validation_total`, and a bad replica is logged as an error.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use litecar_replicate::Replica;
use litecar_replicate::validate::{self, Verdict};
use prometheus::{IntCounterVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;

pub struct Task {
    pub db: PathBuf,
    pub replica: Replica,
    pub interval: Duration,
    /// How long the replica may take to catch up with a database that holds still.
    pub settle: Duration,
}

#[derive(Clone)]
pub struct Counters(Vec<IntCounterVec>);

impl Counters {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let mut out = vec![];
        for name in ["litecar_replica_validation_total", "litestream_replica_validation_total"] {
            let c = IntCounterVec::new(
                Opts::new(name, "Replica validations (restore and compare), by result: ok or error"),
                &["db", "name", "status"],
            )?;
            registry.register(Box::new(c.clone()))?;
            out.push(c);
        }
        Ok(Self(out))
    }

    fn count(&self, db: &str, name: &str, status: &str) {
        for c in &self.0 {
            c.with_label_values(&[db, name, status]).inc();
        }
    }

    /// Create the zero series of a replica, so alerts on `status="error"` work before the first failure.
    fn init(&self, db: &str, name: &str) {
        for c in &self.0 {
            for status in ["ok", "error"] {
                c.with_label_values(&[db, name, status]);
            }
        }
    }
}

/// One task per replica that sets `validation-interval`, connected to its store on its own.
pub async fn tasks(settings: &Settings) -> Result<Vec<Task>> {
    let mut out = vec![];
    for db in &settings.dbs {
        for r in db.replicas.iter() {
            let Some(interval) = r.validation_interval else { continue };
            out.push(Task {
                db: db.path.clone(),
                replica: crate::replicas::connect(r).await?,
                interval,
                settle: (r.sync_interval * 4).max(Duration::from_secs(10)),
            });
        }
    }
    Ok(out)
}

pub async fn run(task: Task, counters: Counters, cancel: CancellationToken) {
    let db = task.db.display().to_string();
    let name = task.replica.name.clone();
    counters.init(&db, &name);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(task.interval) => {}
        }
        let verdict = tokio::select! {
            _ = cancel.cancelled() => return,
            v = validate::validate(&task.db, &task.replica, task.settle) => v,
        };
        let replica = task.replica.describe();
        match verdict {
            Ok(Verdict::Ok) => {
                counters.count(&db, &name, "ok");
                tracing::info!(db = %db, %replica, "replica validated");
            }
            Ok(Verdict::Mismatch(why)) => {
                counters.count(&db, &name, "error");
                tracing::error!(db = %db, %replica, "replica validation failed: {why}");
            }
            Ok(Verdict::Inconclusive(why)) => tracing::info!(db = %db, %replica, "replica validation skipped: {why}"),
            Err(e) => tracing::warn!(db = %db, %replica, "replica validation could not run: {e}"),
        }
    }
}
