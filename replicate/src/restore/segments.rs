//! Each WAL index of a plan, decompressed and validated into a WAL file of its own, ready for SQLite to checkpoint.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::Plan;
use super::apply::Source;
use crate::client::SegmentInfo;
use crate::compress::lz4_reader;
use crate::error::{Error, IoContext, Result};
use crate::layout;
use crate::wal::{self, WAL_HEADER_SIZE, WalHeader};

/// One WAL index of the plan, decompressed and validated, ready for SQLite to checkpoint.
pub(super) struct PreparedWal {
    pub(super) index: u32,
    pub(super) path: PathBuf,
    /// How long the database is after the WAL's last transaction.
    pub(super) db_len: u64,
}

/// Decompress and validate each WAL index of the plan into a scratch file of its own in `dir`, in index order.
pub(super) fn prepare_wals(
    replica: &str,
    plan: &Plan,
    segment_files: &[Source],
    dir: &Path,
) -> Result<Vec<PreparedWal>> {
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
