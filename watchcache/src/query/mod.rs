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
use crate::names::read_meta_u64;
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

mod parse;
mod sql;

pub(crate) use parse::parse_pairs;

impl Store {
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
