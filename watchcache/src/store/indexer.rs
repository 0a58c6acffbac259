//! client-go's Indexer over the store: index functions whose values are kept in the `indexes` table.

use std::collections::BTreeSet;

use rusqlite::params;
use serde_json::Value;

use super::{IndexFunc, Indexers, Store};
use crate::error::SqlContext;
use crate::raw::Prepared;
use crate::{Error, Result};

impl Store {
    // ---- client-go Indexer ----

    /// Register index functions; existing objects are indexed at once. A name already registered is an error.
    pub fn add_indexers(&self, new: Indexers) -> Result<()> {
        {
            let mut idx = crate::sync::write(&self.inner.indexers);
            if let Some(dup) = new.keys().find(|k| idx.contains_key(*k)) {
                return Err(Error::IndexerConflict { resource: self.name().to_owned(), index: dup.clone() });
            }
            idx.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let name = self.name();
        self.write_tx("add indexers", |tx, n| {
            let rows: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare(&format!(r#"SELECT key, object FROM "{}""#, n.objects))
                    .ctx(|| format!("{name}: scan"))?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|r| r.collect())
                    .ctx(|| format!("{name}: scan"))?
            };
            for (index, f) in &new {
                // Rows left by an earlier process with a different function under this name are stale.
                tx.execute(&format!(r#"DELETE FROM "{}" WHERE name = ?1"#, n.indexes), [index])
                    .ctx(|| format!("{name}: clear index {index}"))?;
                let mut ins = tx
                    .prepare(&format!(
                        r#"INSERT OR IGNORE INTO "{}" (name, value, key) VALUES (?1, ?2, ?3)"#,
                        n.indexes
                    ))
                    .ctx(|| format!("{name}: index {index}"))?;
                for (key, text) in &rows {
                    let obj = self.decode(key, text)?;
                    for v in f(&obj) {
                        ins.execute(params![index, v, key]).ctx(|| format!("{name} {key}: index {index}"))?;
                    }
                }
            }
            Ok(())
        })
    }

    pub fn indexers(&self) -> Indexers {
        crate::sync::read(&self.inner.indexers).clone()
    }

    fn index_func(&self, index: &str) -> Result<IndexFunc> {
        self.indexers()
            .get(index)
            .cloned()
            .ok_or_else(|| Error::UnknownIndex { resource: self.name().to_owned(), index: index.to_owned() })
    }

    /// Objects sharing any index value with `obj` under `index` (client-go Index).
    pub fn index(&self, index: &str, obj: &Value) -> Result<Vec<Value>> {
        let f = self.index_func(index)?;
        let mut keys = BTreeSet::new();
        for v in f(obj) {
            keys.extend(self.index_keys(index, &v)?);
        }
        self.objects_by_keys(keys)
    }

    /// Keys whose `index` values include `value`.
    pub fn index_keys(&self, index: &str, value: &str) -> Result<Vec<String>> {
        self.index_func(index)?;
        self.read(|c, n| {
            let mut s = c
                .prepare_cached(&format!(
                    r#"SELECT key FROM "{}" WHERE name = ?1 AND value = ?2 ORDER BY key"#,
                    n.indexes
                ))
                .ctx(|| format!("{}: index {index}", self.name()))?;
            s.query_map([index, value], |r| r.get(0))
                .and_then(|r| r.collect())
                .ctx(|| format!("{}: index {index}={value}", self.name()))
        })
    }

    /// Objects whose `index` values include `value`.
    pub fn by_index(&self, index: &str, value: &str) -> Result<Vec<Value>> {
        let keys = self.index_keys(index, value)?;
        self.objects_by_keys(keys)
    }

    /// Every value of `index` that at least one object has (unknown index: empty, as in client-go).
    pub fn list_index_func_values(&self, index: &str) -> Result<Vec<String>> {
        self.read(|c, n| {
            let mut s = c
                .prepare_cached(&format!(
                    r#"SELECT DISTINCT value FROM "{}" WHERE name = ?1 ORDER BY value"#,
                    n.indexes
                ))
                .ctx(|| format!("{}: index values {index}", self.name()))?;
            s.query_map([index], |r| r.get(0))
                .and_then(|r| r.collect())
                .ctx(|| format!("{}: index {index}", self.name()))
        })
    }

    fn objects_by_keys(&self, keys: impl IntoIterator<Item = String>) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for k in keys {
            if let Some(o) = self.get_by_key(&k)? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// Recompute configured fields and index values of every object (client-go Resync is a no-op for a plain
    /// cache; here it is useful after index functions change).
    pub fn resync(&self) -> Result<()> {
        let indexers = self.indexers();
        let fields = self.fields();
        self.write_tx("resync", |tx, n| {
            let rows: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare(&format!(r#"SELECT key, object FROM "{}""#, n.objects))
                    .ctx(|| format!("{}: resync", self.name()))?;
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .and_then(|r| r.collect())
                    .ctx(|| format!("{}: resync", self.name()))?
            };
            for (key, text) in rows {
                let obj = self.decode(&key, &text)?;
                let mut p = Prepared::from_value(&obj, key, &fields)?;
                // the stored text, not a re-encoding of it (derived values only)
                p.text = text;
                self.clear_derived(tx, n, &p.key)?;
                self.insert_derived(tx, n, &p, &fields, &indexers)?;
            }
            Ok(())
        })
    }
}
