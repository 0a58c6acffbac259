//! Steve's query parameters and filter terms into [`ListOptions`].

use super::{Filter, FilterOp, ListOptions, SortKey};
use crate::path::FieldPath;
use crate::selector::split_terms;
use crate::{Error, Result};

pub(super) fn bad(term: &str, reason: impl Into<String>) -> Error {
    Error::Query { term: term.to_owned(), reason: reason.into() }
}

pub(super) fn is_label(p: &FieldPath) -> bool {
    p.segments.len() == 3 && p.segments[0] == "metadata" && p.segments[1] == "labels"
}

fn parse_term(raw: &str) -> Result<Filter> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(bad(raw, "empty filter term"));
    }
    let (negated, body) = match t.strip_prefix('!') {
        Some(rest) => (true, rest.trim_start()),
        None => (false, t),
    };
    // the field ends at the first operator character or space outside [...]
    let mut depth = 0;
    let mut end = body.len();
    for (i, c) in body.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            '=' | '!' | '~' | '<' | '>' | ' ' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let field = FieldPath::parse(&body[..end]).map_err(|e| bad(raw, e.to_string()))?;
    let rest = body[end..].trim();
    let filter = |op, values| Ok(Filter { term: raw.to_owned(), field: field.clone(), op, values });
    if rest.is_empty() {
        if !is_label(&field) {
            return Err(bad(raw, "an existence test needs metadata.labels[KEY]"));
        }
        return filter(if negated { FilterOp::NotExists } else { FilterOp::Exists }, vec![]);
    }
    if negated {
        return Err(bad(raw, "`!` prefixes only a label existence test"));
    }
    for (kw, op) in [("notin", FilterOp::NotIn), ("in", FilterOp::In)] {
        if let Some(list) = rest.strip_prefix(kw).map(str::trim_start).filter(|l| l.starts_with('(')) {
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| bad(raw, format!("`{kw}` needs a parenthesised list")))?;
            let values: Vec<String> = inner.split(',').map(|v| unquote(v.trim()).to_owned()).collect();
            if values.iter().any(String::is_empty) {
                return Err(bad(raw, format!("empty value in `{kw}` list")));
            }
            return filter(op, values);
        }
    }
    for (sym, op) in [
        ("!=", FilterOp::NotEq),
        ("==", FilterOp::Eq),
        ("!~", FilterOp::NotContains),
        ("=", FilterOp::Eq),
        ("~", FilterOp::Contains),
        ("<", FilterOp::Lt),
        (">", FilterOp::Gt),
    ] {
        if let Some(v) = rest.strip_prefix(sym) {
            let v = unquote(v.trim()).to_owned();
            if matches!(op, FilterOp::Lt | FilterOp::Gt) && v.parse::<f64>().is_err() {
                return Err(bad(raw, format!("`{sym}` needs a number, got `{v}`")));
            }
            return filter(op, vec![v]);
        }
    }
    Err(bad(raw, format!("unknown operator in `{rest}`")))
}

/// steve accepts a value in single or double quotes (`metadata.name='p001'`), so a value may hold a comma.
fn unquote(v: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = v.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    v
}

fn parse_usize(key: &str, v: &str) -> Result<usize> {
    v.parse().map_err(|_| bad(&format!("{key}={v}"), "not a non-negative integer"))
}

fn paths(key: &str, v: &str) -> Result<Vec<FieldPath>> {
    v.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| FieldPath::parse(s.trim()).map_err(|e| bad(&format!("{key}={v}"), e.to_string())))
        .collect()
}

impl ListOptions {
    /// Parse decoded query parameters. Unknown parameters are errors naming them.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Result<Self> {
        let mut o = Self::default();
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref());
            match k {
                "filter" => o.filters.push(split_terms(v, true).into_iter().map(parse_term).collect::<Result<_>>()?),
                "sort" => {
                    for s in v.split(',').filter(|s| !s.is_empty()) {
                        let (descending, f) = match s.strip_prefix('-') {
                            Some(f) => (true, f),
                            None => (false, s),
                        };
                        let field = FieldPath::parse(f).map_err(|e| bad(&format!("sort={v}"), e.to_string()))?;
                        o.sort.push(SortKey { field, descending });
                    }
                }
                "pagesize" | "limit" => o.page_size = Some(parse_usize(k, v)?).filter(|n| *n > 0),
                "page" => o.page = Some(parse_usize(k, v)?),
                "continue" => o.continue_token = Some(v.to_owned()).filter(|s| !s.is_empty()),
                "revision" => o.revision = Some(v.parse().map_err(|_| bad(&format!("revision={v}"), "not a number"))?),
                "summary" => o.summary.extend(paths(k, v)?),
                "include" => o.include.extend(paths(k, v)?),
                "exclude" => o.exclude.extend(paths(k, v)?),
                "namespace" | "namespaces" => {
                    o.namespaces.extend(v.split(',').filter(|s| !s.is_empty()).map(Into::into))
                }
                other => return Err(bad(other, "unknown query parameter")),
            }
        }
        Ok(o)
    }

    /// Parse a raw query string (`filter=a%3Db&sort=-x`).
    pub fn parse_query(query: &str) -> Result<Self> {
        Self::from_pairs(&parse_pairs(query))
    }
}

/// The decoded pairs of a query string (form encoding: `+` is a space). Decoding is lenient, as the REST API's
/// is: an invalid escape stays as written and invalid UTF-8 becomes U+FFFD, so either can only make a name
/// unknown (a 400) or a value not match.
pub(crate) fn parse_pairs(q: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(q.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::FilterOp;

    #[test]
    fn parses_terms() {
        let o = ListOptions::parse_query(
            "filter=metadata.name%3Da,metadata.labels[app]!=b&filter=metadata.namespace%20in%20(x,%20y)&filter=!metadata.labels[k]&sort=-metadata.name,metadata.namespace&pagesize=2",
        )
        .unwrap();
        assert_eq!(o.filters.len(), 3);
        assert_eq!(o.filters[0][0].op, FilterOp::Eq);
        assert_eq!(o.filters[0][1].op, FilterOp::NotEq);
        assert_eq!(o.filters[0][1].field.segments[2], "app");
        assert_eq!(o.filters[1][0].op, FilterOp::In);
        assert_eq!(o.filters[1][0].values, ["x", "y"]);
        assert_eq!(o.filters[2][0].op, FilterOp::NotExists);
        assert!(o.sort[0].descending && !o.sort[1].descending);
        assert_eq!(o.page_size, Some(2));
    }

    #[test]
    fn bad_terms_name_the_term() {
        for (q, term) in [
            ("filter=metadata.name", "metadata.name"),
            ("filter=metadata.labels[a]<x", "metadata.labels[a]<x"),
            ("filter=metadata.name%20in%20x", "metadata.name in x"),
            ("bogus=1", "bogus"),
            ("pagesize=-1", "pagesize=-1"),
            ("filter=!metadata.name=a", "!metadata.name=a"),
        ] {
            match ListOptions::parse_query(q) {
                Err(Error::Query { term: t, .. }) => assert_eq!(t, term, "{q}"),
                other => panic!("{q}: expected a query error, got {other:?}"),
            }
        }
    }
}
