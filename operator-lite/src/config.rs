//! The litecar configuration a `SqliteDatabase` runs with, built from the daemon's own config types. Credentials are
//! never part of it: the file names environment variables (`${VAR}`, expanded by litecar at start-up) that the pod
//! fills from the named Secrets, or files mounted from them.

use litecar::config::{AuthSetting, Config, DbConfig, GoDuration, JwtConfig, ReplicaConfig, RestConfig};

use crate::types::{ReplicaType, SqliteDatabase};

/// Where the database volume is mounted (the SQLite Operator's path, so migrated applications find their file).
pub const DATA_DIR: &str = "/var/lib/sqlite";
pub const CONFIG_DIR: &str = "/etc/litecar";
pub const CONFIG_FILE: &str = "litecar.yml";
/// The REST API's JWT secret: the `token` key of `sqliteRest.authSecret`, mounted here.
pub const AUTH_DIR: &str = "/etc/auth";
pub const AUTH_KEY: &str = "token";
pub const GCS_CREDENTIALS_DIR: &str = "/var/run/secrets/litecar/gcs";
/// Health and metrics listen here when `sqliteRest.metrics` does not name a port (the probes need it).
pub const DEFAULT_METRICS_PORT: i32 = 9090;

/// An environment variable of the litecar containers, read from a Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretEnv {
    pub var: String,
    pub secret: String,
    pub key: String,
}

/// What the pod needs besides the config file itself.
#[derive(Debug, Clone, PartialEq)]
pub struct LitecarConfig {
    pub config: Config,
    pub env: Vec<SecretEnv>,
    /// Secret and key of the GCS service-account file, mounted under [`GCS_CREDENTIALS_DIR`].
    pub gcs_credentials: Option<(String, String)>,
}

pub fn db_path(db: &SqliteDatabase) -> String {
    format!("{DATA_DIR}/{}", db.spec.database.name)
}

pub fn config_path() -> String {
    format!("{CONFIG_DIR}/{CONFIG_FILE}")
}

/// The port of `addr` (metrics, `/healthz`, `/readyz`).
pub fn metrics_port(db: &SqliteDatabase) -> i32 {
    db.spec
        .sqlite_rest
        .as_ref()
        .and_then(|r| r.metrics.as_ref())
        .filter(|m| m.enabled)
        .map_or(DEFAULT_METRICS_PORT, |m| m.port)
}

/// True when litestream is enabled with at least one replica (the SQLite Operator's default is enabled, no replicas).
pub fn replicating(db: &SqliteDatabase) -> bool {
    db.spec.litestream.as_ref().is_some_and(|l| l.enabled && !l.replicas.is_empty())
}

pub fn rest_enabled(db: &SqliteDatabase) -> bool {
    db.spec.sqlite_rest.as_ref().is_some_and(|r| r.enabled)
}

/// The litecar subcommand the pod runs: `replicate` (with REST when enabled), `serve` (REST only), or nothing.
pub fn command(db: &SqliteDatabase) -> Option<&'static str> {
    if replicating(db) {
        Some("replicate")
    } else if rest_enabled(db) {
        Some("serve")
    } else {
        None
    }
}

pub fn litecar_config(db: &SqliteDatabase) -> LitecarConfig {
    let path = db_path(db);
    let mut env = Vec::new();
    let mut gcs_credentials = None;
    let mut config = Config { addr: Some(format!(":{}", metrics_port(db))), ..Config::default() };
    if replicating(db) {
        let replicas = &db.spec.litestream.as_ref().map(|l| l.replicas.as_slice()).unwrap_or_default();
        let mut out = Vec::new();
        for (i, r) in replicas.iter().enumerate() {
            let same_type = replicas.iter().filter(|o| o.kind == r.kind).count();
            let name = if same_type == 1 { r.kind.as_str().to_owned() } else { format!("{}-{i}", r.kind.as_str()) };
            let mut rc = ReplicaConfig {
                name: Some(name),
                retention: r.retention.as_deref().and_then(|v| GoDuration::parse(v).ok()),
                retention_check_interval: r.retention_check_interval.as_deref().and_then(|v| GoDuration::parse(v).ok()),
                region: r.region.clone(),
                endpoint: r.endpoint.clone(),
                ..ReplicaConfig::default()
            };
            let sub_path = r.path.clone().unwrap_or_default();
            let mut secret_env = |suffix: &str, key: &str| -> Option<String> {
                let c = r.credentials.as_ref()?;
                let var = format!("LITECAR_REPLICA_{i}_{suffix}");
                env.push(SecretEnv { var: var.clone(), secret: c.secret_name.clone(), key: key.to_owned() });
                Some(format!("${{{var}}}"))
            };
            match r.kind {
                ReplicaType::S3 => {
                    rc.kind = Some("s3".into());
                    rc.bucket = Some(r.bucket.clone());
                    rc.path = Some(sub_path);
                    if let Some(c) = r.credentials.clone() {
                        rc.access_key_id = secret_env("ACCESS_KEY_ID", c.access_key());
                        rc.secret_access_key = secret_env("SECRET_ACCESS_KEY", c.secret_key());
                    }
                }
                ReplicaType::Azure => {
                    rc.kind = Some("abs".into());
                    rc.bucket = Some(r.bucket.clone());
                    rc.path = Some(sub_path);
                    if let Some(c) = r.credentials.clone() {
                        rc.account_name = secret_env("AZURE_ACCOUNT_NAME", c.access_key());
                        rc.account_key = secret_env("AZURE_ACCOUNT_KEY", c.secret_key());
                    }
                }
                ReplicaType::Gcs => {
                    rc.kind = Some("gcs".into());
                    rc.bucket = Some(r.bucket.clone());
                    rc.path = Some(sub_path);
                    if let Some(c) = &r.credentials {
                        gcs_credentials = Some((c.secret_name.clone(), c.secret_key().to_owned()));
                    }
                }
                ReplicaType::Local => {
                    // On the database's own volume: it survives restarts, but not the volume's loss.
                    rc.kind = Some("file".into());
                    let dir = if sub_path.is_empty() { db.spec.database.name.clone() } else { sub_path };
                    rc.path = Some(format!("{DATA_DIR}/backups/{}", dir.trim_matches('/')));
                }
            }
            out.push(rc);
        }
        config.dbs.push(DbConfig { path: Some(path.clone()), replicas: out, ..DbConfig::default() });
    }
    if let Some(rest) = db.spec.sqlite_rest.as_ref().filter(|r| r.enabled) {
        let auth = JwtConfig { jwt_secret_file: Some(format!("{AUTH_DIR}/{AUTH_KEY}")), ..JwtConfig::default() };
        config.rest = Some(RestConfig {
            addr: Some(format!(":{}", rest.port)),
            db: Some(path),
            allowed_tables: rest.allowed_tables.clone(),
            auth: Some(AuthSetting::Jwt(Box::new(auth))),
            ..RestConfig::default()
        });
    }
    LitecarConfig { config, env, gcs_credentials }
}

/// The config file's text, as it goes into the ConfigMap.
pub fn config_yaml(config: &Config) -> Result<String, serde_saphyr::ser::Error> {
    serde_saphyr::to_string(config)
}
