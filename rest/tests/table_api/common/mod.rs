//! Shared helpers of the integration tests: a database in a temporary directory, a router over it, and
//! one-shot requests.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use litecar_rest::{AuthConfig, RestMetrics, RestOptions, RestState, auth_layer, router};
use rusqlite::Connection;
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

/// Rows with every kind of value the API renders; `secret` is never allowed.
pub const ITEMS: &str = r#"
    CREATE TABLE items (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        qty INTEGER,
        price REAL,
        tag TEXT,
        active BOOLEAN,
        meta JSON,
        data BLOB
    );
    INSERT INTO items VALUES
        (1, 'apple', 10, 1.5, 'fruit', 1, '{"c":"red"}', x'00ff'),
        (2, 'Banana', NULL, 0.25, 'fruit', 0, NULL, NULL),
        (3, 'carrot', 5, NULL, 'veg', 1, NULL, NULL),
        (4, 'date, dried', 20, 3.0, NULL, 0, NULL, NULL),
        (5, 'egg_plant', 0, 2.0, 'veg', NULL, NULL, NULL);
    CREATE TABLE secret (id INTEGER PRIMARY KEY, value TEXT);
    INSERT INTO secret VALUES (1, 'top secret');
"#;

pub struct Fixture {
    _dir: TempDir,
    pub path: PathBuf,
}

impl Fixture {
    /// A WAL-mode database file created by `sql`, as an application would have left it.
    pub fn new(sql: &str) -> Self {
        let dir = TempDir::new().expect("tempdir");
        let path = dir.path().join("app.db");
        let conn = Connection::open(&path).expect("create database");
        conn.pragma_update(None, "journal_mode", "wal").expect("WAL mode");
        conn.execute_batch(sql).expect("fixture SQL");
        Fixture { _dir: dir, path }
    }

    pub fn conn(&self) -> Connection {
        Connection::open(&self.path).expect("open database")
    }

    pub fn options(&self, tables: &[&str]) -> RestOptions {
        let mut options = RestOptions::new(&self.path);
        options.allowed_tables = tables.iter().map(|t| (*t).to_owned()).collect();
        options
    }

    pub fn app(&self, tables: &[&str]) -> Router {
        app_with(self.options(tables))
    }

    /// Every table's definition and rows, in a stable order: equal dumps mean an unchanged database.
    pub fn dump(&self) -> String {
        let conn = self.conn();
        let mut out = String::new();
        let mut tables = conn.prepare("SELECT name, sql FROM sqlite_master ORDER BY name").expect("schema query");
        let entries: Vec<(String, Option<String>)> = tables
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("schema rows")
            .collect::<Result<_, _>>()
            .expect("schema row");
        for (name, sql) in entries {
            out.push_str(&format!("{name}: {sql:?}\n"));
            let is_table: bool = conn
                .query_row("SELECT type = 'table' FROM sqlite_master WHERE name = ?1", [&name], |r| r.get(0))
                .expect("type");
            if !is_table {
                continue;
            }
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            let mut rows = conn.prepare(&format!("SELECT * FROM {quoted} ORDER BY rowid")).expect("rows query");
            let width = rows.column_count();
            let mut cursor = rows.query([]).expect("rows");
            while let Some(row) = cursor.next().expect("row") {
                let values: Vec<String> = (0..width).map(|i| format!("{:?}", row.get_ref(i).expect("value"))).collect();
                out.push_str(&values.join("|"));
                out.push('\n');
            }
        }
        out
    }
}

pub fn app_with(options: RestOptions) -> Router {
    let state = RestState::new(options, RestMetrics::unregistered()).expect("rest state");
    router(state)
}

pub fn app_with_auth(options: RestOptions, auth: AuthConfig, metrics: RestMetrics) -> Router {
    let state = RestState::new(options, metrics.clone()).expect("rest state");
    router(state).layer(auth_layer(Arc::new(auth), metrics))
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `code` of a JSON error body.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub async fn send(app: &Router, method: Method, uri: &str, headers: &[(&str, &str)], body: Option<&str>) -> Reply {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = body.map_or_else(Body::empty, |b| Body::from(b.to_owned()));
    let request = request.body(body).expect("request");
    let response = app.clone().oneshot(request).await.expect("infallible router");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("response body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

pub async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Method::GET, uri, &[], None).await
}

/// Percent-encodes every byte that is not unreserved, for putting arbitrary text into a query string.
pub fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
