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
use crate::keyset::{self, Position};
use crate::names::{Names, read_meta_u64};
use crate::path::{FieldPath, project};
use crate::store::Store;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
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
    pub op: FilterOp,
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

/// Split on commas outside parentheses and quotes.
fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match c {
            '\'' | '"' if quote == Some(c) => quote = None,
            _ if quote.is_some() => {}
            '\'' | '"' => quote = Some(c),
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

/// Where a label or configured field lives: its table, the column naming it, and the name.
struct Side<'a> {
    table: &'a str,
    column: &'static str,
    name: String,
}

/// Matching objects are at most this many for a label or field test to be worth starting from (see `driver`).
const DRIVER_CAP: i64 = 10_000;

impl Store {
    /// The table holding `f` when it is a label or a configured field.
    fn side<'a>(&self, f: &FieldPath, n: &'a Names, fields: &[FieldPath]) -> Option<Side<'a>> {
        if is_label(f) {
            return Some(Side { table: &n.labels, column: "label", name: f.segments[2].clone() });
        }
        fields.iter().find(|k| k.segments == f.segments).map(|k| Side {
            table: &n.fields,
            column: "field",
            name: k.text.clone(),
        })
    }

    /// A field's value for sorting and summaries.
    fn field_expr(&self, f: &FieldPath, term: &str, n: &Names, fields: &[FieldPath]) -> Result<Expr> {
        let col = |c: &str| Ok(Expr { sql: format!("o.{c}"), params: vec![] });
        match f.text.as_str() {
            "id" => return col("key"),
            "metadata.name" => return col("name"),
            "metadata.namespace" => return col("namespace"),
            "metadata.creationTimestamp" => return col("created"),
            _ => {}
        }
        match self.side(f, n, fields) {
            Some(s) => Ok(Expr {
                sql: format!(r#"(SELECT x.value FROM "{}" x WHERE x.key = o.key AND x.{} = ?)"#, s.table, s.column),
                params: vec![Sql::Text(s.name)],
            }),
            None => Err(bad(term, format!("field `{}` is not indexed for {}", f.text, self.name()))),
        }
    }

    /// The value test of `f` on a column `x` (None for existence tests, which test the row itself).
    fn value_test(f: &Filter, x: &str) -> Result<Option<(String, Vec<Sql>)>> {
        let marks = vec!["?"; f.values.len()].join(", ");
        let text = || f.values.iter().map(|v| Sql::Text(v.clone())).collect::<Vec<_>>();
        let number = || -> Result<Vec<Sql>> {
            f.values.iter().map(|v| v.parse().map(Sql::Real).map_err(|_| bad(&f.term, "not a number"))).collect()
        };
        Ok(Some(match f.op {
            FilterOp::Eq | FilterOp::NotEq => (format!("{x} = ?"), text()),
            FilterOp::Contains | FilterOp::NotContains => (format!("instr({x}, ?) > 0"), text()),
            FilterOp::In | FilterOp::NotIn => (format!("{x} IN ({marks})"), text()),
            FilterOp::Lt => (format!("CAST({x} AS REAL) < ?"), number()?),
            FilterOp::Gt => (format!("CAST({x} AS REAL) > ?"), number()?),
            FilterOp::Exists | FilterOp::NotExists => return Ok(None),
        }))
    }

    /// Negated operators match what the positive one does not, including objects without the label or field
    /// (as `!=` in Kubernetes label selectors).
    fn negated(op: FilterOp) -> bool {
        matches!(op, FilterOp::NotEq | FilterOp::NotContains | FilterOp::NotIn | FilterOp::NotExists)
    }

    fn condition(&self, f: &Filter, n: &Names, fields: &[FieldPath]) -> Result<Expr> {
        if let Some(s) = self.side(&f.field, n, fields) {
            // a probe by primary key (key, label|field) per candidate row; the (label|field, value) indexes serve
            // the driver instead (see `driver`)
            let mut params = vec![Sql::Text(s.name)];
            let test = match Self::value_test(f, "x.value")? {
                Some((sql, p)) => {
                    params.extend(p);
                    format!(" AND {sql}")
                }
                None => String::new(),
            };
            let not = if Self::negated(f.op) { "NOT " } else { "" };
            return Ok(Expr {
                sql: format!(
                    r#"{not}EXISTS (SELECT 1 FROM "{}" x WHERE x.key = o.key AND x.{} = ?{test})"#,
                    s.table, s.column
                ),
                params,
            });
        }
        if matches!(f.op, FilterOp::Exists | FilterOp::NotExists) {
            return Err(bad(&f.term, "an existence test needs metadata.labels[KEY]"));
        }
        let e = self.field_expr(&f.field, &f.term, n, fields)?;
        let x = &e.sql;
        let (test, values) = Self::value_test(f, x)?.unwrap_or_default();
        // the object columns are never NULL except created; a missing value matches only negated tests
        let sql = if Self::negated(f.op) { format!("IFNULL(NOT ({test}), 1)") } else { test };
        let mut params = e.params;
        params.extend(values);
        Ok(Expr { sql, params })
    }

    /// Pick a single positive label/field test (`=`, `in`, existence) to start from when it matches fewer
    /// objects than the namespace restriction (or than `DRIVER_CAP` without one): SQLite then looks up those
    /// keys through the (label|field, value) index instead of scanning objects and probing each. Estimates are
    /// index counts stopped at the smallest alternative, so choosing costs at most a few thousand index steps.
    fn driver(
        &self,
        c: &rusqlite::Connection,
        o: &ListOptions,
        n: &Names,
        fields: &[FieldPath],
    ) -> Result<Option<(usize, Expr)>> {
        let count = |sql: String, params: &[Sql]| -> Result<i64> {
            c.prepare_cached(&sql)
                .and_then(|mut s| s.query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0)))
                .ctx(|| format!("{}: estimate", self.name()))
        };
        let mut best = DRIVER_CAP;
        let mut namespaces: Option<&[String]> = (!o.namespaces.is_empty()).then_some(o.namespaces.as_slice());
        for group in &o.filters {
            if let [f] = group.as_slice()
                && f.field.text == "metadata.namespace"
                && matches!(f.op, FilterOp::Eq | FilterOp::In)
                && namespaces.is_none_or(|ns| ns.len() > f.values.len())
            {
                namespaces = Some(&f.values);
            }
        }
        if let Some(ns) = namespaces {
            let marks = vec!["?"; ns.len()].join(", ");
            let mut params: Vec<Sql> = ns.iter().map(|v| Sql::Text(v.clone())).collect();
            params.push(Sql::Integer(best));
            best = count(
                format!(r#"SELECT count(*) FROM (SELECT 1 FROM "{}" WHERE namespace IN ({marks}) LIMIT ?)"#, n.objects),
                &params,
            )?;
        }
        let mut chosen = None;
        for (i, group) in o.filters.iter().enumerate() {
            let [f] = group.as_slice() else { continue };
            if !matches!(f.op, FilterOp::Eq | FilterOp::In | FilterOp::Exists) {
                continue;
            }
            let Some(s) = self.side(&f.field, n, fields) else { continue };
            let mut params = vec![Sql::Text(s.name)];
            let mut sql = format!(r#"SELECT key FROM "{}" WHERE {} = ?"#, s.table, s.column);
            if let Some((test, p)) = Self::value_test(f, "value")? {
                sql.push_str(&format!(" AND {test}"));
                params.extend(p);
            }
            let mut limited = params.clone();
            limited.push(Sql::Integer(best));
            let est = count(format!("SELECT count(*) FROM ({sql} LIMIT ?)"), &limited)?;
            if est < best {
                best = est;
                chosen = Some((i, Expr { sql, params }));
            }
        }
        Ok(chosen)
    }

    fn where_clause(&self, o: &ListOptions, skip: Option<usize>, n: &Names, fields: &[FieldPath]) -> Result<Expr> {
        let mut parts = vec!["1".to_owned()];
        let mut params = Vec::new();
        if !o.namespaces.is_empty() {
            parts.push(format!("o.namespace IN ({})", vec!["?"; o.namespaces.len()].join(", ")));
            params.extend(o.namespaces.iter().map(|n| Sql::Text(n.clone())));
        }
        for (i, group) in o.filters.iter().enumerate() {
            if Some(i) == skip {
                continue;
            }
            let mut ors = Vec::new();
            for f in group {
                let c = self.condition(f, n, fields)?;
                ors.push(format!("({})", c.sql));
                params.extend(c.params);
            }
            parts.push(format!("({})", ors.join(" OR ")));
        }
        Ok(Expr { sql: parts.join(" AND "), params })
    }

    /// Run a query against the current contents.
    pub fn query(&self, o: &ListOptions) -> Result<ListResult> {
        let name = self.name().to_owned();
        let fields = self.fields();
        let fingerprint = keyset::fingerprint(&name, o);
        let after = o.continue_token.as_deref().map(|t| Position::decode(t, &fingerprint, o.sort.len())).transpose()?;
        let offset = match o.page {
            Some(page) if page > 1 && after.is_none() => (page - 1) * o.page_size.unwrap_or(0),
            _ => 0,
        };
        let (rows, count, revision, summary, next) = self.read(|c, n| {
            let revision = read_meta_u64(c, &self.inner.p, "last_rv")?.unwrap_or(0);
            if let Some(r) = o.revision
                && r > revision
            {
                return Err(Error::TooNew { resource: name.clone(), requested: r, current: revision });
            }
            let mut order = Vec::new();
            let mut order_params = Vec::new();
            let mut sorts = Vec::new();
            for s in &o.sort {
                let e = self.field_expr(&s.field, &format!("sort={}", s.field.text), n, &fields)?;
                order.push(format!("{} {}", e.sql, if s.descending { "DESC" } else { "ASC" }));
                order_params.extend(e.params.iter().cloned());
                sorts.push((e.sql, e.params, s.descending));
            }
            order.push("o.key ASC".into());
            let mut summary_exprs = Vec::new();
            for f in &o.summary {
                summary_exprs.push((f.text.clone(), self.field_expr(f, &format!("summary={}", f.text), n, &fields)?));
            }
            // validate every term before estimating anything
            let _ = self.where_clause(o, None, n, &fields)?;
            let driver = self.driver(c, o, n, &fields)?;
            let w = self.where_clause(o, driver.as_ref().map(|(i, _)| *i), n, &fields)?;
            // CROSS JOIN keeps the driver as the outer loop; its keys are looked up in the index that holds the
            // sortable columns too
            let (from, mut base_params) = match &driver {
                Some((_, d)) => {
                    let o = &n.objects;
                    (
                        format!(r#"({}) AS d CROSS JOIN "{o}" o INDEXED BY "{o}_cols" ON o.key = d.key"#, d.sql),
                        d.params.clone(),
                    )
                }
                None => (format!(r#""{}" o"#, n.objects), vec![]),
            };
            base_params.extend(w.params.iter().cloned());
            let count: i64 = c
                .prepare_cached(&format!("SELECT count(*) FROM {from} WHERE {}", w.sql))
                .and_then(|mut s| s.query_row(rusqlite::params_from_iter(base_params.iter()), |r| r.get(0)))
                .ctx(|| format!("{name}: count query"))?;
            // one more than a page tells whether another page follows
            let limit = o.page_size.map(|n| n as i64 + 1).unwrap_or(-1);
            // the page's keys (and sort values, for the continue token) first, then only their objects: a sort
            // reads no JSON of rows it drops
            let select: String = sorts.iter().map(|(sql, _, _)| format!(", {sql}")).collect();
            let mut params: Vec<Sql> = sorts.iter().flat_map(|(_, p, _)| p.iter().cloned()).collect();
            params.extend(base_params.iter().cloned());
            let mut wsql = w.sql.clone();
            if let Some(pos) = &after {
                let (sql, p) = pos.after(&sorts);
                wsql = format!("({wsql}) AND {sql}");
                params.extend(p);
            }
            let sql =
                format!("SELECT o.key{select} FROM {from} WHERE {wsql} ORDER BY {} LIMIT ? OFFSET ?", order.join(", "));
            params.extend(order_params);
            params.push(Sql::Integer(limit));
            params.push(Sql::Integer(offset as i64));
            let mut keys: Vec<(String, Vec<Option<String>>)> = {
                let mut s = c.prepare_cached(&sql).ctx(|| format!("{name}: query"))?;
                s.query_map(rusqlite::params_from_iter(params.iter()), |r| {
                    let values = (1..=sorts.len()).map(|i| r.get(i)).collect::<rusqlite::Result<Vec<_>>>()?;
                    Ok((r.get(0)?, values))
                })
                .and_then(|r| r.collect())
                .ctx(|| format!("{name}: query"))?
            };
            let next = match o.page_size {
                Some(size) if keys.len() > size => {
                    keys.truncate(size);
                    keys.last().map(|(k, v)| Position::new(fingerprint.clone(), v.clone(), k.clone()).encode())
                }
                _ => None,
            };
            let keys = keys.into_iter().map(|(k, _)| k);
            let mut rows = Vec::with_capacity(keys.len());
            {
                let mut get = c
                    .prepare_cached(&format!(r#"SELECT object FROM "{}" WHERE key = ?1"#, n.objects))
                    .ctx(|| format!("{name}: query"))?;
                for k in keys {
                    let text: String = get.query_row([&k], |r| r.get(0)).ctx(|| format!("{name} {k}: query"))?;
                    rows.push((k, text));
                }
            }
            let mut summary = BTreeMap::new();
            for (field, e) in summary_exprs {
                let sql = format!(
                    r#"SELECT {} AS v, count(*) FROM {from} WHERE {} GROUP BY v HAVING v IS NOT NULL"#,
                    e.sql, w.sql
                );
                let mut params = e.params.clone();
                params.extend(base_params.iter().cloned());
                let mut s = c.prepare_cached(&sql).ctx(|| format!("{name}: summary {field}"))?;
                let counts: BTreeMap<String, usize> = s
                    .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize))
                    })
                    .and_then(|r| r.collect())
                    .ctx(|| format!("{name}: summary {field}"))?;
                summary.insert(field, counts);
            }
            Ok((rows, count as usize, revision, summary, next))
        })?;
        let items = rows
            .iter()
            .map(|(k, t)| self.decode(k, t).map(|v| project(v, &o.include, &o.exclude)))
            .collect::<Result<Vec<_>>>()?;
        let pages = match o.page_size {
            Some(size) => count.div_ceil(size),
            None => usize::from(count > 0),
        };
        Ok(ListResult { items, count, pages, continue_token: next, revision, summary })
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
