//! One SSH connection with an SFTP channel: dial, check the server's key, authenticate.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh_sftp::client::SftpSession;

use super::{HostKeyCheck, SftpSettings};

/// Litestream's dial timeout.
const DIAL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one SFTP request may wait for its answer before the connection is taken as lost.
pub(super) const REQUEST_TIMEOUT_SECS: u64 = 60;

/// Why a connection could not be made; `permanent` when trying again cannot help (credentials, host key).
#[derive(Debug)]
pub(super) struct ConnectError {
    pub message: String,
    pub permanent: bool,
}

impl ConnectError {
    fn transient(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: false }
    }
    fn permanent(message: impl Into<String>) -> Self {
        Self { message: message.into(), permanent: true }
    }
}

pub(super) struct Conn {
    pub sftp: SftpSession,
    handle: client::Handle<Handler>,
}

impl Conn {
    /// Whether the SSH connection under the SFTP channel has gone.
    pub fn is_closed(&self) -> bool {
        self.handle.is_closed()
    }

    pub async fn close(&self) {
        let _ = self.sftp.close().await;
        let _ = self.handle.disconnect(russh::Disconnect::ByApplication, "", "en").await;
    }
}

/// Checks the server's key; what it found is kept for the error message, since russh reports a refused key only as
/// "unknown key".
struct Handler {
    check: HostKeyCheck,
    host: String,
    port: u16,
    refused: Arc<Mutex<Option<String>>>,
    warned: bool,
}

impl Handler {
    fn verdict(&self, key: &PublicKey) -> Result<(), String> {
        let fingerprint = key.fingerprint(HashAlg::Sha256);
        match &self.check {
            HostKeyCheck::AcceptAny => Ok(()),
            HostKeyCheck::Key(expected) => {
                if expected.key_data() == key.key_data() {
                    Ok(())
                } else {
                    Err(format!(
                        "host key mismatch: the server offered {} {fingerprint}, host-key is {} {}",
                        key.algorithm(),
                        expected.algorithm(),
                        expected.fingerprint(HashAlg::Sha256)
                    ))
                }
            }
            HostKeyCheck::KnownHosts(path) => {
                match russh::keys::check_known_hosts_path(&self.host, self.port, key, path) {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(format!(
                        "host key {} {fingerprint} of {} is not in known-hosts-file {}",
                        key.algorithm(),
                        self.host,
                        path.display()
                    )),
                    Err(russh::keys::Error::KeyChanged { line }) => Err(format!(
                        "host key mismatch: the server offered {} {fingerprint}, known-hosts-file {} line {line} \
                         lists another key for {}",
                        key.algorithm(),
                        path.display(),
                        self.host
                    )),
                    Err(e) => Err(format!("known-hosts-file {}: {e}", path.display())),
                }
            }
        }
    }
}

impl client::Handler for Handler {
    type Error = russh::Error;

    async fn check_server_key(&mut self, offered: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let key = match offered {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::new(cert.public_key().clone(), ""),
        };
        let key = &key;
        match self.verdict(key) {
            Ok(()) => {
                if matches!(self.check, HostKeyCheck::AcceptAny) && !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        host = %self.host,
                        key = %key.fingerprint(HashAlg::Sha256),
                        "SFTP host key not verified (as Litestream does); set host-key or known-hosts-file to check it"
                    );
                }
                Ok(true)
            }
            Err(m) => {
                if let Ok(mut r) = self.refused.lock() {
                    *r = Some(m);
                }
                Ok(false)
            }
        }
    }
}

fn split_host(host_port: &str) -> (String, u16) {
    match host_port.rsplit_once(':') {
        Some((h, p)) => (h.trim_start_matches('[').trim_end_matches(']').to_owned(), p.parse().unwrap_or(22)),
        None => (host_port.to_owned(), 22),
    }
}

fn load_key(path: &PathBuf) -> Result<russh::keys::PrivateKey, ConnectError> {
    russh::keys::load_secret_key(path, None)
        .map_err(|e| ConnectError::permanent(format!("key-path {}: cannot use the private key: {e}", path.display())))
}

/// Dial, check the host key, log in with the password and/or the key, and open the SFTP subsystem.
pub(super) async fn connect(s: &SftpSettings) -> Result<Conn, ConnectError> {
    let key = s.key_path.as_ref().map(load_key).transpose()?;
    let (host, port) = split_host(&s.host);
    let config = Arc::new(client::Config {
        // A dead server is noticed within a minute even when no request is in flight.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        nodelay: true,
        ..Default::default()
    });
    let refused = Arc::new(Mutex::new(None));
    let handler =
        Handler { check: s.host_key.clone(), host: host.clone(), port, refused: refused.clone(), warned: false };
    let dialed = tokio::time::timeout(DIAL_TIMEOUT, client::connect(config, (host.as_str(), port), handler)).await;
    let mut handle = match dialed {
        Err(_) => return Err(ConnectError::transient(format!("connecting to {}: timed out", s.host))),
        Ok(Ok(h)) => h,
        Ok(Err(e)) => {
            if let Some(m) = refused.lock().ok().and_then(|mut r| r.take()) {
                return Err(ConnectError::permanent(m));
            }
            return Err(ConnectError::transient(format!("connecting to {}: {e}", s.host)));
        }
    };
    let mut tried = vec![];
    let mut ok = false;
    if let Some(key) = key {
        tried.push(format!("key {}", s.key_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()));
        let hash = match handle.best_supported_rsa_hash().await {
            Ok(h) => h.flatten(),
            Err(e) => return Err(ConnectError::transient(format!("{}: {e}", s.host))),
        };
        let r = handle
            .authenticate_publickey(&s.user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| ConnectError::transient(format!("{}: authenticating: {e}", s.host)))?;
        ok = r.success();
    }
    if !ok && let Some(pw) = &s.password {
        tried.push("password".to_owned());
        let r = handle
            .authenticate_password(&s.user, pw)
            .await
            .map_err(|e| ConnectError::transient(format!("{}: authenticating: {e}", s.host)))?;
        ok = r.success();
    }
    if !ok {
        let how = if tried.is_empty() { "no password or key-path is set".to_owned() } else { tried.join(", ") };
        return Err(ConnectError::permanent(format!(
            "{} refused user {:?}: authentication failed ({how})",
            s.host, s.user
        )));
    }
    let channel = handle
        .channel_open_session()
        .await
        .map_err(|e| ConnectError::transient(format!("{}: opening a session: {e}", s.host)))?;
    channel
        .request_subsystem(true, "sftp")
        .await
        .map_err(|e| ConnectError::transient(format!("{}: starting sftp: {e}", s.host)))?;
    let sftp_config = russh_sftp::client::Config { request_timeout_secs: REQUEST_TIMEOUT_SECS, ..Default::default() };
    let sftp = SftpSession::new_with_config(channel.into_stream(), sftp_config)
        .await
        .map_err(|e| ConnectError::transient(format!("{}: starting sftp: {e}", s.host)))?;
    Ok(Conn { sftp, handle })
}
