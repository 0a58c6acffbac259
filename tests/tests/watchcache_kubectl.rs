//! Debian's kubectl against litecar's Kubernetes-compatible read API and against the fake API server litecar
//! caches: the same commands print the same output (ages aside, which tick between the two runs).
//!
//! kubectl sends a bearer token only over HTTPS, so these run against the API router without the daemon's JWT
//! layer; the layer's own tests cover authentication.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use litecar_e2e::fakekube::{CONFIGMAPS, FakeKube, NAMESPACES, PODS};
use litecar_watchcache::{Database, K8sApi, ResourceSpec, ResourceType, StoreConfig, ingest, router};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn pod(ns: &str, name: &str, app: &str) -> serde_json::Value {
    json!({"metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
           "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.9"}],
                      "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}})
}

/// Paths litecar was asked for.
type Log = std::sync::Arc<std::sync::Mutex<Vec<String>>>;

/// litecar caching `fake`'s pods, configmaps and namespaces, serving the read API on 127.0.0.1; its URL and
/// the log of request paths.
async fn litecar(fake: &FakeKube, cancel: &CancellationToken) -> (String, Log) {
    let db = Database::open(":memory:").unwrap();
    let mut api = K8sApi::default();
    let mut specs = Vec::new();
    for (kind, plural) in [("Pod", "pods"), ("ConfigMap", "configmaps"), ("Namespace", "namespaces")] {
        let rt = ResourceType::new("", "v1", kind);
        let store = db.store(rt.clone(), StoreConfig::default()).unwrap();
        store.await_first_list();
        api = api.with("", "v1", plural, store.clone());
        specs.push((ResourceSpec { resource: rt, ..Default::default() }, store));
    }
    let stores: Vec<_> = specs.iter().map(|(_, s)| s.clone()).collect();
    tokio::spawn(ingest(fake.client(), specs.into_iter().map(|(s, _)| s).collect(), db, cancel.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !stores.iter().all(|s| s.is_ready().unwrap()) {
        assert!(Instant::now() < deadline, "litecar never finished its first lists");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = cancel.clone();
    let log = Log::default();
    let l = log.clone();
    let app = router(api).layer(axum::middleware::map_request(move |req: axum::extract::Request| {
        l.lock().unwrap().push(req.uri().path().to_owned());
        async move { req }
    }));
    tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await });
    (format!("http://{addr}"), log)
}

/// kubectl arguments for a server: its own kubeconfig and discovery cache.
fn setup(dir: &Path, name: &str, server: &str) -> Vec<String> {
    let cfg = dir.join(format!("{name}.kubeconfig"));
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: a\ncurrent-context: c\n"
    );
    std::fs::write(&cfg, text).unwrap();
    vec![
        format!("--kubeconfig={}", cfg.display()),
        format!("--cache-dir={}", dir.join(format!("{name}-cache")).display()),
        "--request-timeout=20s".to_owned(),
    ]
}

fn kubectl(args: &[String]) -> Command {
    let mut c = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
    c.args(args).stdin(Stdio::null());
    c
}

async fn run(base: &[String], args: &[&str]) -> Output {
    let mut c = kubectl(base);
    c.args(args);
    tokio::task::spawn_blocking(move || c.output()).await.unwrap().unwrap()
}

/// Ages (`5s`, `2m3s`) tick between two runs; everything else must match.
fn normalize(text: &str) -> String {
    text.lines()
        .map(|l| {
            l.split_whitespace()
                .map(|w| {
                    let digits_then_units = w.trim_end_matches(['s', 'm', 'h', 'd', 'y']);
                    let age = !digits_then_units.is_empty()
                        && w != digits_then_units
                        && w.chars().all(|c| c.is_ascii_digit() || "smhdy".contains(c));
                    if age { "<age>" } else { w }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_the_same_against_litecar_and_the_api_server() {
    let fake = FakeKube::start().await;
    for ns in ["a", "b"] {
        fake.create(NAMESPACES, json!({"metadata": {"name": ns}, "status": {"phase": "Active"}})).unwrap();
    }
    for (ns, name, app) in
        [("a", "p1", "web"), ("a", "p2", "db"), ("b", "p3", "web"), ("b", "p4", "web"), ("b", "p5", "db")]
    {
        fake.create(PODS, pod(ns, name, app)).unwrap();
    }
    fake.create(CONFIGMAPS, json!({"metadata": {"namespace": "a", "name": "cfg"}, "data": {"k": "v", "l": "w"}}))
        .unwrap();
    let cancel = CancellationToken::new();
    let (url, log) = litecar(&fake, &cancel).await;
    let dir = tempfile::tempdir().unwrap();
    let (lc, up) = (setup(dir.path(), "litecar", &url), setup(dir.path(), "fake", &fake.url()));

    let commands: &[&[&str]] = &[
        &["get", "pods", "-A"],
        &["get", "pods"],
        &["get", "pods", "-n", "b"],
        &["get", "pods", "-A", "-l", "app=web"],
        &["get", "pods", "-A", "-l", "app in (db),app!=web"],
        &["get", "pods", "-A", "--field-selector", "metadata.name=p3"],
        &["get", "pods", "-A", "--field-selector", "metadata.namespace!=a"],
        &["get", "pods", "-n", "b", "-o", "json"],
        &["get", "pods", "-A", "-o", "yaml"],
        &["get", "pods", "-A", "-o", "wide"],
        &["get", "pods", "-A", "--chunk-size", "2"],
        &["get", "pods", "-A", "--chunk-size", "2", "-o", "json"],
        &["get", "pods", "-A", "--show-labels"],
        &["get", "pod", "p1"],
        &["get", "pod", "p1", "-o", "yaml"],
        &["get", "po", "p3", "-n", "b", "-o", "wide"],
        &["get", "pod", "nope"],
        &["get", "namespaces"],
        &["get", "ns", "a", "-o", "json"],
        &["get", "configmaps"],
        &["get", "cm", "-A", "-o", "wide"],
    ];
    for args in commands {
        let (l, u) = (run(&lc, args).await, run(&up, args).await);
        let what = format!("kubectl {}", args.join(" "));
        assert_eq!(
            l.status.code(),
            u.status.code(),
            "{what}: exit codes; litecar said {}",
            String::from_utf8_lossy(&l.stderr)
        );
        let (lo, uo) = (String::from_utf8_lossy(&l.stdout), String::from_utf8_lossy(&u.stdout));
        assert_eq!(normalize(&lo), normalize(&uo), "{what}: output");
        assert_eq!(String::from_utf8_lossy(&l.stderr), String::from_utf8_lossy(&u.stderr), "{what}: errors");
        if args.contains(&"nope") {
            assert!(!l.status.success(), "{what} must fail");
        } else {
            assert!(l.status.success() && !lo.trim().is_empty(), "{what} printed nothing");
        }
    }
    // kubectl read the aggregated discovery documents from both and needed no per-version document
    let paths = log.lock().unwrap().clone();
    assert!(paths.iter().any(|p| p == "/api") && paths.iter().any(|p| p == "/apis"), "{paths:?}");
    assert!(!paths.iter().any(|p| p == "/api/v1"), "kubectl fell back to plain discovery: {paths:?}");
    assert!(!fake.requests().iter().any(|r| r.path == "/api/v1"), "kubectl fell back to plain discovery on the fake");
    // human output carries the pod printer's columns, wide output its priority-1 columns
    let wide = String::from_utf8_lossy(&run(&lc, &["get", "pods", "-A", "-o", "wide"]).await.stdout).into_owned();
    let header: Vec<&str> = wide.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "READY",
            "STATUS",
            "RESTARTS",
            "AGE",
            "IP",
            "NODE",
            "NOMINATED",
            "NODE",
            "READINESS",
            "GATES"
        ]
    );
    assert!(
        wide.lines().any(|l| l.starts_with("b ")
            && l.contains(" p3 ")
            && l.contains("1/1")
            && l.contains("Running")
            && l.contains("10.0.0.9")),
        "{wide}"
    );

    // writes are refused with a Status kubectl prints
    let out = run(&lc, &["label", "pod", "p1", "x=y"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("MethodNotAllowed"), "{err}");
    assert!(fake.objects(PODS).iter().all(|p| p["metadata"]["labels"].get("x").is_none()));
    cancel.cancel();
}

/// Lines a running kubectl prints, read on a thread.
fn lines_of(child: &mut std::process::Child) -> tokio::sync::mpsc::UnboundedReceiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    rx
}

async fn take(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(l)) => out.push(l),
            _ => panic!("kubectl printed {out:?}, expected {n} lines"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_watch_prints_the_same_events_from_litecar_and_the_api_server() {
    let fake = FakeKube::start().await;
    fake.create(PODS, pod("a", "first", "web")).unwrap();
    fake.create(PODS, pod("b", "other", "web")).unwrap();
    let cancel = CancellationToken::new();
    let (url, _) = litecar(&fake, &cancel).await;
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    let mut children = Vec::new();
    for (name, server) in [("litecar", url.as_str()), ("fake", fake.url().as_str())] {
        let mut child = kubectl(&setup(dir.path(), name, server))
            .args(["get", "pods", "--watch", "-l", "app=web"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut rx = lines_of(&mut child);
        // the header and the list; kubectl then watches from the list's revision, so nothing after is missed
        let head = take(&mut rx, 2).await;
        outputs.push(head);
        children.push((child, rx));
    }
    fake.create(PODS, pod("a", "second", "web")).unwrap();
    fake.create(PODS, pod("a", "unselected", "db")).unwrap();
    fake.create(PODS, pod("b", "elsewhere", "web")).unwrap();
    fake.delete(PODS, Some("a"), "first").unwrap();
    fake.create(PODS, pod("a", "third", "web")).unwrap();
    for (i, (child, rx)) in children.iter_mut().enumerate() {
        // second ADDED, first DELETED (its last state), third ADDED
        outputs[i].extend(take(rx, 3).await);
        let _ = child.kill();
        let _ = child.wait();
    }
    let norm = |v: &[String]| normalize(&v.join("\n"));
    assert_eq!(norm(&outputs[0]), norm(&outputs[1]), "kubectl --watch output");
    let names: Vec<&str> = outputs[0].iter().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(names, ["first", "second", "first", "third"]);
    cancel.cancel();
}
