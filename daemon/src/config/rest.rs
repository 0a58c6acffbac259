//! The `rest:` section: the database the REST API serves, its limits, its authentication and TLS.

use std::path::PathBuf;
use std::time::Duration;

use super::env::expand_home;
use super::follow::FollowSettings;
use super::resolve::{DbSettings, Problem, problem};
use super::types::{AuthSetting, JwtConfig, RestConfig, TlsConfig};

#[derive(Debug, Clone)]
pub struct RestSettings {
    pub addr: String,
    pub db: PathBuf,
    pub allowed_tables: Vec<String>,
    pub allow_unfiltered_writes: bool,
    pub read_connections: Option<usize>,
    pub request_timeout: Option<Duration>,
    pub max_body_bytes: Option<usize>,
    pub max_rows: Option<usize>,
    /// Writes answer 405: `rest.read-only`, or the database is a follower's copy.
    pub read_only: bool,
    pub auth: RestAuth,
    pub tls: Option<RestTls>,
}

/// `rest.tls`: HTTPS with this certificate chain and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

#[derive(Debug, Clone)]
pub enum RestAuth {
    None,
    Jwt { key: JwtKey, config: Box<JwtConfig> },
}

/// Where the JWT verification key comes from (exactly one is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKey {
    SecretFile(String),
    SecretEnv(String),
    PublicKeyFile(String),
    JwksFile(String),
}

pub(super) fn resolve_rest(
    r: &RestConfig,
    dbs: &[DbSettings],
    follow: &[FollowSettings],
) -> Result<RestSettings, Problem> {
    let db = match (&r.db, dbs, follow) {
        (Some(db), _, _) => expand_home(db),
        (None, [only], []) => only.path.clone(),
        (None, [], [only]) => only.path.clone(),
        (None, _, _) => return Err(problem("rest.db", "required unless exactly one database is configured")),
    };
    // A follower's copy takes no writes but the follower's own.
    let read_only = r.read_only.unwrap_or(false) || follow.iter().any(|f| f.path == db);
    let auth = match &r.auth {
        None => {
            return Err(problem(
                "rest.auth",
                "required: a JWT key (jwt-secret-file, jwt-secret-env, jwt-public-key-file or jwks-file), or `none` \
                 on a loopback address",
            ));
        }
        Some(AuthSetting::Keyword(k)) if k == "none" => RestAuth::None,
        Some(AuthSetting::Keyword(k)) => {
            return Err(problem("rest.auth", format!("{k:?} is not `none` or a JWT mapping")));
        }
        Some(AuthSetting::Jwt(j)) => {
            let keys = [
                j.jwt_secret_file.clone().map(JwtKey::SecretFile),
                j.jwt_secret_env.clone().map(JwtKey::SecretEnv),
                j.jwt_public_key_file.clone().map(JwtKey::PublicKeyFile),
                j.jwks_file.clone().map(JwtKey::JwksFile),
            ];
            let mut set = keys.into_iter().flatten();
            let (Some(key), None) = (set.next(), set.next()) else {
                return Err(problem(
                    "rest.auth",
                    "set exactly one of jwt-secret-file, jwt-secret-env, jwt-public-key-file, jwks-file",
                ));
            };
            for (name, role) in &j.roles {
                for t in role.tables.iter().flatten() {
                    if !r.allowed_tables.contains(t) {
                        return Err(problem(
                            format!("rest.auth.roles.{name}.tables"),
                            format!("{t} is not in rest.allowed-tables"),
                        ));
                    }
                }
            }
            RestAuth::Jwt { key, config: j.clone() }
        }
    };
    Ok(RestSettings {
        addr: r.addr.clone().unwrap_or_else(|| ":8080".into()),
        db,
        allowed_tables: r.allowed_tables.clone(),
        allow_unfiltered_writes: r.allow_unfiltered_writes.unwrap_or(false),
        read_connections: r.read_connections,
        request_timeout: r.request_timeout.map(|g| g.0),
        max_body_bytes: r.max_body_bytes,
        max_rows: r.max_rows,
        read_only,
        auth,
        tls: r.tls.as_ref().map(resolve_tls).transpose()?,
    })
}

fn resolve_tls(t: &TlsConfig) -> Result<RestTls, Problem> {
    let file = |value: &Option<String>, key: &str| match value.as_deref().map(str::trim) {
        Some(p) if !p.is_empty() => Ok(expand_home(p)),
        _ => Err(problem(format!("rest.tls.{key}"), "required: the path of a PEM file")),
    };
    Ok(RestTls { cert_file: file(&t.cert_file, "cert-file")?, key_file: file(&t.key_file, "key-file")? })
}
