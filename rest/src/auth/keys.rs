//! Verification keys, each pinned to the algorithms it is allowed to verify.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::KeySource;
use crate::error::RestError;

pub(crate) struct VerifyKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    pub algorithms: Vec<Algorithm>,
}

pub(crate) struct KeySet {
    pub keys: Vec<VerifyKey>,
    /// Whether keys came from a JWKS, where a token's `kid` must name one of them.
    pub by_kid: bool,
}

impl KeySet {
    pub fn from_source(source: &KeySource) -> Result<Self, RestError> {
        match source {
            KeySource::Secret(secret) => {
                if secret.is_empty() {
                    return Err(RestError::Config("the JWT secret is empty".into()));
                }
                if secret.len() < 32 {
                    // RFC 7518 §3.2: an HS256 key must be at least as long as the hash. Only the length is logged.
                    tracing::warn!(bytes = secret.len(), "the JWT secret is shorter than 32 bytes");
                }
                let key = VerifyKey {
                    kid: None,
                    key: DecodingKey::from_secret(secret),
                    algorithms: AlgorithmFamily::Hmac.algorithms().to_vec(),
                };
                Ok(KeySet { keys: vec![key], by_kid: false })
            }
            KeySource::PublicKeyPem(pem) => Ok(KeySet { keys: vec![pem_key(pem.as_bytes())?], by_kid: false }),
            KeySource::Jwks(document) => {
                // serde's message can quote a value of the document, which may be an HMAC key: only the position
                // is reported.
                let set: JwkSet = serde_json::from_str(document).map_err(|e| {
                    RestError::Config(format!(
                        "the JWKS document is not a valid key set (line {}, column {})",
                        e.line(),
                        e.column()
                    ))
                })?;
                let mut keys = Vec::new();
                for (index, jwk) in set.keys.iter().enumerate() {
                    if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                        continue;
                    }
                    keys.push(jwk_key(jwk).map_err(|reason| {
                        let kid = jwk.common.key_id.as_deref().unwrap_or("<no kid>");
                        RestError::Config(format!("JWKS key #{index} (kid {kid}): {reason}"))
                    })?);
                }
                if keys.is_empty() {
                    return Err(RestError::Config("the JWKS document has no signature keys".into()));
                }
                Ok(KeySet { keys, by_kid: true })
            }
        }
    }
}

/// RSA, EC or Ed25519 public key in PEM; the key type decides the algorithms.
fn pem_key(pem: &[u8]) -> Result<VerifyKey, RestError> {
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(VerifyKey { kid: None, key, algorithms: AlgorithmFamily::Rsa.algorithms().to_vec() });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        let algorithm = ec_algorithm_by_point(&key)?;
        return Ok(VerifyKey { kid: None, key, algorithms: vec![algorithm] });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(VerifyKey { kid: None, key, algorithms: vec![Algorithm::EdDSA] });
    }
    Err(RestError::Config("the JWT public key is not an RSA, EC or Ed25519 public key in PEM".into()))
}

/// An uncompressed EC point is 0x04 || x || y, so its length tells the curve.
fn ec_algorithm_by_point(key: &DecodingKey) -> Result<Algorithm, RestError> {
    match key.try_get_as_bytes().map(<[u8]>::len) {
        Ok(65) => Ok(Algorithm::ES256),
        Ok(97) => Ok(Algorithm::ES384),
        _ => Err(RestError::Config("the JWT EC public key is not on P-256 or P-384".into())),
    }
}

fn jwk_key(jwk: &Jwk) -> Result<VerifyKey, String> {
    let family_algorithms: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => AlgorithmFamily::Rsa.algorithms().to_vec(),
        AlgorithmParameters::OctetKey(_) => AlgorithmFamily::Hmac.algorithms().to_vec(),
        AlgorithmParameters::OctetKeyPair(params) => match params.curve {
            EllipticCurve::Ed25519 => vec![Algorithm::EdDSA],
            _ => return Err("only Ed25519 is supported for OKP keys".into()),
        },
        AlgorithmParameters::EllipticCurve(params) => match params.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return Err("only P-256 and P-384 are supported for EC keys".into()),
        },
        _ => return Err("unsupported key type".into()),
    };
    let algorithms = match jwk.common.key_algorithm {
        None => family_algorithms,
        Some(declared) => {
            let algorithm: Algorithm =
                declared.to_string().parse().map_err(|_| format!("algorithm {declared} cannot sign JWTs"))?;
            if !family_algorithms.contains(&algorithm) {
                return Err(format!("algorithm {declared} does not fit the key type"));
            }
            vec![algorithm]
        }
    };
    // The cause is not shown: for an `oct` key, a decoding error would quote part of the secret.
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "unusable key material".to_owned())?;
    Ok(VerifyKey { kid: jwk.common.key_id.clone(), key, algorithms })
}
