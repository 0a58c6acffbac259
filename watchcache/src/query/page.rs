//! One page of a query: the SQL that finds its keys (and, when asked, counts), then the stored JSON of those
//! keys only. Callers decode the JSON (steve's answers, Tables) or pass it on as it is (Kubernetes lists).

use std::collections::BTreeMap;

use rusqlite::types::Value as Sql;

use super::{Counting, ListOptions, RawPage};
use crate::error::SqlContext;
use crate::keyset::{self, Position};
use crate::names::read_meta_u64;
use crate::store::Store;
use crate::{Error, Result};

impl Store {
    /// A page of `o` against the current contents, its objects as stored JSON text.
    pub(crate) fn query_raw(&self, o: &ListOptions, counting: Counting) -> Result<RawPage> {
        let name = self.name().to_owned();
        let fields = self.fields();
        let fingerprint = keyset::fingerprint(&name, o);
        let after = o.continue_token.as_deref().map(|t| Position::decode(t, &fingerprint, o.sort.len())).transpose()?;
        let offset = match o.page {
            Some(page) if page > 1 && after.is_none() => (page - 1) * o.page_size.unwrap_or(0),
            _ => 0,
        };
        self.read(|c, n| {
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
            let count_where = |extra: Option<(String, Vec<Sql>)>| -> Result<usize> {
                let mut params = base_params.clone();
                let mut wsql = w.sql.clone();
                if let Some((sql, p)) = extra {
                    wsql = format!("({wsql}) AND {sql}");
                    params.extend(p);
                }
                c.prepare_cached(&format!("SELECT count(*) FROM {from} WHERE {wsql}"))
                    .and_then(|mut s| s.query_row(rusqlite::params_from_iter(params.iter()), |r| r.get::<_, i64>(0)))
                    .map(|n| n as usize)
                    .ctx(|| format!("{name}: count query"))
            };
            let count = match counting {
                Counting::All => Some(count_where(None)?),
                Counting::Remaining | Counting::Nothing => None,
            };
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
                    keys.last().map(|(k, v)| Position::new(fingerprint.clone(), v.clone(), k.clone()))
                }
                _ => None,
            };
            // the rest after this page only: a walk of N pages then counts each object about N/2 times in
            // total instead of N times
            let remaining = match (&next, counting) {
                (Some(pos), Counting::Remaining) => Some(count_where(Some(pos.after(&sorts)))?),
                _ => None,
            };
            let mut items = Vec::with_capacity(keys.len());
            {
                let mut get = c
                    .prepare_cached(&format!(r#"SELECT object FROM "{}" WHERE key = ?1"#, n.objects))
                    .ctx(|| format!("{name}: query"))?;
                for (k, _) in keys {
                    let text: String = get.query_row([&k], |r| r.get(0)).ctx(|| format!("{name} {k}: query"))?;
                    items.push((k, text));
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
            Ok(RawPage { items, count, remaining, continue_token: next.map(|p| p.encode()), revision, summary })
        })
    }
}
