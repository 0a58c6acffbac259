//! Restore: choose a generation, the latest snapshot at or before the target, and every WAL segment after it;
//! download them in parallel into a scratch directory, then rebuild the database one WAL index at a time, letting
//! SQLite checkpoint each validated WAL. The result is checked, made durable and renamed into place; nothing
//! temporary is left.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use futures::{FutureExt, StreamExt, TryStreamExt};
use rusqlite::{Connection, OpenFlags};

use crate::client::{Replica, SegmentInfo, SnapshotInfo};
use crate::compress::{self, lz4_reader};
use crate::error::{Error, IoContext, Result};
use crate::fsutil::{ReadOnce, with_page_cache_filled, write_flushing};
use crate::layout::{self, Generation};
use crate::shipper::SQLITE_HEADER;
use crate::wal::wal_path;
use crate::wal::{self, WAL_HEADER_SIZE, WalHeader};

#[derive(Debug, Clone, Default)]
pub struct Target {
    pub generation: Option<Generation>,
    /// Restore up to and including this WAL index.
    pub index: Option<u32>,
    /// Restore the state as of this time.
    pub timestamp: Option<SystemTime>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub replica: String,
    pub generation: Generation,
    pub snapshot: SnapshotInfo,
    pub segments: Vec<SegmentInfo>,
}

impl Plan {
    /// When the newest object of the plan was written: how recent the data it restores is.
    pub fn updated(&self) -> SystemTime {
        self.segments.iter().map(|s| s.created).chain([self.snapshot.created]).max().unwrap_or(SystemTime::UNIX_EPOCH)
    }

    pub fn bytes(&self) -> u64 {
        self.snapshot.size + self.segments.iter().map(|s| s.size).sum::<u64>()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSummary {
    pub generation: Generation,
    pub first: Option<SystemTime>,
    pub last: Option<SystemTime>,
}

/// When a generation's data starts and ends, for listing.
pub async fn summarize(replica: &Replica, generation: &Generation) -> Result<GenerationSummary> {
    let snaps = replica.snapshots(generation).await?;
    let segs = replica.segments(generation).await?;
    let times = snaps.iter().map(|s| s.created).chain(segs.iter().map(|s| s.created));
    let (first, last) = times.fold((None, None), |(lo, hi): (Option<SystemTime>, Option<SystemTime>), t| {
        (Some(lo.map_or(t, |l| l.min(t))), Some(hi.map_or(t, |h| h.max(t))))
    });
    Ok(GenerationSummary { generation: generation.clone(), first, last })
}

/// Work out what to restore from `replica`; `Ok(None)` when it holds nothing that matches the target.
pub async fn plan(replica: &Replica, target: &Target) -> Result<Option<Plan>> {
    let generations = match &target.generation {
        Some(g) => vec![g.clone()],
        None => replica.generations().await?,
    };
    let mut best: Option<(SystemTime, Plan)> = None;
    for generation in generations {
        let Some(plan) = plan_generation(replica, &generation, target).await? else {
            continue;
        };
        let updated = plan.updated();
        if best.as_ref().is_none_or(|(t, _)| updated >= *t) {
            best = Some((updated, plan));
        }
    }
    Ok(best.map(|(_, p)| p))
}

async fn plan_generation(replica: &Replica, generation: &Generation, target: &Target) -> Result<Option<Plan>> {
    let snapshots = replica.snapshots(generation).await?;
    let snapshot = snapshots
        .into_iter()
        .filter(|s| target.index.is_none_or(|i| s.index <= i))
        .filter(|s| target.timestamp.is_none_or(|t| s.created <= t))
        .max_by_key(|s| s.index);
    let Some(snapshot) = snapshot else {
        return Ok(None);
    };
    let mut segments = vec![];
    for s in replica.segments(generation).await? {
        if s.pos.index < snapshot.index {
            continue;
        }
        if target.index.is_some_and(|i| s.pos.index > i) || target.timestamp.is_some_and(|t| s.created > t) {
            break;
        }
        segments.push(s);
    }
    Ok(Some(Plan { replica: replica.name.clone(), generation: generation.clone(), snapshot, segments }))
}

#[derive(Debug, Clone)]
pub struct RestoreOptions {
    pub output: PathBuf,
    pub parallelism: usize,
    /// Run `PRAGMA integrity_check` (slow, thorough) instead of `quick_check`.
    pub full_integrity_check: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSummary {
    pub generation: Generation,
    pub snapshot_index: u32,
    pub last_index: u32,
    pub segments: usize,
    pub bytes_downloaded: u64,
}

/// Bytes downloaded so far, reported as restore goes (for progress displays).
pub type Progress<'a> = dyn Fn(u64) + Send + Sync + 'a;

/// Carry out `plan` into `opts.output`, which must not exist yet.
pub async fn restore(
    replica: &Replica,
    plan: &Plan,
    opts: &RestoreOptions,
    progress: &Progress<'_>,
) -> Result<RestoreSummary> {
    if opts.output.exists() {
        return Err(Error::OutputExists { path: opts.output.clone() });
    }
    let out_dir = match opts.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&out_dir).at(&out_dir)?;
    let file_name = opts.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let scratch = tempfile_dir(&out_dir, &file_name)?;
    let result = restore_into(replica, plan, opts, progress, &scratch).await;
    let _ = fs::remove_dir_all(&scratch);
    result
}

fn tempfile_dir(dir: &Path, name: &str) -> Result<PathBuf> {
    for _ in 0..16 {
        let p = dir.join(format!(".{name}.litecar-restore-{:08x}", rand::random::<u32>()));
        match fs::create_dir(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::Io { path: p, source: e }),
        }
    }
    Err(Error::Io { path: dir.to_owned(), source: io::Error::other("could not create a scratch directory") })
}

async fn restore_into(
    replica: &Replica,
    plan: &Plan,
    opts: &RestoreOptions,
    progress: &Progress<'_>,
    scratch: &Path,
) -> Result<RestoreSummary> {
    let downloaded = std::sync::atomic::AtomicU64::new(0);
    // Every object of the plan: the snapshot first, then the segments. A local replica is read in place; anything
    // else is downloaded into the scratch directory, `parallelism` at a time.
    let mut objects: Vec<(String, Option<layout::Pos>)> =
        vec![(layout::snapshot_key(&plan.generation, plan.snapshot.index), None)];
    objects.extend(plan.segments.iter().map(|s| (layout::wal_segment_key(&plan.generation, s.pos), Some(s.pos))));
    let sources: Vec<Source> = objects
        .iter()
        .enumerate()
        .map(|(i, (key, _))| match replica.client.local_path(key) {
            Some(path) => Source { path, downloaded: false },
            None => Source { path: scratch.join(format!("{i:08}.lz4")), downloaded: true },
        })
        .collect();
    futures::stream::iter(objects.iter().zip(&sources).filter(|(_, source)| source.downloaded).map(
        |((_, pos), Source { path: dst, .. })| {
            let downloaded = &downloaded;
            async move {
                let n = match pos {
                    None => replica.get_snapshot(&plan.generation, plan.snapshot.index, dst).await?,
                    Some(p) => replica.get_segment(&plan.generation, *p, dst).await?,
                };
                let total = downloaded.fetch_add(n, std::sync::atomic::Ordering::Relaxed) + n;
                progress(total);
                Ok::<_, Error>(())
            }
        },
    ))
    .buffer_unordered(opts.parallelism.max(1))
    .try_collect::<Vec<()>>()
    // Boxed where the closures' lifetimes are concrete, so that a task spawning a restore can be proven Send.
    .boxed()
    .await?;

    let work_db = scratch.join("db");
    let plan_owned = plan.clone();
    let replica_name = replica.describe();
    let full = opts.full_integrity_check;
    let (work, scratch) = (work_db.clone(), scratch.to_owned());
    tokio::task::spawn_blocking(move || apply(&replica_name, &plan_owned, &sources, &scratch, &work, full))
        .await
        .map_err(|e| Error::Io { path: work_db.clone(), source: io::Error::other(e) })??;

    fs::rename(&work_db, &opts.output).at(&opts.output)?;
    if let Some(dir) = opts.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).at(dir)?;
    }
    Ok(RestoreSummary {
        generation: plan.generation.clone(),
        snapshot_index: plan.snapshot.index,
        last_index: plan.segments.last().map_or(plan.snapshot.index, |s| s.pos.index),
        segments: plan.segments.len(),
        bytes_downloaded: downloaded.into_inner(),
    })
}

impl Replica {
    pub fn describe(&self) -> String {
        if self.name.is_empty() {
            self.client.describe()
        } else {
            format!("{} ({})", self.name, self.client.describe())
        }
    }
}

/// A file of the replica that the restore reads once: read in place from a local replica, or downloaded into the
/// scratch directory.
struct Source {
    path: PathBuf,
    downloaded: bool,
}

impl Source {
    /// A local replica's file gives its page cache back as it is read ([`ReadOnce`]). A downloaded one keeps it: its
    /// pages are likely not on disk yet, and giving them back would write them there first, for a file about to be
    /// deleted.
    fn open(&self) -> Result<Box<dyn Read + Send>> {
        let file = File::open(&self.path).at(&self.path)?;
        Ok(if self.downloaded { Box::new(file) } else { Box::new(ReadOnce::new(file)) })
    }
}

/// Rebuild the database from `sources`: the snapshot's file, then one file per segment of the plan, in order.
///
/// Nothing waits for the disk in between: the snapshot is sent to disk in the background as it is decompressed,
/// each WAL index is decompressed and validated into its own scratch file beside it, and SQLite's checkpoints of
/// those files run without fsyncs. The database is made durable once, at the end, while SQLite checks it.
fn apply(replica: &str, plan: &Plan, sources: &[Source], scratch: &Path, db: &Path, full_check: bool) -> Result<()> {
    let started = std::time::Instant::now();
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
        fs::rename(&wal.path, &wal_file).at(&wal_file)?;
        // The checkpoint writes the pages the database grew by into new pages of the file, as the snapshot's writer did.
        let before = AtomicU64::new(out.metadata().at(db)?.len());
        with_page_cache_filled(&out, wal.db_len, &before, || checkpoint_restored(db))?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis(), index = wal.index, "restore: WAL applied");
    }
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

/// One WAL index of the plan, decompressed and validated, ready for SQLite to checkpoint.
struct PreparedWal {
    index: u32,
    path: PathBuf,
    /// How long the database is after the WAL's last transaction.
    db_len: u64,
}

/// Decompress and validate each WAL index of the plan into a scratch file of its own in `dir`, in index order.
fn prepare_wals(replica: &str, plan: &Plan, segment_files: &[Source], dir: &Path) -> Result<Vec<PreparedWal>> {
    let mut by_index: BTreeMap<u32, Vec<(usize, &SegmentInfo)>> = BTreeMap::new();
    for (i, s) in plan.segments.iter().enumerate() {
        by_index.entry(s.pos.index).or_default().push((i, s));
    }
    let mut wals = Vec::with_capacity(by_index.len());
    for (index, segs) in by_index {
        if segs[0].1.pos.offset != 0 {
            let key = layout::wal_segment_key(&plan.generation, layout::Pos { index, offset: 0 });
            return Err(Error::Restore {
                replica: replica.to_owned(),
                message: format!("missing WAL segment {key}: WAL index {index:08x} does not start at offset 0"),
            });
        }
        let path = dir.join(format!("{index:08x}.wal"));
        let db_len = write_wal(replica, plan, segment_files, &segs, &path)?;
        wals.push(PreparedWal { index, path, db_len });
    }
    Ok(wals)
}

/// Concatenate one index's segments into a WAL file, checking that each segment starts where the previous one
/// ended, that the checksum chain holds throughout, and that the WAL ends on a commit frame. SQLite would silently
/// ignore a WAL that fails these checks, losing data without a word. Returns the database's length after the WAL's
/// last transaction.
fn write_wal(
    replica: &str,
    plan: &Plan,
    segment_files: &[Source],
    segs: &[(usize, &SegmentInfo)],
    wal_file: &Path,
) -> Result<u64> {
    let mut db_len = 0;
    let mut out = BufWriter::with_capacity(1 << 20, File::create(wal_file).at(wal_file)?);
    let mut header: Option<WalHeader> = None;
    let mut expect_offset = 0u64;
    let mut checksum = (0, 0);
    for (i, seg) in segs {
        let key = layout::wal_segment_key(&plan.generation, seg.pos);
        let corrupt = |message: String| Error::Corrupt { replica: replica.to_owned(), key: key.clone(), message };
        if seg.pos.offset != expect_offset {
            return Err(corrupt(format!(
                "segment starts at offset {:#x}, expected {expect_offset:#x}",
                seg.pos.offset
            )));
        }
        let mut r = lz4_reader(BufReader::with_capacity(1 << 20, segment_files[*i].open()?));
        let mut start = seg.pos.offset;
        if seg.pos.offset == 0 {
            let mut hb = [0u8; WAL_HEADER_SIZE as usize];
            r.read_exact(&mut hb).map_err(|e| corrupt(format!("reading WAL header: {e}")))?;
            let h = WalHeader::parse(&hb).map_err(|e| corrupt(e.to_string()))?;
            out.write_all(&hb).at(wal_file)?;
            checksum = h.checksum;
            header = Some(h);
            start = WAL_HEADER_SIZE;
        }
        let h = header.ok_or_else(|| corrupt("no WAL header".into()))?;
        let mut counted = CountingReader { inner: r, n: 0 };
        let mut write_err = None;
        let c = wal::scan_with(&mut counted, &h, start, checksum, |frame| {
            out.write_all(frame).inspect_err(|e| write_err = Some(io::Error::new(e.kind(), e.to_string())))
        });
        if let Some(e) = write_err {
            return Err(Error::Io { path: wal_file.to_owned(), source: e });
        }
        let c = c.map_err(|e| corrupt(e.to_string()))?;
        // Every byte of the segment must belong to a committed transaction.
        io::copy(&mut counted, &mut io::sink()).map_err(|e| corrupt(e.to_string()))?;
        if c.end - start != counted.n {
            return Err(corrupt(format!(
                "invalid WAL frames: only {} of {} bytes form committed transactions",
                c.end - start,
                counted.n
            )));
        }
        if counted.n == 0 && seg.pos.offset != 0 {
            return Err(corrupt("empty WAL segment".into()));
        }
        checksum = c.checksum;
        expect_offset = c.end;
        if let Some(pages) = c.db_size {
            db_len = u64::from(pages) * u64::from(h.page_size);
        }
    }
    // A scratch file that SQLite checkpoints right away: it needs no fsync.
    out.flush().at(wal_file)?;
    Ok(db_len)
}

struct CountingReader<R> {
    inner: R,
    n: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        Ok(k)
    }
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
