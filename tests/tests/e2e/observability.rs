//! Metrics, health and readiness endpoints, and that no credential ever reaches a log line or a metric.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use litecar_e2e::{Proc, emulators, eventually, free_port, http_get, litecar_bin, workload};

/// Metric name (with labels) -> value, from the text exposition format.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn value(samples: &BTreeMap<String, f64>, prefix: &str) -> f64 {
    samples.iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| *v).sum()
}

fn start(dir: &Path, config: &str, envs: &[(String, String)]) -> (Proc, u16) {
    let port = free_port();
    let cfg = dir.join("litecar.yml");
    std::fs::write(&cfg, format!("addr: 127.0.0.1:{port}\n{config}")).expect("config");
    let lc = Proc::spawn_with_env(
        &litecar_bin(),
        &["replicate", "-config", cfg.to_str().expect("utf8")],
        dir,
        &dir.join("litecar.log"),
        envs,
    );
    eventually(Duration::from_secs(10), "the metrics endpoint", || http_get(port, "/healthz").0 == 200);
    (lc, port)
}

fn db_config(dir: &Path, replica: &str) -> String {
    format!("dbs:\n  - path: {}\n    replicas:\n      - {replica}\n", dir.join("app.db").display())
}

#[test]
fn scrape_shows_replication_and_parses() {
    let dir = tempfile::tempdir().expect("tempdir");
    workload::create(&dir.path().join("app.db"));
    let replica = format!("url: file://{}", dir.path().join("replica").display());
    let (mut lc, port) = start(dir.path(), &db_config(dir.path(), &replica), &[]);
    eventually(Duration::from_secs(10), "ready", || http_get(port, "/readyz").0 == 200);
    let before = samples(&http_get(port, "/metrics").1);

    let c = litecar_e2e::app_connection(&dir.path().join("app.db"));
    for i in 0..50 {
        c.execute("INSERT INTO events (writer, seq, payload) VALUES (1, ?1, randomblob(1000))", [i]).expect("insert");
    }
    eventually(Duration::from_secs(10), "the writes replicated", || {
        let s = samples(&http_get(port, "/metrics").1);
        value(&s, "litecar_pending_bytes") == 0.0
            && value(&s, "litestream_total_wal_bytes") >= value(&before, "litestream_total_wal_bytes") + 50_000.0
    });
    let text = http_get(port, "/metrics").1;
    let after = samples(&text);
    for counter in ["litestream_sync_count", "litestream_total_wal_bytes", "litestream_replica_wal_bytes"] {
        assert!(value(&after, counter) > value(&before, counter), "{counter} did not move:\n{text}");
    }
    assert!(value(&after, "litestream_replica_operation_total{operation=\"PUT\",replica_type=\"file\"}") > 0.0);
    assert!(value(&after, "litestream_db_size") + value(&after, "litestream_wal_size") > 50_000.0);
    assert_eq!(value(&after, "litecar_replica_up"), 1.0);
    // Caught up: at most the few milliseconds of a segment staged since (a checkpoint's restart frame, say).
    assert!(value(&after, "litecar_replication_lag_seconds") < 5.0, "{text}");
    assert!(value(&after, "process_resident_memory_bytes") > 0.0);
    assert!(value(&after, "litecar_build_info") == 1.0);

    // Valid exposition format. promtool's naming lint may only object to Litestream's own (compatible) names.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus)");
    std::io::Write::write_all(promtool.stdin.as_mut().expect("stdin"), text.as_bytes()).expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_ne!(out.status.code(), Some(1), "not valid exposition format: {report}");
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(line.starts_with("litestream_"), "lint problem in litecar's own metrics: {line}");
    }
    // Every metric the shipped dashboard and alert rules use exists.
    let names: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_whitespace().next()).collect();
    let root = emulators::workspace_root().join("charts/litecar/dashboards");
    for file in ["litecar-dashboard.json", "litecar-alerts.yaml"] {
        let content = std::fs::read_to_string(root.join(file)).expect("read");
        for word in content.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("litestream_") || word.starts_with("litecar_") || word.starts_with("process_") {
                let base = word.strip_suffix("_bucket").unwrap_or(word);
                assert!(names.contains(base), "{file} uses {word}, which litecar does not export");
            }
        }
    }
    let rules = Command::new("promtool").args(["check", "rules"]).arg(root.join("litecar-alerts.yaml")).output();
    let rules = rules.expect("promtool");
    assert!(rules.status.success(), "{}", String::from_utf8_lossy(&rules.stdout));
    assert!(lc.terminate().success());
}

#[test]
fn readiness_follows_the_database_and_the_replicas() {
    let dir = tempfile::tempdir().expect("tempdir");
    // No database yet: alive, not ready.
    let replica = format!("url: file://{}", dir.path().join("replica").display());
    let (mut lc, port) = start(dir.path(), &db_config(dir.path(), &replica), &[]);
    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("waiting for the database"), "{body}");
    assert_eq!(http_get(port, "/healthz").0, 200);
    workload::create(&dir.path().join("app.db"));
    eventually(Duration::from_secs(10), "ready once the database exists", || http_get(port, "/readyz").0 == 200);
    assert!(lc.terminate().success());

    // A replica nobody answers for: not ready, and the answer names it.
    let dir = tempfile::tempdir().expect("tempdir");
    workload::create(&dir.path().join("app.db"));
    let closed = free_port();
    let replica = format!(
        "url: s3://bucket/app\n        endpoint: http://127.0.0.1:{closed}\n        access-key-id: a\n        secret-access-key: b"
    );
    let (mut lc, port) = start(dir.path(), &db_config(dir.path(), &replica), &[]);
    // The outage does not hold up copying the WAL: the spool absorbs it.
    let spool = dir.path().join(".app.db-litecar/spool/generations");
    eventually(Duration::from_secs(30), "the snapshot staged in the spool", || spool.exists());
    eventually(Duration::from_secs(60), "the replica reported unreachable", || {
        let (status, body) = http_get(port, "/readyz");
        status == 503 && body.contains("replica s3")
    });
    let metrics = samples(&http_get(port, "/metrics").1);
    assert_eq!(value(&metrics, "litecar_replica_up"), 0.0);
    // Shutting down with the replica still unreachable is clean: what was not uploaded stays in the spool.
    assert!(lc.terminate().success(), "log:\n{}", lc.log_text());
    assert!(spool.exists(), "the spool was emptied without an upload");
}

#[test]
fn credentials_never_reach_logs_or_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    workload::create(&dir.path().join("app.db"));
    let bucket = format!("leak{:08x}", rand::random::<u32>());
    emulators::create_s3_bucket(&bucket);
    let key_id = "AKIALEAKCHECKKEYID01";
    let secret = "leak-check-secret-value-0123456789";
    // One credential written in the config, one expanded from the environment.
    let replica = format!(
        "url: s3://{bucket}/app\n        endpoint: {}\n        access-key-id: {key_id}\n        secret-access-key: ${{LEAK_SECRET}}",
        emulators::s3_endpoint()
    );
    let config = format!("logging:\n  level: debug\n  type: json\n{}", db_config(dir.path(), &replica));
    let envs = vec![("LEAK_SECRET".to_owned(), secret.to_owned()), ("RUST_LOG".to_owned(), "debug".to_owned())];
    let (mut lc, port) = start(dir.path(), &config, &envs);
    eventually(Duration::from_secs(20), "ready", || http_get(port, "/readyz").0 == 200);
    let c = litecar_e2e::app_connection(&dir.path().join("app.db"));
    c.execute("INSERT INTO events (writer, seq, payload) VALUES (1, 1, x'01')", []).expect("insert");
    std::thread::sleep(Duration::from_millis(2500));
    let metrics = http_get(port, "/metrics").1;
    let (_, ready) = http_get(port, "/readyz");
    assert!(lc.terminate().success());
    let log = lc.log_text();
    assert!(log.lines().count() > 5, "expected debug logging:\n{log}");
    for line in log.lines() {
        serde_json_line(line);
    }
    for text in [&log, &metrics, &ready] {
        assert!(!text.contains(secret), "the secret access key leaked");
        assert!(!text.contains(key_id), "the access key id leaked");
    }
}

/// With `logging.type: json`, every line is one JSON object.
fn serde_json_line(line: &str) {
    assert!(line.starts_with('{') && line.ends_with('}'), "not a JSON log line: {line}");
}
