//! Discovery as the API server serves it, listing only the cached resources with verbs get, list, watch:
//! `/api`, `/apis`, `/api/v1`, `/apis/{group}`, `/apis/{group}/{version}`, and the aggregated form
//! (`apidiscovery.k8s.io/v2`) that kubectl asks for first and uses only when the Content-Type names it.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::Store;
use crate::http::K8sApi;

pub(crate) const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
const VERBS: [&str; 3] = ["get", "list", "watch"];

/// Kinds served at the cluster scope (the rest are namespaced), by (group, plural): the API server's own
/// cluster-scoped resources, for a store whose scope no discovery recorded (one filled through the `Store` API).
const CLUSTER_SCOPED: &[(&str, &str)] = &[
    ("", "namespaces"),
    ("", "nodes"),
    ("", "persistentvolumes"),
    ("", "componentstatuses"),
    ("admissionregistration.k8s.io", "mutatingwebhookconfigurations"),
    ("admissionregistration.k8s.io", "validatingadmissionpolicies"),
    ("admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
    ("admissionregistration.k8s.io", "validatingwebhookconfigurations"),
    ("apiextensions.k8s.io", "customresourcedefinitions"),
    ("apiregistration.k8s.io", "apiservices"),
    ("certificates.k8s.io", "certificatesigningrequests"),
    ("flowcontrol.apiserver.k8s.io", "flowschemas"),
    ("flowcontrol.apiserver.k8s.io", "prioritylevelconfigurations"),
    ("networking.k8s.io", "ingressclasses"),
    ("networking.k8s.io", "ipaddresses"),
    ("networking.k8s.io", "servicecidrs"),
    ("node.k8s.io", "runtimeclasses"),
    ("rbac.authorization.k8s.io", "clusterrolebindings"),
    ("rbac.authorization.k8s.io", "clusterroles"),
    ("scheduling.k8s.io", "priorityclasses"),
    ("storage.k8s.io", "csidrivers"),
    ("storage.k8s.io", "csinodes"),
    ("storage.k8s.io", "storageclasses"),
    ("storage.k8s.io", "volumeattachments"),
];

/// The API server's short names (`kubectl get po`), by (group, plural).
const SHORT_NAMES: &[(&str, &str, &str)] = &[
    ("", "configmaps", "cm"),
    ("", "endpoints", "ep"),
    ("", "events", "ev"),
    ("", "limitranges", "limits"),
    ("", "namespaces", "ns"),
    ("", "nodes", "no"),
    ("", "persistentvolumeclaims", "pvc"),
    ("", "persistentvolumes", "pv"),
    ("", "pods", "po"),
    ("", "replicationcontrollers", "rc"),
    ("", "resourcequotas", "quota"),
    ("", "serviceaccounts", "sa"),
    ("", "services", "svc"),
    ("apps", "daemonsets", "ds"),
    ("apps", "deployments", "deploy"),
    ("apps", "replicasets", "rs"),
    ("apps", "statefulsets", "sts"),
    ("autoscaling", "horizontalpodautoscalers", "hpa"),
    ("batch", "cronjobs", "cj"),
    ("networking.k8s.io", "ingresses", "ing"),
    ("networking.k8s.io", "networkpolicies", "netpol"),
    ("policy", "poddisruptionbudgets", "pdb"),
    ("storage.k8s.io", "storageclasses", "sc"),
];

/// Whether `plural` in `group` is namespaced (the core group is ""): as the upstream discovery said when the
/// ingester recorded it, else as the API server's built-in resources are.
pub(crate) fn namespaced(store: &Store, group: &str, plural: &str) -> bool {
    store.namespaced().unwrap_or_else(|| !CLUSTER_SCOPED.contains(&(group, plural)))
}

fn short_names(group: &str, plural: &str) -> Vec<&'static str> {
    SHORT_NAMES.iter().filter(|(g, p, _)| *g == group && *p == plural).map(|(_, _, s)| *s).collect()
}

/// Whether an Accept header asks for aggregated discovery v2 (v2beta1 and others get the plain documents).
pub(crate) fn wants_aggregated(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    accept.split(',').any(|media| {
        let p: Vec<&str> = media.split(';').map(str::trim).collect();
        p.contains(&"g=apidiscovery.k8s.io") && p.contains(&"v=v2") && p.contains(&"as=APIGroupDiscoveryList")
    })
}

/// One served resource, as discovery describes it.
struct Served {
    group: String,
    version: String,
    plural: String,
    kind: String,
    namespaced: bool,
}

impl Served {
    fn resource(&self) -> Value {
        let mut r = json!({"name": self.plural, "singularName": self.kind.to_lowercase(), "namespaced": self.namespaced,
                           "kind": self.kind, "verbs": VERBS});
        let short = short_names(&self.group, &self.plural);
        if !short.is_empty() {
            r["shortNames"] = json!(short);
        }
        r
    }

    fn aggregated(&self) -> Value {
        let mut r = json!({"resource": self.plural,
            "responseKind": {"group": self.group, "version": self.version, "kind": self.kind},
            "scope": if self.namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": self.kind.to_lowercase(), "verbs": VERBS});
        let short = short_names(&self.group, &self.plural);
        if !short.is_empty() {
            r["shortNames"] = json!(short);
        }
        r
    }
}

/// group -> version -> resources, core as "".
fn served(api: &K8sApi) -> BTreeMap<String, BTreeMap<String, Vec<Served>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<Served>>> = BTreeMap::new();
    for ((g, v, r), store) in api.served() {
        let group = if g == "core" { String::new() } else { g.clone() };
        let s = Served {
            group: group.clone(),
            version: v.clone(),
            plural: r.clone(),
            kind: store.resource_type().kind.clone(),
            namespaced: namespaced(store, &group, r),
        };
        out.entry(group).or_default().entry(v.clone()).or_default().push(s);
    }
    out
}

fn aggregated_group(name: Option<&str>, versions: &BTreeMap<String, Vec<Served>>) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .rev()
        .map(|(v, rs)| {
            json!({"version": v, "resources": rs.iter().map(Served::aggregated).collect::<Vec<_>>(), "freshness": "Current"})
        })
        .collect();
    let mut metadata = json!({"creationTimestamp": null});
    if let Some(n) = name {
        metadata["name"] = json!(n);
    }
    json!({"metadata": metadata, "versions": versions})
}

fn aggregated_response(items: Vec<Value>) -> Response {
    let body = json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items});
    ([(header::CONTENT_TYPE, AGGREGATED), (header::VARY, "Accept")], axum::Json(body)).into_response()
}

/// `/api`: APIVersions, or the core group's aggregated document.
pub(crate) fn core(api: &K8sApi, headers: &HeaderMap) -> Response {
    let all = served(api);
    let core = all.get("");
    if wants_aggregated(headers) {
        return aggregated_response(core.map(|vs| aggregated_group(None, vs)).into_iter().collect());
    }
    let versions: Vec<&String> = core.map(|vs| vs.keys().collect()).unwrap_or_default();
    axum::Json(json!({"kind": "APIVersions", "versions": versions,
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}]}))
    .into_response()
}

fn group_doc(name: &str, versions: &BTreeMap<String, Vec<Served>>) -> Value {
    let vs: Vec<Value> =
        versions.keys().rev().map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v})).collect();
    json!({"name": name, "versions": vs, "preferredVersion": vs[0]})
}

/// `/apis`: APIGroupList, or every named group's aggregated document.
pub(crate) fn groups(api: &K8sApi, headers: &HeaderMap) -> Response {
    let all = served(api);
    let named = all.iter().filter(|(g, _)| !g.is_empty());
    if wants_aggregated(headers) {
        return aggregated_response(named.map(|(g, vs)| aggregated_group(Some(g), vs)).collect());
    }
    let groups: Vec<Value> = named.map(|(g, vs)| group_doc(g, vs)).collect();
    axum::Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})).into_response()
}

/// `/apis/{group}`: one APIGroup; None when nothing of it is cached.
pub(crate) fn group(api: &K8sApi, group: &str) -> Option<Response> {
    let all = served(api);
    let vs = all.get(group).filter(|_| !group.is_empty())?;
    let mut doc = group_doc(group, vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    Some(axum::Json(doc).into_response())
}

/// `/api/v1` or `/apis/{group}/{version}`: an APIResourceList; None when nothing of it is cached.
pub(crate) fn resources(api: &K8sApi, group: &str, version: &str) -> Option<Response> {
    let all = served(api);
    let rs = all.get(group)?.get(version)?;
    let gv = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    let list: Vec<Value> = rs.iter().map(Served::resource).collect();
    Some(
        axum::Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}))
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_short_names_and_accept() {
        let db = crate::Database::open(":memory:").unwrap();
        let store = db.store(crate::ResourceType::new("", "v1", "Namespace"), Default::default()).unwrap();
        assert!(namespaced(&store, "", "pods"));
        assert!(!namespaced(&store, "", "namespaces"));
        assert!(!namespaced(&store, "rbac.authorization.k8s.io", "clusterroles"));
        // what discovery recorded wins over the built-in table
        store.set_namespaced(false).unwrap();
        assert!(!namespaced(&store, "", "pods"));
        store.set_namespaced(true).unwrap();
        assert!(namespaced(&store, "", "namespaces"));
        assert_eq!(short_names("", "pods"), ["po"]);
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json".parse().unwrap(),
        );
        assert!(wants_aggregated(&h));
        h.insert(
            header::ACCEPT,
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList".parse().unwrap(),
        );
        assert!(!wants_aggregated(&h));
    }
}
