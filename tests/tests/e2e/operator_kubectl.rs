//! The fake API server's write semantics that litecar-operator relies on, driven by the real kubectl so the fake
//! cannot drift from what Kubernetes clients expect: `kubectl apply --server-side` (create, then change: generation
//! bumps, the field manager is recorded), `kubectl get -o yaml`, `kubectl patch --type=merge`, and `kubectl delete`
//! with a finalizer (deletionTimestamp first, gone once the finalizer is removed, owned objects collected).

use std::path::Path;
use std::process::Command;

use litecar_e2e::fakekube::FakeKube;
use serde_json::{Value, json};

const DBS: &str = "database.sqlite.io/v1alpha1/sqlitedatabases";

fn kubectl(cfg: &Path, args: &[&str]) -> (bool, String) {
    let out =
        Command::new("kubectl").arg(format!("--kubeconfig={}", cfg.display())).args(args).output().expect("kubectl");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn find(fake: &FakeKube, resource: &str, name: &str) -> Option<Value> {
    fake.objects(resource).into_iter().find(|o| o["metadata"]["name"] == name)
}

const MANIFEST: &str = "apiVersion: database.sqlite.io/v1alpha1
kind: SqliteDatabase
metadata:
  name: shop
  namespace: default
spec:
  database:
    name: shop.db
";

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_server_side_apply_get_patch_and_delete_with_a_finalizer() {
    let fake = FakeKube::start().await;
    fake.register_operator_kinds();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("kubeconfig");
    std::fs::write(&cfg, fake.kubeconfig()).expect("kubeconfig");
    let file = dir.path().join("db.yaml");
    std::fs::write(&file, MANIFEST).expect("manifest");
    let f = file.display().to_string();

    let (ok, out) = kubectl(&cfg, &["apply", "--server-side", "--field-manager=tester", "--validate=false", "-f", &f]);
    assert!(ok, "{out}");
    let db = find(&fake, DBS, "shop").expect("created by apply");
    assert_eq!(db["metadata"]["generation"], 1);
    assert_eq!(db["metadata"]["managedFields"][0]["manager"], "tester");
    let rv = db["metadata"]["resourceVersion"].clone();

    // The same apply again changes nothing, not even the resourceVersion.
    let (ok, out) = kubectl(&cfg, &["apply", "--server-side", "--field-manager=tester", "--validate=false", "-f", &f]);
    assert!(ok, "{out}");
    assert_eq!(find(&fake, DBS, "shop").expect("db")["metadata"]["resourceVersion"], rv);

    std::fs::write(&file, format!("{MANIFEST}    storage:\n      size: 2Gi\n")).expect("manifest");
    let (ok, out) = kubectl(&cfg, &["apply", "--server-side", "--field-manager=tester", "--validate=false", "-f", &f]);
    assert!(ok, "{out}");
    let db = find(&fake, DBS, "shop").expect("db");
    assert_eq!(db["metadata"]["generation"], 2, "a spec change bumps the generation: {db}");
    assert_eq!(db["spec"]["database"]["name"], "shop.db", "apply merges: {db}");
    assert_eq!(db["spec"]["database"]["storage"]["size"], "2Gi");

    // Status is written only through the subresource; the object's writes leave it alone.
    fake.set_status(DBS, "default", "shop", json!({"phase": "Running"})).expect("status");
    let (ok, out) = kubectl(&cfg, &["get", "sqlitedatabase", "shop", "-o", "yaml"]);
    assert!(ok, "{out}");
    assert!(out.contains("generation: 2") && out.contains("phase: Running") && out.contains("size: 2Gi"), "{out}");
    let (ok, out) = kubectl(&cfg, &["apply", "--server-side", "--field-manager=tester", "--validate=false", "-f", &f]);
    assert!(ok, "{out}");
    assert_eq!(find(&fake, DBS, "shop").expect("db")["status"]["phase"], "Running");

    // A finalizer and an owned object; delete marks, removing the finalizer deletes, the owned object follows.
    let (ok, out) = kubectl(
        &cfg,
        &["patch", "sqlitedatabase", "shop", "--type=merge", "-p", r#"{"metadata":{"finalizers":["example.com/f"]}}"#],
    );
    assert!(ok, "{out}");
    let uid = find(&fake, DBS, "shop").expect("db")["metadata"]["uid"].clone();
    fake.create(
        "v1/configmaps",
        json!({"metadata": {"name": "owned", "namespace": "default",
            "ownerReferences": [{"apiVersion": "database.sqlite.io/v1alpha1", "kind": "SqliteDatabase", "name": "shop", "uid": uid}]}}),
    )
    .expect("configmap");
    let (ok, out) = kubectl(&cfg, &["delete", "sqlitedatabase", "shop", "--wait=false"]);
    assert!(ok, "{out}");
    let db = find(&fake, DBS, "shop").expect("kept while a finalizer is left");
    assert!(db["metadata"]["deletionTimestamp"].is_string(), "{db}");
    assert!(find(&fake, "v1/configmaps", "owned").is_some());
    let (ok, out) = kubectl(
        &cfg,
        &["patch", "sqlitedatabase", "shop", "--type=merge", "-p", r#"{"metadata":{"finalizers":null}}"#],
    );
    assert!(ok, "{out}");
    assert!(find(&fake, DBS, "shop").is_none(), "gone once its finalizers are");
    assert!(find(&fake, "v1/configmaps", "owned").is_none(), "owned objects are garbage-collected");
    let (ok, out) = kubectl(&cfg, &["get", "sqlitedatabase", "shop"]);
    assert!(!ok && out.contains("NotFound"), "{out}");
}
