//! HTTPS on the REST listener (`rest.tls`): rustls with the aws-lc-rs provider, the certificate and key read from
//! PEM files and read again when either file changes, as cert-manager or a mounted Secret rotates them, so a
//! renewed certificate is served without a restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, anyhow, bail};
use litecar_rest::sync::lock;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::RestTls;

/// A client that opens a connection and never finishes its handshake is dropped after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS for `files`; fails, naming the file, when the certificate or key cannot be used.
pub fn acceptor(files: &RestTls) -> Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let resolver = ReloadingCert::new(files.clone(), provider.clone())?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rest.tls: TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    // The router speaks HTTP/1.1 only; clients that offer h2 fall back to it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Reads a certificate chain and its private key from PEM files and checks that they belong together.
fn load(files: &RestTls, provider: &rustls::crypto::CryptoProvider) -> Result<CertifiedKey> {
    let (cert_file, key_file) = (&files.cert_file, &files.key_file);
    let certs = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("rest.tls.cert-file {}", cert_file.display()))?;
    if certs.is_empty() {
        bail!("rest.tls.cert-file {}: no PEM certificate (BEGIN CERTIFICATE) in the file", cert_file.display());
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| match e {
        pem::Error::NoItemsFound => anyhow!(
            "rest.tls.key-file {}: no PEM private key (BEGIN PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY) in the file",
            key_file.display()
        ),
        e => anyhow::Error::new(e).context(format!("rest.tls.key-file {}", key_file.display())),
    })?;
    let key = provider
        .key_provider
        .load_private_key(key)
        .with_context(|| format!("rest.tls.key-file {}: not a usable private key", key_file.display()))?;
    let pair = CertifiedKey::new(certs, key);
    match pair.keys_match() {
        // a key type whose public half rustls cannot derive is left for the handshake to prove
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(pair),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "rest.tls: the key in {} does not go with the certificate in {}",
            key_file.display(),
            cert_file.display()
        ))),
    }
}

/// What identifies the files' current contents without reading them: a rotation through a Secret volume swaps a
/// symlink (new inode), a rewrite in place changes the modification time or the size.
type Stamp = [Option<(SystemTime, u64, u64)>; 2];

fn stamp(files: &RestTls) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let one = |p: &Path| {
        std::fs::metadata(p).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len(), m.ino()))
    };
    [one(&files.cert_file), one(&files.key_file)]
}

/// The certificate for every handshake, read again when the files have changed since the last one. A rotation
/// that cannot be used (a half-written pair, a key that does not match) is logged and the previous certificate
/// stays in service until the files change again.
#[derive(Debug)]
struct ReloadingCert {
    files: RestTls,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: Mutex<(Stamp, Arc<CertifiedKey>)>,
}

impl ReloadingCert {
    fn new(files: RestTls, provider: Arc<rustls::crypto::CryptoProvider>) -> Result<Self> {
        let stamp = stamp(&files);
        let key = Arc::new(load(&files, &provider)?);
        Ok(Self { files, provider, current: Mutex::new((stamp, key)) })
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let now = stamp(&self.files);
        let mut current = lock(&self.current);
        if now != current.0 {
            current.0 = now;
            match load(&self.files, &self.provider) {
                Ok(key) => {
                    tracing::info!(cert = %self.files.cert_file.display(), "rest.tls: certificate reloaded");
                    current.1 = Arc::new(key);
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), "rest.tls: keeping the previous certificate"),
            }
        }
        Some(current.1.clone())
    }
}

/// A TCP listener that hands out connections once their TLS handshake is done. Handshakes run as their own tasks,
/// so a slow or silent client does not hold up the others.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, acceptor: TlsAcceptor) -> Self {
        Self { tcp, acceptor, handshakes: JoinSet::new() }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                (tcp, addr) = axum::serve::Listener::accept(&mut self.tcp) => {
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                            Ok(Ok(tls)) => Some((tls, addr)),
                            Ok(Err(e)) => {
                                tracing::debug!(%addr, error = %e, "TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                tracing::debug!(%addr, "TLS handshake timed out");
                                None
                            }
                        }
                    });
                }
                Some(joined) = self.handshakes.join_next() => {
                    if let Ok(Some(done)) = joined {
                        return done;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
