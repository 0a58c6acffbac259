//! Resource embedding along foreign keys: one-to-many, many-to-one, aliases, `!inner`, hints, and filters,
//! order and limits on the embedded resource. Expected rows are computed by plain SQL on the same database.

use crate::common;

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use common::{Fixture, enc, get, send};
use litecar_rest::{AuthConfig, JwtOptions, KeySource, RestMetrics, RolePolicy};
use serde_json::{Value, json};

const SHOP: &str = "
    CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, vip BOOLEAN, note JSON);
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        customer_id INTEGER REFERENCES customers (id),
        status TEXT,
        total REAL,
        receipt BLOB
    );
    CREATE TABLE lines (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders, sku TEXT);
    CREATE TABLE transfers (
        id INTEGER PRIMARY KEY,
        sender INTEGER REFERENCES customers (id),
        receiver INTEGER REFERENCES customers (id)
    );
    CREATE TABLE hidden (id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers (id));
    INSERT INTO customers VALUES (1, 'Ann', 1, '{\"tier\": 2}'), (2, 'Bob', 0, NULL), (3, 'Cy', NULL, NULL);
    INSERT INTO orders VALUES
        (10, 1, 'paid', 5.5, x'01'), (11, 1, 'open', 2.0, NULL), (12, 2, 'paid', 1.25, NULL), (13, NULL, 'open', 0, NULL);
    INSERT INTO lines VALUES (100, 10, 'a'), (101, 10, 'b'), (102, 12, 'c');
    INSERT INTO transfers VALUES (1, 1, 2);
    INSERT INTO hidden VALUES (1, 1);
";

const TABLES: &[&str] = &["customers", "orders", "lines", "transfers"];

async fn rows(app: &axum::Router, uri: &str) -> Value {
    let reply = get(app, uri).await;
    assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.text());
    reply.json()
}

#[tokio::test]
async fn one_to_many_and_many_to_one() {
    let fx = Fixture::new(SHOP);
    let app = fx.app(TABLES);
    assert_eq!(
        rows(&app, "/customers?select=name,orders(id,status)&order=id").await,
        json!([
            {"name": "Ann", "orders": [{"id": 10, "status": "paid"}, {"id": 11, "status": "open"}]},
            {"name": "Bob", "orders": [{"id": 12, "status": "paid"}]},
            {"name": "Cy", "orders": []},
        ])
    );
    assert_eq!(
        rows(&app, "/orders?select=id,buyer:customers(name,vip,note)&order=id").await,
        json!([
            {"id": 10, "buyer": {"name": "Ann", "vip": true, "note": {"tier": 2}}},
            {"id": 11, "buyer": {"name": "Ann", "vip": true, "note": {"tier": 2}}},
            {"id": 12, "buyer": {"name": "Bob", "vip": false, "note": null}},
            {"id": 13, "buyer": null},
        ]),
        "many-to-one is an object (or null), rendered like top-level values"
    );
    // `*` and nested embedding; values render as at top level (blobs as \x hex, reals as numbers).
    assert_eq!(
        rows(&app, "/customers?select=*,orders(*,lines(sku))&id=eq.1&orders.order=id").await,
        json!([{"id": 1, "name": "Ann", "vip": true, "note": {"tier": 2}, "orders": [
            {"id": 10, "customer_id": 1, "status": "paid", "total": 5.5, "receipt": "\\x01",
             "lines": [{"sku": "a"}, {"sku": "b"}]},
            {"id": 11, "customer_id": 1, "status": "open", "total": 2.0, "receipt": null, "lines": []},
        ]}])
    );
}

#[tokio::test]
async fn filters_order_limit_and_inner_on_the_embedded_resource() {
    let fx = Fixture::new(SHOP);
    let app = fx.app(TABLES);
    // Filters on an embedded resource narrow the embedded rows, not the parents (PostgREST docs, "Resource
    // Embedding", embedded filters); `!inner` drops the parents without a match.
    assert_eq!(
        rows(&app, "/customers?select=id,orders(id)&orders.status=eq.paid&order=id").await,
        json!([{"id": 1, "orders": [{"id": 10}]}, {"id": 2, "orders": [{"id": 12}]}, {"id": 3, "orders": []}])
    );
    assert_eq!(
        rows(&app, "/customers?select=id,orders!inner(id)&orders.status=eq.open").await,
        json!([{"id": 1, "orders": [{"id": 11}]}])
    );
    assert_eq!(
        rows(&app, "/customers?select=id,orders(id,total)&orders.order=total.desc&id=eq.1").await,
        json!([{"id": 1, "orders": [{"id": 10, "total": 5.5}, {"id": 11, "total": 2.0}]}])
    );
    assert_eq!(
        rows(&app, "/customers?select=id,orders(id)&orders.order=id.desc&id=eq.1").await,
        json!([{"id": 1, "orders": [{"id": 11}, {"id": 10}]}]),
        "the embedded array keeps the embedded order"
    );
    assert_eq!(
        rows(&app, "/customers?select=id,orders(id)&orders.order=id.desc&orders.limit=1&id=lt.3&order=id").await,
        json!([{"id": 1, "orders": [{"id": 11}]}, {"id": 2, "orders": [{"id": 12}]}])
    );
    assert_eq!(
        rows(
            &app,
            &format!("/customers?select=id,o:orders(id)&o.or={}&o.offset=1&id=eq.1", enc("(id.eq.10,id.eq.11)"))
        )
        .await,
        json!([{"id": 1, "o": [{"id": 11}]}]),
        "the alias names the embedded resource in parameters"
    );
    let reply =
        send(&app, Method::GET, "/customers?select=id,orders!inner(id)", &[("Prefer", "count=exact")], None).await;
    assert_eq!(reply.header("content-range"), Some("0-1/2"), "the count honours !inner");
    let reply = get(&app, "/orders?select=id,customers!inner(name)&customers.name=eq.Bob").await;
    assert_eq!(reply.json(), json!([{"id": 12, "customers": {"name": "Bob"}}]));
}

#[tokio::test]
async fn ambiguity_hints_and_unrelated_tables() {
    let fx = Fixture::new(SHOP);
    let app = fx.app(TABLES);
    let reply = get(&app, "/transfers?select=id,customers(name)").await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::MULTIPLE_CHOICES, "PGRST201"));
    assert_eq!(
        rows(&app, "/transfers?select=id,from:customers!sender(name),to:customers!receiver(name)").await,
        json!([{"id": 1, "from": {"name": "Ann"}, "to": {"name": "Bob"}}])
    );
    for select in ["transfers(*)", "hidden(*)", "nope(*)", "customers!total(*)"] {
        let reply = get(&app, &format!("/orders?select=id,{select}")).await;
        assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST200"), "{select}");
    }
    let reply = get(&app, "/lines?select=id,orders(id)&customers.id=eq.1").await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST100"), "filter on a non-embed");
    let reply = get(&app, "/customers?select=id,orders(nope)").await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "42703"));
    let reply = get(&app, "/customers?select=id,orders(id)&orders.nope=eq.1").await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "42703"));
    let reply = send(&app, Method::POST, "/orders?select=id,customers(name)", &[], Some(r#"{"status": "x"}"#)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "embedding on writes is refused before writing");
}

#[tokio::test]
async fn a_role_must_be_allowed_to_read_every_embedded_table() {
    let fx = Fixture::new(SHOP);
    let mut options = JwtOptions::new(KeySource::Secret(b"embed-secret".to_vec()));
    options.roles = BTreeMap::from([(
        "clerk".to_owned(),
        RolePolicy { read_only: true, tables: Some(vec!["orders".to_owned(), "lines".to_owned()]) },
    )]);
    let app = common::app_with_auth(fx.options(TABLES), AuthConfig::Jwt(options), RestMetrics::unregistered());
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"role": "clerk", "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(b"embed-secret"),
    )
    .expect("token");
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str())];
    let reply = send(&app, Method::GET, "/orders?select=id,lines(sku)&id=eq.10", &auth, None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let reply = send(&app, Method::GET, "/orders?select=id,customers(name)", &auth, None).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::FORBIDDEN, "42501"));
    assert!(!reply.text().contains("Ann"));
}

#[tokio::test]
async fn embedded_names_and_keys_never_reach_sql_text() {
    let fx = Fixture::new(SHOP);
    let app = fx.app(TABLES);
    let before = fx.dump();
    for select in [
        "id,orders(id);DROP TABLE customers;--)",
        "id,\"x'); DROP TABLE orders; --\":orders(id)",
        "id,orders(\"id\\\" FROM orders; --\")",
        "id,orders!\"inner\"(id)",
        "id,orders(id,customers(x:name,\"'\":id))",
    ] {
        let reply = get(&app, &format!("/customers?select={}", enc(select))).await;
        assert!(reply.status.is_client_error() || reply.status.is_success(), "{select}: {}", reply.status);
        if reply.status.is_success() {
            // Hostile text can only ever be a JSON key.
            assert!(reply.json().is_array(), "{select}");
        }
    }
    let reply = get(&app, &format!("/customers?select={}&id=eq.1", enc("id,\"a'b\":orders(\"'\":id)"))).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "quoted names are unsupported for embeds: {}", reply.text());
    let reply = get(&app, &format!("/customers?select={}&id=eq.1", enc("id,orders(k' OR 1;--:id)"))).await;
    assert_eq!(
        reply.json(),
        json!([{"id": 1, "orders": [{"k' OR 1;--": 10}, {"k' OR 1;--": 11}]}]),
        "keys are bound parameters"
    );
    assert_eq!(fx.dump(), before);
}
