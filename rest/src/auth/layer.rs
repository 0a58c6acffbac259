//! The tower layer that authenticates every request of the routes it wraps.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use super::verify::AuthFailure;
use super::{AuthConfig, Verifier};
use crate::error::RestError;
use crate::metrics::RestMetrics;

#[derive(Clone)]
enum Mode {
    Open,
    Jwt(Arc<Verifier>),
    /// The keys did not parse: fail closed rather than serve unauthenticated.
    Broken,
}

/// Validates the bearer JWT and inserts an [`AuthContext`](super::AuthContext) extension; answers 401 (or 403
/// for a token whose role is not allowed) with a JSON error otherwise. With `AuthConfig::None` it passes
/// requests through untouched.
#[derive(Clone)]
pub struct AuthLayer {
    mode: Mode,
    metrics: RestMetrics,
}

impl AuthLayer {
    /// Like [`auth_layer`], but reports unusable keys instead of refusing every request.
    pub fn try_new(cfg: &AuthConfig, metrics: RestMetrics) -> Result<Self, RestError> {
        let mode = match cfg {
            AuthConfig::None => Mode::Open,
            AuthConfig::Jwt(options) => Mode::Jwt(Arc::new(Verifier::new(options)?)),
        };
        Ok(AuthLayer { mode, metrics })
    }
}

/// The auth layer for every protected route. Key problems are reported by
/// [`check_auth_allowed`](super::check_auth_allowed) at start-up; if the daemon skipped that, a layer with
/// unusable keys answers 500 to every request (fail closed).
pub fn auth_layer(cfg: Arc<AuthConfig>, metrics: RestMetrics) -> AuthLayer {
    match AuthLayer::try_new(&cfg, metrics.clone()) {
        Ok(layer) => layer,
        Err(error) => {
            tracing::error!(%error, "JWT configuration unusable; refusing all requests");
            AuthLayer { mode: Mode::Broken, metrics }
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, mode: self.mode.clone(), metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    mode: Mode,
    metrics: RestMetrics,
}

impl<S> Service<Request> for AuthService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let outcome = match &self.mode {
            Mode::Open => Ok(None),
            Mode::Jwt(verifier) => verifier.authenticate(request.headers()).map(Some),
            Mode::Broken => Err(AuthFailure::Misconfigured),
        };
        match outcome {
            Ok(context) => {
                if let Some(context) = context {
                    request.extensions_mut().insert(context);
                }
                // The clone that was polled ready is the one that must be called.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move { inner.call(request).await })
            }
            Err(failure) => {
                self.metrics.auth_failures.with_label_values(&[failure.label()]).inc();
                let response = failure.into_error().into_response();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}
