//! Serving a router until cancelled.

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves `app` on `listener` until `cancel` fires; then stops accepting and returns once the requests in
/// flight have been answered.
pub async fn serve(listener: TcpListener, app: Router, cancel: CancellationToken) -> std::io::Result<()> {
    axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await
}
