//! The one way the read API is served over HTTP/1, by the daemon's listeners and by the benchmarks: hyper's
//! HTTP/1 connection driven directly. `axum::serve` wraps every connection in hyper-util's version-detecting
//! builder (HTTP/1 or HTTP/2 on the same port) and a shutdown watcher of its own, which for long-lived
//! connections such as watches cost about as much again as the rest of the connection (`fanout 5000 1000 20
//! 10`: 21.7 KB of RSS per open watch through `axum::serve`, 8.8–14.8 KB this way, at the same load).

use axum::Router;
use axum::serve::Listener;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Serves `app` on `listener` until `cancel`; then stops accepting, asks every open connection to finish its
/// response and close, and returns once they have.
pub async fn serve<L>(mut listener: L, app: Router, cancel: CancellationToken)
where
    L: Listener,
    L::Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let open = TaskTracker::new();
    loop {
        let io = tokio::select! {
            _ = cancel.cancelled() => break,
            (io, _) = listener.accept() => io,
        };
        let service = TowerToHyperService::new(app.clone());
        let stop = cancel.clone();
        open.spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "HTTP connection");
            }
        });
    }
    open.close();
    open.wait().await;
}
