//! HTTPS on the REST listener: requests with the CA trusted, a rotated certificate served without a restart, and
//! start-up errors that name the bad file.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use litecar::config::RestTls;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// A certificate authority of its own, so that a client trusting one CA refuses another's certificates.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Self { pem, issuer: Issuer::new(params, key) }
    }

    /// A server certificate for 127.0.0.1 and its key, as PEM.
    fn server(&self) -> (String, String) {
        let key = KeyPair::generate().expect("server key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).expect("params");
        let cert = params.signed_by(&key, &self.issuer).expect("server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// Writes the pair as a mounted Secret is updated: new files renamed over the old ones.
fn install(dir: &Path, (cert, key): &(String, String)) -> RestTls {
    let tls = RestTls { cert_file: dir.join("tls.crt"), key_file: dir.join("tls.key") };
    for (path, text) in [(&tls.cert_file, cert), (&tls.key_file, key)] {
        let tmp = path.with_extension("new");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, path).expect("rename");
    }
    tls
}

async fn start(tls: &RestTls, cancel: &CancellationToken) -> SocketAddr {
    let listener = litecar::http::bind("127.0.0.1:0".parse().expect("addr"), Some(tls)).await.expect("bind");
    let addr = axum::serve::Listener::local_addr(&listener).expect("local addr");
    let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
    tokio::spawn(litecar::http::serve(listener, app, cancel.clone()));
    addr
}

/// `GET /healthz` over TLS, trusting only `ca`: the response, or why the connection failed.
async fn get(addr: SocketAddr, ca: &Ca) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).expect("CA PEM")).expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut tls =
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    tls.read_to_string(&mut response).await.map_err(|e| e.to_string())?;
    Ok(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_ca_trusted_and_refused_by_a_client_trusting_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, other) = (Ca::new("first CA"), Ca::new("other CA"));
    let tls = install(dir.path(), &ca.server());
    let cancel = CancellationToken::new();
    let addr = start(&tls, &cancel).await;
    let response = get(addr, &ca).await.expect("HTTPS request");
    assert!(response.starts_with("HTTP/1.1 200 OK") && response.ends_with("ok\n"), "{response}");
    let refused = get(addr, &other).await.expect_err("a certificate from an untrusted CA");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    // plain HTTP on the TLS port gets no answer but a closed connection
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let mut buf = Vec::new();
    let _ = tcp.read_to_end(&mut buf).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
    assert!(get(addr, &ca).await.is_ok(), "the listener still serves after a failed handshake");
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_certificate_is_served_without_a_restart_and_a_bad_one_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (Ca::new("old CA"), Ca::new("new CA"));
    let tls = install(dir.path(), &old.server());
    let cancel = CancellationToken::new();
    let addr = start(&tls, &cancel).await;
    assert!(get(addr, &old).await.is_ok());

    // a half-written rotation (garbage in the certificate file) leaves the previous certificate in service
    std::fs::write(&tls.cert_file, "not a certificate\n").expect("garbage");
    assert!(get(addr, &old).await.is_ok(), "the previous certificate stays in service");

    install(dir.path(), &new.server());
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(addr, &new).await.is_err() {
        assert!(Instant::now() < deadline, "the rotated certificate was never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(get(addr, &old).await.is_err(), "the old certificate is no longer served");
    cancel.cancel();
}

#[tokio::test]
async fn bad_certificate_or_key_files_fail_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new("CA");
    let (cert, key) = ca.server();
    let (_, other_key) = ca.server();
    let err = |tls: RestTls| async move {
        let e = litecar::http::bind("127.0.0.1:0".parse().expect("addr"), Some(&tls)).await.err().expect("refused");
        format!("{e:#}")
    };
    let path = |name: &str| dir.path().join(name);
    let write = |name: &str, text: &str| std::fs::write(path(name), text).expect("write");
    write("cert.pem", &cert);
    write("key.pem", &key);
    write("other.key", &other_key);
    write("garbage", "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n");
    let files = |c: &str, k: &str| RestTls { cert_file: path(c), key_file: path(k) };

    let e = err(files("missing.pem", "key.pem")).await;
    assert!(e.contains("rest.tls.cert-file") && e.contains("missing.pem") && e.contains("No such file"), "{e}");
    let e = err(files("garbage", "key.pem")).await;
    assert!(e.contains("rest.tls.cert-file") && e.contains("garbage"), "{e}");
    let e = err(files("key.pem", "key.pem")).await;
    assert!(e.contains("rest.tls.cert-file") && e.contains("no PEM certificate"), "{e}");
    let e = err(files("cert.pem", "cert.pem")).await;
    assert!(e.contains("rest.tls.key-file") && e.contains("cert.pem"), "{e}");
    let e = err(files("cert.pem", "other.key")).await;
    assert!(e.contains("other.key") && e.contains("does not go with the certificate"), "{e}");
    assert!(
        litecar::http::bind("127.0.0.1:0".parse().expect("addr"), Some(&files("cert.pem", "key.pem"))).await.is_ok()
    );
}
