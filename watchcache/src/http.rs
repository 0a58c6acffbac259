//! `GET /k8s/{group}/{version}/{resource}`: the list query language, or `?watch=true&resourceVersion=N` for
//! newline-delimited watch events from the event log. The core group is spelled `core` (an empty path segment
//! cannot be routed). Authentication is the caller's layer (the daemon's JWT layer).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::query::parse_pairs;
use crate::{Error, ListOptions, Store};

/// The stores served, by (group, version, plural resource name).
#[derive(Clone, Default)]
pub struct K8sApi {
    stores: Arc<BTreeMap<(String, String, String), Store>>,
}

impl K8sApi {
    /// Serve `store` at `/k8s/{group or core}/{version}/{resource}`.
    pub fn with(mut self, group: &str, version: &str, resource: &str, store: Store) -> Self {
        let g = if group.is_empty() { "core" } else { group };
        Arc::make_mut(&mut self.stores).insert((g.into(), version.into(), resource.into()), store);
        self
    }
}

impl K8sApi {
    /// Every served store by (group, with the core group as `core`; version; plural).
    pub(crate) fn served(&self) -> impl Iterator<Item = (&(String, String, String), &Store)> {
        self.stores.iter()
    }

    pub(crate) fn store(&self, group: &str, version: &str, resource: &str) -> Option<Store> {
        self.stores.get(&(group.to_owned(), version.to_owned(), resource.to_owned())).cloned()
    }

    /// What is not ready to serve: one line per store still waiting for its first list.
    pub fn warming(&self) -> Vec<String> {
        self.stores
            .values()
            .filter_map(|s| match s.is_ready() {
                Ok(true) => None,
                Ok(false) => {
                    Some(format!("watchcache {}: warming up, the first list is not in yet", s.resource_type()))
                }
                Err(e) => Some(format!("watchcache {}: {e}", s.resource_type())),
            })
            .collect()
    }
}

/// The steve-style `/k8s` routes.
pub(crate) fn routes(state: K8sApi) -> axum::Router {
    axum::Router::new().route("/k8s/{group}/{version}/{resource}", axum::routing::get(get)).with_state(state)
}

pub(crate) fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason,
                      "message": message, "code": code.as_u16()});
    (code, axum::Json(body)).into_response()
}

/// 503 with a Status while the store waits for its first list: an empty answer would tell a client that
/// there are no objects.
pub(crate) async fn warming(store: &Store) -> Option<Response> {
    let ready = match store.off_thread(|s| s.is_ready()).await {
        Ok(r) => r,
        Err(e) => return Some(error_response(e)),
    };
    if ready {
        return None;
    }
    let mut r = status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        format!("{}: the cache is warming up: its first list from the API is not in yet", store.resource_type()),
    );
    r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    Some(r)
}

pub(crate) fn error_response(e: Error) -> Response {
    match e {
        Error::Query { .. } | Error::FieldPath { .. } => status(StatusCode::BAD_REQUEST, "BadRequest", e.to_string()),
        Error::Expired { .. } => status(StatusCode::GONE, "Expired", e.to_string()),
        Error::TooNew { .. } => status(StatusCode::GATEWAY_TIMEOUT, "Timeout", e.to_string()),
        other => status(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", other.to_string()),
    }
}

async fn get(
    State(api): State<K8sApi>,
    Path((group, version, resource)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
) -> Response {
    let Some(store) = api.stores.get(&(group.clone(), version.clone(), resource.clone())).cloned() else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("{group}/{version}/{resource} is not cached"));
    };
    if let Some(r) = warming(&store).await {
        return r;
    }
    let mut pairs = parse_pairs(q.as_deref().unwrap_or(""));
    let watch = pairs.iter().any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    let rv = pairs.iter().find(|(k, _)| k == "resourceVersion").map(|(_, v)| v.clone());
    pairs.retain(|(k, _)| k != "watch" && k != "resourceVersion");
    if watch {
        let from = match rv.as_deref() {
            None | Some("") | Some("0") => match store.off_thread(|s| s.last_resource_version()).await {
                Ok(rv) => rv,
                Err(e) => return error_response(e),
            },
            Some(s) => match s.parse() {
                Ok(rv) => rv,
                Err(_) => {
                    return error_response(Error::Query {
                        term: format!("resourceVersion={s}"),
                        reason: "not a number".into(),
                    });
                }
            },
        };
        // the session ends when the client goes away (its channel closes with the body)
        let session = match store.watch(from, CancellationToken::new()) {
            Ok(s) => s,
            Err(e) => return error_response(e),
        };
        let body = session.into_stream().map(|e| {
            Ok::<_, std::convert::Infallible>(match e {
                Ok(e) => e.wire_line(),
                Err(e) => {
                    let v = json!({"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": e.to_string()}});
                    Bytes::from(format!("{v}\n"))
                }
            })
        });
        return ([(axum::http::header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response();
    }
    let opts = match ListOptions::from_pairs(&pairs) {
        Ok(o) => o,
        Err(e) => return error_response(e),
    };
    match store.off_thread(move |s| s.query(&opts)).await {
        Ok(r) => axum::Json(r).into_response(),
        Err(e) => error_response(e),
    }
}
