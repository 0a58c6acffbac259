//! The SQLite object store: one set of tables per resource type (layout in [`crate::names`]), client-go
//! `Store` semantics. Its write path is in `write`, the relist path in `relist`, the client-go indexer in
//! `indexer`.
//!
//! A relist fills the other generation in many small transactions and one short transaction swaps it in, so
//! readers see the old list or the new one, never a half-filled one, and nothing is buffered. Every write is one
//! transaction that updates all tables, so a reader sees either all of a write or none of it.
//!
//! Reads go through a small pool of read connections (WAL lets them run while the ingester writes); each read
//! runs in one read transaction, so it sees one committed state across its statements.
//!
//! The event log stores an object's JSON only once it is superseded: the newest event of a key whose object
//! column is NULL stands for the key's current row in the objects table (the writer copies the JSON into it
//! before it changes or deletes the row). So the log does not hold a second copy of every object.

mod checkpoint;
mod indexer;
mod off_thread;
mod relist;
mod scope;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use crate::error::SqlContext;
use crate::event::WatchEvent;
use crate::names::{
    Names, create_generation, create_view, drop_generation, live_generation, read_meta, read_meta_u64, write_meta,
};
use crate::path::FieldPath;
use crate::raw::Prepared;
use crate::resource::{ResourceType, object_key};
use crate::sync::{self, lock};
use crate::{Error, Result};

use checkpoint::Checkpointer;
pub(crate) use relist::Staging;
pub(crate) use write::RowOp;
pub use write::WriteOp;

/// An index function: the index values of an object (client-go's `IndexFunc`).
pub type IndexFunc = Arc<dyn Fn(&Value) -> Vec<String> + Send + Sync>;
pub type Indexers = BTreeMap<String, IndexFunc>;

/// Per-resource-type options.
#[derive(Debug, Clone, Default)]
pub struct StoreConfig {
    /// Extra indexed fields by JSON path (beyond metadata.name, metadata.namespace, metadata.creationTimestamp).
    pub fields: Vec<String>,
}

/// Bumped when the table layout changes; an older layout is dropped and rebuilt (it is a cache: the ingester
/// relists).
const SCHEMA: &str = "3";
/// Events a watcher may fall behind the log's head before it is cut off (see [`Store::watch`]).
pub const WATCH_LAG_LIMIT: usize = 10_000;
/// Read connections per file database: queries, watch sessions and the ingester's own checks run side by side.
const READERS: usize = 3;
/// Bytes of the file each read connection maps.
const READ_MMAP: i64 = 1 << 30;

/// The connections of one database: one writer, and readers (none for `:memory:`, whose data only the writer's
/// connection can see), and the checkpoints of its WAL (none for `:memory:`, which has no WAL).
pub(crate) struct Conns {
    write: Mutex<Connection>,
    read: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    checkpoint: Option<Checkpointer>,
    /// One permit per connection that reads (see [`Store::off_thread`]).
    gate: off_thread::Gate,
}

impl Conns {
    fn writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.write)
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        if self.read.is_empty() {
            return self.writer();
        }
        // the first free one: a lone reader keeps using one connection, whose page cache stays warm
        for c in &self.read {
            if let Ok(g) = c.try_lock() {
                return g;
            }
        }
        lock(&self.read[self.next.fetch_add(1, Ordering::Relaxed) % self.read.len()])
    }

    /// See [`Checkpointer::pause`].
    fn pause_checkpoints(&self) {
        if let Some(c) = &self.checkpoint {
            c.pause();
        }
    }

    /// See [`Checkpointer::resume`].
    fn resume_checkpoints(&self) {
        if let Some(c) = &self.checkpoint {
            c.resume();
        }
    }
}

/// One SQLite database holding any number of resource types.
#[derive(Clone)]
pub struct Database {
    conns: Arc<Conns>,
    stores: Arc<Mutex<HashMap<ResourceType, Store>>>,
}

fn open_conn(path: &Path, shown: &str, cache_kib: i64) -> Result<Connection> {
    let conn = Connection::open(path).ctx(|| format!("open {shown}"))?;
    conn.busy_timeout(Duration::from_secs(30)).ctx(|| format!("busy_timeout on {shown}"))?;
    conn.execute_batch(&format!("PRAGMA cache_size = -{cache_kib}")).ctx(|| format!("cache_size on {shown}"))?;
    Ok(conn)
}

impl Database {
    /// Open (or create) `path`; `:memory:` gives a private in-memory database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let memory = shown == ":memory:";
        let mut conn = open_conn(path, &shown, 32 * 1024)?;
        let mut read = Vec::new();
        let mut checkpoint = None;
        if !memory {
            // Objects of ~2 KB fill 8 KiB pages well (one per 4 KiB page left ~40% of every page empty); only a
            // new database takes it.
            conn.execute_batch("PRAGMA page_size = 8192").ctx(|| format!("page_size on {shown}"))?;
            // WAL lets the read connections (and the REST API, sqlite3) read while the ingester writes.
            let _: String =
                conn.query_row("PRAGMA journal_mode = wal", [], |r| r.get(0)).ctx(|| format!("WAL on {shown}"))?;
            // a relist lets the WAL grow (see `stage_begin`); its file is cut back after the checkpoint
            conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 67108864")
                .ctx(|| format!("synchronous on {shown}"))?;
            checkpoint = Some(Checkpointer::start(path, &shown, &mut conn)?);
        }
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS wc_meta (prefix TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL,
               PRIMARY KEY (prefix, name))",
        )
        .ctx(|| format!("create wc_meta in {shown}"))?;
        if !memory {
            for _ in 0..READERS {
                let r = open_conn(path, &shown, 8 * 1024)?;
                // Readers map the file: index pages are shared with the OS cache instead of copied into each
                // connection's cache, and a page miss is no system call.
                r.execute_batch(&format!("PRAGMA query_only = ON; PRAGMA mmap_size = {READ_MMAP}"))
                    .ctx(|| format!("query_only on {shown}"))?;
                read.push(Mutex::new(r));
            }
        }
        let gate = off_thread::gate(read.len());
        let conns = Conns { write: Mutex::new(conn), read, next: AtomicUsize::new(0), checkpoint, gate };
        Ok(Self { conns: Arc::new(conns), stores: Arc::default() })
    }

    /// The store of one resource type, creating its tables on first use. A second call for the same type
    /// returns the same store (so watchers share one notification channel); fields in its `config` that the
    /// store does not index yet are added (filled from the stored objects), so the order in which parts of a
    /// program open a store does not decide which fields are queryable.
    pub fn store(&self, rt: ResourceType, config: StoreConfig) -> Result<Store> {
        let mut stores = lock(&self.stores);
        let fields = config.fields.iter().map(|f| FieldPath::parse(f)).collect::<Result<Vec<_>>>()?;
        if let Some(s) = stores.get(&rt) {
            s.add_fields(fields)?;
            return Ok(s.clone());
        }
        let p = rt.table_prefix();
        {
            let mut c = self.conns.writer();
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).ctx(|| format!("{rt}: schema"))?;
            if read_meta(&tx, &p, "schema")?.as_deref() != Some(SCHEMA) {
                // an older layout (or none): start over; the ingester relists
                let old: Vec<(String, String)> = {
                    let mut stmt = tx
                        .prepare("SELECT type, name FROM sqlite_master WHERE type IN ('table', 'view') AND substr(name, 1, length(?1)) = ?1")
                        .ctx(|| format!("{rt}: old tables"))?;
                    stmt.query_map([format!("{p}_")], |r| Ok((r.get(0)?, r.get(1)?)))
                        .and_then(|r| r.collect())
                        .ctx(|| format!("{rt}: old tables"))?
                };
                for (kind, name) in old {
                    let kind = if kind == "view" { "VIEW" } else { "TABLE" };
                    tx.execute_batch(&format!(r#"DROP {kind} IF EXISTS "{name}""#))
                        .ctx(|| format!("{rt}: drop old {name}"))?;
                }
                tx.execute("DELETE FROM wc_meta WHERE prefix = ?1", [&p]).ctx(|| format!("{rt}: old meta"))?;
                write_meta(&tx, &p, "schema", SCHEMA)?;
            }
            let live = live_generation(&tx, &p)?;
            tx.execute_batch(&format!(
                r#"CREATE TABLE IF NOT EXISTS "{p}_events" (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                     rv INTEGER NOT NULL, type TEXT NOT NULL, key TEXT NOT NULL, object TEXT, ts INTEGER NOT NULL);
                   CREATE INDEX IF NOT EXISTS "{p}_events_rv" ON "{p}_events" (rv);
                   CREATE INDEX IF NOT EXISTS "{p}_events_key" ON "{p}_events" (key, seq);"#
            ))
            .ctx(|| format!("create tables for {rt}"))?;
            // the other generation only holds data while a relist fills it; a process that stopped mid-relist
            // left it behind
            drop_generation(&tx, &p, 1 - live).ctx(|| format!("{rt}: clear the relist tables"))?;
            for g in [0, 1] {
                create_generation(&tx, &p, g).ctx(|| format!("create tables for {rt}"))?;
            }
            create_view(&tx, &p, live).ctx(|| format!("{rt}: objects view"))?;
            tx.commit().ctx(|| format!("{rt}: schema commit"))?;
        }
        let (last_seq, scope) = {
            let c = self.conns.writer();
            let seq = c
                .query_row(&format!(r#"SELECT IFNULL(MAX(seq), 0) FROM "{p}_events""#), [], |r| r.get(0))
                .ctx(|| format!("{rt}: last event"))?;
            (seq, scope::decode(read_meta(&c, &p, scope::META)?.as_deref()))
        };
        let (notify, _) = tokio::sync::watch::channel(last_seq);
        let store = Store {
            inner: Arc::new(Inner {
                conns: self.conns.clone(),
                name: rt.to_string(),
                rt: rt.clone(),
                p,
                fields: RwLock::default(),
                indexers: RwLock::default(),
                notify,
                staging: AtomicU64::new(0),
                warming: AtomicBool::new(false),
                scope: AtomicU8::new(scope),
                watch_lag_limit: AtomicUsize::new(WATCH_LAG_LIMIT),
                fanout: Default::default(),
            }),
        };
        store.add_fields(fields)?;
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
    conns: Arc<Conns>,
    pub(crate) name: String,
    pub(crate) rt: ResourceType,
    pub(crate) p: String,
    fields: RwLock<Vec<FieldPath>>,
    indexers: RwLock<Indexers>,
    /// The highest event sequence number committed; watch sessions wait on it.
    pub(crate) notify: tokio::sync::watch::Sender<i64>,
    /// Number of the relist in progress; a newer one supersedes it.
    staging: AtomicU64,
    /// Set while the store waits for its first list: it then answers "warming up" instead of "empty".
    warming: AtomicBool,
    /// Whether the resource is namespaced (see `scope`).
    scope: AtomicU8,
    /// Events a watcher may fall behind before it is cut off.
    pub(crate) watch_lag_limit: AtomicUsize,
    /// The ring watchers follow (see `crate::watch`), while anyone watches.
    pub(crate) fanout: Mutex<Option<tokio::sync::broadcast::Sender<Arc<WatchEvent>>>>,
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

    pub(crate) fn fields(&self) -> Vec<FieldPath> {
        sync::read(&self.inner.fields).clone()
    }

    /// Run `f` in one read transaction on a read connection, with the live generation's table names.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection, &Names) -> Result<T>) -> Result<T> {
        let c = self.inner.conns.reader();
        let tx = c.unchecked_transaction().ctx(|| format!("{}: begin read", self.name()))?;
        let names = Names::new(&self.inner.p, live_generation(&tx, &self.inner.p)?);
        let out = f(&tx, &names)?;
        // a read transaction has nothing to commit; ending it lets checkpoints move past its snapshot
        tx.rollback().ctx(|| format!("{}: end read", self.name()))?;
        Ok(out)
    }

    /// Run `f` in one write transaction, with the live generation's table names.
    pub(crate) fn write_tx<T>(&self, what: &str, f: impl FnOnce(&Transaction<'_>, &Names) -> Result<T>) -> Result<T> {
        let mut c = self.inner.conns.writer();
        let tx = c
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{}: begin {what}", self.name()))?;
        let names = Names::new(&self.inner.p, live_generation(&tx, &self.inner.p)?);
        let out = f(&tx, &names)?;
        tx.commit().ctx(|| format!("{}: commit {what}", self.name()))?;
        Ok(out)
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

    /// A tree's row columns, labels, fields and text.
    pub(crate) fn prepare(&self, obj: &Value, fields: &[FieldPath]) -> Result<Prepared> {
        let key = self.key_of(obj)?;
        Prepared::from_value(obj, key, fields).map_err(|e| match e {
            Error::Json { key, source, .. } => Error::Json { resource: self.inner.name.clone(), key, source },
            other => other,
        })
    }

    /// Index `new` fields too (filling them from the stored objects); known ones are skipped.
    fn add_fields(&self, new: Vec<FieldPath>) -> Result<()> {
        let added: Vec<FieldPath> = {
            let mut fields = sync::write(&self.inner.fields);
            let added: Vec<FieldPath> = new.into_iter().filter(|f| !fields.iter().any(|k| k.text == f.text)).collect();
            fields.extend(added.iter().cloned());
            added
        };
        if added.is_empty() {
            return Ok(());
        }
        let name = self.name().to_owned();
        self.write_tx("index fields", |tx, n| {
            for f in &added {
                let known: bool = tx
                    .query_row(
                        &format!(r#"SELECT EXISTS (SELECT 1 FROM "{}" WHERE field = ?1)"#, n.fields),
                        [&f.text],
                        |r| r.get(0),
                    )
                    .ctx(|| format!("{name}: look up field {}", f.text))?;
                if known {
                    continue;
                }
                // Fields configured now but not before are filled from the stored objects.
                let mut stmt = tx
                    .prepare(&format!(r#"SELECT key, object FROM "{}""#, n.objects))
                    .ctx(|| format!("{name}: scan"))?;
                let mut rows = stmt.query([]).ctx(|| format!("{name}: scan"))?;
                let mut ins = tx
                    .prepare(&format!(
                        r#"INSERT OR REPLACE INTO "{}" (key, field, value) VALUES (?1, ?2, ?3)"#,
                        n.fields
                    ))
                    .ctx(|| format!("{name}: fill field {}", f.text))?;
                while let Some(r) = rows.next().ctx(|| format!("{name}: scan"))? {
                    let key: String = r.get(0).ctx(|| format!("{name}: scan"))?;
                    let text: String = r.get(1).ctx(|| format!("{name}: scan"))?;
                    let obj = self.decode(&key, &text)?;
                    ins.execute(params![key, f.text, f.scalar(&obj)])
                        .ctx(|| format!("{name} {key}: fill field {}", f.text))?;
                }
            }
            Ok(())
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
        let rows: Vec<(String, String)> = self.read(|c, n| {
            let mut stmt = c
                .prepare_cached(&format!(r#"SELECT key, object FROM "{}" ORDER BY key"#, n.objects))
                .ctx(|| format!("{}: list", self.name()))?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|r| r.collect())
                .ctx(|| format!("{}: list", self.name()))
        })?;
        rows.iter().map(|(k, t)| self.decode(k, t)).collect()
    }

    pub fn list_keys(&self) -> Result<Vec<String>> {
        self.read(|c, n| {
            let mut stmt = c
                .prepare_cached(&format!(r#"SELECT key FROM "{}" ORDER BY key"#, n.objects))
                .ctx(|| format!("{}: list keys", self.name()))?;
            stmt.query_map([], |r| r.get(0)).and_then(|r| r.collect()).ctx(|| format!("{}: list keys", self.name()))
        })
    }

    pub fn len(&self) -> Result<usize> {
        self.read(|c, n| {
            c.prepare_cached(&format!(r#"SELECT count(*) FROM "{}""#, n.objects))
                .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
                .map(|n| n as usize)
                .ctx(|| format!("{}: count", self.name()))
        })
    }

    pub fn is_empty(&self) -> Result<bool> {
        self.len().map(|n| n == 0)
    }

    /// The stored object with the same key as `obj` (client-go Get).
    pub fn get(&self, obj: &Value) -> Result<Option<Value>> {
        self.get_by_key(&self.key_of(obj)?)
    }

    pub fn get_by_key(&self, key: &str) -> Result<Option<Value>> {
        self.get_text(key)?.map(|t| self.decode(key, &t)).transpose()
    }

    /// The stored JSON of `key`.
    pub(crate) fn get_text(&self, key: &str) -> Result<Option<String>> {
        self.read(|c, n| {
            c.prepare_cached(&format!(r#"SELECT object FROM "{}" WHERE key = ?1"#, n.objects))
                .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
                .ctx(|| format!("{} {key}: get", self.name()))
        })
    }

    pub(crate) fn contains_key(&self, key: &str) -> Result<bool> {
        self.read(|c, n| {
            c.prepare_cached(&format!(r#"SELECT 1 FROM "{}" WHERE key = ?1"#, n.objects))
                .and_then(|mut s| s.query_row([key], |_| Ok(())).optional())
                .map(|o| o.is_some())
                .ctx(|| format!("{} {key}: exists", self.name()))
        })
    }

    // ---- metadata ----

    /// Highest resource version the store has seen (object RVs and list RVs).
    pub fn last_resource_version(&self) -> Result<u64> {
        self.read(|c, _| Ok(read_meta_u64(c, &self.inner.p, "last_rv")?.unwrap_or(0)))
    }

    /// A named string persisted with the store (the ingester keeps its resume resourceVersion here).
    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        self.read(|c, _| read_meta(c, &self.inner.p, name))
    }

    /// Mark the store as filled by a list from the API (the ingester does): until one has been swapped in (in
    /// this process or an earlier one, for a file database) [`Store::is_ready`] is false.
    pub fn await_first_list(&self) {
        self.inner.warming.store(true, Ordering::SeqCst);
    }

    /// False while a store that awaits its first list has none.
    pub fn is_ready(&self) -> Result<bool> {
        if !self.inner.warming.load(Ordering::SeqCst) {
            return Ok(true);
        }
        let listed = self.meta("listed")?.is_some();
        if listed {
            self.inner.warming.store(false, Ordering::SeqCst);
        }
        Ok(listed)
    }

    pub fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.write_tx("set meta", |tx, _| write_meta(tx, &self.inner.p, name, value))
    }
}

fn truncate(obj: &Value) -> String {
    let s = obj.to_string();
    if s.chars().count() > 200 { format!("{}...", s.chars().take(200).collect::<String>()) } else { s }
}
