//! Authentication failures on the Kubernetes API paths as the API server words them. The auth layer in front of
//! every route answers in the table API's format; kubectl prints a Status's message ("You must be logged in to
//! the server (Unauthorized)") and only guesses at any other body.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use crate::http::status;

/// Middleware to wrap around the auth layer: a 401 or 403 on `/api` or `/apis` becomes a Status.
pub async fn kube_auth_status(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let kube = ["/api", "/apis"].iter().any(|p| path == *p || path.starts_with(&format!("{p}/")));
    let res = next.run(req).await;
    if !kube {
        return res;
    }
    match res.status() {
        StatusCode::UNAUTHORIZED => status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into()),
        StatusCode::FORBIDDEN => {
            // the refusal's own reason (which role, which verb) is worth keeping
            let body = axum::body::to_bytes(res.into_body(), 64 << 10).await.unwrap_or_default();
            let message = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "forbidden".into());
            status(StatusCode::FORBIDDEN, "Forbidden", message)
        }
        _ => res,
    }
}
