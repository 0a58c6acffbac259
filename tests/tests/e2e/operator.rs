//! litecar-operator against the fake Kubernetes API server: a SqliteDatabase becomes owned objects, follows spec
//! changes, reports a broken Secret as Degraded and a fixed one as Ready, and on deletion its finalizer runs and
//! the objects go while the claim stays; two operators elect one leader.

use std::path::Path;
use std::time::Duration;

use litecar_e2e::fakekube::{FakeKube, SECRETS};
use litecar_e2e::{Proc, eventually, free_port, http_get, operator_bin};
use serde_json::{Value, json};

const DBS: &str = "database.sqlite.io/v1alpha1/sqlitedatabases";
const PVCS: &str = "v1/persistentvolumeclaims";
const CONFIGMAPS: &str = "v1/configmaps";
const DEPLOYMENTS: &str = "apps/v1/deployments";
const SERVICES: &str = "v1/services";
const INGRESSES: &str = "networking.k8s.io/v1/ingresses";
const EVENTS: &str = "events.k8s.io/v1/events";
const LEASES: &str = "coordination.k8s.io/v1/leases";
const WAIT: Duration = Duration::from_secs(20);

fn find(fake: &FakeKube, resource: &str, name: &str) -> Option<Value> {
    fake.objects(resource).into_iter().find(|o| o["metadata"]["name"] == name)
}

fn condition(db: &Value, kind: &str) -> Value {
    db["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind)
        .cloned()
        .unwrap_or(Value::Null)
}

fn secret(name: &str, keys: &[&str]) -> Value {
    let data: serde_json::Map<String, Value> = keys.iter().map(|k| (k.to_string(), json!("c2VjcmV0"))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}, "data": data})
}

fn database() -> Value {
    json!({
        "apiVersion": "database.sqlite.io/v1alpha1", "kind": "SqliteDatabase",
        "metadata": {"name": "shop", "namespace": "default"},
        "spec": {
            "database": {"name": "shop.db", "storage": {"size": "1Gi", "accessMode": "ReadWriteOnce"}},
            "litestream": {"enabled": true, "replicas": [{"type": "s3", "bucket": "b", "path": "shop",
                "credentials": {"secretName": "s3-credentials"}}]},
            "sqliteRest": {"enabled": true, "port": 8080, "authSecret": "jwt", "allowedTables": ["users"],
                "metrics": {"enabled": true, "port": 8081}},
            "ingress": {"enabled": true, "host": "shop.example.com"},
        },
    })
}

struct Operator {
    proc: Proc,
    metrics: u16,
}

fn operator(fake: &FakeKube, dir: &Path, identity: &str) -> Operator {
    let cfg = dir.join("kubeconfig");
    std::fs::write(&cfg, fake.kubeconfig()).expect("kubeconfig");
    let metrics = free_port();
    let args = [
        "run".to_owned(),
        "--image=litecar:test".into(),
        format!("--metrics-addr=127.0.0.1:{metrics}"),
        "--lease-namespace=default".into(),
        format!("--identity={identity}"),
        "--lease-duration=2s".into(),
        "--recheck-interval=1s".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let env = [("KUBECONFIG".to_owned(), cfg.display().to_string())];
    let proc = Proc::spawn_with_env(&operator_bin(), &args, dir, &dir.join(format!("{identity}.log")), &env);
    Operator { proc, metrics }
}

/// The operator's counter for `result`, 0 when it never reconciled.
fn reconciles(op: &Operator, result: &str) -> u64 {
    let (_, body) = http_get(op.metrics, "/metrics");
    let prefix = format!("litecar_operator_reconcile_total{{result=\"{result}\"}} ");
    body.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn holder(fake: &FakeKube) -> Option<String> {
    find(fake, LEASES, "litecar-operator").and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlitedatabase_is_applied_followed_degraded_repaired_and_deleted() {
    let fake = FakeKube::start().await;
    fake.register_operator_kinds();
    let dir = tempfile::tempdir().expect("tempdir");
    fake.create(SECRETS, secret("s3-credentials", &["access-key", "secret-key"])).expect("secret");
    fake.create(SECRETS, secret("jwt", &["token"])).expect("secret");
    let op = operator(&fake, dir.path(), "op-a");
    let uid = fake.create(DBS, database()).expect("create")["metadata"]["uid"].as_str().expect("uid").to_owned();

    let log = || op.proc.log_text();
    eventually(WAIT, "the objects", || find(&fake, INGRESSES, "shop-ingress").is_some());
    for (resource, name) in
        [(CONFIGMAPS, "shop-litecar"), (DEPLOYMENTS, "shop"), (SERVICES, "shop-service"), (INGRESSES, "shop-ingress")]
    {
        let o = find(&fake, resource, name).unwrap_or_else(|| panic!("{name} missing; log:\n{}", log()));
        assert_eq!(o["metadata"]["ownerReferences"][0]["uid"], uid.as_str(), "{name}: {o}");
        assert_eq!(o["metadata"]["managedFields"][0]["manager"], "litecar-operator", "{name}: applied server-side");
    }
    let pvc = find(&fake, PVCS, "shop-db-storage").expect("claim");
    assert!(pvc["metadata"]["ownerReferences"].is_null(), "the claim is not owned, so it outlives the resource");
    let db = find(&fake, DBS, "shop").expect("db");
    assert_eq!(db["metadata"]["finalizers"], json!(["database.sqlite.io/finalizer"]));
    eventually(WAIT, "observedGeneration 1", || {
        find(&fake, DBS, "shop").is_some_and(|d| d["status"]["observedGeneration"] == 1)
    });
    let db = find(&fake, DBS, "shop").expect("db");
    assert_eq!(condition(&db, "Ready")["status"], "False", "waiting for the pod: {db}");
    assert_eq!(db["status"]["phase"], "Pending");

    // The deployment controller reports the pod ready.
    fake.set_status(DEPLOYMENTS, "default", "shop", json!({"replicas": 1, "readyReplicas": 1})).expect("status");
    eventually(WAIT, "Ready", || find(&fake, DBS, "shop").is_some_and(|d| condition(&d, "Ready")["status"] == "True"));
    let db = find(&fake, DBS, "shop").expect("db");
    assert_eq!(db["status"]["phase"], "Running");
    assert_eq!(condition(&db, "Replicating")["status"], "True");
    assert_eq!(db["status"]["endpoints"]["rest"], "http://shop-service.default.svc:8080");

    // A spec change: a table more, no Ingress.
    let mut changed = db.clone();
    changed["spec"]["sqliteRest"]["allowedTables"] = json!(["users", "orders"]);
    changed["spec"]["ingress"]["enabled"] = json!(false);
    fake.update(DBS, changed).expect("update");
    eventually(WAIT, "the Ingress to go", || find(&fake, INGRESSES, "shop-ingress").is_none());
    eventually(WAIT, "the new config", || {
        find(&fake, CONFIGMAPS, "shop-litecar")
            .is_some_and(|c| c["data"]["litecar.yml"].as_str().unwrap_or("").contains("orders"))
    });
    eventually(WAIT, "observedGeneration 2", || {
        find(&fake, DBS, "shop").is_some_and(|d| d["status"]["observedGeneration"] == 2)
    });

    // A broken Secret: Degraded, naming the Secret, the key and the field; no crash loop.
    let mut broken = find(&fake, SECRETS, "s3-credentials").expect("secret");
    broken["data"] = json!({"access-key": "YQ=="});
    fake.update(SECRETS, broken).expect("break the secret");
    eventually(WAIT, "Degraded", || {
        find(&fake, DBS, "shop").is_some_and(|d| condition(&d, "Degraded")["status"] == "True")
    });
    let db = find(&fake, DBS, "shop").expect("db");
    let degraded = condition(&db, "Degraded");
    assert_eq!(degraded["reason"], "SecretMissing");
    let message = degraded["message"].as_str().unwrap_or_default();
    assert!(message.contains("default/s3-credentials") && message.contains("secret-key"), "{message}");
    assert!(message.contains("spec.litestream.replicas[0].credentials.secretKeyField"), "{message}");
    assert_eq!(condition(&db, "Ready")["status"], "False");
    eventually(WAIT, "a Warning event", || {
        fake.objects(EVENTS)
            .iter()
            .any(|e| e["reason"] == "SecretMissing" && e["type"] == "Warning" && e["regarding"]["name"] == "shop")
    });

    // Fixed: Ready again.
    fake.update(SECRETS, {
        let mut s = find(&fake, SECRETS, "s3-credentials").expect("secret");
        s["data"] = secret("x", &["access-key", "secret-key"])["data"].clone();
        s
    })
    .expect("fix the secret");
    eventually(WAIT, "Ready after the fix", || {
        find(&fake, DBS, "shop").is_some_and(|d| {
            condition(&d, "Ready")["status"] == "True" && condition(&d, "Degraded")["status"] == "False"
        })
    });
    assert!(reconciles(&op, "ok") > 0 && reconciles(&op, "degraded") > 0, "{}", http_get(op.metrics, "/metrics").1);
    assert_eq!(http_get(op.metrics, "/healthz").0, 200);
    assert_eq!(http_get(op.metrics, "/readyz").0, 200);

    // Deleted: the finalizer runs, the owned objects go, the claim stays.
    fake.delete(DBS, Some("default"), "shop").expect("delete");
    eventually(WAIT, "the resource to go", || find(&fake, DBS, "shop").is_none());
    for (resource, name) in [(CONFIGMAPS, "shop-litecar"), (DEPLOYMENTS, "shop"), (SERVICES, "shop-service")] {
        assert!(find(&fake, resource, name).is_none(), "{name} is still there");
    }
    assert!(find(&fake, PVCS, "shop-db-storage").is_some(), "the claim is kept");
    assert!(fake.objects(EVENTS).iter().any(|e| e["reason"] == "Deleting"), "a Deleting event");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_operators_elect_one_leader_and_the_other_takes_over() {
    let fake = FakeKube::start().await;
    fake.register_operator_kinds();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ops = [operator(&fake, dir.path(), "op-a"), operator(&fake, dir.path(), "op-b")];
    eventually(WAIT, "a lease holder", || holder(&fake).is_some());
    let first = holder(&fake).expect("holder");
    let (leader, standby) = if first == "op-a" { (0, 1) } else { (1, 0) };
    let mut db = database();
    db["spec"] = json!({"sqliteRest": {"enabled": true, "authSecret": "jwt"}});
    fake.create(SECRETS, secret("jwt", &["token"])).expect("secret");
    fake.create(DBS, db.clone()).expect("create");
    eventually(WAIT, "the leader to apply", || find(&fake, CONFIGMAPS, "shop-litecar").is_some());
    std::thread::sleep(Duration::from_secs(1));
    assert!(reconciles(&ops[leader], "ok") > 0);
    assert_eq!(reconciles(&ops[standby], "ok"), 0, "the standby operator reconciled too");
    assert_eq!(holder(&fake).as_deref(), Some(first.as_str()), "the leader keeps renewing its lease");

    // The leader stops (and releases the lease): the other one takes over.
    assert!(ops[leader].proc.terminate().success(), "{}", ops[leader].proc.log_text());
    let second = if first == "op-a" { "op-b" } else { "op-a" };
    eventually(WAIT, "the standby to lead", || holder(&fake).as_deref() == Some(second));
    db["metadata"]["name"] = json!("books");
    fake.create(DBS, db).expect("create");
    eventually(WAIT, "the new leader to apply", || find(&fake, CONFIGMAPS, "books-litecar").is_some());
    assert!(reconciles(&ops[standby], "ok") > 0, "{}", ops[standby].proc.log_text());
}

/// Benchmark (ignored; run with `--run-ignored only`): reconcile latency with 100 resources (spec change -> the
/// changed ConfigMap stored), and the operator's idle RSS and CPU once they are all applied. Prints figures.
#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn bench_operator_reconcile_latency_and_idle_cost() {
    use std::time::Instant;
    let fake = FakeKube::start().await;
    fake.register_operator_kinds();
    let dir = tempfile::tempdir().expect("tempdir");
    fake.create(SECRETS, secret("s3-credentials", &["access-key", "secret-key"])).expect("secret");
    fake.create(SECRETS, secret("jwt", &["token"])).expect("secret");
    let op = operator(&fake, dir.path(), "bench");
    const N: usize = 100;
    let start = Instant::now();
    for i in 0..N {
        let mut db = database();
        db["metadata"]["name"] = json!(format!("db{i:03}"));
        fake.create(DBS, db).expect("create");
    }
    eventually(Duration::from_secs(300), "all applied", || {
        fake.objects(DBS).iter().filter(|d| d["status"]["observedGeneration"] == 1).count() == N
    });
    println!("initial apply of {N} resources: {:.2} s", start.elapsed().as_secs_f64());
    std::thread::sleep(Duration::from_secs(2));
    let mut latencies = Vec::new();
    for i in 0..N {
        let name = format!("db{i:03}");
        let mut db = find(&fake, DBS, &name).expect("db");
        let table = format!("t{i}");
        db["spec"]["sqliteRest"]["allowedTables"] = json!([table]);
        let t = Instant::now();
        fake.update(DBS, db).expect("update");
        let cm = format!("{name}-litecar");
        let want = format!("- {table}\n");
        loop {
            if find(&fake, CONFIGMAPS, &cm)
                .is_some_and(|c| c["data"]["litecar.yml"].as_str().unwrap_or("").contains(&want))
            {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(30), "{name} not applied");
            std::thread::sleep(Duration::from_micros(500));
        }
        latencies.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    println!(
        "reconcile latency (spec change -> ConfigMap stored), {N} changes over {N} resources: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    std::thread::sleep(Duration::from_secs(5));
    let pid = op.proc.pid();
    let stat = |pid: i32| -> (u64, u64) {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let f: Vec<&str> = s.rsplit_once(')').expect("comm").1.split_whitespace().collect();
        let ticks = f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        let rss = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0);
        (ticks, rss)
    };
    let (t0, _) = stat(pid);
    std::thread::sleep(Duration::from_secs(30));
    let (t1, rss) = stat(pid);
    println!(
        "idle with {N} resources: RSS {:.1} MiB, CPU {:.2}% of one core over 30 s",
        rss as f64 / 1024.0,
        (t1 - t0) as f64 / 100.0 / 30.0 * 100.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sidecar_mode_injects_litecar_into_the_annotated_deployment_and_takes_it_out_on_deletion() {
    let fake = FakeKube::start().await;
    fake.register_operator_kinds();
    let dir = tempfile::tempdir().expect("tempdir");
    let _op = operator(&fake, dir.path(), "op-a");
    let app = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "todo-app", "namespace": "default", "annotations": {"litecar.io/database": "todo"}},
        "spec": {
            "selector": {"matchLabels": {"app": "todo"}},
            "template": {"metadata": {"labels": {"app": "todo"}}, "spec": {
                "containers": [{"name": "app", "image": "todo:1", "volumeMounts": [{"name": "db", "mountPath": "/var/lib/sqlite"}]}],
                "volumes": [{"name": "db", "persistentVolumeClaim": {"claimName": "todo-db-storage"}}],
            }},
        },
    });
    fake.create(DEPLOYMENTS, app).expect("app");
    fake.create(
        DBS,
        json!({
            "apiVersion": "database.sqlite.io/v1alpha1", "kind": "SqliteDatabase",
            "metadata": {"name": "todo", "namespace": "default"},
            "spec": {
                "database": {"name": "todo.db"},
                "litestream": {"replicas": [{"type": "s3", "bucket": "b", "path": "todo"}]},
                "litecar": {"sidecar": true},
            },
        }),
    )
    .expect("db");
    let init_names = |fake: &FakeKube| -> Vec<String> {
        find(fake, DEPLOYMENTS, "todo-app").expect("app")["spec"]["template"]["spec"]["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect()
    };
    eventually(WAIT, "the injection", || init_names(&fake) == ["litecar-restore", "litecar"]);
    let app = find(&fake, DEPLOYMENTS, "todo-app").expect("app");
    let pod = &app["spec"]["template"]["spec"];
    assert_eq!(pod["initContainers"][1]["restartPolicy"], "Always", "a native sidecar");
    assert_eq!(pod["containers"].as_array().map(Vec::len), Some(1), "the application's containers are left alone");
    assert_eq!(pod["initContainers"][1]["volumeMounts"][0]["name"], "db", "litecar shares the application's claim");
    assert!(find(&fake, DEPLOYMENTS, "todo").is_none(), "no Deployment of its own in sidecar mode");
    eventually(WAIT, "Ready", || {
        find(&fake, DBS, "todo").is_some_and(|d| condition(&d, "Ready")["reason"] == "Injected")
    });
    fake.delete(DBS, Some("default"), "todo").expect("delete");
    eventually(WAIT, "the sidecar to go", || init_names(&fake).is_empty() && find(&fake, DBS, "todo").is_none());
    let app = find(&fake, DEPLOYMENTS, "todo-app").expect("app");
    assert_eq!(
        app["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "db", "persistentVolumeClaim": {"claimName": "todo-db-storage"}}])
    );
}
