//! The one step from the config as written to the settings litecar runs with: the top-level keys and `dbs:` here,
//! each other section in its own module (`replica`, with `s3` and `sftp`; `rest`; `follow`), so every default and
//! every check lives in exactly one place. Problems name the key (`dbs[0].replicas[1].endpoint`); the caller adds
//! the file and line.

use std::path::PathBuf;
use std::time::Duration;

use litecar_replicate::CheckpointPolicy;

use super::env::expand_home;
use super::follow::{FollowSettings, resolve_follow};
use super::replica::{Inherited, ReplicaSettings, resolve_replica};
use super::rest::{RestSettings, resolve_rest};
use super::types::{Config, DbConfig, LoggingConfig, ReplicaConfig, WatchcacheConfig};

pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A check that failed: the key at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

pub(super) fn problem(key: impl Into<String>, message: impl Into<String>) -> Problem {
    Problem { key: key.into(), message: message.into() }
}

/// What litecar runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub addr: Option<String>,
    pub logging: Option<LoggingConfig>,
    pub exec: Option<String>,
    pub shutdown_timeout: Duration,
    pub dbs: Vec<DbSettings>,
    pub rest: Option<RestSettings>,
    pub watchcache: Option<WatchcacheConfig>,
    /// Read replicas that `litecar follow` keeps up to date.
    pub follow: Vec<FollowSettings>,
    /// Things accepted but worth telling the user (not implemented, renamed, ignored).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DbSettings {
    pub path: PathBuf,
    pub monitor_interval: Duration,
    pub checkpoint: CheckpointPolicy,
    pub replicas: Vec<ReplicaSettings>,
}

pub fn resolve(c: &Config) -> Result<Settings, Problem> {
    let mut notes = vec![];
    if let Some(level) = c.logging.as_ref().and_then(|l| l.level.as_deref())
        && !["trace", "debug", "info", "warn", "error"].contains(&level.to_ascii_lowercase().as_str())
    {
        return Err(problem("logging.level", format!("unknown level {level:?} (trace, debug, info, warn, error)")));
    }
    let inherited = Inherited::of(c);
    let mut dbs = vec![];
    for (i, db) in c.dbs.iter().enumerate() {
        let key = format!("dbs[{i}]");
        let resolved = resolve_db(db, &key, &inherited, &mut notes)?;
        if let Some(j) = dbs.iter().position(|d: &DbSettings| d.path == resolved.path) {
            return Err(problem(
                format!("{key}.path"),
                format!("{} is listed twice (also dbs[{j}])", resolved.path.display()),
            ));
        }
        dbs.push(resolved);
    }
    let follow = resolve_follow(c, &dbs, &inherited)?;
    if c.dbs.is_empty() && c.follow.is_empty() && c.rest.is_none() && c.watchcache.is_none() {
        notes.push("dbs: no databases are configured; nothing will be replicated".into());
    }
    let rest = match c.rest.as_ref().filter(|r| r.enabled.unwrap_or(true)) {
        Some(r) => Some(resolve_rest(r, &dbs, &follow)?),
        None => None,
    };
    if let Some(wc) = &c.watchcache {
        if wc.resources.is_empty() {
            return Err(problem("watchcache.resources", "list at least one resource (version and kind)"));
        }
        for (i, r) in wc.resources.iter().enumerate() {
            if r.version.is_empty() || r.kind.is_empty() {
                return Err(problem(format!("watchcache.resources[{i}]"), "needs a version and a kind"));
            }
        }
    }
    Ok(Settings {
        addr: c.addr.clone().filter(|a| !a.is_empty()),
        logging: c.logging.clone(),
        exec: c.exec.clone(),
        shutdown_timeout: c.shutdown_timeout.map_or(DEFAULT_SHUTDOWN_TIMEOUT, |g| g.0),
        dbs,
        rest,
        watchcache: c.watchcache.clone(),
        follow,
        notes,
    })
}

fn resolve_db(db: &DbConfig, key: &str, inherited: &Inherited, notes: &mut Vec<String>) -> Result<DbSettings, Problem> {
    let path = db.path.as_deref().unwrap_or_default().trim();
    if path.is_empty() {
        return Err(problem(format!("{key}.path"), "required: the database file"));
    }
    if let (Some(min), Some(max)) = (db.min_checkpoint_page_count, db.max_checkpoint_page_count)
        && min > max
    {
        return Err(problem(
            format!("{key}.min-checkpoint-page-count"),
            format!("{min} is larger than max-checkpoint-page-count {max}"),
        ));
    }
    let (list_key, configs): (String, Vec<&ReplicaConfig>) = match (&db.replica, db.replicas.as_slice()) {
        (Some(_), [_, ..]) => {
            return Err(problem(format!("{key}.replica"), "set `replica` (Litestream 0.5) or `replicas`, not both"));
        }
        (Some(r), []) => (format!("{key}.replica"), vec![r]),
        (None, list) => (format!("{key}.replicas"), list.iter().collect()),
    };
    if configs.is_empty() {
        return Err(problem(format!("{key}.replicas"), "no replicas: list at least one under `replicas:`"));
    }
    let mut replicas: Vec<ReplicaSettings> = vec![];
    for (j, r) in configs.iter().enumerate() {
        let rkey = if db.replica.is_some() { list_key.clone() } else { format!("{list_key}[{j}]") };
        let mut resolved = resolve_replica(r, &rkey, inherited)?;
        if replicas.iter().any(|x| x.name == resolved.name) {
            if r.name.is_some() {
                return Err(problem(
                    format!("{rkey}.name"),
                    format!("replica name {:?} is used twice; give each replica a distinct name", resolved.name),
                ));
            }
            // Litestream accepts several unnamed replicas of one type; litecar needs distinct names for its
            // per-replica state, so later ones are numbered.
            let base = resolved.name.clone();
            let n = (2..).find(|n| !replicas.iter().any(|x| x.name == format!("{base}-{n}"))).unwrap_or(2);
            resolved.name = format!("{base}-{n}");
            notes.push(format!("{rkey}: a second unnamed {base} replica is named {:?}", resolved.name));
        }
        replicas.push(resolved);
    }
    let defaults = CheckpointPolicy::default();
    Ok(DbSettings {
        path: expand_home(path),
        monitor_interval: db.monitor_interval.map_or(Duration::from_secs(1), |g| g.0),
        checkpoint: CheckpointPolicy {
            min_page_count: db.min_checkpoint_page_count.unwrap_or(defaults.min_page_count),
            max_page_count: db.max_checkpoint_page_count.unwrap_or(defaults.max_page_count),
            interval: db.checkpoint_interval.map_or(defaults.interval, |g| g.0),
            ..defaults
        },
        replicas,
    })
}
