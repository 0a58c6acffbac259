//! Token verification and role resolution.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use axum::http::{HeaderMap, header};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Validation, decode, decode_header, get_current_timestamp};
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

/// Tokens remembered after a successful verification. Clients send the same token on every request, and
/// checking its signature and decoding its claims is most of the cost of authenticating one.
const VERIFIED_CAPACITY: usize = 4096;

/// A verified token's outcome and the times that bound it, which are checked again on every use.
struct Verified {
    context: AuthContext,
    exp: Option<u64>,
    nbf: Option<u64>,
}

/// Everything needed to turn an `Authorization` header into an [`AuthContext`], built once.
pub(crate) struct Verifier {
    keys: KeySet,
    template: Validation,
    role_claim: String,
    roles: BTreeMap<String, RolePolicy>,
    default_role: Option<String>,
    /// Keyed by the whole token text, signature included, and filled only after the signature checked out:
    /// a token that differs in any byte from a verified one (a forgery) is never found here. The keys are
    /// fixed for the verifier's lifetime, so a signature once valid stays valid; `exp` and `nbf` are not,
    /// and are enforced on each hit exactly as `jsonwebtoken` enforces them.
    verified: Mutex<HashMap<Box<str>, Verified>>,
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
            verified: Mutex::new(HashMap::new()),
        })
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<AuthContext, AuthFailure> {
        let token = bearer_token(headers)?;
        self.authenticate_token(token, get_current_timestamp())
    }

    /// `now` (seconds since the epoch) is what a remembered token's `exp`/`nbf` are checked against; a new
    /// token is verified by `jsonwebtoken` against its own clock.
    fn authenticate_token(&self, token: &str, now: u64) -> Result<AuthContext, AuthFailure> {
        {
            let mut verified = crate::sync::lock(&self.verified);
            if let Some(entry) = verified.get(token) {
                let checked = self.check_times(entry, now);
                if checked.is_err() {
                    verified.remove(token);
                }
                return checked;
            }
        }
        let claims = self.verify(token)?;
        let context = self.context(&claims)?;
        // Only integer times are remembered: they compare the same way here as in `jsonwebtoken`.
        let time = |name: &str| match claims.get(name) {
            None | Some(Value::Null) => Some(None),
            Some(value) => value.as_u64().map(Some),
        };
        if let (Some(exp), Some(nbf)) = (time("exp"), time("nbf")) {
            let mut verified = crate::sync::lock(&self.verified);
            if verified.len() >= VERIFIED_CAPACITY {
                // Crude but bounded: only holders of valid tokens can fill it, and refilling costs one
                // verification per token.
                verified.clear();
            }
            verified.insert(token.into(), Verified { context: context.clone(), exp, nbf });
        }
        Ok(context)
    }

    /// The time checks of `jsonwebtoken`'s validation, with the same leeway and the same comparisons.
    fn check_times(&self, entry: &Verified, now: u64) -> Result<AuthContext, AuthFailure> {
        let leeway = self.template.leeway;
        if self.template.validate_exp && entry.exp.is_some_and(|exp| exp < now.saturating_sub(leeway)) {
            return Err(AuthFailure::Expired);
        }
        if self.template.validate_nbf && entry.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
            return Err(AuthFailure::NotYetValid);
        }
        Ok(entry.context.clone())
    }

    #[cfg(test)]
    fn remembered(&self) -> usize {
        crate::sync::lock(&self.verified).len()
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
        if self.roles.is_empty() {
            // sqlite-rest's model: a valid token is the whole permission; the role claim only labels it.
            let role = claim.and_then(Value::as_str).map(str::to_owned);
            return Ok(AuthContext { role, read_only: false, tables: None });
        }
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
    use std::collections::BTreeMap;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).expect("valid header"));
        headers
    }

    const SECRET: &[u8] = b"a-test-secret-that-is-32-bytes-long!";

    fn verifier() -> Verifier {
        let mut options = JwtOptions::new(super::super::KeySource::Secret(SECRET.to_vec()));
        options.roles = BTreeMap::from([("reader".to_owned(), RolePolicy { read_only: true, tables: None })]);
        Verifier::new(&options).expect("valid options")
    }

    fn token(claims: &Value) -> String {
        let key = jsonwebtoken::EncodingKey::from_secret(SECRET);
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).expect("sign")
    }

    #[test]
    fn remembered_token_still_expires() {
        let verifier = verifier();
        let now = get_current_timestamp();
        let token = token(&serde_json::json!({"role": "reader", "exp": now + 100}));
        assert!(verifier.authenticate_token(&token, now).is_ok());
        assert_eq!(verifier.remembered(), 1, "a verified token is remembered");
        assert!(verifier.authenticate_token(&token, now + 100 + 30).is_ok(), "within the leeway");
        assert_eq!(verifier.authenticate_token(&token, now + 100 + 31), Err(AuthFailure::Expired));
        assert_eq!(verifier.remembered(), 0, "an expired token is forgotten");
    }

    #[test]
    fn remembered_token_checks_nbf() {
        let verifier = verifier();
        let now = get_current_timestamp();
        let token = token(&serde_json::json!({"role": "reader", "exp": now + 100, "nbf": now}));
        assert!(verifier.authenticate_token(&token, now).is_ok());
        assert_eq!(verifier.remembered(), 1);
        // A clock stepped back: the remembered token is not valid yet at that time.
        assert_eq!(verifier.authenticate_token(&token, now - 31), Err(AuthFailure::NotYetValid));
    }

    #[test]
    fn forged_tokens_never_match_a_remembered_one() {
        let verifier = verifier();
        let now = get_current_timestamp();
        let good = token(&serde_json::json!({"role": "reader", "exp": now + 100}));
        assert!(verifier.authenticate_token(&good, now).is_ok());
        let (signed, signature) = good.rsplit_once('.').expect("three parts");
        let mut flipped = signature.to_owned().into_bytes();
        flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
        let forged = format!("{signed}.{}", String::from_utf8(flipped).expect("ascii"));
        assert_eq!(verifier.authenticate_token(&forged, now), Err(AuthFailure::BadSignature));
        // Same signature, other claims.
        let other = token(&serde_json::json!({"role": "writer", "exp": now + 100}));
        let (other_signed, _) = other.rsplit_once('.').expect("three parts");
        let spliced = format!("{other_signed}.{signature}");
        assert_eq!(verifier.authenticate_token(&spliced, now), Err(AuthFailure::BadSignature));
        assert_eq!(verifier.remembered(), 1, "failed tokens are not remembered");
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let verifier = verifier();
        let now = get_current_timestamp();
        for i in 0..VERIFIED_CAPACITY + 10 {
            let token = token(&serde_json::json!({"role": "reader", "exp": now + 100, "jti": i}));
            assert!(verifier.authenticate_token(&token, now).is_ok());
            assert!(verifier.remembered() <= VERIFIED_CAPACITY);
        }
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
