//! A fake Kubernetes API server for tests: an in-process axum app on 127.0.0.1 (random port) that speaks enough
//! of the real API for kube-rs and kubectl: discovery (plain and aggregated), list (resourceVersion
//! "0"/exact/not-older-than, `limit` + `continue`, label and field selectors), Tables, get/create/update/delete,
//! and chunked newline-delimited watch streams with bookmarks, streaming lists (`sendInitialEvents`) and
//! `410 Expired` for compacted revisions. Fault knobs drop watch streams, force a 410,
//! fail requests with 500 and add latency. Every request is logged so tests can assert what a client did.

mod discovery;
mod list;
mod selector;
mod storage;
mod watch;
mod writes;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use litecar_rest::sync::lock;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use list::list;
pub use selector::Selector;
use storage::{create, delete, resource_def, update};
use watch::{as_table, watch};

pub const PODS: &str = "v1/pods";
pub const CONFIGMAPS: &str = "v1/configmaps";
pub const SECRETS: &str = "v1/secrets";
pub const NAMESPACES: &str = "v1/namespaces";

/// A resource type the fake serves; its id is `apiVersion/plural` (e.g. `v1/pods`, `apps/v1/deployments`).
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
}

impl ResourceDef {
    pub fn new(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self { group: group.into(), version: version.into(), kind: kind.into(), plural: plural.into(), namespaced }
    }
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }
    pub fn id(&self) -> String {
        format!("{}/{}", self.api_version(), self.plural)
    }
}

/// A logged request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
}

impl RequestRecord {
    pub fn is_watch(&self) -> bool {
        self.query.get("watch").is_some_and(|w| w == "true" || w == "1")
    }
    pub fn is_list(&self) -> bool {
        self.method == "GET" && !self.is_watch()
    }
}

/// Fault knobs; change them with [`FakeKube::faults`].
#[derive(Debug, Clone)]
pub struct Faults {
    /// Close every watch stream after this many events (bookmarks not counted); applies to open streams too.
    pub drop_watch_after: Option<usize>,
    /// The next watch request gets an ERROR event with a 410 Expired status.
    pub force_gone_next_watch: bool,
    /// The next N requests to resource paths get a 500.
    pub fail_next: usize,
    /// Added before every resource request.
    pub latency: Duration,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            drop_watch_after: None,
            force_gone_next_watch: false,
            fail_next: 0,
            latency: Duration::ZERO,
            bookmark_interval: Duration::from_millis(200),
        }
    }
}

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    resource: String,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Db {
    rv: u64,
    resources: BTreeMap<String, ResourceDef>,
    /// resource id -> key (ns/name or name) -> object
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// The same objects serialized (resource id -> key -> JSON), kept with every write: the API server encodes
    /// an object once per change too (its watch cache), and list pages then cost a copy, not an encoding.
    json: BTreeMap<String, std::collections::HashMap<String, String>>,
    /// Every change since the start, so exact-revision lists can be answered by replay.
    history: Vec<Event>,
    compacted: u64,
}

struct Shared {
    db: Mutex<Db>,
    events: broadcast::Sender<Event>,
    faults: Mutex<Faults>,
    log: Mutex<Vec<RequestRecord>>,
}

/// A Kubernetes API error as a Status object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into() }
    }
    fn status(&self) -> Value {
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": self.message, "reason": self.reason, "code": self.code})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, axum::Json(self.status())).into_response()
    }
}

/// RFC 3339 UTC without a date library (Howard Hinnant's civil-from-days).
fn rfc3339_now() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn key_of(ns: Option<&str>, name: &str) -> String {
    match ns.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// The fake server. Dropping it stops serving.
pub struct FakeKube {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl FakeKube {
    /// Start on 127.0.0.1 with a random port, serving core/v1 pods, configmaps, secrets and namespaces.
    pub async fn start() -> Self {
        let (events, _) = broadcast::channel(4096);
        let shared = Arc::new(Shared {
            db: Mutex::new(Db::default()),
            events,
            faults: Mutex::new(Faults::default()),
            log: Mutex::default(),
        });
        let cancel = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind fake kube");
        let addr = listener.local_addr().expect("fake kube address");
        let app = axum::Router::new().fallback(handle).with_state(shared.clone());
        let c = cancel.clone();
        // as the API server (a Go server) does: each watch event goes out when written
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(c.cancelled_owned()).await;
        });
        let fake = Self { addr, shared, cancel };
        for r in [
            ResourceDef::new("", "v1", "Pod", "pods", true),
            ResourceDef::new("", "v1", "ConfigMap", "configmaps", true),
            ResourceDef::new("", "v1", "Secret", "secrets", true),
            ResourceDef::new("", "v1", "Namespace", "namespaces", false),
        ] {
            fake.register(r);
        }
        fake
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube-rs client for this server.
    pub fn client(&self) -> kube::Client {
        let uri: axum::http::Uri = self.url().parse().expect("fake kube url");
        let config = kube::Config::new(uri);
        kube::Client::try_from(config).expect("kube client for the fake")
    }

    /// A kubeconfig for kubectl pointing at this server.
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: u\n  user:\n    token: fake\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\n    namespace: default\ncurrent-context: fake\n",
            self.url()
        )
    }

    pub fn register(&self, def: ResourceDef) {
        let mut db = lock(&self.shared.db);
        db.objects.entry(def.id()).or_default();
        db.resources.insert(def.id(), def);
    }

    pub fn faults(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut lock(&self.shared.faults));
    }

    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.shared.log).clear();
    }

    pub fn resource_version(&self) -> u64 {
        lock(&self.shared.db).rv
    }

    /// Forget history up to the current revision: older watches and continue tokens get 410.
    pub fn compact(&self) {
        let mut db = lock(&self.shared.db);
        db.compacted = db.rv;
    }

    /// Current objects of a resource, ordered by key.
    pub fn objects(&self, resource: &str) -> Vec<Value> {
        lock(&self.shared.db).objects.get(resource).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    pub fn create(&self, resource: &str, obj: Value) -> Result<Value, ApiError> {
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        writes::post(
            &self.shared,
            &Target { resource: resource.into(), namespace: ns, name: None, subresource: None },
            obj,
        )
    }

    pub fn update(&self, resource: &str, obj: Value) -> Result<Value, ApiError> {
        let ns = obj["metadata"]["namespace"].as_str().map(str::to_owned);
        let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let target = Target { resource: resource.into(), namespace: ns, name: Some(name.clone()), subresource: None };
        writes::put(&self.shared, &target, &name, None, obj)
    }

    /// DELETE as the API server does it: finalizers first, then owner-reference garbage collection.
    pub fn delete(&self, resource: &str, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        writes::delete_or_finalize(&self.shared, resource, ns, name)
    }
}

/// What a path names.
struct Target {
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    /// `status` in `.../{name}/status`.
    subresource: Option<String>,
}

fn parse_target(path: &str) -> Option<Target> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => (v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return None,
    };
    let t = |plural: &str, ns: Option<&str>, name: Option<&str>| Target {
        resource: format!("{api_version}/{plural}"),
        namespace: ns.map(str::to_owned),
        name: name.map(str::to_owned),
        subresource: None,
    };
    let sub = |mut t: Target, s: &str| {
        t.subresource = Some(s.to_owned());
        t
    };
    match rest {
        [plural] => Some(t(plural, None, None)),
        ["namespaces", ns, plural] => Some(t(plural, Some(ns), None)),
        ["namespaces", ns, plural, name] => Some(t(plural, Some(ns), Some(name))),
        ["namespaces", ns, plural, name, s] => Some(sub(t(plural, Some(ns), Some(name)), s)),
        [plural, name] => Some(t(plural, None, Some(name))),
        [plural, name, s] => Some(sub(t(plural, None, Some(name)), s)),
        _ => None,
    }
}

fn query_map(q: Option<&str>) -> BTreeMap<String, String> {
    litecar_rest::parse_pairs(q.unwrap_or("")).into_iter().collect()
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let query = query_map(req.uri().query());
    let method = req.method().clone();
    lock(&shared.log).push(RequestRecord { method: method.to_string(), path: path.clone(), query: query.clone() });
    match path.as_str() {
        "/version" => {
            return axum::Json(
                json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}),
            )
            .into_response();
        }
        "/api" | "/apis" => return discovery::root(&shared, &path, req.headers()),
        _ => {}
    }
    if let Some(list) = discovery::resource_list(&shared, &path) {
        return axum::Json(list).into_response();
    }
    let Some(target) = parse_target(&path) else {
        return ApiError::new(404, "NotFound", format!("the server could not find the requested resource {path}"))
            .into_response();
    };
    // a cluster-scoped resource is served only at the cluster path, an object of a namespaced one only under
    // its namespace, as on the API server
    if let Ok(def) = resource_def(&lock(&shared.db), &target.resource)
        && target.namespace.is_some() != def.namespaced
        && (target.namespace.is_some() || target.name.is_some())
    {
        return ApiError::new(404, "NotFound", "the server could not find the requested resource").into_response();
    }
    let (latency, fail) = {
        let mut f = lock(&shared.faults);
        let fail = f.fail_next > 0;
        f.fail_next = f.fail_next.saturating_sub(1);
        (f.latency, fail)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if fail {
        return ApiError::new(500, "InternalError", "injected fault").into_response();
    }
    let accept = req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let table = match litecar_watchcache::IncludeObject::parse(query.get("includeObject").map(String::as_str)) {
        Ok(include) => litecar_watchcache::wants_table(accept).then_some(include),
        Err(e) => return ApiError::new(400, "BadRequest", e).into_response(),
    };
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = axum::body::to_bytes(req.into_body(), 16 << 20).await.unwrap_or_default();
    if let Some(result) = writes::route(&shared, &method, &target, &query, &content_type, &body) {
        return match result {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => e.into_response(),
        };
    }
    let result = match (&method, &target.name) {
        (&Method::GET, None) if query.get("watch").is_some_and(|w| w == "true" || w == "1") => {
            return watch(shared, target, query, table);
        }
        (&Method::GET, None) => {
            return match (list(&shared, &target, &query), table) {
                (Ok(body), None) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
                (Ok(body), Some(include)) => {
                    let list: Value = serde_json::from_str(&body).unwrap_or_default();
                    let items = list["items"].as_array().cloned().unwrap_or_default();
                    let def = resource_def(&lock(&shared.db), &target.resource);
                    match def {
                        Ok(d) => axum::Json(as_table(&d, &items, include, list["metadata"].clone())).into_response(),
                        Err(e) => e.into_response(),
                    }
                }
                (Err(e), _) => e.into_response(),
            };
        }
        (&Method::GET, Some(name)) => {
            let db = lock(&shared.db);
            resource_def(&db, &target.resource).and_then(|def| {
                let key = key_of(target.namespace.as_deref().filter(|_| def.namespaced), name);
                db.objects
                    .get(&target.resource)
                    .and_then(|m| m.get(&key))
                    .cloned()
                    .ok_or_else(|| ApiError::new(404, "NotFound", format!("{} \"{name}\" not found", def.plural)))
                    .map(|o| match table {
                        Some(include) => {
                            let meta = json!({"resourceVersion": o["metadata"]["resourceVersion"]});
                            as_table(&def, &[o], include, meta)
                        }
                        None => o,
                    })
            })
        }
        (&Method::POST, None) => match serde_json::from_slice(&body) {
            Ok(obj) => create(&shared, &target.resource, target.namespace.as_deref(), obj),
            Err(e) => Err(ApiError::new(400, "BadRequest", e.to_string())),
        },
        (&Method::PUT, Some(name)) => match serde_json::from_slice(&body) {
            Ok(obj) => update(&shared, &target.resource, target.namespace.as_deref(), name, obj),
            Err(e) => Err(ApiError::new(400, "BadRequest", e.to_string())),
        },
        (&Method::DELETE, Some(name)) => delete(&shared, &target.resource, target.namespace.as_deref(), name),
        _ => Err(ApiError::new(405, "MethodNotAllowed", format!("{method} {path} is not supported"))),
    };
    match result {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}
