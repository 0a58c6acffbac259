//! SQLite WAL file format: header, frames and the chained checksum.
//!
//! Everything here is pure: it reads bytes and says which of them form whole committed transactions. The replicator
//! ships exactly the bytes this module accepts, so a torn or corrupt tail is never shipped.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

pub const WAL_HEADER_SIZE: u64 = 32;
pub const FRAME_HEADER_SIZE: u64 = 24;
const MAGIC_LE: u32 = 0x377f_0682;
const MAGIC_BE: u32 = 0x377f_0683;
const WAL_VERSION: u32 = 3_007_000;

/// The WAL file SQLite keeps beside the database at `db_path`.
pub fn wal_path(db_path: &Path) -> PathBuf {
    let mut s = db_path.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WalHeaderError {
    #[error("WAL header is {0} bytes, need 32")]
    Short(usize),
    #[error("bad WAL magic {0:#010x}")]
    Magic(u32),
    #[error("unsupported WAL format version {0}")]
    Version(u32),
    #[error("invalid WAL page size {0}")]
    PageSize(u32),
    #[error("WAL header checksum mismatch")]
    Checksum,
}

/// A running WAL checksum: each frame's checksum covers everything before it in the same WAL.
pub type Checksum = (u32, u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WalHeader {
    pub big_endian_checksums: bool,
    pub page_size: u32,
    pub checkpoint_seq: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub checksum: Checksum,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl WalHeader {
    pub fn parse(bytes: &[u8]) -> Result<Self, WalHeaderError> {
        if bytes.len() < WAL_HEADER_SIZE as usize {
            return Err(WalHeaderError::Short(bytes.len()));
        }
        let magic = be32(bytes, 0);
        let big_endian_checksums = match magic {
            MAGIC_LE => false,
            MAGIC_BE => true,
            other => return Err(WalHeaderError::Magic(other)),
        };
        let version = be32(bytes, 4);
        if version != WAL_VERSION {
            return Err(WalHeaderError::Version(version));
        }
        let page_size = be32(bytes, 8);
        if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(WalHeaderError::PageSize(page_size));
        }
        let checksum = (be32(bytes, 24), be32(bytes, 28));
        if checksum_bytes(big_endian_checksums, (0, 0), &bytes[..24]) != checksum {
            return Err(WalHeaderError::Checksum);
        }
        Ok(Self {
            big_endian_checksums,
            page_size,
            checkpoint_seq: be32(bytes, 12),
            salt1: be32(bytes, 16),
            salt2: be32(bytes, 20),
            checksum,
        })
    }

    pub fn frame_size(&self) -> u64 {
        FRAME_HEADER_SIZE + u64::from(self.page_size)
    }

    /// Whether `next` is what SQLite writes when it restarts this WAL exactly once: `walRestartHdr` adds one to the
    /// first salt in the WAL-index, which every connection shares. The checkpoint sequence is no evidence: each
    /// connection writes its own count, which lags when another connection restarted the WAL.
    pub fn is_followed_by(&self, next: &WalHeader) -> bool {
        next.page_size == self.page_size && next.salt1 == self.salt1.wrapping_add(1)
    }

    /// Serialise a header; used by tests and by tools that synthesise WALs.
    pub fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out[0..4].copy_from_slice(&(if self.big_endian_checksums { MAGIC_BE } else { MAGIC_LE }).to_be_bytes());
        out[4..8].copy_from_slice(&WAL_VERSION.to_be_bytes());
        out[8..12].copy_from_slice(&self.page_size.to_be_bytes());
        out[12..16].copy_from_slice(&self.checkpoint_seq.to_be_bytes());
        out[16..20].copy_from_slice(&self.salt1.to_be_bytes());
        out[20..24].copy_from_slice(&self.salt2.to_be_bytes());
        let c = checksum_bytes(self.big_endian_checksums, (0, 0), &out[..24]);
        out[24..28].copy_from_slice(&c.0.to_be_bytes());
        out[28..32].copy_from_slice(&c.1.to_be_bytes());
        out
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), continuing from `seed`.
pub fn checksum_bytes(big_endian: bool, seed: Checksum, data: &[u8]) -> Checksum {
    let (mut s0, mut s1) = seed;
    for pair in data.chunks_exact(8) {
        let (x0, x1) = if big_endian {
            (be32(pair, 0), be32(pair, 4))
        } else {
            (
                u32::from_le_bytes([pair[0], pair[1], pair[2], pair[3]]),
                u32::from_le_bytes([pair[4], pair[5], pair[6], pair[7]]),
            )
        };
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub page_number: u32,
    /// Database size in pages after this frame's transaction; non-zero only on a commit frame.
    pub commit_db_size: u32,
    pub salt1: u32,
    pub salt2: u32,
    pub checksum: Checksum,
}

impl FrameHeader {
    pub fn parse(b: &[u8]) -> Self {
        Self {
            page_number: be32(b, 0),
            commit_db_size: be32(b, 4),
            salt1: be32(b, 8),
            salt2: be32(b, 12),
            checksum: (be32(b, 16), be32(b, 20)),
        }
    }
}

/// Where a WAL's valid, committed content ends, as found by [`scan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// Byte offset just past the last commit frame (or the start offset when there is none).
    pub end: u64,
    /// Running checksum at `end`.
    pub checksum: Checksum,
    /// Database size in pages recorded by the last commit frame, if any commit frame was found.
    pub db_size: Option<u32>,
    /// Number of commit frames between the start offset and `end`.
    pub commits: u64,
}

/// Validate frames read from `reader`, which is positioned at `start` (a frame boundary of the WAL that `header`
/// describes, whose running checksum there is `seed`), and report how far the committed content goes.
///
/// Reading stops at end of input, at a frame whose salts differ from the header's (a frame left over from an earlier
/// WAL cycle), or at a checksum mismatch (a torn or corrupt write). Frames after the last commit frame belong to a
/// transaction still in progress or rolled back, and are not included.
pub fn scan<R: Read>(reader: &mut R, header: &WalHeader, start: u64, seed: Checksum) -> io::Result<Committed> {
    scan_with(reader, header, start, seed, |_| Ok(()))
}

/// [`scan`], also handing every validated frame (header and page) to `sink` in order. Frames after the last commit
/// reach the sink too; callers that copy must stop at [`Committed::end`].
pub fn scan_with<R: Read>(
    reader: &mut R,
    header: &WalHeader,
    start: u64,
    seed: Checksum,
    mut sink: impl FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<Committed> {
    let frame_size = header.frame_size() as usize;
    let mut frame = vec![0u8; frame_size];
    let mut committed = Committed { end: start, checksum: seed, db_size: None, commits: 0 };
    let mut offset = start;
    let mut running = seed;
    loop {
        if !read_full(reader, &mut frame)? {
            break;
        }
        let fh = FrameHeader::parse(&frame);
        if fh.salt1 != header.salt1 || fh.salt2 != header.salt2 {
            break;
        }
        let c = checksum_bytes(header.big_endian_checksums, running, &frame[..8]);
        let c = checksum_bytes(header.big_endian_checksums, c, &frame[FRAME_HEADER_SIZE as usize..]);
        if c != fh.checksum {
            break;
        }
        sink(&frame)?;
        running = c;
        offset += frame_size as u64;
        if fh.commit_db_size != 0 {
            committed = Committed {
                end: offset,
                checksum: running,
                db_size: Some(fh.commit_db_size),
                commits: committed.commits + 1,
            };
        }
    }
    Ok(committed)
}

/// Fill `buf` completely; `Ok(false)` at a clean or partial end of input.
fn read_full<R: Read>(reader: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Build a frame (header + page) that continues a WAL from `running`; returns the frame and the new checksum.
/// Used by tests to synthesise WALs.
#[cfg(test)]
pub fn encode_frame(
    header: &WalHeader,
    running: Checksum,
    page_number: u32,
    commit_db_size: u32,
    page: &[u8],
) -> (Vec<u8>, Checksum) {
    let mut frame = Vec::with_capacity(FRAME_HEADER_SIZE as usize + page.len());
    frame.extend_from_slice(&page_number.to_be_bytes());
    frame.extend_from_slice(&commit_db_size.to_be_bytes());
    frame.extend_from_slice(&header.salt1.to_be_bytes());
    frame.extend_from_slice(&header.salt2.to_be_bytes());
    let c = checksum_bytes(header.big_endian_checksums, running, &frame[..8]);
    let c = checksum_bytes(header.big_endian_checksums, c, page);
    frame.extend_from_slice(&c.0.to_be_bytes());
    frame.extend_from_slice(&c.1.to_be_bytes());
    frame.extend_from_slice(page);
    (frame, c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(be: bool, page_size: u32) -> WalHeader {
        let mut h = WalHeader {
            big_endian_checksums: be,
            page_size,
            checkpoint_seq: 7,
            salt1: 0x1234_5678,
            salt2: 0x9abc_def0,
            checksum: (0, 0),
        };
        h = WalHeader::parse(&h.encode()).expect("encoded header parses");
        h
    }

    /// A WAL built from `txs` (each a number of frames; the last frame of each is a commit).
    fn build(h: &WalHeader, txs: &[u8]) -> (Vec<u8>, Vec<u64>) {
        let mut out = h.encode().to_vec();
        let mut running = h.checksum;
        let mut commit_ends = vec![];
        let mut page_no = 1;
        for &n in txs {
            for i in 0..n.max(1) {
                let page = vec![page_no as u8; h.page_size as usize];
                let commit = if i + 1 == n.max(1) { page_no } else { 0 };
                let (f, c) = encode_frame(h, running, page_no, commit, &page);
                out.extend_from_slice(&f);
                running = c;
                page_no += 1;
            }
            commit_ends.push(out.len() as u64);
        }
        (out, commit_ends)
    }

    #[test]
    fn header_round_trips_both_byte_orders() {
        for be in [false, true] {
            let h = header(be, 4096);
            assert_eq!(h.big_endian_checksums, be);
            assert_eq!(WalHeader::parse(&h.encode()), Ok(h));
        }
    }

    #[test]
    fn header_rejects_bad_input() {
        let h = header(false, 4096).encode();
        assert_eq!(WalHeader::parse(&h[..10]), Err(WalHeaderError::Short(10)));
        let mut bad = h;
        bad[0] = 0;
        assert!(matches!(WalHeader::parse(&bad), Err(WalHeaderError::Magic(_))));
        let mut bad = h;
        bad[17] ^= 1;
        assert_eq!(WalHeader::parse(&bad), Err(WalHeaderError::Checksum));
        let mut bad = h;
        bad[8..12].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(WalHeader::parse(&bad), Err(WalHeaderError::PageSize(1000)));
    }

    #[test]
    fn scan_stops_at_last_commit() {
        let h = header(false, 512);
        let (mut wal, ends) = build(&h, &[2, 1, 3]);
        // An uncommitted frame after the last commit is not included.
        let running = scan(&mut &wal[32..], &h, 32, h.checksum).expect("scan").checksum;
        let (f, _) = encode_frame(&h, running, 99, 0, &[0u8; 512]);
        wal.extend_from_slice(&f);
        let c = scan(&mut &wal[32..], &h, 32, h.checksum).expect("scan");
        assert_eq!(c.end, *ends.last().expect("ends"));
        assert_eq!(c.commits, 3);
        assert_eq!(c.db_size, Some(6));
    }

    #[test]
    fn scan_continues_from_a_saved_position() {
        let h = header(true, 1024);
        let (wal, ends) = build(&h, &[1, 2, 2]);
        let first = scan(&mut &wal[32..ends[0] as usize], &h, 32, h.checksum).expect("scan");
        assert_eq!(first.end, ends[0]);
        let rest = scan(&mut &wal[ends[0] as usize..], &h, first.end, first.checksum).expect("scan");
        assert_eq!(rest.end, ends[2]);
        assert_eq!(rest.commits, 2);
    }

    #[test]
    fn frames_from_an_older_wal_cycle_are_ignored() {
        let h = header(false, 512);
        let (mut wal, ends) = build(&h, &[1]);
        let older = WalHeader { salt1: h.salt1 - 1, ..h };
        let (old, _) = build(&older, &[1]);
        wal.extend_from_slice(&old[32..]);
        assert_eq!(scan(&mut &wal[32..], &h, 32, h.checksum).expect("scan").end, ends[0]);
    }

    proptest! {
        /// Whatever byte is flipped or wherever the file is cut, the scan never reports an end beyond the damage,
        /// and what it reports is a prefix ending at a commit of the undamaged WAL.
        #[test]
        fn damage_is_never_shipped(
            txs in proptest::collection::vec(1u8..4, 1..8),
            be in any::<bool>(),
            flip in any::<proptest::sample::Index>(),
            cut in any::<proptest::sample::Index>(),
            flip_bit in 0u8..8,
        ) {
            let h = header(be, 512);
            let (wal, ends) = build(&h, &txs);
            let body = &wal[32..];
            let mut damaged = body.to_vec();
            let at = flip.index(damaged.len());
            damaged[at] ^= 1 << flip_bit;
            let c = scan(&mut damaged.as_slice(), &h, 32, h.checksum).expect("scan");
            prop_assert!(c.end == 32 || ends.contains(&c.end));
            prop_assert!(c.end <= 32 + at as u64, "shipped past a corrupt byte at {}", 32 + at);

            let cut_at = cut.index(body.len() + 1);
            let c = scan(&mut &body[..cut_at], &h, 32, h.checksum).expect("scan");
            let expect = ends.iter().copied().filter(|e| *e <= 32 + cut_at as u64).max().unwrap_or(32);
            prop_assert_eq!(c.end, expect);
        }

        /// The parser never panics on arbitrary bytes.
        #[test]
        fn arbitrary_bytes_do_not_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(h) = WalHeader::parse(&bytes) {
                let _ = scan(&mut &bytes[32..], &h, 32, h.checksum);
            }
        }
    }
}

#[cfg(test)]
mod sqlite_tests {
    use super::*;

    /// The parser agrees with the WALs SQLite itself writes.
    #[test]
    fn parses_real_sqlite_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("a.db");
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.pragma_update(None, "journal_mode", "wal").expect("wal");
        conn.pragma_update(None, "wal_autocheckpoint", 0).expect("no autocheckpoint");
        conn.execute_batch("CREATE TABLE t(x); INSERT INTO t VALUES (1); INSERT INTO t VALUES (randomblob(9000));")
            .expect("write");
        let bytes = std::fs::read(dir.path().join("a.db-wal")).expect("read wal");
        let h = WalHeader::parse(&bytes).expect("header parses");
        assert_eq!(h.page_size, 4096);
        let c = scan(&mut &bytes[32..], &h, 32, h.checksum).expect("scan");
        assert_eq!(c.end, bytes.len() as u64, "every frame SQLite wrote is committed");
        assert_eq!(c.commits, 3);
    }
}
