//! Sidecar opt-in: an application's own Deployment, annotated `litecar.io/database: <SqliteDatabase name>`, gets
//! litecar as a native sidecar plus the restore init container, next to its own containers.

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{Value, json};

use crate::config;
use crate::names::{Names, name};
use crate::pod::{self, RenderOptions};
use crate::render::{INSTANCE_LABEL, RenderError, config_hash};
use crate::types::SqliteDatabase;
use crate::validate::{resource_key, validate};

pub const ANNOTATION: &str = "litecar.io/database";

/// The SqliteDatabase a Deployment asks for, if any.
pub fn requested_database(deployment: &Deployment) -> Option<&str> {
    deployment.metadata.annotations.as_ref()?.get(ANNOTATION).map(String::as_str)
}

/// The parts of the Deployment's pod template that litecar owns: labels, annotations, init containers and volumes.
/// As a server-side apply patch they merge into the application's Deployment by name, leaving its fields alone.
pub fn injection(db: &SqliteDatabase, deployment: &Deployment, opts: &RenderOptions) -> Result<Value, RenderError> {
    validate(db)?;
    let lc = config::litecar_config(db);
    let text = config::config_yaml(&lc.config).map_err(|e| RenderError::Build {
        resource: resource_key(db),
        kind: "ConfigMap",
        message: e.to_string(),
    })?;
    let claim = Names::pvc(&name(db));
    // An application that mounts the claim already (to open the database) shares its volume with litecar.
    let existing = deployment.spec.template.spec.as_ref().and_then(|s| s.volumes.as_ref()).and_then(|vs| {
        vs.iter()
            .find(|v| v.persistent_volume_claim.as_ref().is_some_and(|p| p.claim_name == claim))
            .map(|v| v.name.clone())
    });
    let data = existing.clone().unwrap_or_else(|| pod::DATA_VOLUME.to_owned());
    let mut init = pod::init_containers(db, &lc, opts, &data);
    init.extend(pod::init_db_container(db, opts, &data, false));
    init.push(pod::litecar_container(db, &lc, opts, &data, true));
    let volumes = pod::volumes(db, &lc, existing.is_none().then_some(pod::DATA_VOLUME));
    Ok(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment.metadata.name, "namespace": deployment.metadata.namespace},
        "spec": {"template": {
            "metadata": {
                "labels": {INSTANCE_LABEL: name(db)},
                "annotations": {"litecar.io/config-hash": config_hash(&text)},
            },
            "spec": {"initContainers": init, "volumes": volumes},
        }},
    }))
}

/// The application's Deployment with litecar injected: what the API server holds after the operator's apply.
/// litecar's init containers come first, so the database is restored before the application's own init containers.
/// Injecting twice gives the same Deployment.
pub fn inject(db: &SqliteDatabase, deployment: &Deployment, opts: &RenderOptions) -> Result<Deployment, RenderError> {
    let patch = injection(db, deployment, opts)?;
    let mut full = serde_json::to_value(deployment).map_err(|e| build_error(db, e))?;
    let tpl = &mut full["spec"]["template"];
    for key in ["labels", "annotations"] {
        let add = patch["spec"]["template"]["metadata"][key].as_object().cloned().unwrap_or_default();
        let map = tpl["metadata"][key].as_object().cloned().unwrap_or_default();
        let mut merged = map;
        merged.extend(add);
        tpl["metadata"][key] = Value::Object(merged);
    }
    for (key, ours_first) in [("initContainers", true), ("volumes", false)] {
        let ours = patch["spec"]["template"]["spec"][key].as_array().cloned().unwrap_or_default();
        let names: Vec<&Value> = ours.iter().map(|c| &c["name"]).collect();
        let theirs: Vec<Value> = tpl["spec"][key]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !names.contains(&&c["name"]))
            .collect();
        let list = if ours_first { [ours, theirs].concat() } else { [theirs, ours].concat() };
        tpl["spec"][key] = Value::Array(list);
    }
    serde_json::from_value(full).map_err(|e| build_error(db, e))
}

fn build_error(db: &SqliteDatabase, e: serde_json::Error) -> RenderError {
    RenderError::Build { resource: resource_key(db), kind: "Deployment", message: e.to_string() }
}
