//! The config file's shape, as written: every key Litestream 0.3 (and 0.5) reads plus litecar's own sections. These
//! types only deserialize; defaults and checks live in `resolve`, unknown keys are found by `keys`.

use serde::{Deserialize, Serialize};

use super::GoDuration;

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Address of the metrics and health endpoints, such as `:9090`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingConfig>,
    /// Command to run as a child process; replication stops when it exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    /// Default credentials for every replica (Litestream's global keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// litecar: how long a shutdown may take for the final sync and uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<GoDuration>,
    /// litecar: unknown keys are errors instead of warnings (like `-strict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    /// Litestream 0.5: snapshot schedule and retention for every replica that sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dbs: Vec<DbConfig>,
    /// litecar: the REST table API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<RestConfig>,
    /// litecar: fill a database from the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchcache: Option<WatchcacheConfig>,
    /// litecar: read replicas that `litecar follow` keeps up to date.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow: Vec<FollowConfig>,
}

/// One entry of `follow:`: the follower's database and the replica it follows, written with the keys of
/// `dbs[].replicas` (`url`, or `type` with `bucket` and `replica-path`, credentials, endpoint, ...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct FollowConfig {
    /// First, so that its `path` is the follower's database, not the replica's.
    #[serde(flatten)]
    pub follower: FollowerConfig,
    #[serde(flatten)]
    pub replica: ReplicaConfig,
}

/// The keys of a `follow:` entry that are not replica keys. A struct of their own, so that the unknown-key check can
/// read their names (a flattened struct hides its fields).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FollowerConfig {
    /// The follower's database: a read-only copy that litecar keeps up to date.
    pub path: String,
    /// How often to ask an object store for new segments; default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<GoDuration>,
    /// The replica's path inside its bucket or directory, for replicas given by `type` rather than `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct WatchcacheConfig {
    /// The database to fill (`:memory:` works too).
    pub db: String,
    /// A kubeconfig file; default: in-cluster service account, else $KUBECONFIG / ~/.kube/config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    pub resources: Vec<WatchResource>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct WatchResource {
    /// API group; empty or absent for the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub version: String,
    pub kind: String,
    /// URL plural, for kinds whose plural is irregular.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plural: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_selector: Option<String>,
    /// More indexed fields (JSON paths such as `spec.nodeName`) for filters and sorting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Keep Secrets' data (stripped by default).
    #[serde(default)]
    pub keep_secret_data: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RestConfig {
    /// Serve the API (default true when the section is present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Listen address, `:8080` style; default `:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The database to serve; default the only entry of `dbs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unfiltered_writes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_connections: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// Serve reads only; writes answer 405. Always on when `db` is one of the `follow:` read replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// `none` (loopback only) or a JWT mapping; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSetting>,
    /// Serve HTTPS with this certificate and key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TlsConfig {
    /// PEM certificate chain, the server's certificate first; read again when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of that certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AuthSetting {
    /// The word `none`.
    Keyword(String),
    Jwt(Box<JwtConfig>),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct JwtConfig {
    /// HS256/384/512 shared secret, from a mounted file or an environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_env: Option<String>,
    /// RS*/PS*/ES*/EdDSA public key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_public_key_file: Option<String>,
    /// A JWKS document; keys are chosen by `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Option<GoDuration>,
    /// The claim that names the role; default `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_claim: Option<String>,
    /// Role name -> what it may do. Without roles, any valid token may read and write every allowed table.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, RoleConfig>,
    /// Role of tokens without the role claim; without it they are refused (403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RoleConfig {
    #[serde(default)]
    pub read_only: bool,
    /// Tables this role may use (default: all allowed tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoggingConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<LogFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct DbConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Accepted for Litestream compatibility; litecar keeps its state in `.<name>-litecar` next to the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_checkpoint_page_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_checkpoint_page_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaConfig>,
    /// Litestream 0.5: the database's one replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaConfig>,
}

/// Litestream 0.5's top-level `snapshot:` section.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct SnapshotConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<GoDuration>,
}

/// Litestream 0.3's replica encryption keys.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AgeConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReplicaConfig {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_check_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key: Option<String>,
    /// litecar: credentials from mounted secret files (the file's content, trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key_file: Option<String>,
    /// litecar: an Azure SAS token (or set AZURE_STORAGE_SAS_TOKEN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token: Option<String>,
    /// Litestream's SFTP keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_path: Option<String>,
    /// litecar: the SFTP server's public key (`ssh-ed25519 AAAA...`), checked on every connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// litecar: an OpenSSH known_hosts file the SFTP server's key must be listed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_hosts_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<AgeConfig>,
}

impl ReplicaConfig {
    /// The replica's name: its `name`, else its type, as Litestream names them.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(k) = &self.kind {
            return k.clone();
        }
        match self.url.as_deref().and_then(|u| u.split_once("://")) {
            Some((scheme, _)) => scheme.to_owned(),
            None => "file".to_owned(),
        }
    }
}
