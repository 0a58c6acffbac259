//! Replica entries (`dbs[].replicas`, `follow[]`, a replica URL on the command line) resolved to where the
//! replica lives and how often it is written: the backend by type or URL scheme, the defaults a replica inherits
//! from the top of the file, and credentials from the entry, the environment or a file.

use std::time::Duration;

use litecar_replicate::AgeKeys;
use litecar_replicate::backend::{AbsSettings, Backend, GcsSettings};

use super::env::expand_home;
use super::resolve::{Problem, problem};
use super::types::{Config, ReplicaConfig};
use super::{GoDuration, s3};

const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_RETENTION_CHECK: Duration = Duration::from_secs(3600);
const REPLICA_TYPES: &str = "file, s3, abs, gcs, sftp";

#[derive(Debug, Clone)]
pub struct ReplicaSettings {
    pub name: String,
    pub backend: Backend,
    pub sync_interval: Duration,
    pub snapshot_interval: Option<Duration>,
    pub retention: Option<Duration>,
    pub retention_check_interval: Duration,
    /// age keys: objects are encrypted when recipients are set, decrypted when identities are.
    pub age: Option<AgeKeys>,
    /// Restore and compare with the database this often (`validation-interval`).
    pub validation_interval: Option<Duration>,
}

/// Defaults a replica inherits from the top of the file (Litestream's global credentials, 0.5's `snapshot:`).
#[derive(Debug, Clone, Default)]
pub struct Inherited {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub snapshot_interval: Option<GoDuration>,
    pub retention: Option<GoDuration>,
}

impl Inherited {
    pub fn of(c: &Config) -> Self {
        Self {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
            snapshot_interval: c.snapshot.as_ref().and_then(|s| s.interval),
            retention: c.snapshot.as_ref().and_then(|s| s.retention),
        }
    }
}

/// A replica entry (or a replica URL given on the command line, as `url` alone) resolved to where it lives and how
/// often it is written. `key` is where it sits in the file (`dbs[0].replicas[1]`).
pub fn resolve_replica(r: &ReplicaConfig, key: &str, inherited: &Inherited) -> Result<ReplicaSettings, Problem> {
    let k = |field: &str| format!("{key}.{field}");
    if r.url.is_some() && (r.path.is_some() || r.bucket.is_some() || r.host.is_some()) {
        return Err(problem(key, "set either url, or type with path/bucket, not both"));
    }
    let kind = match (&r.url, &r.kind) {
        (Some(url), _) => match url.split_once("://") {
            Some((scheme, _)) => scheme.to_owned(),
            None => "file".to_owned(),
        },
        (None, Some(kind)) => kind.clone(),
        (None, None) if r.bucket.is_some() => {
            return Err(problem(k("type"), format!("required with a bucket ({REPLICA_TYPES})")));
        }
        (None, None) if r.path.is_some() => "file".to_owned(),
        (None, None) => return Err(problem(key, "needs a url, or a type with a path")),
    };
    let kind = if kind == "gs" { "gcs".to_owned() } else { kind };
    let age = match &r.age {
        Some(a) => {
            let keys = AgeKeys::parse(&a.identities, &a.recipients).map_err(|m| problem(k("age"), m))?;
            (!keys.is_empty()).then_some(keys)
        }
        None => None,
    };
    let url_parts = match &r.url {
        Some(url) => Some(split_url(url).map_err(|m| problem(k("url"), m))?),
        None => None,
    };
    let path_of = |from_url: Option<&str>| r.path.clone().or(from_url.map(str::to_owned)).unwrap_or_default();
    let backend = match kind.as_str() {
        "file" => {
            let p = match r.url.as_deref().map(|u| u.split_once("://")) {
                Some(Some((_, rest))) => {
                    if rest.is_empty() {
                        return Err(problem(k("url"), "the file URL has no path"));
                    }
                    rest.to_owned()
                }
                Some(None) => r.url.clone().unwrap_or_default(),
                None => r.path.clone().unwrap_or_default(),
            };
            if p.trim().is_empty() {
                return Err(problem(k("path"), "required: the replica directory"));
            }
            Backend::File { path: expand_home(&p) }
        }
        "s3" => Backend::S3(s3::settings(r, url_parts.as_ref(), inherited, key)?),
        "abs" => {
            let (account, container, path) = match &url_parts {
                Some((host, rest)) => {
                    if host.is_empty() {
                        return Err(problem(k("url"), "the abs URL has no container"));
                    }
                    match host.split_once('@') {
                        Some((a, c)) => (Some(a.to_owned()), c.to_owned(), path_of(Some(rest))),
                        None => (None, host.clone(), path_of(Some(rest))),
                    }
                }
                None => {
                    let c = r
                        .bucket
                        .clone()
                        .ok_or_else(|| problem(k("bucket"), "type abs needs a bucket (the container)"))?;
                    (None, c, path_of(None))
                }
            };
            Backend::Abs(AbsSettings {
                account: account.or_else(|| r.account_name.clone()).or_else(|| env("AZURE_STORAGE_ACCOUNT_NAME")),
                container,
                path,
                account_key: r
                    .account_key
                    .clone()
                    .or_else(|| env("LITESTREAM_AZURE_ACCOUNT_KEY"))
                    .or(secret_file(&r.account_key_file, &k("account-key-file"))?),
                sas_token: r.sas_token.clone(),
                endpoint: match &r.endpoint {
                    Some(e) => Some(s3::endpoint(e).map_err(|m| problem(k("endpoint"), m))?),
                    None => None,
                },
            })
        }
        "gcs" => {
            let (bucket, path) = match &url_parts {
                Some((host, rest)) => (host.clone(), path_of(Some(rest))),
                None => (r.bucket.clone().unwrap_or_default(), path_of(None)),
            };
            if bucket.is_empty() {
                return Err(problem(
                    if url_parts.is_some() { k("url") } else { k("bucket") },
                    "type gcs needs a bucket",
                ));
            }
            Backend::Gcs(GcsSettings { bucket, path, service_account_path: env("GOOGLE_APPLICATION_CREDENTIALS") })
        }
        "sftp" => Backend::Sftp(super::sftp::settings(r, key)?),
        other => {
            let field = if r.url.is_some() { "url" } else { "type" };
            return Err(problem(k(field), format!("unknown replica type {other:?} ({REPLICA_TYPES})")));
        }
    };
    let is_file = matches!(backend, Backend::File { .. });
    let d = |v: Option<GoDuration>| v.map(|g| g.0);
    Ok(ReplicaSettings {
        name: r.name.clone().unwrap_or_else(|| backend.kind().to_owned()),
        backend,
        sync_interval: d(r.sync_interval).unwrap_or(if is_file { Duration::ZERO } else { Duration::from_secs(1) }),
        snapshot_interval: d(r.snapshot_interval.or(inherited.snapshot_interval)).filter(|d| !d.is_zero()),
        retention: Some(d(r.retention.or(inherited.retention)).unwrap_or(DEFAULT_RETENTION)).filter(|d| !d.is_zero()),
        retention_check_interval: d(r.retention_check_interval).unwrap_or(DEFAULT_RETENTION_CHECK),
        age,
        validation_interval: d(r.validation_interval).filter(|d| !d.is_zero()),
    })
}

/// `scheme://host/path` -> (`host`, `path`); a plain path has no host.
fn split_url(url: &str) -> Result<(String, String), String> {
    let Some((_, rest)) = url.split_once("://") else { return Ok((String::new(), url.to_owned())) };
    Ok(match rest.split_once('/') {
        Some((h, p)) => (h.to_owned(), p.to_owned()),
        None => (rest.to_owned(), String::new()),
    })
}

pub(super) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

pub(super) fn secret_file(path: &Option<String>, key: &str) -> Result<Option<String>, Problem> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read_to_string(expand_home(p))
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| problem(key, format!("reading {p}: {e}"))),
    }
}
