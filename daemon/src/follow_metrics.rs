//! Metrics and readiness of read replicas (`litecar follow`), read from each follower's status at scrape time.

use std::path::PathBuf;
use std::sync::Arc;

use litecar_replicate::follow::FollowStatus;
use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{CounterVec, GaugeVec, Opts};

#[derive(Debug, Clone)]
pub struct FollowerHandle {
    pub path: PathBuf,
    pub status: Arc<FollowStatus>,
}

pub fn families(followers: &[FollowerHandle]) -> Result<Vec<MetricFamily>, prometheus::Error> {
    if followers.is_empty() {
        return Ok(vec![]);
    }
    let g = |name: &str, help: &str| GaugeVec::new(Opts::new(name, help), &["db"]);
    let c = |name: &str, help: &str| CounterVec::new(Opts::new(name, help), &["db"]);
    let lag = g(
        "litecar_follow_lag_seconds",
        "How much older the newest applied transaction is than the newest in the replica (0 when caught up)",
    )?;
    let behind = g("litecar_follow_bytes_behind", "Compressed bytes in the replica not applied yet")?;
    let caught_up = g("litecar_follow_caught_up", "1 once the follower has applied everything it last saw")?;
    let applied = c("litecar_follow_transactions_applied_total", "Writer transactions applied")?;
    let switches = c("litecar_follow_generation_switches_total", "Switches to a new generation of the replica")?;
    let rebuilds = c("litecar_follow_rebuilds_total", "Copies rebuilt from the replica (written by someone else)")?;
    let errors = c("litecar_follow_errors_total", "Failed polls, unreadable segments and failed rebuilds")?;
    for f in followers {
        let s = f.status.snapshot();
        let l = &[f.path.to_str().unwrap_or_default()];
        lag.with_label_values(l).set(s.lag_seconds);
        behind.with_label_values(l).set(s.bytes_behind as f64);
        caught_up.with_label_values(l).set(if s.caught_up { 1.0 } else { 0.0 });
        applied.with_label_values(l).inc_by(s.transactions_applied as f64);
        switches.with_label_values(l).inc_by(s.generation_switches as f64);
        rebuilds.with_label_values(l).inc_by(s.rebuilds as f64);
        errors.with_label_values(l).inc_by(s.errors as f64);
    }
    let collectors: [&dyn Collector; 7] = [&lag, &behind, &caught_up, &applied, &switches, &rebuilds, &errors];
    Ok(collectors.iter().flat_map(|c| c.collect()).collect())
}

/// What keeps followers from being ready: not caught up with the replica yet, polls that keep failing, a segment
/// that cannot be applied, or falling behind.
pub fn readiness(followers: &[FollowerHandle]) -> Vec<String> {
    followers
        .iter()
        .filter_map(|f| f.status.not_ready().map(|why| format!("{}: follower {why}", f.path.display())))
        .collect()
}
