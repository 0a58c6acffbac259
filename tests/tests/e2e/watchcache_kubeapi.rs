//! litecar's Kubernetes-compatible read API against kube-rs, beside the fake API server it caches.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, VersionMatch, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use litecar_e2e::fakekube::{FakeKube, PODS};
use litecar_watchcache::{Database, K8sApi, ResourceSpec, ResourceType, StoreConfig, ingest, router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn pod(ns: &str, name: &str, app: &str) -> serde_json::Value {
    json!({"metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}})
}

fn keys(pods: impl IntoIterator<Item = Pod>) -> BTreeSet<String> {
    pods.into_iter()
        .map(|p| format!("{}/{}", p.metadata.namespace.unwrap_or_default(), p.metadata.name.unwrap_or_default()))
        .collect()
}

fn fake_keys(fake: &FakeKube) -> BTreeSet<String> {
    fake.objects(PODS)
        .iter()
        .map(|o| {
            format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap())
        })
        .collect()
}

/// litecar's cache of `fake`'s pods, served over HTTP; a kube client for it.
async fn litecar(fake: &FakeKube, cancel: &CancellationToken) -> (kube::Client, litecar_watchcache::Store, u16) {
    let db = Database::open(":memory:").unwrap();
    let store = db.store(ResourceType::new("", "v1", "Pod"), StoreConfig::default()).unwrap();
    store.await_first_list();
    let spec = ResourceSpec { resource: ResourceType::new("", "v1", "Pod"), ..Default::default() };
    tokio::spawn(ingest(fake.client(), vec![spec], db, cancel.clone()));
    let app = router(K8sApi::default().with("", "v1", "pods", store.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = cancel.clone();
    tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await });
    let config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    (kube::Client::try_from(config).unwrap(), store, addr.port())
}

async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_gets_and_refuses_writes_like_the_api_server() {
    let fake = FakeKube::start().await;
    for (ns, name, app) in [("a", "p1", "web"), ("a", "p2", "db"), ("b", "p3", "web"), ("b", "p4", "web")] {
        fake.create(PODS, pod(ns, name, app)).unwrap();
    }
    let cancel = CancellationToken::new();
    let (client, store, _) = litecar(&fake, &cancel).await;
    eventually("first list", || store.is_ready().unwrap()).await;
    let lc: Api<Pod> = Api::all(client.clone());
    let up: Api<Pod> = Api::all(fake.client());
    // paged with limit + continue, beside the fake
    let mut got = Vec::new();
    let mut lp = ListParams::default().limit(3);
    loop {
        let page = lc.list(&lp).await.unwrap();
        assert!(page.items.len() <= 3);
        got.extend(page.items);
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(keys(got), keys(up.list(&ListParams::default()).await.unwrap().items));
    for sel in [ListParams::default().labels("app=web"), ListParams::default().labels("app in (db),app!=web")] {
        assert_eq!(keys(lc.list(&sel).await.unwrap().items), keys(up.list(&sel).await.unwrap().items));
    }
    let by_name = ListParams::default().fields("metadata.name=p3");
    assert_eq!(keys(lc.list(&by_name).await.unwrap().items), BTreeSet::from(["b/p3".to_owned()]));
    let ns: Api<Pod> = Api::namespaced(client.clone(), "a");
    assert_eq!(
        keys(ns.list(&ListParams::default()).await.unwrap().items),
        keys(Api::<Pod>::namespaced(fake.client(), "a").list(&ListParams::default()).await.unwrap().items)
    );
    assert_eq!(ns.get("p1").await.unwrap().metadata.name.as_deref(), Some("p1"));
    match ns.get("nope").await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
    match ns.delete("p1", &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (405, "MethodNotAllowed")),
        other => panic!("expected 405, got {other:?}"),
    }
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_reflector_follows_litecar_and_a_stale_revision_gets_an_error_event() {
    let fake = FakeKube::start().await;
    fake.create(PODS, pod("a", "p1", "web")).unwrap();
    fake.create(PODS, pod("a", "p2", "web")).unwrap();
    let cancel = CancellationToken::new();
    let (client, store, _) = litecar(&fake, &cancel).await;
    eventually("first list", || store.is_ready().unwrap()).await;
    let lc: Api<Pod> = Api::all(client.clone());
    let start = store.last_resource_version().unwrap();

    // a revision older than the log: 200 with one ERROR event, code 410, as the API server's watch cache sends it
    let mut stream = lc.watch(&WatchParams::default().timeout(5), &(start - 1).to_string()).await.unwrap().boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected an ERROR 410 event, got {other:?}"),
    }

    let (reader, writer) = reflector::store();
    let rf = reflector(writer, watcher(lc.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(rf.for_each(|_| futures::future::ready(())));
    eventually("reflector saw the first list", || {
        keys(reader.state().iter().map(|p| (**p).clone())) == fake_keys(&fake)
    })
    .await;
    for i in 0..5 {
        fake.create(PODS, pod("b", &format!("n{i}"), "db")).unwrap();
    }
    fake.delete(PODS, Some("a"), "p1").unwrap();
    // an upstream 410 makes litecar relist; its differences reach the reflector as ordinary events
    fake.faults(|f| {
        f.force_gone_next_watch = true;
        f.drop_watch_after = Some(1);
    });
    fake.create(PODS, pod("c", "after-gone", "x")).unwrap();
    fake.delete(PODS, Some("b"), "n0").unwrap();
    eventually("reflector converged on the fake", || {
        keys(reader.state().iter().map(|p| (**p).clone())) == fake_keys(&fake)
    })
    .await;
    task.abort();
    cancel.cancel();
}

/// GET `path` with `accept`: status, Content-Type and the JSON body.
async fn get(client: &kube::Client, path: &str, accept: &str) -> (u16, String, serde_json::Value) {
    let req = axum::http::Request::get(path).header("accept", accept).body(kube::client::Body::empty()).unwrap();
    let res = client.send(req).await.unwrap();
    let status = res.status().as_u16();
    let ct = res.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let body = res.into_body().collect_bytes().await.unwrap();
    (status, ct, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

const AGGREGATED: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_lists_only_the_cached_resources_as_the_api_server_words_them() {
    let fake = FakeKube::start().await;
    let cancel = CancellationToken::new();
    let (client, store, _) = litecar(&fake, &cancel).await;
    eventually("first list", || store.is_ready().unwrap()).await;
    // aggregated, as kubectl asks first: only when the Content-Type names it does kubectl use it
    let (code, ct, doc) = get(&client, "/api", AGGREGATED).await;
    assert_eq!((code, ct.as_str()), (200, "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"));
    let resources = &doc["items"][0]["versions"][0]["resources"];
    assert_eq!(resources.as_array().unwrap().len(), 1, "{doc}");
    let pods = &resources[0];
    assert_eq!(pods["resource"], "pods");
    assert_eq!(pods["verbs"], json!(["get", "list", "watch"]));
    // the fake API server describes the same resource the same way (its verbs include writes)
    let (_, fct, fdoc) = get(&fake.client(), "/api", AGGREGATED).await;
    assert_eq!(fct, ct);
    let fpods = fdoc["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "pods")
        .unwrap()
        .clone();
    for k in ["responseKind", "scope", "singularResource", "shortNames"] {
        assert_eq!(pods[k], fpods[k], "{k}");
    }
    assert_eq!(doc["items"][0]["versions"][0]["version"], fdoc["items"][0]["versions"][0]["version"]);
    let (_, _, apis) = get(&client, "/apis", AGGREGATED).await;
    assert_eq!(apis["items"], json!([]));
    // the plain documents kubectl falls back to
    let (_, ct, api) = get(&client, "/api", "application/json").await;
    assert_eq!((ct.as_str(), &api["versions"]), ("application/json", &json!(["v1"])));
    let (_, _, v1) = get(&client, "/api/v1", "application/json").await;
    let (_, _, fv1) = get(&fake.client(), "/api/v1", "application/json").await;
    assert_eq!(v1["resources"].as_array().unwrap().len(), 1);
    let fpods = fv1["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap().clone();
    for k in ["name", "singularName", "namespaced", "kind", "shortNames"] {
        assert_eq!(v1["resources"][0][k], fpods[k], "{k}");
    }
    assert_eq!(v1["resources"][0]["verbs"], json!(["get", "list", "watch"]));
    let (_, _, groups) = get(&client, "/apis", "application/json").await;
    assert_eq!((groups["kind"].as_str(), &groups["groups"]), (Some("APIGroupList"), &json!([])));
    for path in ["/apis/apps/v1", "/apis/apps", "/api/v2"] {
        assert_eq!(get(&client, path, "application/json").await.0, 404, "{path}");
    }
    cancel.cancel();
}

async fn api_error(client: &kube::Client, path: &str) -> kube::core::Status {
    let req = axum::http::Request::get(path).body(Vec::new()).unwrap();
    match client.request::<serde_json::Value>(req).await {
        Err(kube::Error::Api(s)) => *s,
        other => panic!("{path}: expected an API error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_version_match_and_streaming_lists_follow_the_api_server() {
    let fake = FakeKube::start().await;
    for i in 0..4 {
        fake.create(PODS, pod("a", &format!("p{i}"), "web")).unwrap();
    }
    let cancel = CancellationToken::new();
    let (client, store, port) = litecar(&fake, &cancel).await;
    eventually("first list", || store.is_ready().unwrap()).await;
    let lc: Api<Pod> = Api::all(client.clone());
    let before = lc.list(&ListParams::default()).await.unwrap();
    let rv1 = before.metadata.resource_version.clone().unwrap();
    let old = keys(before.items);
    fake.delete(PODS, Some("a"), "p0").unwrap();
    fake.create(PODS, pod("b", "new", "db")).unwrap();
    eventually("litecar saw the changes", || {
        store.get_by_key("b/new").unwrap().is_some() && store.get_by_key("a/p0").unwrap().is_none()
    })
    .await;

    // Exact: the state at that revision, read from the event log, paged by key at that revision
    let exact = ListParams::default().at(&rv1).matching(VersionMatch::Exact);
    assert_eq!(keys(lc.list(&exact).await.unwrap().items), old);
    let (mut got, mut lp) = (Vec::new(), exact.clone().limit(1));
    loop {
        let page = lc.list(&lp).await.unwrap();
        assert_eq!(page.metadata.resource_version.as_deref(), Some(rv1.as_str()));
        assert!(page.items.len() <= 1);
        got.extend(page.items);
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = ListParams::default().limit(1).continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(keys(got), old);
    // a token is bound to its query
    let page = lc.list(&exact.clone().limit(1)).await.unwrap();
    let token = page.metadata.continue_.unwrap();
    let other = format!("/api/v1/pods?limit=1&labelSelector=app%3Ddb&continue={token}");
    assert_eq!(api_error(&client, &other).await.code, 400);
    // NotOlderThan: the current state
    let newer = ListParams::default().at(&rv1).matching(VersionMatch::NotOlderThan);
    assert_eq!(keys(lc.list(&newer).await.unwrap().items), fake_keys(&fake));
    // the API server's refusals: forbidden combinations are 422 Invalid, a future revision 504, a compacted 410
    for q in [
        "resourceVersionMatch=Exact",
        "resourceVersion=0&resourceVersionMatch=Exact",
        "resourceVersion=1&resourceVersionMatch=Latest",
        "sendInitialEvents=true",
        "watch=true&sendInitialEvents=true",
        "watch=true&resourceVersion=1&resourceVersionMatch=NotOlderThan",
    ] {
        let s = api_error(&client, &format!("/api/v1/pods?{q}")).await;
        assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"), "{q}: {}", s.message);
        assert!(s.message.starts_with("ListOptions.meta.k8s.io \"\" is invalid: "), "{}", s.message);
    }
    // kube-rs retries a 504, so this one goes over plain HTTP
    let future = store.last_resource_version().unwrap() + 1000;
    let path = format!("/api/v1/pods?resourceVersion={future}&resourceVersionMatch=Exact");
    let (code, body) = tokio::task::spawn_blocking(move || litecar_e2e::http_get(port, &path)).await.unwrap();
    assert_eq!(code, 504, "{body}");
    assert!(body.contains("\"reason\":\"Timeout\""), "{body}");
    // a watch from a revision the cache has not reached waits for it, then ends with a 504 ERROR event
    let path = format!("/api/v1/pods?watch=true&resourceVersion={future}");
    let (code, body) = tokio::task::spawn_blocking(move || litecar_e2e::http_get(port, &path)).await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"type\":\"ERROR\"") && body.contains("\"code\":504"), "{body}");
    assert_eq!(api_error(&client, "/api/v1/pods?resourceVersion=5&continue=abc").await.code, 400);

    // a streaming list: the state as ADDED events, the bookmark that ends them, then changes; the same from
    // the fake API server
    for (who, api, later) in [("litecar", lc.clone(), "later"), ("the fake", Api::<Pod>::all(fake.client()), "later2")]
    {
        let mut s = api.watch(&WatchParams::streaming_lists().timeout(20), "0").await.unwrap().boxed();
        let mut initial = Vec::new();
        loop {
            match s.next().await {
                Some(Ok(WatchEvent::Added(p))) => initial.push(p),
                Some(Ok(WatchEvent::Bookmark(b))) => {
                    let end = b.metadata.annotations.get("k8s.io/initial-events-end");
                    assert_eq!(end.map(String::as_str), Some("true"), "{who}");
                    break;
                }
                other => panic!("{who}: expected ADDED events then the initial-events-end bookmark, got {other:?}"),
            }
        }
        assert_eq!(keys(initial), fake_keys(&fake), "{who}");
        fake.create(PODS, pod("c", later, "x")).unwrap();
        loop {
            match s.next().await {
                Some(Ok(WatchEvent::Added(p))) => {
                    assert_eq!(p.metadata.name.as_deref(), Some(later), "{who}");
                    break;
                }
                Some(Ok(WatchEvent::Bookmark(_))) => continue,
                other => panic!("{who}: expected the new pod, got {other:?}"),
            }
        }
    }

    // kube-rs' watcher in streaming-list mode converges on the source
    let (reader, writer) = reflector::store();
    let rf = reflector(writer, watcher(lc.clone(), watcher::Config::default().streaming_lists())).applied_objects();
    let task = tokio::spawn(rf.for_each(|_| futures::future::ready(())));
    eventually("streaming reflector saw the state", || {
        keys(reader.state().iter().map(|p| (**p).clone())) == fake_keys(&fake)
    })
    .await;
    fake.delete(PODS, Some("a"), "p1").unwrap();
    fake.create(PODS, pod("c", "last", "x")).unwrap();
    eventually("streaming reflector followed the changes", || {
        keys(reader.state().iter().map(|p| (**p).clone())) == fake_keys(&fake)
    })
    .await;
    task.abort();

    // once the log is compacted past a revision, an Exact list of it is 410 Expired
    store.compact(store.last_resource_version().unwrap()).unwrap();
    let s = api_error(&client, &format!("/api/v1/pods?resourceVersion={rv1}&resourceVersionMatch=Exact")).await;
    assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
    cancel.cancel();
}

/// The metadata of a raw list page.
async fn page_meta(client: &kube::Client, path: &str) -> (serde_json::Value, Vec<String>) {
    let (code, _, list) = get(client, path, "application/json").await;
    assert_eq!(code, 200, "{path}: {list}");
    let names = list["items"].as_array().unwrap().iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_owned());
    (list["metadata"].clone(), names.collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_count_what_follows_only_where_the_api_server_does() {
    let fake = FakeKube::start().await;
    for i in 0..5u32 {
        fake.create(PODS, pod("a", &format!("p{i}"), if i.is_multiple_of(2) { "web" } else { "db" })).unwrap();
        fake.create(PODS, pod("b", &format!("q{i}"), "web")).unwrap();
    }
    let cancel = CancellationToken::new();
    let (client, store, _) = litecar(&fake, &cancel).await;
    eventually("first list", || store.is_ready().unwrap()).await;
    for path in [
        "/api/v1/pods?limit=3",
        "/api/v1/namespaces/a/pods?limit=2",
        "/api/v1/pods?limit=3&labelSelector=app%3Dweb",
        "/api/v1/pods?limit=3&fieldSelector=metadata.namespace%3Db",
        "/api/v1/pods?limit=20",
    ] {
        let ((lc, lnames), (up, unames)) = (page_meta(&client, path).await, page_meta(&fake.client(), path).await);
        assert_eq!(lnames, unames, "{path}");
        assert_eq!(lc["remainingItemCount"], up["remainingItemCount"], "{path}: {lc} vs {up}");
        assert_eq!(lc["continue"].is_string(), up["continue"].is_string(), "{path}: {lc} vs {up}");
        // and the next page counts from where it starts
        if let Some(token) = lc["continue"].as_str() {
            let (next, _) = page_meta(&client, &format!("{path}&continue={token}")).await;
            let (fnext, _) =
                page_meta(&fake.client(), &format!("{path}&continue={}", up["continue"].as_str().unwrap())).await;
            assert_eq!(next["remainingItemCount"], fnext["remainingItemCount"], "{path}, page 2");
        }
    }
    let (meta, _) = page_meta(&client, "/api/v1/pods?limit=3").await;
    assert_eq!(meta["remainingItemCount"], 7);
    let (meta, _) = page_meta(&client, "/api/v1/pods?limit=3&labelSelector=app%3Dweb").await;
    assert!(meta.get("remainingItemCount").is_none() && meta["continue"].is_string(), "{meta}");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exact_walk_shows_its_revision_while_the_store_changes() {
    let fake = FakeKube::start().await;
    for i in 0..6u32 {
        fake.create(PODS, pod("a", &format!("p{i}"), if i.is_multiple_of(2) { "web" } else { "db" })).unwrap();
        fake.create(PODS, pod("b", &format!("q{i}"), "web")).unwrap();
    }
    let cancel = CancellationToken::new();
    let (client, store, _) = litecar(&fake, &cancel).await;
    eventually("first list", || store.is_ready().unwrap()).await;
    let rv1 = store.last_resource_version().unwrap();
    let before = |ns: Option<&str>, app: Option<&str>| -> Vec<String> {
        let mut v: Vec<String> = fake
            .objects(PODS)
            .iter()
            .filter(|o| ns.is_none_or(|n| o["metadata"]["namespace"] == n))
            .filter(|o| app.is_none_or(|a| o["metadata"]["labels"]["app"] == a))
            .map(|o| o["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        v.sort();
        v
    };
    let cases = [
        ("/api/v1/pods", before(None, None)),
        ("/api/v1/namespaces/a/pods", before(Some("a"), None)),
        ("/api/v1/pods?labelSelector=app%3Dweb", before(None, Some("web"))),
    ];
    // the store moves on once, before the walks start: every page must still show rv1
    fake.delete(PODS, Some("a"), "p1").unwrap();
    fake.create(PODS, pod("a", "p00", "web")).unwrap();
    let mut p4 = fake.objects(PODS).into_iter().find(|p| p["metadata"]["name"] == "p4").unwrap();
    p4["metadata"]["labels"]["app"] = json!("db");
    fake.update(PODS, p4).unwrap();
    eventually("litecar saw the changes", || store.last_resource_version().unwrap() > rv1 + 2).await;
    for (i, (path, want)) in cases.iter().enumerate() {
        let sep = if path.contains('?') { '&' } else { '?' };
        let first = format!("{path}{sep}resourceVersion={rv1}&resourceVersionMatch=Exact&limit=2");
        let (mut meta, mut got) = page_meta(&client, &first).await;
        let mut pages = 1;
        while let Some(token) = meta["continue"].as_str().map(str::to_owned) {
            assert_eq!(meta["resourceVersion"], rv1.to_string(), "{path}");
            // what follows in the state at rv1, counted as the API server counts it: only without selectors
            let counted = meta.get("remainingItemCount").map(|n| n.as_u64().unwrap() as usize);
            let rest = want.len() - got.len();
            assert_eq!(counted, (!path.contains("Selector")).then_some(rest), "{path}, page {pages}: {meta}");
            // and it keeps moving during the walk
            fake.create(PODS, pod("a", &format!("p0{i}{pages}"), "web")).unwrap();
            let (m, names) = page_meta(&client, &format!("{path}{sep}limit=2&continue={token}")).await;
            assert!(names.len() <= 2);
            (meta, pages) = (m, pages + 1);
            got.extend(names);
        }
        got.sort();
        assert_eq!(&got, want, "{path}");
        assert!(pages >= want.len() / 2, "{path}: {pages} pages");
    }
    cancel.cancel();
}
