//! Kubernetes -> store ingestion.
//!
//! Each resource runs one loop: watch from the persisted resume revision when there is one (no list), else list
//! page by page into the store's staging generation and swap it in at its end (readers never see a half-filled
//! store, and no list is held in memory), then watch from the list's resourceVersion, with bookmarks. A 410 from
//! the API (at the watch's start or as an ERROR event) means a relist; other failures are retried with backoff.
//! The list's resourceVersion, every batch's newest object version and every bookmark are persisted as the resume
//! point, in the same transaction as what they cover, so a restart resumes from the newest known revision.
//!
//! SQLite work runs on one blocking thread per resource, fed through a bounded channel, so the list goes on
//! while earlier pages are written, and a slow disk pushes back on the watch instead of growing a queue. The
//! writer folds queued batches into one transaction.

use futures::StreamExt;

use kube::api::{Api, ApiResource, GroupVersionKind, ListParams, WatchEvent, WatchParams};
use tokio_util::sync::CancellationToken;

use crate::resource::ResourceType;
use crate::store::{Database, RowOp, Store, StoreConfig};
use crate::{Error, Result};

mod raw_object;
mod scope;
mod writer;

use raw_object::{Preparer, RawObject, api_for};
use writer::{Cmd, WriterHandle};

/// The store meta value that holds the revision to resume watching from.
const RESUME_RV: &str = "resume_rv";
/// Watch events taken from the stream at once.
const BATCH: usize = 500;

/// One resource type to ingest.
#[derive(Debug, Clone, Default)]
pub struct ResourceSpec {
    pub resource: ResourceType,
    /// The URL plural; guessed from the kind when None (kube-rs' rules), so set it for irregular plurals.
    pub plural: Option<String>,
    /// Watch one namespace only.
    pub namespace: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// Extra indexed fields (JSON paths) for queries.
    pub fields: Vec<String>,
    /// Keep Secrets' `data`/`stringData` (stripped by default so the cache holds no secret material).
    pub keep_secret_data: bool,
}

impl ResourceSpec {
    /// The resource's URL plural (`pods`), as the API server and the `/k8s` routes spell it.
    pub fn plural(&self) -> String {
        let rt = &self.resource;
        let gvk = GroupVersionKind::gvk(&rt.group, &rt.version, &rt.kind);
        match &self.plural {
            Some(p) => p.clone(),
            None => ApiResource::from_gvk(&gvk).plural,
        }
    }
}

impl Default for ResourceType {
    fn default() -> Self {
        Self::new("", "v1", "Pod")
    }
}

/// Fill `db` from the API until `cancel`; returns early only on a store error (the API's errors are retried).
pub async fn ingest(
    client: kube::Client,
    resources: Vec<ResourceSpec>,
    db: Database,
    cancel: CancellationToken,
) -> Result<()> {
    let child = cancel.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    for spec in resources {
        let store = db.store(spec.resource.clone(), StoreConfig { fields: spec.fields.clone() })?;
        store.await_first_list();
        tasks.spawn(run(client.clone(), spec, store, child.clone()));
    }
    let mut first_err = None;
    while let Some(res) = tasks.join_next().await {
        let res = res.map_err(|e| Error::Join(e.to_string())).and_then(|r| r);
        if let Err(e) = res {
            // one failing store stops the others: the caller decides whether to restart
            child.cancel();
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Join(e.to_string()))?
}

async fn run(client: kube::Client, spec: ResourceSpec, store: Store, cancel: CancellationToken) -> Result<()> {
    let s = store.clone();
    let resume = blocking(move || s.meta(RESUME_RV)).await?;
    scope::discover(&client, &spec, &store, &cancel).await?;
    let prep = Preparer::new(&spec, store.fields());
    let w = WriterHandle::start(store);
    let followed = watch_into(client, &spec, &prep, resume, &w, &cancel).await;
    // a stopped writer ended the loop early: its error is what `finish` returns
    let written = w.finish().await;
    match followed {
        Err(Some(e)) => Err(e),
        _ => written,
    }
}

/// Follow the API into the writer until cancelled; `Err(None)` when the writer stopped. Watches from the
/// persisted revision when there is one; lists (paged) when there is none or the API says it is gone (410).
async fn watch_into(
    client: kube::Client,
    spec: &ResourceSpec,
    prep: &Preparer,
    resume: Option<String>,
    w: &WriterHandle,
    cancel: &CancellationToken,
) -> std::result::Result<(), Stop> {
    let api = api_for(client, spec);
    let mut from = resume.and_then(|r| r.parse::<u64>().ok());
    let mut backoff = Backoff::default();
    loop {
        let rv = match from {
            Some(rv) => rv,
            None => match list_into(&api, spec, prep, w, cancel).await? {
                Listed::Cancelled => return Ok(()),
                Listed::At(rv) => {
                    backoff = Backoff::default();
                    rv
                }
                Listed::Failed => {
                    if backoff.wait(cancel).await {
                        return Ok(());
                    }
                    continue;
                }
            },
        };
        match resume_watch(&api, spec, prep, w, rv, cancel).await? {
            Resumed::Cancelled => return Ok(()),
            Resumed::Relist => {
                tracing::info!(resource = %spec.resource, "revision {rv} is gone upstream, relisting");
                from = None;
            }
        }
    }
}

/// Exponential backoff between failed lists, 100 ms to 10 s.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Wait out the next delay; true when cancelled meanwhile.
    async fn wait(&mut self, cancel: &CancellationToken) -> bool {
        let delay = std::time::Duration::from_millis(100 * 2u64.pow(self.failures.min(7))).min(LIST_BACKOFF_MAX);
        self.failures += 1;
        tokio::select! {
            _ = cancel.cancelled() => true,
            _ = tokio::time::sleep(delay) => false,
        }
    }
}

const LIST_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(10);
/// Objects per list page.
const PAGE: u32 = 500;

enum Listed {
    Cancelled,
    Failed,
    /// Swapped in; the list's resourceVersion.
    At(u64),
}

/// One paged list into the staging generation, swapped in with its resourceVersion (the resume point and the
/// revision the log's differences end at). A failed page abandons the list; the next one supersedes it.
async fn list_into(
    api: &Api<RawObject>,
    spec: &ResourceSpec,
    prep: &Preparer,
    w: &WriterHandle,
    cancel: &CancellationToken,
) -> std::result::Result<Listed, Stop> {
    let mut lp = ListParams::default().limit(PAGE);
    if let Some(l) = &spec.label_selector {
        lp = lp.labels(l);
    }
    if let Some(f) = &spec.field_selector {
        lp = lp.fields(f);
    }
    send(w, Cmd::ListStart).await?;
    loop {
        let page = tokio::select! {
            _ = cancel.cancelled() => return Ok(Listed::Cancelled),
            p = api.list(&lp) => p,
        };
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(resource = %spec.resource, "list failed: {e}");
                return Ok(Listed::Failed);
            }
        };
        let items = page.items.into_iter().map(|o| prep.prepare(o)).collect::<Result<Vec<_>>>().map_err(Some)?;
        send(w, Cmd::ListItems(items)).await?;
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp.continue_token = Some(c),
            None => {
                let Some(rv) = page.metadata.resource_version.and_then(|r| r.parse::<u64>().ok()) else {
                    tracing::warn!(resource = %spec.resource, "list without a numeric resourceVersion");
                    return Ok(Listed::Failed);
                };
                // the swap persists the resume point with the list it belongs to
                send(w, Cmd::ListDone { list_rv: rv }).await?;
                return Ok(Listed::At(rv));
            }
        }
    }
}

/// Why following the API stopped early: an error of ours, or None when the writer stopped (its error comes
/// from [`WriterHandle::finish`]).
type Stop = Option<Error>;

async fn send(w: &WriterHandle, cmd: Cmd) -> std::result::Result<(), Stop> {
    if w.send(cmd).await { Ok(()) } else { Err(None) }
}

enum Resumed {
    Cancelled,
    Relist,
}

/// Failed watch starts in a row after which the revision is given up for a list.
const WATCH_FAILURES: u32 = 5;

/// Watch from a revision until cancelled or the revision is no longer served (410). Bookmarks move the
/// persisted resume point too.
async fn resume_watch(
    api: &Api<RawObject>,
    spec: &ResourceSpec,
    prep: &Preparer,
    w: &WriterHandle,
    mut rv: u64,
    cancel: &CancellationToken,
) -> std::result::Result<Resumed, Stop> {
    let mut wp = WatchParams::default();
    if let Some(l) = &spec.label_selector {
        wp = wp.labels(l);
    }
    if let Some(f) = &spec.field_selector {
        wp = wp.fields(f);
    }
    let mut idle = std::time::Duration::from_millis(100);
    let mut failures = 0;
    loop {
        let from = rv.to_string();
        let started = tokio::select! {
            _ = cancel.cancelled() => return Ok(Resumed::Cancelled),
            s = api.watch(&wp, &from) => s,
        };
        let stream = match started {
            Ok(s) => s,
            Err(kube::Error::Api(s)) if s.code == 410 => return Ok(Resumed::Relist),
            Err(e) => {
                // the API is unavailable: keep the revision and try again after a pause; a revision it keeps
                // refusing is given up for a list
                failures += 1;
                tracing::info!(resource = %spec.resource, "watch from {rv} failed: {e}");
                if failures >= WATCH_FAILURES {
                    return Ok(Resumed::Relist);
                }
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(Resumed::Cancelled),
                    _ = tokio::time::sleep(idle) => {}
                }
                idle = (idle * 2).min(std::time::Duration::from_secs(5));
                continue;
            }
        };
        failures = 0;
        let mut stream = stream.boxed().ready_chunks(BATCH);
        let mut progressed = false;
        loop {
            let batch = tokio::select! {
                _ = cancel.cancelled() => return Ok(Resumed::Cancelled),
                b = stream.next() => match b { Some(b) => b, None => break },
            };
            let mut ops = Vec::new();
            let mut gone = false;
            for ev in batch {
                match ev {
                    Ok(WatchEvent::Added(o) | WatchEvent::Modified(o)) => {
                        let p = prep.prepare(o).map_err(Some)?;
                        rv = rv.max(p.rv().unwrap_or(0));
                        ops.push(RowOp::Upsert(p));
                    }
                    Ok(WatchEvent::Deleted(o)) => {
                        let op = prep.delete(o).map_err(Some)?;
                        if let RowOp::Delete { object: Some(p), .. } = &op {
                            rv = rv.max(p.rv().unwrap_or(0));
                        }
                        ops.push(op);
                    }
                    Ok(WatchEvent::Bookmark(b)) => {
                        rv = rv.max(b.metadata.resource_version.parse().unwrap_or(0));
                    }
                    Ok(WatchEvent::Error(e)) if e.code == 410 => gone = true,
                    Ok(WatchEvent::Error(e)) => tracing::warn!(resource = %spec.resource, "watch error event: {e:?}"),
                    Err(e) => tracing::warn!(resource = %spec.resource, "watch stream error: {e}"),
                }
                if gone {
                    break;
                }
            }
            progressed |= !ops.is_empty();
            send(w, Cmd::Write { ops, resume: Some(rv) }).await?;
            if gone {
                return Ok(Resumed::Relist);
            }
        }
        // a stream that ends at once again and again must not spin
        if progressed {
            idle = std::time::Duration::from_millis(100);
        } else {
            tokio::time::sleep(idle).await;
            idle = (idle * 2).min(std::time::Duration::from_secs(5));
        }
    }
}
