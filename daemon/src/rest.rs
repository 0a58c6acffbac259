//! The REST table API as the daemon runs it: config -> options, JWT keys read from mounted files or the
//! environment, the auth layer applied to every protected route, metrics in the daemon's registry.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use litecar_rest::{AuthConfig, JwtOptions, KeySource, RestMetrics, RestOptions, RestState, RolePolicy};

use crate::config::{JwtKey, RestAuth, RestSettings, RestTls};

pub struct RestPlan {
    pub addr: SocketAddr,
    pub options: RestOptions,
    pub auth: AuthConfig,
    /// HTTPS with this certificate and key (`rest.tls`).
    pub tls: Option<RestTls>,
}

/// The REST plan of resolved settings: the JWT key is read from its file or variable here.
pub fn plan(rest: &RestSettings) -> Result<RestPlan> {
    let addr = crate::http::parse_addr(&rest.addr).context("rest.addr")?;
    let mut options = RestOptions::new(rest.db.clone());
    options.allowed_tables = rest.allowed_tables.clone();
    options.allow_unfiltered_writes = rest.allow_unfiltered_writes;
    if let Some(n) = rest.read_connections {
        options.read_connections = n.max(1);
    }
    if let Some(t) = rest.request_timeout {
        options.request_timeout = t;
    }
    if let Some(n) = rest.max_body_bytes {
        options.max_body_bytes = n;
    }
    options.max_rows = rest.max_rows;
    options.read_only = rest.read_only;
    let auth = match &rest.auth {
        RestAuth::None => AuthConfig::None,
        RestAuth::Jwt { key, config: j } => {
            let read = |key: &str, path: &str| {
                std::fs::read_to_string(crate::config::expand_home(path))
                    .with_context(|| format!("rest.auth.{key}: reading {path}"))
            };
            let keys = match key {
                JwtKey::SecretFile(p) => {
                    KeySource::Secret(read("jwt-secret-file", p)?.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
                }
                JwtKey::SecretEnv(var) => {
                    let secret = std::env::var(var)
                        .ok()
                        .filter(|v| !v.is_empty())
                        .with_context(|| format!("rest.auth.jwt-secret-env: environment variable {var} is not set"))?;
                    KeySource::Secret(secret.into_bytes())
                }
                JwtKey::PublicKeyFile(p) => KeySource::PublicKeyPem(read("jwt-public-key-file", p)?),
                JwtKey::JwksFile(p) => KeySource::Jwks(read("jwks-file", p)?),
            };
            let mut options = JwtOptions::new(keys);
            options.audience = j.audience.clone();
            options.issuer = j.issuer.clone();
            if let Some(l) = j.leeway {
                options.leeway = l.0;
            }
            if let Some(c) = &j.role_claim {
                options.role_claim = c.clone();
            }
            options.roles = j
                .roles
                .iter()
                .map(|(name, r)| (name.clone(), RolePolicy { read_only: r.read_only, tables: r.tables.clone() }))
                .collect();
            options.default_role = j.default_role.clone();
            AuthConfig::Jwt(options)
        }
    };
    Ok(RestPlan { addr, options, auth, tls: rest.tls.clone() })
}

/// The REST listener's router: the table API and `extra` routes (the watch-cache's `/k8s` and Kubernetes API),
/// all behind the one auth layer, with metrics in `registry`.
pub fn app(plan: RestPlan, extra: Option<axum::Router>, registry: &prometheus::Registry) -> Result<axum::Router> {
    litecar_rest::check_auth_allowed(&plan.addr, &plan.auth)?;
    if let AuthConfig::Jwt(jwt) = &plan.auth
        && jwt.roles.is_empty()
    {
        tracing::warn!(
            tables = ?plan.options.allowed_tables,
            "rest.auth has no roles: every valid token may read and write every allowed table; \
             configure rest.auth.roles to restrict access"
        );
    }
    let metrics = RestMetrics::new(registry).context("registering REST metrics")?;
    let layer = litecar_rest::AuthLayer::try_new(&plan.auth, metrics.clone())?;
    let state = RestState::new(plan.options, metrics)?;
    let mut app = litecar_rest::router(state);
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    // kubectl words the auth layer's refusals on the Kubernetes API paths only when they are Status objects
    Ok(app.layer(layer).layer(axum::middleware::from_fn(litecar_watchcache::kube_auth_status)))
}
