//! `Prefer` on writes as PostgREST clients use it: counts in `Content-Range`, `missing=default`, `tx=rollback`,
//! `handling=strict` and `max-affected`.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{Fixture, send};
use serde_json::json;

const THINGS: &str = "
    CREATE TABLE things (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'new',
        qty INTEGER DEFAULT 1
    );
    INSERT INTO things (id, name) VALUES (1, 'a'), (2, 'b'), (3, 'c');
";

#[tokio::test]
async fn counts_on_writes_follow_postgrest() {
    // PostgREST's Response.hs: inserts and deletes answer `*/N`, updates `0-(N-1)/N`; N only with a count.
    let fx = Fixture::new(THINGS);
    let app = fx.app(&["things"]);
    let count = ("Prefer", "count=exact");
    let body = r#"[{"name": "d"}, {"name": "e"}]"#;
    let reply = send(&app, Method::POST, "/things", &[count], Some(body)).await;
    assert_eq!((reply.status, reply.header("content-range")), (StatusCode::CREATED, Some("*/2")));
    assert_eq!(reply.header("preference-applied"), Some("count=exact"));
    let reply = send(&app, Method::POST, "/things", &[], Some(r#"{"name": "f"}"#)).await;
    assert_eq!(reply.header("content-range"), Some("*/*"));

    let reply = send(&app, Method::PATCH, "/things?id=lte.3", &[count], Some(r#"{"qty": 5}"#)).await;
    assert_eq!((reply.status, reply.header("content-range")), (StatusCode::NO_CONTENT, Some("0-2/3")));
    let reply = send(&app, Method::PATCH, "/things?id=lte.3", &[], Some(r#"{"qty": 6}"#)).await;
    assert_eq!(reply.header("content-range"), Some("0-2/*"));
    let reply = send(&app, Method::PATCH, "/things?id=eq.99", &[count], Some(r#"{"qty": 6}"#)).await;
    assert_eq!(reply.header("content-range"), Some("*/0"));

    let repr = ("Prefer", "count=exact, return=representation");
    let reply = send(&app, Method::DELETE, "/things?id=gt.3&select=id", &[repr], None).await;
    assert_eq!((reply.status, reply.header("content-range")), (StatusCode::OK, Some("*/3")));
    assert_eq!(reply.json(), json!([{"id": 4}, {"id": 5}, {"id": 6}]));
}

#[tokio::test]
async fn missing_keys_take_the_default_when_asked() {
    let fx = Fixture::new(THINGS);
    let app = fx.app(&["things"]);
    let body = r#"[{"name": "x", "status": "old"}, {"name": "y"}, {"name": "z", "qty": null}]"#;
    let prefer = ("Prefer", "missing=default, return=representation");
    let reply =
        send(&app, Method::POST, "/things?columns=name,status,qty&select=name,status,qty", &[prefer], Some(body)).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text());
    assert_eq!(
        reply.json(),
        json!([
            {"name": "x", "status": "old", "qty": 1},
            {"name": "y", "status": "new", "qty": 1},
            {"name": "z", "status": "new", "qty": null},
        ]),
        "absent keys take the DEFAULT, an explicit null stays null"
    );
    assert_eq!(reply.header("preference-applied"), Some("missing=default, return=representation"));
    // Without the preference an absent key is NULL, which this NOT NULL column refuses.
    let reply = send(&app, Method::POST, "/things?columns=name,status", &[], Some(r#"{"name": "w"}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "23502"));
}

#[tokio::test]
async fn rollback_answers_as_if_committed_and_keeps_nothing() {
    let fx = Fixture::new(THINGS);
    let app = fx.app(&["things"]);
    let before = fx.dump();
    let prefer = ("Prefer", "tx=rollback, return=representation");
    let reply = send(&app, Method::POST, "/things?select=id,name", &[prefer], Some(r#"{"name": "dry"}"#)).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::CREATED, json!([{"id": 4, "name": "dry"}])));
    assert_eq!(reply.header("preference-applied"), Some("tx=rollback, return=representation"));
    let reply = send(&app, Method::PATCH, "/things?id=eq.1&select=qty", &[prefer], Some(r#"{"qty": 9}"#)).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!([{"qty": 9}])));
    let reply = send(&app, Method::DELETE, "/things?id=gt.0", &[("Prefer", "tx=rollback")], None).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(fx.dump(), before, "every dry run was rolled back");
    let reply = send(&app, Method::POST, "/things", &[("Prefer", "tx=commit")], Some(r#"{"name": "kept"}"#)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
    assert_ne!(fx.dump(), before);
}

#[tokio::test]
async fn strict_handling_refuses_unknown_preferences_and_bounds_writes() {
    let fx = Fixture::new(THINGS);
    let app = fx.app(&["things"]);
    let before = fx.dump();
    let reply = send(&app, Method::GET, "/things", &[("Prefer", "handling=lenient, nonsense=1")], None).await;
    assert_eq!(reply.status, StatusCode::OK, "lenient (the default) ignores what it does not know");
    let reply = send(&app, Method::GET, "/things", &[("Prefer", "handling=strict, nonsense=1")], None).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST122"));
    assert!(reply.json()["message"].as_str().expect("message").contains("nonsense=1"));

    let strict = ("Prefer", "handling=strict, max-affected=2");
    let reply = send(&app, Method::PATCH, "/things?id=gt.0", &[strict], Some(r#"{"qty": 0}"#)).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST124"));
    assert_eq!(fx.dump(), before, "a write over max-affected is rolled back");
    let reply = send(&app, Method::PATCH, "/things?id=gt.1", &[strict], Some(r#"{"qty": 0}"#)).await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(reply.header("preference-applied"), Some("handling=strict, max-affected=2"));
}
