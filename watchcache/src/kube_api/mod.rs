//! The cached resources served read-only as the Kubernetes API serves them: discovery (`/api`, `/apis`, plain
//! and aggregated), `GET /api/v1/...` and `/apis/{group}/{version}/...` (list, get, watch) with
//! `labelSelector`, `fieldSelector`, `limit` + `continue`, `resourceVersion` + `resourceVersionMatch`, and
//! `watch=true` with `allowWatchBookmarks`, `timeoutSeconds` and `sendInitialEvents`; Tables for kubectl's
//! human output. A revision the log cannot serve is an ERROR event with code 410 inside a 200 stream, as the
//! API server's watch cache sends it (kube-rs and client-go relist on that). Writes answer 405 with a Status.

mod age;
mod discovery;
mod options;
mod printers;
mod selection;
pub mod table;
mod watch;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::http::{K8sApi, error_response, status, warming};
use crate::query::parse_pairs;
use crate::{Error, Result, Store};
use options::{Match, Options};
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

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Join(e.to_string()))?
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
        let s = store.clone();
        return match blocking(move || s.get_by_key(&key)).await {
            Ok(Some(obj)) => match render {
                Render::Objects => axum::Json(obj).into_response(),
                Render::Table(include) => {
                    let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
                    let rt = store.resource_type();
                    axum::Json(to_table(&rt.group, &rt.kind, &[obj], include, meta)).into_response()
                }
            },
            Ok(None) => status(StatusCode::NOT_FOUND, "NotFound", format!("{} \"{name}\" not found", t.store.2)),
            Err(e) => error_response(e),
        };
    }
    if o.watch {
        return watch::watch(store, selection, o, render).await;
    }
    list(store, selection, o, render).await
}

fn list_kind(store: &Store) -> (String, String) {
    let rt = store.resource_type();
    (rt.api_version(), format!("{}List", rt.kind))
}

/// A page: its objects, the revision it shows, and the token of the next page.
struct Page {
    items: Vec<Value>,
    revision: u64,
    continue_token: Option<String>,
}

const EXACT_PREFIX: &str = "x1.";

/// A page of the state at revision `rv` (an Exact list older than the store), read from the event log and
/// paged by key; its tokens name the revision, the query and the last key.
fn exact_page(
    store: &Store,
    selection: &Selection,
    rv: u64,
    limit: Option<usize>,
    after: Option<&str>,
) -> Result<Page> {
    let fp = crate::keyset::fingerprint(store.name(), &selection.options());
    let mut items: Vec<Value> = store.list_at(rv)?.into_iter().filter(|o| selection.matches(o)).collect();
    if let Some(after) = after {
        items.retain(|o| crate::object_key(o).is_some_and(|k| k.as_str() > after));
    }
    let mut token = None;
    if let Some(n) = limit.filter(|n| items.len() > *n) {
        items.truncate(n);
        if let Some(k) = items.last().and_then(crate::object_key) {
            token = Some(format!("{EXACT_PREFIX}{rv}.{fp}.{}", URL_SAFE_NO_PAD.encode(k)));
        }
    }
    Ok(Page { items, revision: rv, continue_token: token })
}

/// Decodes an Exact list's continue token: (revision, last key); an error if it belongs to another query.
fn exact_token(store: &Store, selection: &Selection, token: &str) -> Result<Option<(u64, String)>> {
    let Some(rest) = token.strip_prefix(EXACT_PREFIX) else { return Ok(None) };
    let broken = || bad(&format!("continue={token}"), "not a continue token of this server");
    let mut parts = rest.splitn(3, '.');
    let (rv, fp, key) = (parts.next(), parts.next(), parts.next());
    let rv: u64 = rv.and_then(|r| r.parse().ok()).ok_or_else(broken)?;
    if fp != Some(crate::keyset::fingerprint(store.name(), &selection.options()).as_str()) {
        return Err(bad(&format!("continue={token}"), "the token belongs to another query"));
    }
    let key =
        key.and_then(|k| URL_SAFE_NO_PAD.decode(k).ok()).and_then(|k| String::from_utf8(k).ok()).ok_or_else(broken)?;
    Ok(Some((rv, key)))
}

fn parse_rv(v: &str) -> Result<u64> {
    v.parse().map_err(|_| bad(&format!("resourceVersion={v}"), "not a resource version of this server"))
}

/// A list with the API server's resourceVersion semantics: none or "0" is the current state; N with
/// NotOlderThan (or no match and no limit) is the current state if it is at least N; N with Exact (or no
/// match with a limit, the legacy rule) is the state at exactly N, from the event log when N is older.
fn read_page(store: &Store, selection: &Selection, o: &Options) -> Result<Page> {
    if let Some(t) = &o.continue_token
        && let Some((rv, key)) = exact_token(store, selection, t)?
    {
        return exact_page(store, selection, rv, o.limit, Some(&key));
    }
    let rv = match o.rv.as_deref() {
        None | Some("0") => None,
        Some(v) => Some(parse_rv(v)?),
    };
    let exact = match o.rv_match {
        Some(Match::Exact) => true,
        Some(Match::NotOlderThan) => false,
        None => o.limit.is_some() && o.continue_token.is_none(),
    };
    let mut q = selection.options();
    q.page_size = o.limit;
    q.continue_token = o.continue_token.clone();
    q.revision = rv;
    if let Some(rv) = rv.filter(|_| exact) {
        let r = store.query(&q)?;
        if r.revision != rv {
            return exact_page(store, selection, rv, o.limit, None);
        }
        return Ok(Page { items: r.items, revision: r.revision, continue_token: r.continue_token });
    }
    let r = store.query(&q)?;
    Ok(Page { items: r.items, revision: r.revision, continue_token: r.continue_token })
}

async fn list(store: Store, selection: Selection, o: Options, render: Render) -> Response {
    let (api_version, kind) = list_kind(&store);
    let s = store.clone();
    match blocking(move || read_page(&s, &selection, &o)).await {
        Ok(page) => {
            let mut metadata = json!({"resourceVersion": page.revision.to_string()});
            if let Some(c) = page.continue_token {
                metadata["continue"] = json!(c);
            }
            match render {
                Render::Objects => axum::Json(
                    json!({"kind": kind, "apiVersion": api_version, "metadata": metadata, "items": page.items}),
                )
                .into_response(),
                Render::Table(include) => {
                    let rt = store.resource_type();
                    axum::Json(to_table(&rt.group, &rt.kind, &page.items, include, metadata)).into_response()
                }
            }
        }
        Err(e) => error_response(e),
    }
}
