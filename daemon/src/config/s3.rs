//! S3 addresses as Litestream reads them: provider hosts inside `s3://` URLs, endpoints written without a scheme,
//! and values that cannot be an address at all (a `<placeholder>` left in), which are refused here, naming the key,
//! rather than reaching the HTTP client.

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
