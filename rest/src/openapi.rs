//! `GET /openapi.json`: an OpenAPI 3.0 document of the allowed tables, generated from the live schema.

use std::time::Instant;

use axum::Json as JsonResponse;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};

use crate::auth::AuthContext;
use crate::db::Access;
use crate::db::schema::{Affinity, Column, Table};
use crate::state::RestState;

pub(crate) async fn document(State(state): State<RestState>, request: Request) -> Response {
    let started = Instant::now();
    let auth = request.extensions().get::<AuthContext>().cloned();
    let allowed = state.options().allowed_tables.clone();
    let result = state
        .db()
        .run(Access::Read, "openapi.json", started, move |_conn, schema| {
            let tables: Vec<(&str, &Table)> = schema
                .existing(&allowed)
                .filter(|(name, _)| auth.as_ref().is_none_or(|a| a.may_access(name)))
                .map(|(name, table)| (name, table.as_ref()))
                .collect();
            Ok(build(&tables, auth.as_ref().is_some_and(|a| a.read_only)))
        })
        .await;
    match result {
        Ok(document) => JsonResponse(document).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The document for `tables` (URL name, schema table); a read-only caller is shown no write operations.
pub fn build(tables: &[(&str, &Table)], read_only: bool) -> Json {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert("Error".into(), error_schema());
    for (name, table) in tables {
        schemas.insert(schema_name(name), row_schema(table));
        schemas.insert(format!("{}.insert", schema_name(name)), body_schema(table, BodyKind::Insert));
        schemas.insert(format!("{}.patch", schema_name(name)), body_schema(table, BodyKind::Patch));
        schemas.insert(format!("{}.put", schema_name(name)), body_schema(table, BodyKind::Put));
        paths.insert(format!("/{}", path_segment(name)), path_item(name, table, read_only));
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "litecar table API",
            "description": "PostgREST-style access to the SQLite tables this sidecar serves.",
            "version": env!("CARGO_PKG_VERSION"),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    })
}

/// Component names allow `[A-Za-z0-9._-]` only.
fn schema_name(table: &str) -> String {
    table.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect()
}

fn path_segment(table: &str) -> String {
    let mut out = String::new();
    for byte in table.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn column_type(column: &Column) -> Json {
    let mut schema = if column.is_bool() {
        json!({"type": "boolean"})
    } else if column.is_json() {
        json!({})
    } else if column.is_blob() {
        json!({"type": "string", "pattern": "^\\\\x([0-9a-fA-F]{2})*$"})
    } else {
        match column.affinity {
            Affinity::Integer => json!({"type": "integer", "format": "int64"}),
            Affinity::Real => json!({"type": "number", "format": "double"}),
            Affinity::Numeric => json!({"type": "number"}),
            Affinity::Text => json!({"type": "string"}),
            Affinity::Blob => json!({}),
        }
    };
    if let Json::Object(map) = &mut schema {
        if !column.not_null && !map.is_empty() {
            map.insert("nullable".into(), json!(true));
        }
        if column.generated {
            map.insert("readOnly".into(), json!(true));
        }
        if !column.declared.is_empty() {
            map.insert("description".into(), json!(format!("SQLite type {}", column.declared)));
        }
    }
    schema
}

fn row_schema(table: &Table) -> Json {
    let properties: Map<String, Json> = table.columns.iter().map(|c| (c.name.clone(), column_type(c))).collect();
    json!({"type": "object", "properties": properties})
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Insert,
    Patch,
    Put,
}

/// Request bodies: generated columns cannot be written and unknown keys are refused (400), hence
/// `additionalProperties: false`.
fn body_schema(table: &Table, kind: BodyKind) -> Json {
    let writable: Vec<&Column> = table.columns.iter().filter(|c| !c.generated).collect();
    let properties: Map<String, Json> = writable.iter().map(|c| (c.name.clone(), column_type(c))).collect();
    let required: Vec<&str> = writable
        .iter()
        .filter(|c| match kind {
            BodyKind::Insert => c.not_null && !c.has_default && !c.is_rowid_alias(table),
            BodyKind::Patch => false,
            BodyKind::Put => true,
        })
        .map(|c| c.name.as_str())
        .collect();
    let mut schema = json!({"type": "object", "properties": properties, "additionalProperties": false});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    if kind == BodyKind::Patch {
        schema["minProperties"] = json!(1);
    }
    schema
}

fn error_schema() -> Json {
    json!({
        "type": "object",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "details": {"nullable": true},
            "hint": {"nullable": true},
        },
    })
}

fn reference(name: &str) -> Json {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// A string parameter whose values must match `pattern`, so that requests generated from the document (by
/// schemathesis, say) are ones the grammar accepts.
fn patterned(name: &str, location: &str, description: &str, pattern: &str) -> Json {
    json!({"name": name, "in": location, "required": false, "schema": {"type": "string", "pattern": pattern},
           "description": description})
}

fn header_param(name: &str, description: &str) -> Json {
    json!({"name": name, "in": "header", "required": false, "schema": {"type": "string"}, "description": description})
}

fn count_param(name: &str, description: &str) -> Json {
    json!({"name": name, "in": "query", "required": false,
           "schema": {"type": "integer", "minimum": 0, "maximum": i64::MAX}, "description": description})
}

/// Value of a `column=` filter.
const FILTER_PATTERN: &str = r#"^(not\.)?((eq|neq|gt|gte|ge|lt|lte|le|like|ilike|isdistinct)\..*|is\.(null|true|false|unknown)|in\.\([^"(),\\]*(,[^"(),\\]*)*\))$"#;

fn regex_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\^$.|?*+()[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `(a|b|c)` over the columns whose names need no quoting in select and order lists.
fn column_alternation(table: &Table) -> String {
    let plain = |name: &str| {
        name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let names: Vec<String> = table.columns.iter().filter(|c| plain(&c.name)).map(|c| regex_escape(&c.name)).collect();
    if names.is_empty() { r"\*".to_owned() } else { format!("({})", names.join("|")) }
}

fn list_pattern(item: &str) -> String {
    format!("^{item}(,{item})*$")
}

/// Empty is allowed: `select=` means every column.
fn select_pattern(table: &Table) -> String {
    let item = format!(r"(\*|([A-Za-z_][A-Za-z0-9_]*:)?{})", column_alternation(table));
    format!("^({item}(,{item})*)?$")
}

fn order_pattern(table: &Table) -> String {
    list_pattern(&format!(r"{}(\.(asc|desc))?(\.(nullsfirst|nullslast))?", column_alternation(table)))
}

fn tree_pattern(table: &Table) -> String {
    let columns = column_alternation(table);
    let item = format!(
        r#"{columns}\.(not\.)?((eq|neq|gt|gte|lt|lte|like|ilike|isdistinct)\.[^,()"\\]*|is\.(null|true|false))"#
    );
    format!(r"^\({item}(,{item})*\)$")
}

fn filter_params(table: &Table) -> Vec<Json> {
    let description = "Filter: [not.]op.value, op one of eq, neq, gt, gte, lt, lte, like, ilike, in, is, isdistinct; \
                       op(any|all).{a,b} for eq..ilike; fts, plfts, phfts, wfts on FTS5 tables";
    let mut params: Vec<Json> =
        table.columns.iter().map(|c| patterned(&c.name, "query", description, FILTER_PATTERN)).collect();
    let tree = tree_pattern(table);
    params.push(patterned("or", "query", "Logic tree, e.g. (a.eq.1,and(b.gt.2,c.lt.3))", &tree));
    params.push(patterned("and", "query", "Logic tree, e.g. (a.eq.1,b.eq.2)", &tree));
    params
}

fn error_responses(codes: &[&str]) -> Map<String, Json> {
    codes
        .iter()
        .map(|code| {
            let body = json!({"description": "Error", "content": {"application/json": {"schema": reference("Error")}}});
            ((*code).to_owned(), body)
        })
        .collect()
}

fn rows_content(schema: &str) -> Json {
    json!({
        "application/json": {"schema": {"type": "array", "items": reference(schema)}},
        "application/vnd.pgrst.object+json": {"schema": reference(schema)},
        "application/vnd.pgrst.array+json;nulls=stripped": {"schema": {"type": "array", "items": {"type": "object"}}},
        "application/vnd.pgrst.object+json;nulls=stripped": {"schema": {"type": "object"}},
        "text/csv": {"schema": {"type": "string"}},
    })
}

fn path_item(name: &str, table: &Table, read_only: bool) -> Json {
    let schema = schema_name(name);
    let select = patterned(
        "select",
        "query",
        "Columns to return: col, alias:col or *; related tables along foreign keys embed as \
         [alias:]table[!fkcolumn][!inner](columns), filtered with table.col=op.value and table.order/limit/offset",
        &select_pattern(table),
    );
    let columns = list_pattern(&column_alternation(table));
    let prefer = header_param(
        "Prefer",
        "return=representation|minimal, count=exact, resolution=merge-duplicates|ignore-duplicates, \
         missing=default, tx=commit|rollback, handling=lenient|strict, max-affected=N (with handling=strict)",
    );
    let common_errors = ["400", "401", "403", "404", "406", "503", "504"];

    let mut read_params = filter_params(table);
    read_params.extend([
        select.clone(),
        patterned("order", "query", "Ordering: col[.asc|.desc][.nullsfirst|.nullslast],...", &order_pattern(table)),
        count_param("limit", "Maximum number of rows"),
        count_param("offset", "Rows to skip"),
        // Unpatterned: a malformed Range is ignored (RFC 9110), not refused.
        header_param("Range", "Rows to return, e.g. 0-24; ignored when malformed"),
        header_param("Range-Unit", "items"),
        prefer.clone(),
    ]);
    let mut read_responses = error_responses(&[&common_errors[..], &["416"]].concat());
    read_responses.insert("200".into(), json!({"description": "Rows", "content": rows_content(&schema)}));
    read_responses.insert("206".into(), json!({"description": "Some of the rows", "content": rows_content(&schema)}));
    let mut head_responses = error_responses(&[]);
    for code in ["200", "206", "400", "401", "403", "404", "406", "416", "503", "504"] {
        head_responses.insert(code.into(), json!({"description": "Headers only"}));
    }

    let mut item = Map::new();
    item.insert(
        "get".into(),
        json!({"operationId": format!("read_{schema}"), "tags": [name], "parameters": read_params, "responses": read_responses}),
    );
    item.insert(
        "head".into(),
        json!({"operationId": format!("head_{schema}"), "tags": [name], "parameters": read_params, "responses": head_responses}),
    );
    if read_only || table.is_view {
        return Json::Object(item);
    }

    let write_errors = [&common_errors[..], &["409", "413", "415"]].concat();
    let written = |code: &str| {
        let mut responses = error_responses(&write_errors);
        if code == "201" {
            // One status, with or without a body depending on `Prefer: return=...`, which OpenAPI cannot say.
            let description = "Rows created; they are in the body with Prefer: return=representation";
            responses.insert(code.into(), json!({ "description": description }));
        } else {
            responses.insert(code.into(), json!({"description": "Rows written", "content": rows_content(&schema)}));
            responses.insert("204".into(), json!({"description": "Rows written, none returned"}));
        }
        responses
    };
    let body = |name: String, allow_array: bool| {
        let schema = if allow_array {
            json!({"oneOf": [reference(&name), {"type": "array", "items": reference(&name)}]})
        } else {
            reference(&name)
        };
        json!({"required": true, "content": {"application/json": {"schema": schema}}})
    };
    let mut filtered = filter_params(table);
    filtered.extend([select.clone(), prefer.clone()]);
    let insert_params = vec![
        select.clone(),
        patterned("columns", "query", "Columns to take from the body", &columns),
        patterned("on_conflict", "query", "Unique columns for an upsert", &columns),
        prefer.clone(),
    ];
    item.insert(
        "post".into(),
        json!({"operationId": format!("create_{schema}"), "tags": [name], "parameters": insert_params,
               "requestBody": body(format!("{schema}.insert"), true), "responses": written("201")}),
    );
    item.insert(
        "patch".into(),
        json!({"operationId": format!("update_{schema}"), "tags": [name], "parameters": filtered,
               "requestBody": body(format!("{schema}.patch"), false), "responses": written("200")}),
    );
    item.insert(
        "put".into(),
        json!({"operationId": format!("upsert_{schema}"), "tags": [name], "parameters": filtered,
               "requestBody": body(format!("{schema}.put"), false), "responses": written("200")}),
    );
    item.insert(
        "delete".into(),
        json!({"operationId": format!("delete_{schema}"), "tags": [name], "parameters": filtered, "responses": written("200")}),
    );
    Json::Object(item)
}
