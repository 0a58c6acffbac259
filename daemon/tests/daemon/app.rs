//! The daemon's routers as the supervisor builds them, driven with `oneshot`: the metrics listener's endpoints, and
//! the REST listener's table API and mounted routes behind the auth layer; and the serve function both listeners
//! run, draining requests in flight on shutdown.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use litecar::config::{self, LoadOptions};
use litecar::metrics::Metrics;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

async fn get(app: &Router, uri: &str, token: Option<&str>) -> (StatusCode, Option<String>, String) {
    let mut request = Request::get(uri);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let response = app.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("infallible");
    let content_type = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let status = response.status();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    (status, content_type, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn metrics_listener_serves_health_readiness_and_metrics() {
    let metrics = Metrics::new().expect("metrics");
    metrics.ops.init("file");
    let app = litecar::http::app(metrics.clone());
    assert_eq!(get(&app, "/healthz", None).await.2, "ok\n");
    let (status, _, body) = get(&app, "/readyz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ready\n"));
    let (status, content_type, body) = get(&app, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type.as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(body.contains("litestream_replica_operation_total{operation=\"PUT\",replica_type=\"file\"} 0"), "{body}");

    metrics.add_readiness_check(Arc::new(|| vec!["watchcache: v1/pods waiting for the first list".to_owned()]));
    let (status, _, body) = get(&app, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("v1/pods waiting for the first list"), "{body}");
    assert_eq!(get(&app, "/nope", None).await.0, StatusCode::NOT_FOUND);
}

/// The REST listener's router for a `rest:` section, over a database with table `t`, with `/extra` mounted
/// beside the table API as the watch-cache's routes are.
fn rest_app(dir: &Path, auth: &str) -> (Router, Metrics) {
    rest_app_with(dir, auth, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a');")
}

fn rest_app_with(dir: &Path, auth: &str, schema: &str) -> (Router, Metrics) {
    let db = dir.join("app.db");
    let conn = rusqlite::Connection::open(&db).expect("db");
    conn.execute_batch(schema).expect("schema");
    std::fs::write(dir.join("jwt"), "app-test-secret-0123456789abcdef").expect("secret");
    let text = format!("rest:\n  addr: 127.0.0.1:0\n  db: {}\n  allowed-tables: [t]\n  auth: {auth}\n", db.display());
    let loaded = config::parse(&dir.join("litecar.yml"), &text, LoadOptions::default()).expect("config");
    let plan = litecar::rest::plan(loaded.settings.rest.as_ref().expect("rest")).expect("plan");
    let metrics = Metrics::new().expect("metrics");
    let extra = Router::new()
        .route("/extra", axum::routing::get(|| async { "mounted" }))
        .route("/api/{*rest}", axum::routing::get(|| async { "mounted" }));
    (litecar::rest::app(plan, Some(extra), &metrics.registry).expect("app"), metrics)
}

#[tokio::test]
async fn rest_listener_mounts_the_table_api_and_extra_routes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, metrics) = rest_app(dir.path(), "none");
    let (status, _, body) = get(&app, "/t?select=v", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, r#"[{"v":"a"}]"#));
    assert_eq!(get(&app, "/extra", None).await.2, "mounted");
    // the REST metrics land in the daemon's registry, beside the replication ones
    let names: Vec<String> = metrics.registry.gather().iter().map(|f| f.name().to_owned()).collect();
    assert!(names.iter().any(|n| n == "sqlite_rest_requests_total"), "{names:?}");
}

#[tokio::test]
async fn rest_listener_puts_every_route_behind_the_auth_layer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jwt = format!("{{jwt-secret-file: {}}}", dir.path().join("jwt").display());
    let (app, _) = rest_app(dir.path(), &jwt);
    for uri in ["/t?select=v", "/extra", "/api/v1/pods"] {
        assert_eq!(get(&app, uri, None).await.0, StatusCode::UNAUTHORIZED, "{uri} without a token");
        assert_eq!(get(&app, uri, Some("not.a.jwt")).await.0, StatusCode::UNAUTHORIZED, "{uri} with a bad token");
    }
    // the Kubernetes API paths refuse as the API server does, with a Status kubectl words as usual
    let (_, _, body) = get(&app, "/api/v1/pods", Some("not.a.jwt")).await;
    for part in [r#""kind":"Status""#, r#""reason":"Unauthorized""#, r#""code":401"#] {
        assert!(body.contains(part), "{body}");
    }
    let (_, _, body) = get(&app, "/extra", None).await;
    assert!(!body.contains("\"Status\""), "{body}");
}

#[tokio::test]
async fn rest_auth_none_is_refused_off_loopback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!("rest:\n  addr: \":8080\"\n  db: {}\n  auth: none\n", dir.path().join("a.db").display());
    let loaded = config::parse(&dir.path().join("litecar.yml"), &text, LoadOptions::default()).expect("config");
    let plan = litecar::rest::plan(loaded.settings.rest.as_ref().expect("rest")).expect("plan");
    let metrics = Metrics::new().expect("metrics");
    let e = litecar::rest::app(plan, None, &metrics.registry).expect_err("auth none on every interface");
    assert!(e.to_string().contains("without authentication"), "{e}");
}

/// `http::serve`, as both listeners run it: on cancel it stops accepting and returns once the requests in flight
/// have been answered in full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_drains_the_requests_in_flight_then_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000)
        INSERT INTO t SELECT i, printf('row-%d', i) FROM n;";
    let (app, _) = rest_app_with(dir.path(), "none", rows);
    let listener = litecar::http::bind("127.0.0.1:0".parse().expect("addr"), None).await.expect("bind");
    let addr = axum::serve::Listener::local_addr(&listener).expect("address");
    let cancel = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(litecar::http::serve(listener, app, cancel.clone()));

    // a slow request: 20 patterns over 100k rows, then every row returned
    let terms: Vec<String> = (0..20).map(|i| format!("v.like.*zz{i}*")).chain(["v.like.row-*".to_owned()]).collect();
    let request =
        format!("GET /t?select=id&or=({}) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", terms.join(","));
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    // a first, quick request on the same connection proves it was accepted before the shutdown begins
    stream.write_all(b"GET /t?select=id&id=eq.1 HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("send");
    let first = read_one_response(&mut stream).await;
    assert!(first.starts_with("HTTP/1.1 200") && first.ends_with("[{\"id\":1}]"), "{first}");
    stream.write_all(request.as_bytes()).await.expect("send request");
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!server.is_finished(), "the server waits for the request in flight");

    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response)).await;
    read.expect("response before the time limit").expect("read response");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{}", &response[..response.len().min(200)]);
    assert!(response.trim_end().ends_with("{\"id\":100000}]"), "the whole body arrived");

    let stopped = tokio::time::timeout(Duration::from_secs(30), server).await.expect("server stops");
    stopped.expect("server task").expect("serve result");
    assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

/// Reads exactly one response with a Content-Length body from a kept-alive connection.
async fn read_one_response(stream: &mut TcpStream) -> String {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buffer).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .and_then(|v| v.parse::<usize>().ok())
                .expect("content-length");
            if buffer.len() >= end + 4 + length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut chunk))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "connection closed early");
        buffer.extend_from_slice(&chunk[..n]);
    }
}
