//! Request headers that shape a table request: `Prefer`, `Range`, `Accept` and `Content-Type`.

use axum::http::{HeaderMap, header};

use crate::error::{RestError, echo};

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

/// The `Prefer` preferences this API honours; others are ignored, as RFC 7240 allows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefer {
    pub returning: Return,
    pub count: bool,
    pub resolution: Option<Resolution>,
    /// Echoed in `Preference-Applied`.
    pub applied: Vec<&'static str>,
}

impl Prefer {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let mut prefer = Prefer::default();
        let tokens =
            headers.get_all("prefer").iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim);
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
                _ => continue,
            };
            if !prefer.applied.contains(&applied) {
                prefer.applied.push(applied);
            }
        }
        prefer
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

/// Whether the client asked for a single JSON object rather than an array; 406 when it accepts neither.
pub fn wants_singular(headers: &HeaderMap) -> Result<bool, RestError> {
    let Some(accept) = headers.get(header::ACCEPT) else { return Ok(false) };
    let accept = accept.to_str().map_err(|_| RestError::NotAcceptable { accept: "<not text>".into() })?;
    let mut json = false;
    for range in accept.split(',') {
        let media = range.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            SINGULAR => return Ok(true),
            "application/json" | "application/*" | "*/*" | "" => json = true,
            _ => {}
        }
    }
    if json { Ok(false) } else { Err(RestError::NotAcceptable { accept: echo(accept) }) }
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
            ("prefer", "resolution=ignore-duplicates, tx=commit"),
        ]));
        assert_eq!(p.returning, Return::Representation);
        assert!(p.count);
        assert_eq!(p.resolution, Some(Resolution::Ignore));
        assert_eq!(p.applied, vec!["return=representation", "count=exact", "resolution=ignore-duplicates"]);
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
        assert!(!wants_singular(&headers(&[("accept", "text/html, */*;q=0.1")])).expect("valid headers"));
        assert!(wants_singular(&headers(&[("accept", "application/vnd.pgrst.object+json")])).expect("valid headers"));
        assert!(wants_singular(&headers(&[("accept", "text/csv")])).is_err());
        assert!(check_content_type(&headers(&[("content-type", "text/plain")])).is_err());
        assert!(check_content_type(&headers(&[("content-type", "application/json; charset=utf-8")])).is_ok());
    }
}
