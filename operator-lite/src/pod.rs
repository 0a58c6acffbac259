//! The pod parts every litecar pod shares, whether the operator runs it or injects it into an application's
//! Deployment: containers, volumes and security contexts.

use serde_json::{Value, json};

use crate::config::{self, LitecarConfig};
use crate::names::{Names, name};
use crate::types::SqliteDatabase;

/// The image's non-root user (distroless's `nonroot`).
pub const UID: i64 = 65532;
pub const INIT_SCRIPT_DIR: &str = "/etc/litecar-init";
/// Every volume the operator adds is named with this prefix, so injection never collides with the application's.
pub const VOLUME_PREFIX: &str = "litecar-";
pub const DATA_VOLUME: &str = "litecar-data";
const OPERATOR_BIN: &str = "/usr/local/bin/litecar-operator";

/// Options that come from the operator rather than from the resource.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The litecar image, unless the resource names one.
    pub image: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self { image: format!("litecar:{}", env!("CARGO_PKG_VERSION")) }
    }
}

pub fn image(db: &SqliteDatabase, opts: &RenderOptions) -> String {
    db.spec.litecar.as_ref().and_then(|l| l.image.clone()).unwrap_or_else(|| opts.image.clone())
}

pub fn pod_security_context() -> Value {
    json!({
        "runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID, "fsGroup": UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

pub fn container_security_context() -> Value {
    json!({
        "runAsNonRoot": true, "runAsUser": UID, "runAsGroup": UID,
        "readOnlyRootFilesystem": true, "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

fn resources(db: &SqliteDatabase) -> Value {
    match &db.spec.resources {
        Some(r) => serde_json::to_value(r).unwrap_or_else(|_| json!({})),
        None => json!({"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "256Mi"}}),
    }
}

fn env(lc: &LitecarConfig) -> Vec<Value> {
    let mut env: Vec<Value> = lc
        .env
        .iter()
        .map(|e| json!({"name": e.var, "valueFrom": {"secretKeyRef": {"name": e.secret, "key": e.key}}}))
        .collect();
    if let Some((_, key)) = &lc.gcs_credentials {
        env.push(json!({"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": format!("{}/{key}", config::GCS_CREDENTIALS_DIR)}));
    }
    env
}

fn mounts(db: &SqliteDatabase, lc: &LitecarConfig, data_volume: &str) -> Vec<Value> {
    let mut m = vec![
        json!({"name": data_volume, "mountPath": config::DATA_DIR}),
        json!({"name": "litecar-config", "mountPath": config::CONFIG_DIR, "readOnly": true}),
        json!({"name": "litecar-tmp", "mountPath": "/tmp"}),
    ];
    if config::rest_enabled(db) {
        m.push(json!({"name": "litecar-auth", "mountPath": config::AUTH_DIR, "readOnly": true}));
    }
    if lc.gcs_credentials.is_some() {
        m.push(json!({"name": "litecar-gcs", "mountPath": config::GCS_CREDENTIALS_DIR, "readOnly": true}));
    }
    m
}

fn base_container(db: &SqliteDatabase, lc: &LitecarConfig, opts: &RenderOptions, data_volume: &str) -> Value {
    json!({
        "image": image(db, opts),
        "imagePullPolicy": "IfNotPresent",
        "env": env(lc),
        "volumeMounts": mounts(db, lc, data_volume),
        "resources": resources(db),
        "securityContext": container_security_context(),
    })
}

/// `litecar restore` before anything opens the database: the latest backup when there is one and no database yet.
pub fn init_containers(db: &SqliteDatabase, lc: &LitecarConfig, opts: &RenderOptions, data_volume: &str) -> Vec<Value> {
    if !config::replicating(db) {
        return Vec::new();
    }
    let mut c = base_container(db, lc, opts, data_volume);
    c["name"] = json!("litecar-restore");
    c["args"] = json!([
        "restore",
        "-config",
        config::config_path(),
        "-if-db-not-exists",
        "-if-replica-exists",
        config::db_path(db)
    ]);
    vec![c]
}

/// Creates the database when neither it nor a backup exists, applying `initScript` once. `always`: also without
/// a script (the operator's own pods, where no application creates the file).
pub fn init_db_container(db: &SqliteDatabase, opts: &RenderOptions, data_volume: &str, always: bool) -> Option<Value> {
    let script = db.spec.database.init_script.as_ref();
    if script.is_none() && !always {
        return None;
    }
    let mut args = vec![json!("init-db"), json!(config::db_path(db))];
    let mut mounts = vec![json!({"name": data_volume, "mountPath": config::DATA_DIR})];
    if script.is_some() {
        args.push(json!("--script"));
        args.push(json!(format!("{INIT_SCRIPT_DIR}/init.sql")));
        mounts.push(json!({"name": "litecar-init-script", "mountPath": INIT_SCRIPT_DIR, "readOnly": true}));
    }
    Some(json!({
        "name": "litecar-init-db",
        "image": image(db, opts),
        "imagePullPolicy": "IfNotPresent",
        "command": [OPERATOR_BIN],
        "args": args,
        "volumeMounts": mounts,
        "resources": resources(db),
        "securityContext": container_security_context(),
    }))
}

/// The replicating (and serving) container; `native_sidecar` makes it an init container that runs for the pod's
/// whole life (Kubernetes 1.29+), started before the application and stopped after it.
pub fn litecar_container(
    db: &SqliteDatabase,
    lc: &LitecarConfig,
    opts: &RenderOptions,
    data_volume: &str,
    native_sidecar: bool,
) -> Value {
    let mut c = base_container(db, lc, opts, data_volume);
    c["name"] = json!("litecar");
    c["args"] = json!([config::command(db).unwrap_or("replicate"), "-config", config::config_path()]);
    let metrics = config::metrics_port(db);
    let mut ports = Vec::new();
    if let Some(rest) = db.spec.sqlite_rest.as_ref().filter(|r| r.enabled) {
        ports.push(json!({"name": "http", "containerPort": rest.port, "protocol": "TCP"}));
    }
    ports.push(json!({"name": "metrics", "containerPort": metrics, "protocol": "TCP"}));
    c["ports"] = json!(ports);
    c["livenessProbe"] =
        json!({"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10, "failureThreshold": 3});
    c["readinessProbe"] = json!({"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 10});
    if native_sidecar {
        c["restartPolicy"] = json!("Always");
    }
    c
}

/// The pod volumes litecar's containers mount; `data_volume` names the database claim's volume when it is to be
/// added (an application that already mounts the claim keeps its own volume).
pub fn volumes(db: &SqliteDatabase, lc: &LitecarConfig, data_volume: Option<&str>) -> Vec<Value> {
    let n = name(db);
    let mut v = Vec::new();
    if let Some(data) = data_volume {
        v.push(json!({"name": data, "persistentVolumeClaim": {"claimName": Names::pvc(&n)}}));
    }
    v.push(json!({"name": "litecar-config", "configMap": {"name": Names::config_map(&n)}}));
    v.push(json!({"name": "litecar-tmp", "emptyDir": {"sizeLimit": "64Mi"}}));
    if let Some(script) = &db.spec.database.init_script {
        v.push(json!({"name": "litecar-init-script", "configMap": {"name": script}}));
    }
    if let Some(secret) = db.spec.sqlite_rest.as_ref().filter(|r| r.enabled).and_then(|r| r.auth_secret.as_ref()) {
        v.push(json!({"name": "litecar-auth", "secret": {"secretName": secret}}));
    }
    if let Some((secret, _)) = &lc.gcs_credentials {
        v.push(json!({"name": "litecar-gcs", "secret": {"secretName": secret}}));
    }
    v
}
