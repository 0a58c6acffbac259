//! age encryption of a replica's objects, as Litestream 0.3 writes them: each object is `age(lz4(data))` under its
//! usual name. Objects are encrypted when recipients are set and decrypted when identities are set; the wrapper sits
//! between the Litestream layout and any backend, so every backend gets it.

use std::fmt;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::client::{ObjectClient, ObjectInfo};
use crate::error::ReplicaError;

/// What every age file starts with.
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1";

/// A replica's keys, parsed. Each configured string may be a whole key file: blank lines and `#` comments are
/// skipped, every other line is one X25519 key (`AGE-SECRET-KEY-1...` or `age1...`).
#[derive(Clone, Default)]
pub struct AgeKeys {
    pub identities: Vec<age::x25519::Identity>,
    pub recipients: Vec<age::x25519::Recipient>,
}

// Hand-written so that identities never reach a log line through `{:?}`.
impl fmt::Debug for AgeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgeKeys {{ identities: {}, recipients: {:?} }}", self.identities.len(), self.recipient_names())
    }
}

fn key_lines(values: &[String]) -> impl Iterator<Item = (usize, &str)> {
    values
        .iter()
        .enumerate()
        .flat_map(|(i, v)| v.lines().map(move |l| (i, l.trim())))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

impl AgeKeys {
    /// Parse the config's strings; errors say which entry (`identities[1]`) is not a key, never quoting it.
    pub fn parse(identities: &[String], recipients: &[String]) -> Result<Self, String> {
        let mut keys = AgeKeys::default();
        for (i, line) in key_lines(identities) {
            let id = age::x25519::Identity::from_str(line)
                .map_err(|_| format!("identities[{i}] is not an age X25519 identity (AGE-SECRET-KEY-1...)"))?;
            keys.identities.push(id);
        }
        for (i, line) in key_lines(recipients) {
            let r = age::x25519::Recipient::from_str(line)
                .map_err(|e| format!("recipients[{i}] is not an age X25519 recipient (age1...): {e}"))?;
            keys.recipients.push(r);
        }
        Ok(keys)
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty() && self.recipients.is_empty()
    }

    fn recipient_names(&self) -> Vec<String> {
        self.recipients.iter().map(|r| r.to_string()).collect()
    }

    /// The recipients the configured identities can decrypt for (what an encrypted replica is expected to use).
    fn expected(&self) -> String {
        let mut names: Vec<String> = self.identities.iter().map(|i| i.to_public().to_string()).collect();
        if names.is_empty() {
            names = self.recipient_names();
        }
        if names.is_empty() { "none configured".into() } else { names.join(", ") }
    }
}

/// Encrypts what it stores and decrypts what it reads, around another client.
pub struct AgeClient {
    inner: Arc<dyn ObjectClient>,
    keys: Arc<AgeKeys>,
}

impl fmt::Debug for AgeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgeClient({:?}, {:?})", self.inner, self.keys)
    }
}

impl AgeClient {
    pub fn new(inner: Arc<dyn ObjectClient>, keys: AgeKeys) -> Self {
        Self { inner, keys: Arc::new(keys) }
    }

    fn error(&self, op: &'static str, key: &str, message: String) -> ReplicaError {
        ReplicaError::Backend { replica: self.inner.describe(), op, key: key.to_owned(), message, permanent: true }
    }
}

fn scratch(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn encrypt_file(src: &Path, dst: &Path, keys: &AgeKeys) -> Result<(), String> {
    let recipients = keys.recipients.iter().map(|r| r as &dyn age::Recipient);
    let encryptor = age::Encryptor::with_recipients(recipients).map_err(|e| e.to_string())?;
    let mut input = BufReader::new(std::fs::File::open(src).map_err(|e| format!("{}: {e}", src.display()))?);
    let out = BufWriter::new(std::fs::File::create(dst).map_err(|e| format!("{}: {e}", dst.display()))?);
    let mut writer = encryptor.wrap_output(out).map_err(|e| e.to_string())?;
    std::io::copy(&mut input, &mut writer).map_err(|e| e.to_string())?;
    let mut out = writer.finish().map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())
}

/// Decrypt `src` into `dst`; the size of the plaintext.
fn decrypt_file(src: &Path, dst: &Path, keys: &AgeKeys) -> Result<u64, String> {
    let mut input = BufReader::new(std::fs::File::open(src).map_err(|e| format!("{}: {e}", src.display()))?);
    let mut magic = [0u8; AGE_MAGIC.len()];
    let n = input.read(&mut magic).map_err(|e| e.to_string())?;
    if n < magic.len() || magic != AGE_MAGIC {
        // Plaintext objects (written before recipients were set) are read as they are, as Litestream does not.
        drop(input);
        std::fs::copy(src, dst).map_err(|e| e.to_string())?;
        return std::fs::metadata(dst).map(|m| m.len()).map_err(|e| e.to_string());
    }
    drop(input);
    let input = BufReader::new(std::fs::File::open(src).map_err(|e| format!("{}: {e}", src.display()))?);
    let decryptor = age::Decryptor::new_buffered(input).map_err(|e| e.to_string())?;
    if keys.identities.is_empty() {
        return Err("the object is age-encrypted and no identity is configured (set age: {identities: [...]})".into());
    }
    let identities = keys.identities.iter().map(|i| i as &dyn age::Identity);
    let mut reader = decryptor.decrypt(identities).map_err(|e| match e {
        age::DecryptError::NoMatchingKeys => format!(
            "the object is age-encrypted for other recipients: no configured identity matches (the identities \
             configured are for {})",
            keys.expected()
        ),
        other => other.to_string(),
    })?;
    let mut out = BufWriter::new(std::fs::File::create(dst).map_err(|e| format!("{}: {e}", dst.display()))?);
    let n = std::io::copy(&mut reader, &mut out).map_err(|e| e.to_string())?;
    out.flush().map_err(|e| e.to_string())?;
    Ok(n)
}

#[async_trait]
impl ObjectClient for AgeClient {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, ReplicaError> {
        self.inner.list_dirs(prefix).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ReplicaError> {
        self.inner.list(prefix).await
    }
    async fn put_file(&self, key: &str, src: &Path, created: SystemTime) -> Result<(), ReplicaError> {
        if self.keys.recipients.is_empty() {
            return self.inner.put_file(key, src, created).await;
        }
        let tmp = scratch(src, ".age.tmp");
        let (s, t, keys) = (src.to_owned(), tmp.clone(), self.keys.clone());
        let encrypted = tokio::task::spawn_blocking(move || encrypt_file(&s, &t, &keys))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
        let result = match encrypted {
            Ok(()) => self.inner.put_file(key, &tmp, created).await,
            Err(m) => Err(self.error("encrypt", key, m)),
        };
        let _ = std::fs::remove_file(&tmp);
        result
    }
    async fn get_file(&self, key: &str, dst: &Path) -> Result<u64, ReplicaError> {
        let tmp = scratch(dst, ".age.tmp");
        let fetched = self.inner.get_file(key, &tmp).await;
        let result = match fetched {
            Ok(_) => {
                let (s, d, keys) = (tmp.clone(), dst.to_owned(), self.keys.clone());
                tokio::task::spawn_blocking(move || decrypt_file(&s, &d, &keys))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                    .map_err(|m| self.error("decrypt", key, m))
            }
            Err(e) => Err(e),
        };
        let _ = std::fs::remove_file(&tmp);
        result
    }
    async fn delete(&self, keys: &[String]) -> Result<(), ReplicaError> {
        self.inner.delete(keys).await
    }
    // Objects must pass through decryption, so they are never read in place.
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_identity() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (age::x25519::Identity::generate(), age::x25519::Identity::generate());
        let keys = AgeKeys { identities: vec![a.clone()], recipients: vec![a.to_public()] };
        let (plain, enc, out) = (dir.path().join("p"), dir.path().join("e"), dir.path().join("o"));
        std::fs::write(&plain, b"lz4 frame bytes").expect("write");
        encrypt_file(&plain, &enc, &keys).expect("encrypt");
        assert!(std::fs::read(&enc).expect("read").starts_with(AGE_MAGIC));
        assert_eq!(decrypt_file(&enc, &out, &keys).expect("decrypt"), 15);
        assert_eq!(std::fs::read(&out).expect("read"), b"lz4 frame bytes");
        let wrong = AgeKeys { identities: vec![b.clone()], recipients: vec![] };
        let e = decrypt_file(&enc, &out, &wrong).expect_err("wrong identity");
        assert!(e.contains("no configured identity matches") && e.contains(&b.to_public().to_string()), "{e}");
        let none = AgeKeys::default();
        assert!(decrypt_file(&enc, &out, &none).expect_err("no identity").contains("no identity is configured"));
    }

    #[test]
    fn key_files_with_comments() {
        let id = age::x25519::Identity::generate();
        use age::secrecy::ExposeSecret;
        let file =
            format!("# created: 2026-01-01\n# public key: {}\n{}\n", id.to_public(), id.to_string().expose_secret());
        let keys = AgeKeys::parse(&[file], &[id.to_public().to_string()]).expect("parses");
        assert_eq!((keys.identities.len(), keys.recipients.len()), (1, 1));
        let e = AgeKeys::parse(&["AGE-SECRET-KEY-1NOTAKEY".into()], &[]).expect_err("bad");
        assert!(e.contains("identities[0]") && !e.contains("NOTAKEY"), "{e}");
    }
}
