//! Which store a replica lives in, and how to connect to it. Settings here are explicit values; the daemon's config
//! layer resolves them from the config file, environment variables and mounted secret files. Anything left unset is
//! taken from the environment the way each cloud's own tools do (instance roles, workload identity, ...).

use std::sync::Arc;
use std::time::Duration;

use object_store::{BackoffConfig, ClientOptions, RetryConfig};

use crate::client::Replica;
use crate::error::ReplicaError;
use crate::file::FileClient;
use crate::object::ObjectStoreClient;
use crate::sftp::{SftpClient, SftpSettings};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    pub bucket: String,
    pub path: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: Option<bool>,
    pub skip_verify: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct AbsSettings {
    pub account: Option<String>,
    pub container: String,
    pub path: String,
    pub account_key: Option<String>,
    pub sas_token: Option<String>,
    /// Blob service endpoint, e.g. `http://127.0.0.1:10000/devstoreaccount1` for Azurite.
    pub endpoint: Option<String>,
}

#[derive(Clone, Default, PartialEq, Eq)]
pub struct GcsSettings {
    pub bucket: String,
    pub path: String,
    /// Service-account JSON file (`GOOGLE_APPLICATION_CREDENTIALS`); workload identity when unset.
    pub service_account_path: Option<String>,
}

#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    File { path: std::path::PathBuf },
    S3(S3Settings),
    Abs(AbsSettings),
    Gcs(GcsSettings),
    Sftp(SftpSettings),
}

// Hand-written so that credentials never reach a log line through `{:?}`.
impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url())
    }
}

impl Backend {
    /// The replica's URL, without credentials.
    pub fn url(&self) -> String {
        match self {
            Backend::File { path } => format!("file://{}", path.display()),
            Backend::S3(s) => format!("s3://{}/{}", s.bucket, s.path.trim_start_matches('/')),
            Backend::Abs(a) => match &a.account {
                Some(acct) => format!("abs://{acct}@{}/{}", a.container, a.path.trim_start_matches('/')),
                None => format!("abs://{}/{}", a.container, a.path.trim_start_matches('/')),
            },
            Backend::Gcs(g) => format!("gcs://{}/{}", g.bucket, g.path.trim_start_matches('/')),
            Backend::Sftp(s) => s.url(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Backend::File { .. } => "file",
            Backend::S3(_) => "s3",
            Backend::Abs(_) => "abs",
            Backend::Gcs(_) => "gcs",
            Backend::Sftp(_) => "sftp",
        }
    }
}

fn client_options(skip_verify: bool, endpoint: Option<&str>) -> ClientOptions {
    ClientOptions::new()
        .with_allow_http(endpoint.is_some_and(|e| e.starts_with("http://")))
        .with_allow_invalid_certificates(skip_verify)
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(60))
}

/// The one retry layer of object-store requests: transient failures (5xx, timeouts, resets, a download cut short)
/// back off exponentially with jitter, each request (or upload part) on its own. `Replica` does not retry these
/// clients again; an upload still failing after this is retried by the uploader, from the spool.
fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 4,
        retry_timeout: Duration::from_secs(60),
    }
}

/// Connect to the store; nothing is sent over the network until the first request.
pub fn connect(name: &str, backend: &Backend) -> Result<Replica, ReplicaError> {
    let url = backend.url();
    let bad = |e: object_store::Error| ReplicaError::Backend {
        replica: url.clone(),
        op: "configure",
        key: String::new(),
        message: e.to_string(),
        permanent: true,
    };
    let (store, root): (Arc<dyn object_store::ObjectStore>, &str) = match backend {
        Backend::File { path } => return Ok(Replica::new(name, Arc::new(FileClient::new(path.clone())))),
        Backend::Sftp(s) => return Ok(Replica::new(name, Arc::new(SftpClient::new(s.clone())))),
        Backend::S3(s) => {
            let mut b = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(&s.bucket)
                .with_region(s.region.clone().unwrap_or_else(|| "us-east-1".into()))
                .with_client_options(client_options(s.skip_verify, s.endpoint.clone().or_else(env_endpoint).as_deref()))
                .with_retry(retry_config());
            if let Some(e) = &s.endpoint {
                b = b.with_endpoint(e);
            }
            // Custom endpoints (MinIO, Ceph, R2...) mostly want path-style URLs; AWS itself virtual-hosted ones.
            let path_style = s.force_path_style.unwrap_or(s.endpoint.is_some());
            b = b.with_virtual_hosted_style_request(!path_style);
            if let (Some(id), Some(secret)) = (&s.access_key_id, &s.secret_access_key) {
                b = b.with_access_key_id(id).with_secret_access_key(secret);
                if let Some(t) = &s.session_token {
                    b = b.with_token(t);
                }
            }
            (Arc::new(b.build().map_err(bad)?), &s.path)
        }
        Backend::Abs(a) => {
            let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                .with_container_name(&a.container)
                .with_client_options(client_options(false, a.endpoint.as_deref()))
                .with_retry(retry_config());
            if let Some(acct) = &a.account {
                b = b.with_account(acct);
            }
            if let Some(k) = &a.account_key {
                b = b.with_access_key(k);
            }
            if let Some(sas) = &a.sas_token {
                b = b.with_config(object_store::azure::AzureConfigKey::SasKey, sas.trim_start_matches('?'));
            }
            if let Some(e) = &a.endpoint {
                b = b.with_endpoint(e.clone()).with_allow_http(e.starts_with("http://"));
            }
            (Arc::new(b.build().map_err(bad)?), &a.path)
        }
        Backend::Gcs(g) => {
            let mut b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&g.bucket)
                .with_client_options(client_options(false, None).with_allow_http(true))
                .with_retry(retry_config());
            if let Some(p) = &g.service_account_path {
                b = b.with_service_account_path(p);
            }
            (Arc::new(b.build().map_err(bad)?), &g.path)
        }
    };
    Ok(Replica::new(name, Arc::new(ObjectStoreClient::new(store, backend.kind(), url, root))).retried_by_client())
}

/// The S3 endpoint the AWS tools read from the environment (object_store's builder reads it too).
fn env_endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
}

/// Where the region of a bucket is asked when neither a region nor an endpoint is configured: the endpoint the AWS
/// tools read from the environment, else AWS itself.
pub fn region_lookup_base() -> String {
    env_endpoint().unwrap_or_else(|| "https://s3.amazonaws.com".to_owned())
}

/// The region a bucket lives in, as S3 reports it in the `x-amz-bucket-region` header of a HEAD on the bucket
/// (sent with any status, even 301 or 403, so no credentials are needed).
pub async fn bucket_region(base: &str, bucket: &str, skip_verify: bool) -> Result<String, ReplicaError> {
    let url = format!("{}/{bucket}", base.trim_end_matches('/'));
    let fail_as = |message: String, permanent: bool| ReplicaError::Backend {
        replica: format!("s3://{bucket}"),
        op: "look up the region of",
        key: url.clone(),
        message,
        permanent,
    };
    let fail = |message: String| fail_as(message, false);
    let client = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .tls_danger_accept_invalid_certs(skip_verify)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| fail(e.to_string()))?;
    let response = client.head(&url).send().await.map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    match response.headers().get("x-amz-bucket-region").and_then(|v| v.to_str().ok()) {
        Some(region) if !region.is_empty() => Ok(region.to_owned()),
        _ if status == reqwest::StatusCode::NOT_FOUND => Err(fail_as("no such bucket (HTTP 404)".into(), true)),
        _ => Err(fail(format!("HTTP {status} without an x-amz-bucket-region header; set `region`"))),
    }
}
