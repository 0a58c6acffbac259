//! The daemon's own HTTP endpoints on `addr`: `/metrics`, `/healthz` (alive) and `/readyz` (replicating).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

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

pub async fn serve(listener: tokio::net::TcpListener, app: Router, cancel: CancellationToken) -> Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
        .context("HTTP server")
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
}
