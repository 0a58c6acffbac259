//! The write path: batches of upserts and deletes, each batch one transaction over the objects, derived
//! tables and the event log.

use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::Value;

use super::{Indexers, Store, now_ms};
use crate::Result;
use crate::error::SqlContext;
use crate::event::{EventType, WatchEvent};
use crate::names::{Names, read_meta_u64, write_meta};
use crate::path::FieldPath;
use crate::raw::Prepared;
use crate::resource::parse_rv;

/// One write in a batch.
#[derive(Debug, Clone)]
pub enum WriteOp {
    Upsert(Value),
    /// Delete by key; the object (e.g. the final state in a DELETED watch event) is logged when given.
    Delete {
        key: String,
        object: Option<Value>,
    },
}

/// One write in the store's own terms (the ingester builds these without a JSON tree).
pub(crate) enum RowOp {
    Upsert(Prepared),
    Delete { key: String, object: Option<Prepared> },
}

/// A stored row's JSON, upstream resourceVersion and the revision it was logged at.
type PrevRow = (String, Option<String>, Option<i64>);

/// What one applied write logged.
pub(crate) struct Applied {
    seq: i64,
    rv: u64,
    kind: EventType,
    key: String,
    /// The previous object of a delete that named none, decoded (its event carries it).
    deleted: Option<Value>,
    /// The object's resourceVersion was replaced by the log's revision.
    relabelled: bool,
}

impl Store {
    /// Apply a batch of writes in one transaction; returns the events logged (unchanged upserts and deletes of
    /// missing keys log nothing).
    pub fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WatchEvent>> {
        self.write_with_meta(ops, None)
    }

    /// `write`, also setting a named meta value in the same transaction (the ingester's resume point, so it never
    /// runs ahead of what is stored).
    pub(crate) fn write_with_meta(&self, ops: Vec<WriteOp>, meta: Option<(&str, &str)>) -> Result<Vec<WatchEvent>> {
        let fields = self.fields();
        let mut trees = Vec::with_capacity(ops.len());
        let mut prepared = Vec::with_capacity(ops.len());
        for op in ops {
            match op {
                WriteOp::Upsert(obj) => {
                    prepared.push(RowOp::Upsert(self.prepare(&obj, &fields)?));
                    trees.push(Some(obj));
                }
                WriteOp::Delete { key, object } => {
                    let p = object.as_ref().map(|o| self.prepare(o, &fields)).transpose()?;
                    prepared.push(RowOp::Delete { key, object: p });
                    trees.push(object);
                }
            }
        }
        let applied = self.write_ops(prepared, meta)?;
        Ok(applied
            .into_iter()
            .filter_map(|(i, a)| {
                let mut object = trees.get_mut(i).and_then(Option::take).or(a.deleted)?;
                if a.relabelled
                    && let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut)
                {
                    m.insert("resourceVersion".into(), Value::String(a.rv.to_string()));
                }
                Some(WatchEvent::new(a.seq, a.rv, a.kind, a.key, object))
            })
            .collect())
    }

    /// Apply prepared writes in one transaction (and `meta`); what each logged, by its index in `ops`.
    pub(crate) fn write_ops(&self, ops: Vec<RowOp>, meta: Option<(&str, &str)>) -> Result<Vec<(usize, Applied)>> {
        let p = self.inner.p.clone();
        let indexers = self.indexers();
        let fields = self.fields();
        let ts = now_ms();
        let applied = self.write_tx("write", |tx, n| {
            let mut last_rv = read_meta_u64(tx, &p, "last_rv")?.unwrap_or(0);
            let mut applied = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                if let Some(a) = self.apply(tx, n, op, &mut last_rv, ts, &fields, &indexers)? {
                    applied.push((i, a));
                }
            }
            write_meta(tx, &p, "last_rv", &last_rv.to_string())?;
            if let Some((k, v)) = meta {
                write_meta(tx, &p, k, v)?;
            }
            Ok(applied)
        })?;
        if let Some((_, a)) = applied.last() {
            self.inner.notify.send_replace(a.seq);
        }
        Ok(applied)
    }

    pub(super) fn insert_row(&self, tx: &Transaction<'_>, n: &Names, row: &Prepared, replace: bool) -> Result<()> {
        let verb = if replace { "INSERT OR REPLACE" } else { "INSERT" };
        tx.prepare_cached(&format!(
            r#"{verb} INTO "{}" (key, namespace, name, uid, resource_version, rv, created, object)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"#,
            n.objects
        ))
        .and_then(|mut s| {
            s.execute(params![
                row.key,
                row.namespace,
                row.name,
                row.uid,
                row.resource_version,
                row.rv().map(|v| v as i64),
                row.created,
                row.text
            ])
        })
        .map(drop)
        .ctx(|| format!("{} {}: write", self.name(), row.key))
    }

    /// The previous row's JSON moves into its lazily logged event before the row changes or goes.
    fn keep_in_log(&self, tx: &Transaction<'_>, n: &Names, key: &str, prev: &str) -> Result<()> {
        tx.prepare_cached(&format!(r#"UPDATE "{}" SET object = ?2 WHERE key = ?1 AND object IS NULL"#, n.events))
            .and_then(|mut s| s.execute(params![key, prev]))
            .map(drop)
            .ctx(|| format!("{} {key}: log", self.name()))
    }

    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        tx: &Transaction<'_>,
        n: &Names,
        op: RowOp,
        last_rv: &mut u64,
        ts: i64,
        fields: &[FieldPath],
        indexers: &Indexers,
    ) -> Result<Option<Applied>> {
        let name = self.name();
        // the row's JSON, its upstream resourceVersion and the revision it was logged at
        let read_prev = |key: &str| -> Result<Option<PrevRow>> {
            tx.prepare_cached(&format!(r#"SELECT object, resource_version, rv FROM "{}" WHERE key = ?1"#, n.objects))
                .and_then(|mut s| s.query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional())
                .ctx(|| format!("{name} {key}: read"))
        };
        let (key, kind, obj_rv, logged_text, deleted, row_rv) = match op {
            RowOp::Upsert(row) => {
                let prev = read_prev(&row.key)?;
                if let Some((text, upstream, rev)) = &prev {
                    // a row logged at a revision of its own carries that revision in its JSON, so the same
                    // upstream version arriving again is recognised by its resourceVersion
                    let relabelled = rev.map(|r| r as u64) != upstream.as_deref().and_then(|u| u.parse().ok());
                    if *text == row.text || (relabelled && upstream.is_some() && *upstream == row.resource_version) {
                        return Ok(None);
                    }
                    self.keep_in_log(tx, n, &row.key, text)?;
                    self.clear_derived(tx, n, &row.key)?;
                }
                self.insert_row(tx, n, &row, true)?;
                self.insert_derived(tx, n, &row, fields, indexers)?;
                let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
                let rv = row.rv();
                (row.key, kind, rv, None, None, true)
            }
            RowOp::Delete { key, object } => {
                let Some((prev, _, _)) = read_prev(&key)? else { return Ok(None) };
                self.keep_in_log(tx, n, &key, &prev)?;
                tx.prepare_cached(&format!(r#"DELETE FROM "{}" WHERE key = ?1"#, n.objects))
                    .and_then(|mut s| s.execute([&key]))
                    .ctx(|| format!("{name} {key}: delete"))?;
                self.clear_derived(tx, n, &key)?;
                match object {
                    Some(o) => {
                        let rv = o.rv();
                        (key, EventType::Deleted, rv, Some(o.text), None, false)
                    }
                    None => {
                        let o = self.decode(&key, &prev)?;
                        // a delete is a change of its own: it never carries the revision of the last update
                        (key, EventType::Deleted, parse_rv(&o).map(|_| 0), Some(prev), Some(o), false)
                    }
                }
            }
        };
        // The log's own revision: the object's resourceVersion when it moves the log forward (the API's
        // watch events do), else the next one, so revisions only grow in commit order whatever the source.
        let rv = match obj_rv {
            Some(rv) if rv > *last_rv => rv,
            _ => *last_rv + 1,
        };
        *last_rv = rv;
        // an object that carried a resourceVersion carries its revision from now on
        let relabel = obj_rv.is_some_and(|o| o != rv).then(|| rv.to_string());
        let mut logged_text = logged_text;
        if let Some(r) = &relabel {
            if row_rv {
                tx.prepare_cached(&format!(
                    r#"UPDATE "{}" SET rv = ?2, object = json_set(object, '$.metadata.resourceVersion', ?3)
                         WHERE key = ?1"#,
                    n.objects
                ))
                .and_then(|mut s| s.execute(params![key, rv as i64, r]))
                .ctx(|| format!("{name} {key}: revision"))?;
            }
            logged_text = logged_text.map(|t| with_resource_version(&t, r));
        }
        // upserts log lazily (NULL: the row itself); deletes keep the final state
        tx.prepare_cached(&format!(
            r#"INSERT INTO "{}" (rv, type, key, object, ts) VALUES (?1, ?2, ?3, ?4, ?5)"#,
            n.events
        ))
        .and_then(|mut s| s.execute(params![rv as i64, kind.as_str(), key, logged_text, ts]))
        .ctx(|| format!("{name} {key}: log event"))?;
        let seq = tx.last_insert_rowid();
        Ok(Some(Applied { seq, rv, kind, key, deleted, relabelled: relabel.is_some() }))
    }

    pub(super) fn clear_derived(&self, tx: &Transaction<'_>, n: &Names, key: &str) -> Result<()> {
        for t in [&n.fields, &n.labels, &n.indexes] {
            tx.prepare_cached(&format!(r#"DELETE FROM "{t}" WHERE key = ?1"#))
                .and_then(|mut s| s.execute([key]))
                .ctx(|| format!("{} {key}: clear {t}", self.name()))?;
        }
        Ok(())
    }

    /// Labels, configured fields and index values of one object (the caller cleared any previous ones).
    pub(super) fn insert_derived(
        &self,
        tx: &Transaction<'_>,
        n: &Names,
        obj: &Prepared,
        fields: &[FieldPath],
        indexers: &Indexers,
    ) -> Result<()> {
        let name = self.name();
        let key = obj.key.as_str();
        // a tree only when something needs one: a field the object was not prepared with, or index functions
        let mut tree: Option<Value> = None;
        let tree_of = |tree: &mut Option<Value>| -> Result<()> {
            if tree.is_none() {
                *tree = Some(self.decode(key, &obj.text)?);
            }
            Ok(())
        };
        if !obj.labels.is_empty() {
            let mut s = tx
                .prepare_cached(&format!(
                    r#"INSERT OR REPLACE INTO "{}" (key, label, value) VALUES (?1, ?2, ?3)"#,
                    n.labels
                ))
                .ctx(|| format!("{name} {key}: labels"))?;
            for (k, v) in &obj.labels {
                s.execute(params![key, k, v]).ctx(|| format!("{name} {key}: label {k}"))?;
            }
        }
        if !fields.is_empty() {
            let mut s = tx
                .prepare_cached(&format!(
                    r#"INSERT OR REPLACE INTO "{}" (key, field, value) VALUES (?1, ?2, ?3)"#,
                    n.fields
                ))
                .ctx(|| format!("{name} {key}: fields"))?;
            for f in fields {
                let v = match obj.fields.iter().find(|(t, _)| *t == f.text) {
                    Some((_, v)) => v.clone(),
                    None => {
                        tree_of(&mut tree)?;
                        tree.as_ref().and_then(|t| f.scalar(t))
                    }
                };
                s.execute(params![key, f.text, v]).ctx(|| format!("{name} {key}: field {}", f.text))?;
            }
        }
        if !indexers.is_empty() {
            let mut s = tx
                .prepare_cached(&format!(
                    r#"INSERT OR IGNORE INTO "{}" (name, value, key) VALUES (?1, ?2, ?3)"#,
                    n.indexes
                ))
                .ctx(|| format!("{name} {key}: indexes"))?;
            tree_of(&mut tree)?;
            let Some(obj) = tree.as_ref() else { return Ok(()) };
            for (index, f) in indexers {
                for v in f(obj) {
                    s.execute(params![index, v, key]).ctx(|| format!("{name} {key}: index {index}"))?;
                }
            }
        }
        Ok(())
    }
}

/// `text` (an object's JSON) with `metadata.resourceVersion` set to `rv`; unparsable text is kept as it is.
fn with_resource_version(text: &str, rv: &str) -> String {
    let Ok(mut v) = serde_json::from_str::<Value>(text) else { return text.to_owned() };
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.insert("resourceVersion".into(), Value::String(rv.to_owned()));
    }
    v.to_string()
}
