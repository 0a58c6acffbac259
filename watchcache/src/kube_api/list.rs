//! Lists as the API server serves them: the resourceVersion semantics, pages with keyset `continue` tokens,
//! and a body written from the stored JSON of the page's objects as it is (no decoding and encoding again), with
//! `remainingItemCount` only where the API server sends it. Tables still decode their page.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::options::{Match, Options};
use super::selection::{Selection, bad};
use super::table::to_table;
use super::{Render, parse_rv};
use crate::http::error_response;
use crate::page_at::{AtPage, PageAt};
use crate::query::Counting;
use crate::{Result, Store};

/// A page: its objects as stored JSON (key, text), the revision it shows, the token of the next page and, when
/// the API server would send it, how many objects follow.
struct Page {
    items: Vec<(String, String)>,
    revision: u64,
    continue_token: Option<String>,
    remaining: Option<usize>,
}

const EXACT_PREFIX: &str = "x1.";

/// A page of the state at revision `rv` (an Exact list older than the store), paged by key; its tokens name
/// the revision, the query and the last key.
fn exact_page(
    store: &Store,
    selection: &Selection,
    rv: u64,
    limit: Option<usize>,
    after: Option<&str>,
) -> Result<Page> {
    let fp = crate::keyset::fingerprint(store.name(), &selection.options());
    let prefix = selection.key_prefix();
    // as for the current state, counted only without selectors (see `read_page`)
    let at = PageAt { rv, after, prefix: &prefix, limit, count_rest: selection.selects_all() };
    let AtPage { items, more, remaining } =
        store.page_at(&at, |key, text| selection.matches_stored(store, key, text))?;
    let token = match items.last() {
        Some((k, _)) if more => Some(format!("{EXACT_PREFIX}{rv}.{fp}.{}", URL_SAFE_NO_PAD.encode(k))),
        _ => None,
    };
    Ok(Page { items, revision: rv, continue_token: token, remaining })
}

/// Decodes an Exact list's continue token: (revision, last key); an error if it belongs to another query.
fn exact_token(store: &Store, selection: &Selection, token: &str) -> Result<Option<(u64, String)>> {
    let Some(rest) = token.strip_prefix(EXACT_PREFIX) else { return Ok(None) };
    let broken = || bad(&format!("continue={token}"), "not a continue token of this server");
    let mut parts = rest.splitn(3, '.');
    let (rv, fp, key) = (parts.next(), parts.next(), parts.next());
    let rv: u64 = rv.and_then(|r| r.parse().ok()).ok_or_else(broken)?;
    if fp != Some(crate::keyset::fingerprint(store.name(), &selection.options()).as_str()) {
        return Err(bad(&format!("continue={token}"), "the token belongs to another query"));
    }
    let key =
        key.and_then(|k| URL_SAFE_NO_PAD.decode(k).ok()).and_then(|k| String::from_utf8(k).ok()).ok_or_else(broken)?;
    Ok(Some((rv, key)))
}

/// A list with the API server's resourceVersion semantics: none or "0" is the current state; N with
/// NotOlderThan (or no match and no limit) is the current state if it is at least N; N with Exact (or no
/// match with a limit, the legacy rule) is the state at exactly N, from the event log when N is older.
fn read_page(store: &Store, selection: &Selection, o: &Options) -> Result<Page> {
    if let Some(t) = &o.continue_token
        && let Some((rv, key)) = exact_token(store, selection, t)?
    {
        return exact_page(store, selection, rv, o.limit, Some(&key));
    }
    let rv = match o.rv.as_deref() {
        None | Some("0") => None,
        Some(v) => Some(parse_rv(v)?),
    };
    let exact = match o.rv_match {
        Some(Match::Exact) => true,
        Some(Match::NotOlderThan) => false,
        None => o.limit.is_some() && o.continue_token.is_none(),
    };
    let mut q = selection.options();
    q.page_size = o.limit;
    q.continue_token = o.continue_token.clone();
    q.revision = rv;
    // the API server counts what follows a page only for a list without selectors (the storage's count is of
    // keys, which says nothing about how many of them a selector would take)
    let counting = if selection.selects_all() { Counting::Remaining } else { Counting::Nothing };
    let r = store.query_raw(&q, counting)?;
    if let Some(rv) = rv.filter(|rv| exact && *rv != r.revision) {
        return exact_page(store, selection, rv, o.limit, None);
    }
    Ok(Page { items: r.items, revision: r.revision, continue_token: r.continue_token, remaining: r.remaining })
}

/// `{"kind":…,"apiVersion":…,"metadata":…,"items":[…]}` with the items spliced in as stored.
fn list_body(kind: &str, api_version: &str, metadata: &Value, items: &[(String, String)]) -> String {
    let head =
        format!(r#"{{"kind":{},"apiVersion":{},"metadata":{metadata},"items":["#, json!(kind), json!(api_version));
    let mut body = String::with_capacity(head.len() + items.iter().map(|(_, t)| t.len() + 1).sum::<usize>() + 2);
    body.push_str(&head);
    for (i, (_, text)) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(text);
    }
    body.push_str("]}");
    body
}

pub(super) async fn list(store: Store, selection: Selection, o: Options, render: Render) -> Response {
    let page = match store.off_thread(move |s| read_page(s, &selection, &o)).await {
        Ok(p) => p,
        Err(e) => return error_response(e),
    };
    let mut metadata = json!({"resourceVersion": page.revision.to_string()});
    if let Some(c) = page.continue_token {
        metadata["continue"] = json!(c);
        if let Some(n) = page.remaining {
            metadata["remainingItemCount"] = json!(n);
        }
    }
    let rt = store.resource_type();
    match render {
        Render::Objects => {
            let kind = format!("{}List", rt.kind);
            let body = list_body(&kind, &rt.api_version(), &metadata, &page.items);
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Render::Table(include) => {
            let items = match page.items.iter().map(|(k, t)| store.decode(k, t)).collect::<Result<Vec<_>>>() {
                Ok(items) => items,
                Err(e) => return error_response(e),
            };
            axum::Json(to_table(&rt.group, &rt.kind, &items, include, metadata)).into_response()
        }
    }
}
