//! The event log: every committed change of a store, in commit order, with its resource version.
//!
//! `list_since` and the watch fan-out (`watch.rs`) serve watchers; `state_at` answers "what did this object (or the whole list) look like
//! at revision N" (rancher/vai's versioned indexer). Compaction keeps, for every key, the last event at or below
//! the compaction point (unless it is a delete), so `state_at` stays exact for every revision not older than it.

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, params};
use serde_json::Value;

use crate::error::SqlContext;
use crate::event::{EventType, WatchEvent};
use crate::names::{Names, read_meta_u64, write_meta};
use crate::store::Store;
use crate::{Error, Result};

impl Store {
    pub(crate) fn compacted(&self, c: &rusqlite::Connection) -> Result<(u64, i64)> {
        let p = &self.inner.p;
        Ok((
            read_meta_u64(c, p, "compacted_rv")?.unwrap_or(0),
            read_meta_u64(c, p, "compacted_seq")?.unwrap_or(0) as i64,
        ))
    }

    pub(crate) fn expired(&self, requested: u64, compacted: u64) -> Error {
        Error::Expired { resource: self.name().to_owned(), requested, compacted }
    }

    /// Events selected by `filter` (SQL over the events table aliased `e`), their objects resolved.
    fn rows(
        &self,
        c: &rusqlite::Connection,
        n: &Names,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<WatchEvent>> {
        let sql =
            format!(r#"SELECT e.seq, e.rv, e.type, e.key, {} FROM "{}" e WHERE {filter}"#, n.event_object(), n.events);
        let mut s = c.prepare_cached(&sql).ctx(|| format!("{}: read events", self.name()))?;
        let rows: Vec<(i64, i64, String, String, Option<String>)> = s
            .query_map(args, |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
            .and_then(|r| r.collect())
            .ctx(|| format!("{}: read events", self.name()))?;
        rows.into_iter()
            .map(|(seq, rv, t, key, obj)| {
                let kind = EventType::parse(&t).ok_or_else(|| Error::Corrupt {
                    resource: self.name().to_owned(),
                    detail: format!("event {seq} has the unknown type `{t}`"),
                })?;
                let obj = obj.ok_or_else(|| Error::Corrupt {
                    resource: self.name().to_owned(),
                    detail: format!("event {seq} ({key}) has no object"),
                })?;
                Ok(WatchEvent::new(seq, rv as u64, kind, key.clone(), self.decode(&key, &obj)?))
            })
            .collect()
    }

    /// Events with a resource version above `rv`, in commit order; `Expired` if `rv` is older than the log.
    pub fn list_since(&self, rv: u64) -> Result<Vec<WatchEvent>> {
        self.read(|c, n| self.list_since_in(c, n, rv)).map(|(evs, _)| evs)
    }

    /// The compaction point's seq, if the log can answer from revision `rv`: `Expired` if it is compacted away,
    /// `TooNew` if the store has not reached it.
    fn servable(&self, c: &rusqlite::Connection, rv: u64) -> Result<i64> {
        let (crv, cseq) = self.compacted(c)?;
        if rv < crv {
            return Err(self.expired(rv, crv));
        }
        let current = read_meta_u64(c, &self.inner.p, "last_rv")?.unwrap_or(0);
        if rv > current {
            return Err(Error::TooNew { resource: self.name().to_owned(), requested: rv, current });
        }
        Ok(cseq)
    }

    /// Also returns the highest seq at the time of reading, so a session continues exactly after it.
    fn list_since_in(&self, c: &rusqlite::Connection, n: &Names, rv: u64) -> Result<(Vec<WatchEvent>, i64)> {
        let cseq = self.servable(c, rv)?;
        let evs = self.rows(c, n, "e.rv > ?1 AND e.seq > ?2 ORDER BY e.seq", params![rv as i64, cseq])?;
        let max: i64 = c
            .query_row(&format!(r#"SELECT IFNULL(MAX(seq), 0) FROM "{}""#, n.events), [], |r| r.get(0))
            .ctx(|| format!("{}: last event", self.name()))?;
        Ok((evs, max))
    }

    /// At most `limit` events after sequence number `seq`.
    pub(crate) fn events_after_seq(&self, seq: i64, limit: i64) -> Result<Vec<WatchEvent>> {
        self.read(|c, n| {
            let (crv, cseq) = self.compacted(c)?;
            if seq < cseq {
                return Err(self.expired(0, crv));
            }
            self.rows(c, n, "e.seq > ?1 ORDER BY e.seq LIMIT ?2", params![seq, limit])
        })
    }

    /// The object stored under `key` as of revision `rv` (None: absent then).
    pub fn state_at(&self, key: &str, rv: u64) -> Result<Option<Value>> {
        let text = self.read(|c, n| {
            let (crv, _) = self.compacted(c)?;
            if rv < crv {
                return Err(self.expired(rv, crv));
            }
            self.state_text_at(c, n, key, rv)
        })?;
        text.map(|t| self.decode(key, &t)).transpose()
    }

    /// The JSON of `key` as of revision `rv` (None: absent then), for a revision not older than the log.
    pub(crate) fn state_text_at(
        &self,
        c: &rusqlite::Connection,
        n: &Names,
        key: &str,
        rv: u64,
    ) -> Result<Option<String>> {
        let row: Option<(String, Option<String>)> = c
            .prepare_cached(&format!(
                r#"SELECT e.type, {} FROM "{}" e WHERE e.key = ?1 AND e.rv <= ?2 ORDER BY e.seq DESC LIMIT 1"#,
                n.event_object(),
                n.events
            ))
            .and_then(|mut s| s.query_row(params![key, rv as i64], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .ctx(|| format!("{} {key}: state at {rv}", self.name()))?;
        Ok(match row {
            Some((t, obj)) if t != "DELETED" => obj,
            _ => None,
        })
    }

    /// Every object as of revision `rv`, ordered by key.
    pub fn list_at(&self, rv: u64) -> Result<Vec<Value>> {
        let evs = self.read(|c, n| {
            let (crv, _) = self.compacted(c)?;
            if rv < crv {
                return Err(self.expired(rv, crv));
            }
            self.rows(c, n, "e.rv <= ?1 ORDER BY e.seq", [rv as i64])
        })?;
        let mut state = BTreeMap::new();
        for e in evs {
            match e.kind {
                EventType::Deleted => state.remove(&e.key),
                _ => state.insert(e.key, e.object),
            };
        }
        Ok(state.into_values().collect())
    }

    /// Forget history at or below `rv` (keeping each key's last state there); later `list_since(< rv)` is Expired.
    pub fn compact(&self, rv: u64) -> Result<usize> {
        let p = self.inner.p.clone();
        let name = self.name().to_owned();
        self.write_tx("compact", |tx, n| {
            let (crv, _) = self.compacted(tx)?;
            if rv <= crv {
                return Ok(0);
            }
            let ev = &n.events;
            // Superseded events, then deletes that are a key's latest state at the compaction point. A lazily
            // logged event (NULL object) is always its key's newest, so never superseded.
            let mut removed = tx
                .execute(
                    &format!(
                        r#"DELETE FROM "{ev}" AS e WHERE e.rv <= ?1 AND EXISTS (SELECT 1 FROM "{ev}" AS l
                             WHERE l.key = e.key AND l.rv <= ?1 AND l.seq > e.seq)"#
                    ),
                    [rv as i64],
                )
                .ctx(|| format!("{name}: compact to {rv}"))?;
            removed += tx
                .execute(&format!(r#"DELETE FROM "{ev}" WHERE rv <= ?1 AND type = 'DELETED'"#), [rv as i64])
                .ctx(|| format!("{name}: compact deletes to {rv}"))?;
            let seq: i64 = tx
                .query_row(&format!(r#"SELECT IFNULL(MAX(seq), 0) FROM "{ev}" WHERE rv <= ?1"#), [rv as i64], |r| {
                    r.get(0)
                })
                .ctx(|| format!("{name}: compact seq"))?;
            let old_seq = self.compacted(tx)?.1;
            write_meta(tx, &p, "compacted_rv", &rv.to_string())?;
            write_meta(tx, &p, "compacted_seq", &seq.max(old_seq).to_string())?;
            Ok(removed)
        })
    }

    /// Keep about the newest `keep` events: compact to the revision just below them.
    pub fn compact_keep_last(&self, keep: usize) -> Result<usize> {
        let rv: Option<i64> = self.read(|c, n| {
            c.query_row(
                &format!(r#"SELECT rv FROM "{}" ORDER BY seq DESC LIMIT 1 OFFSET ?1"#, n.events),
                [keep as i64],
                |r| r.get(0),
            )
            .optional()
            .ctx(|| format!("{}: compact by count", self.name()))
        })?;
        match rv {
            Some(rv) => self.compact(rv as u64),
            None => Ok(0),
        }
    }

    /// Compact away events logged more than `age` ago.
    pub fn compact_older_than(&self, age: std::time::Duration) -> Result<usize> {
        let cutoff = std::time::SystemTime::now()
            .checked_sub(age)
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let rv: Option<i64> = self.read(|c, n| {
            c.query_row(&format!(r#"SELECT MAX(rv) FROM "{}" WHERE ts < ?1"#, n.events), [cutoff], |r| r.get(0))
                .ctx(|| format!("{}: compact by age", self.name()))
        })?;
        match rv {
            Some(rv) => self.compact(rv as u64),
            None => Ok(0),
        }
    }

    /// A consistent snapshot (objects ordered by key) and the revision to watch from after it.
    pub fn snapshot(&self) -> Result<(Vec<Value>, u64)> {
        // list and last_rv in one read transaction so no write slips between them
        let (rows, rv) = self.read(|c, n| {
            let rv = read_meta_u64(c, &self.inner.p, "last_rv")?.unwrap_or(0);
            let mut s = c
                .prepare_cached(&format!(r#"SELECT key, object FROM "{}" ORDER BY key"#, n.objects))
                .ctx(|| format!("{}: snapshot", self.name()))?;
            let rows: Vec<(String, String)> = s
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|r| r.collect())
                .ctx(|| format!("{}: snapshot", self.name()))?;
            Ok((rows, rv))
        })?;
        let items = rows.iter().map(|(k, t)| self.decode(k, t)).collect::<Result<_>>()?;
        Ok((items, rv))
    }

    /// The sequence number after which the events newer than `rv` start (revisions grow with it past the
    /// compaction point).
    pub(crate) fn start_seq(&self, c: &rusqlite::Connection, n: &Names, rv: u64) -> Result<i64> {
        let cseq = self.servable(c, rv)?;
        let seq: i64 = c
            .query_row(&format!(r#"SELECT IFNULL(MAX(seq), 0) FROM "{}" WHERE rv <= ?1"#, n.events), [rv as i64], |r| {
                r.get(0)
            })
            .ctx(|| format!("{}: watch start", self.name()))?;
        Ok(seq.max(cseq))
    }
}
