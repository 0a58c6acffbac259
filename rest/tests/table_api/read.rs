//! GET/HEAD: operators, select, order, pagination, counts, single objects, schema changes, OpenAPI.

use crate::common;

use axum::http::{Method, StatusCode};
use common::{Fixture, ITEMS, enc, get, send};
use serde_json::json;

/// Ids of the rows `query` selects, in id order.
async fn ids(app: &axum::Router, query: &str) -> Vec<i64> {
    let reply = get(app, &format!("/items?select=id&order=id&{query}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text());
    reply.json().as_array().expect("array").iter().map(|row| row["id"].as_i64().expect("id")).collect()
}

#[tokio::test]
async fn comparison_operators() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    assert_eq!(ids(&app, "qty=eq.10").await, [1]);
    assert_eq!(ids(&app, "qty=neq.10").await, [3, 4, 5], "NULL is neither equal nor unequal");
    assert_eq!(ids(&app, "qty=gt.5").await, [1, 4]);
    assert_eq!(ids(&app, "qty=gte.5").await, [1, 3, 4]);
    assert_eq!(ids(&app, "qty=ge.5").await, [1, 3, 4]);
    assert_eq!(ids(&app, "qty=lt.5").await, [5]);
    assert_eq!(ids(&app, "qty=lte.5").await, [3, 5]);
    assert_eq!(ids(&app, "qty=le.5").await, [3, 5]);
    // Numeric affinity: as text, "10" < "9"; as numbers it is not.
    assert_eq!(ids(&app, "qty=gt.9").await, [1, 4]);
    assert_eq!(ids(&app, "price=lt.1.5").await, [2]);
    assert_eq!(ids(&app, "tag=eq.fruit&qty=gt.1").await, [1], "filters are ANDed");
    assert_eq!(ids(&app, "tag=isdistinct.fruit").await, [3, 4, 5], "NULL is distinct from fruit");
}

#[tokio::test]
async fn pattern_operators() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    assert_eq!(ids(&app, "name=like.*an*").await, [2, 5]);
    assert_eq!(ids(&app, "name=like.b*").await, Vec::<i64>::new(), "like is case-sensitive");
    assert_eq!(ids(&app, "name=like.B*").await, [2]);
    assert_eq!(ids(&app, "name=like.%25rr%25").await, [3], "% is a wildcard too");
    assert_eq!(ids(&app, "name=like.c_rrot").await, [3], "_ matches one character");
    assert_eq!(ids(&app, &format!("name=like.{}", enc("egg\\_*"))).await, [5], "\\_ is a literal underscore");
    assert_eq!(ids(&app, &format!("name=like.{}", enc("*[*"))).await, Vec::<i64>::new(), "[ is literal");
    assert_eq!(ids(&app, "name=ilike.b*").await, [2]);
    assert_eq!(ids(&app, "name=ilike.*AN*").await, [2, 5]);
    assert_eq!(ids(&app, "name=not.ilike.*a*").await, Vec::<i64>::new());
}

#[tokio::test]
async fn in_is_not_and_logic_trees() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    assert_eq!(ids(&app, "id=in.(1,3)").await, [1, 3]);
    assert_eq!(ids(&app, &format!("name=in.({})", enc("\"date, dried\",apple"))).await, [1, 4]);
    assert_eq!(ids(&app, "id=in.()").await, Vec::<i64>::new());
    assert_eq!(ids(&app, "id=not.in.(1,2,3)").await, [4, 5]);
    assert_eq!(ids(&app, "tag=is.null").await, [4]);
    assert_eq!(ids(&app, "tag=not.is.null").await, [1, 2, 3, 5]);
    assert_eq!(ids(&app, "active=is.true").await, [1, 3]);
    assert_eq!(ids(&app, "active=is.false").await, [2, 4]);
    assert_eq!(ids(&app, "active=eq.true").await, [1, 3], "true binds as 1 for a BOOLEAN column");
    assert_eq!(ids(&app, "tag=not.eq.fruit").await, [3, 5]);
    assert_eq!(ids(&app, "or=(qty.eq.10,tag.eq.veg)").await, [1, 3, 5]);
    assert_eq!(ids(&app, "or=(id.eq.1,and(tag.eq.veg,qty.gt.1))").await, [1, 3]);
    assert_eq!(ids(&app, "and=(tag.eq.fruit,price.lt.1)").await, [2]);
    assert_eq!(ids(&app, "not.or=(tag.eq.fruit,tag.is.null)").await, [3, 5]);
    assert_eq!(ids(&app, "or=(id.eq.5,not.and(qty.gte.1,qty.lte.10))").await, [4, 5]);
    assert_eq!(ids(&app, &format!("or=({})", enc("name.eq.\"date, dried\",id.in.(2,3)"))).await, [2, 3, 4]);
}

#[tokio::test]
async fn bad_terms_answer_400_naming_the_term() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let reply = get(&app, "/items?colour=eq.red").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.code(), "42703", "PostgreSQL's undefined_column, as PostgREST passes it on");
    assert_eq!(reply.json()["message"], "column `colour` does not exist in table `items`");
    for query in ["select=id,nope", "order=nope.desc", "or=(id.eq.1,nope.eq.2)"] {
        let reply = get(&app, &format!("/items?{query}")).await;
        assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "42703"), "{query}");
    }
    for (query, named) in [
        ("qty=zz.1", "zz"),
        ("qty=fts.word", "fts"),
        ("qty=in.1,2", "qty=in.1,2"),
        ("or=(qty.eq.1", "or"),
        ("order=qty.sideways", "sideways"),
        ("select=qty::text", "qty::text"),
        ("limit=-1", "limit=-1"),
        ("select=nope", "nope"),
        ("order=nope.desc", "nope"),
    ] {
        let reply = get(&app, &format!("/items?{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        let message = reply.json()["message"].as_str().expect("message").to_owned();
        assert!(message.contains(named), "{query}: {message}");
        assert!(reply.json().get("details").is_some() && reply.json().get("hint").is_some());
    }
}

#[tokio::test]
async fn select_aliases_and_value_rendering() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let reply = get(&app, "/items?select=id,label:name&id=eq.1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.text(), r#"[{"id":1,"label":"apple"}]"#, "keys keep the selected order");
    assert_eq!(reply.header("content-type"), Some("application/json; charset=utf-8"));
    let row = &get(&app, "/items?id=eq.1").await.json()[0];
    assert_eq!(
        row,
        &json!({"id": 1, "name": "apple", "qty": 10, "price": 1.5, "tag": "fruit", "active": true,
                "meta": {"c": "red"}, "data": "\\x00ff"})
    );
    let reply = get(&app, "/items?select=qty,*&id=eq.2").await;
    assert_eq!(reply.json()[0]["qty"], json!(null));
    assert_eq!(reply.json()[0]["active"], json!(false));
}

#[tokio::test]
async fn order_with_nulls() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let order = |query: &'static str| {
        let app = app.clone();
        async move {
            let reply = get(&app, &format!("/items?select=id&{query}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{query}");
            reply.json().as_array().expect("array").iter().map(|r| r["id"].as_i64().expect("id")).collect::<Vec<_>>()
        }
    };
    assert_eq!(order("order=qty.desc.nullslast").await, [4, 1, 3, 5, 2]);
    assert_eq!(order("order=qty.desc.nullsfirst").await, [2, 4, 1, 3, 5]);
    assert_eq!(order("order=qty.asc.nullslast").await, [5, 3, 1, 4, 2]);
    // PostgreSQL's defaults, not SQLite's: NULLs last ascending, first descending.
    assert_eq!(order("order=qty").await, [5, 3, 1, 4, 2], "NULLs last by default when ascending");
    assert_eq!(order("order=qty.desc").await, [2, 4, 1, 3, 5], "NULLs first by default when descending");
    assert_eq!(order("order=price.asc").await, [2, 1, 5, 4, 3]);
    assert_eq!(order("order=tag.asc,id.desc").await, [2, 1, 5, 3, 4]);
}

#[tokio::test]
async fn limit_offset_and_range() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let reply = get(&app, "/items?select=id&order=id&limit=2&offset=1").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!([{"id": 2}, {"id": 3}]));
    assert_eq!(reply.header("content-range"), Some("1-2/*"));

    let reply =
        send(&app, Method::GET, "/items?select=id&order=id", &[("Range", "0-1"), ("Range-Unit", "items")], None).await;
    assert_eq!(reply.json(), json!([{"id": 1}, {"id": 2}]));
    assert_eq!(reply.header("content-range"), Some("0-1/*"));

    let reply = send(&app, Method::GET, "/items?select=id&order=id&limit=10", &[("Range", "3-")], None).await;
    assert_eq!(reply.json(), json!([{"id": 4}, {"id": 5}]), "range and limit intersect");
    assert_eq!(reply.header("content-range"), Some("3-4/*"));

    let reply = get(&app, "/items?select=id").await;
    assert_eq!(reply.header("content-range"), Some("0-4/*"));
    let reply = get(&app, "/items?id=gt.100").await;
    assert_eq!((reply.status, reply.header("content-range")), (StatusCode::OK, Some("*/*")));
    assert_eq!(reply.json(), json!([]));
}

#[tokio::test]
async fn count_exact_partial_and_complete() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let count = [("Prefer", "count=exact")];
    let reply = send(&app, Method::GET, "/items?select=id&limit=2", &count, None).await;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(reply.header("content-range"), Some("0-1/5"));
    assert_eq!(reply.header("preference-applied"), Some("count=exact"));

    let reply = send(&app, Method::GET, "/items?select=id", &count, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-range"), Some("0-4/5"));

    let reply = send(&app, Method::GET, "/items?select=id&offset=3", &count, None).await;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT, "an offset makes the response partial");
    assert_eq!(reply.header("content-range"), Some("3-4/5"));

    let reply =
        send(&app, Method::GET, "/items?tag=eq.veg", &[("Prefer", "count=exact"), ("Range", "0-0")], None).await;
    assert_eq!((reply.status, reply.header("content-range")), (StatusCode::PARTIAL_CONTENT, Some("0-0/2")));

    let reply = send(&app, Method::GET, "/items?id=gt.100", &count, None).await;
    assert_eq!((reply.status, reply.header("content-range")), (StatusCode::OK, Some("*/0")));
}

#[tokio::test]
async fn past_the_end_is_empty_and_416_only_beyond_a_counted_total() {
    // PostgREST's `rangeStatusHeader` (src/PostgREST/RangeQuery.hs): without a count the status is always 200;
    // with one, 416 when the offset is beyond the total and 206 when fewer rows than the total are shown.
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    for query in ["/items?offset=100&limit=5", "/items?offset=5", "/items?offset=10"] {
        let reply = get(&app, query).await;
        assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!([])), "{query}: page until empty");
        assert_eq!(reply.header("content-range"), Some("*/*"), "{query}");
    }
    let reply = send(&app, Method::GET, "/items", &[("Range", "10-20")], None).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!([])));

    let count = [("Prefer", "count=exact")];
    let reply = send(&app, Method::GET, "/items?offset=5", &count, None).await;
    assert_eq!((reply.status, reply.header("content-range")), (StatusCode::PARTIAL_CONTENT, Some("*/5")));
    assert_eq!(reply.json(), json!([]));
    let reply = send(&app, Method::GET, "/items?offset=6&limit=5", &count, None).await;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(reply.code(), "PGRST103");
    assert_eq!(reply.header("content-range"), Some("*/5"));
    assert_eq!(reply.json()["details"], "An offset of 6 was requested, but there are only 5 rows.");
    let reply = send(&app, Method::GET, "/items", &[("Prefer", "count=exact"), ("Range", "10-20")], None).await;
    assert_eq!(reply.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(get(&app, "/items?offset=4").await.status, StatusCode::OK);
    assert_eq!(get(&app, "/items?offset=2&limit=0").await.status, StatusCode::OK, "an empty window inside the rows");
}

#[tokio::test]
async fn max_rows_caps_every_response() {
    let fx = Fixture::new(ITEMS);
    let mut options = fx.options(&["items"]);
    options.max_rows = Some(2);
    let app = common::app_with(options);
    let reply = send(&app, Method::GET, "/items?select=id", &[("Prefer", "count=exact")], None).await;
    assert_eq!(reply.json().as_array().map(Vec::len), Some(2));
    assert_eq!((reply.status, reply.header("content-range")), (StatusCode::PARTIAL_CONTENT, Some("0-1/5")));
}

#[tokio::test]
async fn single_object_accept() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let object = [("Accept", "application/vnd.pgrst.object+json")];
    let reply = send(&app, Method::GET, "/items?select=id,name&id=eq.3", &object, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json(), json!({"id": 3, "name": "carrot"}));
    assert_eq!(reply.header("content-type"), Some("application/vnd.pgrst.object+json; charset=utf-8"));
    for query in ["tag=eq.fruit", "id=eq.99"] {
        let reply = send(&app, Method::GET, &format!("/items?{query}"), &object, None).await;
        assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE, "{query}");
        assert_eq!(reply.code(), "PGRST116");
    }
    let reply = send(&app, Method::GET, "/items", &[("Accept", "image/png")], None).await;
    assert_eq!(reply.status, StatusCode::NOT_ACCEPTABLE);
}

#[tokio::test]
async fn head_has_headers_without_body() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let reply = send(&app, Method::HEAD, "/items?limit=2", &[("Prefer", "count=exact")], None).await;
    assert_eq!(reply.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(reply.header("content-range"), Some("0-1/5"));
    assert!(reply.body.is_empty());
}

#[tokio::test]
async fn tables_not_allowed_are_404_and_never_leak() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items", "planned"]);
    let hidden = get(&app, "/secret").await;
    let missing = get(&app, "/nothere").await;
    let planned = get(&app, "/planned").await;
    for reply in [&hidden, &missing, &planned] {
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
        assert_eq!(reply.code(), "PGRST205");
        assert!(!reply.text().contains("top secret"));
    }
    let shape = |r: &common::Reply, name: &str| r.json()["message"].as_str().expect("message").replace(name, "T");
    assert_eq!(shape(&hidden, "secret"), shape(&missing, "nothere"), "existing and missing look the same");
    assert_eq!(shape(&hidden, "secret"), shape(&planned, "planned"));
    for method in [Method::POST, Method::PATCH, Method::DELETE, Method::HEAD] {
        let reply = send(&app, method.clone(), "/secret?id=eq.1", &[], Some("{\"value\": \"x\"}")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method}");
    }
    assert_eq!(get(&app, "/items/1").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        fx.conn().query_row("SELECT value FROM secret", [], |r| r.get::<_, String>(0)).ok().as_deref(),
        Some("top secret")
    );
}

#[tokio::test]
async fn schema_migration_is_picked_up_while_serving() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items", "later"]);
    assert_eq!(get(&app, "/items?select=colour").await.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(&app, "/later").await.status, StatusCode::NOT_FOUND);
    fx.conn()
        .execute_batch(
            "ALTER TABLE items ADD COLUMN colour TEXT DEFAULT 'green';
             CREATE TABLE later (k TEXT PRIMARY KEY); INSERT INTO later VALUES ('x');",
        )
        .expect("migration");
    let reply = get(&app, "/items?select=id,colour&id=eq.1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json(), json!([{"id": 1, "colour": "green"}]));
    assert_eq!(get(&app, "/later").await.json(), json!([{"k": "x"}]));
    let doc = get(&app, "/openapi.json").await.json();
    assert!(doc["components"]["schemas"]["items"]["properties"]["colour"].is_object());
    fx.conn().execute_batch("DROP TABLE later").expect("drop");
    assert_eq!(get(&app, "/later").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn openapi_document_describes_allowed_tables() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let reply = get(&app, "/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.json();
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().expect("paths");
    assert_eq!(paths.keys().collect::<Vec<_>>(), ["/items"], "only allowed tables");
    for method in ["get", "head", "post", "patch", "put", "delete"] {
        assert!(paths["/items"][method]["responses"].is_object(), "{method}");
    }
    let params: Vec<&str> = paths["/items"]["get"]["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for name in ["select", "order", "limit", "offset", "qty", "or", "Range", "Prefer"] {
        assert!(params.contains(&name), "{name} in {params:?}");
    }
    let items = &doc["components"]["schemas"]["items"]["properties"];
    assert_eq!(
        items["qty"],
        json!({"type": "integer", "format": "int64", "nullable": true, "description": "SQLite type INTEGER"})
    );
    assert_eq!(items["active"]["type"], "boolean");
    assert_eq!(items["price"]["type"], "number");
    let insert = &doc["components"]["schemas"]["items.insert"];
    assert_eq!(insert["required"], json!(["name"]), "id is the rowid and may be omitted");
    assert_eq!(get(&app, "/").await.json(), doc, "the root serves the same document");
}

/// One connection, so the statements it cached before the migration are the ones that meet the new schema.
#[tokio::test]
async fn migration_is_picked_up_by_a_connection_with_cached_statements() {
    let fx = Fixture::new(ITEMS);
    let mut options = fx.options(&["items"]);
    options.read_connections = 1;
    let app = common::app_with(options);
    for _ in 0..3 {
        assert_eq!(get(&app, "/items?select=id,name&id=eq.1").await.json(), json!([{"id": 1, "name": "apple"}]));
    }
    let before = get(&app, "/items?id=eq.2").await.json();
    assert!(before[0].get("colour").is_none());
    fx.conn()
        .execute_batch(
            "ALTER TABLE items ADD COLUMN colour TEXT DEFAULT 'green';
             ALTER TABLE items RENAME COLUMN name TO title;",
        )
        .expect("migration");
    let after = get(&app, "/items?id=eq.2").await.json();
    assert_eq!(after[0]["colour"], "green", "`*` includes the new column: {after}");
    assert_eq!(after[0]["title"], "Banana");
    let reply = get(&app, "/items?select=id,name&id=eq.1").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "the renamed column is gone: {}", reply.text());
    assert_eq!(get(&app, "/items?select=id,title&id=eq.1").await.json(), json!([{"id": 1, "title": "apple"}]));
}

#[tokio::test]
async fn quantified_pattern_operators() {
    // postgrest-py's like_any_of / like_all_of send `like(any).{...}` / `like(all).{...}`.
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    assert_eq!(ids(&app, &format!("name=like(any).{}", enc("{a*,c*}"))).await, [1, 3]);
    assert_eq!(ids(&app, &format!("name=like(all).{}", enc("{*a*,*e*}"))).await, [1, 4, 5]);
    assert_eq!(ids(&app, &format!("name=ilike(any).{}", enc("{B*,\"date, *\"}"))).await, [2, 4]);
    assert_eq!(ids(&app, &format!("name=not.ilike(all).{}", enc("{*a*,*n*}"))).await, [1, 3, 4]);
    assert_eq!(ids(&app, &format!("qty=gt(any).{}", enc("{15,8}"))).await, [1, 4]);
    assert_eq!(ids(&app, &format!("qty=eq(any).{}", enc("{}"))).await, Vec::<i64>::new(), "any of nothing");
    assert_eq!(ids(&app, &format!("or=(id.eq.2,name.like(any).{})", enc("{c*}"))).await, [2, 3]);
    let reply = get(&app, &format!("/items?name=like(any).{}", enc("a*,c*"))).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST100"), "braces required");
}

#[tokio::test]
async fn csv_and_stripped_nulls() {
    let fx = Fixture::new(ITEMS);
    let app = fx.app(&["items"]);
    let csv = [("Accept", "text/csv")];
    let reply = send(&app, Method::GET, "/items?select=id,name,qty,active,data&order=id&limit=4", &csv, None).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-type"), Some("text/csv; charset=utf-8"));
    // PostgreSQL's record text: NULL empty, booleans t/f, quoted when a delimiter or space is inside.
    assert_eq!(
        reply.text(),
        "id,name,qty,active,data\n1,apple,10,t,\"\\\\x00ff\"\n2,Banana,,f,\n3,carrot,5,t,\n4,\"date, dried\",20,f,"
    );
    let reply = send(&app, Method::GET, "/items?select=id&id=gt.100", &csv, None).await;
    assert_eq!(reply.text(), "id");

    let stripped = [("Accept", "application/vnd.pgrst.array+json;nulls=stripped")];
    let reply = send(&app, Method::GET, "/items?select=id,qty,tag&id=in.(2,4)&order=id", &stripped, None).await;
    assert_eq!(reply.json(), json!([{"id": 2, "tag": "fruit"}, {"id": 4, "qty": 20}]));
    assert_eq!(reply.header("content-type"), Some("application/vnd.pgrst.array+json; nulls=stripped; charset=utf-8"));
    let object = [("Accept", "application/vnd.pgrst.object+json;nulls=stripped")];
    let reply = send(&app, Method::GET, "/items?select=id,qty,meta&id=eq.3", &object, None).await;
    assert_eq!(reply.json(), json!({"id": 3, "qty": 5}));
    let reply = send(&app, Method::GET, "/items", &[("Accept", "application/xml")], None).await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::NOT_ACCEPTABLE, "PGRST107"));
}

#[tokio::test]
async fn full_text_search_on_fts5_tables() {
    let fx = Fixture::new(&format!(
        "{ITEMS}
        CREATE VIRTUAL TABLE docs USING fts5(title, body);
        INSERT INTO docs (rowid, title, body) VALUES
            (1, 'Cats', 'the fat cat sat on the mat'),
            (2, 'Rats', 'a fat rat ran'),
            (3, 'Dogs', 'the sad dog and the cat'),
            (4, 'Birds', 'catalogue of birds');"
    ));
    let app = fx.app(&["docs", "items"]);
    let titles = |query: String| {
        let app = app.clone();
        async move {
            let reply = get(&app, &format!("/docs?select=title&order=title&{query}")).await;
            assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.text());
            reply
                .json()
                .as_array()
                .expect("array")
                .iter()
                .map(|r| r["title"].as_str().expect("title").to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(titles(format!("body=fts.{}", enc("fat & cat"))).await, ["Cats"]);
    assert_eq!(titles(format!("body=fts.{}", enc("cat:*"))).await, ["Birds", "Cats", "Dogs"]);
    assert_eq!(titles(format!("body=fts.{}", enc("(rat | dog) & !sad"))).await, ["Rats"]);
    assert_eq!(titles(format!("body=plfts.{}", enc("fat, cat!"))).await, ["Cats"]);
    assert_eq!(titles(format!("body=phfts(english).{}", enc("fat cat"))).await, ["Cats"]);
    assert_eq!(titles(format!("body=phfts.{}", enc("cat fat"))).await, Vec::<String>::new());
    assert_eq!(titles(format!("body=wfts.{}", enc("\"sad dog\" or rat -ran"))).await, ["Dogs"]);
    assert_eq!(titles(format!("title=fts.{}", enc("cat"))).await, Vec::<String>::new(), "one column only");
    assert_eq!(titles(format!("body=not.fts.{}", enc("cat"))).await, ["Birds", "Rats"]);
    assert_eq!(titles(format!("or=(title.eq.Birds,body.fts.{})", enc("rat"))).await, ["Birds", "Rats"]);
    for (query, says) in [
        ("body=fts.!cat".to_owned(), "NOT"),
        (format!("body=fts.{}", enc("a <-> b")), "phfts"),
        (format!("body=wfts.{}", enc("-cat")), "excluded"),
    ] {
        let reply = get(&app, &format!("/docs?{query}")).await;
        assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST100"), "{query}");
        assert!(reply.text().contains(says), "{query}: {}", reply.text());
    }
    let reply = get(&app, "/items?name=fts.apple").await;
    assert_eq!((reply.status, reply.code().as_str()), (StatusCode::BAD_REQUEST, "PGRST100"));
    assert!(reply.text().contains("FTS5"), "{}", reply.text());
}
