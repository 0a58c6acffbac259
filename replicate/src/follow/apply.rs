//! Writing replica transactions into a follower's database through SQLite.
//!
//! Every batch of segments becomes one ordinary SQLite write transaction that stores page images with the
//! `sqlite_dbpage` table: SQLite appends them to the follower's own WAL and commits them like any other
//! transaction, so readers in other processes keep the snapshot they hold and see the next one whole, never a
//! part of it. A batch holds whole writer transactions only (each segment ends on a commit), so what readers see
//! is always a state the writer's database went through.
//!
//! Page 1 is written last in each transaction: it carries the schema cookie, and a statement that finds the
//! cookie changed re-reads the schema, which must then see the whole new state.
//!
//! SQLite's automatic checkpoint is off on this connection: it would run inside the commit of a batch, and its
//! fsyncs would hold up the next one. The follower checkpoints instead on a thread of its own, PASSIVE (never
//! blocking a reader, nor waiting for one), once [`CHECKPOINT_FRAMES`] frames have been written since the last one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::cursor::{Cursor, page_hash};
use crate::error::{Error, IoContext, Result, SqlContext};
use crate::layout::{self, Pos};
use crate::sync::lock;
use crate::wal::{self, FRAME_HEADER_SIZE, WAL_HEADER_SIZE, WalHeader};

/// One segment of the replica, decompressed.
pub struct Decoded {
    pub pos: Pos,
    pub created: std::time::SystemTime,
    pub bytes: Vec<u8>,
}

/// Segments checked to continue a cursor, ready to write.
pub struct Batch {
    segments: Vec<(Decoded, WalHeader, usize)>,
    /// Where the database is once the batch is written.
    pub cursor: Cursor,
    /// Writer transactions in the batch.
    pub commits: u64,
    /// When the newest segment of the batch was written to the replica.
    pub newest: Option<std::time::SystemTime>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }
}

/// Keep the leading segments that continue `cursor` whole and valid; the error says why the first one that does
/// not was left out (the caller retries it later, or starts over from a snapshot if it never becomes valid).
pub fn check(replica: &str, cursor: &Cursor, segments: Vec<Decoded>) -> (Batch, Option<Error>) {
    let mut batch = Batch { segments: vec![], cursor: cursor.clone(), commits: 0, newest: None };
    for seg in segments {
        let key = layout::wal_segment_key(&cursor.generation, seg.pos);
        let corrupt = |message: String| Error::Corrupt { replica: replica.to_owned(), key: key.clone(), message };
        let at = &batch.cursor;
        let next_index = seg.pos.offset == 0 && at.header.is_some() && seg.pos.index == at.pos.index + 1;
        if seg.pos != at.pos && !next_index {
            let expected = layout::wal_segment_key(&at.generation, at.pos);
            let error = Error::Restore {
                replica: replica.to_owned(),
                message: format!("missing WAL segment {expected}: the next one in the replica is {key}"),
            };
            return (batch, Some(error));
        }
        let (header, start, seed) = if seg.pos.offset == 0 {
            match WalHeader::parse(&seg.bytes) {
                Ok(h) => (h, WAL_HEADER_SIZE as usize, h.checksum),
                Err(e) => return (batch, Some(corrupt(format!("reading WAL header: {e}")))),
            }
        } else {
            match at.header {
                Some(h) => (h, 0, at.checksum),
                None => return (batch, Some(corrupt("no WAL header before this segment".into()))),
            }
        };
        let frames = &seg.bytes[start.min(seg.bytes.len())..];
        let base = if seg.pos.offset == 0 { WAL_HEADER_SIZE } else { seg.pos.offset };
        let committed = match wal::scan(&mut &frames[..], &header, base, seed) {
            Ok(c) => c,
            Err(e) => return (batch, Some(corrupt(e.to_string()))),
        };
        let valid = (committed.end - base) as usize;
        if valid != frames.len() || committed.commits == 0 {
            return (
                batch,
                Some(corrupt(format!(
                    "invalid WAL frames: only {valid} of {} bytes form committed transactions",
                    frames.len()
                ))),
            );
        }
        let mut next = batch.cursor.clone();
        next.pos = Pos { index: seg.pos.index, offset: committed.end };
        next.header = Some(header);
        next.checksum = committed.checksum;
        next.last_name = layout::wal_segment_file_name(seg.pos);
        if let Some(pages) = committed.db_size {
            next.db_pages = pages;
        }
        batch.cursor = next;
        batch.commits += committed.commits;
        batch.newest = batch.newest.max(Some(seg.created));
        batch.segments.push((seg, header, start));
    }
    (batch, None)
}

/// WAL frames written since the last checkpoint that make the next one due: SQLite's own default.
pub const CHECKPOINT_FRAMES: u64 = 1000;

/// The follower's connection to its database: the only writer there is.
pub struct Target {
    path: PathBuf,
    conn: Connection,
    /// `PRAGMA data_version` after our last commit: it changes when another connection commits.
    data_version: i64,
    /// Frames committed since the last checkpoint began; shared with [`Shared`], which starts checkpoints.
    frames: Arc<AtomicU64>,
}

impl Target {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = open_rw(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).db(path)?;
        conn.pragma_update(None, "wal_autocheckpoint", 0).db(path)?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)).db(path)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::NotADatabase { path: path.to_owned(), reason: format!("journal mode {mode}, not WAL") });
        }
        // FULL: a transaction is on disk before the cursor that records it.
        conn.pragma_update(None, "synchronous", "FULL").db(path)?;
        let mut target = Self { path: path.to_owned(), conn, data_version: 0, frames: Arc::default() };
        target.data_version = target.data_version()?;
        Ok(target)
    }

    fn data_version(&self) -> Result<i64> {
        self.conn.query_row("PRAGMA data_version", [], |r| r.get(0)).db(&self.path)
    }

    /// Whether another connection committed a transaction since our last one.
    pub fn written_by_others(&self) -> Result<bool> {
        Ok(self.data_version()? != self.data_version)
    }

    /// A PASSIVE checkpoint on this connection, for a copy that no one else reads yet.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())).db(&self.path)
    }

    /// Page count and page 1's hash: what a cursor records of the database.
    pub fn fingerprint(&self) -> Result<(u32, u32)> {
        let pages: u32 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).db(&self.path)?;
        let page1: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT data FROM sqlite_dbpage WHERE pgno = 1", [], |r| r.get(0))
            .optional()
            .db(&self.path)?;
        Ok((pages, page1.as_deref().map_or(0, page_hash)))
    }

    /// Write `batch` as one transaction; returns the cursor after it.
    pub fn apply(&mut self, batch: &Batch) -> Result<Cursor> {
        let final_pages = batch.cursor.db_pages;
        let page_size = batch.segments.first().map(|(_, h, _)| h.page_size);
        self.transaction(page_size, final_pages, false, |write| {
            let mut page1: Option<&[u8]> = None;
            for (seg, header, start) in &batch.segments {
                let frame = (FRAME_HEADER_SIZE + u64::from(header.page_size)) as usize;
                for f in seg.bytes[*start..].chunks_exact(frame) {
                    let pgno = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                    let page = &f[FRAME_HEADER_SIZE as usize..];
                    // Pages past the final size belong to a file that shrank again within the batch.
                    if pgno > final_pages {
                        continue;
                    }
                    if pgno == 1 {
                        page1 = Some(page);
                    } else {
                        write(pgno, page)?;
                    }
                }
            }
            if let Some(p) = page1 {
                write(1, p)?;
            }
            Ok(())
        })?;
        let mut cursor = batch.cursor.clone();
        (cursor.db_pages, cursor.page1_hash) = self.fingerprint()?;
        Ok(cursor)
    }

    /// Make the database's content that of the database at `source` (same page size), in one transaction that
    /// writes only the pages that differ: readers go from the old content to the new without a moment between.
    pub fn replace_with(&mut self, source: &Path) -> Result<(u32, u32)> {
        let src =
            Connection::open_with_flags(source, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .db(source)?;
        let page_size: u32 = src.query_row("PRAGMA page_size", [], |r| r.get(0)).db(source)?;
        let pages: u32 = src.query_row("PRAGMA page_count", [], |r| r.get(0)).db(source)?;
        let mut read = src.prepare("SELECT pgno, data FROM sqlite_dbpage ORDER BY pgno").db(source)?;
        let mut rows = read.query([]).db(source)?;
        let path = self.path.clone();
        self.transaction(Some(page_size), pages, true, |write| {
            let mut page1 = None;
            while let Some(row) = rows.next().db(source)? {
                let (pgno, data): (u32, Vec<u8>) = (row.get(0).db(source)?, row.get(1).db(source)?);
                if pgno == 1 {
                    page1 = Some(data);
                } else {
                    write(pgno, &data)?;
                }
            }
            match page1 {
                Some(p) => write(1, &p),
                None => Err(Error::NotADatabase { path: path.clone(), reason: "the new copy has no page 1".into() }),
            }
        })?;
        self.fingerprint()
    }

    /// Run `fill` in a write transaction; it writes pages with the function it is given (with `skip_unchanged`,
    /// pages that already hold that content are left alone). The database ends `final_pages` long.
    fn transaction(
        &mut self,
        page_size: Option<u32>,
        final_pages: u32,
        skip_unchanged: bool,
        fill: impl FnOnce(&mut dyn FnMut(u32, &[u8]) -> Result<()>) -> Result<()>,
    ) -> Result<()> {
        let path = self.path.clone();
        let tx = self.conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).db(&path)?;
        // Checked under the write lock, so that no other writer's commit can slip in between check and write. A
        // replacement is the cure for such writes, so it goes ahead regardless.
        let version: i64 = tx.query_row("PRAGMA data_version", [], |r| r.get(0)).db(&path)?;
        if !skip_unchanged && version != self.data_version {
            return Err(Error::WrittenByOthers { path });
        }
        let ours: u32 = tx.query_row("PRAGMA page_size", [], |r| r.get(0)).db(&path)?;
        if let Some(theirs) = page_size.filter(|&p| p != ours) {
            return Err(Error::NotADatabase {
                path: path.clone(),
                reason: format!("its page size is {ours}, the replica's is {theirs}"),
            });
        }
        let start_pages: u32 = tx.query_row("PRAGMA page_count", [], |r| r.get(0)).db(&path)?;
        let mut written = 0u64;
        {
            let mut current = tx.prepare_cached("SELECT data FROM sqlite_dbpage WHERE pgno = ?1").db(&path)?;
            let mut insert = tx.prepare_cached("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, ?2)").db(&path)?;
            let mut write = |pgno: u32, page: &[u8]| -> Result<()> {
                if skip_unchanged && pgno <= start_pages {
                    let old: Option<Vec<u8>> = current.query_row([pgno], |r| r.get(0)).optional().db(&path)?;
                    if old.as_deref() == Some(page) {
                        return Ok(());
                    }
                }
                insert.execute(params![pgno, page]).db(&path)?;
                written += 1;
                Ok(())
            };
            fill(&mut write)?;
        }
        if final_pages < start_pages {
            // A NULL page truncates the database at that page when the transaction commits.
            tx.execute("INSERT INTO sqlite_dbpage(pgno, data) VALUES (?1, NULL)", [final_pages + 1]).db(&path)?;
        }
        tx.commit().db(&path)?;
        self.frames.fetch_add(written, Ordering::Relaxed);
        self.data_version = self.data_version()?;
        Ok(())
    }
}

fn open_rw(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX).db(path)
}

/// The follower's database connection, used from blocking threads one call at a time.
#[derive(Clone)]
pub struct Shared {
    target: Arc<std::sync::Mutex<Target>>,
    path: PathBuf,
    frames: Arc<AtomicU64>,
}

impl Shared {
    pub fn new(target: Target) -> Self {
        let (path, frames) = (target.path.clone(), target.frames.clone());
        Self { target: Arc::new(std::sync::Mutex::new(target)), path, frames }
    }

    /// Open the database at `path`, on a blocking thread.
    pub async fn open(path: &Path) -> Result<Self> {
        let owned = path.to_owned();
        let target = tokio::task::spawn_blocking(move || Target::open(&owned)).await.map_err(std::io::Error::other);
        Ok(Self::new(target.at(path)??))
    }

    /// Run blocking SQLite work on the database on a blocking thread, in the caller's span.
    pub async fn run<T: Send + 'static>(&self, f: impl FnOnce(&mut Target) -> Result<T> + Send + 'static) -> Result<T> {
        let target = self.target.clone();
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || span.in_scope(|| f(&mut lock(&target))))
            .await
            .map_err(std::io::Error::other)
            .at(&self.path)?
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether enough has been written since the last checkpoint for the next one; the count starts over when so.
    pub fn checkpoint_due(&self) -> bool {
        self.frames.load(Ordering::Relaxed) >= CHECKPOINT_FRAMES && {
            self.frames.store(0, Ordering::Relaxed);
            true
        }
    }

    /// A connection of the checkpointing thread to the same database.
    pub fn checkpoint_connection(&self) -> Result<Connection> {
        open_rw(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Generation;
    use crate::shipper::checkpointer::Checkpointer;
    use crate::wal::WalHeader;

    const PAGE: u32 = 512;

    fn header(salt1: u32) -> WalHeader {
        let h = WalHeader {
            big_endian_checksums: false,
            page_size: PAGE,
            checkpoint_seq: 0,
            salt1,
            salt2: 9,
            checksum: (0, 0),
        };
        WalHeader::parse(&h.encode()).expect("valid header")
    }

    /// A segment of `commits` one-page transactions, continuing `running`; returns it and the checksum after it.
    fn frames(h: &WalHeader, running: wal::Checksum, commits: u32, with_header: bool) -> (Vec<u8>, wal::Checksum) {
        let mut out = if with_header { h.encode().to_vec() } else { vec![] };
        let mut c = running;
        for i in 0..commits {
            let (f, next) = wal::encode_frame(h, c, 2, 2 + i, &vec![i as u8; PAGE as usize]);
            out.extend_from_slice(&f);
            c = next;
        }
        (out, c)
    }

    fn cursor() -> Cursor {
        Cursor {
            generation: Generation::parse("0123456789abcdef").expect("generation"),
            pos: Pos { index: 0, offset: 0 },
            header: None,
            checksum: (0, 0),
            last_name: "00000000".into(),
            db_pages: 1,
            page1_hash: 0,
        }
    }

    fn decoded(index: u32, offset: u64, bytes: Vec<u8>) -> Decoded {
        Decoded { pos: Pos { index, offset }, created: std::time::SystemTime::now(), bytes }
    }

    /// A database in WAL mode holding `rows` rows of 1000 bytes.
    fn database(path: &Path, rows: u32) {
        let c = Connection::open(path).expect("open");
        c.pragma_update(None, "journal_mode", "wal").expect("wal");
        c.execute_batch(&format!(
            "CREATE TABLE t (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
             INSERT INTO t SELECT randomblob(1000) FROM n;"
        ))
        .expect("fill");
    }

    #[test]
    fn commits_leave_the_checkpoint_to_the_follower_whose_passive_one_lets_a_reader_keep_its_snapshot() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (copy, source) = (dir.path().join("copy.db"), dir.path().join("source.db"));
        database(&copy, 1);
        database(&source, 5000);
        let mut target = Target::open(&copy).expect("target");
        let size = || std::fs::metadata(&copy).expect("copy").len();
        let before = size();
        let (pages, _) = target.replace_with(&source).expect("replace");
        assert!(u64::from(pages) > CHECKPOINT_FRAMES);
        assert_eq!(size(), before, "a checkpoint ran inside the commit");
        let shared = Shared::new(target);
        assert!(shared.checkpoint_due());
        assert!(!shared.checkpoint_due(), "the count starts over once a checkpoint is due");

        let reader = Connection::open_with_flags(&copy, OpenFlags::SQLITE_OPEN_READ_ONLY).expect("reader");
        let count = |c: &Connection| c.query_row("SELECT count(*) FROM t", [], |r| r.get::<_, i64>(0)).expect("count");
        reader.execute_batch("BEGIN").expect("begin");
        assert_eq!(count(&reader), 5000);
        let checkpointer =
            Checkpointer::start(shared.checkpoint_connection().expect("connection"), copy.clone()).expect("start");
        checkpointer.request();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while checkpointer.is_running() {
            assert!(std::time::Instant::now() < deadline, "the checkpoint never ended");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(size() >= u64::from(pages) * 4096, "the checkpoint did not copy the pages into the database file");
        assert_eq!(count(&reader), 5000, "the reader keeps its snapshot");
        reader.execute_batch("COMMIT").expect("end");
        let target = shared.target.lock().expect("target");
        assert!(!target.written_by_others().expect("data_version"), "the checkpoint counted as another writer");
    }

    #[test]
    fn segments_that_continue_the_cursor_advance_it_across_wal_indexes() {
        let h0 = header(1);
        let (first, c) = frames(&h0, h0.checksum, 2, true);
        let end = first.len() as u64;
        let (second, _) = frames(&h0, c, 1, false);
        let h1 = header(2);
        let (next_index, c1) = frames(&h1, h1.checksum, 3, true);
        let segments = vec![decoded(0, 0, first), decoded(0, end, second), decoded(1, 0, next_index.clone())];
        let (batch, error) = check("r", &cursor(), segments);
        assert!(error.is_none(), "{error:?}");
        assert_eq!(batch.commits, 6);
        assert_eq!(batch.cursor.pos, Pos { index: 1, offset: next_index.len() as u64 });
        assert_eq!(batch.cursor.checksum, c1);
        assert_eq!(batch.cursor.header, Some(h1));
        assert_eq!(batch.cursor.db_pages, 4);
        assert_eq!(batch.cursor.last_name, "00000001_00000000.wal.lz4");
    }

    #[test]
    fn a_gap_or_a_torn_segment_stops_the_batch_with_an_error_naming_the_object() {
        let h = header(1);
        let (first, c) = frames(&h, h.checksum, 1, true);
        let end = first.len() as u64;
        let (later, _) = frames(&h, c, 1, false);
        let (batch, error) =
            check("file:///r", &cursor(), vec![decoded(0, 0, first.clone()), decoded(0, end + 536, later)]);
        assert_eq!(batch.segments.len(), 1, "the good segment stays in the batch");
        let message = error.expect("a gap").to_string();
        assert!(message.contains(&format!("00000000_{end:08x}.wal.lz4")), "{message}");

        let (mut torn, _) = frames(&h, c, 2, false);
        torn.truncate(torn.len() - 10);
        let (batch, error) = check("file:///r", &cursor(), vec![decoded(0, 0, first), decoded(0, end, torn)]);
        assert_eq!(batch.segments.len(), 1);
        let message = error.expect("torn").to_string();
        assert!(message.contains("corrupt") && message.contains(&format!("00000000_{end:08x}.wal.lz4")), "{message}");
    }
}
