//! POST/PATCH/PUT/DELETE: representations, bulk insert, upsert, PUT, constraints, limits.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{Fixture, ITEMS, get, send};
use serde_json::json;

const REPR: (&str, &str) = ("Prefer", "return=representation");

const PEOPLE: &str = "
    CREATE TABLE people (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        name TEXT,
        age INTEGER CHECK (age >= 0),
        upper_name TEXT GENERATED ALWAYS AS (upper(name)) VIRTUAL
    );
    INSERT INTO people (id, email, name, age) VALUES (1, 'a@x', 'Ann', 30), (2, 'b@x', 'Bob', 40);
    CREATE TABLE pairs (a TEXT, b TEXT, v INTEGER, PRIMARY KEY (a, b));
    INSERT INTO pairs VALUES ('x', 'y', 1);
";

fn count(fx: &Fixture, sql: &str) -> i64 {
    fx.conn().query_row(sql, [], |r| r.get(0)).expect("count query")
}

#[tokio::test]
async fn post_minimal_and_representation() {
    let fx = Fixture::new(PEOPLE);
    let app = fx.app(&["people"]);
    let reply = send(&app, Method::POST, "/people", &[], Some(r#"{"email": "c@x", "name": "Cy"}"#)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert!(reply.body.is_empty(), "return=minimal is the default");
    assert_eq!(count(&fx, "SELECT count(*) FROM people WHERE email = 'c@x'"), 1);

    let reply = send(
        &app,
        Method::POST,
        "/people?select=id,mail:email,upper_name",
        &[REPR],
        Some(r#"{"email": "d@x", "name": "Di"}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.json(), json!([{"id": 4, "mail": "d@x", "upper_name": "DI"}]));
    assert_eq!(reply.header("preference-applied"), Some("return=representation"));

    let reply = send(
        &app,
        Method::POST,
        "/people",
        &[REPR, ("Accept", "application/vnd.pgrst.object+json")],
        Some(r#"{"email": "e@x"}"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.json()["email"], "e@x", "a single object, not an array");
}

#[tokio::test]
async fn bulk_insert_is_all_or_nothing() {
    let fx = Fixture::new(PEOPLE);
    let app = fx.app(&["people"]);
    let body = r#"[{"email": "c@x", "age": 1}, {"email": "d@x", "age": 2}, {"email": "e@x", "age": 3}]"#;
    let reply = send(&app, Method::POST, "/people?select=email", &[REPR], Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_eq!(reply.json(), json!([{"email": "c@x"}, {"email": "d@x"}, {"email": "e@x"}]));
    assert_eq!(reply.header("content-range"), Some("*/*"), "PostgREST's insert range, without a count");

    let before = fx.dump();
    let mismatched = r#"[{"email": "f@x", "age": 1}, {"email": "g@x", "name": "G"}]"#;
    let reply = send(&app, Method::POST, "/people", &[], Some(mismatched)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.json()["message"].as_str().expect("message").contains("row #1"), "{}", reply.text());
    let violating = r#"[{"email": "f@x"}, {"email": "a@x"}]"#;
    assert_eq!(send(&app, Method::POST, "/people", &[], Some(violating)).await.status, StatusCode::CONFLICT);
    assert_eq!(fx.dump(), before, "a failed bulk insert leaves nothing behind");

    // `columns` picks the columns; rows may then differ and missing keys are NULL.
    let reply = send(
        &app,
        Method::POST,
        "/people?columns=email,name&select=email,name,age",
        &[REPR],
        Some(r#"[{"email": "h@x", "age": 9}, {"email": "i@x", "name": "I"}]"#),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!([{"email": "h@x", "name": null, "age": null}, {"email": "i@x", "name": "I", "age": null}])
    );
    assert_eq!(send(&app, Method::POST, "/people", &[REPR], Some("[]")).await.json(), json!([]));
}

#[tokio::test]
async fn constraint_violations_are_409_or_400() {
    // PostgREST's status table (docs, "Errors"): 23503 and 23505 are 409; other class-23 codes, such as
    // not_null_violation and check_violation, are 400.
    let fx = Fixture::new(PEOPLE);
    let app = fx.app(&["people"]);
    for (body, code, status) in [
        (r#"{"email": "a@x"}"#, "23505", StatusCode::CONFLICT),
        (r#"{"id": 1, "email": "z@x"}"#, "23505", StatusCode::CONFLICT),
        (r#"{"name": "no email"}"#, "23502", StatusCode::BAD_REQUEST),
        (r#"{"email": "n@x", "age": -1}"#, "23514", StatusCode::BAD_REQUEST),
    ] {
        let reply = send(&app, Method::POST, "/people", &[], Some(body)).await;
        assert_eq!(reply.status, status, "{body}");
        assert_eq!(reply.code(), code, "{body}");
        assert!(reply.json()["message"].as_str().expect("message").contains("`people`"));
    }
    let reply = send(&app, Method::PATCH, "/people?id=eq.2", &[], Some(r#"{"email": "a@x"}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::CONFLICT, "23505"));
}

#[tokio::test]
async fn bad_bodies_are_400() {
    let fx = Fixture::new(PEOPLE);
    let app = fx.app(&["people"]);
    let before = fx.dump();
    for body in ["{", "42", r#"["x"]"#, "", r#"{"nope": 1}"#, r#"{"upper_name": "X", "email": "q@x"}"#] {
        let reply = send(&app, Method::POST, "/people", &[], Some(body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body:?}: {}", reply.text());
    }
    let reply = send(&app, Method::POST, "/people", &[], Some(r#"{"nope": 1}"#)).await;
    assert_eq!(reply.code(), "PGRST204", "an unknown body key");
    assert_eq!(reply.json()["message"], "column `nope` of table `people` is not in the schema");
    let reply = send(&app, Method::POST, "/people?columns=email,nope", &[], Some(r#"{"email": "q@x"}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST204"), "unknown in columns=");
    let reply = send(&app, Method::POST, "/people?select=nope", &[], Some(r#"{"email": "q@x"}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "42703"), "unknown in select");
    let reply =
        send(&app, Method::POST, "/people", &[("Content-Type", "text/plain")], Some(r#"{"email": "t@x"}"#)).await;
    assert_eq!(reply.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(fx.dump(), before);
}

#[tokio::test]
async fn upsert_merge_and_ignore_duplicates() {
    let fx = Fixture::new(PEOPLE);
    let app = fx.app(&["people", "pairs"]);
    let merge = ("Prefer", "resolution=merge-duplicates, return=representation");
    let body = r#"[{"id": 1, "email": "a@x", "name": "Anne"}, {"id": 3, "email": "c@x", "name": "Cy"}]"#;
    let reply = send(&app, Method::POST, "/people?select=id,name", &[merge], Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(reply.json(), json!([{"id": 1, "name": "Anne"}, {"id": 3, "name": "Cy"}]));
    assert_eq!(count(&fx, "SELECT age FROM people WHERE id = 1"), 30, "columns not in the body are kept");

    let ignore = ("Prefer", "resolution=ignore-duplicates, return=representation");
    let body = r#"[{"id": 1, "email": "a@x", "name": "Ignored"}, {"id": 4, "email": "d@x", "name": "Di"}]"#;
    let reply = send(&app, Method::POST, "/people?select=id,name", &[ignore], Some(body)).await;
    assert_eq!(reply.json(), json!([{"id": 4, "name": "Di"}]), "the duplicate is skipped");
    assert_eq!(get(&app, "/people?select=name&id=eq.1").await.json(), json!([{"name": "Anne"}]));

    // on_conflict names a unique column other than the primary key.
    let body = r#"{"email": "b@x", "name": "Bobby"}"#;
    let reply = send(&app, Method::POST, "/people?on_conflict=email&select=id,name", &[merge], Some(body)).await;
    assert_eq!(reply.json(), json!([{"id": 2, "name": "Bobby"}]));
    let reply = send(&app, Method::POST, "/people?on_conflict=name", &[merge], Some(body)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "name has no unique index: {}", reply.text());

    // Composite primary key.
    let reply = send(&app, Method::POST, "/pairs", &[merge], Some(r#"{"a": "x", "b": "y", "v": 2}"#)).await;
    assert_eq!(reply.json(), json!([{"a": "x", "b": "y", "v": 2}]));
    assert_eq!(count(&fx, "SELECT count(*) FROM pairs"), 1);
}

#[tokio::test]
async fn put_upserts_one_row_by_primary_key() {
    let fx = Fixture::new(PEOPLE);
    let app = fx.app(&["people", "pairs"]);
    let row = r#"{"id": 7, "email": "p@x", "name": "Pat", "age": 5}"#;
    let reply = send(&app, Method::PUT, "/people?id=eq.7", &[REPR], Some(row)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), json!([{"id": 7, "email": "p@x", "name": "Pat", "age": 5, "upper_name": "PAT"}]));
    let replaced = r#"{"id": 7, "email": "p@x", "name": "Pam", "age": null}"#;
    let reply = send(&app, Method::PUT, "/people?id=eq.7", &[], Some(replaced)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(get(&app, "/people?select=name,age&id=eq.7").await.json(), json!([{"name": "Pam", "age": null}]));
    let reply = send(&app, Method::PUT, "/pairs?a=eq.x&b=eq.y", &[REPR], Some(r#"{"a": "x", "b": "y", "v": 9}"#)).await;
    assert_eq!(reply.json(), json!([{"a": "x", "b": "y", "v": 9}]));

    let before = fx.dump();
    for (uri, body) in [
        ("/people?id=eq.8", r#"{"id": 8, "email": "q@x"}"#),
        ("/people?id=eq.8", r#"{"id": 9, "email": "q@x", "name": null, "age": null}"#),
        ("/people?email=eq.q@x", r#"{"id": 8, "email": "q@x", "name": null, "age": null}"#),
        ("/people?id=gt.8", r#"{"id": 8, "email": "q@x", "name": null, "age": null}"#),
        ("/people", r#"{"id": 8, "email": "q@x", "name": null, "age": null}"#),
        ("/pairs?a=eq.x", r#"{"a": "x", "b": "z", "v": 1}"#),
    ] {
        let reply = send(&app, Method::PUT, uri, &[], Some(body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri} {body}");
        assert_eq!(reply.code(), "PGRST105", "{uri} {body}");
    }
    assert_eq!(fx.dump(), before);
}

#[tokio::test]
async fn patch_and_delete() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let reply = send(&app, Method::PATCH, "/items?tag=eq.veg&select=id,qty", &[REPR], Some(r#"{"qty": 99}"#)).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!([{"id": 3, "qty": 99}, {"id": 5, "qty": 99}]));
    let reply =
        send(&app, Method::PATCH, "/items?id=eq.1", &[], Some(r#"{"name": "apricot", "data": "\\x0102"}"#)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(
        get(&app, "/items?select=name,data&id=eq.1").await.json(),
        json!([{"name": "apricot", "data": "\\x0102"}])
    );

    let reply = send(&app, Method::DELETE, "/items?id=in.(4,5)&select=id", &[REPR], None).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!([{"id": 4}, {"id": 5}])));
    let reply = send(&app, Method::DELETE, "/items?id=eq.3", &[], None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(count(&fx, "SELECT count(*) FROM items"), 2);
    let reply = send(&app, Method::PATCH, "/items?id=eq.1&limit=1", &[], Some(r#"{"qty": 1}"#)).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "limit on PATCH is refused, not ignored");
}

#[tokio::test]
async fn unfiltered_writes_are_refused_unless_allowed() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let before = fx.dump();
    let reply = send(&app, Method::PATCH, "/items", &[], Some(r#"{"qty": 0}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "LC001"));
    assert_eq!(send(&app, Method::DELETE, "/items", &[], None).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(fx.dump(), before);

    let mut options = fx.options(&["items"]);
    options.allow_unfiltered_writes = true;
    let app = common::app_with(options);
    assert_eq!(send(&app, Method::PATCH, "/items", &[], Some(r#"{"qty": 0}"#)).await.status, StatusCode::NO_CONTENT);
    assert_eq!(count(&fx, "SELECT count(*) FROM items WHERE qty = 0"), 5);
    assert_eq!(send(&app, Method::DELETE, "/items", &[], None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(count(&fx, "SELECT count(*) FROM items"), 0);
}

#[tokio::test]
async fn single_object_writes_roll_back_unless_exactly_one_row() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let before = fx.dump();
    let object = ("Accept", "application/vnd.pgrst.object+json");
    let reply = send(&app, Method::PATCH, "/items?tag=eq.fruit", &[object], Some(r#"{"qty": 1}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::NOT_ACCEPTABLE, "PGRST116"));
    let reply = send(&app, Method::DELETE, "/items?tag=eq.veg", &[object, REPR], None).await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE);
    let reply = send(&app, Method::POST, "/items", &[object], Some(r#"[{"name": "a"}, {"name": "b"}]"#)).await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE);
    assert_eq!(fx.dump(), before, "rolled back");
    let reply = send(&app, Method::PATCH, "/items?id=eq.2&select=id,qty", &[object, REPR], Some(r#"{"qty": 1}"#)).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!({"id": 2, "qty": 1})));
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let fx = Fixture::new(ITEMS);
    let mut options = fx.options(&["items"]);
    options.max_body_bytes = 64;
    let app = common::app_with(options);
    let before = fx.dump();
    let big = format!(r#"{{"name": "{}"}}"#, "x".repeat(100));
    let reply = send(&app, Method::POST, "/items", &[], Some(&big)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::PAYLOAD_TOO_LARGE, "LC002"));
    let length = big.len().to_string();
    let reply = send(&app, Method::POST, "/items", &[("Content-Length", &length)], Some(&big)).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "refused by the declared length");
    assert_eq!(fx.dump(), before);
    let small = r#"{"name": "fits"}"#;
    assert_eq!(send(&app, Method::POST, "/items", &[], Some(small)).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn large_bodies_are_parsed_and_inserted() {
    let fx = Fixture::new(PEOPLE);
    let app = fx.app(&["people"]);
    let rows: Vec<serde_json::Value> = (0..3000)
        .map(|i| json!({"email": format!("user{i}@example.com"), "name": format!("User number {i}")}))
        .collect();
    let body = serde_json::to_string(&rows).expect("json");
    assert!(body.len() > 100_000, "large enough to be parsed off the executor");
    let reply = send(&app, Method::POST, "/people", &[], Some(&body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(count(&fx, "SELECT count(*) FROM people"), 3002);
    let broken = &body[..body.len() - 1];
    let reply = send(&app, Method::POST, "/people", &[], Some(broken)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST102"));
    assert_eq!(count(&fx, "SELECT count(*) FROM people"), 3002);
}

#[tokio::test]
async fn a_read_replica_answers_writes_with_405_and_serves_reads() {
    let fx = Fixture::new(PEOPLE);
    let mut options = fx.options(&["people"]);
    options.read_only = true;
    let app = common::app_with(options);
    let before = fx.dump();
    for method in [Method::POST, Method::PATCH, Method::PUT, Method::DELETE] {
        let reply = send(&app, method.clone(), "/people?id=eq.1", &[], Some(r#"{"email": "z@x"}"#)).await;
        assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(reply.code(), "LC010", "{method}");
        assert!(reply.json()["message"].as_str().is_some_and(|m| m.contains("read replica")), "{}", reply.text());
        assert_eq!(reply.header("allow"), Some("GET, HEAD, OPTIONS"));
    }
    assert_eq!(fx.dump(), before, "nothing was written");
    let reply = get(&app, "/people?select=email&order=id").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!([{"email": "a@x"}, {"email": "b@x"}]));
}
