//! Kubernetes label and field selectors, parsed as the API server parses them. Labels: `k=v`, `k==v`, `k!=v`,
//! `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not exist); fields: `f=v`, `f==v`, `f!=v`. Terms
//! are separated by commas outside parentheses, and all must hold.

use crate::list_options::FilterOp;
use crate::{Error, Result};

/// One term of a selector: `key op values` (one value for `=` and `!=`, none for existence tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    /// The term as written, for error messages.
    pub term: String,
    pub key: String,
    pub op: FilterOp,
    pub values: Vec<String>,
}

impl Requirement {
    /// Whether an object whose value under the key is `value` (`None`: absent) meets the requirement.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let first = self.values.first().map(String::as_str);
        let listed = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            FilterOp::Eq => value == first,
            FilterOp::NotEq => value != first,
            FilterOp::In => value.is_some_and(listed),
            FilterOp::NotIn => value.is_none_or(|v| !listed(v)),
            FilterOp::Exists => value.is_some(),
            FilterOp::NotExists => value.is_none(),
            FilterOp::Contains | FilterOp::NotContains | FilterOp::Lt | FilterOp::Gt => false,
        }
    }
}

fn bad(term: &str, reason: &str) -> Error {
    Error::Query { term: term.to_owned(), reason: reason.to_owned() }
}

/// Split on commas outside parentheses and, with `quotes`, outside single or double quotes (steve's filter
/// values may be quoted; Kubernetes selectors have no quoting).
pub(crate) fn split_terms(s: &str, quotes: bool) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match c {
            '\'' | '"' if quotes && quote == Some(c) => quote = None,
            _ if quote.is_some() => {}
            '\'' | '"' if quotes => quote = Some(c),
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn terms(s: &str) -> impl Iterator<Item = &str> {
    split_terms(s, false).into_iter().map(str::trim).filter(|t| !t.is_empty())
}

fn requirement(term: &str, key: &str, op: FilterOp, values: Vec<String>) -> Result<Requirement> {
    let key = key.trim();
    if key.is_empty() {
        return Err(bad(term, "a selector term needs a key"));
    }
    Ok(Requirement { term: term.to_owned(), key: key.to_owned(), op, values })
}

/// A label selector (`labelSelector=`).
pub fn labels(s: &str) -> Result<Vec<Requirement>> {
    terms(s).map(label_term).collect()
}

fn label_term(term: &str) -> Result<Requirement> {
    for (kw, op) in [(" notin ", FilterOp::NotIn), (" in ", FilterOp::In)] {
        if let Some((k, list)) = term.split_once(kw) {
            let inner = list
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| bad(term, "a set needs a parenthesised list"))?;
            return requirement(term, k, op, inner.split(',').map(|v| v.trim().to_owned()).collect());
        }
    }
    if let Some((k, v)) = term.split_once("!=") {
        return requirement(term, k, FilterOp::NotEq, vec![v.trim().to_owned()]);
    }
    if let Some((k, v)) = term.split_once("==").or(term.split_once('=')) {
        return requirement(term, k, FilterOp::Eq, vec![v.trim().to_owned()]);
    }
    match term.strip_prefix('!') {
        Some(k) => requirement(term, k, FilterOp::NotExists, vec![]),
        None => requirement(term, term, FilterOp::Exists, vec![]),
    }
}

/// A field selector (`fieldSelector=`): equality terms only.
pub fn fields(s: &str) -> Result<Vec<Requirement>> {
    terms(s)
        .map(|term| match (term.split_once("!="), term.split_once("==").or(term.split_once('='))) {
            (Some((k, v)), _) => requirement(term, k, FilterOp::NotEq, vec![v.trim().to_owned()]),
            (None, Some((k, v))) => requirement(term, k, FilterOp::Eq, vec![v.trim().to_owned()]),
            _ => Err(bad(term, "a field selector term is FIELD=VALUE or FIELD!=VALUE")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(s: &str) -> Vec<(String, FilterOp, Vec<String>)> {
        labels(s).unwrap().into_iter().map(|r| (r.key, r.op, r.values)).collect()
    }

    #[test]
    fn parses_label_selectors_as_the_api_server_does() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ops("app=web, tier==db,env!=prod,k in (a, b),j notin (c),x,!y"),
            [
                ("app".into(), FilterOp::Eq, v(&["web"])),
                ("tier".into(), FilterOp::Eq, v(&["db"])),
                ("env".into(), FilterOp::NotEq, v(&["prod"])),
                ("k".into(), FilterOp::In, v(&["a", "b"])),
                ("j".into(), FilterOp::NotIn, v(&["c"])),
                ("x".into(), FilterOp::Exists, v(&[])),
                ("y".into(), FilterOp::NotExists, v(&[])),
            ]
        );
        assert!(labels("").unwrap().is_empty());
        for bad in ["k in a,b", "=v", "!"] {
            assert!(matches!(labels(bad), Err(Error::Query { .. })), "{bad}");
        }
    }

    #[test]
    fn field_selectors_take_equality_terms_only() {
        let f = fields("metadata.name=a,metadata.namespace!=b").unwrap();
        assert_eq!((f[0].op, f[1].op), (FilterOp::Eq, FilterOp::NotEq));
        let e = fields("spec.nodeName").unwrap_err();
        assert!(e.to_string().contains("spec.nodeName"), "{e}");
    }

    #[test]
    fn requirements_match_as_the_api_server_does() {
        let r = |s: &str| labels(s).unwrap().remove(0);
        assert!(r("k in (a,b)").matches(Some("b")) && !r("k in (a,b)").matches(None));
        assert!(r("k notin (a,b)").matches(None) && !r("k notin (a,b)").matches(Some("a")));
        assert!(r("k!=a").matches(None) && !r("k=a").matches(None));
        assert!(r("!k").matches(None) && r("k").matches(Some("")));
    }

    #[test]
    fn quotes_protect_commas_only_when_asked() {
        assert_eq!(split_terms("a='x,y',b", true), ["a='x,y'", "b"]);
        assert_eq!(split_terms("a='x,y',b", false), ["a='x", "y'", "b"]);
        assert_eq!(split_terms("k in (a,b),c", false), ["k in (a,b)", "c"]);
    }
}
