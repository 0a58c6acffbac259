//! The REST table API as the daemon runs it: config -> options, JWT keys read from mounted files or the
//! environment, the auth layer applied to every protected route, metrics in the daemon's registry.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use litecar_rest::{AuthConfig, JwtOptions, KeySource, RestMetrics, RestOptions, RestState, RolePolicy};
use tokio_util::sync::CancellationToken;

use crate::config::{AuthSetting, Config};

pub struct RestPlan {
    pub addr: SocketAddr,
    pub options: RestOptions,
    pub auth: AuthConfig,
}

/// The REST plan of a config, if it has an enabled `rest:` section.
pub fn plan(config: &Config) -> Result<Option<RestPlan>> {
    let Some(rest) = config.rest.as_ref().filter(|r| r.enabled.unwrap_or(true)) else { return Ok(None) };
    let addr = crate::http::parse_addr(rest.addr.as_deref().unwrap_or(":8080")).context("rest.addr")?;
    let db = match (&rest.db, config.dbs.as_slice(), config.follow.as_slice()) {
        (Some(db), _, _) => PathBuf::from(db),
        (None, [only], []) => PathBuf::from(&only.path),
        (None, [], [only]) => PathBuf::from(&only.path),
        (None, _, _) => bail!("rest.db: required unless exactly one database is configured"),
    };
    let mut options = RestOptions::new(db);
    options.allowed_tables = rest.allowed_tables.clone();
    options.allow_unfiltered_writes = rest.allow_unfiltered_writes.unwrap_or(false);
    if let Some(n) = rest.read_connections {
        options.read_connections = n.max(1);
    }
    if let Some(t) = rest.request_timeout {
        options.request_timeout = t.0;
    }
    if let Some(n) = rest.max_body_bytes {
        options.max_body_bytes = n;
    }
    options.max_rows = rest.max_rows;
    options.read_only =
        rest.read_only.unwrap_or(false) || config.follow.iter().any(|f| Path::new(&f.path) == options.db_path);
    let auth = match &rest.auth {
        None => bail!("rest.auth: required (a JWT key, or `none` on a loopback address)"),
        Some(AuthSetting::Keyword(_)) => AuthConfig::None,
        Some(AuthSetting::Jwt(j)) => {
            let read = |key: &str, path: &str| {
                std::fs::read_to_string(path).with_context(|| format!("rest.auth.{key}: reading {path}"))
            };
            let keys = if let Some(p) = &j.jwt_secret_file {
                KeySource::Secret(read("jwt-secret-file", p)?.trim_end_matches(['\n', '\r']).as_bytes().to_vec())
            } else if let Some(var) = &j.jwt_secret_env {
                let secret = std::env::var(var)
                    .ok()
                    .filter(|v| !v.is_empty())
                    .with_context(|| format!("rest.auth.jwt-secret-env: environment variable {var} is not set"))?;
                KeySource::Secret(secret.into_bytes())
            } else if let Some(p) = &j.jwt_public_key_file {
                KeySource::PublicKeyPem(read("jwt-public-key-file", p)?)
            } else if let Some(p) = &j.jwks_file {
                KeySource::Jwks(read("jwks-file", p)?)
            } else {
                bail!("rest.auth: no key configured");
            };
            if j.roles.is_empty() {
                bail!(
                    "rest.auth.roles: name at least one role, e.g. `roles: {{writer: {{}}, reader: {{read-only: true}}}}`"
                );
            }
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
    Ok(Some(RestPlan { addr, options, auth }))
}

/// Serve the table API until `cancel`; in-flight requests are drained.
/// `extra` routes (the watch-cache's `/k8s`) are served on the same listener, behind the same auth layer.
pub async fn run(
    plan: RestPlan,
    extra: Option<axum::Router>,
    registry: &prometheus::Registry,
    cancel: CancellationToken,
) -> Result<()> {
    litecar_rest::check_auth_allowed(&plan.addr, &plan.auth)?;
    let metrics = RestMetrics::new(registry).context("registering REST metrics")?;
    let layer = litecar_rest::AuthLayer::try_new(&plan.auth, metrics.clone())?;
    let state = RestState::new(plan.options, metrics)?;
    let mut app = litecar_rest::router(state);
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    let app = app.layer(layer);
    let listener =
        tokio::net::TcpListener::bind(plan.addr).await.with_context(|| format!("rest: listening on {}", plan.addr))?;
    tracing::info!(addr = %plan.addr, "serving the REST table API");
    litecar_rest::serve(listener, app, cancel).await.context("rest: serving")?;
    Ok(())
}
