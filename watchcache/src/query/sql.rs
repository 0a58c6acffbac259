//! Filters, sorts and summaries as SQL over a store's tables: every value a parameter, only fixed SQL spliced.

use rusqlite::types::Value as Sql;

use super::parse::{bad, is_label};
use super::{Filter, FilterOp, ListOptions};
use crate::Result;
use crate::error::SqlContext;
use crate::names::Names;
use crate::path::FieldPath;
use crate::store::Store;

/// SQL for one field: fixed text plus its parameters.
pub(super) struct Expr {
    pub(super) sql: String,
    pub(super) params: Vec<Sql>,
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
    pub(super) fn field_expr(&self, f: &FieldPath, term: &str, n: &Names, fields: &[FieldPath]) -> Result<Expr> {
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
    pub(super) fn driver(
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

    pub(super) fn where_clause(
        &self,
        o: &ListOptions,
        skip: Option<usize>,
        n: &Names,
        fields: &[FieldPath],
    ) -> Result<Expr> {
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
}
