//! Discovery as the API server serves it: `/api` and `/apis` (plain, or aggregated `apidiscovery.k8s.io/v2`
//! when the Accept header asks for it, as kubectl does first), `/api/v1` and `/apis/{group}/{version}`.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{ResourceDef, Shared, lock};

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const VERBS: [&str; 6] = ["create", "delete", "get", "list", "update", "watch"];

/// The API server's short names for the resources tests register.
fn short_names(d: &ResourceDef) -> Vec<&'static str> {
    let short = match (d.group.as_str(), d.plural.as_str()) {
        ("", "pods") => "po",
        ("", "configmaps") => "cm",
        ("", "namespaces") => "ns",
        ("", "services") => "svc",
        ("apps", "deployments") => "deploy",
        _ => return Vec::new(),
    };
    vec![short]
}

fn wants_aggregated(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.split(',').any(|m| {
        let p: Vec<&str> = m.split(';').map(str::trim).collect();
        p.contains(&"g=apidiscovery.k8s.io") && p.contains(&"v=v2") && p.contains(&"as=APIGroupDiscoveryList")
    })
}

/// group -> version -> resources (core is "").
fn by_group(shared: &Shared) -> BTreeMap<String, BTreeMap<String, Vec<ResourceDef>>> {
    let db = lock(&shared.db);
    let mut out: BTreeMap<String, BTreeMap<String, Vec<ResourceDef>>> = BTreeMap::new();
    for d in db.resources.values() {
        out.entry(d.group.clone()).or_default().entry(d.version.clone()).or_default().push(d.clone());
    }
    out
}

fn aggregated_group(name: &str, versions: &BTreeMap<String, Vec<ResourceDef>>) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|(v, defs)| {
            let resources: Vec<Value> = defs
                .iter()
                .map(|d| {
                    json!({"resource": d.plural, "responseKind": {"group": d.group, "version": d.version, "kind": d.kind},
                           "scope": if d.namespaced { "Namespaced" } else { "Cluster" },
                           "singularResource": d.kind.to_lowercase(), "verbs": VERBS, "shortNames": short_names(d)})
                })
                .collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if !name.is_empty() {
        metadata["name"] = json!(name);
    }
    json!({"metadata": metadata, "versions": versions})
}

/// `/api` or `/apis`.
pub(super) fn root(shared: &Shared, path: &str, headers: &HeaderMap) -> Response {
    let groups = by_group(shared);
    let core = path == "/api";
    let selected = groups.iter().filter(|(g, _)| g.is_empty() == core);
    if wants_aggregated(headers) {
        let items: Vec<Value> = selected.map(|(g, vs)| aggregated_group(g, vs)).collect();
        let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                          "items": items});
        return ([(header::CONTENT_TYPE, AGGREGATED)], axum::Json(body)).into_response();
    }
    if core {
        return axum::Json(json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}))
        .into_response();
    }
    let groups: Vec<Value> = selected
        .map(|(g, vs)| {
            let versions: Vec<Value> =
                vs.keys().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0]})
        })
        .collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})).into_response()
}

/// `/api/v1` or `/apis/{group}/{version}`: an APIResourceList.
pub(super) fn resource_list(shared: &Shared, path: &str) -> Option<Value> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let gv = match segs.as_slice() {
        ["api", v] => v.to_string(),
        ["apis", g, v] => format!("{g}/{v}"),
        _ => return None,
    };
    let db = lock(&shared.db);
    let resources: Vec<Value> = db
        .resources
        .values()
        .filter(|d| d.api_version() == gv)
        .map(|d| {
            json!({"name": d.plural, "singularName": d.kind.to_lowercase(), "namespaced": d.namespaced,
                   "kind": d.kind, "verbs": VERBS, "shortNames": short_names(d)})
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
}
