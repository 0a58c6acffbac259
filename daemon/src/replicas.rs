//! Turning replica URLs and config entries into replicas, and databases into replication options.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use litecar_replicate::replicator::{DbOptions, ReplicaOptions};
use litecar_replicate::shipper::CheckpointPolicy;
use litecar_replicate::{FileClient, Replica};

use crate::config::{Config, DbConfig, ReplicaConfig};

pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a replica lives, parsed from a URL or a config entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    File(PathBuf),
    Unsupported { scheme: String, url: String },
}

/// Parse a replica URL: `file:///abs/path`, `file://./relative/path`, or a plain path.
pub fn parse_url(url: &str) -> Result<Location> {
    match url.split_once("://") {
        None => Ok(Location::File(PathBuf::from(url))),
        Some(("file", rest)) => {
            if rest.is_empty() {
                bail!("replica URL {url:?} has no path");
            }
            Ok(Location::File(PathBuf::from(rest)))
        }
        Some((scheme @ ("s3" | "abs" | "gcs" | "gs" | "sftp"), _)) => {
            Ok(Location::Unsupported { scheme: scheme.to_owned(), url: url.to_owned() })
        }
        Some((scheme, _)) => {
            bail!("replica URL {url:?}: unknown scheme {scheme:?} (file, s3, abs, gcs)")
        }
    }
}

pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

fn location(cfg: &ReplicaConfig) -> Result<Location> {
    if let Some(url) = &cfg.url {
        return parse_url(url);
    }
    match cfg.kind.as_deref().unwrap_or("file") {
        "file" => Ok(Location::File(PathBuf::from(cfg.path.as_deref().unwrap_or_default()))),
        other => Ok(Location::Unsupported { scheme: other.to_owned(), url: format!("type: {other}") }),
    }
}

pub fn build(name: &str, loc: &Location) -> Result<Replica> {
    match loc {
        Location::File(path) => Ok(Replica::new(name, Arc::new(FileClient::new(path.clone())))),
        Location::Unsupported { scheme, url } => {
            bail!("replica {name} ({url}): replica type {scheme:?} is not supported by this build (supported: file)")
        }
    }
}

pub fn from_url(url: &str) -> Result<Replica> {
    let loc = parse_url(url)?;
    let name = match &loc {
        Location::File(_) => "file".to_owned(),
        Location::Unsupported { scheme, .. } => scheme.clone(),
    };
    build(&name, &loc)
}

pub fn from_config(cfg: &ReplicaConfig) -> Result<Replica> {
    build(&cfg.display_name(), &location(cfg)?)
}

pub fn replica_options(cfg: &ReplicaConfig) -> Result<ReplicaOptions> {
    let replica = from_config(cfg)?;
    let is_file = replica.client.kind() == "file";
    let d = |v: Option<crate::config::GoDuration>| v.map(|g| g.0);
    Ok(ReplicaOptions {
        replica,
        sync_interval: d(cfg.sync_interval).unwrap_or(if is_file { Duration::ZERO } else { Duration::from_secs(1) }),
        snapshot_interval: d(cfg.snapshot_interval).filter(|d| !d.is_zero()),
        retention: Some(d(cfg.retention).unwrap_or(Duration::from_secs(24 * 3600))).filter(|d| !d.is_zero()),
        retention_check_interval: d(cfg.retention_check_interval).unwrap_or(Duration::from_secs(3600)),
    })
}

pub fn db_options(cfg: &DbConfig, shutdown_timeout: Duration) -> DbOptions {
    let defaults = CheckpointPolicy::default();
    DbOptions {
        path: PathBuf::from(&cfg.path),
        monitor_interval: cfg.monitor_interval.map(|g| g.0).unwrap_or(Duration::from_secs(1)),
        checkpoint: CheckpointPolicy {
            min_page_count: cfg.min_checkpoint_page_count.unwrap_or(defaults.min_page_count),
            max_page_count: cfg.max_checkpoint_page_count.unwrap_or(defaults.max_page_count),
            interval: cfg.checkpoint_interval.map(|g| g.0).unwrap_or(defaults.interval),
            lock_timeout: defaults.lock_timeout,
        },
        shutdown_timeout,
    }
}

/// The replicas to read for `target`, which is a replica URL or a database path from the config; `only` keeps the
/// replica of that name.
pub fn for_target(
    target: &str,
    config: Option<&Config>,
    config_path: &Path,
    only: Option<&str>,
) -> Result<Vec<Replica>> {
    let replicas = if is_url(target) {
        vec![from_url(target)?]
    } else {
        let config = config.with_context(|| {
            format!(
                "{target} is not a replica URL, and there is no config file at {} to look it up in",
                config_path.display()
            )
        })?;
        let db = config
            .find_db(Path::new(target))
            .with_context(|| format!("database {target} is not in config file {}", config_path.display()))?;
        db.replicas.iter().map(from_config).collect::<Result<Vec<_>>>()?
    };
    match only {
        None => Ok(replicas),
        Some(name) => {
            let names: Vec<String> = replicas.iter().map(|r| r.name.clone()).collect();
            let found: Vec<Replica> = replicas.into_iter().filter(|r| r.name == name).collect();
            if found.is_empty() {
                bail!("no replica named {name:?} for {target} (replicas: {})", names.join(", "));
            }
            Ok(found)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(parse_url("file:///backups/app").expect("ok"), Location::File("/backups/app".into()));
        assert_eq!(parse_url("file://./data/replica").expect("ok"), Location::File("./data/replica".into()));
        assert_eq!(parse_url("/plain/path").expect("ok"), Location::File("/plain/path".into()));
        assert!(parse_url("ftp://x/y").expect_err("unknown").to_string().contains("ftp"));
        let err = from_url("s3://bucket/app").expect_err("not yet").to_string();
        assert!(err.contains("s3://bucket/app"), "{err}");
    }
}
