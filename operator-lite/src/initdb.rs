//! `litecar-operator init-db`: creates a new database, in WAL mode, applying the `initScript` SQL once. A database
//! that exists (restored from a backup, or from an earlier start) is left alone. The file is built under a temporary
//! name and renamed into place, so a failed script leaves no half-initialised database behind.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("init script {path}: {source}")]
    ReadScript {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path}: {message}")]
    Database { path: PathBuf, message: String },
    #[error("init script {script} on {db}: {source}")]
    Script {
        script: PathBuf,
        db: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutcome {
    /// The database existed; nothing was done.
    Exists,
    Created,
}

pub fn init_db(db: &Path, script: Option<&Path>) -> Result<InitOutcome, InitError> {
    if db.exists() {
        return Ok(InitOutcome::Exists);
    }
    let sql = script
        .map(|p| std::fs::read_to_string(p).map_err(|source| InitError::ReadScript { path: p.to_owned(), source }))
        .transpose()?;
    let db_err = |message: String| InitError::Database { path: db.to_owned(), message };
    let file = db.file_name().ok_or_else(|| db_err("not a file path".into()))?;
    let dir = db.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.init-tmp", file.to_string_lossy()));
    for leftover in [tmp.clone(), wal_of(&tmp), shm_of(&tmp)] {
        let _ = std::fs::remove_file(leftover);
    }
    let result = build(&tmp, sql.as_deref()).map_err(|source| match script {
        Some(s) => InitError::Script { script: s.to_owned(), db: db.to_owned(), source },
        None => db_err(source.to_string()),
    });
    if let Err(e) = result {
        for leftover in [tmp.clone(), wal_of(&tmp), shm_of(&tmp)] {
            let _ = std::fs::remove_file(leftover);
        }
        return Err(e);
    }
    std::fs::rename(&tmp, db).map_err(|e| db_err(format!("renaming {} into place: {e}", tmp.display())))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(InitOutcome::Created)
}

fn build(tmp: &Path, sql: Option<&str>) -> Result<(), rusqlite::Error> {
    let conn = rusqlite::Connection::open(tmp)?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    if let Some(sql) = sql {
        conn.execute_batch(sql)?;
    }
    // Folds the WAL into the file, so the rename moves the whole database.
    conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")?;
    conn.close().map_err(|(_, e)| e)?;
    std::fs::File::open(tmp).and_then(|f| f.sync_all()).map_err(|e| {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_IOERR), Some(e.to_string()))
    })
}

fn wal_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", p.display()))
}

fn shm_of(p: &Path) -> PathBuf {
    PathBuf::from(format!("{}-shm", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(db: &Path) -> i64 {
        let c = rusqlite::Connection::open(db).expect("open");
        c.query_row("SELECT count(*) FROM t", [], |r| r.get(0)).expect("count")
    }

    #[test]
    fn a_new_database_gets_the_script_once_in_wal_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, script) = (dir.path().join("app.db"), dir.path().join("init.sql"));
        std::fs::write(&script, "CREATE TABLE t(x); INSERT INTO t VALUES (1), (2);").expect("script");
        assert_eq!(init_db(&db, Some(&script)).expect("init"), InitOutcome::Created);
        assert_eq!(count(&db), 2);
        let c = rusqlite::Connection::open(&db).expect("open");
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("mode");
        assert_eq!(mode, "wal");
        c.execute("INSERT INTO t VALUES (3)", []).expect("insert");
        drop(c);
        // A restart (or a restored database) is left alone: the script does not run twice.
        assert_eq!(init_db(&db, Some(&script)).expect("init"), InitOutcome::Exists);
        assert_eq!(count(&db), 3);
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("ls").map(|e| e.expect("entry").file_name()).collect();
        assert!(!left.iter().any(|n| n.to_string_lossy().contains("init-tmp")), "{left:?}");
    }

    #[test]
    fn a_failing_script_names_itself_and_leaves_no_database() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (db, script) = (dir.path().join("app.db"), dir.path().join("init.sql"));
        std::fs::write(&script, "CREATE TABLE t(x); INSERT INTO nope VALUES (1);").expect("script");
        let err = init_db(&db, Some(&script)).expect_err("bad script").to_string();
        assert!(err.contains("init.sql") && err.contains("nope"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).expect("ls").count(), 1, "only the script is left");
        let err = init_db(&db, Some(&dir.path().join("missing.sql"))).expect_err("missing script").to_string();
        assert!(err.contains("missing.sql"), "{err}");
    }

    #[test]
    fn without_a_script_an_empty_wal_database_is_created() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        assert_eq!(init_db(&db, None).expect("init"), InitOutcome::Created);
        let c = rusqlite::Connection::open(&db).expect("open");
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).expect("mode");
        assert_eq!(mode, "wal");
    }
}
