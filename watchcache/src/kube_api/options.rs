//! List and watch query parameters, checked as the API server checks them: a bad value is a 400 naming the
//! parameter; a forbidden combination (`resourceVersionMatch`, `sendInitialEvents`) is a 422 Invalid Status
//! listing every field at fault.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::table::IncludeObject;
use crate::http::status;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    Exact,
    NotOlderThan,
}

#[derive(Debug, Default)]
pub(crate) struct Options {
    pub watch: bool,
    /// `resourceVersion`; an empty value counts as absent, as it does for the API server.
    pub rv: Option<String>,
    pub rv_match: Option<Match>,
    pub send_initial_events: Option<bool>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    pub include: IncludeObject,
}

/// strconv.ParseBool, as the API server decodes booleans (the Python client sends `True`).
fn parse_bool(key: &str, v: &str) -> Result<bool, Rejection> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(bad_request(format!("{key}: invalid boolean value {v:?}"))),
    }
}

/// Why parameters were refused: a bad value (400) or forbidden combinations (422).
#[derive(Debug)]
pub(crate) enum Rejection {
    BadRequest(String),
    Invalid(Vec<FieldError>),
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        match self {
            Self::BadRequest(m) => status(StatusCode::BAD_REQUEST, "BadRequest", m),
            Self::Invalid(errs) => invalid(&errs),
        }
    }
}

fn bad_request(message: String) -> Rejection {
    Rejection::BadRequest(message)
}

/// One rejected field: (field, reason as the API server words its type, detail).
type FieldError = (&'static str, &'static str, String);

/// 422 Invalid naming every field error, as `errors.NewInvalid` words it for ListOptions.
fn invalid(errs: &[FieldError]) -> Response {
    let texts: Vec<String> = errs.iter().map(|(f, kind, d)| format!("{f}: {kind}: {d}")).collect();
    let joined = if texts.len() == 1 { texts[0].clone() } else { format!("[{}]", texts.join(", ")) };
    let causes: Vec<_> = errs
        .iter()
        .map(|(f, kind, d)| {
            let reason = if *kind == "Forbidden" { "FieldValueForbidden" } else { "FieldValueNotSupported" };
            json!({"reason": reason, "message": format!("{kind}: {d}"), "field": f})
        })
        .collect();
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("ListOptions.meta.k8s.io \"\" is invalid: {joined}"), "reason": "Invalid",
        "details": {"group": "meta.k8s.io", "kind": "ListOptions", "causes": causes}, "code": 422});
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(body)).into_response()
}

impl Options {
    pub(crate) fn parse(pairs: &[(String, String)]) -> Result<Self, Rejection> {
        let mut o = Self::default();
        let mut raw_match = None;
        for (k, v) in pairs {
            match k.as_str() {
                "watch" => o.watch = parse_bool(k, v)?,
                "allowWatchBookmarks" => o.bookmarks = parse_bool(k, v)?,
                "sendInitialEvents" => o.send_initial_events = Some(parse_bool(k, v)?),
                "resourceVersion" => o.rv = Some(v.clone()).filter(|v| !v.is_empty()),
                "resourceVersionMatch" => raw_match = Some(v.clone()).filter(|v| !v.is_empty()),
                "timeoutSeconds" => {
                    let s =
                        v.parse::<u64>().map_err(|_| bad_request(format!("timeoutSeconds: invalid value {v:?}")))?;
                    o.timeout = Some(Duration::from_secs(s)).filter(|d| !d.is_zero());
                }
                "limit" => {
                    let n = v.parse::<i64>().map_err(|_| bad_request(format!("limit: invalid value {v:?}")))?;
                    o.limit = usize::try_from(n).ok().filter(|n| *n > 0);
                }
                "continue" => o.continue_token = Some(v.clone()).filter(|v| !v.is_empty()),
                "labelSelector" => o.label_selector = Some(v.clone()),
                "fieldSelector" => o.field_selector = Some(v.clone()),
                "includeObject" => o.include = IncludeObject::parse(Some(v)).map_err(bad_request)?,
                // accepted and without effect on a read-only cache
                _ => {}
            }
        }
        if let Some(m) = &raw_match {
            o.rv_match = match m.as_str() {
                "Exact" => Some(Match::Exact),
                "NotOlderThan" => Some(Match::NotOlderThan),
                _ => None,
            };
        }
        let errs = if o.watch { o.watch_errors(raw_match.as_deref()) } else { o.list_errors(raw_match.as_deref()) };
        if !errs.is_empty() {
            return Err(Rejection::Invalid(errs));
        }
        // the legacy combination: a continue token already pins the revision
        if !o.watch && o.continue_token.is_some() && o.rv_match.is_none() && o.rv.as_deref().is_some_and(|v| v != "0") {
            return Err(bad_request("specifying resource version is not allowed when using continue".into()));
        }
        Ok(o)
    }

    fn list_errors(&self, raw_match: Option<&str>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(m) = raw_match {
            if self.rv.is_none() {
                errs.push((
                    "resourceVersionMatch",
                    "Forbidden",
                    "resourceVersionMatch is forbidden unless resourceVersion is provided".into(),
                ));
            }
            if self.continue_token.is_some() {
                errs.push((
                    "resourceVersionMatch",
                    "Forbidden",
                    "resourceVersionMatch is forbidden when continue is provided".into(),
                ));
            }
            if self.rv_match.is_none() {
                errs.push((
                    "resourceVersionMatch",
                    "Unsupported value",
                    format!("\"{m}\": supported values: \"Exact\", \"NotOlderThan\", \"\""),
                ));
            }
            if self.rv_match == Some(Match::Exact) && self.rv.as_deref() == Some("0") {
                errs.push((
                    "resourceVersionMatch",
                    "Forbidden",
                    "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"".into(),
                ));
            }
        }
        if self.send_initial_events.is_some() {
            errs.push(("sendInitialEvents", "Forbidden", "sendInitialEvents is forbidden for list".into()));
        }
        errs
    }

    fn watch_errors(&self, raw_match: Option<&str>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.send_initial_events.is_some() && self.rv_match != Some(Match::NotOlderThan) {
            errs.push((
                "resourceVersionMatch",
                "Forbidden",
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan".into(),
            ));
        }
        if let Some(m) = raw_match {
            if self.send_initial_events.is_none() {
                errs.push((
                    "resourceVersionMatch",
                    "Forbidden",
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".into(),
                ));
            }
            if self.rv_match != Some(Match::NotOlderThan) {
                errs.push((
                    "resourceVersionMatch",
                    "Unsupported value",
                    format!("\"{m}\": supported values: \"NotOlderThan\""),
                ));
            }
            if self.continue_token.is_some() {
                errs.push((
                    "resourceVersionMatch",
                    "Forbidden",
                    "resourceVersionMatch is forbidden when continue is provided".into(),
                ));
            }
        }
        errs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<Options, (u16, String)> {
        let pairs: Vec<(String, String)> = q
            .split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        Options::parse(&pairs).map_err(|r| {
            let code = r.into_response().status().as_u16();
            (code, format!("{code}"))
        })
    }

    #[test]
    fn checks_combinations_as_the_api_server_does() {
        assert_eq!(parse("resourceVersionMatch=Exact").unwrap_err().0, 422);
        assert_eq!(parse("resourceVersion=0&resourceVersionMatch=Exact").unwrap_err().0, 422);
        assert_eq!(parse("resourceVersion=5&resourceVersionMatch=Newest").unwrap_err().0, 422);
        assert_eq!(parse("resourceVersion=5&resourceVersionMatch=Exact&continue=x").unwrap_err().0, 422);
        assert_eq!(parse("resourceVersion=5&continue=x").unwrap_err().0, 400);
        assert_eq!(parse("sendInitialEvents=true").unwrap_err().0, 422);
        assert_eq!(parse("watch=true&sendInitialEvents=true").unwrap_err().0, 422);
        assert_eq!(parse("watch=true&resourceVersionMatch=NotOlderThan").unwrap_err().0, 422);
        assert_eq!(parse("watch=true&sendInitialEvents=true&resourceVersionMatch=Exact").unwrap_err().0, 422);
        assert_eq!(parse("watch=maybe").unwrap_err().0, 400);
        assert_eq!(parse("limit=x").unwrap_err().0, 400);
        let o =
            parse("watch=True&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=1").unwrap();
        assert!(o.watch && o.bookmarks);
        assert_eq!((o.send_initial_events, o.rv_match, o.rv), (Some(true), Some(Match::NotOlderThan), None));
        let o = parse("resourceVersion=0&continue=x&limit=5").unwrap();
        assert_eq!((o.limit, o.continue_token.as_deref()), (Some(5), Some("x")));
        let o = parse("resourceVersion=7&resourceVersionMatch=Exact").unwrap();
        assert_eq!(o.rv_match, Some(Match::Exact));
    }
}
