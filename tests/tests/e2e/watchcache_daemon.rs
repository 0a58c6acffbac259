//! `litecar ingest` as a user runs it: the Kubernetes API (the project's fake) into SQLite, queried over the
//! daemon's REST listener under `/k8s`, behind the same JWT layer as the table API.

use std::time::Duration;

use litecar_e2e::fakekube::FakeKube;
use litecar_e2e::{Proc, eventually, free_port, http_get, litecar_bin};
use serde_json::json;

const PODS: &str = "v1/pods";
const SECRET: &str = "watchcache-e2e-secret-0123456789abcdef";

fn token() -> String {
    let script = r#"
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"role": "reader", "exp": int(time.time()) + 600}).encode())
s = b(hmac.new(sys.argv[1].encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
"#;
    let out = std::process::Command::new("python3").args(["-c", script, SECRET]).output().expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn get(port: u16, path: &str, token: &str) -> (u16, serde_json::Value) {
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("http://127.0.0.1:{port}{path}"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_serves_filtered_sorted_pages_behind_jwt() {
    let fake = FakeKube::start().await;
    for i in 0..30 {
        let node = if i % 3 == 0 { "node-a" } else { "node-b" };
        let pod = json!({"metadata": {"namespace": "apps", "name": format!("web-{i:02}"), "labels": {"app": "web"}},
                         "spec": {"nodeName": node, "containers": []}});
        fake.create(PODS, pod).expect("create");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("kubeconfig"), fake.kubeconfig()).expect("kubeconfig");
    std::fs::write(dir.path().join("jwt"), SECRET).expect("secret");
    let port = free_port();
    let cfg = dir.path().join("litecar.yml");
    std::fs::write(
        &cfg,
        format!(
            "watchcache:\n  db: {db}\n  kubeconfig: {kc}\n  resources:\n    - {{version: v1, kind: Pod, fields: [spec.nodeName]}}\n\
             rest:\n  addr: 127.0.0.1:{port}\n  db: {db}\n  auth:\n    jwt-secret-file: {jwt}\n    roles: {{reader: {{read-only: true}}}}\n",
            db = dir.path().join("k8s.db").display(),
            kc = dir.path().join("kubeconfig").display(),
            jwt = dir.path().join("jwt").display(),
        ),
    )
    .expect("config");
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["ingest", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("log"),
    );
    let token = token();
    let path = "/k8s/core/v1/pods?filter=spec.nodeName=node-a&sort=-metadata.name&pagesize=4";
    eventually(Duration::from_secs(20), "the pods ingested", || get(port, path, &token).1["count"] == json!(10));
    let (status, body) = get(port, path, &token);
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> =
        body["items"].as_array().expect("items").iter().filter_map(|p| p["metadata"]["name"].as_str()).collect();
    assert_eq!(names, ["web-27", "web-24", "web-21", "web-18"]);

    // Changes arrive through the watch.
    fake.delete(PODS, Some("apps"), "web-27").expect("delete");
    eventually(Duration::from_secs(20), "the delete", || get(port, path, &token).1["count"] == json!(9));

    assert_eq!(http_get(port, "/k8s/core/v1/pods").0, 401, "the /k8s routes must require a token");
    // the Kubernetes-compatible read API, behind the same layer
    assert_eq!(http_get(port, "/api/v1/pods").0, 401, "the /api routes must require a token");
    let (status, body) = get(port, "/api/v1/namespaces/apps/pods?fieldSelector=spec.nodeName%3Dnode-a", &token);
    assert_eq!((status, body["kind"].as_str()), (200, Some("PodList")), "{body}");
    assert_eq!(body["items"].as_array().expect("items").len(), 9, "{body}");
    // discovery too, listing what the daemon caches
    for p in ["/api", "/apis", "/api/v1"] {
        assert_eq!(http_get(port, p).0, 401, "{p} must require a token");
    }
    let (status, body) = get(port, "/api/v1", &token);
    assert_eq!((status, &body["resources"][0]["name"]), (200, &json!("pods")), "{body}");
    let (status, body) = get(port, "/k8s/core/v1/pods?filter=status.phase=Running", &token);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("status.phase"), "the error must name the term: {body}");
    assert!(lc.terminate().success(), "{}", lc.log_text());
}
