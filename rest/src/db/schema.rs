//! The live schema of the allowed tables, re-read whenever SQLite's schema cookie changes.
//!
//! Every identifier that reaches generated SQL comes from here: client text is only ever compared against
//! these names, never copied into a statement.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension};

use crate::error::RestError;

/// Type affinity, from the declared type by the rules of SQLite's "Datatypes" document §3.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Affinity {
    Integer,
    Text,
    Blob,
    Real,
    Numeric,
}

impl Affinity {
    pub fn of_declared(declared: &str) -> Self {
        let upper = declared.to_ascii_uppercase();
        if upper.contains("INT") {
            Affinity::Integer
        } else if upper.contains("CHAR") || upper.contains("CLOB") || upper.contains("TEXT") {
            Affinity::Text
        } else if upper.contains("BLOB") || upper.is_empty() {
            Affinity::Blob
        } else if upper.contains("REAL") || upper.contains("FLOA") || upper.contains("DOUB") {
            Affinity::Real
        } else {
            Affinity::Numeric
        }
    }
}

#[derive(Clone, Debug)]
pub struct Column {
    pub name: String,
    pub declared: String,
    pub affinity: Affinity,
    pub not_null: bool,
    pub has_default: bool,
    /// 1-based position in the primary key, 0 when not part of it.
    pub pk: u32,
    /// Generated columns can be read but not written.
    pub generated: bool,
}

impl Column {
    /// Case-insensitive, without allocating: it runs for every value rendered.
    fn declared_has(&self, word: &str) -> bool {
        self.declared.as_bytes().windows(word.len()).any(|w| w.eq_ignore_ascii_case(word.as_bytes()))
    }

    /// Declared BOOL/BOOLEAN: integers 0/1 are rendered as JSON booleans.
    pub fn is_bool(&self) -> bool {
        self.declared_has("BOOL")
    }

    /// Declared JSON/JSONB: text that parses as JSON is embedded rather than rendered as a string.
    pub fn is_json(&self) -> bool {
        self.declared_has("JSON")
    }

    /// Declared BLOB: bodies carry such values as `\x`-prefixed hex strings, as PostgREST does for `bytea`.
    pub fn is_blob(&self) -> bool {
        self.declared_has("BLOB")
    }

    /// An INTEGER PRIMARY KEY is the rowid: SQLite assigns it when omitted.
    pub fn is_rowid_alias(&self, table: &Table) -> bool {
        self.pk == 1 && table.pk_len() == 1 && self.declared.eq_ignore_ascii_case("INTEGER") && !table.is_view
    }
}

#[derive(Debug)]
pub struct Table {
    /// The name as stored in the schema, which is what generated SQL uses.
    pub name: String,
    pub is_view: bool,
    /// An FTS5 virtual table: its columns take the full-text operators.
    pub is_fts5: bool,
    pub columns: Vec<Column>,
    /// Foreign keys declared on this table, for resource embedding.
    pub foreign_keys: Vec<ForeignKey>,
}

/// `FOREIGN KEY (from...) REFERENCES table (to...)`, as `pragma_foreign_key_list` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignKey {
    /// The referenced table as the constraint spells it (SQLite matches it case-insensitively).
    pub table: String,
    pub from: Vec<String>,
    /// Empty when the constraint names no columns: then it is the referenced table's primary key.
    pub to: Vec<String>,
}

impl Table {
    /// Column names are matched exactly (not case-folded), so one spelling is the API's.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    pub fn pk_len(&self) -> usize {
        self.columns.iter().filter(|c| c.pk > 0).count()
    }

    /// Primary-key columns in key order.
    pub fn primary_key(&self) -> Vec<&Column> {
        let mut pk: Vec<&Column> = self.columns.iter().filter(|c| c.pk > 0).collect();
        pk.sort_by_key(|c| c.pk);
        pk
    }
}

/// The allowed tables as one schema version shows them. A table that is allowed but absent maps to `None`.
#[derive(Debug)]
pub struct Schema {
    pub version: i64,
    tables: HashMap<String, Option<Arc<Table>>>,
}

impl Schema {
    pub fn table(&self, name: &str) -> Result<&Arc<Table>, RestError> {
        match self.tables.get(name) {
            Some(Some(table)) => Ok(table),
            // Allowed-but-missing and not-allowed answer the same, so probing learns nothing.
            _ => Err(RestError::TableNotFound { table: crate::error::echo(name) }),
        }
    }

    /// Allowed tables that exist, in the order they were allowed.
    pub fn existing<'a>(&'a self, allowed: &'a [String]) -> impl Iterator<Item = (&'a str, &'a Arc<Table>)> {
        allowed.iter().filter_map(|name| match self.tables.get(name) {
            Some(Some(table)) => Some((name.as_str(), table)),
            _ => None,
        })
    }
}

/// Shared by all connections; keyed by `PRAGMA schema_version`, so a migration committed while serving is
/// picked up by the next request that sees it.
pub struct SchemaCache {
    allowed: Vec<String>,
    current: Mutex<Option<Arc<Schema>>>,
}

impl SchemaCache {
    pub fn new(allowed: Vec<String>) -> Self {
        SchemaCache { allowed, current: Mutex::new(None) }
    }

    /// The schema as `conn` sees it; call inside the request's transaction so it matches the data read.
    pub fn load(&self, conn: &Connection) -> rusqlite::Result<Arc<Schema>> {
        // Cached: it runs on every request, and preparing it costs more than running it.
        let version: i64 = conn.prepare_cached("PRAGMA schema_version")?.query_row([], |row| row.get(0))?;
        {
            let current = crate::sync::lock(&self.current);
            if let Some(schema) = current.as_ref().filter(|s| s.version == version) {
                return Ok(Arc::clone(schema));
            }
        }
        let mut tables = HashMap::new();
        for name in &self.allowed {
            tables.insert(name.clone(), read_table(conn, name)?.map(Arc::new));
        }
        let schema = Arc::new(Schema { version, tables });
        *crate::sync::lock(&self.current) = Some(Arc::clone(&schema));
        tracing::debug!(version, "table API schema loaded");
        Ok(schema)
    }
}

fn read_table(conn: &Connection, allowed_name: &str) -> rusqlite::Result<Option<Table>> {
    // SQLite resolves table names case-insensitively, so the allowed spelling may differ from the stored one.
    let found: Option<(String, String, bool)> = conn
        .query_row(
            "SELECT name, type, coalesce(sql, '') LIKE 'CREATE VIRTUAL TABLE%USING fts5%' FROM sqlite_master \
             WHERE type IN ('table', 'view') AND name = ?1 COLLATE NOCASE \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            [allowed_name],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .optional()?;
    let Some((name, kind, is_fts5)) = found else { return Ok(None) };
    let mut statement =
        conn.prepare("SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk, hidden FROM pragma_table_xinfo(?1)")?;
    let columns = statement
        .query_map([&name], |row| {
            let declared: String = row.get::<_, Option<String>>(1)?.unwrap_or_default();
            let hidden: i64 = row.get(5)?;
            Ok((
                Column {
                    name: row.get(0)?,
                    affinity: Affinity::of_declared(&declared),
                    declared,
                    not_null: row.get(2)?,
                    has_default: row.get(3)?,
                    pk: row.get(4)?,
                    generated: hidden == 2 || hidden == 3,
                },
                hidden,
            ))
        })?
        .filter_map(|r| match r {
            // Hidden columns of virtual tables (hidden = 1) are not part of the row.
            Ok((_, 1)) => None,
            other => Some(other.map(|(column, _)| column)),
        })
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let foreign_keys = read_foreign_keys(conn, &name)?;
    Ok(Some(Table { name, is_view: kind == "view", is_fts5, columns, foreign_keys }))
}

fn read_foreign_keys(conn: &Connection, table: &str) -> rusqlite::Result<Vec<ForeignKey>> {
    let mut statement =
        conn.prepare("SELECT id, \"table\", \"from\", \"to\" FROM pragma_foreign_key_list(?1) ORDER BY id, seq")?;
    let mut keys: Vec<(i64, ForeignKey)> = Vec::new();
    let rows = statement.query_map([table], |row| {
        Ok((
            row.get::<_, i64>(0)?,
            row.get::<_, String>(1)?,
            row.get::<_, String>(2)?,
            row.get::<_, Option<String>>(3)?,
        ))
    })?;
    for row in rows {
        let (id, referenced, from, to) = row?;
        match keys.last_mut() {
            Some((last, key)) if *last == id => {
                key.from.push(from);
                key.to.extend(to);
            }
            _ => keys.push((id, ForeignKey { table: referenced, from: vec![from], to: to.into_iter().collect() })),
        }
    }
    Ok(keys.into_iter().map(|(_, key)| key).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_follows_sqlite_rules() {
        assert_eq!(Affinity::of_declared("BIGINT"), Affinity::Integer);
        assert_eq!(Affinity::of_declared("varchar(20)"), Affinity::Text);
        assert_eq!(Affinity::of_declared(""), Affinity::Blob);
        assert_eq!(Affinity::of_declared("DOUBLE PRECISION"), Affinity::Real);
        assert_eq!(Affinity::of_declared("DECIMAL(10,2)"), Affinity::Numeric);
        assert_eq!(Affinity::of_declared("BOOLEAN"), Affinity::Numeric);
        // "FLOATING POINT" contains "INT": SQLite's rule order makes it INTEGER.
        assert_eq!(Affinity::of_declared("FLOATING POINT"), Affinity::Integer);
    }

    #[test]
    fn migration_is_picked_up_by_schema_version() {
        let conn = Connection::open_in_memory().expect("in-memory sqlite");
        conn.execute_batch("CREATE TABLE t (a INTEGER)").expect("in-memory sqlite");
        let cache = SchemaCache::new(vec!["t".into(), "missing".into()]);
        let first = cache.load(&conn).expect("in-memory sqlite");
        assert_eq!(first.table("t").expect("in-memory sqlite").columns.len(), 1);
        assert!(first.table("missing").is_err());
        assert!(
            Arc::ptr_eq(&first, &cache.load(&conn).expect("in-memory sqlite")),
            "unchanged schema is served from the cache"
        );
        conn.execute_batch("ALTER TABLE t ADD COLUMN b TEXT").expect("in-memory sqlite");
        let second = cache.load(&conn).expect("in-memory sqlite");
        assert_eq!(second.table("t").expect("in-memory sqlite").column("b").map(|c| c.affinity), Some(Affinity::Text));
    }
}
