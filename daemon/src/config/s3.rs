//! S3 replica entries as Litestream reads them: provider hosts inside `s3://` URLs, endpoints written without a
//! scheme, credentials from the entry, the top of the file, the environment or a file, and values that cannot be
//! an address at all (a `<placeholder>` left in), which are refused here, naming the key, rather than reaching the
//! HTTP client.

use litecar_replicate::backend::S3Settings;

use super::replica::{Inherited, env, secret_file};
use super::resolve::{Problem, problem};
use super::types::ReplicaConfig;

/// What an `s3://HOST/path` URL's host says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct S3Host {
    pub bucket: String,
    pub region: Option<String>,
    pub endpoint: Option<String>,
    pub force_path_style: bool,
}

/// Litestream's reading of the host: `bucket.localhost[:port]` (http, us-east-1),
/// `bucket.s3.REGION.backblazeb2.com`, `bucket.s3.filebase.com`, `bucket.REGION.digitaloceanspaces.com`,
/// `bucket.REGION.linodeobjects.com` (https, path-style); anything else is the bucket name on AWS, port dropped.
pub fn parse_host(host: &str) -> S3Host {
    let (name, port) = split_port(host);
    let with_bucket = |prefix: &str| prefix.strip_suffix('.').unwrap_or(prefix).to_owned();
    let provider = |bucket: String, region: Option<String>, scheme: &str, endpoint: String| {
        let endpoint = match port {
            Some(p) => format!("{scheme}://{endpoint}:{p}"),
            None => format!("{scheme}://{endpoint}"),
        };
        S3Host { bucket, region, endpoint: Some(endpoint), force_path_style: true }
    };
    if let Some(prefix) = name.strip_suffix("localhost").filter(|p| p.is_empty() || p.ends_with('.')) {
        return provider(with_bucket(prefix), Some("us-east-1".into()), "http", "localhost".into());
    }
    if let Some(rest) = name.strip_suffix(".backblazeb2.com")
        && let Some((prefix, region)) = split_region(rest, "s3.")
    {
        return provider(with_bucket(prefix), Some(region.into()), "https", format!("s3.{region}.backblazeb2.com"));
    }
    if let Some(prefix) = name.strip_suffix("s3.filebase.com").filter(|p| p.is_empty() || p.ends_with('.')) {
        return provider(with_bucket(prefix), None, "https", "s3.filebase.com".into());
    }
    for (suffix, endpoint) in
        [(".digitaloceanspaces.com", "digitaloceanspaces.com"), (".linodeobjects.com", "linodeobjects.com")]
    {
        if let Some(rest) = name.strip_suffix(suffix)
            && let Some((prefix, region)) = split_region(rest, "")
        {
            return provider(with_bucket(prefix), Some(region.into()), "https", format!("{region}.{endpoint}"));
        }
    }
    S3Host { bucket: name.to_owned(), ..Default::default() }
}

/// `host:port` -> (`host`, `port`) when the part after the last colon is a port number.
fn split_port(host: &str) -> (&str, Option<&str>) {
    match host.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()) => (h, Some(p)),
        _ => (host, None),
    }
}

/// `[bucket.]MARKERregion` -> (`bucket.` or ``, `region`), where the region is one label.
fn split_region<'a>(rest: &'a str, marker: &str) -> Option<(&'a str, &'a str)> {
    let (prefix, last) = match rest.rsplit_once('.') {
        Some((p, l)) => (p, l),
        None => ("", rest),
    };
    if marker.is_empty() {
        let prefix = if prefix.is_empty() { "" } else { &rest[..prefix.len() + 1] };
        return (!last.is_empty()).then_some((prefix, last));
    }
    // The marker is a label of its own (`s3.`) before the region.
    let before = rest.strip_suffix(last)?.strip_suffix(marker)?;
    (!last.is_empty()).then_some((before, last))
}

/// An endpoint as the S3 client needs it: `https://` added when no scheme is given (as Litestream's AWS SDK does);
/// anything that does not parse as an http(s) URL with a host is refused with the reason.
pub fn endpoint(raw: &str) -> Result<String, String> {
    let e = raw.trim();
    if e.contains(['<', '>', '{', '}']) || e.contains(char::is_whitespace) {
        return Err(format!("{raw:?} is not an address (a placeholder left in the file?)"));
    }
    let with_scheme = if e.contains("://") { e.to_owned() } else { format!("https://{e}") };
    let url = url::Url::parse(&with_scheme).map_err(|err| format!("{raw:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{raw:?}: the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} has no host"));
    }
    Ok(with_scheme.trim_end_matches('/').to_owned())
}

/// A bucket name the store could be asked about; what cannot be part of a URL's host or path is refused.
pub fn bucket(raw: &str) -> Result<(), String> {
    if raw.is_empty() {
        return Err("the bucket name is empty".into());
    }
    if let Some(c) = raw.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
        return Err(format!("{raw:?} is not a bucket name ({c:?} is not allowed; a placeholder left in the file?)"));
    }
    Ok(())
}

/// The S3 settings of replica entry `key`, its URL split into host and path when it has one.
pub fn settings(
    r: &ReplicaConfig,
    url: Option<&(String, String)>,
    inherited: &Inherited,
    key: &str,
) -> Result<S3Settings, Problem> {
    let k = |field: &str| format!("{key}.{field}");
    let from_url = match url {
        Some((host, _)) if host.is_empty() => return Err(problem(k("url"), "the s3 URL has no bucket")),
        Some((host, _)) => parse_host(host),
        None => S3Host::default(),
    };
    // Fields set in the entry win over what the URL says, as in Litestream.
    let bucket = r.bucket.clone().filter(|b| !b.is_empty()).unwrap_or(from_url.bucket);
    let bucket_key = if r.bucket.is_some() || url.is_none() { k("bucket") } else { k("url") };
    if bucket.is_empty() {
        return Err(problem(bucket_key, "type s3 needs a bucket"));
    }
    self::bucket(&bucket).map_err(|m| problem(bucket_key, m))?;
    let endpoint = match r.endpoint.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(e) => Some(self::endpoint(e).map_err(|m| problem(k("endpoint"), m))?),
        None => from_url.endpoint,
    };
    let region = r
        .region
        .clone()
        .filter(|r| !r.is_empty())
        .or(from_url.region)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"));
    let access_key_id = r
        .access_key_id
        .clone()
        .or_else(|| inherited.access_key_id.clone())
        .or_else(|| env("LITESTREAM_ACCESS_KEY_ID"))
        .or(secret_file(&r.access_key_id_file, &k("access-key-id-file"))?)
        .filter(|v| !v.is_empty());
    let secret_access_key = r
        .secret_access_key
        .clone()
        .or_else(|| inherited.secret_access_key.clone())
        .or_else(|| env("LITESTREAM_SECRET_ACCESS_KEY"))
        .or(secret_file(&r.secret_access_key_file, &k("secret-access-key-file"))?)
        .filter(|v| !v.is_empty());
    if access_key_id.is_some() != secret_access_key.is_some() {
        let missing = if access_key_id.is_some() { "secret-access-key" } else { "access-key-id" };
        return Err(problem(k(missing), "set both access-key-id and secret-access-key, or neither"));
    }
    let path = r.path.clone().or_else(|| url.map(|(_, p)| p.clone())).unwrap_or_default();
    Ok(S3Settings {
        bucket,
        path,
        region,
        force_path_style: r.force_path_style.or(from_url.force_path_style.then_some(true)),
        endpoint,
        skip_verify: r.skip_verify.unwrap_or(false),
        access_key_id,
        secret_access_key,
        session_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(bucket: &str, region: Option<&str>, endpoint: &str) -> S3Host {
        S3Host {
            bucket: bucket.into(),
            region: region.map(Into::into),
            endpoint: Some(endpoint.into()),
            force_path_style: true,
        }
    }

    #[test]
    fn provider_hosts() {
        assert_eq!(parse_host("mybucket"), S3Host { bucket: "mybucket".into(), ..Default::default() });
        assert_eq!(parse_host("mybucket:9000"), S3Host { bucket: "mybucket".into(), ..Default::default() });
        assert_eq!(parse_host("bkt.localhost:9000"), host("bkt", Some("us-east-1"), "http://localhost:9000"));
        assert_eq!(parse_host("localhost"), host("", Some("us-east-1"), "http://localhost"));
        assert_eq!(
            parse_host("bkt.s3.us-west-002.backblazeb2.com"),
            host("bkt", Some("us-west-002"), "https://s3.us-west-002.backblazeb2.com")
        );
        assert_eq!(parse_host("bkt.s3.filebase.com"), host("bkt", None, "https://s3.filebase.com"));
        assert_eq!(
            parse_host("bkt.nyc3.digitaloceanspaces.com"),
            host("bkt", Some("nyc3"), "https://nyc3.digitaloceanspaces.com")
        );
        assert_eq!(
            parse_host("my.dotted.bkt.us-east-1.linodeobjects.com"),
            host("my.dotted.bkt", Some("us-east-1"), "https://us-east-1.linodeobjects.com")
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("s3.us-west-002.backblazeb2.com"), Ok("https://s3.us-west-002.backblazeb2.com".into()));
        assert_eq!(endpoint("http://127.0.0.1:9000/"), Ok("http://127.0.0.1:9000".into()));
        assert_eq!(endpoint("minio:9000"), Ok("https://minio:9000".into()));
        assert!(endpoint("<LITESTREAM_ENDPOINT>").expect_err("placeholder").contains("placeholder"));
        assert!(endpoint("ftp://x").is_err());
        assert!(endpoint("https://").is_err());
        assert!(bucket("<LITESTREAM_BUCKET>").is_err());
        assert!(bucket("my-bucket.v2").is_ok());
    }
}
