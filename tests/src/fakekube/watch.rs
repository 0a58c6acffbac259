//! Watch streams as the API server sends them: bookmarks, streaming lists, 410s, and the fault knobs that cut them.

use super::list::{Filters, expired};
use super::*;
pub(super) fn line(v: &Value) -> Result<Bytes, Infallible> {
    let mut s = v.to_string();
    s.push('\n');
    Ok(Bytes::from(s))
}

/// Read live, so turning the knob on also ends streams that are already open (at their next event).
pub(super) fn dropped(shared: &Shared, sent: usize) -> bool {
    lock(&shared.faults).drop_watch_after.is_some_and(|n| sent >= n)
}

/// A Table as the API server renders it for kubectl (the printers are litecar's, checked against the API
/// server's in their own tests; this fake checks what carries them: lists, pages, gets and watch events).
pub(super) fn as_table(
    def: &ResourceDef,
    items: &[Value],
    include: litecar_watchcache::IncludeObject,
    meta: Value,
) -> Value {
    litecar_watchcache::to_table(&def.group, &def.kind, items, include, meta)
}

pub(super) fn watch(
    shared: Arc<Shared>,
    target: Target,
    q: BTreeMap<String, String>,
    table: Option<litecar_watchcache::IncludeObject>,
) -> Response {
    let filters = match Filters::parse(&target, &q) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let streaming = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let (def, backlog, mut rx, start) = {
        let db = lock(&shared.db);
        let def = match resource_def(&db, &target.resource) {
            Ok(d) => d,
            Err(e) => return e.into_response(),
        };
        // subscribe under the lock so nothing committed after the backlog read is missed
        let rx = shared.events.subscribe();
        let rv_param = q.get("resourceVersion").map(String::as_str).unwrap_or("");
        let forced = std::mem::take(&mut lock(&shared.faults).force_gone_next_watch);
        // a streaming list (sendInitialEvents=true) starts with the current state whatever the revision
        let initial = if streaming { "" } else { rv_param };
        let backlog: Result<Vec<Event>, ApiError> = match initial {
            // "" / "0": synthetic ADDED for the current state, then changes
            "" | "0" => Ok(db
                .objects
                .get(&target.resource)
                .map(|m| {
                    m.values()
                        .map(|o| Event {
                            rv: db.rv,
                            resource: target.resource.clone(),
                            kind: "ADDED",
                            object: o.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default()),
            s => match s.parse::<u64>() {
                Ok(rv) if forced || rv < db.compacted => {
                    Err(expired(&format!("too old resource version: {rv} ({})", db.compacted.max(rv + 1))))
                }
                Ok(rv) => {
                    Ok(db.history.iter().filter(|e| e.resource == target.resource && e.rv > rv).cloned().collect())
                }
                Err(_) => {
                    return ApiError::new(400, "BadRequest", format!("bad resourceVersion {s:?}")).into_response();
                }
            },
        };
        (def, backlog, rx, db.rv)
    };
    let bookmark_interval = lock(&shared.faults).bookmark_interval;
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|b| b == "true");
    let timeout = q.get("timeoutSeconds").and_then(|t| t.parse::<u64>().ok()).map(Duration::from_secs);
    let (tx, out) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(64);
    let tdef = def.clone();
    let event = move |kind: &str, object: Value| -> Result<Bytes, Infallible> {
        let object = match table {
            Some(include) => {
                let meta = json!({"resourceVersion": object["metadata"]["resourceVersion"]});
                as_table(&tdef, &[object], include, meta)
            }
            None => object,
        };
        line(&json!({"type": kind, "object": object}))
    };
    tokio::spawn(async move {
        let backlog = match backlog {
            Ok(b) => b,
            Err(e) => {
                // the API server answers 200 and sends the 410 as an ERROR event
                let _ = tx.send(line(&json!({"type": "ERROR", "object": e.status()}))).await;
                return;
            }
        };
        let deadline = tokio::time::Instant::now() + timeout.unwrap_or(Duration::from_secs(3600));
        let mut sent = 0usize;
        let mut last_rv = start;
        let mut tick = tokio::time::interval(bookmark_interval);
        tick.tick().await;
        for e in backlog.into_iter().filter(|e| filters.matches(&e.object)) {
            if dropped(&shared, sent) {
                return;
            }
            if tx.send(event(e.kind, e.object)).await.is_err() {
                return;
            }
            sent += 1;
        }
        if streaming && bookmarks {
            let end = json!({"type": "BOOKMARK", "object": {"kind": def.kind, "apiVersion": def.api_version(),
                "metadata": {"resourceVersion": start.to_string(), "annotations": {"k8s.io/initial-events-end": "true"}}}});
            if tx.send(line(&end)).await.is_err() {
                return;
            }
        }
        loop {
            if dropped(&shared, sent) {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
                _ = tick.tick(), if bookmarks => {
                    let bm = json!({"type": "BOOKMARK", "object": {"kind": def.kind, "apiVersion": def.api_version(),
                        "metadata": {"resourceVersion": last_rv.to_string()}}});
                    if tx.send(line(&bm)).await.is_err() { return }
                }
                ev = rx.recv() => match ev {
                    Ok(e) => {
                        last_rv = last_rv.max(e.rv);
                        if e.rv <= start || e.resource != target.resource || !filters.matches(&e.object) { continue }
                        if tx.send(event(e.kind, e.object)).await.is_err() { return }
                        sent += 1;
                        if dropped(&shared, sent) { return }
                    }
                    // a watcher that fell behind is closed, as the API server does; clients re-watch
                    Err(_) => return,
                },
            }
        }
    });
    let body =
        Body::from_stream(futures::stream::unfold(out, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) }));
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
