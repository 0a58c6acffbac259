//! The fake Kubernetes API server against real clients: kube-rs and Debian's kubectl.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use litecar_e2e::fakekube::{FakeKube, PODS};
use serde_json::json;

fn pod(ns: &str, name: &str, app: &str) -> serde_json::Value {
    json!({"metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

fn names(list: &kube::core::ObjectList<Pod>) -> Vec<String> {
    list.items.iter().map(|p| p.metadata.name.clone().unwrap()).collect()
}

#[tokio::test]
async fn lists_page_with_continue_and_filter_by_selectors() {
    let fake = FakeKube::start().await;
    for (ns, name, app) in
        [("a", "p1", "web"), ("a", "p2", "db"), ("b", "p3", "web"), ("b", "p4", "web"), ("c", "p5", "x")]
    {
        fake.create(PODS, pod(ns, name, app)).unwrap();
    }
    let api: Api<Pod> = Api::all(fake.client());
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(names(&first), ["p1", "p2"]);
    assert_eq!(first.metadata.remaining_item_count, Some(3));
    // a change between pages does not show up: the continue token pins the first page's revision
    fake.create(PODS, pod("b", "p3a", "web")).unwrap();
    // nor do an update and a delete: later pages show those objects as they were at the first page
    let mut p4 = fake.objects(PODS).into_iter().find(|p| p["metadata"]["name"] == "p4").unwrap();
    p4["metadata"]["labels"]["app"] = json!("changed");
    fake.update(PODS, p4).unwrap();
    fake.delete(PODS, Some("c"), "p5").unwrap();
    let token = first.metadata.continue_.clone().unwrap();
    let second = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap();
    assert_eq!(names(&second), ["p3", "p4"]);
    assert_eq!(second.items[1].metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(second.metadata.remaining_item_count, Some(1));
    let third = api
        .list(&ListParams::default().limit(2).continue_token(second.metadata.continue_.as_ref().unwrap()))
        .await
        .unwrap();
    assert_eq!((names(&third), third.metadata.continue_.clone()), (vec!["p5".to_owned()], None));
    assert_eq!(names(&api.list(&ListParams::default().labels("app=web")).await.unwrap()), ["p1", "p3", "p3a"]);
    assert_eq!(names(&api.list(&ListParams::default().labels("app in (db,changed)")).await.unwrap()), ["p2", "p4"]);
    assert_eq!(names(&api.list(&ListParams::default().fields("metadata.name=p4")).await.unwrap()), ["p4"]);
    assert_eq!(names(&api.list(&ListParams::default().fields("metadata.namespace!=b")).await.unwrap()), ["p1", "p2"]);
    let ns_b: Api<Pod> = Api::namespaced(fake.client(), "b");
    assert_eq!(names(&ns_b.list(&ListParams::default()).await.unwrap()), ["p3", "p3a", "p4"]);
    // exact revision: the state before p3a
    let rv = first.metadata.resource_version.clone().unwrap();
    let at = api.list(&ListParams::default().at(&rv).matching(kube::api::VersionMatch::Exact)).await.unwrap();
    assert_eq!(at.items.len(), 5);
    // compacted continue tokens are 410 Expired
    fake.compact();
    let e = api.list(&ListParams::default().limit(2).continue_token(&token)).await.unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 410 && s.reason == "Expired"), "{e:?}");
}

#[tokio::test]
async fn status_errors_and_injected_faults() {
    let fake = FakeKube::start().await;
    let api: Api<Pod> = Api::namespaced(fake.client(), "default");
    let e = api.get("missing").await.unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 404 && s.reason == "NotFound"), "{e:?}");
    fake.create(PODS, pod("default", "x", "web")).unwrap();
    let e = api
        .create(&Default::default(), &serde_json::from_value(pod("default", "x", "web")).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(&e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"), "{e:?}");
    fake.faults(|f| f.fail_next = 2);
    for _ in 0..2 {
        let e = api.list(&ListParams::default()).await.unwrap_err();
        assert!(matches!(&e, kube::Error::Api(s) if s.code == 500), "{e:?}");
    }
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);
    fake.faults(|f| f.latency = Duration::from_millis(300));
    let t = std::time::Instant::now();
    api.get("x").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn watch_streams_events_bookmarks_and_expires_compacted_revisions() {
    let fake = FakeKube::start().await;
    fake.faults(|f| f.bookmark_interval = Duration::from_millis(50));
    fake.create(PODS, pod("a", "before", "web")).unwrap();
    let rv = fake.resource_version().to_string();
    let api: Api<Pod> = Api::all(fake.client());
    let mut stream = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    fake.create(PODS, pod("a", "new", "web")).unwrap();
    fake.delete(PODS, Some("a"), "before").unwrap();
    let mut seen = Vec::new();
    let mut bookmarks = 0;
    while seen.len() < 2 || bookmarks == 0 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next()).await.unwrap().unwrap().unwrap() {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            WatchEvent::Bookmark(_) => bookmarks += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED new", "DELETED before"]);
    // replay from an old revision, then drop after N events
    fake.faults(|f| f.drop_watch_after = Some(1));
    let mut s = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Added(_))));
    assert!(tokio::time::timeout(Duration::from_secs(5), s.try_next()).await.unwrap().unwrap().is_none());
    fake.faults(|f| f.drop_watch_after = None);
    // compacted revision: an ERROR event with 410 Expired
    fake.compact();
    let mut s = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    // forced 410 on a valid revision
    fake.faults(|f| f.force_gone_next_watch = true);
    let current = fake.resource_version().to_string();
    let mut s = api.watch(&WatchParams::default(), &current).await.unwrap().boxed();
    assert!(matches!(s.try_next().await.unwrap(), Some(WatchEvent::Error(e)) if e.code == 410));
    let requests = fake.requests();
    assert_eq!(requests.iter().filter(|r| r.is_watch()).count(), 4);
}

fn kubectl_setup(fake: &FakeKube) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kubeconfig");
    std::fs::write(&cfg, fake.kubeconfig()).unwrap();
    let args = vec![
        format!("--kubeconfig={}", cfg.display()),
        format!("--cache-dir={}", dir.path().join("cache").display()),
        "--request-timeout=20s".to_owned(),
    ];
    (dir, args)
}

fn kubectl() -> Command {
    let mut c = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
    c.stdin(Stdio::null());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_pods_matches_the_fake() {
    let fake = FakeKube::start().await;
    fake.create(PODS, pod("default", "web-0", "web")).unwrap();
    fake.create(PODS, pod("kube-system", "dns-0", "dns")).unwrap();
    let (_dir, args) = kubectl_setup(&fake);
    let out =
        tokio::task::spawn_blocking(move || kubectl().args(&args).args(["get", "pods", "-A", "-o", "json"]).output())
            .await
            .unwrap()
            .unwrap();
    assert!(out.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
    let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<serde_json::Value> = got["items"].as_array().unwrap().clone();
    assert_eq!(got, fake.objects(PODS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_sees_an_event() {
    let fake = FakeKube::start().await;
    fake.create(PODS, pod("default", "first", "web")).unwrap();
    let (_dir, args) = kubectl_setup(&fake);
    let mut child = kubectl()
        .args(&args)
        .args(["get", "pods", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        tokio::time::timeout(Duration::from_secs(30), rx.recv()).await.ok().flatten()
    };
    assert_eq!(next(&mut rx).await.as_deref(), Some("pod/first"));
    // wait until kubectl's watch is open before creating
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !fake.requests().iter().any(|r| r.is_watch()) {
        assert!(std::time::Instant::now() < deadline, "kubectl never opened a watch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.create(PODS, pod("default", "second", "web")).unwrap();
    let line = next(&mut rx).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(line.as_deref(), Some("pod/second"));
}
