//! Turning replica URLs and config entries into replicas, and databases into replication options. Credentials come
//! from the config (after `${ENV}` expansion), then Litestream's environment variables, then mounted secret files
//! named in the config; what is still unset is left to each cloud's own environment variables and identity
//! (AWS_*, AZURE_STORAGE_*, GOOGLE_APPLICATION_CREDENTIALS, instance roles, workload identity).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use litecar_replicate::Replica;
use litecar_replicate::backend::{self, AbsSettings, Backend, GcsSettings, S3Settings};
use litecar_replicate::replicator::{DbOptions, ReplicaOptions};
use litecar_replicate::shipper::CheckpointPolicy;

use crate::config::{Config, DbConfig, ReplicaConfig};

pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Parse a replica URL: `file:///abs/path`, `file://./relative/path`, a plain path, `s3://bucket/path`,
/// `abs://[account@]container/path`, `gcs://bucket/path` (or `gs://`).
pub fn parse_url(url: &str) -> Result<Backend> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(Backend::File { path: PathBuf::from(url) });
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p.to_owned()),
        None => (rest, String::new()),
    };
    let need_host = |what: &str| -> Result<()> {
        if host.is_empty() {
            bail!("replica URL {url:?} has no {what}");
        }
        Ok(())
    };
    match scheme {
        "file" => {
            if rest.is_empty() {
                bail!("replica URL {url:?} has no path");
            }
            Ok(Backend::File { path: PathBuf::from(rest) })
        }
        "s3" => {
            need_host("bucket")?;
            Ok(Backend::S3(S3Settings { bucket: host.to_owned(), path, ..Default::default() }))
        }
        "abs" => {
            need_host("container")?;
            let (account, container) = match host.split_once('@') {
                Some((a, c)) => (Some(a.to_owned()), c.to_owned()),
                None => (None, host.to_owned()),
            };
            Ok(Backend::Abs(AbsSettings { account, container, path, ..Default::default() }))
        }
        "gcs" | "gs" => {
            need_host("bucket")?;
            Ok(Backend::Gcs(GcsSettings { bucket: host.to_owned(), path, ..Default::default() }))
        }
        "sftp" => bail!("replica URL {url:?}: replica type sftp is not supported (file, s3, abs, gcs)"),
        other => bail!("replica URL {url:?}: unknown scheme {other:?} (file, s3, abs, gcs)"),
    }
}

pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn secret_file(path: &Option<String>, key: &str, replica: &str) -> Result<Option<String>> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read_to_string(p)
            .map(|s| Some(s.trim().to_owned()))
            .with_context(|| format!("replica {replica}: reading {key} {p}")),
    }
}

/// Where a config entry's replica lives, with its credentials resolved.
pub fn backend_for(cfg: &ReplicaConfig, global: Option<&Config>) -> Result<Backend> {
    let name = cfg.display_name();
    let mut backend = match (&cfg.url, cfg.kind.as_deref().unwrap_or("file")) {
        (Some(url), _) => parse_url(url)?,
        (None, "file") => Backend::File { path: PathBuf::from(cfg.path.as_deref().unwrap_or_default()) },
        (None, "s3") => Backend::S3(S3Settings {
            bucket: cfg.bucket.clone().with_context(|| format!("replica {name}: type s3 needs a bucket"))?,
            path: cfg.path.clone().unwrap_or_default(),
            ..Default::default()
        }),
        (None, "abs") => Backend::Abs(AbsSettings {
            account: cfg.account_name.clone(),
            container: cfg
                .bucket
                .clone()
                .with_context(|| format!("replica {name}: type abs needs a bucket (container)"))?,
            path: cfg.path.clone().unwrap_or_default(),
            ..Default::default()
        }),
        (None, "gcs") => Backend::Gcs(GcsSettings {
            bucket: cfg.bucket.clone().with_context(|| format!("replica {name}: type gcs needs a bucket"))?,
            path: cfg.path.clone().unwrap_or_default(),
            ..Default::default()
        }),
        (None, other) => bail!("replica {name}: unknown replica type {other:?} (file, s3, abs, gcs)"),
    };
    match &mut backend {
        Backend::File { .. } => {}
        Backend::S3(s) => {
            s.region = cfg.region.clone().or_else(|| env("AWS_REGION")).or_else(|| env("AWS_DEFAULT_REGION"));
            s.endpoint = cfg.endpoint.clone();
            s.force_path_style = cfg.force_path_style;
            s.skip_verify = cfg.skip_verify.unwrap_or(false);
            s.access_key_id = cfg
                .access_key_id
                .clone()
                .or_else(|| global.and_then(|g| g.access_key_id.clone()))
                .or_else(|| env("LITESTREAM_ACCESS_KEY_ID"))
                .or(secret_file(&cfg.access_key_id_file, "access-key-id-file", &name)?);
            s.secret_access_key = cfg
                .secret_access_key
                .clone()
                .or_else(|| global.and_then(|g| g.secret_access_key.clone()))
                .or_else(|| env("LITESTREAM_SECRET_ACCESS_KEY"))
                .or(secret_file(&cfg.secret_access_key_file, "secret-access-key-file", &name)?);
            if s.access_key_id.is_some() != s.secret_access_key.is_some() {
                bail!("replica {name}: set both access-key-id and secret-access-key, or neither");
            }
        }
        Backend::Abs(a) => {
            if a.account.is_none() {
                a.account = cfg.account_name.clone().or_else(|| env("AZURE_STORAGE_ACCOUNT_NAME"));
            }
            a.account_key = cfg.account_key.clone().or_else(|| env("LITESTREAM_AZURE_ACCOUNT_KEY")).or(secret_file(
                &cfg.account_key_file,
                "account-key-file",
                &name,
            )?);
            a.sas_token = cfg.sas_token.clone();
            a.endpoint = cfg.endpoint.clone();
        }
        Backend::Gcs(g) => {
            g.service_account_path = env("GOOGLE_APPLICATION_CREDENTIALS");
        }
    }
    Ok(backend)
}

pub fn from_url(url: &str) -> Result<Replica> {
    let cfg = ReplicaConfig { url: Some(url.to_owned()), ..Default::default() };
    from_config(&cfg, None)
}

pub fn from_config(cfg: &ReplicaConfig, global: Option<&Config>) -> Result<Replica> {
    let backend = backend_for(cfg, global)?;
    Ok(backend::connect(&cfg.display_name(), &backend)?)
}

pub fn replica_options(cfg: &ReplicaConfig, global: Option<&Config>) -> Result<ReplicaOptions> {
    let replica = from_config(cfg, global)?;
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
        db.replicas.iter().map(|r| from_config(r, Some(config))).collect::<Result<Vec<_>>>()?
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
        let file = |p: &str| Backend::File { path: PathBuf::from(p) };
        assert_eq!(parse_url("file:///backups/app").expect("ok"), file("/backups/app"));
        assert_eq!(parse_url("file://./data/replica").expect("ok"), file("./data/replica"));
        assert_eq!(parse_url("/plain/path").expect("ok"), file("/plain/path"));
        assert!(parse_url("ftp://x/y").expect_err("unknown").to_string().contains("ftp"));
        let Backend::S3(s) = parse_url("s3://bucket/a/b").expect("ok") else { panic!("s3") };
        assert_eq!((s.bucket.as_str(), s.path.as_str()), ("bucket", "a/b"));
        let Backend::Abs(a) = parse_url("abs://acct@cont/db").expect("ok") else { panic!("abs") };
        assert_eq!((a.account.as_deref(), a.container.as_str(), a.path.as_str()), (Some("acct"), "cont", "db"));
        let Backend::Gcs(g) = parse_url("gcs://b/p").expect("ok") else { panic!("gcs") };
        assert_eq!((g.bucket.as_str(), g.path.as_str()), ("b", "p"));
        assert!(parse_url("s3:///nobucket").is_err());
    }

    #[test]
    fn credentials_never_appear_in_descriptions() {
        let cfg = ReplicaConfig {
            url: Some("s3://bucket/app".into()),
            access_key_id: Some("AKIDSECRETVALUE".into()),
            secret_access_key: Some("verysecretkey".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let backend = backend_for(&cfg, None).expect("backend");
        let text = format!("{backend:?} {}", backend.url());
        assert!(!text.contains("SECRETVALUE") && !text.contains("verysecretkey"), "{text}");
        let replica = from_config(&cfg, None).expect("replica");
        let text = format!("{replica:?} {}", replica.describe());
        assert!(!text.contains("SECRETVALUE") && !text.contains("verysecretkey"), "{text}");
    }
}
