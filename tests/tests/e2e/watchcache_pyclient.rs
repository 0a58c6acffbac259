//! The Python `kubernetes` client (pinned by scripts/test) listing and watching litecar as an informer does,
//! through changes, an upstream 410 (litecar relists), and a litecar restart with a fresh database: its view
//! always converges on the source's, and no change is missed (tests/clients/kube_py_informer.py).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use litecar_e2e::fakekube::{FakeKube, PODS};
use litecar_e2e::free_port;
use litecar_watchcache::{Database, K8sApi, ResourceSpec, ResourceType, StoreConfig, ingest, router};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn pod(ns: &str, name: &str, generation: u32) -> Value {
    json!({"metadata": {"namespace": ns, "name": name, "labels": {"gen": generation.to_string()}},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
}

/// litecar with a fresh in-memory database caching `fake`'s pods, serving on 127.0.0.1:`port` until `cancel`.
async fn start(fake: &FakeKube, port: u16, cancel: &CancellationToken) {
    let db = Database::open(":memory:").unwrap();
    let rt = ResourceType::new("", "v1", "Pod");
    let store = db.store(rt.clone(), StoreConfig::default()).unwrap();
    store.await_first_list();
    tokio::spawn(ingest(fake.client(), vec![ResourceSpec { resource: rt, ..Default::default() }], db, cancel.clone()));
    let deadline = Instant::now() + Duration::from_secs(20);
    // the previous instance may still hold the port for a moment
    let listener = loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Ok(l) => break l,
            Err(e) => assert!(Instant::now() < deadline, "binding 127.0.0.1:{port}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let app = router(K8sApi::default().with("", "v1", "pods", store));
    let stop = cancel.clone();
    tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await });
}

/// The source's view: key -> labels.
fn source(fake: &FakeKube) -> BTreeMap<String, Value> {
    fake.objects(PODS)
        .into_iter()
        .map(|o| {
            let key =
                format!("{}/{}", o["metadata"]["namespace"].as_str().unwrap(), o["metadata"]["name"].as_str().unwrap());
            (key, o["metadata"]["labels"].clone())
        })
        .collect()
}

struct Client {
    child: std::process::Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    /// Every event kind seen, in order.
    seen: Vec<String>,
    view: BTreeMap<String, Value>,
}

impl Client {
    async fn converges(&mut self, what: &str, fake: &FakeKube) {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            if self.view == source(fake) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.lines.recv()).await {
                Ok(Some(l)) => {
                    self.seen.push(l["event"].as_str().unwrap_or_default().to_owned());
                    self.view = serde_json::from_value(l["view"].clone()).unwrap();
                }
                _ => panic!(
                    "{what}: the client's view {:?} never matched the source {:?}; events {:?}",
                    self.view,
                    source(fake),
                    self.seen
                ),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_view_follows_the_source_through_relists_and_restarts() {
    let fake = FakeKube::start().await;
    for i in 0..5 {
        fake.create(PODS, pod("a", &format!("p{i}"), 1)).unwrap();
    }
    let port = free_port();
    let mut cancel = CancellationToken::new();
    start(&fake, port, &cancel).await;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/kube_py_informer.py");
    let mut child = Command::new("python3")
        .arg(&script)
        .args([format!("http://127.0.0.1:{port}"), "90".into()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with kubernetes (pip install kubernetes; scripts/test does this)");
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(serde_json::from_str::<Value>(&l).unwrap()).is_err() {
                break;
            }
        }
    });
    let mut c = Client { child, lines, seen: Vec::new(), view: BTreeMap::new() };
    c.converges("the first list", &fake).await;

    for i in 0..3 {
        fake.create(PODS, pod("b", &format!("n{i}"), 1)).unwrap();
    }
    fake.update(PODS, pod("a", "p1", 2)).unwrap();
    fake.delete(PODS, Some("a"), "p0").unwrap();
    c.converges("changes", &fake).await;

    // an upstream 410: litecar relists, and the differences reach the client as events
    fake.faults(|f| {
        f.force_gone_next_watch = true;
        f.drop_watch_after = Some(1);
    });
    fake.create(PODS, pod("c", "after-gone", 1)).unwrap();
    fake.delete(PODS, Some("b"), "n0").unwrap();
    fake.update(PODS, pod("a", "p2", 3)).unwrap();
    c.converges("an upstream 410", &fake).await;
    fake.faults(|f| f.drop_watch_after = None);

    // litecar restarts with a fresh database while the source changes: the client's resume revision is older
    // than the new log, so it gets a 410 and lists again, and sees the changes it could not have watched
    let lists_before = c.seen.iter().filter(|e| *e == "LIST").count();
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
    fake.delete(PODS, Some("a"), "p3").unwrap();
    fake.create(PODS, pod("d", "while-down", 1)).unwrap();
    fake.update(PODS, pod("a", "p4", 4)).unwrap();
    cancel = CancellationToken::new();
    start(&fake, port, &cancel).await;
    c.converges("a litecar restart", &fake).await;
    assert!(c.seen.iter().filter(|e| *e == "LIST").count() > lists_before, "no relist after the restart: {:?}", c.seen);
    fake.create(PODS, pod("d", "after-restart", 1)).unwrap();
    fake.delete(PODS, Some("a"), "p1").unwrap();
    c.converges("changes after the restart", &fake).await;

    let _ = c.child.kill();
    let _ = c.child.wait();
    cancel.cancel();
}
