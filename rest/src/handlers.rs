//! HTTP handlers of `/{table}`: access checks, request parsing, and the response shape of each method.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value as Json;

use crate::auth::AuthContext;
use crate::db::{Access, End};
use crate::error::{RestError, echo};
use crate::headers::{self, Media, Prefer, Return};
use crate::ops::read::{Window, read};
use crate::ops::write::{self, WriteOptions, WriteRequest};
use crate::query::{QueryParams, SelectItem};
use crate::render::Rows;
use crate::sql::Output;
use crate::state::RestState;

pub(crate) async fn table(
    State(state): State<RestState>,
    path: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let path_text = request.uri().path().to_owned();
    let result = match path {
        Ok(Path(table)) => handle(state, table, request).await,
        Err(_) => Err(RestError::RouteNotFound { path: echo(&path_text) }),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

pub(crate) async fn not_found(request: Request) -> Response {
    RestError::RouteNotFound { path: echo(request.uri().path()) }.into_response()
}

/// Checks, in order: the table is served at all (404, without telling whether it exists), the role may use
/// it (403, counted), the role may write (403).
pub(crate) fn authorize(
    state: &RestState,
    table: &str,
    method: &Method,
    auth: Option<&AuthContext>,
) -> Result<(), RestError> {
    if !state.is_allowed(table) {
        return Err(RestError::TableNotFound { table: echo(table) });
    }
    if state.is_read_only() && !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Err(RestError::ReadReplica { table: table.to_owned(), method: method.to_string() });
    }
    let Some(auth) = auth else { return Ok(()) };
    if !auth.may_access(table) {
        state.metrics().access_denied.with_label_values(&[table]).inc();
        return Err(RestError::AccessDenied { table: table.to_owned(), role: auth.role_name().to_owned() });
    }
    if auth.read_only && !matches!(*method, Method::GET | Method::HEAD) {
        return Err(RestError::ReadOnlyRole {
            table: table.to_owned(),
            role: auth.role_name().to_owned(),
            method: method.to_string(),
        });
    }
    Ok(())
}

/// An embedded table is read with the request: the role must be allowed to read it too. Tables that are not
/// served at all are left to the embedding itself, which answers as for an unrelated table.
fn authorize_embedded(state: &RestState, select: &[SelectItem], auth: &AuthContext) -> Result<(), RestError> {
    for item in select {
        if let SelectItem::Embed(embed) = item {
            if state.is_allowed(&embed.table) && !auth.may_access(&embed.table) {
                state.metrics().access_denied.with_label_values(&[embed.table.as_str()]).inc();
                return Err(RestError::AccessDenied { table: embed.table.clone(), role: auth.role_name().to_owned() });
            }
            authorize_embedded(state, &embed.select, auth)?;
        }
    }
    Ok(())
}

/// One parsed table request.
struct Call {
    state: RestState,
    table: String,
    query: QueryParams,
    media: Media,
    prefer: Prefer,
    started: Instant,
}

async fn handle(state: RestState, table: String, request: Request) -> Result<Response, RestError> {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    authorize(&state, &table, &parts.method, parts.extensions.get::<AuthContext>())?;
    let query = QueryParams::parse(parts.uri.query())?;
    if let Some(auth) = parts.extensions.get::<AuthContext>() {
        authorize_embedded(&state, query.select.as_deref().unwrap_or_default(), auth)?;
    }
    let media = headers::negotiate(&parts.headers)?;
    let prefer = Prefer::from_headers(&parts.headers)?;
    let call = Call { state, table, query, media, prefer, started };
    match parts.method {
        Method::GET | Method::HEAD => get(call, &parts.headers).await,
        Method::DELETE => write(call, parts.method, None).await,
        method => {
            let limit = call.state.options().max_body_bytes;
            let body = read_json(body, &parts.headers, limit, &call.table).await?;
            write(call, method, Some(body)).await
        }
    }
}

/// A response body rendered on the database thread, so that serialising many rows never stalls the executor.
struct Rendered {
    body: Option<Vec<u8>>,
    rows: usize,
    total: Option<u64>,
}

fn render(rows: &Rows, singular: bool) -> Vec<u8> {
    if singular { rows.object() } else { rows.array() }
}

async fn get(call: Call, headers: &HeaderMap) -> Result<Response, RestError> {
    let Call { state, table, query, media, prefer, started } = call;
    let window = Window::new(&query, headers::range(headers), state.options().max_rows);
    let count = prefer.count;
    let name = table.clone();
    let rendered = state
        .db()
        .run(Access::Read, &table, started, move |conn, schema| {
            let outcome = read(conn, schema, &name, &query, window, count, media.format)?;
            if media.singular && outcome.rows.len() != 1 {
                return Err(RestError::NotSingular { table: name, rows: outcome.rows.len() }.into());
            }
            let body = render(&outcome.rows, media.singular);
            Ok(Rendered { body: Some(body), rows: outcome.rows.len(), total: outcome.total })
        })
        .await?;
    let shown = u64::try_from(rendered.rows).unwrap_or(u64::MAX);
    let total = rendered.total.map_or_else(|| "*".to_owned(), |t| t.to_string());
    let content_range = if shown == 0 {
        format!("*/{total}")
    } else {
        format!("{}-{}/{total}", window.offset, window.offset + shown - 1)
    };
    let partial = rendered.total.is_some_and(|t| window.offset > 0 || window.offset + shown < t);
    let status = if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    Ok(respond(status, rendered.body, media, &content_range, &prefer))
}

async fn write(call: Call, method: Method, body: Option<Json>) -> Result<Response, RestError> {
    let Call { state, table, query, media, prefer, started } = call;
    let returning = prefer.returning == Return::Representation;
    let allow_unfiltered = state.options().allow_unfiltered_writes;
    let options = WriteOptions { resolution: prefer.resolution, missing_default: prefer.missing_default };
    let max_affected = prefer.max_affected;
    let end = if prefer.rollback { End::Rollback } else { End::Commit };
    let name = table.clone();
    let op_method = method.clone();
    let rendered = state
        .db()
        .run_ending(Access::Write, end, &table, started, move |conn, schema| {
            let table = schema.table(&name)?;
            let body = body.unwrap_or(Json::Null);
            // Resolved even when nothing is returned, so a bad `select` is a 400 either way.
            let output = Output::resolve(table, query.select.as_deref())?;
            let request =
                WriteRequest { table, query: &query, returning: returning.then_some(output), format: media.format };
            let outcome = match op_method {
                Method::POST => write::insert(conn, &request, &body, options)?,
                Method::PATCH => write::update(conn, &request, &body, allow_unfiltered)?,
                Method::PUT => write::put(conn, &request, &body)?,
                _ => write::delete(conn, &request, allow_unfiltered)?,
            };
            // Checked before commit, so a write that would not produce exactly one row is rolled back.
            if media.singular && outcome.affected != 1 {
                return Err(RestError::NotSingular { table: table.name.clone(), rows: outcome.affected }.into());
            }
            if let Some(limit) = max_affected
                && u64::try_from(outcome.affected).unwrap_or(u64::MAX) > limit
            {
                return Err(RestError::TooManyAffected {
                    table: table.name.clone(),
                    affected: outcome.affected,
                    limit,
                }
                .into());
            }
            let body = if returning { Some(render(&outcome.rows, media.singular)) } else { None };
            Ok(Rendered { body, rows: outcome.affected, total: None })
        })
        .await?;
    let status = match (&method, returning) {
        (&Method::POST, _) => StatusCode::CREATED,
        (_, true) => StatusCode::OK,
        (_, false) => StatusCode::NO_CONTENT,
    };
    // As PostgREST writes it: inserts and deletes say `*/N`, updates `0-(N-1)/N`; N only with a count.
    let affected = rendered.rows;
    let total = if prefer.count { affected.to_string() } else { "*".to_owned() };
    let content_range = match (method, affected) {
        (Method::PATCH, n) if n > 0 => format!("0-{}/{total}", n - 1),
        _ => format!("*/{total}"),
    };
    Ok(respond(status, rendered.body, media, &content_range, &prefer))
}

/// `body` is rows in the negotiated media type, or nothing for `return=minimal`.
fn respond(status: StatusCode, body: Option<Vec<u8>>, media: Media, content_range: &str, prefer: &Prefer) -> Response {
    let mut response = match body {
        Some(body) => {
            let mut response = (status, Body::from(body)).into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(media.content_type()));
            response
        }
        None => status.into_response(),
    };
    set_common_headers(response.headers_mut(), content_range, prefer);
    response
}

fn set_common_headers(headers: &mut HeaderMap, content_range: &str, prefer: &Prefer) {
    if let Ok(value) = HeaderValue::from_str(content_range) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    if !prefer.applied.is_empty()
        && let Ok(value) = HeaderValue::from_str(&prefer.applied.join(", "))
    {
        headers.insert("preference-applied", value);
    }
}

/// Bodies up to this size are parsed in place; larger ones on a blocking thread, so that a megabyte of JSON
/// does not stall the executor.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// The JSON body, size-limited, parsed before any database work so a bad body never waits for the writer.
async fn read_json(body: Body, headers: &HeaderMap, limit: usize, table: &str) -> Result<Json, RestError> {
    headers::check_content_type(headers)?;
    // A declared length over the limit is refused before reading a byte of it.
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return Err(RestError::PayloadTooLarge { limit });
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(RestError::PayloadTooLarge { limit });
        }
        Err(error) => return Err(RestError::bad_body(table, format!("reading the body failed: {error}"))),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(RestError::bad_body(table, "the body is empty"));
    }
    let parse = move |bytes: Bytes| serde_json::from_slice::<Json>(&bytes).map_err(|e| e.to_string());
    let parsed = if bytes.len() <= INLINE_PARSE_BYTES {
        parse(bytes)
    } else {
        tokio::task::spawn_blocking(move || parse(bytes))
            .await
            .map_err(|e| RestError::Internal(format!("parsing the body for table `{table}`: {e}")))?
    };
    parsed.map_err(|e| RestError::bad_body(table, format!("invalid JSON: {e}")))
}
