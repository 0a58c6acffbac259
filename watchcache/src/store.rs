//! The SQLite object store: one set of tables per resource type, client-go `Store`/`Indexer` semantics.
//!
//! Tables (prefix `wc_<group>_<version>_<kind>_<hash>`): `_objects` (one row per key with namespace, name, uid,
//! resourceVersion, creationTimestamp and the JSON), `_fields` (configured JSON-path fields), `_labels`,
//! `_indexes` (values of the registered index functions, computed on write) and `_events` (the event log).
//! Every write is one transaction that updates all of them, so a reader sees either all of a write or none of it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::Value;

use crate::error::SqlContext;
use crate::events::{EventType, WatchEvent};
use crate::path::FieldPath;
use crate::resource::{ResourceType, meta_str, object_key, parse_rv};
use crate::{Error, Result};

/// An index function: the index values of an object (client-go's `IndexFunc`).
pub type IndexFunc = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;
pub type Indexers = BTreeMap<String, IndexFunc>;

/// Per-resource-type options.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// Extra indexed fields by JSON path (beyond metadata.name, metadata.namespace, metadata.creationTimestamp).
    pub fields: Vec<String>,
}

/// One SQLite database holding any number of resource types.
#[derive(Clone)]
pub struct Database {
    conn: Arc<Mutex<Connection>>,
    stores: Arc<Mutex<HashMap<ResourceType, Store>>>,
}

pub(crate) fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves SQLite consistent (the transaction rolls back on drop).
    conn.lock().unwrap_or_else(|e| e.into_inner())
}

impl Database {
    /// Open (or create) `path`; `:memory:` gives a private in-memory database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let conn = Connection::open(path).ctx(|| format!("open {shown}"))?;
        conn.busy_timeout(Duration::from_secs(30)).ctx(|| format!("busy_timeout on {shown}"))?;
        if shown != ":memory:" {
            // WAL lets other readers (the REST API, sqlite3) read while the ingester writes.
            let _: String =
                conn.query_row("PRAGMA journal_mode = wal", [], |r| r.get(0)).ctx(|| format!("WAL on {shown}"))?;
            conn.execute_batch("PRAGMA synchronous = NORMAL").ctx(|| format!("synchronous on {shown}"))?;
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS wc_meta (prefix TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
               PRIMARY KEY (prefix, name))",
        )
        .ctx(|| format!("create wc_meta in {shown}"))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), stores: Arc::default() })
    }

    /// The store of one resource type, creating its tables on first use. A second call for the same type
    /// returns the same store (so watchers share one notification channel); its `config` is then ignored.
    pub fn store(&self, rt: ResourceType, config: StoreConfig) -> Result<Store> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = stores.get(&rt) {
            return Ok(s.clone());
        }
        let fields = config.fields.iter().map(|f| FieldPath::parse(f)).collect::<Result<Vec<_>>>()?;
        let p = rt.table_prefix();
        {
            let c = lock(&self.conn);
            c.execute_batch(&format!(
                r#"CREATE TABLE IF NOT EXISTS "{p}_objects" (key TEXT PRIMARY KEY, namespace TEXT NOT NULL,
                     name TEXT NOT NULL, uid TEXT, resource_version TEXT, created TEXT, object TEXT NOT NULL);
                   CREATE INDEX IF NOT EXISTS "{p}_objects_ns" ON "{p}_objects" (namespace, name);
                   CREATE INDEX IF NOT EXISTS "{p}_objects_name" ON "{p}_objects" (name);
                   CREATE INDEX IF NOT EXISTS "{p}_objects_created" ON "{p}_objects" (created);
                   CREATE TABLE IF NOT EXISTS "{p}_fields" (key TEXT NOT NULL, field TEXT NOT NULL, value TEXT,
                     PRIMARY KEY (key, field));
                   CREATE INDEX IF NOT EXISTS "{p}_fields_fv" ON "{p}_fields" (field, value);
                   CREATE TABLE IF NOT EXISTS "{p}_labels" (key TEXT NOT NULL, label TEXT NOT NULL,
                     value TEXT NOT NULL, PRIMARY KEY (key, label));
                   CREATE INDEX IF NOT EXISTS "{p}_labels_lv" ON "{p}_labels" (label, value);
                   CREATE TABLE IF NOT EXISTS "{p}_indexes" (name TEXT NOT NULL, value TEXT NOT NULL,
                     key TEXT NOT NULL, PRIMARY KEY (name, value, key));
                   CREATE INDEX IF NOT EXISTS "{p}_indexes_key" ON "{p}_indexes" (key);
                   CREATE TABLE IF NOT EXISTS "{p}_events" (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     rv INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL, object TEXT NOT NULL,
                     ts INTEGER NOT NULL);
                   CREATE INDEX IF NOT EXISTS "{p}_events_rv" ON "{p}_events" (rv);
                   CREATE INDEX IF NOT EXISTS "{p}_events_key" ON "{p}_events" (key, seq);"#
            ))
            .ctx(|| format!("create tables for {rt}"))?;
            // Fields configured now but not before (or changed) are filled from the stored objects.
            for f in &fields {
                let known: bool = c
                    .query_row(
                        &format!(r#"SELECT EXISTS (SELECT 1 FROM "{p}_fields" WHERE field = ?1)"#),
                        [&f.text],
                        |r| r.get(0),
                    )
                    .ctx(|| format!("{rt}: look up field {}", f.text))?;
                if !known {
                    let mut stmt = c
                        .prepare(&format!(r#"SELECT key, object FROM "{p}_objects""#))
                        .ctx(|| format!("{rt}: scan"))?;
                    let rows: Vec<(String, String)> = stmt
                        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|rows| rows.collect())
                        .ctx(|| format!("{rt}: scan"))?;
                    for (key, text) in rows {
                        let obj: Value = serde_json::from_str(&text).map_err(|source| Error::Json {
                            resource: rt.to_string(),
                            key: key.clone(),
                            source,
                        })?;
                        c.execute(
                            &format!(r#"INSERT OR REPLACE INTO "{p}_fields" (key, field, value) VALUES (?1, ?2, ?3)"#),
                            params![key, f.text, f.scalar(&obj)],
                        )
                        .ctx(|| format!("{rt} {key}: fill field {}", f.text))?;
                    }
                }
            }
        }
        let last_seq = {
            let c = lock(&self.conn);
            c.query_row(&format!(r#"SELECT IFNULL(MAX(seq), 0) FROM "{p}_events""#), [], |r| r.get(0))
                .ctx(|| format!("{rt}: last event"))?
        };
        let (notify, _) = tokio::sync::watch::channel(last_seq);
        let store = Store {
            inner: Arc::new(Inner {
                conn: self.conn.clone(),
                name: rt.to_string(),
                rt: rt.clone(),
                p,
                fields,
                indexers: RwLock::default(),
                notify,
            }),
        };
        stores.insert(rt, store.clone());
        Ok(store)
    }
}

/// The objects of one resource type. Cheap to clone. Methods block on SQLite: call them from
/// `spawn_blocking` (or a blocking thread) in async code.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) conn: Arc<Mutex<Connection>>,
    pub(crate) name: String,
    pub(crate) rt: ResourceType,
    pub(crate) p: String,
    pub(crate) fields: Vec<FieldPath>,
    indexers: RwLock<Indexers>,
    /// The highest event sequence number committed; watch sessions wait on it.
    pub(crate) notify: tokio::sync::watch::Sender<i64>,
}

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

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl Store {
    pub fn resource_type(&self) -> &ResourceType {
        &self.inner.rt
    }

    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        lock(&self.inner.conn)
    }

    pub(crate) fn key_of(&self, obj: &Value) -> Result<String> {
        object_key(obj).ok_or_else(|| Error::NoName { resource: self.inner.name.clone(), object: truncate(obj) })
    }

    pub(crate) fn decode(&self, key: &str, text: &str) -> Result<Value> {
        serde_json::from_str(text).map_err(|source| Error::Json {
            resource: self.inner.name.clone(),
            key: key.to_owned(),
            source,
        })
    }

    // ---- client-go Store ----

    /// Insert or replace (client-go Add).
    pub fn add(&self, obj: Value) -> Result<()> {
        self.write(vec![WriteOp::Upsert(obj)]).map(drop)
    }

    /// Insert or replace (client-go Update has the same effect as Add).
    pub fn update(&self, obj: Value) -> Result<()> {
        self.add(obj)
    }

    /// Remove the object's key; a missing key is not an error (client-go Delete).
    pub fn delete(&self, obj: &Value) -> Result<()> {
        let key = self.key_of(obj)?;
        self.write(vec![WriteOp::Delete { key, object: Some(obj.clone()) }]).map(drop)
    }

    pub fn list(&self) -> Result<Vec<Value>> {
        let c = self.conn();
        let p = &self.inner.p;
        let mut stmt = c
            .prepare_cached(&format!(r#"SELECT key, object FROM "{p}_objects" ORDER BY key"#))
            .ctx(|| format!("{}: list", self.name()))?;
        let rows: Vec<(String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .and_then(|r| r.collect())
            .ctx(|| format!("{}: list", self.name()))?;
        rows.iter().map(|(k, t)| self.decode(k, t)).collect()
    }

    pub fn list_keys(&self) -> Result<Vec<String>> {
        let c = self.conn();
        let p = &self.inner.p;
        let mut stmt = c
            .prepare_cached(&format!(r#"SELECT key FROM "{p}_objects" ORDER BY key"#))
            .ctx(|| format!("{}: list keys", self.name()))?;
        stmt.query_map([], |r| r.get(0)).and_then(|r| r.collect()).ctx(|| format!("{}: list keys", self.name()))
    }

    pub fn len(&self) -> Result<usize> {
        let c = self.conn();
        let p = &self.inner.p;
        c.query_row(&format!(r#"SELECT count(*) FROM "{p}_objects""#), [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .ctx(|| format!("{}: count", self.name()))
    }

    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// The stored object with the same key as `obj` (client-go Get).
    pub fn get(&self, obj: &Value) -> Result<Option<Value>> {
        self.get_by_key(&self.key_of(obj)?)
    }

    pub fn get_by_key(&self, key: &str) -> Result<Option<Value>> {
        let text: Option<String> = {
            let c = self.conn();
            let p = &self.inner.p;
            c.query_row(&format!(r#"SELECT object FROM "{p}_objects" WHERE key = ?1"#), [key], |r| r.get(0))
                .optional()
                .ctx(|| format!("{} {key}: get", self.name()))?
        };
        text.map(|t| self.decode(key, &t)).transpose()
    }

    /// Atomically make the store hold exactly `items` (client-go Replace): one transaction, so readers see the
    /// old set or the new one, never a half-filled or empty store. Differences are logged as events; deletes get
    /// `resource_version` (the list's) when it is numeric.
    pub fn replace(&self, items: Vec<Value>, resource_version: Option<&str>) -> Result<()> {
        let list_rv = resource_version.and_then(|s| s.parse::<u64>().ok());
        self.write_inner(items.into_iter().map(WriteOp::Upsert).collect(), Some(list_rv)).map(drop)
    }

    /// Recompute configured fields and index values of every object (client-go Resync is a no-op for a plain
    /// cache; here it is useful after index functions change).
    pub fn resync(&self) -> Result<()> {
        let items = self.list()?;
        let indexers = self.indexers();
        let mut c = self.conn();
        let tx = c.transaction().ctx(|| format!("{}: resync", self.name()))?;
        for obj in &items {
            let key = self.key_of(obj)?;
            self.write_derived(&tx, &key, obj, &indexers)?;
        }
        tx.commit().ctx(|| format!("{}: resync commit", self.name()))
    }

    /// Apply a batch of writes in one transaction; returns the events logged (unchanged upserts and deletes of
    /// missing keys log nothing).
    pub fn write(&self, ops: Vec<WriteOp>) -> Result<Vec<WatchEvent>> {
        self.write_inner(ops, None)
    }

    /// `replace`: Some(list rv) turns the batch into a full replacement of the store's contents.
    fn write_inner(&self, mut ops: Vec<WriteOp>, replace: Option<Option<u64>>) -> Result<Vec<WatchEvent>> {
        let name = self.name().to_owned();
        let p = self.inner.p.clone();
        let indexers = self.indexers();
        let mut events = Vec::new();
        let last_seq;
        {
            let mut c = self.conn();
            let tx = c.transaction().ctx(|| format!("{name}: begin write"))?;
            let mut last_rv = read_meta_u64(&tx, &p, "last_rv")?.unwrap_or(0);
            if let Some(list_rv) = replace {
                let mut keep = BTreeSet::new();
                for op in &ops {
                    if let WriteOp::Upsert(o) = op {
                        keep.insert(self.key_of(o)?);
                    }
                }
                let existing: Vec<String> = {
                    let mut stmt = tx
                        .prepare_cached(&format!(r#"SELECT key FROM "{p}_objects""#))
                        .ctx(|| format!("{name}: replace scan"))?;
                    stmt.query_map([], |r| r.get(0)).and_then(|r| r.collect()).ctx(|| format!("{name}: replace"))?
                };
                for key in existing.into_iter().filter(|k| !keep.contains(k)) {
                    // Deletions discovered by a relist happened at or before the list's revision.
                    let object = list_rv.map(|rv| stub_with_rv(&key, rv));
                    ops.push(WriteOp::Delete { key, object });
                }
            }
            let ts = now_ms();
            for op in ops {
                if let Some(ev) = self.apply(&tx, op, &mut last_rv, ts, &indexers)? {
                    events.push(ev);
                }
            }
            if let Some(Some(rv)) = replace {
                last_rv = last_rv.max(rv);
            }
            write_meta(&tx, &p, "last_rv", &last_rv.to_string())?;
            last_seq = events.last().map(|e| e.seq);
            tx.commit().ctx(|| format!("{name}: commit"))?;
        }
        if let Some(seq) = last_seq {
            self.inner.notify.send_replace(seq);
        }
        Ok(events)
    }

    fn apply(
        &self,
        tx: &Transaction<'_>,
        op: WriteOp,
        last_rv: &mut u64,
        ts: i64,
        indexers: &Indexers,
    ) -> Result<Option<WatchEvent>> {
        let p = &self.inner.p;
        let name = self.name();
        let (key, kind, object) = match op {
            WriteOp::Upsert(obj) => {
                let key = self.key_of(&obj)?;
                let text = obj.to_string();
                let prev: Option<String> = tx
                    .query_row(&format!(r#"SELECT object FROM "{p}_objects" WHERE key = ?1"#), [&key], |r| r.get(0))
                    .optional()
                    .ctx(|| format!("{name} {key}: read"))?;
                if prev.as_deref() == Some(text.as_str()) {
                    return Ok(None);
                }
                let (ns, nm) = match key.split_once('/') {
                    Some((ns, n)) => (ns, n),
                    None => ("", key.as_str()),
                };
                tx.prepare_cached(&format!(
                    r#"INSERT OR REPLACE INTO "{p}_objects" (key, namespace, name, uid, resource_version, created,
                         object) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"#
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        key,
                        ns,
                        nm,
                        meta_str(&obj, "uid"),
                        meta_str(&obj, "resourceVersion"),
                        meta_str(&obj, "creationTimestamp"),
                        text
                    ])
                })
                .ctx(|| format!("{name} {key}: write"))?;
                self.write_derived(tx, &key, &obj, indexers)?;
                (key, if prev.is_some() { EventType::Modified } else { EventType::Added }, obj)
            }
            WriteOp::Delete { key, object } => {
                let prev: Option<String> = tx
                    .query_row(&format!(r#"SELECT object FROM "{p}_objects" WHERE key = ?1"#), [&key], |r| r.get(0))
                    .optional()
                    .ctx(|| format!("{name} {key}: read"))?;
                let Some(prev) = prev else { return Ok(None) };
                for t in ["objects", "fields", "labels", "indexes"] {
                    tx.prepare_cached(&format!(r#"DELETE FROM "{p}_{t}" WHERE key = ?1"#))
                        .and_then(|mut s| s.execute([&key]))
                        .ctx(|| format!("{name} {key}: delete from {t}"))?;
                }
                let obj = match object {
                    Some(o) => o,
                    None => self.decode(&key, &prev)?,
                };
                (key, EventType::Deleted, obj)
            }
        };
        let rv = match parse_rv(&object) {
            Some(rv) => rv,
            None => *last_rv + 1,
        };
        *last_rv = (*last_rv).max(rv);
        tx.prepare_cached(&format!(
            r#"INSERT INTO "{p}_events" (rv, type, key, object, ts) VALUES (?1, ?2, ?3, ?4, ?5)"#
        ))
        .and_then(|mut s| s.execute(params![rv as i64, kind.as_str(), key, object.to_string(), ts]))
        .ctx(|| format!("{name} {key}: log event"))?;
        let seq = tx.last_insert_rowid();
        Ok(Some(WatchEvent { seq, rv, kind, key, object }))
    }

    /// Labels, configured fields and index values of one object, replacing any previous ones.
    fn write_derived(&self, tx: &Transaction<'_>, key: &str, obj: &Value, indexers: &Indexers) -> Result<()> {
        let p = &self.inner.p;
        let name = self.name();
        for t in ["fields", "labels", "indexes"] {
            tx.prepare_cached(&format!(r#"DELETE FROM "{p}_{t}" WHERE key = ?1"#))
                .and_then(|mut s| s.execute([key]))
                .ctx(|| format!("{name} {key}: clear {t}"))?;
        }
        if let Some(labels) = obj.get("metadata").and_then(|m| m.get("labels")).and_then(Value::as_object) {
            let mut s = tx
                .prepare_cached(&format!(r#"INSERT INTO "{p}_labels" (key, label, value) VALUES (?1, ?2, ?3)"#))
                .ctx(|| format!("{name} {key}: labels"))?;
            for (k, v) in labels {
                let v = v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
                s.execute(params![key, k, v]).ctx(|| format!("{name} {key}: label {k}"))?;
            }
        }
        let mut s = tx
            .prepare_cached(&format!(r#"INSERT INTO "{p}_fields" (key, field, value) VALUES (?1, ?2, ?3)"#))
            .ctx(|| format!("{name} {key}: fields"))?;
        for f in &self.inner.fields {
            s.execute(params![key, f.text, f.scalar(obj)]).ctx(|| format!("{name} {key}: field {}", f.text))?;
        }
        let mut s = tx
            .prepare_cached(&format!(r#"INSERT OR IGNORE INTO "{p}_indexes" (name, value, key) VALUES (?1, ?2, ?3)"#))
            .ctx(|| format!("{name} {key}: indexes"))?;
        for (index, f) in indexers {
            for v in f(obj) {
                s.execute(params![index, v, key]).ctx(|| format!("{name} {key}: index {index}"))?;
            }
        }
        Ok(())
    }

    // ---- client-go Indexer ----

    /// Register index functions; existing objects are indexed at once. A name already registered is an error.
    pub fn add_indexers(&self, new: Indexers) -> Result<()> {
        {
            let mut idx = self.inner.indexers.write().unwrap_or_else(|e| e.into_inner());
            if let Some(dup) = new.keys().find(|k| idx.contains_key(*k)) {
                return Err(Error::IndexerConflict { resource: self.name().to_owned(), index: dup.clone() });
            }
            idx.extend(new.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let items = self.list()?;
        let mut c = self.conn();
        let p = &self.inner.p;
        let name = self.name();
        let tx = c.transaction().ctx(|| format!("{name}: add indexers"))?;
        for (index, f) in &new {
            // Rows left by an earlier process with a different function under this name are stale.
            tx.execute(&format!(r#"DELETE FROM "{p}_indexes" WHERE name = ?1"#), [index])
                .ctx(|| format!("{name}: clear index {index}"))?;
            for obj in &items {
                let key = self.key_of(obj)?;
                for v in f(obj) {
                    tx.execute(
                        &format!(r#"INSERT OR IGNORE INTO "{p}_indexes" (name, value, key) VALUES (?1, ?2, ?3)"#),
                        params![index, v, key],
                    )
                    .ctx(|| format!("{name} {key}: index {index}"))?;
                }
            }
        }
        tx.commit().ctx(|| format!("{name}: add indexers commit"))
    }

    pub fn indexers(&self) -> Indexers {
        self.inner.indexers.read().unwrap_or_else(|e| e.into_inner()).clone()
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
        let c = self.conn();
        let p = &self.inner.p;
        let mut s = c
            .prepare_cached(&format!(r#"SELECT key FROM "{p}_indexes" WHERE name = ?1 AND value = ?2 ORDER BY key"#))
            .ctx(|| format!("{}: index {index}", self.name()))?;
        s.query_map([index, value], |r| r.get(0))
            .and_then(|r| r.collect())
            .ctx(|| format!("{}: index {index}={value}", self.name()))
    }

    /// Objects whose `index` values include `value`.
    pub fn by_index(&self, index: &str, value: &str) -> Result<Vec<Value>> {
        let keys = self.index_keys(index, value)?;
        self.objects_by_keys(keys)
    }

    /// Every value of `index` that at least one object has (unknown index: empty, as in client-go).
    pub fn list_index_func_values(&self, index: &str) -> Result<Vec<String>> {
        let c = self.conn();
        let p = &self.inner.p;
        let mut s = c
            .prepare_cached(&format!(r#"SELECT DISTINCT value FROM "{p}_indexes" WHERE name = ?1 ORDER BY value"#))
            .ctx(|| format!("{}: index values {index}", self.name()))?;
        s.query_map([index], |r| r.get(0)).and_then(|r| r.collect()).ctx(|| format!("{}: index {index}", self.name()))
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

    // ---- metadata ----

    /// Highest resource version the store has seen (object RVs and list RVs).
    pub fn last_resource_version(&self) -> Result<u64> {
        let c = self.conn();
        Ok(read_meta_u64(&c, &self.inner.p, "last_rv")?.unwrap_or(0))
    }

    /// A named string persisted with the store (the ingester keeps its resume resourceVersion here).
    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        let c = self.conn();
        read_meta(&c, &self.inner.p, name)
    }

    pub fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        let c = self.conn();
        write_meta(&c, &self.inner.p, name, value)
    }
}

fn stub_with_rv(key: &str, rv: u64) -> Value {
    let (ns, name) = match key.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, key),
    };
    let mut meta = serde_json::json!({"name": name, "resourceVersion": rv.to_string()});
    if let (Some(ns), Some(m)) = (ns, meta.as_object_mut()) {
        m.insert("namespace".into(), ns.into());
    }
    serde_json::json!({ "metadata": meta })
}

fn truncate(obj: &Value) -> String {
    let s = obj.to_string();
    if s.chars().count() > 200 { format!("{}...", s.chars().take(200).collect::<String>()) } else { s }
}

pub(crate) fn read_meta(c: &Connection, prefix: &str, name: &str) -> Result<Option<String>> {
    c.query_row("SELECT value FROM wc_meta WHERE prefix = ?1 AND name = ?2", [prefix, name], |r| r.get(0))
        .optional()
        .ctx(|| format!("{prefix}: read meta {name}"))
}

pub(crate) fn read_meta_u64(c: &Connection, prefix: &str, name: &str) -> Result<Option<u64>> {
    Ok(read_meta(c, prefix, name)?.and_then(|s| s.parse().ok()))
}

pub(crate) fn write_meta(c: &Connection, prefix: &str, name: &str, value: &str) -> Result<()> {
    c.execute("INSERT OR REPLACE INTO wc_meta (prefix, name, value) VALUES (?1, ?2, ?3)", [prefix, name, value])
        .map(drop)
        .ctx(|| format!("{prefix}: write meta {name}"))
}
