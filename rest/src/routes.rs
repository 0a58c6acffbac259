//! The router and its request metrics.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;

use crate::handlers;
use crate::openapi;
use crate::state::RestState;

/// `GET/HEAD/POST/PATCH/PUT/DELETE /{table}` and `GET /openapi.json` (also served at `/`, as PostgREST
/// does). Behind the auth layer a request must carry an [`AuthContext`](crate::AuthContext); without one it
/// has full access.
pub fn router(state: RestState) -> Router {
    let table =
        get(handlers::table).post(handlers::table).patch(handlers::table).put(handlers::table).delete(handlers::table);
    Router::new()
        .route("/", get(openapi::document))
        .route("/openapi.json", get(openapi::document))
        .route("/{table}", table)
        .fallback(handlers::not_found)
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Label values are drawn from bounded sets (known methods, allowed tables) so that arbitrary URLs cannot
/// grow the metric's cardinality.
async fn track(State(state): State<RestState>, request: Request, next: Next) -> Response {
    let method = match *request.method() {
        Method::GET | Method::HEAD | Method::POST | Method::PATCH | Method::PUT | Method::DELETE | Method::OPTIONS => {
            request.method().as_str().to_owned()
        }
        _ => "OTHER".to_owned(),
    };
    let segment = request.uri().path().trim_start_matches('/');
    let table = match segment {
        "" | "openapi.json" => "openapi.json".to_owned(),
        segment => match percent_encoding::percent_decode_str(segment).decode_utf8() {
            Ok(name) if state.is_allowed(&name) => name.into_owned(),
            _ => "other".to_owned(),
        },
    };
    let started = Instant::now();
    let response = next.run(request).await;
    let metrics = state.metrics();
    metrics.requests.with_label_values(&[method.as_str(), table.as_str(), response.status().as_str()]).inc();
    metrics.duration.with_label_values(&[method.as_str(), table.as_str()]).observe(started.elapsed().as_secs_f64());
    response
}
