//! The `follow:` section: read replicas that `litecar follow` keeps up to date.

use std::path::PathBuf;
use std::time::Duration;

use super::env::expand_home;
use super::replica::{Inherited, ReplicaSettings, resolve_replica};
use super::resolve::{DbSettings, Problem, problem};
use super::types::{Config, ReplicaConfig};

#[derive(Debug, Clone)]
pub struct FollowSettings {
    /// The follower's database: a read-only copy that litecar keeps up to date.
    pub path: PathBuf,
    pub replica: ReplicaSettings,
    pub poll_interval: Option<Duration>,
}

/// The `follow:` list: each entry a database path and the replica it follows, written with the replica keys of
/// `dbs[].replicas` (and `replica-path` for replicas given by `type`).
pub(super) fn resolve_follow(
    c: &Config,
    dbs: &[DbSettings],
    inherited: &Inherited,
) -> Result<Vec<FollowSettings>, Problem> {
    let mut out: Vec<FollowSettings> = vec![];
    for (i, f) in c.follow.iter().enumerate() {
        let key = format!("follow[{i}]");
        let k = |field: &str| format!("{key}.{field}");
        let path = f.follower.path.trim();
        if path.is_empty() {
            return Err(problem(k("path"), "required: the follower's database"));
        }
        let path = expand_home(path);
        if out.iter().any(|o| o.path == path) {
            return Err(problem(k("path"), format!("{} is listed twice", path.display())));
        }
        if dbs.iter().any(|d| d.path == path) {
            return Err(problem(
                k("path"),
                format!("{} is also in dbs: a database is either replicated or a follower", path.display()),
            ));
        }
        let r = ReplicaConfig { path: f.follower.replica_path.clone(), ..f.replica.clone() };
        if r.url.is_some() && (r.path.is_some() || r.bucket.is_some()) {
            return Err(problem(k("url"), "set either url, or type with bucket/replica-path, not both"));
        }
        if r.url.is_none() && r.path.is_none() && r.bucket.is_none() {
            return Err(problem(k("url"), "required: the replica to follow (or type with bucket/replica-path)"));
        }
        if f.follower.poll_interval.is_some_and(|p| p.0.is_zero()) {
            return Err(problem(k("poll-interval"), "must be more than 0"));
        }
        let replica = resolve_replica(&r, &key, inherited)?;
        out.push(FollowSettings { path, replica, poll_interval: f.follower.poll_interval.map(|g| g.0) });
    }
    Ok(out)
}
