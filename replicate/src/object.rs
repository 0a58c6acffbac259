//! Replicas on object stores (S3 and S3-compatible, Azure Blob, GCS) through `object_store`. Uploads stream from the
//! spool file (multipart past one part, two parts in flight); every download is one streamed GET written to disk a
//! MiB at a time, so memory stays bounded by a few parts whatever the object size.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::client::{ObjectClient, ObjectInfo};
use crate::error::ReplicaError;

/// Objects up to this size go up in one PUT; larger ones as multipart uploads of this part size.
pub const PART_SIZE: usize = 8 << 20;
/// Parts of one upload in flight at once. Each part in flight costs about twice its size in memory (our buffer and
/// the HTTP client's), so two keep an upload of any size well under the 64 MB that a sidecar is budgeted, while still
/// overlapping one part's round trip with the next one's transfer.
const PART_CONCURRENCY: usize = 2;
/// Downloads are written to disk in pieces of about this size.
const WRITE_SIZE: usize = 1 << 20;

pub struct ObjectStoreClient {
    store: Arc<dyn ObjectStore>,
    kind: &'static str,
    /// The replica's URL, credentials never included.
    url: String,
    root: String,
}

impl fmt::Debug for ObjectStoreClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreClient").field("url", &self.url).finish()
    }
}

impl ObjectStoreClient {
    /// `root` is the path inside the bucket or container under which the replica lives.
    pub fn new(store: Arc<dyn ObjectStore>, kind: &'static str, url: String, root: &str) -> Self {
        Self { store, kind, url, root: root.trim_matches('/').to_owned() }
    }

    fn path(&self, key: &str) -> ObjectPath {
        let key = key.trim_matches('/');
        match (self.root.is_empty(), key.is_empty()) {
            (true, _) => ObjectPath::from(key),
            (false, true) => ObjectPath::from(self.root.as_str()),
            (false, false) => ObjectPath::from(format!("{}/{key}", self.root)),
        }
    }

    fn err(&self, op: &'static str, key: &str, e: object_store::Error) -> ReplicaError {
        use object_store::Error as E;
        let permanent = matches!(
            e,
            E::NotFound { .. }
                | E::InvalidPath { .. }
                | E::NotSupported { .. }
                | E::NotImplemented { .. }
                | E::PermissionDenied { .. }
                | E::Unauthenticated { .. }
                | E::UnknownConfigurationKey { .. }
        ) || is_permanent_failure(&e);
        if matches!(e, E::NotFound { .. }) && op == "get" {
            return ReplicaError::NotFound { replica: self.url.clone(), key: key.to_owned() };
        }
        ReplicaError::Backend {
            replica: self.url.clone(),
            op,
            key: key.to_owned(),
            message: error_chain(&e),
            permanent,
        }
    }

    fn io_err(&self, op: &'static str, key: &str, e: std::io::Error) -> ReplicaError {
        ReplicaError::Io { replica: self.url.clone(), op, key: key.to_owned(), source: e }
    }
}

/// The error and its causes on one line: object_store's top-level messages alone often omit the HTTP status.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Errors object_store reports as `Generic` (list requests, for one) that retrying cannot fix: authentication
/// and authorisation failures and a missing bucket or container, recognised by HTTP status or the store's code.
fn is_permanent_failure(e: &object_store::Error) -> bool {
    let text = error_chain(e);
    [
        "401 Unauthorized",
        "403 Forbidden",
        "NoSuchBucket",
        "ContainerNotFound",
        "AuthorizationFailure",
        "AuthenticationFailed",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "The specified bucket does not exist",
    ]
    .iter()
    .any(|n| text.contains(n))
}

#[async_trait]
impl ObjectClient for ObjectStoreClient {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
        let listing =
            self.store.list_with_delimiter(Some(&self.path(prefix))).await.map_err(|e| self.err("list", prefix, e))?;
        Ok(listing.common_prefixes.iter().filter_map(|p| p.filename().map(str::to_owned)).collect())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        let listing =
            self.store.list_with_delimiter(Some(&self.path(prefix))).await.map_err(|e| self.err("list", prefix, e))?;
        Ok(listing.objects.into_iter().filter_map(object_info).collect())
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        let dir = self.path(prefix);
        let offset = self.path(&format!("{}/{start_after}", prefix.trim_end_matches('/')));
        let objects: Vec<object_store::ObjectMeta> = self
            .store
            .list_with_offset(Some(&dir), &offset)
            .try_collect()
            .await
            .map_err(|e| self.err("list", prefix, e))?;
        let depth = dir.parts().count() + 1;
        // Not every store honours the offset (Azurite ignores Azure's `startFrom`): filter here as well.
        Ok(objects
            .into_iter()
            .filter(|o| o.location.parts().count() == depth && o.location > offset)
            .filter_map(object_info)
            .collect())
    }

    async fn put_file(&self, key: &str, src: &Path, _created: SystemTime) -> Result<(), ReplicaError> {
        let location = self.path(key);
        let size = std::fs::metadata(src).map_err(|e| self.io_err("put", key, e))?.len();
        if size as usize <= PART_SIZE {
            let buf = read_at(src.to_owned(), 0, size as usize).await.map_err(|e| self.io_err("put", key, e))?;
            self.store.put(&location, PutPayload::from(buf)).await.map_err(|e| self.err("put", key, e))?;
        } else {
            let upload = self.store.put_multipart(&location).await.map_err(|e| self.err("put", key, e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            let mut offset = 0u64;
            let result: Result<(), ReplicaError> = async {
                while offset < size {
                    writer.wait_for_capacity(PART_CONCURRENCY).await.map_err(|e| self.err("put", key, e))?;
                    let n = (size - offset).min(PART_SIZE as u64) as usize;
                    let chunk = read_at(src.to_owned(), offset, n).await.map_err(|e| self.io_err("put", key, e))?;
                    writer.put(chunk.into());
                    offset += n as u64;
                }
                Ok(())
            }
            .await;
            match result {
                Ok(()) => {
                    writer.finish().await.map_err(|e| self.err("put", key, e))?;
                }
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    async fn get_file(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError> {
        let location = self.path(key);
        let out = Arc::new(File::create(dst).map_err(|e| self.io_err("get", key, e))?);
        // One streamed GET, whatever the size: memory stays at a chunk or two, and stores that serve a ranged GET by
        // reading the whole object (moto, some S3-compatible servers) are not made to read it once per part. Restore
        // overlaps downloads across objects instead (`-parallelism`).
        let result = self.store.get(&location).await.map_err(|e| self.err("get", key, e))?;
        let size = result.meta.size;
        let mut stream = result.into_stream();
        let mut offset = 0u64;
        // HTTP chunks are a few KiB; each write is a hop to a blocking thread, so gather about a MiB per write.
        let mut pending: Vec<u8> = Vec::with_capacity(WRITE_SIZE);
        loop {
            let chunk = stream.try_next().await.map_err(|e| self.err("get", key, e))?;
            if let Some(c) = &chunk {
                pending.extend_from_slice(c);
            }
            if pending.len() >= WRITE_SIZE || (chunk.is_none() && !pending.is_empty()) {
                let full = std::mem::replace(&mut pending, Vec::with_capacity(WRITE_SIZE));
                let len = full.len() as u64;
                write_at(out.clone(), full, offset).await.map_err(|e| self.io_err("get", key, e))?;
                offset += len;
            }
            if chunk.is_none() {
                break;
            }
        }
        if offset != size {
            return Err(self.io_err("get", key, std::io::Error::other(format!("got {offset} of {size} bytes"))));
        }
        Ok(size)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError> {
        for key in keys {
            match self.store.delete(&self.path(key)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err("delete", key, e)),
            }
        }
        Ok(())
    }
}

async fn read_at(path: PathBuf, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        File::open(&path)?.read_exact_at(&mut buf, offset)?;
        Ok(buf)
    })
    .await
    .map_err(io::Error::other)?
}

async fn write_at(file: Arc<File>, bytes: impl AsRef<[u8]> + Send + 'static, offset: u64) -> io::Result<()> {
    tokio::task::spawn_blocking(move || file.write_all_at(bytes.as_ref(), offset)).await.map_err(io::Error::other)?
}

/// A listed object by its file name; keys without one (a bare prefix) are skipped.
fn object_info(o: object_store::ObjectMeta) -> Option<ObjectInfo> {
    Some(ObjectInfo { name: o.location.filename()?.to_owned(), size: o.size, modified: o.last_modified.into() })
}
