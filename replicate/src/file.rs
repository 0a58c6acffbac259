//! The `file` replica: a directory tree. Objects are written as `name.tmp`, fsynced and renamed, so a reader never
//! sees a partial object; the object's mtime is its timestamp.

use std::fs::{self, File, FileTimes};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;

use crate::client::{ObjectClient, ObjectInfo};
use crate::error::ReplicaError;

#[derive(Debug, Clone)]
pub struct FileClient {
    root: PathBuf,
}

impl FileClient {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> PathBuf {
        key.split('/').filter(|c| !c.is_empty()).fold(self.root.clone(), |p, c| p.join(c))
    }

    fn io_err(&self, op: &'static str, key: &str, source: io::Error) -> ReplicaError {
        if source.kind() == io::ErrorKind::NotFound && op == "get" {
            return ReplicaError::NotFound { replica: self.describe(), key: key.to_owned() };
        }
        ReplicaError::Io { replica: self.describe(), op, key: key.to_owned(), source }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: &'static str,
        key: &str,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> Result<T, ReplicaError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r.map_err(|e| self.io_err(op, key, e)),
            Err(join) => Err(self.io_err(op, key, io::Error::other(join))),
        }
    }
}

fn read_dir_or_empty(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[async_trait]
impl ObjectClient for FileClient {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
        let dir = self.path(prefix);
        self.blocking("list", prefix, move || {
            let mut out = vec![];
            for entry in read_dir_or_empty(&dir)? {
                if entry.file_type()?.is_dir() {
                    out.push(entry.file_name().to_string_lossy().into_owned());
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        let dir = self.path(prefix);
        self.blocking("list", prefix, move || {
            let mut out = vec![];
            for entry in read_dir_or_empty(&dir)? {
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    // Removed by retention between readdir and stat.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if meta.is_file() {
                    out.push(ObjectInfo {
                        name: entry.file_name().to_string_lossy().into_owned(),
                        size: meta.len(),
                        modified: meta.modified()?,
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        let dir = self.path(prefix);
        let start_after = start_after.to_owned();
        // Names first, and only the new ones are looked at: a follower polls this, and the directory keeps growing.
        self.blocking("list", prefix, move || {
            let mut out = vec![];
            for entry in read_dir_or_empty(&dir)? {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name <= start_after {
                    continue;
                }
                let meta = match entry.metadata() {
                    Ok(m) => m,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if meta.is_file() {
                    out.push(ObjectInfo { name, size: meta.len(), modified: meta.modified()? });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn put_file(&self, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError> {
        let dst = self.path(key);
        let src = src.to_owned();
        self.blocking("put", key, move || {
            let dir = dst.parent().ok_or_else(|| io::Error::other("key has no parent directory"))?;
            fs::create_dir_all(dir)?;
            let mut tmp_name = dst.file_name().unwrap_or_default().to_owned();
            tmp_name.push(".tmp");
            let tmp = dir.join(tmp_name);
            let result = (|| {
                let _ = fs::remove_file(&tmp);
                // Sources are immutable, already-durable spool files: on the same file system a hard link makes the
                // upload free (no second read and write of every byte). Elsewhere, copy.
                let out = match fs::hard_link(&src, &tmp) {
                    Ok(()) => fs::OpenOptions::new().write(true).open(&tmp)?,
                    Err(_) => {
                        let mut input = File::open(&src)?;
                        let mut out = File::create(&tmp)?;
                        io::copy(&mut input, &mut out)?;
                        out
                    }
                };
                out.set_times(FileTimes::new().set_modified(created))?;
                out.sync_all()?;
                fs::rename(&tmp, &dst)?;
                sync_dir(dir)
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        })
        .await
    }

    async fn get_file(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError> {
        let src = self.path(key);
        let dst = dst.to_owned();
        self.blocking("get", key, move || {
            let mut input = File::open(&src)?;
            let mut out = File::create(&dst)?;
            io::copy(&mut input, &mut out)
        })
        .await
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        Some(self.path(key))
    }

    async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError> {
        let paths: Vec<(String, PathBuf)> = keys.iter().map(|k| (k.clone(), self.path(k))).collect();
        let first = keys.first().cloned().unwrap_or_default();
        self.blocking("delete", &first, move || {
            let mut dirs = std::collections::BTreeSet::new();
            for (_, p) in &paths {
                match fs::remove_file(p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                if let Some(d) = p.parent() {
                    dirs.insert(d.to_owned());
                }
            }
            // Remove directories left empty (a deleted generation), deepest first; non-empty ones stay.
            for d in dirs.iter().rev() {
                let _ = fs::remove_dir(d);
                if let Some(parent) = d.parent() {
                    let _ = fs::remove_dir(parent);
                }
            }
            Ok(())
        })
        .await
    }
}
