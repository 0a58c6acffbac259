//! Replica validation (Litestream's `validation-interval`): restore the replica's latest state to a scratch file and
//! compare its content with the database's at the same point. The database may move on while the replica is read,
//! so the live content is taken before and after the restore; the replica is good when it equals either, and bad
//! when it differs from a database that did not change meanwhile (after the replica had time to catch up), or when
//! its objects do not restore at all.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};

use crate::client::Replica;
use crate::error::{Error, Result, SqlContext};
use crate::restore::{self, RestoreOptions, Target};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The replica restores to the database's content.
    Ok,
    /// The replica is bad: it restores to other content, or not at all.
    Mismatch(String),
    /// Nothing could be concluded this time (no backup yet, or the database never held still).
    Inconclusive(String),
}

/// A digest of a database's content, read in one transaction: its schema and every row of every table, in
/// storage order (the same for the same content). Layout (page numbers, free pages) does not count.
pub fn content_digest(path: &Path) -> Result<u64> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .db(path)?;
    conn.busy_timeout(Duration::from_secs(5)).db(path)?;
    conn.execute_batch("BEGIN").db(path)?;
    let mut h = DefaultHasher::new();
    let mut tables = vec![];
    {
        let mut stmt =
            conn.prepare("SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name").db(path)?;
        let mut rows = stmt.query([]).db(path)?;
        while let Some(r) = rows.next().db(path)? {
            let (kind, name, sql): (String, String, Option<String>) =
                (r.get(0).db(path)?, r.get(1).db(path)?, r.get(3).db(path)?);
            (&kind, &name, r.get::<_, String>(2).db(path)?, &sql).hash(&mut h);
            let virtual_table = sql.as_deref().is_some_and(|s| s.to_ascii_uppercase().starts_with("CREATE VIRTUAL"));
            if kind == "table" && !virtual_table {
                tables.push(name);
            }
        }
    }
    for t in tables {
        t.hash(&mut h);
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"", t.replace('"', "\"\""))).db(path)?;
        let n = stmt.column_count();
        let mut rows = stmt.query([]).db(path)?;
        while let Some(r) = rows.next().db(path)? {
            for i in 0..n {
                match r.get_ref(i).db(path)? {
                    ValueRef::Null => 0u8.hash(&mut h),
                    ValueRef::Integer(v) => (1u8, v).hash(&mut h),
                    ValueRef::Real(v) => (2u8, v.to_bits()).hash(&mut h),
                    ValueRef::Text(v) => (3u8, v).hash(&mut h),
                    ValueRef::Blob(v) => (4u8, v).hash(&mut h),
                }
            }
        }
    }
    conn.execute_batch("COMMIT").db(path)?;
    Ok(h.finish())
}

async fn live_digest(db: &Path) -> Result<u64> {
    let p = db.to_owned();
    tokio::task::spawn_blocking(move || content_digest(&p))
        .await
        .map_err(|e| Error::Io { path: db.to_owned(), source: std::io::Error::other(e) })?
}

/// Whether a restore failed because of what the replica holds (rather than because it could not be reached).
fn is_bad_replica(e: &Error) -> bool {
    matches!(
        e,
        Error::Corrupt { .. }
            | Error::Integrity { .. }
            | Error::NotADatabase { .. }
            | Error::Wal { .. }
            | Error::Restore { .. }
            | Error::Sqlite { .. }
    )
}

/// Remove a scratch database with the WAL and shared-memory files that reading it left.
fn remove_db(path: &Path) {
    let _ = std::fs::remove_file(path);
    for suffix in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Scratch files and restore directories of a validation that was cut short (litecar stopped during it).
fn remove_leftovers(dir: &Path, marker: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().contains(marker) {
            let p = e.path();
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
}

/// Restore the replica's latest state next to `scratch` and digest it; `None` when the replica holds nothing yet.
async fn restored_digest(replica: &Replica, scratch: &Path) -> Result<Option<u64>> {
    let Some(plan) = restore::plan(replica, &Target::default()).await? else { return Ok(None) };
    remove_db(scratch);
    let opts = RestoreOptions { output: scratch.to_owned(), parallelism: 4, full_integrity_check: false };
    let result = restore::restore(replica, &plan, &opts, &|_| {}).await;
    let digest = match result {
        Ok(_) => {
            let p = scratch.to_owned();
            tokio::task::spawn_blocking(move || content_digest(&p))
                .await
                .map_err(|e| Error::Io { path: scratch.to_owned(), source: std::io::Error::other(e) })?
        }
        Err(e) => Err(e),
    };
    remove_db(scratch);
    digest.map(Some)
}

/// Validate `replica` against database `db`; `settle` is how long the replica may take to catch up with a database
/// that holds still. Errors are failures to reach the replica or read the database (try again later).
pub async fn validate(db: &Path, replica: &Replica, settle: Duration) -> Result<Verdict> {
    let name = db.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), Path::to_owned);
    // Per replica: validations of a database's replicas run side by side and must not clear each other's files.
    let who: String =
        replica.name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    let marker = format!("{name}-litecar-validate-{who}.");
    remove_leftovers(&dir, &marker);
    let scratch = dir.join(format!(".{marker}{:08x}.db", rand::random::<u32>()));
    let deadline = Instant::now() + settle;
    let mut before = live_digest(db).await?;
    loop {
        let restored = match restored_digest(replica, &scratch).await {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(Verdict::Inconclusive("the replica holds no backup yet".into())),
            Err(e) if is_bad_replica(&e) => return Ok(Verdict::Mismatch(format!("the replica does not restore: {e}"))),
            Err(e) => return Err(e),
        };
        if restored == before {
            return Ok(Verdict::Ok);
        }
        let after = live_digest(db).await?;
        if restored == after {
            return Ok(Verdict::Ok);
        }
        if Instant::now() >= deadline {
            return Ok(if after == before {
                Verdict::Mismatch(format!(
                    "the replica's latest state still differs from the database's after {settle:?}, and the \
                     database did not change while it was read"
                ))
            } else {
                Verdict::Inconclusive("the database kept changing".into())
            });
        }
        before = after;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
