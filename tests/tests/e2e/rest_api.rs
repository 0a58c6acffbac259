//! The REST table API as the daemon serves it: writes through it are replicated and restore like any other,
//! `litecar serve` runs it alone, `auth: none` is refused beyond loopback, and schemathesis finds no server error.

use std::path::Path;
use std::time::Duration;

use litecar_e2e::{Proc, eventually, free_port, http_get, litecar, litecar_bin, stderr};

const SECRET: &str = "rest-e2e-shared-secret-0123456789abcdef";

/// An HS256 token for `role`, valid for ten minutes.
fn token(role: &str) -> String {
    litecar_e2e::hs256_token(SECRET, role)
}

fn setup(dir: &Path, port: u16, with_replica: bool) -> std::path::PathBuf {
    let db = dir.join("app.db");
    let c = litecar_e2e::app_connection(&db);
    c.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL, age INTEGER)").expect("schema");
    std::fs::write(dir.join("jwt.secret"), SECRET).expect("secret");
    let replicas = if with_replica {
        format!("    replicas:\n      - url: file://{}\n", dir.join("replica").display())
    } else {
        "    replicas:\n      - url: file:///unused\n".to_owned()
    };
    let cfg = dir.join("litecar.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n{replicas}rest:\n  addr: 127.0.0.1:{port}\n  allowed-tables: [users]\n  auth:\n    \
             jwt-secret-file: {}\n    roles: {{writer: {{}}, reader: {{read-only: true}}}}\n",
            db.display(),
            dir.join("jwt.secret").display()
        ),
    )
    .expect("config");
    cfg
}

fn post(port: u16, token: &str, body: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", &format!("Authorization: Bearer {token}"), "-H", "Content-Type: application/json", "-d", body])
        .arg(format!("http://127.0.0.1:{port}/users"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

#[test]
fn writes_through_the_api_are_replicated() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = setup(dir.path(), port, true);
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("log"),
    );
    eventually(Duration::from_secs(10), "the API", || http_get(port, "/openapi.json").0 == 401);
    let writer = token("writer");
    for i in 0..20 {
        assert_eq!(post(port, &writer, &format!(r#"{{"name": "user {i}", "age": {i}}}"#)), 201);
    }
    assert_eq!(post(port, &token("reader"), r#"{"name": "nope"}"#), 403, "a read-only role wrote");
    assert!(lc.terminate().success(), "{}", lc.log_text());

    let out = dir.path().join("restored.db");
    let o = litecar(
        &["restore", "-o", out.to_str().expect("utf8"), &format!("file://{}", dir.path().join("replica").display())],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(litecar_e2e::row_count(&out, "users"), 20);
    assert_eq!(litecar_e2e::digest(&out), litecar_e2e::digest(&dir.path().join("app.db")));
}

#[test]
fn serve_runs_the_api_alone_and_schemathesis_finds_no_server_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = setup(dir.path(), port, false);
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["serve", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("log"),
    );
    eventually(Duration::from_secs(10), "the API", || http_get(port, "/openapi.json").0 == 401);
    assert!(!dir.path().join(".app.db-litecar").exists(), "serve must not replicate");

    let out = std::process::Command::new("schemathesis")
        .args(["run", &format!("http://127.0.0.1:{port}/openapi.json")])
        .args(["--checks", "not_a_server_error", "--max-examples", "40", "--seed", "1"])
        .args(["-H", &format!("Authorization: Bearer {}", token("writer"))])
        .current_dir(dir.path())
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .env("NO_COLOR", "1")
        .output()
        .expect("schemathesis (pip install schemathesis; scripts/test does this)");
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "schemathesis found problems:\n{report}\nlitecar log:\n{}", lc.log_text());
    // It must really have exercised the API, not passed for want of a schema.
    let tested: u32 =
        report.lines().find_map(|l| l.trim().strip_prefix("Tested: ")).and_then(|n| n.trim().parse().ok()).unwrap_or(0);
    assert!(tested >= 5, "schemathesis tested {tested} operations:\n{report}");
    assert!(lc.terminate().success());
}

#[test]
fn a_sqlite_rest_config_with_only_a_secret_serves_every_valid_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let cfg = setup(dir.path(), port, false);
    // The SQLite Operator's sqlite-rest settings: a JWT secret and the allowed tables, no roles.
    let text = std::fs::read_to_string(&cfg).expect("config");
    let without_roles: String = text.lines().filter(|l| !l.contains("roles:")).map(|l| format!("{l}\n")).collect();
    assert_ne!(text, without_roles);
    std::fs::write(&cfg, without_roles).expect("config");
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["serve", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("log"),
    );
    eventually(Duration::from_secs(10), "the API", || http_get(port, "/openapi.json").0 == 401);
    assert_eq!(post(port, &token("anyone"), r#"{"name": "a"}"#), 201, "{}", lc.log_text());
    assert_eq!(post(port, "not-a-token", r#"{"name": "b"}"#), 401);
    assert!(lc.log_text().contains("has no roles"), "the open policy is logged:\n{}", lc.log_text());
    assert!(lc.terminate().success(), "{}", lc.log_text());
    assert_eq!(litecar_e2e::row_count(&dir.path().join("app.db"), "users"), 1);
}

#[test]
fn open_api_beyond_loopback_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    litecar_e2e::app_connection(&db).execute_batch("CREATE TABLE t (x)").expect("schema");
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - url: file:///unused\nrest:\n  addr: 0.0.0.0:{}\n  auth: none\n",
            db.display(),
            free_port()
        ),
    )
    .expect("config");
    let o = litecar(&["serve", "-config", cfg.to_str().expect("utf8")], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("loopback"), "{}", stderr(&o));
}
