//! The REST listener over HTTPS (`rest.tls`) as Kubernetes clients use it: the real kubectl, which sends bearer
//! tokens only over HTTPS, with litecar's CA and a JWT in its kubeconfig, against the Kubernetes-compatible API
//! that `litecar ingest` serves from its cache of the project's fake API server.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use litecar_e2e::fakekube::{FakeKube, PODS};
use litecar_e2e::{Proc, free_port, hs256_token, litecar_bin, tls_certificates as certificates};
use serde_json::json;

const SECRET: &str = "rest-tls-e2e-secret-0123456789abcdef";

fn kubeconfig(dir: &Path, name: &str, port: u16, ca: &Path, token: &str) -> String {
    let user = format!("{{token: {token}}}");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: litecar\n  cluster:\n    server: https://127.0.0.1:{port}\n    \
         certificate-authority: {ca}\nusers:\n- name: u\n  user: {user}\ncontexts:\n- name: litecar\n  context:\n    \
         cluster: litecar\n    user: u\ncurrent-context: litecar\n",
        ca = ca.display(),
    );
    let path = dir.join(name);
    std::fs::write(&path, text).expect("kubeconfig");
    path.display().to_string()
}

/// `kubectl --kubeconfig=KUBECONFIG ARGS...`, off the async workers (the fake API server runs on them).
async fn kubectl(dir: &Path, kubeconfig: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
    cmd.arg(format!("--kubeconfig={kubeconfig}"))
        .arg(format!("--cache-dir={}", dir.join("kube-cache").display()))
        .arg("--request-timeout=20s")
        .args(args)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output()).await.expect("join").expect("kubectl")
}

/// `kubectl get --raw PATH`.
async fn kubectl_raw(dir: &Path, kubeconfig: &str, path: &str) -> Output {
    kubectl(dir, kubeconfig, &["get", "--raw", path]).await
}

fn names(list: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = list["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_the_kubernetes_api_over_https_with_a_bearer_token() {
    let fake = FakeKube::start().await;
    for (ns, name) in [("apps", "web-0"), ("apps", "web-1"), ("kube-system", "dns-0")] {
        fake.create(PODS, json!({"metadata": {"namespace": ns, "name": name}, "spec": {"containers": []}}))
            .expect("create");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let (ca, cert, key) = certificates();
    for (name, text) in [("ca.pem", ca.as_str()), ("tls.crt", &cert), ("tls.key", &key), ("jwt", SECRET)] {
        std::fs::write(d.join(name), text).expect("write");
    }
    std::fs::write(d.join("upstream"), fake.kubeconfig()).expect("kubeconfig");
    let port = free_port();
    let cfg = d.join("litecar.yml");
    std::fs::write(
        &cfg,
        format!(
            "watchcache:\n  db: {db}\n  kubeconfig: {up}\n  resources:\n    - {{version: v1, kind: Pod}}\n\
             rest:\n  addr: 127.0.0.1:{port}\n  db: {db}\n  auth:\n    jwt-secret-file: {jwt}\n    \
             roles: {{reader: {{read-only: true}}}}\n  tls:\n    cert-file: {crt}\n    key-file: {key}\n",
            db = d.join("k8s.db").display(),
            up = d.join("upstream").display(),
            jwt = d.join("jwt").display(),
            crt = d.join("tls.crt").display(),
            key = d.join("tls.key").display(),
        ),
    )
    .expect("config");
    let _lc = Proc::spawn(&litecar_bin(), &["ingest", "-config", cfg.to_str().expect("utf8")], d, &d.join("log"));

    let token = hs256_token(SECRET, "reader");
    let with_token = kubeconfig(d, "with-token", port, &d.join("ca.pem"), &token);
    let want = names(&json!({"items": fake.objects(PODS)}));
    let deadline = Instant::now() + Duration::from_secs(30);
    let listed = loop {
        let out = kubectl_raw(d, &with_token, "/api/v1/pods").await;
        let list = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default();
        if names(&list).len() == 3 {
            break list;
        }
        assert!(Instant::now() < deadline, "kubectl never listed the pods: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(names(&listed), want);
    assert_eq!(listed["kind"], "PodList", "{listed}");

    let out = kubectl_raw(d, &with_token, "/api/v1/namespaces/apps/pods/web-1").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pod: serde_json::Value = serde_json::from_slice(&out.stdout).expect("pod JSON");
    assert_eq!(pod["metadata"]["name"], "web-1");

    // kubectl's own verbs: discovery, then a Table, all with the token over TLS
    let out = kubectl(
        d,
        &with_token,
        &["get", "pods", "-A", "--no-headers", "-o", "custom-columns=NS:.metadata.namespace,NAME:.metadata.name"],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join("/"))
        .collect();
    rows.sort();
    assert_eq!(rows, ["apps/web-0", "apps/web-1", "kube-system/dns-0"]);
    let out = kubectl(d, &with_token, &["get", "pods", "-n", "apps"]).await;
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && table.starts_with("NAME") && table.contains("STATUS") && table.contains("web-0"),
        "{table}"
    );

    // a token litecar did not sign: the auth layer refuses, over the same TLS
    let forged = hs256_token("another-secret-0123456789abcdef0123", "reader");
    let forged = kubeconfig(d, "forged-token", port, &d.join("ca.pem"), &forged);
    let out = kubectl_raw(d, &forged, "/api/v1/pods").await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && stderr.contains("You must be logged in to the server"), "{stderr}");

    // a CA that did not sign litecar's certificate: kubectl refuses the server
    let (other_ca, _, _) = certificates();
    std::fs::write(d.join("other-ca.pem"), other_ca).expect("write");
    let wrong_ca = kubeconfig(d, "wrong-ca", port, &d.join("other-ca.pem"), &token);
    let out = kubectl_raw(d, &wrong_ca, "/api/v1/pods").await;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && stderr.contains("certificate signed by unknown authority"), "{stderr}");
}
