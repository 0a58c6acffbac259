//! litecar's Kubernetes-compatible read API against kube-rs, beside the fake API server it caches.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, WatchEvent, WatchParams};
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
async fn litecar(fake: &FakeKube, cancel: &CancellationToken) -> (kube::Client, litecar_watchcache::Store) {
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
    (kube::Client::try_from(config).unwrap(), store)
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
    let (client, store) = litecar(&fake, &cancel).await;
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
    let (client, store) = litecar(&fake, &cancel).await;
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
