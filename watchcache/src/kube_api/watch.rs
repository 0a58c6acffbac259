//! `watch=true`: newline-delimited events as the API server's watch cache sends them. Initial ADDED events for
//! the state (no resourceVersion, "0", or `sendInitialEvents=true`), then the BOOKMARK annotated
//! `k8s.io/initial-events-end` (streaming lists with bookmarks allowed), then changes in commit order. A
//! revision older than the log is one ERROR event with code 410 in a 200 stream; a revision newer than the
//! store is waited for up to 3 s, then refused with a 504 ERROR event (starting anywhere else could lose a change);
//! a watcher too slow to keep up is closed, as the API server closes it, and resumes from its last revision.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::options::Options;
use super::selection::Selection;
use super::{Render, parse_rv};
use crate::http::error_response;
use crate::{Error, Store, WatchEvent};

/// How often a watch with bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);
/// How long a streaming list waits for a requested revision the store has not reached (the API server's 3 s).
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

fn line(v: &Value) -> Bytes {
    Bytes::from(format!("{v}\n"))
}

fn error_event(code: u16, reason: &str, message: String) -> Bytes {
    line(&json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code}}))
}

fn store_error_event(e: &Error) -> Option<Bytes> {
    match e {
        Error::Expired { .. } => Some(error_event(410, "Expired", e.to_string())),
        // the API server closes a watcher that cannot keep up; the client watches again from its last revision
        Error::TooSlow { .. } => None,
        other => Some(error_event(500, "InternalError", other.to_string())),
    }
}

fn bookmark(store: &Store, rv: u64, initial_end: bool) -> Bytes {
    let rt = store.resource_type();
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(&json!({"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": meta}}))
}

/// An event line, rendered as the request asked (a one-row Table for kubectl).
fn event_line(store: &Store, kind: &str, obj: Value, render: Render) -> Bytes {
    match render {
        Render::Objects => line(&json!({"type": kind, "object": obj})),
        Render::Table(include) => {
            let rt = store.resource_type();
            let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
            line(&json!({"type": kind, "object": super::to_table(&rt.group, &rt.kind, &[obj], include, meta)}))
        }
    }
}

fn stream_response(body: futures::stream::BoxStream<'static, Bytes>) -> Response {
    let body = body.map(Ok::<_, std::convert::Infallible>);
    ([(axum::http::header::CONTENT_TYPE, "application/json")], Body::from_stream(body)).into_response()
}

async fn last_rv(store: &Store) -> crate::Result<u64> {
    store.off_thread(|s| s.last_resource_version()).await
}

pub(crate) async fn watch(store: Store, selection: Selection, o: Options, render: Render) -> Response {
    let requested = match o.rv.as_deref() {
        None | Some("0") => None,
        Some(v) => match parse_rv(v) {
            Ok(n) => Some(n),
            Err(e) => return error_response(e),
        },
    };
    let streaming_list = o.send_initial_events == Some(true);
    let initial = o.send_initial_events.unwrap_or(requested.is_none());
    // a revision the store has not reached: wait for it a little, as the API server's watch cache does, then
    // refuse rather than start anywhere else (a change between the store's and the asked revision would be lost)
    if let Some(n) = requested {
        let deadline = tokio::time::Instant::now() + FRESHNESS_WAIT;
        loop {
            match last_rv(&store).await {
                Ok(rv) if rv >= n => break,
                Ok(rv) if tokio::time::Instant::now() >= deadline => {
                    let msg = format!("Too large resource version: {n}, current: {rv}");
                    return stream_response(futures::stream::iter([error_event(504, "Timeout", msg)]).boxed());
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return error_response(e),
            }
        }
    }
    let mut head = Vec::new();
    let from = if initial {
        let (items, rv) = match store.off_thread(|s| s.snapshot()).await {
            Ok(snap) => snap,
            Err(e) => return error_response(e),
        };
        for obj in items.into_iter().filter(|obj| selection.matches(obj)) {
            head.push(event_line(&store, "ADDED", obj, render));
        }
        if streaming_list && o.bookmarks {
            head.push(bookmark(&store, rv, true));
        }
        rv
    } else {
        match requested {
            Some(n) => n,
            None => match last_rv(&store).await {
                Ok(rv) => rv,
                Err(e) => return error_response(e),
            },
        }
    };
    let s = store.clone();
    // the session ends when the client goes away (its channel closes with the body)
    let events = match store.watch(from, CancellationToken::new()) {
        Ok(session) => session
            .into_stream()
            .map(move |e: crate::Result<Arc<WatchEvent>>| match e {
                Ok(e) if selection.matches(&e.object) => Some(Some(match render {
                    // the line every watcher of this event shares, encoded once
                    Render::Objects => e.wire_line(),
                    Render::Table(_) => event_line(&s, e.kind.as_str(), e.object.clone(), render),
                })),
                Ok(_) => Some(None),
                Err(e) => store_error_event(&e).map(Some),
            })
            .take_while(|o| futures::future::ready(o.is_some()))
            .filter_map(|o| futures::future::ready(o.flatten()))
            .boxed(),
        // the API server's watch cache answers 200 and sends the 410 as the stream's only event
        Err(e) => futures::stream::iter(store_error_event(&e)).boxed(),
    };
    // bookmarks interleave with the events and end with them (after an ERROR event the stream closes)
    let bookmarks = o.bookmarks;
    let first_tick = tokio::time::Instant::now() + BOOKMARK_EVERY;
    let merged = futures::stream::unfold((events, store, first_tick), move |(mut events, s, mut tick)| async move {
        loop {
            tokio::select! {
                e = events.next() => return e.map(|b| (b, (events, s, tick))),
                _ = tokio::time::sleep_until(tick), if bookmarks => {
                    tick = tokio::time::Instant::now() + BOOKMARK_EVERY;
                    if let Ok(rv) = last_rv(&s).await {
                        return Some((bookmark(&s, rv, false), (events, s, tick)));
                    }
                }
            }
        }
    })
    .boxed();
    let mut body = futures::stream::iter(head).chain(merged).boxed();
    if let Some(t) = o.timeout {
        let deadline = tokio::time::Instant::now() + t;
        body = body.take_until(tokio::time::sleep_until(deadline)).boxed();
    }
    stream_response(body)
}
