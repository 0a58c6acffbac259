//! Database conditions: not created yet, locked by the application, views.

use crate::common;

use std::time::Duration;

use axum::http::{Method, StatusCode};
use common::{Fixture, ITEMS, get, send};
use litecar_rest::RestOptions;
use rusqlite::Connection;
use serde_json::json;

#[tokio::test]
async fn missing_database_is_503_until_the_application_creates_it() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("later.db");
    let mut options = RestOptions::new(&path);
    options.allowed_tables = vec!["items".into()];
    let app = common::app_with(options);
    let reply = get(&app, "/items").await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "LC005"));
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert!(
        !reply.text().contains(&*dir.path().to_string_lossy()),
        "server paths are not shown to clients: {}",
        reply.text()
    );
    let reply = send(&app, Method::POST, "/items", &[], Some(r#"{"name": "x"}"#)).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!path.exists(), "the API never creates the database");

    let conn = Connection::open(&path).expect("application creates the database");
    conn.pragma_update(None, "journal_mode", "wal").expect("WAL");
    conn.execute_batch(ITEMS).expect("schema");
    assert_eq!(get(&app, "/items?select=id&id=eq.1").await.json(), json!([{"id": 1}]));
}

#[tokio::test]
async fn writer_waits_for_the_application_lock_then_answers_503() {
    let fx = Fixture::new(ITEMS);
    let mut options = fx.options(&["items"]);
    options.busy_timeout = Duration::from_millis(100);
    let app = common::app_with(options);
    let holder = fx.conn();
    holder.execute_batch("BEGIN IMMEDIATE; UPDATE items SET qty = 1 WHERE id = 1;").expect("hold the write lock");

    let reply = send(&app, Method::POST, "/items", &[], Some(r#"{"name": "blocked"}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::SERVICE_UNAVAILABLE, "LC004"));
    assert_eq!(reply.header("retry-after"), Some("1"));
    assert_eq!(
        get(&app, "/items?select=qty&id=eq.1").await.json(),
        json!([{"qty": 10}]),
        "WAL readers are not blocked"
    );

    holder.execute_batch("COMMIT").expect("release");
    let reply = send(&app, Method::POST, "/items", &[], Some(r#"{"name": "through"}"#)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn views_are_readable_and_refuse_writes() {
    let fx = Fixture::new(&format!("{ITEMS} CREATE VIEW fruit AS SELECT id, name FROM items WHERE tag = 'fruit';"));
    let app = fx.app(&["fruit"]);
    assert_eq!(
        get(&app, "/fruit?order=id").await.json(),
        json!([{"id": 1, "name": "apple"}, {"id": 2, "name": "Banana"}])
    );
    let reply = send(&app, Method::POST, "/fruit", &[], Some(r#"{"name": "kiwi"}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "LC009"), "{}", reply.text());
    let doc = get(&app, "/openapi.json").await.json();
    assert!(doc["paths"]["/fruit"]["get"].is_object() && doc["paths"]["/fruit"].get("post").is_none());
}
