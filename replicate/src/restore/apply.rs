//! Rebuilding the database from the fetched objects: the snapshot is decompressed into the new file, each WAL index
//! prepared beside it ([`super::segments`]) is checkpointed into it by SQLite, and the result is checked.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

use rusqlite::{Connection, OpenFlags};
use tokio_util::sync::CancellationToken;

use super::Plan;
use super::segments::prepare_wals;
use crate::compress::{self, lz4_reader};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{ReadOnce, with_page_cache_filled, write_flushing};
use crate::layout;
use crate::shipper::SQLITE_HEADER;
use crate::wal::wal_path;

/// A file of the replica that the restore reads once: read in place from a local replica, or downloaded into the
/// scratch directory.
pub(super) struct Source {
    pub(super) path: PathBuf,
    pub(super) downloaded: bool,
}

impl Source {
    /// A local replica's file gives its page cache back as it is read ([`ReadOnce`]). A downloaded one keeps it: its
    /// pages are likely not on disk yet, and giving them back would write them there first, for a file about to be
    /// deleted.
    pub(super) fn open(&self) -> Result<Box<dyn Read + Send>> {
        let file = File::open(&self.path).at(&self.path)?;
        Ok(if self.downloaded { Box::new(file) } else { Box::new(ReadOnce::new(file)) })
    }
}

/// Rebuild the database from `sources`: the snapshot's file, then one file per segment of the plan, in order.
///
/// Nothing waits for the disk in between: the snapshot is sent to disk in the background as it is decompressed,
/// each WAL index is decompressed and validated into its own scratch file beside it, and SQLite's checkpoints of
/// those files run without fsyncs. The database is made durable once, at the end, while SQLite checks it.
///
/// `cancel` is looked at between the steps (snapshot, each WAL index, the final check): a cancelled restore stops
/// there with [`Error::Cancelled`].
pub(super) fn apply(
    replica: &str,
    plan: &Plan,
    sources: &[Source],
    scratch: &Path,
    db: &Path,
    full_check: bool,
    cancel: &CancellationToken,
) -> Result<()> {
    let started = std::time::Instant::now();
    let go_on = || if cancel.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) };
    let out = File::options().read(true).write(true).create_new(true).open(db).at(db)?;
    let (written, wals) = std::thread::scope(|scope| {
        let wals = scope.spawn(|| {
            let wals = prepare_wals(replica, plan, &sources[1..], scratch);
            tracing::debug!(elapsed_ms = started.elapsed().as_millis(), "restore: WAL prepared");
            wals
        });
        let written = write_snapshot(replica, plan, &sources[0], &out, db);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), "restore: snapshot written");
        (written, wals.join().unwrap_or_else(|_| Err(thread_panicked(db))))
    });
    written?;
    let wal_file = wal_path(db);
    for wal in wals? {
        go_on()?;
        fs::rename(&wal.path, &wal_file).at(&wal_file)?;
        // The checkpoint writes the pages the database grew by into new pages of the file, as the snapshot's writer did.
        let before = AtomicU64::new(out.metadata().at(db)?.len());
        with_page_cache_filled(&out, wal.db_len, &before, || checkpoint_restored(db))?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), index = wal.index, "restore: WAL applied");
    }
    go_on()?;
    // `out` stays open until SQLite is done with the file: closing a descriptor drops every POSIX lock this process
    // holds on it, SQLite's included.
    std::thread::scope(|scope| {
        let synced = scope.spawn(|| {
            let synced = out.sync_all();
            tracing::debug!(elapsed_ms = started.elapsed().as_millis(), "restore: database synced");
            synced
        });
        let checked = verify(db, full_check);
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), "restore: database checked");
        let synced = synced.join().unwrap_or_else(|_| Err(io::Error::other("the fsync thread panicked")));
        checked.and(synced.at(db))
    })
}

fn thread_panicked(path: &Path) -> Error {
    Error::Io { path: path.to_owned(), source: io::Error::other("a restore thread panicked") }
}

fn write_snapshot(replica: &str, plan: &Plan, snapshot: &Source, out: &File, db: &Path) -> Result<()> {
    let key = layout::snapshot_key(&plan.generation, plan.snapshot.index);
    let corrupt = |message: String| Error::Corrupt { replica: replica.to_owned(), key: key.clone(), message };
    if is_age_encrypted(&snapshot.path) {
        return Err(corrupt(
            "the object is age-encrypted and no identity is configured (set age: {identities: [...]} on the replica)"
                .into(),
        ));
    }
    let expected_len = snapshot_database_len(&snapshot.path).unwrap_or(0);
    let src = snapshot.open()?;
    let (decompressed, flushed) = write_flushing(out, expected_len, |w| compress::decompress_into(src, w));
    decompressed.map_err(|e| match e {
        compress::DecompressError::Input(e) => corrupt(e.to_string()),
        compress::DecompressError::Output(e) => Error::Io { path: db.to_owned(), source: e },
    })?;
    flushed.at(db)?;
    let mut head = [0u8; 16];
    let n = out.read_at(&mut head, 0).at(db)?;
    if n < head.len() || &head != SQLITE_HEADER {
        return Err(corrupt("the snapshot is not a SQLite database".into()));
    }
    Ok(())
}

/// Whether a downloaded object is an age file (a replica encrypted by Litestream or litecar, read without keys).
fn is_age_encrypted(path: &Path) -> bool {
    let mut head = [0u8; crate::encryption::AGE_MAGIC.len()];
    File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && head == crate::encryption::AGE_MAGIC
}

/// How long the database in a snapshot is, as its header says: the page size times the in-header page count, which
/// SQLite itself trusts only while the header's "version-valid-for" number equals its change counter. `None` when
/// the header does not say, or claims more than an LZ4 frame of this size could hold.
fn snapshot_database_len(snapshot: &Path) -> Option<u64> {
    let file = File::open(snapshot).ok()?;
    let compressed = file.metadata().ok()?.len();
    let mut header = [0u8; 100];
    lz4_reader(BufReader::new(file)).read_exact(&mut header).ok()?;
    let field = |at: usize| u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]);
    if &header[..16] != SQLITE_HEADER || field(24) != field(92) {
        return None;
    }
    let page_size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65536,
        n => u64::from(n),
    };
    // LZ4 cannot compress better than 255 to 1.
    Some(page_size * u64::from(field(28))).filter(|&len| len <= compressed.saturating_mul(255))
}

fn open_restored(db: &Path) -> Result<Connection> {
    Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|source| Error::Sqlite { path: db.to_owned(), source })
}

fn checkpoint_restored(db: &Path) -> Result<()> {
    let conn = open_restored(db)?;
    let sql = |source| Error::Sqlite { path: db.to_owned(), source };
    // The database is fsynced once, when it is complete.
    conn.pragma_update(None, "synchronous", "OFF").map_err(sql)?;
    let (busy, log, done): (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sql)?;
    if busy != 0 || log != done {
        return Err(Error::Integrity {
            path: db.to_owned(),
            message: format!("WAL checkpoint incomplete ({done} of {log} frames)"),
        });
    }
    conn.close().map_err(|(_, e)| sql(e))
}

fn verify(db: &Path, full: bool) -> Result<()> {
    let conn = open_restored(db)?;
    let pragma = if full { "PRAGMA integrity_check" } else { "PRAGMA quick_check" };
    let mut stmt = conn.prepare(pragma).map_err(|source| Error::Sqlite { path: db.to_owned(), source })?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|source| Error::Integrity { path: db.to_owned(), message: source.to_string() })?;
    if rows != ["ok"] {
        return Err(Error::Integrity { path: db.to_owned(), message: rows.join("; ") });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::compress::Lz4Writer;
    use crate::fsutil::page_cache_bytes;

    fn snapshot_of(content: &[u8], path: &Path) -> PathBuf {
        let mut w = Lz4Writer::new(File::create(path).expect("create snapshot"));
        w.write_all(content).expect("compress");
        w.finish().expect("finish");
        path.to_owned()
    }

    #[test]
    fn a_snapshots_database_length_is_read_from_its_header_only_while_sqlite_would_trust_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 65536 is stored as 1 in the header.
        for page_size in [4096, 65536] {
            let db = dir.path().join(format!("src-{page_size}.db"));
            let conn = Connection::open(&db).expect("open");
            conn.execute_batch(&format!(
                "PRAGMA page_size={page_size}; CREATE TABLE t(x);
                 WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
                 INSERT INTO t SELECT randomblob(5000) FROM n;"
            ))
            .expect("fill");
            drop(conn);
            let bytes = fs::read(&db).expect("read");
            let snapshot = |content: &[u8], name: &str| snapshot_of(content, &dir.path().join(name));
            assert_eq!(snapshot_database_len(&snapshot(&bytes, "current")), Some(bytes.len() as u64), "{page_size}");

            let mut stale = bytes.clone();
            stale[95] ^= 1;
            assert_eq!(snapshot_database_len(&snapshot(&stale, "stale")), None, "version-valid-for differs");

            let mut huge = bytes.clone();
            huge[28..32].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
            assert_eq!(snapshot_database_len(&snapshot(&huge, "huge")), None, "more than the frame can hold");
        }
        let not_sqlite = dir.path().join("text");
        assert_eq!(snapshot_database_len(&snapshot_of(&[b'x'; 4096], &not_sqlite)), None);
        assert_eq!(snapshot_database_len(&snapshot_of(b"SQLite format 3\0", &dir.path().join("short"))), None);
    }

    #[test]
    fn a_local_replicas_files_give_their_page_cache_back_as_they_are_read_and_downloaded_ones_keep_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data: Vec<u8> = (0..(20 << 20)).map(|i: u32| (i * 31 % 247) as u8).collect();
        for downloaded in [false, true] {
            let path = dir.path().join(format!("object-{downloaded}"));
            let file = File::create(&path).expect("create");
            (&file).write_all(&data).expect("write");
            // Only pages already on disk can be given back.
            file.sync_all().expect("fsync");
            if !crate::fsutil::on_local_disk(&file) {
                return;
            }
            let cached = page_cache_bytes(&path);
            assert_eq!(cached, data.len() as u64, "the file is in the page cache once written");
            let mut back = Vec::new();
            Source { path: path.clone(), downloaded }.open().expect("open").read_to_end(&mut back).expect("read");
            assert!(back == data, "the bytes read differ from the file's");
            let expected = if downloaded { cached } else { 0 };
            assert_eq!(page_cache_bytes(&path), expected, "page cache left after reading (downloaded: {downloaded})");
        }
    }
}
