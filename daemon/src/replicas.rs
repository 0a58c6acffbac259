//! Resolved replicas connected to their stores, and databases turned into replication options. Which replica a
//! config entry or URL means, and its credentials, is decided once by `config::resolve`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use litecar_replicate::{AgeClient, Replica};
use std::sync::Arc;

use litecar_replicate::backend::{self, Backend};
use litecar_replicate::replicator::{DbOptions, ReplicaOptions};

use crate::config::{self, DbSettings, Inherited, Loaded, ReplicaConfig, ReplicaSettings};

pub use crate::config::DEFAULT_SHUTDOWN_TIMEOUT;

pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// A replica given as a URL on the command line, resolved as a config entry with only `url` would be.
pub fn from_url(url: &str) -> Result<ReplicaSettings> {
    let cfg = ReplicaConfig { url: Some(url.to_owned()), ..Default::default() };
    config::resolve_replica(&cfg, "url", &Inherited::default())
        .map_err(|p| anyhow::anyhow!("replica URL {url:?}: {}", p.message))
}

/// Connect to a replica's store. An S3 bucket with neither a region nor an endpoint has its region looked up first,
/// as Litestream does, so that buckets outside us-east-1 work without a `region`.
pub async fn connect(r: &ReplicaSettings) -> Result<Replica> {
    let mut backend = r.backend.clone();
    if let Backend::S3(s) = &mut backend
        && s.region.is_none()
        && s.endpoint.is_none()
    {
        let base = backend::region_lookup_base();
        let region = backend::bucket_region(&base, &s.bucket, s.skip_verify).await.with_context(|| {
            format!("replica {}: looking up the region of bucket {} (or set `region`)", r.name, s.bucket)
        })?;
        tracing::info!(replica = %r.name, bucket = %s.bucket, %region, "bucket region looked up");
        s.region = Some(region);
    }
    let replica = backend::connect(&r.name, &backend)?;
    Ok(match &r.age {
        Some(keys) => replica.wrap_client(|c| Arc::new(AgeClient::new(c, keys.clone()))),
        None => replica,
    })
}

pub async fn replica_options(r: &ReplicaSettings) -> Result<ReplicaOptions> {
    Ok(ReplicaOptions {
        replica: connect(r).await?,
        sync_interval: r.sync_interval,
        snapshot_interval: r.snapshot_interval,
        retention: r.retention,
        retention_check_interval: r.retention_check_interval,
    })
}

pub fn db_options(db: &DbSettings, shutdown_timeout: Duration) -> DbOptions {
    DbOptions {
        path: db.path.clone(),
        monitor_interval: db.monitor_interval,
        checkpoint: db.checkpoint.clone(),
        shutdown_timeout,
    }
}

/// The replicas to read for `target`, which is a replica URL or a database path from the config; `only` keeps the
/// replica of that name.
pub async fn for_target(
    target: &str,
    config: Option<&Loaded>,
    config_path: &Path,
    only: Option<&str>,
) -> Result<Vec<Replica>> {
    let settings = if is_url(target) {
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
        db.replicas.clone()
    };
    let names: Vec<String> = settings.iter().map(|r| r.name.clone()).collect();
    let chosen: Vec<&ReplicaSettings> = settings.iter().filter(|r| only.is_none_or(|n| r.name == n)).collect();
    if let Some(name) = only
        && chosen.is_empty()
    {
        bail!("no replica named {name:?} for {target} (replicas: {})", names.join(", "));
    }
    let mut out = vec![];
    for r in chosen {
        out.push(connect(r).await?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn urls() {
        let backend = |u: &str| from_url(u).map(|r| r.backend);
        let file = |p: &str| Backend::File { path: PathBuf::from(p) };
        assert_eq!(backend("file:///backups/app").expect("ok"), file("/backups/app"));
        assert_eq!(backend("file://./data/replica").expect("ok"), file("./data/replica"));
        assert_eq!(backend("/plain/path").expect("ok"), file("/plain/path"));
        assert!(backend("ftp://x/y").expect_err("unknown").to_string().contains("ftp"));
        let Backend::S3(s) = backend("s3://bucket/a/b").expect("ok") else { panic!("s3") };
        assert_eq!((s.bucket.as_str(), s.path.as_str()), ("bucket", "a/b"));
        let Backend::Abs(a) = backend("abs://acct@cont/db").expect("ok") else { panic!("abs") };
        assert_eq!((a.account.as_deref(), a.container.as_str(), a.path.as_str()), (Some("acct"), "cont", "db"));
        let Backend::Gcs(g) = backend("gcs://b/p").expect("ok") else { panic!("gcs") };
        assert_eq!((g.bucket.as_str(), g.path.as_str()), ("b", "p"));
        assert!(backend("s3:///nobucket").is_err());
    }

    #[tokio::test]
    async fn credentials_never_appear_in_descriptions() {
        let cfg = ReplicaConfig {
            url: Some("s3://bucket/app".into()),
            access_key_id: Some("AKIDSECRETVALUE".into()),
            secret_access_key: Some("verysecretkey".into()),
            endpoint: Some("http://127.0.0.1:9".into()),
            ..Default::default()
        };
        let r = config::resolve_replica(&cfg, "r", &Inherited::default()).expect("resolves");
        let text = format!("{r:?} {}", r.backend.url());
        assert!(!text.contains("SECRETVALUE") && !text.contains("verysecretkey"), "{text}");
        let replica = connect(&r).await.expect("replica");
        let text = format!("{replica:?} {}", replica.describe());
        assert!(!text.contains("SECRETVALUE") && !text.contains("verysecretkey"), "{text}");
    }
}
