//! The daemon's routers as the supervisor builds them, driven with `oneshot`: the metrics listener's endpoints, and
//! the REST listener's table API and mounted routes behind the auth layer.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use litecar::config::{self, LoadOptions};
use litecar::metrics::Metrics;
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

/// The REST listener's router for a `rest:` section, over a database with one table, with `/extra` mounted
/// beside the table API as the watch-cache's routes are.
fn rest_app(dir: &Path, auth: &str) -> (Router, Metrics) {
    let db = dir.join("app.db");
    let conn = rusqlite::Connection::open(&db).expect("db");
    conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t (v) VALUES ('a');")
        .expect("schema");
    std::fs::write(dir.join("jwt"), "app-test-secret-0123456789abcdef").expect("secret");
    let text = format!("rest:\n  addr: 127.0.0.1:0\n  db: {}\n  allowed-tables: [t]\n  auth: {auth}\n", db.display());
    let loaded = config::parse(&dir.join("litecar.yml"), &text, LoadOptions::default()).expect("config");
    let plan = litecar::rest::plan(loaded.settings.rest.as_ref().expect("rest")).expect("plan");
    let metrics = Metrics::new().expect("metrics");
    let extra = Router::new().route("/extra", axum::routing::get(|| async { "mounted" }));
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
    for uri in ["/t?select=v", "/extra"] {
        assert_eq!(get(&app, uri, None).await.0, StatusCode::UNAUTHORIZED, "{uri} without a token");
        assert_eq!(get(&app, uri, Some("not.a.jwt")).await.0, StatusCode::UNAUTHORIZED, "{uri} with a bad token");
    }
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
