//! What a controller's writes need from the API server: PATCH (server-side apply and JSON merge patch), the status
//! subresource, metadata.generation, finalizers with deletionTimestamp, and owner-reference garbage collection.
//!
//! Simplifications, each checked against the real API server where the operator depends on it (tests
//! operator_kubectl.rs): server-side apply merges maps, and lists of named items by name (an item is replaced
//! whole), without per-field ownership or conflicts (the operator always forces); a write that changes nothing
//! keeps the resourceVersion and sends no event, as the real server does.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::Method;
use serde_json::{Value, json};

use super::{ApiError, FakeKube, ResourceDef, Shared, Target, create, delete, key_of, lock, resource_def, update};

/// Resources served with a status subresource and metadata.generation, as the API server does. The core kinds the
/// fake served before keep their simpler semantics (a write stores what it is given), which older tests rely on.
const STATUS_SUBRESOURCE: [&str; 5] = [
    "database.sqlite.io/v1alpha1/sqlitedatabases",
    "apps/v1/deployments",
    "v1/services",
    "v1/persistentvolumeclaims",
    "networking.k8s.io/v1/ingresses",
];

impl FakeKube {
    /// Registers what litecar-operator reads and writes besides the core kinds served from the start.
    pub fn register_operator_kinds(&self) {
        for r in [
            ResourceDef::new("database.sqlite.io", "v1alpha1", "SqliteDatabase", "sqlitedatabases", true),
            ResourceDef::new("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", true),
            ResourceDef::new("", "v1", "Service", "services", true),
            ResourceDef::new("apps", "v1", "Deployment", "deployments", true),
            ResourceDef::new("networking.k8s.io", "v1", "Ingress", "ingresses", true),
            ResourceDef::new("events.k8s.io", "v1", "Event", "events", true),
            ResourceDef::new("coordination.k8s.io", "v1", "Lease", "leases", true),
        ] {
            self.register(r);
        }
    }

    /// Writes `status` through the status subresource, as a kubelet or the deployment controller would.
    pub fn set_status(&self, resource: &str, ns: &str, name: &str, status: Value) -> Result<Value, ApiError> {
        let target = Target {
            resource: resource.into(),
            namespace: Some(ns.into()),
            name: Some(name.into()),
            subresource: Some("status".into()),
        };
        patch(&self.shared, &target, name, Some("status"), "application/merge-patch+json", &json!({"status": status}))
    }
}

/// Records who applied (metadata.managedFields, one entry per manager, without the field set).
fn with_manager(mut patch: Value, manager: &str, content_type: &str) -> Value {
    if content_type.starts_with("application/apply-patch") && patch.is_object() {
        let api_version = patch["apiVersion"].clone();
        patch["metadata"]["managedFields"] =
            json!([{"manager": manager, "operation": "Apply", "apiVersion": api_version, "fieldsType": "FieldsV1"}]);
    }
    patch
}

/// Handles the writes this module owns; None leaves the request to the read paths.
pub(super) fn route(
    shared: &Arc<Shared>,
    method: &Method,
    target: &Target,
    query: &std::collections::BTreeMap<String, String>,
    content_type: &str,
    body: &Bytes,
) -> Option<Result<Value, ApiError>> {
    let parse = || -> Result<Value, ApiError> {
        serde_json::from_slice(body).map_err(|e| ApiError::new(400, "BadRequest", format!("request body: {e}")))
    };
    let sub = target.subresource.as_deref();
    if sub.is_some_and(|s| s != "status") {
        return Some(Err(ApiError::new(404, "NotFound", format!("subresource {sub:?} is not served"))));
    }
    Some(match (method, target.name.as_deref()) {
        (&Method::GET, Some(name)) if sub.is_some() => get(shared, target, name),
        (&Method::POST, None) => parse().and_then(|obj| post(shared, target, obj)),
        (&Method::PUT, Some(name)) => parse().and_then(|obj| put(shared, target, name, sub, obj)),
        (&Method::PATCH, Some(name)) => {
            if content_type.starts_with("application/apply-patch")
                && query.get("fieldManager").is_none_or(|m| m.is_empty())
            {
                return Some(Err(ApiError::new(
                    422,
                    "Invalid",
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                )));
            }
            let manager = query.get("fieldManager").cloned().unwrap_or_default();
            parse()
                .map(|p| with_manager(p, &manager, content_type))
                .and_then(|p| patch(shared, target, name, sub, content_type, &p))
        }
        (&Method::DELETE, Some(name)) => {
            delete_or_finalize(shared, &target.resource, target.namespace.as_deref(), name)
        }
        _ => return None,
    })
}

fn get(shared: &Shared, target: &Target, name: &str) -> Result<Value, ApiError> {
    let db = lock(&shared.db);
    let def = resource_def(&db, &target.resource)?;
    let key = key_of(target.namespace.as_deref().filter(|_| def.namespaced), name);
    db.objects
        .get(&target.resource)
        .and_then(|m| m.get(&key))
        .cloned()
        .ok_or_else(|| ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", def.plural)))
}

pub(super) fn post(shared: &Shared, target: &Target, mut obj: Value) -> Result<Value, ApiError> {
    if STATUS_SUBRESOURCE.contains(&target.resource.as_str()) {
        obj["metadata"]["generation"] = json!(1);
    }
    create(shared, &target.resource, target.namespace.as_deref(), obj)
}

/// The object as stored after a write of `new` over `old`: status only through the subresource, the rest only
/// through the object; generation counts changes of spec.
fn settle(resource: &str, old: &Value, mut new: Value, sub: Option<&str>) -> Value {
    if !STATUS_SUBRESOURCE.contains(&resource) {
        if let Some(t) = old["metadata"].get("deletionTimestamp") {
            new["metadata"]["deletionTimestamp"] = t.clone();
        }
        return new;
    }
    if sub == Some("status") {
        let status = new["status"].clone();
        new = old.clone();
        new["status"] = status;
    } else {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    for f in ["deletionTimestamp", "generation"] {
        match old["metadata"].get(f) {
            Some(v) => new["metadata"][f] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(f);
                }
            }
        }
    }
    if new.get("spec").is_some() && new.get("spec") != old.get("spec") {
        new["metadata"]["generation"] = json!(old["metadata"]["generation"].as_i64().unwrap_or(0) + 1);
    }
    new
}

fn current(shared: &Shared, resource: &str, ns: Option<&str>, name: &str) -> Result<Option<Value>, ApiError> {
    let db = lock(&shared.db);
    let def = resource_def(&db, resource)?;
    let key = key_of(if def.namespaced { Some(ns.unwrap_or("default")) } else { None }, name);
    Ok(db.objects.get(resource).and_then(|m| m.get(&key)).cloned())
}

pub(super) fn put(
    shared: &Shared,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    obj: Value,
) -> Result<Value, ApiError> {
    let ns = target.namespace.as_deref();
    let Some(old) = current(shared, &target.resource, ns, name)? else {
        return Err(ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", target.resource)));
    };
    let new = settle(&target.resource, &old, obj, sub);
    write(shared, &target.resource, ns, name, &old, new, false)
}

fn patch(
    shared: &Shared,
    target: &Target,
    name: &str,
    sub: Option<&str>,
    content_type: &str,
    patch: &Value,
) -> Result<Value, ApiError> {
    let ns = target.namespace.as_deref();
    let apply = content_type.starts_with("application/apply-patch");
    let old = current(shared, &target.resource, ns, name)?;
    let Some(old) = old else {
        if apply && sub.is_none() {
            let mut obj = patch.clone();
            obj["metadata"]["name"] = json!(name);
            return post(shared, target, obj);
        }
        return Err(ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", target.resource)));
    };
    let mut merged = old.clone();
    if apply {
        let mut patch = patch.clone();
        let entry = patch["metadata"]["managedFields"].take();
        let mut fields: Vec<Value> = old["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
        fields.retain(|f| f["manager"] != entry[0]["manager"]);
        fields.extend(entry.as_array().cloned().unwrap_or_default());
        patch["metadata"]["managedFields"] = Value::Array(fields);
        apply_merge(&mut merged, &patch);
        merged["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
    } else if content_type.starts_with("application/merge-patch+json") {
        merge_patch(&mut merged, patch);
    } else {
        return Err(ApiError::new(
            415,
            "UnsupportedMediaType",
            format!("the fake does not take {content_type} patches"),
        ));
    }
    let new = settle(&target.resource, &old, merged, sub);
    write(shared, &target.resource, ns, name, &old, new, true)
}

/// Stores `new` (a patch that changes nothing stores nothing); an object being deleted whose last finalizer went
/// is deleted now.
fn write(
    shared: &Shared,
    resource: &str,
    ns: Option<&str>,
    name: &str,
    old: &Value,
    new: Value,
    is_patch: bool,
) -> Result<Value, ApiError> {
    let stored = if is_patch && &new == old { old.clone() } else { update(shared, resource, ns, name, new)? };
    let finalizers_left = stored["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
    if stored["metadata"].get("deletionTimestamp").is_some() && !finalizers_left {
        return delete_or_finalize(shared, resource, ns, name);
    }
    Ok(stored)
}

/// DELETE: an object with finalizers is only marked (deletionTimestamp); otherwise it goes, and so do the objects
/// it owns (background propagation).
pub(super) fn delete_or_finalize(
    shared: &Shared,
    resource: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Value, ApiError> {
    let Some(mut obj) = current(shared, resource, ns, name)? else {
        return Err(ApiError::new(404, "NotFound", format!("{resource} \"{name}\" not found")));
    };
    if obj["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty()) {
        if obj["metadata"].get("deletionTimestamp").is_some() {
            return Ok(obj);
        }
        obj["metadata"]["deletionTimestamp"] = json!(super::rfc3339_now());
        return update(shared, resource, ns, name, obj);
    }
    let deleted = delete(shared, resource, ns, name)?;
    if let Some(uid) = deleted["metadata"]["uid"].as_str() {
        collect_garbage(shared, uid);
    }
    Ok(deleted)
}

fn collect_garbage(shared: &Shared, owner_uid: &str) {
    let dependents: Vec<(String, Option<String>, String)> = {
        let db = lock(&shared.db);
        db.objects
            .iter()
            .flat_map(|(resource, objects)| objects.values().map(move |o| (resource, o)))
            .filter(|(_, o)| {
                o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
            })
            .map(|(resource, o)| {
                let m = &o["metadata"];
                (
                    resource.clone(),
                    m["namespace"].as_str().map(str::to_owned),
                    m["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    for (resource, ns, name) in dependents {
        let _ = delete_or_finalize(shared, &resource, ns.as_deref(), &name);
    }
}

/// RFC 7386 JSON merge patch.
pub(super) fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    for (k, v) in p {
        if v.is_null() {
            if let Some(t) = target.as_object_mut() {
                t.remove(k);
            }
        } else {
            merge_patch(&mut target[k], v);
        }
    }
}

/// Server-side apply without field ownership: maps merge, lists of named items merge by name, the rest is replaced.
fn apply_merge(target: &mut Value, patch: &Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            match t.get_mut(k) {
                Some(existing) => apply_merge(existing, v),
                None => {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        return;
    }
    let named = |v: &Value| v.as_array().is_some_and(|a| !a.is_empty() && a.iter().all(|i| i["name"].is_string()));
    if named(patch) && named(target) {
        let items = target.as_array_mut().expect("checked");
        for item in patch.as_array().expect("checked") {
            match items.iter_mut().find(|i| i["name"] == item["name"]) {
                Some(existing) => *existing = item.clone(),
                None => items.push(item.clone()),
            }
        }
        return;
    }
    *target = patch.clone();
}
