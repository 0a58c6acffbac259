//! Token verification and role resolution.

use std::collections::BTreeMap;

use axum::http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header};
use serde_json::Value;

use super::keys::KeySet;
use super::{AuthContext, JwtOptions, RolePolicy};
use crate::error::RestError;

/// Why a request was not authenticated; `label` is the `reason` of `sqlite_rest_auth_failures_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthFailure {
    MissingToken,
    Malformed,
    BadAlgorithm,
    UnknownKey,
    BadSignature,
    Expired,
    NotYetValid,
    BadAudience,
    BadIssuer,
    BadClaims,
    MissingRole,
    UnknownRole,
    Misconfigured,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::Malformed => "malformed",
            AuthFailure::BadAlgorithm => "bad_algorithm",
            AuthFailure::UnknownKey => "unknown_key",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::BadAudience => "bad_audience",
            AuthFailure::BadIssuer => "bad_issuer",
            AuthFailure::BadClaims => "bad_claims",
            AuthFailure::MissingRole => "missing_role",
            AuthFailure::UnknownRole => "unknown_role",
            AuthFailure::Misconfigured => "misconfigured",
        }
    }

    fn message(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "no bearer token in the Authorization header",
            AuthFailure::Malformed => "the JWT is malformed",
            AuthFailure::BadAlgorithm => "the JWT algorithm is not accepted for the verification key",
            AuthFailure::UnknownKey => "the JWT names an unknown key id (kid)",
            AuthFailure::BadSignature => "the JWT signature is invalid",
            AuthFailure::Expired => "the JWT has expired",
            AuthFailure::NotYetValid => "the JWT is not valid yet (nbf)",
            AuthFailure::BadAudience => "the JWT audience (aud) is not accepted",
            AuthFailure::BadIssuer => "the JWT issuer (iss) is not accepted",
            AuthFailure::BadClaims => "the JWT claims are invalid",
            AuthFailure::MissingRole => "the JWT names no role and there is no default role",
            AuthFailure::UnknownRole => "the JWT role is not configured",
            AuthFailure::Misconfigured => "authentication is misconfigured on the server",
        }
    }

    /// Role problems are about permission, not identity: the token itself was good.
    pub fn into_error(self) -> RestError {
        match self {
            AuthFailure::MissingRole | AuthFailure::UnknownRole => {
                RestError::Forbidden { message: self.message().to_owned() }
            }
            AuthFailure::Misconfigured => RestError::Internal(self.message().to_owned()),
            _ => RestError::Unauthorized { reason: self.label(), message: self.message().to_owned() },
        }
    }
}

/// Everything needed to turn an `Authorization` header into an [`AuthContext`], built once.
pub(crate) struct Verifier {
    keys: KeySet,
    template: Validation,
    role_claim: String,
    roles: BTreeMap<String, RolePolicy>,
    default_role: Option<String>,
}

impl Verifier {
    pub fn new(options: &JwtOptions) -> Result<Self, RestError> {
        let keys = KeySet::from_source(&options.keys)?;
        if let Some(role) = &options.default_role
            && !options.roles.contains_key(role)
        {
            return Err(RestError::Config(format!("the default role `{role}` is not one of the configured roles")));
        }
        if options.role_claim.is_empty() {
            return Err(RestError::Config("the role claim name is empty".into()));
        }
        let mut template = Validation { leeway: options.leeway.as_secs(), validate_nbf: true, ..Validation::default() };
        let mut required = Vec::new();
        if options.require_exp {
            required.push("exp");
        }
        match &options.audience {
            Some(audience) => {
                template.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience a token's `aud` is for some other check, not for us to refuse.
            None => template.validate_aud = false,
        }
        if let Some(issuer) = &options.issuer {
            template.set_issuer(&[issuer]);
            required.push("iss");
        }
        template.set_required_spec_claims(&required);
        Ok(Verifier {
            keys,
            template,
            role_claim: options.role_claim.clone(),
            roles: options.roles.clone(),
            default_role: options.default_role.clone(),
        })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<AuthContext, AuthFailure> {
        let token = bearer_token(headers)?;
        let claims = self.verify(token)?;
        self.context(&claims)
    }

    fn verify(&self, token: &str) -> Result<Value, AuthFailure> {
        // The header is read unverified only to choose the key; `alg: none` and unknown algorithms fail here.
        let header = decode_header(token).map_err(|_| AuthFailure::Malformed)?;
        let candidates: Vec<_> = match (&header.kid, self.keys.by_kid) {
            (Some(kid), true) => self.keys.keys.iter().filter(|k| k.kid.as_deref() == Some(kid)).collect(),
            _ => self.keys.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(AuthFailure::UnknownKey);
        }
        let mut failure = AuthFailure::BadAlgorithm;
        for candidate in candidates.into_iter().filter(|k| k.algorithms.contains(&header.alg)) {
            let mut validation = self.template.clone();
            validation.algorithms = vec![header.alg];
            match decode::<Value>(token, &candidate.key, &validation) {
                Ok(data) => return Ok(data.claims),
                Err(error) => {
                    failure = classify(error.kind());
                    // Only a signature mismatch justifies trying the next key of a keyless-token JWKS.
                    if failure != AuthFailure::BadSignature {
                        return Err(failure);
                    }
                }
            }
        }
        Err(failure)
    }

    fn context(&self, claims: &Value) -> Result<AuthContext, AuthFailure> {
        let claim = if self.role_claim.starts_with('/') {
            claims.pointer(&self.role_claim)
        } else {
            claims.get(&self.role_claim)
        };
        let role = match claim {
            None | Some(Value::Null) => self.default_role.clone().ok_or(AuthFailure::MissingRole)?,
            Some(Value::String(role)) => role.clone(),
            Some(_) => return Err(AuthFailure::BadClaims),
        };
        let policy = self.roles.get(&role).ok_or(AuthFailure::UnknownRole)?;
        Ok(AuthContext { role: Some(role), read_only: policy.read_only, tables: policy.tables.clone() })
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthFailure> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthFailure::MissingToken)?;
    if values.next().is_some() {
        return Err(AuthFailure::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthFailure::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::Malformed);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthFailure::MissingToken);
    }
    Ok(token)
}

fn classify(kind: &ErrorKind) -> AuthFailure {
    match kind {
        ErrorKind::InvalidSignature => AuthFailure::BadSignature,
        ErrorKind::ExpiredSignature => AuthFailure::Expired,
        ErrorKind::ImmatureSignature => AuthFailure::NotYetValid,
        ErrorKind::InvalidAudience => AuthFailure::BadAudience,
        ErrorKind::InvalidIssuer => AuthFailure::BadIssuer,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            AuthFailure::BadAlgorithm
        }
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "aud" => AuthFailure::BadAudience,
            "iss" => AuthFailure::BadIssuer,
            _ => AuthFailure::BadClaims,
        },
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => AuthFailure::BadClaims,
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidEddsaKey | ErrorKind::InvalidRsaKey(_) => {
            AuthFailure::Misconfigured
        }
        _ => AuthFailure::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("valid header"));
        headers
    }

    #[test]
    fn bearer_token_requires_the_bearer_scheme() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(&headers("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer_token(&headers("Basic abc")), Err(AuthFailure::Malformed));
        assert_eq!(bearer_token(&headers("Bearer ")), Err(AuthFailure::Malformed));
        assert_eq!(bearer_token(&HeaderMap::new()), Err(AuthFailure::MissingToken));
    }
}
