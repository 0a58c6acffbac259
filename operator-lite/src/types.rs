//! The `SqliteDatabase` resource (`database.sqlite.io/v1alpha1`): the SQLite Operator's spec field for field, so its
//! users' manifests apply unchanged, plus an optional `litecar` section for what litecar adds.

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "database.sqlite.io",
    version = "v1alpha1",
    kind = "SqliteDatabase",
    plural = "sqlitedatabases",
    shortname = "sqldb",
    doc = "A SQLite database on a persistent volume, replicated and optionally served as a REST API by litecar",
    namespaced,
    status = "SqliteDatabaseStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct SqliteDatabaseSpec {
    /// The database file and its volume.
    #[serde(default)]
    pub database: DatabaseSpec,
    /// Replication of the database (Litestream's settings; litecar does the replicating).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub litestream: Option<LitestreamSpec>,
    /// The JWT-protected REST table API (sqlite-rest's settings; litecar serves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sqlite_rest: Option<SqliteRestSpec>,
    /// An Ingress in front of the REST API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,
    /// Requests and limits of the litecar container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "resources_schema")]
    pub resources: Option<ResourceRequirements>,
    /// litecar's additions; absent in SQLite Operator manifests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub litecar: Option<LitecarSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// File name of the database, in the volume's root.
    #[serde(default = "default_db_name")]
    #[schemars(extend("pattern" = r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", "maxLength" = 200))]
    pub name: String,
    /// Name of a ConfigMap whose `init.sql` is applied once, to a new database (never to a restored one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_script: Option<String>,
    #[serde(default)]
    pub storage: StorageSpec,
}

impl Default for DatabaseSpec {
    fn default() -> Self {
        Self { name: default_db_name(), init_script: None, storage: StorageSpec::default() }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Size of the PersistentVolumeClaim.
    #[serde(default = "default_size")]
    #[schemars(extend("pattern" = r"^([0-9]+(\.[0-9]+)?(E|P|T|G|M|K|Ei|Pi|Ti|Gi|Mi|Ki)?)$"))]
    pub size: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    #[serde(default)]
    pub access_mode: AccessMode,
}

impl Default for StorageSpec {
    fn default() -> Self {
        Self { size: default_size(), storage_class: None, access_mode: AccessMode::default() }
    }
}

/// ReadWriteMany is the SQLite Operator's default; an existing claim's mode cannot change, so it stays the default.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum AccessMode {
    ReadWriteOnce,
    #[default]
    ReadWriteMany,
    ReadOnlyMany,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWriteOnce => "ReadWriteOnce",
            Self::ReadWriteMany => "ReadWriteMany",
            Self::ReadOnlyMany => "ReadOnlyMany",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LitestreamSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub replicas: Vec<ReplicaSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaSpec {
    #[serde(rename = "type")]
    pub kind: ReplicaType,
    /// Bucket (S3, GCS) or container (Azure); unused by `local`.
    #[serde(default)]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// S3-compatible endpoint (MinIO, Wasabi, R2...), or the Azure blob endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Path inside the bucket; for `local`, the directory under the volume's `backups/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<CredentialsSpec>,
    /// How long snapshots and WAL are kept (Go duration).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub retention: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = DURATION_PATTERN))]
    pub retention_check_interval: Option<String>,
}

const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$";

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplicaType {
    #[default]
    S3,
    Azure,
    Gcs,
    Local,
}

impl ReplicaType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Azure => "azure",
            Self::Gcs => "gcs",
            Self::Local => "local",
        }
    }
}

/// A Secret in the database's namespace. S3: the access key id and secret access key; Azure: the account name and
/// account key; GCS: `secretKeyField` holds a service-account JSON key.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSpec {
    pub secret_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_field: Option<String>,
}

impl CredentialsSpec {
    pub fn access_key(&self) -> &str {
        self.access_key_field.as_deref().unwrap_or("access-key")
    }
    pub fn secret_key(&self) -> &str {
        self.secret_key_field.as_deref().unwrap_or("secret-key")
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!self.enabled || has(self.authSecret)", "message": "authSecret is required when sqliteRest is enabled"}
]))]
pub struct SqliteRestSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "default_rest_port")]
    #[schemars(extend("minimum" = 1, "maximum" = 65535))]
    pub port: i32,
    /// Secret whose `token` key is the HS256 JWT secret; every valid token may read and write the allowed tables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_secret: Option<String>,
    #[serde(default)]
    pub allowed_tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSpec {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "default_metrics_port")]
    #[schemars(extend("minimum" = 1, "maximum" = 65535))]
    pub port: i32,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!self.enabled || has(self.host)", "message": "host is required when ingress is enabled"}
]))]
pub struct IngressSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!self.enabled || has(self.secretName)", "message": "secretName is required when tls is enabled"}
]))]
pub struct TlsSpec {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
}

/// What litecar adds to the SQLite Operator's spec.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LitecarSpec {
    /// The litecar image (default: the operator's `--image`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Instead of a Deployment of its own, inject litecar into the application's Deployments annotated
    /// `litecar.io/database: <this resource's name>` (a native sidecar plus the restore init container).
    #[serde(default)]
    pub sidecar: bool,
    /// Delete the PersistentVolumeClaim with the resource (default: keep it).
    #[serde(default)]
    pub delete_storage: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqliteDatabaseStatus {
    /// Pending, Running, Failed or Terminating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Ready, Replicating and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<EndpointsStatus>,
}

/// A status condition with the fields of `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    /// True, False or Unknown.
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointsStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<String>,
}

fn default_db_name() -> String {
    "database.db".into()
}
fn default_size() -> String {
    "1Gi".into()
}
fn default_rest_port() -> i32 {
    8080
}
fn default_metrics_port() -> i32 {
    8081
}
fn yes() -> bool {
    true
}

/// `corev1.ResourceRequirements` as the API server describes it (k8s-openapi's types carry no JSON schema).
fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let quantities = serde_json::json!({
        "type": "object",
        "additionalProperties": {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
            "x-kubernetes-int-or-string": true
        }
    });
    schemars::json_schema!({
        "type": "object",
        "nullable": true,
        "properties": {"limits": quantities.clone(), "requests": quantities}
    })
}
