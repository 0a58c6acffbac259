//! Pages of the state at an older revision (a Kubernetes list with `resourceVersionMatch=Exact`), read without
//! rebuilding that state: an object unchanged since the revision is its current row, and only the keys changed
//! since are read from the event log as they were then. A page costs the changes since the revision plus the
//! page, whatever the size of the store or of its history.

use std::collections::BTreeSet;

use crate::error::SqlContext;
use crate::names::read_meta_u64;
use crate::store::Store;
use crate::{Error, Result};

/// Where a page of an older state starts and what it holds.
pub(crate) struct PageAt<'a> {
    pub(crate) rv: u64,
    /// Only keys after this one.
    pub(crate) after: Option<&'a str>,
    /// Only keys that start with this (`ns/` for one namespace).
    pub(crate) prefix: &'a str,
    pub(crate) limit: Option<usize>,
    /// Count the objects of that state after the page, when another follows (`remainingItemCount`).
    pub(crate) count_rest: bool,
}

/// A page of an older state: its objects as stored JSON, whether more follow and, when counted, how many.
pub(crate) struct AtPage {
    pub(crate) items: Vec<(String, String)>,
    pub(crate) more: bool,
    pub(crate) remaining: Option<usize>,
}

impl Store {
    /// Objects of the state at revision `p.rv` in key order that `keep` (given key and JSON) selects, as stored
    /// JSON, at most `p.limit`; whether more follow and, with `p.count_rest`, how many objects of that state
    /// (selected or not) follow the page. Expired when the log no longer reaches back to `p.rv`.
    pub(crate) fn page_at(&self, p: &PageAt<'_>, mut keep: impl FnMut(&str, &str) -> Result<bool>) -> Result<AtPage> {
        let name = self.name().to_owned();
        self.read(|c, n| {
            let (crv, _) = self.compacted(c)?;
            if p.rv < crv {
                return Err(self.expired(p.rv, crv));
            }
            let current = read_meta_u64(c, &self.inner.p, "last_rv")?.unwrap_or(0);
            if p.rv > current {
                return Err(Error::TooNew { resource: name.clone(), requested: p.rv, current });
            }
            let start = match p.after {
                Some(a) if a > p.prefix => a,
                _ => p.prefix,
            };
            let within = |k: &str| k.starts_with(p.prefix) && p.after.is_none_or(|a| k > a);
            // the keys changed since the revision (the log's revision index finds them)
            let changed: BTreeSet<String> = {
                let mut s = c
                    .prepare_cached(&format!(r#"SELECT DISTINCT key FROM "{}" WHERE rv > ?1"#, n.events))
                    .ctx(|| format!("{name}: changes since {}", p.rv))?;
                let keys: Vec<String> = s
                    .query_map([p.rv as i64], |r| r.get(0))
                    .and_then(|r| r.collect())
                    .ctx(|| format!("{name}: changes since {}", p.rv))?;
                keys.into_iter().filter(|k| within(k)).collect()
            };
            let mut stmt = c
                .prepare_cached(&format!(r#"SELECT key, object FROM "{}" WHERE key >= ?1 ORDER BY key"#, n.objects))
                .ctx(|| format!("{name}: state at {}", p.rv))?;
            let mut rows = stmt.query([start]).ctx(|| format!("{name}: state at {}", p.rv))?;
            // the next current row in range that did not change since the revision
            let mut next_row = || -> Result<Option<(String, String)>> {
                while let Some(r) = rows.next().ctx(|| format!("{name}: state at {}", p.rv))? {
                    let key: String = r.get(0).ctx(|| format!("{name}: state at {}", p.rv))?;
                    // the prefix's keys are contiguous from `start` on
                    if !key.starts_with(p.prefix) {
                        return Ok(None);
                    }
                    if within(&key) && !changed.contains(&key) {
                        return Ok(Some((key, r.get(1).ctx(|| format!("{name}: state at {}", p.rv))?)));
                    }
                }
                Ok(None)
            };
            let mut pending = changed.iter().peekable();
            let mut row = next_row()?;
            let mut out = Vec::new();
            // one more than a page tells whether another page follows
            while p.limit.is_none_or(|l| out.len() <= l) {
                let from_rows = match (&row, pending.peek()) {
                    (None, None) => break,
                    (Some((k, _)), Some(next)) => k < *next,
                    (Some(_), None) => true,
                    (None, Some(_)) => false,
                };
                let item = if from_rows {
                    std::mem::replace(&mut row, next_row()?)
                } else {
                    let Some(key) = pending.next() else { break };
                    self.state_text_at(c, n, key, p.rv)?.map(|text| (key.clone(), text))
                };
                if let Some((k, t)) = item
                    && keep(&k, &t)?
                {
                    out.push((k, t));
                }
            }
            let more = p.limit.is_some_and(|l| out.len() > l);
            if let Some(l) = p.limit {
                out.truncate(l);
            }
            let remaining = match out.last() {
                Some((last, _)) if more && p.count_rest => Some(self.count_at_after(c, n, p, &changed, last)?),
                _ => None,
            };
            Ok(AtPage { items: out, more, remaining })
        })
    }

    /// How many objects of the state at `p.rv` under `p.prefix` follow `last`: the current rows there, less
    /// those changed since (`changed`, the keys under the prefix), plus those of the changed that existed then.
    /// Costs a count over the key index and a look-up per change since the revision, as the page does.
    fn count_at_after(
        &self,
        c: &rusqlite::Connection,
        n: &crate::names::Names,
        p: &PageAt<'_>,
        changed: &BTreeSet<String>,
        last: &str,
    ) -> Result<usize> {
        let name = self.name();
        let ctx = || format!("{name}: count the state at {} after {last}", p.rv);
        // keys under a prefix (`ns/`) end before the prefix with its last character raised (`ns0`): a range
        // the key index answers
        let mut end = p.prefix.to_owned();
        let bound = match end.pop() {
            Some(ch) => {
                end.push(char::from_u32(ch as u32 + 1).unwrap_or(char::MAX));
                " AND key < ?2"
            }
            None => "",
        };
        let sql = format!(r#"SELECT count(*) FROM "{}" WHERE key > ?1{bound}"#, n.objects);
        let mut stmt = c.prepare_cached(&sql).ctx(ctx)?;
        let mut current: i64 = if bound.is_empty() {
            stmt.query_row([last], |r| r.get(0))
        } else {
            stmt.query_row([last, end.as_str()], |r| r.get(0))
        }
        .ctx(ctx)?;
        let mut is_row =
            c.prepare_cached(&format!(r#"SELECT count(*) FROM "{}" WHERE key = ?1"#, n.objects)).ctx(ctx)?;
        for key in changed.range::<str, _>((std::ops::Bound::Excluded(last), std::ops::Bound::Unbounded)) {
            current -= is_row.query_row([key], |r| r.get::<_, i64>(0)).ctx(ctx)?;
            if self.state_text_at(c, n, key, p.rv)?.is_some() {
                current += 1;
            }
        }
        Ok(current.max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::{Database, ResourceType};

    fn pod(i: usize, rv: u64, v: u32) -> Value {
        let ns = if i.is_multiple_of(3) { "a" } else { "b" };
        json!({"metadata": {"namespace": ns, "name": format!("p{i:02}"), "resourceVersion": rv.to_string(),
                            "labels": {"v": v.to_string()}}})
    }

    fn walk(s: &Store, rv: u64, prefix: &str, limit: Option<usize>, v: Option<&str>) -> Result<Vec<Value>> {
        let (mut got, mut after) = (Vec::new(), None::<String>);
        loop {
            let at = PageAt { rv, after: after.as_deref(), prefix, limit, count_rest: true };
            let AtPage { items, more, remaining } = s.page_at(&at, |k, t| {
                let o: Value = serde_json::from_str(t).unwrap();
                Ok(k.starts_with(prefix) && v.is_none_or(|v| o["metadata"]["labels"]["v"] == v))
            })?;
            assert!(limit.is_none_or(|l| items.len() <= l));
            after = items.last().map(|(k, _)| k.clone());
            if let Some(last) = after.as_deref().filter(|_| more) {
                let rest = s
                    .list_at(rv)?
                    .iter()
                    .map(|o| crate::object_key(o).unwrap())
                    .filter(|k| k.starts_with(prefix) && k.as_str() > last)
                    .count();
                assert_eq!(remaining, Some(rest), "at {rv}, {prefix:?} after {last}");
            }
            got.extend(items.iter().map(|(_, t)| serde_json::from_str::<Value>(t).unwrap()));
            if !more {
                return Ok(got);
            }
        }
    }

    #[test]
    fn pages_at_every_revision_hold_the_state_then() {
        let db = Database::open(":memory:").unwrap();
        let s = db.store(ResourceType::new("", "v1", "Pod"), Default::default()).unwrap();
        let mut rv = 0;
        for i in 0..12 {
            rv += 1;
            s.add(pod(i, rv, 0)).unwrap();
        }
        for i in (0..12).step_by(4) {
            rv += 1;
            s.update(pod(i, rv, 1)).unwrap();
        }
        for i in (1..12).step_by(5) {
            rv += 1;
            s.delete(&pod(i, rv, 0)).unwrap();
        }
        // back under a deleted key, and a key between existing ones
        rv += 1;
        s.add(pod(1, rv, 2)).unwrap();
        rv += 1;
        s.add(json!({"metadata": {"namespace": "a", "name": "p00x", "resourceVersion": rv.to_string()}})).unwrap();
        for at in 1..=rv {
            let state = s.list_at(at).unwrap();
            for (prefix, limit, v) in [
                ("", Some(1), None),
                ("", Some(5), None),
                ("a/", Some(2), None),
                ("b/", None, None),
                ("", Some(2), Some("0")),
            ] {
                let want: Vec<&Value> = state
                    .iter()
                    .filter(|o| crate::object_key(o).unwrap().starts_with(prefix))
                    .filter(|o| v.is_none_or(|v| o["metadata"]["labels"]["v"] == v))
                    .collect();
                let got = walk(&s, at, prefix, limit, v).unwrap();
                assert_eq!(got.iter().collect::<Vec<_>>(), want, "at {at}, {prefix:?}, limit {limit:?}, v {v:?}");
            }
        }
        assert!(matches!(walk(&s, rv + 1, "", None, None), Err(Error::TooNew { .. })));
        s.compact(5).unwrap();
        assert!(matches!(walk(&s, 4, "", None, None), Err(Error::Expired { .. })));
        assert_eq!(walk(&s, 5, "", Some(3), None).unwrap().len(), s.list_at(5).unwrap().len());
    }
}
