//! The one step from the config as written to the settings litecar runs with: every default and every check is
//! here. Problems name the key (`dbs[0].replicas[1].endpoint`); the caller adds the file and line.

use std::path::PathBuf;
use std::time::Duration;

use litecar_replicate::backend::{AbsSettings, Backend, GcsSettings, S3Settings};
use litecar_replicate::{AgeKeys, CheckpointPolicy};

use super::env::expand_home;
use super::types::{AuthSetting, Config, DbConfig, JwtConfig, LoggingConfig, ReplicaConfig, WatchcacheConfig};
use super::{GoDuration, s3};

pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_RETENTION_CHECK: Duration = Duration::from_secs(3600);
const REPLICA_TYPES: &str = "file, s3, abs, gcs, sftp";

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

#[derive(Debug, Clone)]
pub struct FollowSettings {
    /// The follower's database: a read-only copy that litecar keeps up to date.
    pub path: PathBuf,
    pub replica: ReplicaSettings,
    pub poll_interval: Option<Duration>,
}

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

#[derive(Debug, Clone)]
pub struct RestSettings {
    pub addr: String,
    pub db: PathBuf,
    pub allowed_tables: Vec<String>,
    pub allow_unfiltered_writes: bool,
    pub read_connections: Option<usize>,
    pub request_timeout: Option<Duration>,
    pub max_body_bytes: Option<usize>,
    pub max_rows: Option<usize>,
    /// Writes answer 405: `rest.read-only`, or the database is a follower's copy.
    pub read_only: bool,
    pub auth: RestAuth,
    pub tls: Option<RestTls>,
}

/// `rest.tls`: HTTPS with this certificate chain and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub enum RestAuth {
    None,
    Jwt { key: JwtKey, config: Box<JwtConfig> },
}

/// Where the JWT verification key comes from (exactly one is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKey {
    SecretFile(String),
    SecretEnv(String),
    PublicKeyFile(String),
    JwksFile(String),
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

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn secret_file(path: &Option<String>, key: &str) -> Result<Option<String>, Problem> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::read_to_string(expand_home(p))
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|e| problem(key, format!("reading {p}: {e}"))),
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
        "s3" => Backend::S3(s3_settings(r, url_parts.as_ref(), inherited, key)?),
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

fn s3_settings(
    r: &ReplicaConfig,
    url: Option<&(String, String)>,
    inherited: &Inherited,
    key: &str,
) -> Result<S3Settings, Problem> {
    let k = |field: &str| format!("{key}.{field}");
    let from_url = match url {
        Some((host, _)) if host.is_empty() => return Err(problem(k("url"), "the s3 URL has no bucket")),
        Some((host, _)) => s3::parse_host(host),
        None => s3::S3Host::default(),
    };
    // Fields set in the entry win over what the URL says, as in Litestream.
    let bucket = r.bucket.clone().filter(|b| !b.is_empty()).unwrap_or(from_url.bucket);
    let bucket_key = if r.bucket.is_some() || url.is_none() { k("bucket") } else { k("url") };
    if bucket.is_empty() {
        return Err(problem(bucket_key, "type s3 needs a bucket"));
    }
    s3::bucket(&bucket).map_err(|m| problem(bucket_key, m))?;
    let endpoint = match r.endpoint.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(e) => Some(s3::endpoint(e).map_err(|m| problem(k("endpoint"), m))?),
        None => from_url.endpoint,
    };
    let region = r
        .region
        .clone()
        .filter(|r| !r.is_empty())
        .or(from_url.region)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"));
    let access_key_id = r
        .access_key_id
        .clone()
        .or_else(|| inherited.access_key_id.clone())
        .or_else(|| env("LITESTREAM_ACCESS_KEY_ID"))
        .or(secret_file(&r.access_key_id_file, &k("access-key-id-file"))?)
        .filter(|v| !v.is_empty());
    let secret_access_key = r
        .secret_access_key
        .clone()
        .or_else(|| inherited.secret_access_key.clone())
        .or_else(|| env("LITESTREAM_SECRET_ACCESS_KEY"))
        .or(secret_file(&r.secret_access_key_file, &k("secret-access-key-file"))?)
        .filter(|v| !v.is_empty());
    if access_key_id.is_some() != secret_access_key.is_some() {
        let missing = if access_key_id.is_some() { "secret-access-key" } else { "access-key-id" };
        return Err(problem(k(missing), "set both access-key-id and secret-access-key, or neither"));
    }
    let path = r.path.clone().or_else(|| url.map(|(_, p)| p.clone())).unwrap_or_default();
    Ok(S3Settings {
        bucket,
        path,
        region,
        force_path_style: r.force_path_style.or(from_url.force_path_style.then_some(true)),
        endpoint,
        skip_verify: r.skip_verify.unwrap_or(false),
        access_key_id,
        secret_access_key,
        session_token: None,
    })
}

fn resolve_rest(
    r: &super::types::RestConfig,
    dbs: &[DbSettings],
    follow: &[FollowSettings],
) -> Result<RestSettings, Problem> {
    let db = match (&r.db, dbs, follow) {
        (Some(db), _, _) => expand_home(db),
        (None, [only], []) => only.path.clone(),
        (None, [], [only]) => only.path.clone(),
        (None, _, _) => return Err(problem("rest.db", "required unless exactly one database is configured")),
    };
    // A follower's copy takes no writes but the follower's own.
    let read_only = r.read_only.unwrap_or(false) || follow.iter().any(|f| f.path == db);
    let auth = match &r.auth {
        None => {
            return Err(problem(
                "rest.auth",
                "required: a JWT key (jwt-secret-file, jwt-secret-env, jwt-public-key-file or jwks-file), or `none` \
                 on a loopback address",
            ));
        }
        Some(AuthSetting::Keyword(k)) if k == "none" => RestAuth::None,
        Some(AuthSetting::Keyword(k)) => {
            return Err(problem("rest.auth", format!("{k:?} is not `none` or a JWT mapping")));
        }
        Some(AuthSetting::Jwt(j)) => {
            let keys = [
                j.jwt_secret_file.clone().map(JwtKey::SecretFile),
                j.jwt_secret_env.clone().map(JwtKey::SecretEnv),
                j.jwt_public_key_file.clone().map(JwtKey::PublicKeyFile),
                j.jwks_file.clone().map(JwtKey::JwksFile),
            ];
            let mut set = keys.into_iter().flatten();
            let (Some(key), None) = (set.next(), set.next()) else {
                return Err(problem(
                    "rest.auth",
                    "set exactly one of jwt-secret-file, jwt-secret-env, jwt-public-key-file, jwks-file",
                ));
            };
            for (name, role) in &j.roles {
                for t in role.tables.iter().flatten() {
                    if !r.allowed_tables.contains(t) {
                        return Err(problem(
                            format!("rest.auth.roles.{name}.tables"),
                            format!("{t} is not in rest.allowed-tables"),
                        ));
                    }
                }
            }
            RestAuth::Jwt { key, config: j.clone() }
        }
    };
    Ok(RestSettings {
        addr: r.addr.clone().unwrap_or_else(|| ":8080".into()),
        db,
        allowed_tables: r.allowed_tables.clone(),
        allow_unfiltered_writes: r.allow_unfiltered_writes.unwrap_or(false),
        read_connections: r.read_connections,
        request_timeout: r.request_timeout.map(|g| g.0),
        max_body_bytes: r.max_body_bytes,
        max_rows: r.max_rows,
        read_only,
        auth,
        tls: r.tls.as_ref().map(resolve_tls).transpose()?,
    })
}

fn resolve_tls(t: &super::types::TlsConfig) -> Result<RestTls, Problem> {
    let file = |value: &Option<String>, key: &str| match value.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => Ok(expand_home(p)),
        _ => Err(problem(format!("rest.tls.{key}"), "required: the path of a PEM file")),
    };
    Ok(RestTls { cert_file: file(&t.cert_file, "cert-file")?, key_file: file(&t.key_file, "key-file")? })
}

/// The `follow:` list: each entry a database path and the replica it follows, written with the replica keys of
/// `dbs[].replicas` (and `replica-path` for replicas given by `type`).
fn resolve_follow(c: &Config, dbs: &[DbSettings], inherited: &Inherited) -> Result<Vec<FollowSettings>, Problem> {
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
