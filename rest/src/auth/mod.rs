//! Authentication settings, the per-request `AuthContext`, and the start-up check on unauthenticated listeners.

mod keys;
mod layer;
mod verify;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub use layer::{AuthLayer, AuthService, auth_layer};
pub(crate) use verify::Verifier;

use crate::error::RestError;

/// How requests are authenticated.
#[derive(Clone, Debug)]
pub enum AuthConfig {
    /// No authentication: every request has full access. Only allowed on a loopback listener
    /// (see [`check_auth_allowed`]).
    None,
    /// A bearer JWT is required on every request.
    Jwt(JwtOptions),
}

/// Where the keys that verify token signatures come from. Each key pins the algorithms it accepts, so a token
/// cannot pick a weaker or different algorithm than the key was made for (and `alg: none` is never accepted).
#[derive(Clone)]
pub enum KeySource {
    /// HMAC shared secret (raw bytes): HS256, HS384 and HS512.
    Secret(Vec<u8>),
    /// A PEM public key: RSA (RS256/384/512, PS256/384/512), EC P-256 (ES256), EC P-384 (ES384) or Ed25519
    /// (EdDSA).
    PublicKeyPem(String),
    /// A JWKS document (`{"keys": [...]}`). A token whose header names a `kid` is verified with that key only,
    /// which allows key rotation; a key's `alg`, when present, narrows it to that algorithm.
    Jwks(String),
}

impl fmt::Debug for KeySource {
    // Secrets must never reach a log line, even through `{:?}` of a whole configuration.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Secret(_) => f.write_str("Secret(<redacted>)"),
            KeySource::PublicKeyPem(_) => f.write_str("PublicKeyPem(..)"),
            KeySource::Jwks(_) => f.write_str("Jwks(..)"),
        }
    }
}

/// JWT validation settings.
#[derive(Clone, Debug)]
pub struct JwtOptions {
    pub keys: KeySource,
    /// When set, the token's `aud` must be present and contain it.
    pub audience: Option<String>,
    /// When set, the token's `iss` must be present and equal it.
    pub issuer: Option<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Top-level claim that names the role, or a JSON pointer into the claims when it starts with `/`
    /// (e.g. `/app/role`).
    pub role_claim: String,
    /// Role name -> what it may do. A token naming a role not listed here is refused (403). Empty: every
    /// valid token may read and write every allowed table, whatever its role claim (sqlite-rest's model).
    pub roles: BTreeMap<String, RolePolicy>,
    /// Role used when the token has no role claim; `None` refuses such tokens (403).
    pub default_role: Option<String>,
    /// Tokens without `exp` are refused unless this is false.
    pub require_exp: bool,
}

impl JwtOptions {
    /// Defaults: no audience or issuer check, 30 s leeway, role from the `role` claim, no roles (so every valid
    /// token has read-write access to the allowed tables), `exp` required.
    pub fn new(keys: KeySource) -> Self {
        JwtOptions {
            keys,
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(30),
            role_claim: "role".to_owned(),
            roles: BTreeMap::new(),
            default_role: None,
            require_exp: true,
        }
    }
}

/// What a role may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolePolicy {
    /// Writes (POST, PATCH, PUT, DELETE) answer 403.
    pub read_only: bool,
    /// When set, only these tables (a subset of the allowed ones); others answer 403.
    pub tables: Option<Vec<String>>,
}

/// Who is making the request, inserted as a request extension by the auth layer. A request without it has full
/// access (that is how `AuthConfig::None` works).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthContext {
    pub role: Option<String>,
    pub read_only: bool,
    pub tables: Option<Vec<String>>,
}

impl AuthContext {
    pub fn full_access() -> Self {
        AuthContext { role: None, read_only: false, tables: None }
    }

    /// Whether the role's table list (if any) includes `table`.
    pub fn may_access(&self, table: &str) -> bool {
        self.tables.as_ref().is_none_or(|tables| tables.iter().any(|t| t == table))
    }

    pub(crate) fn role_name(&self) -> &str {
        self.role.as_deref().unwrap_or("<none>")
    }
}

/// Start-up check of the listener and the auth settings. `AuthConfig::None` is only allowed on a loopback
/// address (127.0.0.0/8 or ::1), where only processes in the pod can connect; with JWT the keys must parse and
/// the default role must be one of the configured roles.
pub fn check_auth_allowed(addr: &SocketAddr, auth: &AuthConfig) -> Result<(), RestError> {
    match auth {
        AuthConfig::None => {
            if addr.ip().to_canonical().is_loopback() {
                Ok(())
            } else {
                Err(RestError::Config(format!(
                    "the table API listens on {addr} without authentication; that is only allowed on a loopback \
                     address (127.0.0.1 or ::1): configure JWT auth or bind to loopback"
                )))
            }
        }
        AuthConfig::Jwt(options) => Verifier::new(options).map(|_| ()),
    }
}
