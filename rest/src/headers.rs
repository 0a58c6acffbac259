//! Request headers that shape a table request: `Prefer`, `Range`, `Accept` and `Content-Type`.

use axum::http::{HeaderMap, header};

use crate::error::{RestError, echo};
use crate::render::Format;

pub const SINGULAR: &str = "application/vnd.pgrst.object+json";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Return {
    #[default]
    Minimal,
    Representation,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    Merge,
    Ignore,
}

/// The `Prefer` preferences this API honours. Others are ignored, as RFC 7240 allows, unless the client asked
/// for `handling=strict` (then they answer 400, as PostgREST does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefer {
    pub returning: Return,
    pub count: bool,
    pub resolution: Option<Resolution>,
    /// `missing=default`: body keys absent from a row take the column's DEFAULT rather than NULL.
    pub missing_default: bool,
    /// `tx=rollback`: do everything, answer as if committed, then roll back (a dry run).
    pub rollback: bool,
    /// `max-affected=N` (with `handling=strict`): a write touching more rows fails and is rolled back.
    pub max_affected: Option<u64>,
    /// Echoed in `Preference-Applied`.
    pub applied: Vec<String>,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Result<Self, RestError> {
        let mut prefer = Prefer::default();
        let mut strict = false;
        let mut invalid = Vec::new();
        let mut max_affected = None;
        let tokens = headers
            .get_all("prefer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        for token in tokens {
            let applied = match token {
                "return=representation" => {
                    prefer.returning = Return::Representation;
                    "return=representation"
                }
                "return=minimal" | "return=headers-only" => {
                    prefer.returning = Return::Minimal;
                    "return=minimal"
                }
                // Planned and estimated counts have no cheaper SQLite equivalent, so they are exact too.
                "count=exact" | "count=planned" | "count=estimated" => {
                    prefer.count = true;
                    "count=exact"
                }
                "resolution=merge-duplicates" => {
                    prefer.resolution = Some(Resolution::Merge);
                    "resolution=merge-duplicates"
                }
                "resolution=ignore-duplicates" => {
                    prefer.resolution = Some(Resolution::Ignore);
                    "resolution=ignore-duplicates"
                }
                "missing=default" => {
                    prefer.missing_default = true;
                    "missing=default"
                }
                "missing=null" => {
                    prefer.missing_default = false;
                    continue;
                }
                "tx=rollback" => {
                    prefer.rollback = true;
                    "tx=rollback"
                }
                "tx=commit" => {
                    prefer.rollback = false;
                    "tx=commit"
                }
                "handling=strict" => {
                    strict = true;
                    "handling=strict"
                }
                "handling=lenient" => "handling=lenient",
                other => {
                    match other.strip_prefix("max-affected=").map(str::parse::<u64>) {
                        Some(Ok(n)) => max_affected = Some(n),
                        _ => invalid.push(echo(other)),
                    }
                    continue;
                }
            };
            if !prefer.applied.iter().any(|a| a == applied) {
                prefer.applied.push(applied.to_owned());
            }
        }
        if strict {
            if !invalid.is_empty() {
                return Err(RestError::InvalidPreferences { preferences: invalid.join(", ") });
            }
            // PostgREST honours max-affected only under strict handling.
            if let Some(n) = max_affected {
                prefer.max_affected = Some(n);
                prefer.applied.push(format!("max-affected={n}"));
            }
        }
        Ok(prefer)
    }
}

/// `Range: first-last` or `first-` (items), optionally written `items=first-last`. A malformed range is
/// ignored, as RFC 9110 §14.2 asks.
pub fn range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    if let Some(unit) = headers.get("range-unit").and_then(|v| v.to_str().ok())
        && !unit.trim().eq_ignore_ascii_case("items")
    {
        return None;
    }
    let value = headers.get(header::RANGE)?.to_str().ok()?.trim();
    let value = value.strip_prefix("items=").unwrap_or(value);
    let (first, last) = value.split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last = match last.trim() {
        "" => None,
        last => Some(last.parse::<u64>().ok()?),
    };
    match last {
        Some(last) if last < first => None,
        _ => Some((first, last)),
    }
}

/// What a response body is to be, from `Accept`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Media {
    /// One JSON object rather than an array (`application/vnd.pgrst.object+json`).
    pub singular: bool,
    pub format: Format,
}

impl Media {
    pub fn content_type(self) -> &'static str {
        match (self.singular, self.format) {
            (_, Format::Csv) => "text/csv; charset=utf-8",
            (true, Format::JsonStripNulls) => "application/vnd.pgrst.object+json; nulls=stripped; charset=utf-8",
            (true, _) => "application/vnd.pgrst.object+json; charset=utf-8",
            (false, Format::JsonStripNulls) => "application/vnd.pgrst.array+json; nulls=stripped; charset=utf-8",
            (false, _) => "application/json; charset=utf-8",
        }
    }
}

/// The first media range of `Accept` this API can produce (ranges with `q=0` are refused ones); 406 when none.
pub fn negotiate(headers: &HeaderMap) -> Result<Media, RestError> {
    let Some(accept) = headers.get(header::ACCEPT) else { return Ok(Media::default()) };
    let accept = accept.to_str().map_err(|_| RestError::NotAcceptable { accept: "<not text>".into() })?;
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let mut strip = false;
        let mut refused = false;
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            match (name.trim().to_ascii_lowercase().as_str(), value.trim()) {
                ("nulls", "stripped") => strip = true,
                ("q", q) => refused = q.parse::<f32>().is_ok_and(|q| q <= 0.0),
                _ => {}
            }
        }
        if refused {
            continue;
        }
        let json = if strip { Format::JsonStripNulls } else { Format::Json };
        let found = match media.as_str() {
            SINGULAR => Media { singular: true, format: json },
            "application/vnd.pgrst.array+json" => Media { singular: false, format: json },
            "application/json" | "application/*" | "*/*" | "" => Media::default(),
            "text/csv" | "text/*" => Media { singular: false, format: Format::Csv },
            _ => continue,
        };
        return Ok(found);
    }
    Err(RestError::NotAcceptable { accept: echo(accept) })
}

/// Bodies are JSON; a request that says otherwise gets 415.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), RestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else { return Ok(()) };
    let text = value.to_str().unwrap_or("");
    let media = text.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if media == "application/json" || (media.starts_with("application/") && media.ends_with("+json")) {
        Ok(())
    } else {
        Err(RestError::UnsupportedMediaType { content_type: echo(text) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn parses_prefer() {
        let p = Prefer::from_headers(&headers(&[
            ("prefer", "return=representation, count=exact"),
            ("prefer", "resolution=ignore-duplicates, tx=commit, missing=default, unknown=1"),
        ]))
        .expect("lenient");
        assert_eq!(p.returning, Return::Representation);
        assert!(p.count && p.missing_default && !p.rollback);
        assert_eq!(p.resolution, Some(Resolution::Ignore));
        assert_eq!(
            p.applied,
            vec![
                "return=representation",
                "count=exact",
                "resolution=ignore-duplicates",
                "tx=commit",
                "missing=default"
            ]
        );
        let p = Prefer::from_headers(&headers(&[("prefer", "tx=rollback, max-affected=3")])).expect("lenient");
        assert!(p.rollback);
        assert_eq!(p.max_affected, None, "max-affected needs handling=strict");
        assert_eq!(p.applied, vec!["tx=rollback"]);
        let p = Prefer::from_headers(&headers(&[("prefer", "handling=strict, max-affected=3")])).expect("strict");
        assert_eq!(p.max_affected, Some(3));
        assert_eq!(p.applied, vec!["handling=strict", "max-affected=3"]);
        let error = Prefer::from_headers(&headers(&[("prefer", "handling=strict, count=none, tx=maybe")]))
            .expect_err("strict refuses unknown preferences");
        assert_eq!(error.code(), "PGRST122");
        assert!(error.to_string().contains("count=none, tx=maybe"), "{error}");
    }

    #[test]
    fn parses_range() {
        assert_eq!(range(&headers(&[("range", "0-24")])), Some((0, Some(24))));
        assert_eq!(range(&headers(&[("range", "items=10-")])), Some((10, None)));
        assert_eq!(range(&headers(&[("range", "5-2")])), None);
        assert_eq!(range(&headers(&[("range", "0-1"), ("range-unit", "bytes")])), None);
    }

    #[test]
    fn negotiates_accept() {
        let media = |accept: &'static str| negotiate(&headers(&[("accept", accept)]));
        assert_eq!(media("text/html, */*;q=0.1").expect("acceptable"), Media::default());
        assert!(media("application/vnd.pgrst.object+json").expect("acceptable").singular);
        assert_eq!(media("text/csv").expect("acceptable").format, Format::Csv);
        assert_eq!(
            media("application/vnd.pgrst.array+json;nulls=stripped").expect("acceptable"),
            Media { singular: false, format: Format::JsonStripNulls }
        );
        assert_eq!(
            media("application/vnd.pgrst.object+json; nulls=stripped").expect("acceptable"),
            Media { singular: true, format: Format::JsonStripNulls }
        );
        assert!(media("text/csv;q=0, image/png").is_err());
        assert!(media("application/xml").is_err());
        assert!(check_content_type(&headers(&[("content-type", "text/plain")])).is_err());
        assert!(check_content_type(&headers(&[("content-type", "application/json; charset=utf-8")])).is_ok());
    }
}
