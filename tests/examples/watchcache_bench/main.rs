//! Watch-cache benchmark: N pods (~2 KB each) served by the fake API server, ingested by
//! `litecar_watchcache::ingest` (and by the `litecar ingest` binary), beside a kube-rs reflector `Store` holding
//! the same objects; then filtered, sorted pages of 100 through `Store::query`.
//!
//! Every contender runs in its own child process (this example re-executed with a mode argument, or the litecar
//! binary), so each peak RSS (VmHWM) is its own; the fake server lives in the parent.
//!
//!   cargo run --release -p litecar-e2e --example watchcache_bench [-- PODS [QUERIES]]
//!   cargo run --release -p litecar-e2e --example watchcache_bench -- fanout [PODS [WATCHERS [EVENTS [PER_S]]]]
//!
//! Defaults: 100000 pods, 400 queries; `fanout` (see `fanout.rs`): 100000 pods, 1000 watchers, 200 changes at
//! 20/s. Scratch files go to /tmp/litecar-bench-watchcache-* (removed at the end).
#![allow(clippy::unwrap_used)]

mod fanout;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use litecar_e2e::fakekube::{FakeKube, PODS};
use litecar_watchcache::{Database, ListOptions, ResourceSpec, ResourceType, StoreConfig, ingest};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NAMESPACES: usize = 20;
const NODES: usize = 50;
const APPS: usize = 200;
const PHASES: [&str; 4] = ["Running", "Running", "Running", "Pending"];

fn pod(i: usize) -> Value {
    let ns = format!("ns-{}", i % NAMESPACES);
    let app = format!("app-{}", i % APPS);
    let name = format!("{app}-{:06}-x{:04x}", i, (i * 2654435761) & 0xffff);
    let node = format!("node-{:02}", (i / 7) % NODES);
    let phase = PHASES[i % PHASES.len()];
    let ts = format!("2026-11-{:02}T{:02}:{:02}:{:02}Z", 1 + i % 28, (i / 60) % 24, (i / 3) % 60, i % 60);
    let container = |n: &str, image: &str| {
        json!({
            "name": n, "image": image, "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
            "env": [{"name": "APP", "value": app}, {"name": "POD_INDEX", "value": i.to_string()},
                    {"name": "LOG_LEVEL", "value": "info"}],
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                              "readOnly": true}],
            "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"
        })
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "namespace": ns, "name": name, "creationTimestamp": ts,
            "generateName": format!("{app}-{:06}-", i),
            "labels": {"app": app, "pod-template-hash": format!("{:08x}", i % 997 * 7919),
                       "tier": if i.is_multiple_of(2) { "web" } else { "worker" }},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-11-01T00:00:00Z",
                            "prometheus.io/scrape": "true", "prometheus.io/port": "8080"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{app}-{:08x}", i % 997),
                                 "uid": format!("{:08x}-0000-4000-8000-{:012x}", i % 997, i % 997),
                                 "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [container("main", "registry.example.com/team/app:v1.2.3")],
            "nodeName": node, "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "schedulerName": "default-scheduler",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                             "tolerationSeconds": 300}]
        },
        "status": {
            "phase": phase, "hostIP": format!("10.0.{}.{}", (i / 7) % NODES, 10), "podIP": format!("10.244.{}.{}", (i / 250) % 250, i % 250),
            "qosClass": "Burstable", "startTime": ts,
            "conditions": [
                {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
                {"type": "Ready", "status": if phase == "Running" { "True" } else { "False" }, "lastTransitionTime": ts},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": ts},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts}
            ],
            "containerStatuses": [
                {"name": "main", "ready": true, "restartCount": 0, "image": "registry.example.com/team/app:v1.2.3",
                 "imageID": format!("registry.example.com/team/app@sha256:{:064x}", i % 13),
                 "containerID": format!("containerd://{:064x}", i), "started": true,
                 "state": {"running": {"startedAt": ts}}}
            ]
        }
    })
}

fn client(url: &str) -> kube::Client {
    kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

/// User + system CPU seconds of `pid` ("self") so far.
fn cpu_s(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // fields after the command name (which may hold spaces) start at state, field 3; utime and stime are 14, 15
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// (VmHWM, VmRSS, RssAnon, RssFile) in kB for `pid` ("self" for this process).
fn mem(pid: &str) -> [u64; 4] {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let get = |k: &str| {
        s.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    [get("VmHWM:"), get("VmRSS:"), get("RssAnon:"), get("RssFile:")]
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn pod_spec() -> ResourceSpec {
    ResourceSpec {
        resource: ResourceType::new("", "v1", "Pod"),
        fields: vec!["spec.nodeName".into(), "status.phase".into()],
        ..Default::default()
    }
}

/// Child: the library ingester into a file database, then queries.
async fn child_ingest(url: &str, db_path: &str, n: usize, queries: usize) -> Value {
    let t0 = Instant::now();
    let db = Database::open(db_path).unwrap();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(ingest(client(url), vec![pod_spec()], db.clone(), cancel.clone()));
    let store = db.store(ResourceType::new("", "v1", "Pod"), StoreConfig::default()).unwrap();
    loop {
        let s = store.clone();
        if tokio::task::spawn_blocking(move || s.len().unwrap()).await.unwrap() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ingest_s = t0.elapsed().as_secs_f64();
    let cpu = cpu_s("self");
    let [hwm, rss, anon, file] = mem("self");
    cancel.cancel();
    task.await.unwrap().unwrap();

    // queries: varying filters, sorted, pages of 100
    let mut kinds: Vec<(&str, Vec<String>)> = vec![
        ("namespace, sort -name", (0..NAMESPACES).map(|k| format!("filter=metadata.namespace=ns-{k}&sort=-metadata.name&pagesize=100")).collect()),
        ("namespace, sort -name, page 7", (0..NAMESPACES).map(|k| format!("filter=metadata.namespace=ns-{k}&sort=-metadata.name&pagesize=100&page=7")).collect()),
        ("namespace, sort creationTimestamp", (0..NAMESPACES).map(|k| format!("filter=metadata.namespace=ns-{k}&sort=metadata.creationTimestamp&pagesize=100")).collect()),
        ("name contains, sort name", (0..NAMESPACES).map(|k| format!("filter=metadata.name~-{k:03}&sort=metadata.name&pagesize=100")).collect()),
        ("label app=, sort -name", (0..NAMESPACES).map(|k| format!("filter=metadata.labels[app]=app-{}&sort=-metadata.name&pagesize=100", k * 7)).collect()),
        ("namespace + label, sort name", (0..NAMESPACES).map(|k| format!("filter=metadata.namespace=ns-{k}&filter=metadata.labels[tier]=web&sort=metadata.name&pagesize=100")).collect()),
        ("field spec.nodeName=, sort -name", (0..NAMESPACES).map(|k| format!("filter=spec.nodeName=node-{:02}&sort=-metadata.name&pagesize=100", k * 2)).collect()),
        ("namespace + status.phase, sort name", (0..NAMESPACES).map(|k| format!("filter=metadata.namespace=ns-{k}&filter=status.phase=Pending&sort=metadata.name&pagesize=100")).collect()),
    ];
    // warm-up: one pass
    for (_, qs) in &kinds {
        for q in qs {
            store.query(&ListOptions::parse_query(q).unwrap()).unwrap();
        }
    }
    let mut all = Vec::new();
    let mut per_kind = Vec::new();
    let rounds = queries.div_ceil(kinds.len() * NAMESPACES).max(1);
    for (kind, qs) in &mut kinds {
        let mut lat = Vec::new();
        let mut returned = 0;
        for _ in 0..rounds {
            for q in qs.iter() {
                let o = ListOptions::parse_query(q).unwrap();
                let t = Instant::now();
                let r = store.query(&o).unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                returned += r.items.len();
            }
        }
        all.extend_from_slice(&lat);
        lat.sort_by(f64::total_cmp);
        per_kind.push(json!({"kind": kind, "n": lat.len(), "avg_items": returned / lat.len(),
            "p50_ms": pct(&lat, 0.5), "p99_ms": pct(&lat, 0.99), "max_ms": lat[lat.len() - 1], "example": qs[0]}));
    }
    // p50/p99 over every shape together
    all.sort_by(f64::total_cmp);
    json!({"mode": "ingest", "objects": n, "ingest_s": ingest_s, "objects_per_s": n as f64 / ingest_s, "cpu_s": cpu,
           "vm_hwm_kb": hwm, "vm_rss_kb": rss, "rss_anon_kb": anon, "rss_file_kb": file,
           "queries": all.len(), "query_p50_ms": pct(&all, 0.5), "query_p99_ms": pct(&all, 0.99),
           "query_max_ms": all[all.len() - 1], "per_kind": per_kind})
}

/// Child: a kube-rs reflector Store over Api<Pod> (typed) or Api<DynamicObject>.
async fn child_reflector(url: &str, n: usize, dynamic: bool) -> Value {
    let t0 = Instant::now();
    let c = client(url);
    let len: Box<dyn Fn() -> usize + Send>;
    let task = if dynamic {
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", "Pod"));
        let api: Api<DynamicObject> = Api::all_with(c, &ar);
        let writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
        let reader = writer.as_reader();
        let stream = reflector(writer, watcher(api, watcher::Config::default()).default_backoff()).applied_objects();
        len = Box::new(move || reader.len());
        tokio::spawn(stream.for_each(|_| async {}))
    } else {
        let api: Api<Pod> = Api::all(c);
        let (reader, writer) = reflector::store();
        let stream = reflector(writer, watcher(api, watcher::Config::default()).default_backoff()).applied_objects();
        len = Box::new(move || reader.len());
        tokio::spawn(stream.for_each(|_| async {}))
    };
    while len() < n {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_s("self");
    let [hwm, rss, anon, file] = mem("self");
    task.abort();
    json!({"mode": if dynamic { "reflector-dynamic" } else { "reflector-pod" }, "objects": n, "ingest_s": secs,
           "objects_per_s": n as f64 / secs, "cpu_s": cpu, "vm_hwm_kb": hwm, "vm_rss_kb": rss, "rss_anon_kb": anon, "rss_file_kb": file})
}

async fn run_child(args: &[String]) -> Value {
    let exe = std::env::current_exe().unwrap();
    // a child that stops making progress (e.g. a client whose connection pool broke) must not hang the run
    let out = tokio::time::timeout(
        Duration::from_secs(600),
        tokio::process::Command::new(exe).args(args).kill_on_drop(true).output(),
    )
    .await
    .unwrap_or_else(|_| panic!("child {args:?} did not finish in 600 s"))
    .unwrap();
    assert!(
        out.status.success(),
        "child {args:?} failed: {:?}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find_map(|l| l.strip_prefix("RESULT ")).unwrap_or_else(|| panic!("no result: {text}"));
    serde_json::from_str(line).unwrap()
}

/// The `litecar ingest` binary against the fake: time until its database holds n pods, and its VmHWM then.
async fn run_binary(fake: &FakeKube, url: &str, dir: &Path, n: usize) -> Value {
    let bin = std::env::var_os("LITECAR_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/litecar"));
    let db = dir.join("bin.db");
    let kc = dir.join("kubeconfig");
    std::fs::write(&kc, fake.kubeconfig().replace(&fake.url(), url)).unwrap();
    let cfg = dir.join("litecar.yml");
    std::fs::write(
        &cfg,
        format!(
            "logging:\n  level: warn\nwatchcache:\n  db: {}\n  kubeconfig: {}\n  resources:\n    - {{version: v1, kind: Pod, fields: [spec.nodeName, status.phase]}}\n",
            db.display(),
            kc.display()
        ),
    )
    .unwrap();
    let t0 = Instant::now();
    let mut child = tokio::process::Command::new(&bin)
        .args(["ingest", "-config", cfg.to_str().unwrap()])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap().to_string();
    let count = || -> Option<usize> {
        let c = rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        let t: String = c
            // the view of the live generation (a relist fills the other one, unseen)
            .query_row("SELECT name FROM sqlite_master WHERE type='view' AND name LIKE '%_objects'", [], |r| r.get(0))
            .ok()?;
        c.query_row(&format!(r#"SELECT count(*) FROM "{t}""#), [], |r| r.get::<_, i64>(0)).ok().map(|n| n as usize)
    };
    loop {
        assert!(child.try_wait().unwrap().is_none(), "litecar ingest exited");
        if count().unwrap_or(0) >= n {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(300), "litecar ingest too slow");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_s(&pid);
    let [hwm, rss, anon, file] = mem(&pid);
    let _ = child.start_kill();
    let _ = child.wait().await;
    json!({"mode": "litecar-ingest-binary", "objects": n, "ingest_s": secs, "objects_per_s": n as f64 / secs, "cpu_s": cpu,
           "vm_hwm_kb": hwm, "vm_rss_kb": rss, "rss_anon_kb": anon, "rss_file_kb": file})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("child-ingest") => {
            let r = child_ingest(&args[1], &args[2], args[3].parse().unwrap(), args[4].parse().unwrap()).await;
            println!("RESULT {r}");
            return;
        }
        Some("child-serve") => return fanout::child_serve(&args[1], &args[2]).await,
        Some("fanout") => return fanout::run(&args[1..]).await,
        Some(m @ ("child-reflector-pod" | "child-reflector-dynamic")) => {
            let r = child_reflector(&args[1], args[2].parse().unwrap(), m.ends_with("dynamic")).await;
            println!("RESULT {r}");
            return;
        }
        _ => {}
    }
    let n: usize = args.first().map(|s| s.parse().unwrap()).unwrap_or(100_000);
    let queries: usize = args.get(1).map(|s| s.parse().unwrap()).unwrap_or(400);
    let dir = tempfile::Builder::new().prefix("litecar-bench-watchcache-").tempdir_in("/tmp").unwrap();

    let fake = FakeKube::start().await;
    let t = Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        let p = pod(i);
        bytes += p.to_string().len();
        fake.create(PODS, p).unwrap();
    }
    let stored = fake.objects(PODS);
    let avg = stored.iter().take(1000).map(|p| p.to_string().len()).sum::<usize>() / stored.len().min(1000);
    drop(stored);
    // check the typed Pod accepts the generated objects
    let _: Pod = serde_json::from_value(pod(1)).unwrap();
    eprintln!(
        "fake: {n} pods created in {:.1} s, {:.0} bytes each as generated, {avg} bytes as served (with uid, rv)",
        t.elapsed().as_secs_f64(),
        bytes as f64 / n as f64
    );
    // the fake serves list pages from objects encoded once per write, as the API server's watch cache does
    let url = fake.url();
    let mut results = Vec::new();
    for mode in ["child-ingest", "child-reflector-pod", "child-reflector-dynamic"] {
        let mut a = vec![mode.to_owned(), url.clone()];
        if mode == "child-ingest" {
            a.push(dir.path().join("lib.db").to_str().unwrap().to_owned());
        }
        a.push(n.to_string());
        if mode == "child-ingest" {
            a.push(queries.to_string());
        }
        let r = run_child(&a).await;
        eprintln!("{}", serde_json::to_string(&r).unwrap());
        results.push(r);
    }
    let r = run_binary(&fake, &url, dir.path(), n).await;
    eprintln!("{}", serde_json::to_string(&r).unwrap());
    results.push(r);
    let db_mb = std::fs::metadata(dir.path().join("lib.db")).map(|m| m.len()).unwrap_or(0) as f64 / 1e6;

    println!("\n{n} pods, ~{avg} B each as served; library database {db_mb:.0} MB (+ WAL)");
    println!(
        "{:<24} {:>8} {:>10} {:>8} {:>10} {:>10} {:>10}",
        "mode", "time s", "objects/s", "CPU s", "VmHWM MB", "RssAnon MB", "RssFile MB"
    );
    for r in &results {
        println!(
            "{:<24} {:>8.2} {:>10.0} {:>8.2} {:>10.1} {:>10.1} {:>10.1}",
            r["mode"].as_str().unwrap(),
            r["ingest_s"].as_f64().unwrap(),
            r["objects_per_s"].as_f64().unwrap(),
            r["cpu_s"].as_f64().unwrap(),
            r["vm_hwm_kb"].as_f64().unwrap() / 1024.0,
            r["rss_anon_kb"].as_f64().unwrap() / 1024.0,
            r["rss_file_kb"].as_f64().unwrap() / 1024.0,
        );
    }
    let q = &results[0];
    println!(
        "\nStore::query, pages of 100: {} queries, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        q["queries"],
        q["query_p50_ms"].as_f64().unwrap(),
        q["query_p99_ms"].as_f64().unwrap(),
        q["query_max_ms"].as_f64().unwrap()
    );
    for k in q["per_kind"].as_array().unwrap() {
        println!(
            "  {:<38} n={:<4} items~{:<4} p50 {:>8.2} ms  p99 {:>8.2} ms   e.g. {}",
            k["kind"].as_str().unwrap(),
            k["n"],
            k["avg_items"],
            k["p50_ms"].as_f64().unwrap(),
            k["p99_ms"].as_f64().unwrap(),
            k["example"].as_str().unwrap()
        );
    }
    println!("RESULTS {}", serde_json::to_string(&results).unwrap());
    // BENCH_KEEP=1 keeps the databases for a look with sqlite3 (EXPLAIN QUERY PLAN)
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
}
