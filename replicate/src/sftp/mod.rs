//! The `sftp` replica: the file replica's layout on an SSH server, as Litestream's SFTP client writes it. Unlike
//! Litestream, each object is written as `name.tmp` and renamed, so a reader never sees half a file, and a lost
//! connection is dialled again on the next request (the uploader retries from the spool), so replication resumes
//! once the server is back.

mod conn;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use russh::keys::PublicKey;
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;

use crate::client::{ObjectClient, ObjectInfo};
use crate::error::ReplicaError;
use conn::{Conn, ConnectError};

/// How the server's host key is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum HostKeyCheck {
    /// Litestream's behaviour: any key, with a warning.
    AcceptAny,
    /// Exactly this key.
    Key(PublicKey),
    /// A key listed for the host in this OpenSSH known_hosts file.
    KnownHosts(PathBuf),
}

#[derive(Clone, PartialEq, Eq)]
pub struct SftpSettings {
    /// `host:port`.
    pub host: String,
    pub user: String,
    pub password: Option<String>,
    pub key_path: Option<PathBuf>,
    /// The replica's directory on the server, as written: a relative path is in the login user's home.
    pub path: String,
    pub host_key: HostKeyCheck,
}

impl SftpSettings {
    /// `sftp://user@host:port/path`, without the password.
    pub fn url(&self) -> String {
        let sep = if self.path.starts_with('/') || self.path.is_empty() { "" } else { "/" };
        format!("sftp://{}@{}{sep}{}", self.user, self.host, self.path)
    }
}

// Hand-written so that the password never reaches a log line through `{:?}`.
impl std::fmt::Debug for SftpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

/// An OpenSSH public key line (`ssh-ed25519 AAAA... comment`, or a known_hosts line with the host first).
pub fn parse_host_key(line: &str) -> Result<PublicKey, String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-"))
        .ok_or_else(|| "not an OpenSSH public key (expected `ssh-ed25519 AAAA...`)".to_owned())?;
    let b64 = words.get(at + 1).ok_or_else(|| "the key type is not followed by the key".to_owned())?;
    russh::keys::parse_public_key_base64(b64).map_err(|e| format!("not an OpenSSH public key: {e}"))
}

#[derive(Debug)]
pub struct SftpClient {
    settings: SftpSettings,
    conn: Mutex<Option<Arc<Conn>>>,
    /// Directories known to exist, so that an upload costs no round trips to create them.
    dirs: std::sync::Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Conn")
    }
}

fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

impl SftpClient {
    pub fn new(settings: SftpSettings) -> Self {
        Self { settings, conn: Mutex::new(None), dirs: Default::default() }
    }

    /// The server path of `key`.
    fn path(&self, key: &str) -> String {
        let root = self.settings.path.trim_end_matches('/');
        let key = key.trim_matches('/');
        match (root.is_empty(), key.is_empty()) {
            (true, _) if self.settings.path.starts_with('/') => format!("/{key}"),
            (true, _) => key.to_owned(),
            (false, true) => root.to_owned(),
            (false, false) => format!("{root}/{key}"),
        }
    }

    fn fail(&self, op: &'static str, key: &str, message: impl Into<String>, permanent: bool) -> ReplicaError {
        ReplicaError::Backend { replica: self.describe(), op, key: key.to_owned(), message: message.into(), permanent }
    }

    /// The open connection, dialled if there is none or the last one was lost.
    async fn session(&self, op: &'static str, key: &str) -> Result<Arc<Conn>, ReplicaError> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref()
            && !c.is_closed()
        {
            return Ok(c.clone());
        }
        *guard = None;
        match conn::connect(&self.settings).await {
            Ok(c) => {
                let c = Arc::new(c);
                *guard = Some(c.clone());
                self.dirs.lock().map(|mut d| d.clear()).ok();
                Ok(c)
            }
            Err(ConnectError { message, permanent }) => Err(self.fail(op, key, message, permanent)),
        }
    }

    /// Map an SFTP error; anything but a status answer means the connection is gone, so it is dropped and the next
    /// request dials again.
    async fn sftp_err(&self, conn: &Arc<Conn>, op: &'static str, key: &str, e: SftpError) -> ReplicaError {
        match &e {
            SftpError::Status(s) => {
                let permanent = matches!(s.status_code, StatusCode::PermissionDenied | StatusCode::OpUnsupported);
                let what = match s.status_code {
                    StatusCode::NoSuchFile => format!("no such file or directory {}", self.path(key)),
                    StatusCode::PermissionDenied => format!("permission denied on {}", self.path(key)),
                    _ => format!("{} ({})", s.error_message, self.path(key)),
                };
                self.fail(op, key, what, permanent)
            }
            _ => {
                self.drop_conn(conn).await;
                self.fail(op, key, format!("connection lost: {e}"), false)
            }
        }
    }

    async fn drop_conn(&self, conn: &Arc<Conn>) {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
            *guard = None;
        }
    }

    /// `mkdir -p`, from the deepest directory that exists.
    async fn ensure_dir(&self, c: &Arc<Conn>, dir: &str, key: &str) -> Result<(), ReplicaError> {
        if dir.is_empty() || self.dirs.lock().map(|d| d.contains(dir)).unwrap_or(false) {
            return Ok(());
        }
        let mut missing = vec![];
        let mut at = dir;
        while !at.is_empty() && at != "/" {
            match c.sftp.metadata(at).await {
                Ok(m) if m.is_dir() => break,
                Ok(_) => return Err(self.fail("put", key, format!("{at} exists and is not a directory"), true)),
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                    missing.push(at);
                    at = parent(at);
                }
                Err(e) => return Err(self.sftp_err(c, "put", key, e).await),
            }
        }
        for d in missing.into_iter().rev() {
            if let Err(e) = c.sftp.create_dir(d).await {
                // Another writer may have made it meanwhile.
                if !c.sftp.metadata(d).await.is_ok_and(|m| m.is_dir()) {
                    let err = self.sftp_err(c, "put", key, e).await;
                    return Err(self.fail("put", key, format!("cannot create directory {d}: {err}"), true));
                }
            }
        }
        self.dirs.lock().map(|mut s| s.insert(dir.to_owned())).ok();
        Ok(())
    }

    async fn upload(&self, c: &Arc<Conn>, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError> {
        let dst = self.path(key);
        self.ensure_dir(c, parent(&dst), key).await?;
        let tmp = format!("{dst}.tmp");
        let mut input = tokio::fs::File::open(src).await.map_err(|source| ReplicaError::Io {
            replica: self.describe(),
            op: "put",
            key: key.to_owned(),
            source,
        })?;
        let flags = OpenFlags::CREATE | OpenFlags::TRUNCATE | OpenFlags::WRITE;
        let mut out = match c.sftp.open_with_flags(tmp.as_str(), flags).await {
            Ok(f) => f,
            Err(e) => {
                // Retention may have removed a directory this client thought was there.
                self.dirs.lock().map(|mut d| d.clear()).ok();
                return Err(self.sftp_err(c, "put", key, e).await);
            }
        };
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = input.read(&mut buf).await.map_err(|source| ReplicaError::Io {
                replica: self.describe(),
                op: "put",
                key: key.to_owned(),
                source,
            })?;
            if n == 0 {
                break;
            }
            if let Err(e) = out.write_all(&buf[..n]).await {
                self.drop_conn(c).await;
                return Err(self.fail("put", key, format!("writing {tmp}: {e}"), false));
            }
        }
        // fsync@openssh.com where the server has it: the object must be durable before it is reported so.
        if let Err(e) = out.sync_all().await {
            self.drop_conn(c).await;
            return Err(self.fail("put", key, format!("syncing {tmp}: {e}"), false));
        }
        if let Err(e) = out.shutdown().await {
            self.drop_conn(c).await;
            return Err(self.fail("put", key, format!("closing {tmp}: {e}"), false));
        }
        let secs = created.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(0);
        let attrs = FileAttributes { mtime: Some(secs), atime: Some(secs), ..FileAttributes::empty() };
        if let Err(e) = c.sftp.set_metadata(tmp.as_str(), attrs).await {
            return Err(self.sftp_err(c, "put", key, e).await);
        }
        if let Err(e) = c.sftp.rename(tmp.as_str(), dst.as_str()).await {
            // SFTP v3 renames refuse an existing target (an object written again, or an upload whose answer was
            // lost): replace it. Readers see the old object or the new one, or briefly none, never half of one.
            if !c.sftp.metadata(dst.as_str()).await.is_ok_and(|m| m.is_regular()) {
                return Err(self.sftp_err(c, "put", key, e).await);
            }
            if let Err(e) = c.sftp.remove_file(dst.as_str()).await {
                return Err(self.sftp_err(c, "put", key, e).await);
            }
            if let Err(e) = c.sftp.rename(tmp.as_str(), dst.as_str()).await {
                return Err(self.sftp_err(c, "put", key, e).await);
            }
        }
        Ok(())
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<(String, russh_sftp::client::fs::Metadata)>, ReplicaError> {
        let c = self.session("list", prefix).await?;
        let dir = self.path(prefix);
        match c.sftp.read_dir(dir.as_str()).await {
            Ok(rd) => Ok(rd.map(|e| (e.file_name(), e.metadata())).collect()),
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => Ok(vec![]),
            Err(e) => Err(self.sftp_err(&c, "list", prefix, e).await),
        }
    }

    /// Close the connection (at shutdown).
    pub async fn close(&self) {
        if let Some(c) = self.conn.lock().await.take() {
            c.close().await;
        }
    }
}

#[async_trait]
impl ObjectClient for SftpClient {
    fn describe(&self) -> String {
        self.settings.url()
    }

    fn kind(&self) -> &'static str {
        "sftp"
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
        Ok(self
            .entries(prefix)
            .await?
            .into_iter()
            .filter(|(n, m)| m.is_dir() && n != "." && n != "..")
            .map(|e| e.0)
            .collect())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        Ok(self
            .entries(prefix)
            .await?
            .into_iter()
            .filter(|(_, m)| m.is_regular())
            .map(|(name, m)| ObjectInfo {
                name,
                size: m.size.unwrap_or(0),
                modified: m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            })
            .collect())
    }

    async fn put_file(&self, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError> {
        let c = self.session("put", key).await?;
        self.upload(&c, key, src, created).await
    }

    async fn get_file(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError> {
        let c = self.session("get", key).await?;
        let path = self.path(key);
        let mut input = match c.sftp.open(path.as_str()).await {
            Ok(f) => f,
            Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {
                return Err(ReplicaError::NotFound { replica: self.describe(), key: key.to_owned() });
            }
            Err(e) => return Err(self.sftp_err(&c, "get", key, e).await),
        };
        let io_err = |source| ReplicaError::Io { replica: self.describe(), op: "get", key: key.to_owned(), source };
        let mut out = tokio::fs::File::create(dst).await.map_err(io_err)?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            let n = match input.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    self.drop_conn(&c).await;
                    return Err(self.fail("get", key, format!("reading {path}: {e}"), false));
                }
            };
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).await.map_err(io_err)?;
            total += n as u64;
        }
        out.flush().await.map_err(io_err)?;
        let _ = input.shutdown().await;
        Ok(total)
    }

    async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError> {
        let Some(first) = keys.first() else { return Ok(()) };
        let c = self.session("delete", first).await?;
        let mut dirs = std::collections::BTreeSet::new();
        for key in keys {
            let p = self.path(key);
            match c.sftp.remove_file(p.as_str()).await {
                Ok(()) => {}
                Err(SftpError::Status(s)) if s.status_code == StatusCode::NoSuchFile => {}
                Err(e) => return Err(self.sftp_err(&c, "delete", key, e).await),
            }
            dirs.insert(parent(&p).to_owned());
        }
        // Directories left empty (a deleted generation) go too, deepest first; the server refuses non-empty ones.
        for d in dirs.iter().rev() {
            for dir in [d.as_str(), parent(d)] {
                if !dir.is_empty() && c.sftp.remove_dir(dir).await.is_ok() {
                    self.dirs.lock().map(|mut s| s.retain(|k| !k.starts_with(dir))).ok();
                }
            }
        }
        Ok(())
    }
}
