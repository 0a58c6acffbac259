//! Hostile text in every place a request can carry it: names are refused with 400, values are literals, and
//! the database never changes.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{Fixture, ITEMS, enc, get, send};
use serde_json::json;

fn corpus() -> Vec<String> {
    let mut corpus: Vec<String> = [
        "'",
        "\"",
        "''",
        ";--",
        "name;--",
        "') OR 1=1--",
        "\" OR 1=1 --",
        ") OR 1=1",
        "id) OR (1=1",
        "1; DROP TABLE items;--",
        "items\"; DROP TABLE items; --",
        "name\" = name OR \"1",
        "id\"--",
        "(SELECT value FROM secret)",
        "name, (SELECT value FROM secret)",
        "sqlite_master",
        "rowid",
        "名前",
        "ｎａｍｅ",
        "na\u{301}me",
        "\u{0}",
        "name\u{0}",
        "na\u{0}me; DROP TABLE items",
        "\\",
        "name\\",
        "\n",
        "%",
        "?",
        "?1",
        ":name",
        "@name",
        "$name",
        "`name`",
        "[name]",
        "NAME",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    corpus.push("n".repeat(10_000));
    corpus.push(format!("{}; DROP TABLE items;", "x".repeat(5_000)));
    corpus
}

#[tokio::test]
async fn hostile_names_are_400_and_change_nothing() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let before = fx.dump();
    for text in corpus() {
        let e = enc(&text);
        let short: String = text.chars().take(40).collect();
        for uri in [
            format!("/items?{e}=eq.1"),
            format!("/items?or=({e}.eq.1)"),
            format!("/items?select={e}"),
            format!("/items?select=id,{e}"),
            format!("/items?select=alias:{e}"),
            format!("/items?order={e}"),
            format!("/items?order={e}.desc"),
            format!("/items?order=id,{e}"),
        ] {
            let reply = get(&app, &uri).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{short:?} in {}", &uri[..uri.len().min(80)]);
            assert!(!reply.text().contains("top secret"));
        }
        let body = json!({ text.clone(): 1 }).to_string();
        let reply = send(&app, Method::POST, "/items", &[], Some(&body)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{short:?} as a body key");
        let reply = send(&app, Method::PATCH, &format!("/items?{e}=eq.1"), &[], Some(r#"{"qty": 0}"#)).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{short:?} as a PATCH filter");
        let reply = send(&app, Method::DELETE, &format!("/items?id=eq.1&{e}=is.null"), &[], None).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{short:?} as a DELETE filter");
        let reply = send(
            &app,
            Method::POST,
            &format!("/items?on_conflict={e}"),
            &[("Prefer", "resolution=merge-duplicates")],
            Some(r#"{"name": "x"}"#),
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{short:?} as on_conflict");
        let reply = get(&app, &format!("/{e}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{short:?} as a table");
    }
    assert_eq!(fx.dump(), before);
}

#[tokio::test]
async fn hostile_values_are_literals() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let before = fx.dump();
    for text in corpus() {
        let e = enc(&text);
        let short: String = text.chars().take(40).collect();
        for uri in [
            format!("/items?name=eq.{e}"),
            format!("/items?name=not.neq.{e}"),
            format!("/items?name=gt.{e}&name=lt.{e}"),
            format!("/items?name=in.({})", enc(&format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")))),
            format!("/items?or=(name.eq.{})", enc(&format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"")))),
        ] {
            let reply = get(&app, &uri).await;
            assert_eq!(reply.status, StatusCode::OK, "{short:?} in {}: {}", &uri[..uri.len().min(80)], reply.text());
            assert_eq!(reply.json(), json!([]), "{short:?} matched rows in {}", &uri[..uri.len().min(80)]);
        }
        // Patterns may match (`%` is a wildcard by design), but they are bound values all the same.
        for op in ["like", "ilike", "not.like"] {
            let reply = get(&app, &format!("/items?select=id&name={op}.{e}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{short:?} as a {op} pattern");
        }
        let reply = send(&app, Method::PATCH, &format!("/items?name=eq.{e}"), &[], Some(r#"{"qty": 0}"#)).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{short:?}");
        let reply = send(&app, Method::DELETE, &format!("/items?tag=eq.{e}"), &[], None).await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{short:?}");
    }
    assert_eq!(fx.dump(), before, "no hostile value matched or changed a row");

    // Stored and read back byte for byte.
    for text in corpus() {
        let body = json!({"name": text, "tag": "hostile"}).to_string();
        let reply =
            send(&app, Method::POST, "/items?select=name", &[("Prefer", "return=representation")], Some(&body)).await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(reply.json(), json!([{"name": text}]));
        let reply = get(&app, &format!("/items?select=name&name=eq.{}&tag=eq.hostile", enc(&text))).await;
        assert_eq!(reply.json(), json!([{"name": text}]), "found by its exact value");
    }
    let stored: i64 =
        fx.conn().query_row("SELECT count(*) FROM items WHERE tag = 'hostile'", [], |r| r.get(0)).expect("count");
    assert_eq!(stored, i64::try_from(corpus().len()).expect("small"));
    assert_eq!(
        fx.conn().query_row("SELECT value FROM secret", [], |r| r.get::<_, String>(0)).ok().as_deref(),
        Some("top secret")
    );
}

#[tokio::test]
async fn hostile_range_and_prefer_headers_are_harmless() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let before = fx.dump();
    for (name, value) in [
        ("Range", "0-1; DROP TABLE items"),
        ("Range", "-1-5"),
        ("Range", "99999999999999999999999-"),
        ("Range", "0-18446744073709551615"),
        ("Prefer", "count=exact; DROP TABLE items"),
        ("Prefer", "return=representation\"--"),
        ("Accept", "application/json'--"),
    ] {
        let reply = send(&app, Method::GET, "/items?select=id", &[(name, value)], None).await;
        assert!(
            reply.status == StatusCode::OK || reply.status == StatusCode::NOT_ACCEPTABLE,
            "{name}: {value}: {}",
            reply.status
        );
    }
    for query in ["limit=18446744073709551615", "offset=18446744073709551615", "limit=1e3", "offset=0x10"] {
        let status = get(&app, &format!("/items?{query}")).await.status;
        assert!(
            status == StatusCode::OK
                || status == StatusCode::BAD_REQUEST
                || status == StatusCode::RANGE_NOT_SATISFIABLE,
            "{query}: {status}"
        );
    }
    assert_eq!(fx.dump(), before);
}

#[tokio::test]
async fn hostile_embedded_names_are_400_and_keys_are_literals() {
    let fx = Fixture::new(&format!(
        "{ITEMS} CREATE TABLE notes (id INTEGER PRIMARY KEY, item_id INTEGER REFERENCES items (id), body TEXT);
         INSERT INTO notes VALUES (1, 1, 'n1');"
    ));
    let app = fx.app(&["items", "notes"]);
    let before = fx.dump();
    for text in corpus() {
        let e = enc(&text);
        let short: String = text.chars().take(40).collect();
        for uri in [
            format!("/items?select=id,{e}(*)"),
            format!("/items?select=id,notes({e})"),
            format!("/items?select=id,notes(id,{e})"),
            format!("/items?select=id,notes!{e}(*)"),
            format!("/items?select=id,notes(*)&notes.{e}=eq.1"),
            format!("/items?select=id,notes(*)&notes.order={e}"),
            format!("/items?select=id,notes(*)&{e}.id=eq.1"),
            format!("/notes?select=id,{e}:items({e})"),
        ] {
            let reply = get(&app, &uri).await;
            assert!(reply.status.is_client_error(), "{short:?} in {}: {}", &uri[..uri.len().min(80)], reply.status);
            assert!(!reply.text().contains("top secret"));
        }
        // As a key of embedded rows the text is a bound parameter: it comes back verbatim or is refused by the
        // grammar, never run.
        let reply = get(&app, &format!("/items?select=id,notes({e}:body)&id=eq.1")).await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.json(), json!([{"id": 1, "notes": [{ text.clone(): "n1" }]}]), "{short:?}");
        } else {
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{short:?}");
        }
    }
    assert_eq!(fx.dump(), before);
}
