//! The objects a `SqliteDatabase` becomes, as pure functions of the resource: the same code backs
//! `litecar-operator render`, the controller and the chart's examples.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Service};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use serde_json::{Value, json};

use crate::config::{self, LitecarConfig};
use crate::names::{Names, name, namespace};
use crate::pod::{self, RenderOptions};
use crate::types::SqliteDatabase;
use crate::validate::{SpecError, resource_key, validate};

pub const MANAGED_BY: &str = "litecar-operator";
/// Pod-template label that the Service selects on, on the operator's pods and on injected application pods alike.
pub const INSTANCE_LABEL: &str = "database.sqlite.io/instance";

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error("SqliteDatabase {resource}: rendering the {kind}: {message}")]
    Build { resource: String, kind: &'static str, message: String },
    #[error(
        "Deployment {deployment} asks for SqliteDatabase {database:?} (annotation {annotation}), which is not given"
    )]
    MissingDatabase { deployment: String, database: String, annotation: &'static str },
}

/// Everything the operator applies for one resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub pvc: PersistentVolumeClaim,
    pub config_map: Option<ConfigMap>,
    /// Absent in sidecar mode, and when there is nothing to run (no replica, no REST API).
    pub deployment: Option<Deployment>,
    pub service: Option<Service>,
    pub ingress: Option<Ingress>,
}

impl Rendered {
    /// The objects in the order they are applied (the Deployment's ConfigMap and claim before it).
    pub fn objects(&self) -> Vec<Value> {
        let mut out = vec![to_value(&self.pvc)];
        out.extend(self.config_map.as_ref().map(to_value));
        out.extend(self.deployment.as_ref().map(to_value));
        out.extend(self.service.as_ref().map(to_value));
        out.extend(self.ingress.as_ref().map(to_value));
        out
    }
}

fn to_value<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// The SQLite Operator's labels, so a migrated Deployment keeps its (immutable) selector.
pub fn selector_labels(db: &SqliteDatabase) -> Value {
    json!({"app.kubernetes.io/name": "sqlite-database", "app.kubernetes.io/instance": name(db)})
}

fn labels(db: &SqliteDatabase) -> Value {
    json!({
        "app.kubernetes.io/name": "sqlite-database",
        "app.kubernetes.io/instance": name(db),
        "app.kubernetes.io/managed-by": MANAGED_BY,
    })
}

/// metadata for an owned object; the owner reference is only known once the resource exists (it has a uid).
fn metadata(db: &SqliteDatabase, object_name: String, owned: bool) -> Value {
    let mut m = json!({"name": object_name, "namespace": namespace(db), "labels": labels(db)});
    if owned && let Some(owner) = owner_reference(db) {
        m["ownerReferences"] = json!([owner]);
    }
    m
}

pub fn owner_reference(db: &SqliteDatabase) -> Option<OwnerReference> {
    db.controller_owner_ref(&())
}

pub fn render(db: &SqliteDatabase, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    validate(db)?;
    let lc = config::litecar_config(db);
    let sidecar = db.spec.litecar.as_ref().is_some_and(|l| l.sidecar);
    let runs = config::command(db).is_some();
    let text = config::config_yaml(&lc.config).map_err(|e| RenderError::Build {
        resource: resource_key(db),
        kind: "ConfigMap",
        message: e.to_string(),
    })?;
    let config_map = (runs || sidecar).then(|| config_map(db, &text)).transpose()?;
    let deployment = (runs && !sidecar).then(|| deployment(db, &lc, &text, opts)).transpose()?;
    let has_service = config::rest_enabled(db) || metrics_enabled(db);
    let service = (has_service && (runs || sidecar)).then(|| service(db)).transpose()?;
    let ingress = db.spec.ingress.as_ref().filter(|i| i.enabled).map(|i| ingress(db, i)).transpose()?;
    Ok(Rendered { pvc: pvc(db)?, config_map, deployment, service, ingress })
}

fn metrics_enabled(db: &SqliteDatabase) -> bool {
    db.spec.sqlite_rest.as_ref().and_then(|r| r.metrics.as_ref()).is_some_and(|m| m.enabled)
}

fn typed<T: serde::de::DeserializeOwned>(db: &SqliteDatabase, kind: &'static str, v: Value) -> Result<T, RenderError> {
    serde_json::from_value(v).map_err(|e| RenderError::Build {
        resource: resource_key(db),
        kind,
        message: e.to_string(),
    })
}

fn pvc(db: &SqliteDatabase) -> Result<PersistentVolumeClaim, RenderError> {
    let storage = &db.spec.database.storage;
    // Kept when the resource goes, unless asked otherwise: no owner reference, so no garbage collection.
    let owned = db.spec.litecar.as_ref().is_some_and(|l| l.delete_storage);
    let mut spec = json!({
        "accessModes": [storage.access_mode.as_str()],
        "resources": {"requests": {"storage": storage.size}},
    });
    if let Some(class) = &storage.storage_class {
        spec["storageClassName"] = json!(class);
    }
    typed(
        db,
        "PersistentVolumeClaim",
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": metadata(db, Names::pvc(&name(db)), owned), "spec": spec}),
    )
}

fn config_map(db: &SqliteDatabase, text: &str) -> Result<ConfigMap, RenderError> {
    typed(
        db,
        "ConfigMap",
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": metadata(db, Names::config_map(&name(db)), true),
            "data": {config::CONFIG_FILE: text},
        }),
    )
}

fn deployment(
    db: &SqliteDatabase,
    lc: &LitecarConfig,
    text: &str,
    opts: &RenderOptions,
) -> Result<Deployment, RenderError> {
    let mut pod_labels = selector_labels(db);
    pod_labels[INSTANCE_LABEL] = json!(name(db));
    let mut init = pod::init_containers(db, lc, opts, pod::DATA_VOLUME);
    init.extend(pod::init_db_container(db, opts, pod::DATA_VOLUME, true));
    let port = config::metrics_port(db);
    typed(
        db,
        "Deployment",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(db, Names::deployment(&name(db)), true),
            "spec": {
                "replicas": 1,
                // One writer at a time: the old pod's final sync ends before the new pod restores.
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": selector_labels(db)},
                "template": {
                    "metadata": {
                        "labels": pod_labels,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": port.to_string(),
                            "prometheus.io/path": "/metrics",
                            // A changed config rolls the pod; litecar reads its config at start-up.
                            "litecar.io/config-hash": config_hash(text),
                        },
                    },
                    "spec": {
                        "securityContext": pod::pod_security_context(),
                        "terminationGracePeriodSeconds": 30,
                        "initContainers": init,
                        "containers": [pod::litecar_container(db, lc, opts, pod::DATA_VOLUME, false)],
                        "volumes": pod::volumes(db, lc, Some(pod::DATA_VOLUME)),
                    },
                },
            },
        }),
    )
}

fn service(db: &SqliteDatabase) -> Result<Service, RenderError> {
    let mut ports = Vec::new();
    if let Some(rest) = db.spec.sqlite_rest.as_ref().filter(|r| r.enabled) {
        ports.push(json!({"name": "http", "port": rest.port, "targetPort": "http", "protocol": "TCP"}));
    }
    if metrics_enabled(db) {
        let port = config::metrics_port(db);
        ports.push(json!({"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}));
    }
    typed(
        db,
        "Service",
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": metadata(db, Names::service(&name(db)), true),
            "spec": {"type": "ClusterIP", "selector": {INSTANCE_LABEL: name(db)}, "ports": ports},
        }),
    )
}

fn ingress(db: &SqliteDatabase, spec: &crate::types::IngressSpec) -> Result<Ingress, RenderError> {
    let host = spec.host.clone().unwrap_or_default();
    let mut ing = json!({
        "rules": [{
            "host": host,
            "http": {"paths": [{
                "path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": Names::service(&name(db)), "port": {"name": "http"}}},
            }]},
        }],
    });
    if let Some(tls) = spec.tls.as_ref().filter(|t| t.enabled) {
        ing["tls"] = json!([{"hosts": [host], "secretName": tls.secret_name}]);
    }
    typed(
        db,
        "Ingress",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": metadata(db, Names::ingress(&name(db)), true), "spec": ing}),
    )
}

pub fn config_hash(text: &str) -> String {
    format!("{:016x}", fnv1a(text.as_bytes()))
}

/// 64-bit FNV-1a: a stable content hash without another dependency.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// The objects as a YAML stream (`---` between documents), for `litecar-operator render`.
pub fn to_yaml_stream(objects: &[Value]) -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for o in objects {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(o)?);
    }
    Ok(out)
}
