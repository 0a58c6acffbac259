//! The SQLite object store: one set of tables per resource type, client-go `Store`/`Indexer` semantics.
//!
//! Tables (prefix `wc_<group>_<version>_<kind>_<hash>`): two generations `_g0_*`/`_g1_*` of `objects` (one row
//! per key with namespace, name, uid, resourceVersion, creationTimestamp and the JSON), `fields` (configured
//! JSON-path fields), `labels` and `indexes` (values of the registered index functions), plus `_events` (the
//! event log) and a view `_objects` of the live objects for other readers (sqlite3, scripts). `wc_meta` names the
//! live generation. A relist fills the other generation in many small transactions and one short transaction
//! swaps it in, so readers see the old list or the new one, never a half-filled one, and nothing is buffered.
//! Every write is one transaction that updates all tables, so a reader sees either all of a write or none of it.
//!
//! Reads go through a small pool of read connections (WAL lets them run while the ingester writes); each read
//! runs in one read transaction, so it sees one committed state across its statements.
//!
//! The event log stores an object's JSON only once it is superseded: the newest event of a key whose object
//! column is NULL stands for the key's current row in the objects table (the writer copies the JSON into it
//! before it changes or deletes the row). So the log does not hold a second copy of every object.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use crate::error::SqlContext;
use crate::events::{EventType, WatchEvent};
use crate::path::FieldPath;
use crate::raw::Prepared;
use crate::resource::{ResourceType, object_key, parse_rv};
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

/// Bumped when the table layout changes; an older layout is dropped and rebuilt (it is a cache: the ingester
/// relists).
const SCHEMA: &str = "2";
/// Read connections per file database: queries, watch sessions and the ingester's own checks run side by side.
const READERS: usize = 3;
/// Bytes of the file each read connection maps.
const READ_MMAP: i64 = 1 << 30;
/// WAL pages between checkpoints outside relists (SQLite's default).
const AUTOCHECKPOINT: i64 = 1000;

/// The connections of one database: one writer, and readers (none for `:memory:`, whose data only the writer's
/// connection can see).
pub(crate) struct Conns {
    write: Mutex<Connection>,
    read: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

pub(crate) fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves SQLite consistent (the transaction rolls back on drop).
    conn.lock().unwrap_or_else(|e| e.into_inner())
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

/// The table names of one resource type in one generation.
pub(crate) struct Names {
    pub(crate) objects: String,
    pub(crate) fields: String,
    pub(crate) labels: String,
    pub(crate) indexes: String,
    pub(crate) events: String,
}

impl Names {
    fn new(p: &str, generation: i64) -> Self {
        Self {
            objects: format!("{p}_g{generation}_objects"),
            fields: format!("{p}_g{generation}_fields"),
            labels: format!("{p}_g{generation}_labels"),
            indexes: format!("{p}_g{generation}_indexes"),
            events: format!("{p}_events"),
        }
    }

    /// `o.object`, or for a lazily logged event (NULL object) the key's current row: an expression over the
    /// events table aliased `e`.
    pub(crate) fn event_object(&self) -> String {
        format!(r#"IFNULL(e.object, (SELECT lo.object FROM "{}" lo WHERE lo.key = e.key))"#, self.objects)
    }
}

/// Tables of one generation. Labels, fields and index values are small rows looked up by key or by value:
/// WITHOUT ROWID keeps each in one b-tree ordered by its primary key. The object indexes carry the key (and
/// `_cols` the sortable columns by key), so filtering, counting and sorting read only index pages, never the
/// rows with their JSON, which queries fetch for the returned page only.
fn create_generation(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
    create_generation_tables(c, p, generation)?;
    create_generation_indexes(c, p, generation)
}

/// The tables of a generation with their primary keys only: a relist fills them in key order (the API lists
/// in key order), which appends to those b-trees, and builds the other indexes once the rows are in.
fn create_generation_tables(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
    let n = Names::new(p, generation);
    let (o, f, l, i) = (&n.objects, &n.fields, &n.labels, &n.indexes);
    c.execute_batch(&format!(
        r#"CREATE TABLE IF NOT EXISTS "{o}" (key TEXT PRIMARY KEY, namespace TEXT NOT NULL, name TEXT NOT NULL,
             uid TEXT, resource_version TEXT, rv INTEGER, created TEXT, object TEXT NOT NULL);
           CREATE TABLE IF NOT EXISTS "{f}" (key TEXT NOT NULL, field TEXT NOT NULL, value TEXT,
             PRIMARY KEY (key, field)) WITHOUT ROWID;
           CREATE TABLE IF NOT EXISTS "{l}" (key TEXT NOT NULL, label TEXT NOT NULL, value TEXT NOT NULL,
             PRIMARY KEY (key, label)) WITHOUT ROWID;
           CREATE TABLE IF NOT EXISTS "{i}" (name TEXT NOT NULL, value TEXT NOT NULL, key TEXT NOT NULL,
             PRIMARY KEY (name, value, key)) WITHOUT ROWID;"#
    ))
}

/// The secondary indexes of a generation: one sorted build each when a relist's rows are in, instead of a
/// random insert into each for every row.
fn create_generation_indexes(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
    let n = Names::new(p, generation);
    let (o, f, l, i) = (&n.objects, &n.fields, &n.labels, &n.indexes);
    c.execute_batch(&format!(
        r#"CREATE INDEX IF NOT EXISTS "{o}_ns" ON "{o}" (namespace, name, key);
           CREATE INDEX IF NOT EXISTS "{o}_ns_created" ON "{o}" (namespace, created, key);
           CREATE INDEX IF NOT EXISTS "{o}_name" ON "{o}" (name, key);
           CREATE INDEX IF NOT EXISTS "{o}_created" ON "{o}" (created, key);
           CREATE INDEX IF NOT EXISTS "{o}_cols" ON "{o}" (key, namespace, name, created);
           CREATE INDEX IF NOT EXISTS "{f}_fv" ON "{f}" (field, value);
           CREATE INDEX IF NOT EXISTS "{l}_lv" ON "{l}" (label, value);
           CREATE INDEX IF NOT EXISTS "{i}_key" ON "{i}" (key);"#
    ))
}

fn drop_generation(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
    let n = Names::new(p, generation);
    for t in [&n.objects, &n.fields, &n.labels, &n.indexes] {
        c.execute_batch(&format!(r#"DROP TABLE IF EXISTS "{t}""#))?;
    }
    Ok(())
}

/// The view other readers use; recreated whenever the live generation changes.
fn create_view(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
    let n = Names::new(p, generation);
    c.execute_batch(&format!(
        r#"DROP VIEW IF EXISTS "{p}_objects"; CREATE VIEW "{p}_objects" AS SELECT * FROM "{}";"#,
        n.objects
    ))
}

pub(crate) fn live_generation(c: &Connection, p: &str) -> Result<i64> {
    Ok(read_meta_u64(c, p, "generation")?.unwrap_or(0) as i64)
}

impl Database {
    /// Open (or create) `path`; `:memory:` gives a private in-memory database.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let memory = shown == ":memory:";
        let conn = open_conn(path, &shown, 32 * 1024)?;
        let mut read = Vec::new();
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
        let conns = Conns { write: Mutex::new(conn), read, next: AtomicUsize::new(0) };
        Ok(Self { conns: Arc::new(conns), stores: Arc::default() })
    }

    /// The store of one resource type, creating its tables on first use. A second call for the same type
    /// returns the same store (so watchers share one notification channel); fields in its `config` that the
    /// store does not index yet are added (filled from the stored objects), so the order in which parts of a
    /// program open a store does not decide which fields are queryable.
    pub fn store(&self, rt: ResourceType, config: StoreConfig) -> Result<Store> {
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
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
        let last_seq = {
            let c = self.conns.writer();
            c.query_row(&format!(r#"SELECT IFNULL(MAX(seq), 0) FROM "{p}_events""#), [], |r| r.get(0))
                .ctx(|| format!("{rt}: last event"))?
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

/// A relist in progress: objects go into the generation that is not live, and [`Store::stage_commit`] swaps it
/// in. Obtained from [`Store::stage_begin`].
pub(crate) struct Staging {
    id: u64,
    generation: i64,
    items: usize,
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// One write in the store's own terms (the ingester builds these without a JSON tree).
pub(crate) enum Op {
    Upsert(Prepared),
    Delete { key: String, object: Option<Prepared> },
}

/// What one applied write logged.
pub(crate) struct Applied {
    seq: i64,
    rv: u64,
    kind: EventType,
    key: String,
    /// The previous object of a delete that named none, decoded (its event carries it).
    deleted: Option<Value>,
}

impl Store {
    pub fn resource_type(&self) -> &ResourceType {
        &self.inner.rt
    }

    pub(crate) fn name(&self) -> &str {
        &self.inner.name
    }

    pub(crate) fn fields(&self) -> Vec<FieldPath> {
        self.inner.fields.read().unwrap_or_else(|e| e.into_inner()).clone()
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
            let mut fields = self.inner.fields.write().unwrap_or_else(|e| e.into_inner());
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
        let text: Option<String> = self.read(|c, n| {
            c.prepare_cached(&format!(r#"SELECT object FROM "{}" WHERE key = ?1"#, n.objects))
                .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
                .ctx(|| format!("{} {key}: get", self.name()))
        })?;
        text.map(|t| self.decode(key, &t)).transpose()
    }

    pub(crate) fn contains_key(&self, key: &str) -> Result<bool> {
        self.read(|c, n| {
            c.prepare_cached(&format!(r#"SELECT 1 FROM "{}" WHERE key = ?1"#, n.objects))
                .and_then(|mut s| s.query_row([key], |_| Ok(())).optional())
                .map(|o| o.is_some())
                .ctx(|| format!("{} {key}: exists", self.name()))
        })
    }

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
                    prepared.push(Op::Upsert(self.prepare(&obj, &fields)?));
                    trees.push(Some(obj));
                }
                WriteOp::Delete { key, object } => {
                    let p = object.as_ref().map(|o| self.prepare(o, &fields)).transpose()?;
                    prepared.push(Op::Delete { key, object: p });
                    trees.push(object);
                }
            }
        }
        let applied = self.write_ops(prepared, meta)?;
        Ok(applied
            .into_iter()
            .filter_map(|(i, a)| {
                let object = trees.get_mut(i).and_then(Option::take).or(a.deleted)?;
                Some(WatchEvent { seq: a.seq, rv: a.rv, kind: a.kind, key: a.key, object })
            })
            .collect())
    }

    /// Apply prepared writes in one transaction (and `meta`); what each logged, by its index in `ops`.
    pub(crate) fn write_ops(&self, ops: Vec<Op>, meta: Option<(&str, &str)>) -> Result<Vec<(usize, Applied)>> {
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

    fn insert_row(&self, tx: &Transaction<'_>, n: &Names, row: &Prepared, replace: bool) -> Result<()> {
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
        op: Op,
        last_rv: &mut u64,
        ts: i64,
        fields: &[FieldPath],
        indexers: &Indexers,
    ) -> Result<Option<Applied>> {
        let name = self.name();
        let read_prev = |key: &str| -> Result<Option<String>> {
            tx.prepare_cached(&format!(r#"SELECT object FROM "{}" WHERE key = ?1"#, n.objects))
                .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
                .ctx(|| format!("{name} {key}: read"))
        };
        let (key, kind, obj_rv, logged_text, deleted) = match op {
            Op::Upsert(row) => {
                let prev = read_prev(&row.key)?;
                if prev.as_deref() == Some(row.text.as_str()) {
                    return Ok(None);
                }
                if let Some(prev) = &prev {
                    self.keep_in_log(tx, n, &row.key, prev)?;
                    self.clear_derived(tx, n, &row.key)?;
                }
                self.insert_row(tx, n, &row, true)?;
                self.insert_derived(tx, n, &row, fields, indexers)?;
                let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
                let rv = row.rv();
                (row.key, kind, rv, None, None)
            }
            Op::Delete { key, object } => {
                let Some(prev) = read_prev(&key)? else { return Ok(None) };
                self.keep_in_log(tx, n, &key, &prev)?;
                tx.prepare_cached(&format!(r#"DELETE FROM "{}" WHERE key = ?1"#, n.objects))
                    .and_then(|mut s| s.execute([&key]))
                    .ctx(|| format!("{name} {key}: delete"))?;
                self.clear_derived(tx, n, &key)?;
                match object {
                    Some(o) => {
                        let rv = o.rv();
                        (key, EventType::Deleted, rv, Some(o.text), None)
                    }
                    None => {
                        let o = self.decode(&key, &prev)?;
                        (key, EventType::Deleted, parse_rv(&o), Some(prev), Some(o))
                    }
                }
            }
        };
        let rv = match obj_rv {
            Some(rv) => rv,
            None => *last_rv + 1,
        };
        *last_rv = (*last_rv).max(rv);
        // upserts log lazily (NULL: the row itself); deletes keep the final state
        tx.prepare_cached(&format!(
            r#"INSERT INTO "{}" (rv, type, key, object, ts) VALUES (?1, ?2, ?3, ?4, ?5)"#,
            n.events
        ))
        .and_then(|mut s| s.execute(params![rv as i64, kind.as_str(), key, logged_text, ts]))
        .ctx(|| format!("{name} {key}: log event"))?;
        let seq = tx.last_insert_rowid();
        Ok(Some(Applied { seq, rv, kind, key, deleted }))
    }

    fn clear_derived(&self, tx: &Transaction<'_>, n: &Names, key: &str) -> Result<()> {
        for t in [&n.fields, &n.labels, &n.indexes] {
            tx.prepare_cached(&format!(r#"DELETE FROM "{t}" WHERE key = ?1"#))
                .and_then(|mut s| s.execute([key]))
                .ctx(|| format!("{} {key}: clear {t}", self.name()))?;
        }
        Ok(())
    }

    /// Labels, configured fields and index values of one object (the caller cleared any previous ones).
    fn insert_derived(
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

    // ---- metadata ----

    /// Highest resource version the store has seen (object RVs and list RVs).
    pub fn last_resource_version(&self) -> Result<u64> {
        self.read(|c, _| Ok(read_meta_u64(c, &self.inner.p, "last_rv")?.unwrap_or(0)))
    }

    /// A named string persisted with the store (the ingester keeps its resume resourceVersion here).
    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        self.read(|c, _| read_meta(c, &self.inner.p, name))
    }

    pub fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.write_tx("set meta", |tx, _| write_meta(tx, &self.inner.p, name, value))
    }
}

fn truncate(obj: &Value) -> String {
    let s = obj.to_string();
    if s.chars().count() > 200 { format!("{}...", s.chars().take(200).collect::<String>()) } else { s }
}

pub(crate) fn read_meta(c: &Connection, prefix: &str, name: &str) -> Result<Option<String>> {
    c.prepare_cached("SELECT value FROM wc_meta WHERE prefix = ?1 AND name = ?2")
        .and_then(|mut s| s.query_row([prefix, name], |r| r.get(0)).optional())
        .ctx(|| format!("{prefix}: read meta {name}"))
}

pub(crate) fn read_meta_u64(c: &Connection, prefix: &str, name: &str) -> Result<Option<u64>> {
    Ok(read_meta(c, prefix, name)?.and_then(|s| s.parse().ok()))
}

pub(crate) fn write_meta(c: &Connection, prefix: &str, name: &str, value: &str) -> Result<()> {
    c.prepare_cached("INSERT OR REPLACE INTO wc_meta (prefix, name, value) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute([prefix, name, value]))
        .map(drop)
        .ctx(|| format!("{prefix}: write meta {name}"))
}
