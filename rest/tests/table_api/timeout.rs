//! The request time limit interrupts a running statement (504), reads and writes alike, and leaves the
//! connection usable.

use crate::common;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::{Fixture, get, send};

/// 200k rows of unindexed text.
const BIG: &str = "
    CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT);
    WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200000)
    INSERT INTO big SELECT i, printf('row-%d-%s', i, hex(randomblob(16))) FROM n;
";

/// A filter that makes SQLite match 40 patterns against every row: seconds of work, by design. The last
/// pattern matches every row.
fn heavy_filter() -> String {
    let terms: Vec<String> = (0..40).map(|i| format!("v.like.*zz{i}*")).chain(["v.like.row-*".to_owned()]).collect();
    format!("or=({})", terms.join(","))
}

fn app(fx: &Fixture, timeout: Duration) -> axum::Router {
    let mut options = fx.options(&["big"]);
    options.request_timeout = timeout;
    // One connection: the one that was interrupted must serve the next request.
    options.read_connections = 1;
    common::app_with(options)
}

#[tokio::test]
async fn one_millisecond_limit_times_out() {
    let fx = Fixture::new(BIG);
    let app = app(&fx, Duration::from_millis(1));
    let reply = get(&app, "/big?select=id&v=like.*zzz*").await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    assert_eq!(reply.code(), "57014");
    assert!(reply.json()["message"].as_str().expect("message").contains("`big`"));
}

#[tokio::test]
async fn long_query_is_interrupted_mid_statement() {
    let fx = Fixture::new(BIG);
    let uri = format!("/big?select=id&{}", heavy_filter());

    let unlimited = app(&fx, Duration::from_secs(120));
    let started = Instant::now();
    let reply = send(&unlimited, Method::GET, &uri, &[("Prefer", "count=exact")], None).await;
    let full = started.elapsed();
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-range"), Some("0-199999/200000"));

    let limit = Duration::from_millis(100);
    assert!(full > limit * 4, "the query must outlast the limit clearly to prove anything: {full:?}");
    let limited = app(&fx, limit);
    let started = Instant::now();
    let reply = send(&limited, Method::GET, &uri, &[("Prefer", "count=exact")], None).await;
    let cut = started.elapsed();
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    assert!(cut >= limit, "stopped at the deadline, not before it: {cut:?}");
    assert!(cut < full / 2, "interrupted ({cut:?}) rather than run to completion ({full:?})");

    let reply = get(&limited, "/big?select=id&id=eq.7").await;
    assert_eq!(reply.status, StatusCode::OK, "the interrupted connection serves the next request");
    assert_eq!(reply.text(), r#"[{"id":7}]"#);
}

#[tokio::test]
async fn interrupted_write_is_rolled_back() {
    let fx = Fixture::new(BIG);
    let before = fx.dump();
    let app = app(&fx, Duration::from_millis(50));
    let uri = format!("/big?{}", heavy_filter());
    let reply = send(&app, Method::PATCH, &uri, &[], Some(r#"{"v": "overwritten"}"#)).await;
    assert_eq!(reply.status, StatusCode::GATEWAY_TIMEOUT, "{}", reply.text());
    assert_eq!(fx.dump(), before, "nothing of the interrupted update remains");
    let reply = send(&app, Method::PATCH, "/big?id=eq.1", &[], Some(r#"{"v": "writer still works"}"#)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

/// Requests queue for the pool's threads; one running a long query must not keep the next request waiting
/// while the pool could start another thread for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_query_does_not_hold_up_the_requests_behind_it() {
    let fx = Fixture::new(BIG);
    let mut options = fx.options(&["big"]);
    options.request_timeout = Duration::from_secs(120);
    options.read_connections = 2;
    let app = common::app_with(options);
    assert_eq!(get(&app, "/big?select=id&id=eq.1").await.status, StatusCode::OK, "the first thread exists");

    let heavy_app = app.clone();
    let uri = format!("/big?select=id&{}", heavy_filter());
    let heavy = tokio::spawn(async move { send(&heavy_app, Method::GET, &uri, &[], None).await.status });
    // Lets the long query start first (it runs for seconds); only the order matters, not how long this is.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for id in [7, 8, 9] {
        let reply = get(&app, &format!("/big?select=id&id=eq.{id}")).await;
        assert_eq!(reply.text(), format!(r#"[{{"id":{id}}}]"#));
    }
    assert!(!heavy.is_finished(), "the short requests were answered while the long one still ran");
    assert_eq!(heavy.await.expect("heavy request"), StatusCode::OK);
}
