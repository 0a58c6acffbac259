//! The fake's storage: objects by resource and key, each write at the next resourceVersion, kept in the history
//! that watches replay and broadcast to the open ones, as the API server's storage layer does.

use serde_json::{Value, json};

use super::{ApiError, Db, Event, ResourceDef, Shared, key_of, lock, rfc3339_now};

fn commit(shared: &Shared, db: &mut Db, resource: &str, kind: &'static str, object: Value) {
    let ev = Event { rv: db.rv, resource: resource.to_owned(), kind, object };
    db.history.push(ev.clone());
    // no receivers is fine
    let _ = shared.events.send(ev);
}

pub(super) fn resource_def(db: &Db, resource: &str) -> Result<ResourceDef, ApiError> {
    db.resources.get(resource).cloned().ok_or_else(|| {
        ApiError::new(404, "NotFound", format!("the server could not find the requested resource {resource}"))
    })
}

pub(super) fn create(shared: &Shared, resource: &str, ns: Option<&str>, mut obj: Value) -> Result<Value, ApiError> {
    let mut db = lock(&shared.db);
    let def = resource_def(&db, resource)?;
    let name = obj["metadata"]["name"].as_str().filter(|n| !n.is_empty()).map(str::to_owned);
    let name = name.ok_or_else(|| ApiError::new(422, "Invalid", "metadata.name: Required value"))?;
    let ns = if def.namespaced { Some(ns.unwrap_or("default")) } else { None };
    let key = key_of(ns, &name);
    if db.objects.get(resource).is_some_and(|m| m.contains_key(&key)) {
        return Err(ApiError::new(409, "AlreadyExists", format!("{} \"{name}\" already exists", def.plural)));
    }
    db.rv += 1;
    let rv = db.rv;
    obj["apiVersion"] = json!(def.api_version());
    obj["kind"] = json!(def.kind);
    let m = &mut obj["metadata"];
    if let Some(ns) = ns {
        m["namespace"] = json!(ns);
    }
    m["uid"] = json!(format!("00000000-0000-4000-8000-{rv:012}"));
    m["resourceVersion"] = json!(rv.to_string());
    m["creationTimestamp"] = json!(rfc3339_now());
    db.json.entry(resource.to_owned()).or_default().insert(key.clone(), obj.to_string());
    db.objects.entry(resource.to_owned()).or_default().insert(key, obj.clone());
    commit(shared, &mut db, resource, "ADDED", obj.clone());
    Ok(obj)
}

pub(super) fn update(
    shared: &Shared,
    resource: &str,
    ns: Option<&str>,
    name: &str,
    mut obj: Value,
) -> Result<Value, ApiError> {
    let mut db = lock(&shared.db);
    let def = resource_def(&db, resource)?;
    let key = key_of(if def.namespaced { Some(ns.unwrap_or("default")) } else { None }, name);
    let Some(old) = db.objects.get(resource).and_then(|m| m.get(&key)).cloned() else {
        return Err(ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", def.plural)));
    };
    if let Some(rv) = obj["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty())
        && old["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": the object has been modified", def.plural),
        ));
    }
    db.rv += 1;
    obj["apiVersion"] = json!(def.api_version());
    obj["kind"] = json!(def.kind);
    for f in ["namespace", "uid", "creationTimestamp"] {
        obj["metadata"][f] = old["metadata"][f].clone();
    }
    obj["metadata"]["resourceVersion"] = json!(db.rv.to_string());
    db.json.entry(resource.to_owned()).or_default().insert(key.clone(), obj.to_string());
    db.objects.entry(resource.to_owned()).or_default().insert(key, obj.clone());
    commit(shared, &mut db, resource, "MODIFIED", obj.clone());
    Ok(obj)
}

pub(super) fn delete(shared: &Shared, resource: &str, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
    let mut db = lock(&shared.db);
    let def = resource_def(&db, resource)?;
    let key = key_of(if def.namespaced { Some(ns.unwrap_or("default")) } else { None }, name);
    if let Some(m) = db.json.get_mut(resource) {
        m.remove(&key);
    }
    let Some(mut obj) = db.objects.get_mut(resource).and_then(|m| m.remove(&key)) else {
        return Err(ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", def.plural)));
    };
    db.rv += 1;
    obj["metadata"]["resourceVersion"] = json!(db.rv.to_string());
    commit(shared, &mut db, resource, "DELETED", obj.clone());
    Ok(obj)
}
