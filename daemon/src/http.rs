//! The daemon's HTTP serving: its own endpoints on `addr` (`/metrics`, `/healthz` alive, `/readyz` replicating),
//! and the one way both listeners, the metrics one and the REST one (plain or TLS), are bound and served.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

use crate::config::RestTls;
use crate::metrics::Metrics;

pub fn app(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

async fn render_metrics(State(m): State<Metrics>) -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], m.render())
}

async fn readyz(State(m): State<Metrics>) -> impl IntoResponse {
    match m.readiness() {
        Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
        Err(problems) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", problems.join("\n"))),
    }
}

/// Litestream's `addr` spelling: `:9090` means every interface.
pub fn parse_addr(addr: &str) -> Result<SocketAddr> {
    let full = if addr.starts_with(':') { format!("0.0.0.0{addr}") } else { addr.to_owned() };
    full.parse().with_context(|| format!("addr {addr:?} is not HOST:PORT or :PORT"))
}

/// A bound listener: plain TCP, or TLS over it.
pub enum Listener {
    Plain(TcpListener),
    Tls(crate::tls::TlsListener),
}

/// Binds `addr`, with TLS when `tls` names a certificate and key (checked here, so that a bad file fails start-up).
pub async fn bind(addr: SocketAddr, tls: Option<&RestTls>) -> Result<Listener> {
    let acceptor = tls.map(crate::tls::acceptor).transpose()?;
    let tcp = TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
    Ok(match acceptor {
        Some(acceptor) => Listener::Tls(crate::tls::TlsListener::new(tcp, acceptor)),
        None => Listener::Plain(tcp),
    })
}

impl axum::serve::Listener for Listener {
    type Io = Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self {
            Listener::Plain(l) => {
                let (io, addr) = axum::serve::Listener::accept(l).await;
                no_delay(&io);
                (Either::Left(io), addr)
            }
            Listener::Tls(l) => {
                let (io, addr) = axum::serve::Listener::accept(l).await;
                no_delay(io.get_ref().0);
                (Either::Right(io), addr)
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        match self {
            Listener::Plain(l) => l.local_addr(),
            Listener::Tls(l) => axum::serve::Listener::local_addr(l),
        }
    }
}

/// Send what a response writes at once rather than hold a small write back until the client acknowledges the
/// previous one (Nagle's algorithm): a watch stream is a run of small writes, and the delayed acknowledgement
/// would add up to 40 ms to an event. Go's servers, the Kubernetes API server among them, do the same.
fn no_delay(tcp: &TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY on an accepted connection");
    }
}

/// Serves `app` until `cancel`; then stops accepting and returns once the requests in flight are answered.
/// The watch-cache's way of serving, so that a watch costs here what its benchmark measures.
pub async fn serve(listener: Listener, app: Router, cancel: CancellationToken) -> Result<()> {
    litecar_watchcache::serve(listener, app, cancel).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn litestream_addr_spelling() {
        assert_eq!(parse_addr(":9090").expect("ok"), "0.0.0.0:9090".parse::<SocketAddr>().expect("addr"));
        assert_eq!(parse_addr("127.0.0.1:1").expect("ok"), "127.0.0.1:1".parse::<SocketAddr>().expect("addr"));
        assert!(parse_addr("nope").is_err());
    }

    #[tokio::test]
    async fn accepted_connections_send_without_delay() {
        let mut listener = bind("127.0.0.1:0".parse().expect("addr"), None).await.expect("bind");
        let addr = axum::serve::Listener::local_addr(&listener).expect("local addr");
        let _client = TcpStream::connect(addr).await.expect("connect");
        let (io, _) = axum::serve::Listener::accept(&mut listener).await;
        let Either::Left(tcp) = io else { panic!("a plain listener accepted TLS") };
        assert!(tcp.nodelay().expect("TCP_NODELAY"), "Nagle's algorithm is on for an accepted connection");
    }
}
