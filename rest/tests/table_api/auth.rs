//! JWT authentication and role-based access: HS256, RS256 from PEM, ES256, JWKS with key ids, and every way a
//! token can be wrong.

use crate::common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::http::{Method, StatusCode};
use common::{Fixture, ITEMS, Reply, send};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use litecar_rest::{AuthConfig, JwtOptions, KeySource, RestMetrics, RolePolicy, check_auth_allowed};
use serde_json::{Value, json};

const SECRET: &[u8] = b"super-secret-hmac-key-for-tests-only";
const RSA1_PRIVATE: &str = include_str!("fixtures/rsa1_private.pem");
const RSA1_PUBLIC: &str = include_str!("fixtures/rsa1_public.pem");
const RSA2_PRIVATE: &str = include_str!("fixtures/rsa2_private.pem");
const EC_PRIVATE: &str = include_str!("fixtures/ec_private.pem");
const EC_PUBLIC: &str = include_str!("fixtures/ec_public.pem");
const JWKS: &str = include_str!("fixtures/jwks.json");

fn now() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    i64::try_from(secs).expect("seconds fit i64")
}

fn roles() -> BTreeMap<String, RolePolicy> {
    BTreeMap::from([
        ("reader".to_owned(), RolePolicy { read_only: true, tables: None }),
        ("writer".to_owned(), RolePolicy { read_only: false, tables: None }),
        ("limited".to_owned(), RolePolicy { read_only: false, tables: Some(vec!["items".to_owned()]) }),
    ])
}

fn jwt_options(keys: KeySource) -> JwtOptions {
    let mut options = JwtOptions::new(keys);
    options.roles = roles();
    options
}

struct Setup {
    fx: Fixture,
    app: Router,
    registry: prometheus::Registry,
}

fn setup(options: JwtOptions) -> Setup {
    let fx =
        Fixture::new(&format!("{ITEMS} CREATE TABLE other (id INTEGER PRIMARY KEY); INSERT INTO other VALUES (1);"));
    let registry = prometheus::Registry::new();
    let metrics = RestMetrics::new(&registry).expect("metrics");
    let app = common::app_with_auth(fx.options(&["items", "other"]), AuthConfig::Jwt(options), metrics);
    Setup { fx, app, registry }
}

fn claims(role: &str) -> Value {
    json!({"role": role, "exp": now() + 600, "sub": "test"})
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(algorithm);
    header.kid = kid.map(str::to_owned);
    encode(&header, claims, key).expect("sign token")
}

fn hs256(claims: &Value) -> String {
    sign(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims, None)
}

async fn with_token(app: &Router, method: Method, uri: &str, token: &str, body: Option<&str>) -> Reply {
    let bearer = format!("Bearer {token}");
    send(app, method, uri, &[("Authorization", bearer.as_str())], body).await
}

async fn read_items(app: &Router, token: &str) -> Reply {
    with_token(app, Method::GET, "/items?select=id&id=eq.1", token, None).await
}

/// Sum of the samples of counter `name` whose labels include `labels`, read from the text exposition.
fn counter(registry: &prometheus::Registry, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|(k, v)| line.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|line| line.rsplit(' ').next().and_then(|value| value.parse::<f64>().ok()))
        .sum()
}

/// base64url without padding, as JWT segments are written.
fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn assert_unauthorized(reply: &Reply, why: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{why}: {}", reply.text());
    assert_eq!(reply.code(), "PGRST301", "{why}");
    assert!(reply.header("www-authenticate").is_some_and(|v| v.starts_with("Bearer")), "{why}");
    assert!(!reply.text().contains(std::str::from_utf8(SECRET).expect("ascii")), "{why}: secret leaked");
}

#[tokio::test]
async fn hs256_token_grants_its_role() {
    let s = setup(jwt_options(KeySource::Secret(SECRET.to_vec())));
    let reply = read_items(&s.app, &hs256(&claims("writer"))).await;
    assert_eq!((reply.status, reply.json()), (StatusCode::OK, json!([{"id": 1}])));
    let hs512 = sign(Algorithm::HS512, &EncodingKey::from_secret(SECRET), &claims("writer"), None);
    assert_eq!(read_items(&s.app, &hs512).await.status, StatusCode::OK, "any HS* fits a secret");
    let reply = with_token(&s.app, Method::POST, "/items", &hs256(&claims("writer")), Some(r#"{"name": "w"}"#)).await;
    assert_eq!(reply.status, StatusCode::CREATED);
}

#[tokio::test]
async fn bad_tokens_are_401() {
    let mut options = jwt_options(KeySource::Secret(SECRET.to_vec()));
    options.audience = Some("litecar".into());
    options.issuer = Some("https://issuer.example".into());
    let s = setup(options);
    let good = |extra: Value| {
        let mut c = json!({"role": "writer", "exp": now() + 600, "aud": "litecar", "iss": "https://issuer.example"});
        if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                c.insert(k.clone(), v.clone());
            }
        }
        c
    };
    assert_eq!(read_items(&s.app, &hs256(&good(json!({})))).await.status, StatusCode::OK);
    assert_eq!(read_items(&s.app, &hs256(&good(json!({"aud": ["other", "litecar"]})))).await.status, StatusCode::OK);

    let missing = send(&s.app, Method::GET, "/items", &[], None).await;
    assert_unauthorized(&missing, "missing");
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    let wrong_scheme = send(&s.app, Method::GET, "/items", &[("Authorization", "Basic dXNlcjpwYXNz")], None).await;
    assert_unauthorized(&wrong_scheme, "basic auth");

    let other_secret = sign(Algorithm::HS256, &EncodingKey::from_secret(b"another-secret"), &good(json!({})), None);
    // `alg: none` on the claims of a token that would otherwise be accepted, with and without its signature.
    let valid = hs256(&good(json!({})));
    let segments: Vec<&str> = valid.split('.').collect();
    assert_eq!(segments[0], b64url(br#"{"typ":"JWT","alg":"HS256"}"#), "the test's encoder matches real tokens");
    let none_header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{}.", segments[1]);
    let alg_none_signed = format!("{none_header}.{}.{}", segments[1], segments[2]);
    let rs256 = sign(
        Algorithm::RS256,
        &EncodingKey::from_rsa_pem(RSA1_PRIVATE.as_bytes()).expect("key"),
        &good(json!({})),
        None,
    );
    let mut tampered = hs256(&good(json!({})));
    tampered.insert_str(tampered.rfind('.').expect("signature") + 1, "AAAA");
    let cases = [
        ("expired", hs256(&good(json!({"exp": now() - 3600})))),
        ("not yet valid", hs256(&good(json!({"nbf": now() + 3600})))),
        ("wrong signature", other_secret),
        ("tampered signature", tampered),
        ("alg none", alg_none),
        ("alg none with a signature", alg_none_signed),
        ("RS256 against a secret", rs256),
        ("wrong audience", hs256(&good(json!({"aud": "someone-else"})))),
        ("missing audience", hs256(&json!({"role": "writer", "exp": now() + 600, "iss": "https://issuer.example"}))),
        ("wrong issuer", hs256(&good(json!({"iss": "https://evil.example"})))),
        ("no exp", hs256(&json!({"role": "writer", "aud": "litecar", "iss": "https://issuer.example"}))),
        ("garbage", "not.a.jwt".to_owned()),
        ("empty segments", "..".to_owned()),
    ];
    for (why, token) in &cases {
        assert_unauthorized(&read_items(&s.app, token).await, why);
        let write = with_token(&s.app, Method::DELETE, "/items?id=eq.1", token, None).await;
        assert_unauthorized(&write, why);
    }
    assert_eq!(s.fx.conn().query_row("SELECT count(*) FROM items", [], |r| r.get::<_, i64>(0)).ok(), Some(5));
    assert_eq!(counter(&s.registry, "sqlite_rest_auth_failures_total", &[("reason", "expired")]), 2.0);
    assert_eq!(counter(&s.registry, "sqlite_rest_auth_failures_total", &[("reason", "missing_token")]), 1.0);
    assert_eq!(counter(&s.registry, "sqlite_rest_auth_failures_total", &[("reason", "bad_audience")]), 4.0);
}

#[tokio::test]
async fn leeway_tolerates_small_clock_skew() {
    let mut options = jwt_options(KeySource::Secret(SECRET.to_vec()));
    options.leeway = Duration::from_secs(30);
    let s = setup(options);
    let just_expired = hs256(&json!({"role": "reader", "exp": now() - 10}));
    assert_eq!(read_items(&s.app, &just_expired).await.status, StatusCode::OK);
    let almost_valid = hs256(&json!({"role": "reader", "exp": now() + 600, "nbf": now() + 10}));
    assert_eq!(read_items(&s.app, &almost_valid).await.status, StatusCode::OK);
    let long_expired = hs256(&json!({"role": "reader", "exp": now() - 120}));
    assert_eq!(read_items(&s.app, &long_expired).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn read_only_role_cannot_write() {
    let s = setup(jwt_options(KeySource::Secret(SECRET.to_vec())));
    let token = hs256(&claims("reader"));
    assert_eq!(read_items(&s.app, &token).await.status, StatusCode::OK);
    let head = with_token(&s.app, Method::HEAD, "/items", &token, None).await;
    assert_eq!(head.status, StatusCode::OK);
    let before = s.fx.dump();
    for (method, uri, body) in [
        (Method::POST, "/items", Some(r#"{"name": "x"}"#)),
        (Method::PATCH, "/items?id=eq.1", Some(r#"{"name": "x"}"#)),
        (Method::PUT, "/items?id=eq.1", Some(r#"{"id": 1, "name": "x"}"#)),
        (Method::DELETE, "/items?id=eq.1", None),
    ] {
        let reply = with_token(&s.app, method.clone(), uri, &token, body).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{method}");
        assert_eq!(reply.code(), "42501");
        assert!(reply.json()["message"].as_str().expect("message").contains("read-only"));
    }
    assert_eq!(s.fx.dump(), before);
    let doc = with_token(&s.app, Method::GET, "/openapi.json", &token, None).await.json();
    assert!(doc["paths"]["/items"]["get"].is_object());
    assert!(doc["paths"]["/items"].get("post").is_none(), "read-only roles are shown no writes");
}

#[tokio::test]
async fn per_role_table_list_is_enforced_and_counted() {
    let s = setup(jwt_options(KeySource::Secret(SECRET.to_vec())));
    let token = hs256(&claims("limited"));
    assert_eq!(read_items(&s.app, &token).await.status, StatusCode::OK);
    let reply = with_token(&s.app, Method::GET, "/other", &token, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(reply.json()["message"].as_str().expect("message").starts_with("access denied"));
    assert!(!reply.text().contains("\"id\""), "no rows in the refusal");
    let reply = with_token(&s.app, Method::DELETE, "/other?id=eq.1", &token, None).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(counter(&s.registry, "sqlite_rest_access_denied_total", &[("table", "other")]), 2.0);
    assert_eq!(s.fx.conn().query_row("SELECT count(*) FROM other", [], |r| r.get::<_, i64>(0)).ok(), Some(1));
    // A table outside the allowed list stays 404, whatever the role.
    assert_eq!(with_token(&s.app, Method::GET, "/secret", &token, None).await.status, StatusCode::NOT_FOUND);
    let doc = with_token(&s.app, Method::GET, "/openapi.json", &token, None).await.json();
    assert!(doc["paths"].get("/other").is_none());
    assert_eq!(
        counter(&s.registry, "sqlite_rest_requests_total", &[("method", "GET"), ("table", "other"), ("status", "403")]),
        1.0
    );
}

#[tokio::test]
async fn roles_must_be_configured() {
    let s = setup(jwt_options(KeySource::Secret(SECRET.to_vec())));
    for (why, token) in [
        ("unknown role", hs256(&claims("admin"))),
        ("no role claim", hs256(&json!({"exp": now() + 600}))),
        ("role not a string", hs256(&json!({"exp": now() + 600, "role": ["writer"]}))),
    ] {
        let status = read_items(&s.app, &token).await.status;
        assert!(status == StatusCode::FORBIDDEN || status == StatusCode::UNAUTHORIZED, "{why}: {status}");
    }
    assert_eq!(read_items(&s.app, &hs256(&claims("admin"))).await.status, StatusCode::FORBIDDEN);

    let mut options = jwt_options(KeySource::Secret(SECRET.to_vec()));
    options.default_role = Some("reader".into());
    options.role_claim = "/app/role".into();
    let s = setup(options);
    let no_role = hs256(&json!({"exp": now() + 600}));
    assert_eq!(read_items(&s.app, &no_role).await.status, StatusCode::OK, "default role");
    let post = with_token(&s.app, Method::POST, "/items", &no_role, Some(r#"{"name": "x"}"#)).await;
    assert_eq!(post.status, StatusCode::FORBIDDEN, "the default role is read-only");
    let nested = hs256(&json!({"exp": now() + 600, "app": {"role": "writer"}}));
    let post = with_token(&s.app, Method::POST, "/items", &nested, Some(r#"{"name": "x"}"#)).await;
    assert_eq!(post.status, StatusCode::CREATED, "role read through a JSON pointer");
}

#[tokio::test]
async fn without_roles_every_valid_token_reads_and_writes() {
    // sqlite-rest (and the SQLite Operator's `sqliteRest{authSecret, allowedTables}`): the secret and the
    // allowed tables are the whole policy.
    let s = setup(JwtOptions::new(KeySource::Secret(SECRET.to_vec())));
    for (why, token) in [
        ("no role claim", hs256(&json!({"exp": now() + 600}))),
        ("any role", hs256(&claims("whoever"))),
        ("role not a string", hs256(&json!({"exp": now() + 600, "role": ["x"]}))),
    ] {
        assert_eq!(read_items(&s.app, &token).await.status, StatusCode::OK, "{why}");
        let post = with_token(&s.app, Method::POST, "/items", &token, Some(r#"{"name": "w"}"#)).await;
        assert_eq!(post.status, StatusCode::CREATED, "{why}: {}", post.text());
        let other = with_token(&s.app, Method::GET, "/other", &token, None).await;
        assert_eq!(other.status, StatusCode::OK, "{why}: every allowed table");
    }
    let secret = with_token(&s.app, Method::GET, "/secret", &hs256(&claims("x")), None).await;
    assert_eq!(secret.status, StatusCode::NOT_FOUND, "tables outside the allowed list stay hidden");
    let forged = sign(Algorithm::HS256, &EncodingKey::from_secret(b"another secret"), &claims("x"), None);
    assert_unauthorized(&read_items(&s.app, &forged).await, "a token signed with another secret");
    let expired = hs256(&json!({"exp": now() - 3600}));
    assert_unauthorized(&read_items(&s.app, &expired).await, "an expired token");
}

#[tokio::test]
async fn rs256_public_key_pem() {
    let s = setup(jwt_options(KeySource::PublicKeyPem(RSA1_PUBLIC.to_owned())));
    let rsa1 = EncodingKey::from_rsa_pem(RSA1_PRIVATE.as_bytes()).expect("rsa1");
    let rsa2 = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).expect("rsa2");
    assert_eq!(
        read_items(&s.app, &sign(Algorithm::RS256, &rsa1, &claims("reader"), None)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        read_items(&s.app, &sign(Algorithm::PS256, &rsa1, &claims("reader"), None)).await.status,
        StatusCode::OK
    );
    assert_unauthorized(
        &read_items(&s.app, &sign(Algorithm::RS256, &rsa2, &claims("reader"), None)).await,
        "other key",
    );
    // Algorithm confusion: the public key used as an HMAC secret must not verify.
    let confused = sign(Algorithm::HS256, &EncodingKey::from_secret(RSA1_PUBLIC.as_bytes()), &claims("writer"), None);
    assert_unauthorized(&read_items(&s.app, &confused).await, "HS256 with the public key as secret");
}

#[tokio::test]
async fn es256_public_key_pem() {
    let s = setup(jwt_options(KeySource::PublicKeyPem(EC_PUBLIC.to_owned())));
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("ec key");
    assert_eq!(read_items(&s.app, &sign(Algorithm::ES256, &ec, &claims("reader"), None)).await.status, StatusCode::OK);
    let rsa1 = EncodingKey::from_rsa_pem(RSA1_PRIVATE.as_bytes()).expect("rsa1");
    assert_unauthorized(
        &read_items(&s.app, &sign(Algorithm::RS256, &rsa1, &claims("reader"), None)).await,
        "RSA vs EC",
    );
}

#[tokio::test]
async fn jwks_selects_the_key_by_kid() {
    let s = setup(jwt_options(KeySource::Jwks(JWKS.to_owned())));
    let rsa1 = EncodingKey::from_rsa_pem(RSA1_PRIVATE.as_bytes()).expect("rsa1");
    let rsa2 = EncodingKey::from_rsa_pem(RSA2_PRIVATE.as_bytes()).expect("rsa2");
    let token = |key: &EncodingKey, kid: Option<&str>| sign(Algorithm::RS256, key, &claims("reader"), kid);
    assert_eq!(read_items(&s.app, &token(&rsa1, Some("k1"))).await.status, StatusCode::OK);
    assert_eq!(read_items(&s.app, &token(&rsa2, Some("k2"))).await.status, StatusCode::OK, "the rotated key");
    assert_unauthorized(&read_items(&s.app, &token(&rsa1, Some("k2"))).await, "kid of another key");
    assert_unauthorized(&read_items(&s.app, &token(&rsa2, Some("k3"))).await, "unknown kid");
    assert_eq!(read_items(&s.app, &token(&rsa2, None)).await.status, StatusCode::OK, "no kid: any key may verify");
    // The JWKS pins RS256, so the same key with PS256 is refused.
    let ps256 = sign(Algorithm::PS256, &rsa1, &claims("reader"), Some("k1"));
    assert_unauthorized(&read_items(&s.app, &ps256).await, "algorithm not the key's");
    assert_eq!(counter(&s.registry, "sqlite_rest_auth_failures_total", &[("reason", "unknown_key")]), 1.0);
}

#[test]
fn unauthenticated_listeners_only_on_loopback() {
    let addr = |s: &str| s.parse::<SocketAddr>().expect("address");
    for ok in ["127.0.0.1:3000", "[::1]:3000", "127.0.0.2:80", "[::ffff:127.0.0.1]:80"] {
        assert!(check_auth_allowed(&addr(ok), &AuthConfig::None).is_ok(), "{ok}");
    }
    for refused in ["0.0.0.0:3000", "[::]:3000", "10.1.2.3:3000", "192.168.0.1:8080"] {
        let error = check_auth_allowed(&addr(refused), &AuthConfig::None).expect_err(refused);
        assert!(error.to_string().contains("loopback"), "{error}");
        assert!(error.to_string().contains(refused.split(':').next().unwrap_or_default().trim_matches('[')));
    }
    let jwt = AuthConfig::Jwt(jwt_options(KeySource::Secret(SECRET.to_vec())));
    assert!(check_auth_allowed(&addr("0.0.0.0:3000"), &jwt).is_ok());
}

#[test]
fn unusable_keys_are_reported_at_start_up_without_secrets() {
    let addr: SocketAddr = "0.0.0.0:3000".parse().expect("address");
    let mut bad_default = jwt_options(KeySource::Secret(SECRET.to_vec()));
    bad_default.default_role = Some("ghost".into());
    for config in [
        jwt_options(KeySource::PublicKeyPem("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----".into())),
        jwt_options(KeySource::Jwks("{\"keys\": []}".into())),
        jwt_options(KeySource::Jwks("not json".into())),
        jwt_options(KeySource::Secret(Vec::new())),
        bad_default,
    ] {
        let config = AuthConfig::Jwt(config);
        let error = check_auth_allowed(&addr, &config).expect_err("must be refused");
        let shown = format!("{error} {error:?} {config:?}");
        assert!(!shown.contains(std::str::from_utf8(SECRET).expect("ascii")), "{shown}");
    }
}

#[tokio::test]
async fn broken_auth_config_fails_closed() {
    let fx = Fixture::new(ITEMS);
    let config = AuthConfig::Jwt(jwt_options(KeySource::PublicKeyPem("garbage".into())));
    let app = common::app_with_auth(fx.options(&["items"]), config, RestMetrics::unregistered());
    let reply = send(&app, Method::GET, "/items", &[], None).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!reply.text().contains("apple"));
}

#[tokio::test]
async fn no_auth_means_full_access() {
    let fx = Fixture::new(ITEMS);
    let app = common::app_with_auth(fx.options(&["items"]), AuthConfig::None, RestMetrics::unregistered());
    assert_eq!(send(&app, Method::GET, "/items", &[], None).await.status, StatusCode::OK);
    assert_eq!(send(&app, Method::POST, "/items", &[], Some(r#"{"name": "n"}"#)).await.status, StatusCode::CREATED);
}
