//! The relist path: a list is staged into the generation that is not live and swapped in by one short
//! transaction, which logs the differences to the live list.

use std::sync::atomic::Ordering;

use rusqlite::{TransactionBehavior, params};
use serde_json::Value;

use super::{Store, now_ms};
use crate::error::SqlContext;
use crate::names::{
    Names, create_generation, create_generation_indexes, create_generation_tables, create_view, drop_generation,
    live_generation, read_meta, read_meta_u64, write_meta,
};
use crate::raw::Prepared;
use crate::{Error, Result};

/// A relist in progress: objects go into the generation that is not live, and [`Store::stage_commit`] swaps it
/// in. Obtained from [`Store::stage_begin`].
pub(crate) struct Staging {
    id: u64,
    generation: i64,
    items: usize,
}

impl Store {
    /// Atomically make the store hold exactly `items` (client-go Replace): readers see the old set or the new
    /// one, never a half-filled or empty store. Differences are logged as events; deletes get
    /// `resource_version` (the list's) when it is numeric.
    pub fn replace(&self, items: Vec<Value>, resource_version: Option<&str>) -> Result<()> {
        let list_rv = resource_version.and_then(|s| s.parse::<u64>().ok());
        let fields = self.fields();
        let items = items.iter().map(|o| self.prepare(o, &fields)).collect::<Result<Vec<_>>>()?;
        let mut st = self.stage_begin()?;
        self.stage_items(&mut st, items)?;
        self.stage_commit(st, list_rv, None).map(drop)
    }

    /// Start a relist: empty the generation that is not live, for [`Store::stage_items`] to fill. Starting
    /// another relist (on this store) supersedes this one.
    pub(crate) fn stage_begin(&self) -> Result<Staging> {
        let id = self.inner.staging.fetch_add(1, Ordering::SeqCst) + 1;
        let p = self.inner.p.clone();
        let generation = self.write_tx("relist start", |tx, _| {
            let next = 1 - live_generation(tx, &p)?;
            drop_generation(tx, &p, next)
                .and_then(|_| create_generation_tables(tx, &p, next))
                .ctx(|| format!("{}: clear the relist tables", self.name()))?;
            Ok(next)
        })?;
        // the staged pages are written once into the WAL and checkpointed after the swap
        self.inner.conns.pause_checkpoints();
        Ok(Staging { id, generation, items: 0 })
    }

    fn check_staging(&self, st: &Staging) -> Result<()> {
        if self.inner.staging.load(Ordering::SeqCst) != st.id {
            return Err(Error::Superseded { resource: self.name().to_owned() });
        }
        Ok(())
    }

    /// Add objects of the list being staged, in one transaction; readers do not see them before the swap.
    pub(crate) fn stage_items(&self, st: &mut Staging, items: Vec<Prepared>) -> Result<()> {
        self.check_staging(st)?;
        let indexers = self.indexers();
        let fields = self.fields();
        let n = Names::new(&self.inner.p, st.generation);
        let name = self.name();
        let mut c = self.inner.conns.writer();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).ctx(|| format!("{name}: stage"))?;
        // the swap may have happened while this waited for the lock
        self.check_staging(st)?;
        if live_generation(&tx, &self.inner.p)? == st.generation {
            return Err(Error::Superseded { resource: name.to_owned() });
        }
        for obj in &items {
            self.insert_row(&tx, &n, obj, false)?;
            self.insert_derived(&tx, &n, obj, &fields, &indexers)?;
        }
        tx.commit().ctx(|| format!("{name}: stage commit"))?;
        st.items += items.len();
        Ok(())
    }

    /// Swap the staged list in, in one transaction: the differences to the live list are logged (objects that
    /// are new or changed, in key order, then deletes), each at a revision of its own above every revision
    /// logged so far, as close below the list's `list_rv` as there is room for; and `meta` (the ingester's
    /// resume point) is written with them. The first list of a store without history logs nothing: the log
    /// starts at its revision (older revisions are Expired). Returns the number of events logged.
    pub(crate) fn stage_commit(&self, st: Staging, list_rv: Option<u64>, meta: Option<(&str, &str)>) -> Result<usize> {
        let p = self.inner.p.clone();
        let name = self.name().to_owned();
        let ts = now_ms();
        let (logged, last_seq, old) = {
            let mut c = self.inner.conns.writer();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).ctx(|| format!("{name}: swap"))?;
            self.check_staging(&st)?;
            let old_gen = live_generation(&tx, &p)?;
            if old_gen == st.generation {
                return Err(Error::Superseded { resource: name });
            }
            create_generation_indexes(&tx, &p, st.generation).ctx(|| format!("{name}: index the relist"))?;
            let (o, n) = (Names::new(&p, old_gen), Names::new(&p, st.generation));
            let last_rv = read_meta_u64(&tx, &p, "last_rv")?.unwrap_or(0);
            let one = |sql: &str| -> Result<i64> {
                tx.query_row(sql, [], |r| r.get::<_, Option<i64>>(0))
                    .map(|v| v.unwrap_or(0).max(0))
                    .ctx(|| format!("{name}: swap"))
            };
            let sql = |s: &str| {
                s.replace("{O}", &o.objects)
                    .replace("{N}", &n.objects)
                    .replace("{E}", &o.events)
                    // An object is unchanged when its JSON is; a row relabelled with a revision of the log's
                    // is unchanged while its upstream resourceVersion is.
                    .replace(
                        "{CHANGED}",
                        "(n.object IS NOT o.object AND NOT (o.resource_version IS NOT NULL
                           AND n.resource_version IS o.resource_version
                           AND o.rv IS NOT CAST(o.resource_version AS INTEGER)))",
                    )
            };
            let max_new = one(&sql(r#"SELECT MAX(rv) FROM "{N}""#))? as u64;
            let seq_before = one(&sql(r#"SELECT MAX(seq) FROM "{E}""#))?;
            let old_rows = one(&sql(r#"SELECT count(*) FROM "{O}""#))?;
            let fresh = read_meta(&tx, &p, "listed")?.is_none() && seq_before == 0 && old_rows == 0;
            let list_rv = list_rv.unwrap_or(0).max(max_new).max(last_rv);
            let mut logged = 0;
            let mut new_last = list_rv;
            if fresh {
                // The objects are logged at their own versions, for `state_at`; nothing before this list is
                // known, so the log counts as compacted up to it: a watcher from an older revision must relist.
                logged += tx
                    .execute(
                        &sql(r#"INSERT INTO "{E}" (rv, type, key, object, ts)
                                SELECT IFNULL(n.rv, ?1), 'ADDED', n.key, NULL, ?2 FROM "{N}" n ORDER BY n.key"#),
                        params![list_rv as i64, ts],
                    )
                    .ctx(|| format!("{name}: swap: log the first list"))?;
                let seq = one(&sql(r#"SELECT MAX(seq) FROM "{E}""#))?;
                write_meta(&tx, &p, "compacted_rv", &list_rv.to_string())?;
                write_meta(&tx, &p, "compacted_seq", &seq.to_string())?;
            } else {
                let changed = one(&sql(r#"SELECT count(*) FROM "{N}" n LEFT JOIN "{O}" o ON o.key = n.key
                                           WHERE o.key IS NULL OR {CHANGED}"#))?;
                let vanished = one(&sql(r#"SELECT count(*) FROM "{O}" o
                                            WHERE NOT EXISTS (SELECT 1 FROM "{N}" n WHERE n.key = o.key)"#))?;
                let diffs = (changed + vanished) as u64;
                let base = last_rv.max(list_rv.saturating_sub(diffs));
                new_last = new_last.max(base + diffs);
                // the old rows of changed and vanished keys are about to go: their lazily logged events take a copy
                tx.execute(
                    &sql(r#"UPDATE "{E}" SET object = (SELECT o.object FROM "{O}" o WHERE o.key = "{E}".key)
                            WHERE object IS NULL AND key IN (SELECT o.key FROM "{O}" o LEFT JOIN "{N}" n
                              ON n.key = o.key WHERE n.key IS NULL OR {CHANGED})"#),
                    [],
                )
                .ctx(|| format!("{name}: swap: keep superseded objects in the log"))?;
                // rows that did not change keep the revision (and JSON) they were logged with
                tx.execute(
                    &sql(
                        r#"UPDATE "{N}" SET (rv, object) = (SELECT o.rv, o.object FROM "{O}" o WHERE o.key = "{N}".key)
                            WHERE key IN (SELECT n.key FROM "{N}" n JOIN "{O}" o ON o.key = n.key
                              WHERE n.object IS NOT o.object AND NOT {CHANGED})"#,
                    ),
                    [],
                )
                .ctx(|| format!("{name}: swap: keep unchanged rows"))?;
                logged += tx
                    .execute(
                        &sql(r#"INSERT INTO "{E}" (rv, type, key, object, ts)
                                SELECT ?1 + row_number() OVER (ORDER BY n.key),
                                  CASE WHEN o.key IS NULL THEN 'ADDED' ELSE 'MODIFIED' END, n.key, NULL, ?2
                                FROM "{N}" n LEFT JOIN "{O}" o ON o.key = n.key
                                WHERE o.key IS NULL OR {CHANGED} ORDER BY n.key"#),
                        params![base as i64, ts],
                    )
                    .ctx(|| format!("{name}: swap: log additions"))?;
                // the objects carry the revision they were logged at
                tx.execute(
                    &sql(r#"UPDATE "{N}" SET rv = e.rv,
                              object = CASE WHEN "{N}".resource_version IS NULL THEN object
                                ELSE json_set(object, '$.metadata.resourceVersion', CAST(e.rv AS TEXT)) END
                            FROM (SELECT key, rv FROM "{E}" WHERE seq > ?1) AS e WHERE e.key = "{N}".key"#),
                    [seq_before],
                )
                .ctx(|| format!("{name}: swap: label changes with their revisions"))?;
                logged += tx
                    .execute(
                        &sql(r#"INSERT INTO "{E}" (rv, type, key, object, ts)
                                SELECT r, 'DELETED', key, json_set(object, '$.metadata.resourceVersion', CAST(r AS TEXT)), ?2
                                FROM (SELECT ?1 + row_number() OVER (ORDER BY o.key) AS r, o.key, o.object
                                  FROM "{O}" o WHERE NOT EXISTS (SELECT 1 FROM "{N}" n WHERE n.key = o.key))
                                ORDER BY key"#),
                        params![(base + changed as u64) as i64, ts],
                    )
                    .ctx(|| format!("{name}: swap: log deletions"))?;
            }
            write_meta(&tx, &p, "last_rv", &new_last.to_string())?;
            write_meta(&tx, &p, "listed", &new_last.to_string())?;
            write_meta(&tx, &p, "generation", &st.generation.to_string())?;
            if let Some((k, v)) = meta {
                write_meta(&tx, &p, k, v)?;
            }
            create_view(&tx, &p, st.generation).ctx(|| format!("{name}: objects view"))?;
            let last_seq: i64 = tx
                .query_row(&format!(r#"SELECT IFNULL(MAX(seq), 0) FROM "{}""#, o.events), [], |r| r.get(0))
                .ctx(|| format!("{name}: last event"))?;
            tx.commit().ctx(|| format!("{name}: swap commit"))?;
            (logged, last_seq, old_gen)
        };
        self.inner.notify.send_replace(last_seq);
        // the old generation is no longer read by anyone who starts reading now (readers that started before
        // keep their snapshot); emptying it returns its pages for the next relist
        {
            let c = self.inner.conns.writer();
            drop_generation(&c, &p, old)
                .and_then(|_| create_generation(&c, &p, old))
                .ctx(|| format!("{name}: clear the old generation"))?;
        }
        self.inner.conns.resume_checkpoints();
        tracing::debug!(resource = %name, objects = st.items, events = logged, "relist swapped in");
        Ok(logged)
    }
}
