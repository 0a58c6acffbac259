//! The cached resources served read-only as the Kubernetes API serves them: `GET /api/v1/...` and
//! `/apis/{group}/{version}/...` (list, get, watch) with `labelSelector`, `fieldSelector`, `limit` + `continue`,
//! `resourceVersion` and `watch=true` with `allowWatchBookmarks` and `timeoutSeconds`. A revision the log cannot
//! serve is an ERROR event with code 410 inside a 200 stream, as the API server's watch cache sends it (kube-rs
//! and client-go relist on that). Writes answer 405 with a Status.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::http::{K8sApi, error_response, status, warming};
use crate::path::FieldPath;
use crate::query::{Filter, ListOptions, parse_pairs};
use crate::selector::{self, Requirement};
use crate::{Error, Result, Store};

pub(crate) fn routes(api: K8sApi) -> axum::Router {
    axum::Router::new()
        .route("/api/{*rest}", axum::routing::any(handle))
        .route("/apis/{*rest}", axum::routing::any(handle))
        .with_state(api)
}

/// What a path names: the store's (group, version, resource), the namespace and the object name.
struct Target {
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

fn truthy(v: &str) -> bool {
    // the Python client sends `True`; the API server parses booleans with strconv.ParseBool
    matches!(v, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Join(e.to_string()))?
}

async fn handle(State(api): State<K8sApi>, method: Method, uri: Uri, RawQuery(q): RawQuery) -> Response {
    let Some(t) = parse_path(uri.path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", format!("{} is not served", uri.path()));
    };
    let Some(store) = api.store(&t.store.0, &t.store.1, &t.store.2) else {
        let (g, v, r) = &t.store;
        return status(StatusCode::NOT_FOUND, "NotFound", format!("the server could not find {r} in {g}/{v}"));
    };
    if method != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{method} is not supported: litecar serves {} read-only", t.store.2),
        );
    }
    if let Some(r) = warming(&store).await {
        return r;
    }
    let pairs = parse_pairs(q.as_deref().unwrap_or(""));
    let param = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let selection = match Selection::new(&t, param("labelSelector"), param("fieldSelector")) {
        Ok(s) => s,
        Err(e) => return error_response(e),
    };
    if let Some(name) = &t.name {
        let key = match &t.namespace {
            Some(ns) => format!("{ns}/{name}"),
            None => name.clone(),
        };
        let s = store.clone();
        return match blocking(move || s.get_by_key(&key)).await {
            Ok(Some(o)) => axum::Json(o).into_response(),
            Ok(None) => status(StatusCode::NOT_FOUND, "NotFound", format!("{} \"{name}\" not found", t.store.2)),
            Err(e) => error_response(e),
        };
    }
    if param("watch").is_some_and(truthy) {
        let bookmarks = param("allowWatchBookmarks").is_some_and(truthy);
        let timeout = param("timeoutSeconds").and_then(|v| v.parse::<u64>().ok()).map(Duration::from_secs);
        let rv = param("resourceVersion").unwrap_or("").to_owned();
        return watch(store, selection, rv, bookmarks, timeout).await;
    }
    list(store, selection, param("limit"), param("continue"), param("resourceVersion")).await
}

/// A list or watch's selection as steve filters (for lists) and as a matcher (for watch events).
struct Selection {
    namespace: Option<String>,
    /// Each requirement with the path of the value it tests.
    reqs: Vec<(FieldPath, Requirement)>,
}

impl Selection {
    fn new(t: &Target, labels: Option<&str>, fields: Option<&str>) -> Result<Self> {
        let mut reqs = Vec::new();
        for r in selector::labels(labels.unwrap_or(""))? {
            reqs.push((FieldPath::parse(&format!("metadata.labels[{}]", r.key))?, r));
        }
        for r in selector::fields(fields.unwrap_or(""))? {
            reqs.push((FieldPath::parse(&r.key)?, r));
        }
        Ok(Self { namespace: t.namespace.clone(), reqs })
    }

    fn options(&self) -> ListOptions {
        let filter = |(field, r): &(FieldPath, Requirement)| Filter {
            term: r.term.clone(),
            field: field.clone(),
            op: r.op,
            values: r.values.clone(),
        };
        ListOptions {
            filters: self.reqs.iter().map(|r| vec![filter(r)]).collect(),
            namespaces: self.namespace.iter().cloned().collect(),
            ..Default::default()
        }
    }

    /// Whether a watch event's object is selected.
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        self.reqs.iter().all(|(field, r)| r.matches(field.scalar(obj).as_deref()))
    }
}

fn bad(term: &str, reason: &str) -> Error {
    Error::Query { term: term.to_owned(), reason: reason.to_owned() }
}

fn list_kind(store: &Store) -> (String, String) {
    let rt = store.resource_type();
    (rt.api_version(), format!("{}List", rt.kind))
}

async fn list(
    store: Store,
    selection: Selection,
    limit: Option<&str>,
    token: Option<&str>,
    rv: Option<&str>,
) -> Response {
    let mut o = selection.options();
    o.page_size = limit.and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
    o.continue_token = token.filter(|t| !t.is_empty()).map(str::to_owned);
    // "" and "0": any version; N: not older than N
    o.revision = rv.and_then(|v| v.parse::<u64>().ok()).filter(|v| *v > 0);
    let (api_version, kind) = list_kind(&store);
    match blocking(move || store.query(&o)).await {
        Ok(r) => {
            let mut metadata = json!({"resourceVersion": r.revision.to_string()});
            if let Some(c) = r.continue_token {
                metadata["continue"] = json!(c);
            }
            axum::Json(json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": r.items}))
                .into_response()
        }
        Err(e) => error_response(e),
    }
}

fn line(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

fn error_event(e: &Error) -> Value {
    json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": e.to_string(), "reason": "Expired", "code": 410}})
}

/// How often a watch with bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

async fn watch(store: Store, selection: Selection, rv: String, bookmarks: bool, timeout: Option<Duration>) -> Response {
    let (api_version, kind) = (store.resource_type().api_version(), store.resource_type().kind.clone());
    // "" and "0": the current state as ADDED events, then changes; N: changes after N
    let (initial, from) = match rv.as_str() {
        "" | "0" => {
            let s = store.clone();
            match blocking(move || s.snapshot()).await {
                Ok((items, rv)) => (items, rv),
                Err(e) => return error_response(e),
            }
        }
        n => match n.parse::<u64>() {
            Ok(n) => (Vec::new(), n),
            Err(_) => return error_response(bad(&format!("resourceVersion={n}"), "not a number")),
        },
    };
    // the session ends when the client goes away (its channel closes with the body)
    let cancel = CancellationToken::new();
    let head: Vec<Bytes> = initial
        .into_iter()
        .filter(|o| selection.matches(o))
        .map(|o| line(&json!({"type": "ADDED", "object": o})))
        .collect();
    let events = match store.watch(from, cancel.clone()) {
        Ok(session) => session
            .into_stream()
            .filter_map(move |e| {
                let out = match e {
                    Ok(e) if selection.matches(&e.object) => Some(e.wire_line()),
                    Ok(_) => None,
                    Err(e) => Some(line(&error_event(&e))),
                };
                futures::future::ready(out)
            })
            .boxed(),
        // the API server's watch cache answers 200 and sends the 410 as the stream's only event
        Err(e) => futures::stream::iter([line(&error_event(&e))]).boxed(),
    };
    let ticks = futures::stream::unfold(store, move |s| {
        let (api_version, kind) = (api_version.clone(), kind.clone());
        async move {
            tokio::time::sleep(BOOKMARK_EVERY).await;
            let c = s.clone();
            let rv = blocking(move || c.last_resource_version()).await.ok()?;
            let b = json!({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                           "metadata": {"resourceVersion": rv.to_string()}}});
            Some((line(&b), s))
        }
    });
    let merged = if bookmarks { futures::stream::select(events, ticks.boxed()).boxed() } else { events };
    let mut body = futures::stream::iter(head).chain(merged).boxed();
    if let Some(t) = timeout {
        let deadline = tokio::time::Instant::now() + t;
        body = body.take_until(tokio::time::sleep_until(deadline)).boxed();
    }
    let body = body.map(Ok::<_, std::convert::Infallible>);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response()
}
