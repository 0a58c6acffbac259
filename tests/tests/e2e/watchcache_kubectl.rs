//! Debian's kubectl against litecar's Kubernetes-compatible read API and against the fake API server litecar
//! caches: the same commands print the same output (ages aside, which tick between the two runs).
//!
//! litecar runs as a user runs it (`litecar ingest`), its REST listener over HTTPS with a CA made here and JWT
//! auth: kubectl sends its bearer token only over HTTPS, so every command proves a real kubectl user gets in
//! with a token, and a wrong token gets kubectl's usual 401 error.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use litecar_e2e::fakekube::{CONFIGMAPS, FakeKube, NAMESPACES, PODS, ResourceDef};
use litecar_e2e::{Proc, free_port, hs256_token, http_get, litecar_bin, tls_certificates};
use serde_json::json;

const SECRET: &str = "kubectl-e2e-secret-0123456789abcdef0123";
/// A cluster-scoped custom resource the fake serves beside its built-in kinds.
const WIDGETS: &str = "example.com/v1/widgets";

fn pod(ns: &str, name: &str, app: &str) -> serde_json::Value {
    json!({"metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]},
           "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.9"}],
                      "containerStatuses": [{"name": "c", "ready": true, "restartCount": 0, "state": {"running": {}}}]}})
}

/// kubectl arguments for a server: its own kubeconfig (the context's namespace is `a`) and discovery cache;
/// `tls` is the CA file and the bearer token.
fn setup(dir: &Path, name: &str, server: &str, tls: Option<(&Path, &str)>) -> Vec<String> {
    let cfg = dir.join(format!("{name}.kubeconfig"));
    let (ca, user) = match tls {
        Some((ca, token)) => (format!("\n    certificate-authority: {}", ca.display()), format!("{{token: {token}}}")),
        None => (String::new(), "{}".to_owned()),
    };
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}{ca}\nusers:\n- name: u\n  user: {user}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n    namespace: a\ncurrent-context: c\n"
    );
    std::fs::write(&cfg, text).unwrap();
    vec![
        format!("--kubeconfig={}", cfg.display()),
        format!("--cache-dir={}", dir.join(format!("{name}-cache")).display()),
        "--request-timeout=20s".to_owned(),
    ]
}

/// The fake API server with the widgets registered.
async fn fake_kube() -> FakeKube {
    let fake = FakeKube::start().await;
    fake.register(ResourceDef::new("example.com", "v1", "Widget", "widgets", false));
    fake
}

/// `litecar ingest` caching `fake`'s pods, configmaps, namespaces and widgets, its REST listener on HTTPS with
/// JWT auth; once every first list is in: the process, its URL and the CA's file.
async fn litecar(fake: &FakeKube, dir: &Path) -> (Proc, String, std::path::PathBuf) {
    let (ca, cert, key) = tls_certificates();
    for (name, text) in [("ca.pem", ca.as_str()), ("tls.crt", &cert), ("tls.key", &key), ("jwt", SECRET)] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    std::fs::write(dir.join("upstream"), fake.kubeconfig()).unwrap();
    let (port, health) = (free_port(), free_port());
    let cfg = dir.join("litecar.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{health}\nwatchcache:\n  db: {db}\n  kubeconfig: {up}\n  resources:\n    - {{version: v1, kind: Pod}}\n    \
             - {{version: v1, kind: ConfigMap}}\n    - {{version: v1, kind: Namespace}}\n    \
             - {{group: example.com, version: v1, kind: Widget, plural: widgets}}\n\
             rest:\n  addr: 127.0.0.1:{port}\n  db: {db}\n  auth:\n    jwt-secret-file: {jwt}\n    \
             roles: {{reader: {{read-only: true}}}}\n  tls:\n    cert-file: {crt}\n    key-file: {key}\n",
            db = dir.join("k8s.db").display(),
            up = dir.join("upstream").display(),
            jwt = dir.join("jwt").display(),
            crt = dir.join("tls.crt").display(),
            key = dir.join("tls.key").display(),
        ),
    )
    .unwrap();
    let lc = Proc::spawn(&litecar_bin(), &["ingest", "-config", cfg.to_str().unwrap()], dir, &dir.join("litecar.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    // /readyz answers 200 once every store has its first list
    while tokio::task::spawn_blocking(move || http_get(health, "/readyz").0).await.unwrap() != 200 {
        assert!(Instant::now() < deadline, "litecar never finished its first lists: {}", lc.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (lc, format!("https://127.0.0.1:{port}"), dir.join("ca.pem"))
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
    let fake = fake_kube().await;
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
    for name in ["w1", "w2"] {
        fake.create(WIDGETS, json!({"metadata": {"name": name, "labels": {"size": "m"}}, "spec": {"teeth": 12}}))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_litecar, url, ca) = litecar(&fake, d).await;
    // from here on the fake's log holds kubectl's requests only
    fake.clear_requests();
    let token = hs256_token(SECRET, "reader");
    let (lc, up) = (setup(d, "litecar", &url, Some((&ca, &token))), setup(d, "fake", &fake.url(), None));

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
        // a cluster-scoped custom resource: no NAMESPACE column, its objects at the cluster path
        &["get", "widgets"],
        &["get", "widgets", "-A"],
        &["get", "widgets.example.com", "-o", "wide", "--show-labels"],
        &["get", "widget", "w1", "-o", "yaml"],
        &["get", "widgets", "-n", "b", "-o", "json"],
        &["get", "widget", "nope"],
        &["get", "--raw", "/apis/example.com/v1/namespaces/a/widgets"],
        &["get", "--raw", "/api/v1/pods/p1"],
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
        if args.contains(&"nope") || args.contains(&"--raw") {
            assert!(!l.status.success(), "{what} must fail");
        } else {
            assert!(l.status.success() && !lo.trim().is_empty(), "{what} printed nothing");
        }
    }
    // kubectl read the aggregated discovery documents from both and needed no per-version document
    let fresh = setup(d, "litecar-fresh", &url, Some((&ca, &token)));
    let out = run(&[fresh, vec!["-v=6".to_owned()]].concat(), &["get", "pods"]).await;
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(log.contains("/api?timeout") && log.contains("/apis?timeout"), "{log}");
    assert!(!log.contains("/api/v1?timeout"), "kubectl fell back to plain discovery: {log}");
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

    // a token litecar did not sign gets a 401, worded by kubectl as against the API server: discovery reads
    // only the status code, a request for objects the API server's Status
    let forged = hs256_token("another-secret-0123456789abcdef0123", "reader");
    let fresh = setup(d, "forged", &url, Some((&ca, &forged)));
    // the same kubeconfig with the discovery cache the good token filled: kubectl goes straight to the pods
    let cached: Vec<String> =
        fresh
            .iter()
            .map(|a| {
                if a.starts_with("--cache-dir=") {
                    lc.iter().find(|l| l.starts_with("--cache-dir=")).unwrap()
                } else {
                    a
                }
            })
            .cloned()
            .collect();
    for (args, why) in
        [(&fresh, "the server has asked for the client to provide credentials"), (&cached, "Unauthorized")]
    {
        let out = run(args, &["get", "pods"]).await;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a forged token succeeded");
        let want = format!("error: You must be logged in to the server ({why})");
        assert_eq!(err.lines().last(), Some(want.as_str()), "{err}");
    }
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
    let fake = fake_kube().await;
    fake.create(PODS, pod("a", "first", "web")).unwrap();
    fake.create(PODS, pod("b", "other", "web")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_litecar, url, ca) = litecar(&fake, d).await;
    let token = hs256_token(SECRET, "reader");
    let mut outputs = Vec::new();
    let mut children = Vec::new();
    for args in [setup(d, "litecar", &url, Some((&ca, &token))), setup(d, "fake", &fake.url(), None)] {
        let mut child = kubectl(&args)
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
}
