//! The ingester against the fake API server: adds, updates, deletes, forced relists, dropped streams, restarts,
//! 5xx and latency faults; the store must converge to the fake's state every time.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use litecar_e2e::fakekube::{CONFIGMAPS, FakeKube, PODS, SECRETS};
use litecar_watchcache::{Database, ResourceSpec, ResourceType, Store, StoreConfig, ingest};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

fn specs() -> Vec<ResourceSpec> {
    vec![
        ResourceSpec { resource: ResourceType::new("", "v1", "Pod"), ..Default::default() },
        ResourceSpec { resource: ResourceType::new("", "v1", "ConfigMap"), ..Default::default() },
        ResourceSpec { resource: ResourceType::new("", "v1", "Secret"), ..Default::default() },
    ]
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<litecar_watchcache::Result<()>>,
    db: Database,
}

impl Running {
    fn start(fake: &FakeKube, path: &Path, specs: Vec<ResourceSpec>) -> Self {
        let db = Database::open(path).unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(ingest(fake.client(), specs, db.clone(), cancel.clone()));
        Self { cancel, task, db }
    }

    fn store(&self, kind: &str) -> Store {
        self.db.store(ResourceType::new("", "v1", kind), StoreConfig::default()).unwrap()
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.unwrap().unwrap().unwrap();
    }
}

/// key -> resourceVersion
fn versions(items: &[Value]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|o| {
            let m = &o["metadata"];
            let key = match m["namespace"].as_str() {
                Some(ns) => format!("{ns}/{}", m["name"].as_str().unwrap()),
                None => m["name"].as_str().unwrap().to_owned(),
            };
            (key, m["resourceVersion"].as_str().unwrap().to_owned())
        })
        .collect()
}

async fn converges(fake: &FakeKube, store: &Store, resource: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let want = versions(&fake.objects(resource));
        let s = store.clone();
        let got = versions(&tokio::task::spawn_blocking(move || s.list().unwrap()).await.unwrap());
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "{resource}: store {got:?} never matched the fake {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod(ns: &str, name: &str, v: &str) -> Value {
    json!({"metadata": {"namespace": ns, "name": name, "labels": {"v": v}}, "spec": {"containers": []}})
}

fn lists(fake: &FakeKube) -> usize {
    fake.requests().iter().filter(|r| r.is_list() && r.path.ends_with("/pods")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_changes_relists_after_410_and_survives_dropped_streams() {
    let fake = FakeKube::start().await;
    fake.faults(|f| f.bookmark_interval = Duration::from_millis(100));
    for i in 0..5 {
        fake.create(PODS, pod("a", &format!("p{i}"), "1")).unwrap();
    }
    fake.create(CONFIGMAPS, json!({"metadata": {"namespace": "a", "name": "cm"}, "data": {"k": "v"}})).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&fake, &dir.path().join("k8s.db"), specs());
    let pods = run.store("Pod");
    converges(&fake, &pods, PODS).await;
    converges(&fake, &run.store("ConfigMap"), CONFIGMAPS).await;
    let start = pods.last_resource_version().unwrap();
    // the log starts at the first list: it cannot prove anything older complete
    assert!(matches!(pods.list_since(start - 1), Err(litecar_watchcache::Error::Expired { .. })));

    // adds, updates, deletes
    fake.create(PODS, pod("b", "new", "1")).unwrap();
    let mut p1 = fake.objects(PODS).into_iter().find(|p| p["metadata"]["name"] == "p1").unwrap();
    p1["metadata"]["labels"]["v"] = json!("2");
    fake.update(PODS, p1).unwrap();
    fake.delete(PODS, Some("a"), "p2").unwrap();
    converges(&fake, &pods, PODS).await;
    assert_eq!(pods.get_by_key("a/p1").unwrap().unwrap()["metadata"]["labels"]["v"], "2");
    assert!(pods.get_by_key("a/p2").unwrap().is_none());

    // dropped streams: every watch closes after one event; the ingester re-watches and misses nothing
    fake.faults(|f| f.drop_watch_after = Some(1));
    for i in 0..6 {
        fake.create(PODS, pod("c", &format!("d{i}"), "1")).unwrap();
    }
    fake.delete(PODS, Some("a"), "p3").unwrap();
    converges(&fake, &pods, PODS).await;
    fake.faults(|f| f.drop_watch_after = None);

    // forced 410: the next watch is Expired, so the ingester must relist; a delete it only learns from the list
    let before = lists(&fake);
    fake.faults(|f| {
        f.force_gone_next_watch = true;
        f.drop_watch_after = Some(1);
    });
    fake.create(PODS, pod("d", "trigger", "1")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while lists(&fake) == before {
        assert!(Instant::now() < deadline, "no relist after a 410");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fake.faults(|f| f.drop_watch_after = None);
    fake.delete(PODS, Some("a"), "p4").unwrap();
    converges(&fake, &pods, PODS).await;
    // the event log saw every change, in order
    let log = pods.list_since(start).unwrap();
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq && w[0].rv < w[1].rv), "{log:?}");
    assert!(log.iter().any(|e| e.key == "a/p4" && e.kind == litecar_watchcache::EventType::Deleted));
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_persisted_revision_without_listing() {
    let fake = FakeKube::start().await;
    fake.create(PODS, pod("a", "one", "1")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k8s.db");
    let specs = || vec![ResourceSpec { resource: ResourceType::new("", "v1", "Pod"), ..Default::default() }];
    let run = Running::start(&fake, &path, specs());
    converges(&fake, &run.store("Pod"), PODS).await;
    fake.create(PODS, pod("a", "two", "1")).unwrap();
    converges(&fake, &run.store("Pod"), PODS).await;
    run.stop().await;

    // changes while the ingester is down
    fake.create(PODS, pod("a", "three", "1")).unwrap();
    fake.delete(PODS, Some("a"), "one").unwrap();
    fake.clear_requests();
    let run = Running::start(&fake, &path, specs());
    converges(&fake, &run.store("Pod"), PODS).await;
    let reqs = fake.requests();
    assert_eq!(lists(&fake), 0, "restart listed: {reqs:?}");
    assert!(reqs.iter().any(|r| r.is_watch()));
    run.stop().await;

    // a compacted revision cannot be resumed: one relist, and the result is still right
    fake.create(PODS, pod("a", "four", "1")).unwrap();
    fake.compact();
    fake.delete(PODS, Some("a"), "two").unwrap();
    fake.compact();
    fake.clear_requests();
    let run = Running::start(&fake, &path, specs());
    converges(&fake, &run.store("Pod"), PODS).await;
    assert!(lists(&fake) >= 1);
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_5xx_and_latency() {
    let fake = FakeKube::start().await;
    fake.create(PODS, pod("a", "one", "1")).unwrap();
    fake.faults(|f| {
        f.fail_next = 3;
        f.latency = Duration::from_millis(150);
    });
    let dir = tempfile::tempdir().unwrap();
    let specs = vec![ResourceSpec { resource: ResourceType::new("", "v1", "Pod"), ..Default::default() }];
    let run = Running::start(&fake, &dir.path().join("k8s.db"), specs);
    converges(&fake, &run.store("Pod"), PODS).await;
    fake.create(PODS, pod("a", "two", "1")).unwrap();
    converges(&fake, &run.store("Pod"), PODS).await;
    let failed_then_listed = fake.requests().iter().filter(|r| r.is_list()).count();
    assert!(failed_then_listed >= 4, "expected 3 failed lists and a good one, saw {failed_then_listed}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_stripped_unless_kept() {
    let fake = FakeKube::start().await;
    fake.create(SECRETS, json!({"metadata": {"namespace": "a", "name": "s"}, "data": {"k": "dg=="}, "type": "Opaque"}))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&fake, &dir.path().join("stripped.db"), specs());
    converges(&fake, &run.store("Secret"), SECRETS).await;
    let s = run.store("Secret").get_by_key("a/s").unwrap().unwrap();
    assert!(s.get("data").is_none(), "{s}");
    assert_eq!(s["type"], "Opaque");
    run.stop().await;
    let kept = vec![ResourceSpec {
        resource: ResourceType::new("", "v1", "Secret"),
        keep_secret_data: true,
        ..Default::default()
    }];
    let run = Running::start(&fake, &dir.path().join("kept.db"), kept);
    converges(&fake, &run.store("Secret"), SECRETS).await;
    assert_eq!(run.store("Secret").get_by_key("a/s").unwrap().unwrap()["data"]["k"], "dg==");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cache_refuses_revisions_it_cannot_prove_and_persists_the_list_revision() {
    let fake = FakeKube::start().await;
    // another resource moves the API's revision, so the list's revision is newer than any pod's
    fake.create(PODS, pod("a", "one", "1")).unwrap();
    fake.create(PODS, pod("a", "two", "1")).unwrap();
    fake.create(CONFIGMAPS, json!({"metadata": {"namespace": "a", "name": "cm"}})).unwrap();
    let pods_only = || vec![ResourceSpec { resource: ResourceType::new("", "v1", "Pod"), ..Default::default() }];
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&fake, &dir.path().join("k8s.db"), pods_only());
    let pods = run.store("Pod");
    converges(&fake, &pods, PODS).await;
    // the resume point is the list's resourceVersion, not the newest pod's
    let listed = fake.resource_version();
    let deadline = Instant::now() + Duration::from_secs(10);
    while pods.meta("resume_rv").unwrap() != Some(listed.to_string()) {
        assert!(Instant::now() < deadline, "resume_rv {:?}, list was at {listed}", pods.meta("resume_rv"));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(pods.last_resource_version().unwrap(), listed);
    run.stop().await;

    // an in-memory cache starts without history: a client's revision from before is Expired once a change
    // it would have missed happened, never answered with ADDED events alone
    let old = listed;
    fake.delete(PODS, Some("a"), "one").unwrap();
    let run = Running::start(&fake, Path::new(":memory:"), pods_only());
    let pods = run.store("Pod");
    converges(&fake, &pods, PODS).await;
    assert!(pods.is_ready().unwrap());
    assert!(matches!(pods.list_since(old), Err(litecar_watchcache::Error::Expired { .. })));
    let now = pods.last_resource_version().unwrap();
    assert!(pods.list_since(now).unwrap().is_empty());
    run.stop().await;
}
