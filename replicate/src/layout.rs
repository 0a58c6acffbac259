//! Litestream 0.3 replica key layout, shared by every backend:
//! `generations/<gen>/snapshots/<index>.snapshot.lz4` and `generations/<gen>/wal/<index>_<offset>.wal.lz4`.

use std::fmt;

/// Litestream starts a new generation past this index.
pub const MAX_INDEX: u32 = 0x7FFF_FFFF;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid generation name {0:?}: expected 16 lowercase hex characters")]
pub struct BadGeneration(pub String);

/// A generation id: 8 random bytes written as 16 lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Generation(String);

impl Generation {
    pub fn random() -> Self {
        Self(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn parse(s: &str) -> Result<Self, BadGeneration> {
        if s.len() == 16 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            Ok(Self(s.to_owned()))
        } else {
            Err(BadGeneration(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Generation {
    type Error = BadGeneration;
    fn try_from(s: String) -> Result<Self, BadGeneration> {
        Self::parse(&s)
    }
}

impl From<Generation> for String {
    fn from(g: Generation) -> String {
        g.0
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A position in a generation's WAL stream: which WAL (restart count) and the byte offset within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Pos {
    pub index: u32,
    pub offset: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}/{:08x}", self.index, self.offset)
    }
}

pub const GENERATIONS_DIR: &str = "generations";

pub fn snapshots_dir(generation: &Generation) -> String {
    format!("{GENERATIONS_DIR}/{generation}/snapshots")
}

pub fn wal_dir(generation: &Generation) -> String {
    format!("{GENERATIONS_DIR}/{generation}/wal")
}

pub fn snapshot_key(generation: &Generation, index: u32) -> String {
    format!("{}/{}", snapshots_dir(generation), snapshot_file_name(index))
}

pub fn wal_segment_key(generation: &Generation, pos: Pos) -> String {
    format!("{}/{}", wal_dir(generation), wal_segment_file_name(pos))
}

pub fn snapshot_file_name(index: u32) -> String {
    format!("{index:08x}.snapshot.lz4")
}

pub fn wal_segment_file_name(pos: Pos) -> String {
    format!("{:08x}_{:08x}.wal.lz4", pos.index, pos.offset)
}

/// Litestream writes 8 hex digits but readers must accept up to 16.
fn parse_hex(s: &str) -> Option<u64> {
    if (8..=16).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        u64::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

/// The index of a snapshot file name, or `None` for any other name.
pub fn parse_snapshot_file_name(name: &str) -> Option<u32> {
    let stem = name.strip_suffix(".snapshot.lz4")?;
    parse_hex(stem).and_then(|i| u32::try_from(i).ok())
}

/// The position of a WAL segment file name, or `None` for any other name.
pub fn parse_wal_segment_file_name(name: &str) -> Option<Pos> {
    let stem = name.strip_suffix(".wal.lz4")?;
    let (index, offset) = stem.split_once('_')?;
    Some(Pos { index: u32::try_from(parse_hex(index)?).ok()?, offset: parse_hex(offset)? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_litestream() {
        let g = Generation::parse("0123456789abcdef").expect("valid");
        assert_eq!(snapshot_key(&g, 1), "generations/0123456789abcdef/snapshots/00000001.snapshot.lz4");
        assert_eq!(
            wal_segment_key(&g, Pos { index: 0x1a, offset: 0x2040 }),
            "generations/0123456789abcdef/wal/0000001a_00002040.wal.lz4"
        );
    }

    #[test]
    fn parsing_accepts_8_to_16_hex_digits_only() {
        assert_eq!(parse_snapshot_file_name("0000000a.snapshot.lz4"), Some(10));
        assert_eq!(parse_snapshot_file_name("000000000000000a.snapshot.lz4"), Some(10));
        assert_eq!(parse_snapshot_file_name("a.snapshot.lz4"), None);
        assert_eq!(parse_snapshot_file_name("0000000a.snapshot.lz4.tmp"), None);
        assert_eq!(
            parse_wal_segment_file_name("00000001_0000000000001000.wal.lz4"),
            Some(Pos { index: 1, offset: 0x1000 })
        );
        assert_eq!(parse_wal_segment_file_name("00000001-00001000.wal.lz4"), None);
        assert_eq!(parse_wal_segment_file_name("zzzzzzzz_00001000.wal.lz4"), None);
    }

    #[test]
    fn generations_are_16_lowercase_hex() {
        assert!(Generation::parse(Generation::random().as_str()).is_ok());
        assert!(Generation::parse("0123456789ABCDEF").is_err());
        assert!(Generation::parse("0123").is_err());
        assert!(Generation::parse("../../etc/passwd").is_err());
    }
}
