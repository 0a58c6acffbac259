//! The cached resources served read-only as the Kubernetes API serves them: discovery (`/api`, `/apis`, plain
//! and aggregated), `GET /api/v1/...` and `/apis/{group}/{version}/...` (list, get, watch) with
//! `labelSelector`, `fieldSelector`, `limit` + `continue`, `resourceVersion` + `resourceVersionMatch`, and
//! `watch=true` with `allowWatchBookmarks`, `timeoutSeconds` and `sendInitialEvents`; Tables for kubectl's
//! human output. A revision the log cannot serve is an ERROR event with code 410 inside a 200 stream, as the
//! API server's watch cache sends it (kube-rs and client-go relist on that). Writes answer 405 with a Status.

mod age;
pub mod auth_status;
mod discovery;
mod list;
mod options;
mod printers;
mod selection;
pub mod table;
mod watch;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Result;
use crate::http::{K8sApi, error_response, status, warming};
use crate::query::parse_pairs;
use options::Options;
use selection::{Selection, bad};
use table::{IncludeObject, to_table, wants_table};

pub(crate) fn routes(api: K8sApi) -> axum::Router {
    axum::Router::new()
        .route("/api", axum::routing::any(handle))
        .route("/apis", axum::routing::any(handle))
        .route("/api/{*rest}", axum::routing::any(handle))
        .route("/apis/{*rest}", axum::routing::any(handle))
        .with_state(api)
}

/// What a path names: the store's (group, version, resource), the namespace and the object name.
pub(crate) struct Target {
    store: (String, String, String),
    namespace: Option<String>,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, tail) = match segs.as_slice() {
        ["api", v, tail @ ..] => ("core", *v, tail),
        ["apis", g, v, tail @ ..] => (*g, *v, tail),
        _ => return None,
    };
    let (namespace, resource, name) = match tail {
        ["namespaces", ns, r] => (Some(*ns), *r, None),
        ["namespaces", ns, r, n] => (Some(*ns), *r, Some(*n)),
        [r] => (None, *r, None),
        [r, n] => (None, *r, Some(*n)),
        _ => return None,
    };
    Some(Target {
        store: (group.to_owned(), version.to_owned(), resource.to_owned()),
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
    })
}

/// How a response renders objects: as they are, or as kubectl's Table.
#[derive(Clone, Copy)]
pub(crate) enum Render {
    Objects,
    Table(IncludeObject),
}

impl Render {
    fn new(headers: &HeaderMap, include: IncludeObject) -> Self {
        let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
        if wants_table(accept) { Self::Table(include) } else { Self::Objects }
    }
}

/// Discovery documents: `/api`, `/apis`, `/api/{v}`, `/apis/{g}`, `/apis/{g}/{v}`; None for other paths.
fn discovery(api: &K8sApi, path: &str, headers: &HeaderMap) -> Option<Response> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api"] => Some(discovery::core(api, headers)),
        ["apis"] => Some(discovery::groups(api, headers)),
        ["api", v] => Some(discovery::resources(api, "", v).unwrap_or_else(|| not_found(path))),
        ["apis", g] => Some(discovery::group(api, g).unwrap_or_else(|| not_found(path))),
        ["apis", g, v] => Some(discovery::resources(api, g, v).unwrap_or_else(|| not_found(path))),
        _ => None,
    }
}

fn not_found(path: &str) -> Response {
    status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find the requested resource {path}"))
}

async fn handle(
    State(api): State<K8sApi>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let read_only = |what: &str| {
        status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported: litecar serves {what} read-only"),
        )
    };
    if let Some(r) = discovery(&api, uri.path(), &headers) {
        return if method == Method::GET { r } else { read_only("discovery") };
    }
    let Some(t) = parse_path(uri.path()) else {
        return not_found(uri.path());
    };
    let Some(store) = api.store(&t.store.0, &t.store.1, &t.store.2) else {
        let (g, v, r) = &t.store;
        return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {r} in {g}/{v}"));
    };
    // the API server serves a cluster-scoped resource only at the cluster path, and an object of a namespaced
    // one only under its namespace
    let group = if t.store.0 == "core" { "" } else { t.store.0.as_str() };
    let namespaced = discovery::namespaced(&store, group, &t.store.2);
    if t.namespace.is_some() != namespaced && (t.namespace.is_some() || t.name.is_some()) {
        return status(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource".into());
    }
    if method != Method::GET {
        return read_only(&t.store.2);
    }
    if let Some(r) = warming(&store).await {
        return r;
    }
    let pairs = parse_pairs(q.as_deref().unwrap_or(""));
    let o = match Options::parse(&pairs) {
        Ok(o) => o,
        Err(r) => return r.into_response(),
    };
    let render = Render::new(&headers, o.include);
    let selection = match Selection::new(&t, o.label_selector.as_deref(), o.field_selector.as_deref()) {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    if let Some(name) = &t.name {
        let key = match &t.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.clone(),
        };
        let k = key.clone();
        return match store.off_thread(move |s| s.get_text(&k)).await {
            // the stored JSON as it is, as lists send it
            Ok(Some(text)) => match render {
                Render::Objects => ([(header::CONTENT_TYPE, "application/json")], text).into_response(),
                Render::Table(include) => match store.decode(&key, &text) {
                    Ok(obj) => {
                        let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                        let rt = store.resource_type();
                        axum::Json(to_table(&rt.group, &rt.kind, &[obj], include, meta)).into_response()
                    }
                    Err(e) => error_response(e),
                },
            },
            Ok(None) => status(StatusCode::NOT_FOUND, "NotFound", format!("{} \"{name}\" not found", t.store.2)),
            Err(e) => error_response(e),
        };
    }
    if o.watch {
        return watch::watch(store, selection, o, render).await;
    }
    list::list(store, selection, o, render).await
}

fn parse_rv(v: &str) -> Result<u64> {
    v.parse().map_err(|_| bad(&format!("resourceVersion={v}"), "not a resource version of this server"))
}
