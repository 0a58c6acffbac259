//! Rancher steve's list query language over a store's tables.
//!
//! `filter=` terms are ANDed across repeated parameters and ORed within one parameter (commas). Operators:
//! `=`/`==` (equal), `!=`, `~` (contains), `!~`, `in (a,b)`, `notin (a,b)`, `<`, `>` (numeric), and label
//! existence `metadata.labels[k]` / `!metadata.labels[k]`. `sort=a,-b`, `pagesize=`/`page=` (1-based) or
//! `continue=`, `revision=` (not older than), `summary=field` (value counts), `include=`/`exclude=` (JSON-path
//! projections of the returned items), `namespace=a,b`. Fields usable in filters, sorts and summaries:
//! `id`, `metadata.name`, `metadata.namespace`, `metadata.creationTimestamp`, any `metadata.labels[k]` and the
//! store's configured fields. All values are bound as SQL parameters; only fixed SQL is spliced.

use std::collections::BTreeMap;

use rusqlite::types::Value as Sql;
use serde_json::Value;

use crate::error::SqlContext;
use crate::path::{FieldPath, project};
use crate::store::{Store, read_meta_u64};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    NotEq,
    Contains,
    NotContains,
    In,
    NotIn,
    Lt,
    Gt,
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub term: String,
    pub field: FieldPath,
    pub op: Op,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: FieldPath,
    pub descending: bool,
}

/// A parsed query. `filters` is an AND of OR-groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOptions {
    pub filters: Vec<Vec<Filter>>,
    pub sort: Vec<SortKey>,
    pub page_size: Option<usize>,
    pub page: Option<usize>,
    pub continue_token: Option<String>,
    pub revision: Option<u64>,
    pub summary: Vec<FieldPath>,
    pub include: Vec<FieldPath>,
    pub exclude: Vec<FieldPath>,
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ListResult {
    pub items: Vec<Value>,
    /// Matching objects across all pages.
    pub count: usize,
    pub pages: usize,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    /// The store's revision when the list was read.
    pub revision: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub summary: BTreeMap<String, BTreeMap<String, usize>>,
}

fn bad(term: &str, reason: impl Into<String>) -> Error {
    Error::Query { term: term.to_owned(), reason: reason.into() }
}

/// Split on commas outside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
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

fn is_label(p: &FieldPath) -> bool {
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
        return filter(if negated { Op::NotExists } else { Op::Exists }, vec![]);
    }
    if negated {
        return Err(bad(raw, "`!` prefixes only a label existence test"));
    }
    for (kw, op) in [("notin", Op::NotIn), ("in", Op::In)] {
        if let Some(list) = rest.strip_prefix(kw).map(str::trim_start).filter(|l| l.starts_with('(')) {
            let inner = list
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| bad(raw, format!("`{kw}` needs a parenthesised list")))?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_owned()).collect();
            if values.iter().any(String::is_empty) {
                return Err(bad(raw, format!("empty value in `{kw}` list")));
            }
            return filter(op, values);
        }
    }
    for (sym, op) in [
        ("!=", Op::NotEq),
        ("==", Op::Eq),
        ("!~", Op::NotContains),
        ("=", Op::Eq),
        ("~", Op::Contains),
        ("<", Op::Lt),
        (">", Op::Gt),
    ] {
        if let Some(v) = rest.strip_prefix(sym) {
            let v = v.trim().to_owned();
            if matches!(op, Op::Lt | Op::Gt) && v.parse::<f64>().is_err() {
                return Err(bad(raw, format!("`{sym}` needs a number, got `{v}`")));
            }
            return filter(op, vec![v]);
        }
    }
    Err(bad(raw, format!("unknown operator in `{rest}`")))
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
                "filter" => o.filters.push(split_top(v).into_iter().map(parse_term).collect::<Result<_>>()?),
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
                "pagesize" => o.page_size = Some(parse_usize(k, v)?).filter(|n| *n > 0),
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
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(query)?;
        Self::from_pairs(&pairs)
    }
}

/// Minimal `application/x-www-form-urlencoded` decoding, so the library needs no extra dependency.
pub(crate) fn serde_urlencoded_pairs(q: &str) -> Result<Vec<(String, String)>> {
    fn dec(s: &str) -> Result<String> {
        let mut out = Vec::with_capacity(s.len());
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = s.get(i + 1..i + 3).ok_or_else(|| bad(s, "truncated %-escape"))?;
                    out.push(u8::from_str_radix(hex, 16).map_err(|_| bad(s, "bad %-escape"))?);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| bad(s, "not UTF-8"))
    }
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((dec(k)?, dec(v)?))
        })
        .collect()
}

/// SQL for one field: fixed text plus its parameters.
struct Expr {
    sql: String,
    params: Vec<Sql>,
}

impl Store {
    fn field_expr(&self, f: &FieldPath, term: &str) -> Result<Expr> {
        let p = &self.inner.p;
        let col = |c: &str| Ok(Expr { sql: format!("o.{c}"), params: vec![] });
        match f.text.as_str() {
            "id" => return col("key"),
            "metadata.name" => return col("name"),
            "metadata.namespace" => return col("namespace"),
            "metadata.creationTimestamp" => return col("created"),
            _ => {}
        }
        if is_label(f) {
            return Ok(Expr {
                sql: format!(r#"(SELECT l.value FROM "{p}_labels" l WHERE l.key = o.key AND l.label = ?)"#),
                params: vec![Sql::Text(f.segments[2].clone())],
            });
        }
        if let Some(known) = self.inner.fields.iter().find(|k| k.segments == f.segments) {
            return Ok(Expr {
                sql: format!(r#"(SELECT x.value FROM "{p}_fields" x WHERE x.key = o.key AND x.field = ?)"#),
                params: vec![Sql::Text(known.text.clone())],
            });
        }
        Err(bad(term, format!("field `{}` is not indexed for {}", f.text, self.name())))
    }

    fn condition(&self, f: &Filter) -> Result<Expr> {
        let p = &self.inner.p;
        if matches!(f.op, Op::Exists | Op::NotExists) {
            let not = if f.op == Op::NotExists { "NOT " } else { "" };
            return Ok(Expr {
                sql: format!(r#"{not}EXISTS (SELECT 1 FROM "{p}_labels" l WHERE l.key = o.key AND l.label = ?)"#),
                params: vec![Sql::Text(f.field.segments[2].clone())],
            });
        }
        let e = self.field_expr(&f.field, &f.term)?;
        let x = &e.sql;
        let marks = vec!["?"; f.values.len()].join(", ");
        let sql = match f.op {
            Op::Eq => format!("{x} = ?"),
            Op::NotEq => format!("{x} IS NOT ?"),
            Op::Contains => format!("instr({x}, ?) > 0"),
            Op::NotContains => format!("IFNULL(instr({x}, ?), 0) = 0"),
            Op::In => format!("{x} IN ({marks})"),
            // the field expression appears twice, so its parameters are bound twice below
            Op::NotIn => format!("({x} IS NULL OR {x} NOT IN ({marks}))"),
            Op::Lt => format!("CAST({x} AS REAL) < ?"),
            Op::Gt => format!("CAST({x} AS REAL) > ?"),
            Op::Exists | Op::NotExists => unreachable!("handled above"),
        };
        let mut params = e.params.clone();
        if f.op == Op::NotIn {
            params.extend(e.params.iter().cloned());
        }
        for v in &f.values {
            params.push(match f.op {
                Op::Lt | Op::Gt => Sql::Real(v.parse().map_err(|_| bad(&f.term, "not a number"))?),
                _ => Sql::Text(v.clone()),
            });
        }
        Ok(Expr { sql, params })
    }

    fn where_clause(&self, o: &ListOptions) -> Result<Expr> {
        let mut parts = vec!["1".to_owned()];
        let mut params = Vec::new();
        if !o.namespaces.is_empty() {
            parts.push(format!("o.namespace IN ({})", vec!["?"; o.namespaces.len()].join(", ")));
            params.extend(o.namespaces.iter().map(|n| Sql::Text(n.clone())));
        }
        for group in &o.filters {
            let mut ors = Vec::new();
            for f in group {
                let c = self.condition(f)?;
                ors.push(format!("({})", c.sql));
                params.extend(c.params);
            }
            parts.push(format!("({})", ors.join(" OR ")));
        }
        Ok(Expr { sql: parts.join(" AND "), params })
    }

    /// Run a query against the current contents.
    pub fn query(&self, o: &ListOptions) -> Result<ListResult> {
        let p = &self.inner.p;
        let name = self.name().to_owned();
        let w = self.where_clause(o)?;
        let mut order = Vec::new();
        let mut order_params = Vec::new();
        for s in &o.sort {
            let e = self.field_expr(&s.field, &format!("sort={}", s.field.text))?;
            order.push(format!("{} {}", e.sql, if s.descending { "DESC" } else { "ASC" }));
            order_params.extend(e.params);
        }
        order.push("o.key ASC".into());
        let mut summary_exprs = Vec::new();
        for f in &o.summary {
            summary_exprs.push((f.text.clone(), self.field_expr(f, &format!("summary={}", f.text))?));
        }
        let offset = match (&o.continue_token, o.page) {
            (Some(t), _) => t
                .strip_prefix("o:")
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| bad(&format!("continue={t}"), "not a continue token from this API"))?,
            (None, Some(page)) if page > 1 => (page - 1) * o.page_size.unwrap_or(0),
            _ => 0,
        };
        let c = self.conn();
        let revision = read_meta_u64(&c, p, "last_rv")?.unwrap_or(0);
        if let Some(r) = o.revision
            && r > revision
        {
            return Err(Error::TooNew { resource: name, requested: r, current: revision });
        }
        let count: i64 = c
            .query_row(
                &format!(r#"SELECT count(*) FROM "{p}_objects" o WHERE {}"#, w.sql),
                rusqlite::params_from_iter(w.params.iter()),
                |r| r.get(0),
            )
            .ctx(|| format!("{name}: count query"))?;
        let count = count as usize;
        let limit = o.page_size.map(|n| n as i64).unwrap_or(-1);
        let sql = format!(
            r#"SELECT o.key, o.object FROM "{p}_objects" o WHERE {} ORDER BY {} LIMIT ? OFFSET ?"#,
            w.sql,
            order.join(", ")
        );
        let mut params = w.params.clone();
        params.extend(order_params);
        params.push(Sql::Integer(limit));
        params.push(Sql::Integer(offset as i64));
        let rows: Vec<(String, String)> = {
            let mut s = c.prepare(&sql).ctx(|| format!("{name}: query"))?;
            s.query_map(rusqlite::params_from_iter(params.iter()), |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|r| r.collect())
                .ctx(|| format!("{name}: query"))?
        };
        let mut summary = BTreeMap::new();
        for (field, e) in summary_exprs {
            let sql = format!(
                r#"SELECT {} AS v, count(*) FROM "{p}_objects" o WHERE {} GROUP BY v HAVING v IS NOT NULL"#,
                e.sql, w.sql
            );
            let mut params = e.params.clone();
            params.extend(w.params.iter().cloned());
            let mut s = c.prepare(&sql).ctx(|| format!("{name}: summary {field}"))?;
            let counts: BTreeMap<String, usize> = s
                .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
                })
                .and_then(|r| r.collect())
                .ctx(|| format!("{name}: summary {field}"))?;
            summary.insert(field, counts);
        }
        drop(c);
        let items = rows
            .iter()
            .map(|(k, t)| self.decode(k, t).map(|v| project(v, &o.include, &o.exclude)))
            .collect::<Result<Vec<_>>>()?;
        let (pages, continue_token) = match o.page_size {
            Some(size) => {
                let next = offset + items.len();
                (count.div_ceil(size), (next < count && !items.is_empty()).then(|| format!("o:{next}")))
            }
            None => (usize::from(count > 0), None),
        };
        Ok(ListResult { items, count, pages, continue_token, revision, summary })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terms() {
        let o = ListOptions::parse_query(
            "filter=metadata.name%3Da,metadata.labels[app]!=b&filter=metadata.namespace%20in%20(x,%20y)&filter=!metadata.labels[k]&sort=-metadata.name,metadata.namespace&pagesize=2",
        )
        .unwrap();
        assert_eq!(o.filters.len(), 3);
        assert_eq!(o.filters[0][0].op, Op::Eq);
        assert_eq!(o.filters[0][1].op, Op::NotEq);
        assert_eq!(o.filters[0][1].field.segments[2], "app");
        assert_eq!(o.filters[1][0].op, Op::In);
        assert_eq!(o.filters[1][0].values, ["x", "y"]);
        assert_eq!(o.filters[2][0].op, Op::NotExists);
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
