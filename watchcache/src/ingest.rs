//! Kubernetes -> store ingestion.
//!
//! Each resource runs one loop: if the store holds a resume resourceVersion from an earlier run, it first
//! watches from there (no list; kube-rs' watcher cannot start from a given revision, hence this raw watch).
//! When that revision is gone (410) or the watch cannot start, kube-rs' `watcher` takes over with its default
//! backoff: its initial list and every relist are buffered and swapped in with one `replace` transaction, then
//! watch events are written in batches. The highest resourceVersion seen is persisted after every batch.

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, WatchEvent, WatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::resource::{ResourceType, object_key, parse_rv};
use crate::store::{Database, Store, StoreConfig, WriteOp};
use crate::{Error, Result};

const RESUME_RV: &str = "resume_rv";
/// Events written per transaction at most.
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

fn api_for(client: kube::Client, spec: &ResourceSpec) -> Api<DynamicObject> {
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

/// The JSON stored for an object: apiVersion/kind filled in (list items lack them), secrets stripped.
fn prepare(spec: &ResourceSpec, obj: DynamicObject) -> Result<Value> {
    let mut v = serde_json::to_value(&obj).map_err(|source| Error::Json {
        resource: spec.resource.to_string(),
        key: obj.metadata.name.clone().unwrap_or_default(),
        source,
    })?;
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), spec.resource.api_version().into());
        m.insert("kind".into(), spec.resource.kind.clone().into());
        if spec.resource.kind == "Secret" && spec.resource.group.is_empty() && !spec.keep_secret_data {
            m.remove("data");
            m.remove("stringData");
        }
    }
    Ok(v)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Join(e.to_string()))?
}

/// Writes `ops` and persists the resume revision, in the blocking pool.
async fn flush(store: &Store, ops: &mut Vec<WriteOp>, resume: Option<u64>) -> Result<()> {
    let ops = std::mem::take(ops);
    let s = store.clone();
    blocking(move || {
        if !ops.is_empty() {
            s.write(ops)?;
        }
        if let Some(rv) = resume {
            s.set_meta(RESUME_RV, &rv.to_string())?;
        }
        Ok(())
    })
    .await
}

fn delete_op(spec: &ResourceSpec, obj: DynamicObject) -> Result<WriteOp> {
    let v = prepare(spec, obj)?;
    let key =
        object_key(&v).ok_or_else(|| Error::NoName { resource: spec.resource.to_string(), object: v.to_string() })?;
    Ok(WriteOp::Delete { key, object: Some(v) })
}

async fn run(client: kube::Client, spec: ResourceSpec, store: Store, cancel: CancellationToken) -> Result<()> {
    let api = api_for(client, &spec);
    let s = store.clone();
    let resume = blocking(move || s.meta(RESUME_RV)).await?;
    if let Some(rv) = resume.and_then(|r| r.parse::<u64>().ok()) {
        match resume_watch(&api, &spec, &store, rv, &cancel).await? {
            Resumed::Cancelled => return Ok(()),
            Resumed::Relist => tracing::info!(resource = %spec.resource, "resume revision {rv} unusable, relisting"),
        }
    }
    let mut cfg = watcher::Config::default();
    if let Some(l) = &spec.label_selector {
        cfg = cfg.labels(l);
    }
    if let Some(f) = &spec.field_selector {
        cfg = cfg.fields(f);
    }
    let mut stream = watcher(api, cfg).default_backoff().ready_chunks(BATCH).boxed();
    let mut init: Option<Vec<Value>> = None;
    let mut max_rv = 0u64;
    loop {
        let batch = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            b = stream.next() => match b { Some(b) => b, None => return Ok(()) },
        };
        let mut ops = Vec::new();
        for ev in batch {
            match ev {
                Ok(watcher::Event::Init) => {
                    flush(&store, &mut ops, None).await?;
                    init = Some(Vec::new());
                }
                Ok(watcher::Event::InitApply(o)) => {
                    let v = prepare(&spec, o)?;
                    max_rv = max_rv.max(parse_rv(&v).unwrap_or(0));
                    init.get_or_insert_default().push(v);
                }
                Ok(watcher::Event::InitDone) => {
                    flush(&store, &mut ops, None).await?;
                    let items = init.take().unwrap_or_default();
                    let s = store.clone();
                    let n = items.len();
                    // one transaction: readers see the previous contents or the new list, nothing between
                    blocking(move || s.replace(items, None)).await?;
                    tracing::debug!(resource = %spec.resource, objects = n, "list swapped in");
                }
                Ok(watcher::Event::Apply(o)) => {
                    let v = prepare(&spec, o)?;
                    max_rv = max_rv.max(parse_rv(&v).unwrap_or(0));
                    ops.push(WriteOp::Upsert(v));
                }
                Ok(watcher::Event::Delete(o)) => {
                    let op = delete_op(&spec, o)?;
                    if let WriteOp::Delete { object: Some(v), .. } = &op {
                        max_rv = max_rv.max(parse_rv(v).unwrap_or(0));
                    }
                    ops.push(op);
                }
                // the watcher recovers by itself (relisting after 410); default_backoff spaces the retries
                Err(e) => tracing::warn!(resource = %spec.resource, "watch error: {e}"),
            }
        }
        // while a list is being buffered the store still reflects the previous list: do not move the resume
        // point past it
        let resume = (init.is_none() && max_rv > 0).then_some(max_rv);
        flush(&store, &mut ops, resume).await?;
    }
}

enum Resumed {
    Cancelled,
    Relist,
}

/// Watch from a persisted revision until cancelled or the revision is no longer served.
async fn resume_watch(
    api: &Api<DynamicObject>,
    spec: &ResourceSpec,
    store: &Store,
    mut rv: u64,
    cancel: &CancellationToken,
) -> Result<Resumed> {
    let mut wp = WatchParams::default();
    if let Some(l) = &spec.label_selector {
        wp = wp.labels(l);
    }
    if let Some(f) = &spec.field_selector {
        wp = wp.fields(f);
    }
    let mut idle = std::time::Duration::from_millis(100);
    loop {
        let from = rv.to_string();
        let started = tokio::select! {
            _ = cancel.cancelled() => return Ok(Resumed::Cancelled),
            s = api.watch(&wp, &from) => s,
        };
        let stream = match started {
            Ok(s) => s,
            Err(e) => {
                // anything else than a clean start: the watcher (with its backoff and relist) takes over
                tracing::info!(resource = %spec.resource, "resume watch from {rv} failed: {e}");
                return Ok(Resumed::Relist);
            }
        };
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
                        let v = prepare(spec, o)?;
                        rv = rv.max(parse_rv(&v).unwrap_or(0));
                        ops.push(WriteOp::Upsert(v));
                    }
                    Ok(WatchEvent::Deleted(o)) => {
                        let op = delete_op(spec, o)?;
                        if let WriteOp::Delete { object: Some(v), .. } = &op {
                            rv = rv.max(parse_rv(v).unwrap_or(0));
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
            flush(store, &mut ops, Some(rv)).await?;
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
