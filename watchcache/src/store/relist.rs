//! The relist path: a list is staged into the generation that is not live and swapped in by one short
//! transaction, which logs the differences to the live list.

use std::sync::atomic::Ordering;

use rusqlite::{TransactionBehavior, params};
use serde_json::Value;

use super::{AUTOCHECKPOINT, Store, now_ms};
use crate::error::SqlContext;
use crate::names::{
    Names, create_generation, create_generation_indexes, create_generation_tables, create_view, drop_generation,
    live_generation, read_meta_u64, write_meta,
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
        // The staged pages are written once into the WAL and checkpointed after the swap, instead of being
        // copied into the database file every 1000 pages while the list is still arriving.
        self.autocheckpoint(0)?;
        Ok(Staging { id, generation, items: 0 })
    }

    fn autocheckpoint(&self, pages: i64) -> Result<()> {
        let c = self.inner.conns.writer();
        c.execute_batch(&format!("PRAGMA wal_autocheckpoint = {pages}"))
            .ctx(|| format!("{}: wal_autocheckpoint", self.name()))
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
    /// are new or changed, in key order, then deletes at `list_rv`, or else just after every revision seen), and
    /// `meta` (the ingester's resume point) is written with them. Returns the number of events logged.
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
            let max_new: Option<i64> = tx
                .query_row(&format!(r#"SELECT MAX(rv) FROM "{}""#, n.objects), [], |r| r.get(0))
                .ctx(|| format!("{name}: swap"))?;
            let max_new = max_new.map(|v| v.max(0) as u64).unwrap_or(0);
            // a delete found by a relist happened after everything this store logged so far
            let delete_rv = list_rv.unwrap_or_else(|| max_new.max(last_rv + 1));
            let seq_before: i64 = tx
                .query_row(&format!(r#"SELECT IFNULL(MAX(seq), 0) FROM "{}""#, o.events), [], |r| r.get(0))
                .ctx(|| format!("{name}: last event"))?;
            let sql = |s: &str| s.replace("{O}", &o.objects).replace("{N}", &n.objects).replace("{E}", &o.events);
            // the old rows of changed and vanished keys are about to go: their lazily logged events take a copy
            tx.execute(
                &sql(r#"UPDATE "{E}" SET object = (SELECT o.object FROM "{O}" o WHERE o.key = "{E}".key)
                        WHERE object IS NULL AND key IN (SELECT o.key FROM "{O}" o LEFT JOIN "{N}" n ON n.key = o.key
                          WHERE n.key IS NULL OR n.object IS NOT o.object)"#),
                [],
            )
            .ctx(|| format!("{name}: swap: keep superseded objects in the log"))?;
            let mut logged = tx
                .execute(
                    &sql(r#"INSERT INTO "{E}" (rv, type, key, object, ts)
                            SELECT IFNULL(n.rv, ?1), CASE WHEN o.key IS NULL THEN 'ADDED' ELSE 'MODIFIED' END, n.key,
                              NULL, ?2
                            FROM "{N}" n LEFT JOIN "{O}" o ON o.key = n.key
                            WHERE o.key IS NULL OR n.object IS NOT o.object ORDER BY n.key"#),
                    params![(last_rv + 1) as i64, ts],
                )
                .ctx(|| format!("{name}: swap: log additions"))?;
            logged += tx
                .execute(
                    &sql(r#"INSERT INTO "{E}" (rv, type, key, object, ts)
                            SELECT ?1, 'DELETED', o.key, json_set(o.object, '$.metadata.resourceVersion', ?2), ?3
                            FROM "{O}" o WHERE NOT EXISTS (SELECT 1 FROM "{N}" n WHERE n.key = o.key)
                            ORDER BY o.key"#),
                    params![delete_rv as i64, delete_rv.to_string(), ts],
                )
                .ctx(|| format!("{name}: swap: log deletions"))?;
            let newest_logged: Option<i64> = tx
                .query_row(&format!(r#"SELECT MAX(rv) FROM "{}" WHERE seq > ?1"#, o.events), [seq_before], |r| r.get(0))
                .ctx(|| format!("{name}: swap"))?;
            let new_last = last_rv.max(max_new).max(newest_logged.unwrap_or(0).max(0) as u64).max(list_rv.unwrap_or(0));
            write_meta(&tx, &p, "last_rv", &new_last.to_string())?;
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
        if logged > 0 {
            self.inner.notify.send_replace(last_seq);
        }
        // the old generation is no longer read by anyone who starts reading now (readers that started before
        // keep their snapshot); emptying it returns its pages for the next relist
        let c = self.inner.conns.writer();
        drop_generation(&c, &p, old)
            .and_then(|_| create_generation(&c, &p, old))
            .ctx(|| format!("{name}: clear the old generation"))?;
        c.execute_batch(&format!("PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT}"))
            .ctx(|| format!("{name}: wal_autocheckpoint"))?;
        // PASSIVE: readers still on the old snapshot are not waited for; what they pin is copied later
        c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).ctx(|| format!("{name}: checkpoint"))?;
        tracing::debug!(resource = %name, objects = st.items, events = logged, "relist swapped in");
        Ok(logged)
    }
}
