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
use std::borrow::Cow;

use kube::api::{Api, ApiResource, GroupVersionKind, ListParams, WatchEvent, WatchParams};
use kube::core::{DynamicResourceScope, ObjectMeta, Resource};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::path::FieldPath;
use crate::raw::{Prepared, RawEntries};
use crate::resource::ResourceType;
use crate::store::{Database, RowOp, Staging, Store, StoreConfig};
use crate::{Error, Result};

const RESUME_RV: &str = "resume_rv";
/// Watch events taken from the stream at once.
const BATCH: usize = 500;
/// Objects per transaction at most when the writer folds queued batches together.
const MAX_TX: usize = 5_000;
/// Batches queued for the writer: enough to keep it busy while the next page is fetched and decoded, few enough
/// that memory stays at a few pages.
const QUEUE: usize = 8;

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

/// Options shared by all resources (reserved; per-resource options live in [`ResourceSpec`]).
#[derive(Debug, Clone, Default)]
pub struct IngestOptions {}

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

/// An object as the API sent it: its top-level entries as JSON text and the metadata the store needs (see
/// [`crate::raw`]), plus the few metadata fields kube-rs' watcher reads (the resourceVersion). No JSON tree is
/// built: decoding every object into one, freeing it and encoding it again was most of the ingester's CPU.
#[derive(Clone, Debug)]
struct RawObject {
    metadata: ObjectMeta,
    raw: RawEntries,
}

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawEntries::deserialize(d)?;
        let metadata = ObjectMeta {
            name: raw.name.clone(),
            namespace: raw.namespace.clone(),
            resource_version: raw.resource_version.clone(),
            ..ObjectMeta::default()
        };
        Ok(Self { metadata, raw })
    }
}

impl Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

fn api_for(client: kube::Client, spec: &ResourceSpec) -> Api<RawObject> {
    let rt = &spec.resource;
    let gvk = GroupVersionKind::gvk(&rt.group, &rt.version, &rt.kind);
    let ar = match &spec.plural {
        Some(p) => ApiResource::from_gvk_with_plural(&gvk, p),
        None => ApiResource::from_gvk(&gvk),
    };
    match &spec.namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    }
}

/// What the ingester needs to turn objects into rows, fixed for a resource's run.
struct Preparer {
    resource: String,
    api_version: String,
    kind: String,
    /// Top-level entries not stored: a Secret's data unless configured otherwise.
    drop: &'static [&'static str],
    fields: Vec<FieldPath>,
}

impl Preparer {
    fn new(spec: &ResourceSpec, fields: Vec<FieldPath>) -> Self {
        let rt = &spec.resource;
        let secret = rt.kind == "Secret" && rt.group.is_empty() && !spec.keep_secret_data;
        Self {
            resource: rt.to_string(),
            api_version: rt.api_version(),
            kind: rt.kind.clone(),
            drop: if secret { &["data", "stringData"] } else { &[] },
            fields,
        }
    }

    /// The stored object: apiVersion/kind filled in (list items lack them), secrets stripped.
    fn prepare(&self, obj: RawObject) -> Result<Prepared> {
        obj.raw.prepare(&self.resource, &self.api_version, &self.kind, self.drop, &self.fields)
    }

    fn delete(&self, obj: RawObject) -> Result<RowOp> {
        let p = self.prepare(obj)?;
        Ok(RowOp::Delete { key: p.key.clone(), object: Some(p) })
    }
}

/// Work for a resource's writer thread.
enum Cmd {
    Write { ops: Vec<RowOp>, resume: Option<u64> },
    ListStart,
    ListItems(Vec<Prepared>),
    ListDone { list_rv: u64 },
}

/// The writer thread: applies commands in order, folding runs of queued writes (or list pages) into one
/// transaction. Ends when every sender is gone (after the queue is drained) or on the first store error.
fn writer(store: Store, mut rx: mpsc::Receiver<Cmd>) -> Result<()> {
    let mut staging: Option<Staging> = None;
    let mut next: Option<Cmd> = None;
    loop {
        let cmd = match next.take() {
            Some(c) => c,
            None => match rx.blocking_recv() {
                Some(c) => c,
                None => return Ok(()),
            },
        };
        match cmd {
            Cmd::Write { mut ops, mut resume } => {
                while ops.len() < MAX_TX {
                    match rx.try_recv() {
                        Ok(Cmd::Write { ops: more, resume: r }) => {
                            ops.extend(more);
                            resume = resume.max(r);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let resume = resume.map(|r| r.to_string());
                store.write_ops(ops, resume.as_deref().map(|r| (RESUME_RV, r)))?;
            }
            Cmd::ListStart => staging = Some(store.stage_begin()?),
            Cmd::ListItems(mut items) => {
                while items.len() < MAX_TX {
                    match rx.try_recv() {
                        Ok(Cmd::ListItems(more)) => items.extend(more),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let st = match &mut staging {
                    Some(st) => st,
                    None => staging.insert(store.stage_begin()?),
                };
                store.stage_items(st, items)?;
            }
            Cmd::ListDone { list_rv } => {
                let st = match staging.take() {
                    Some(st) => st,
                    None => store.stage_begin()?,
                };
                store.stage_commit(st, Some(list_rv), Some((RESUME_RV, &list_rv.to_string())))?;
            }
        }
    }
}

/// The sending side of a writer; `send` fails once the writer stopped, and `finish` returns its result.
struct WriterHandle {
    tx: Option<mpsc::Sender<Cmd>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl WriterHandle {
    fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        // a dedicated blocking thread for this resource's lifetime: SQLite calls block
        let task = tokio::task::spawn_blocking(move || writer(store, rx));
        Self { tx: Some(tx), task }
    }

    /// False when the writer has stopped (its error comes from `finish`).
    async fn send(&self, cmd: Cmd) -> bool {
        match &self.tx {
            Some(tx) => tx.send(cmd).await.is_ok(),
            None => false,
        }
    }

    /// Let the writer drain its queue and stop; its result.
    async fn finish(mut self) -> Result<()> {
        self.tx = None;
        (&mut self.task).await.map_err(|e| Error::Join(e.to_string()))?
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Join(e.to_string()))?
}

async fn run(client: kube::Client, spec: ResourceSpec, store: Store, cancel: CancellationToken) -> Result<()> {
    let s = store.clone();
    let resume = blocking(move || s.meta(RESUME_RV)).await?;
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
