//! Table names, DDL and the `wc_meta` helpers of the watch-cache's SQLite layout: a leaf module that the store,
//! the event log and the query planner all build on.
//!
//! Tables (prefix `wc_<group>_<version>_<kind>_<hash>`): two generations `_g0_*`/`_g1_*` of `objects` (one row
//! per key with namespace, name, uid, resourceVersion, creationTimestamp and the JSON), `fields` (configured
//! JSON-path fields), `labels` and `indexes` (values of the registered index functions), plus `_events` (the
//! event log) and a view `_objects` of the live objects for other readers (sqlite3, scripts). `wc_meta` names the
//! live generation.

use rusqlite::{Connection, OptionalExtension};

use crate::Result;
use crate::error::SqlContext;

/// The table names of one resource type in one generation.
pub(crate) struct Names {
    pub(crate) objects: String,
    pub(crate) fields: String,
    pub(crate) labels: String,
    pub(crate) indexes: String,
    pub(crate) events: String,
}

impl Names {
    pub(crate) fn new(p: &str, generation: i64) -> Self {
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
pub(crate) fn create_generation(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
    create_generation_tables(c, p, generation)?;
    create_generation_indexes(c, p, generation)
}

/// The tables of a generation with their primary keys only: a relist fills them in key order (the API lists
/// in key order), which appends to those b-trees, and builds the other indexes once the rows are in.
pub(crate) fn create_generation_tables(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
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
pub(crate) fn create_generation_indexes(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
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

pub(crate) fn drop_generation(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
    let n = Names::new(p, generation);
    for t in [&n.objects, &n.fields, &n.labels, &n.indexes] {
        c.execute_batch(&format!(r#"DROP TABLE IF EXISTS "{t}""#))?;
    }
    Ok(())
}

/// The view other readers use; recreated whenever the live generation changes.
pub(crate) fn create_view(c: &Connection, p: &str, generation: i64) -> rusqlite::Result<()> {
    let n = Names::new(p, generation);
    c.execute_batch(&format!(
        r#"DROP VIEW IF EXISTS "{p}_objects"; CREATE VIEW "{p}_objects" AS SELECT * FROM "{}";"#,
        n.objects
    ))
}

pub(crate) fn live_generation(c: &Connection, p: &str) -> Result<i64> {
    Ok(read_meta_u64(c, p, "generation")?.unwrap_or(0) as i64)
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
