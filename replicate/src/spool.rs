//! The local spool: each snapshot and WAL segment is compressed once into a directory next to the database, laid
//! out exactly as on a replica. Every replica uploads from it; an entry goes when all replicas have it. The spool,
//! not the application's WAL, absorbs a replica outage.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{IoContext, Result};
use crate::layout::{self, Generation, Pos};
use crate::sync::lock;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpoolKey {
    // Declared first so that, within a generation, a snapshot sorts (and uploads) before the segments after it.
    Snapshot { generation: Generation, index: u32 },
    Segment { generation: Generation, pos: Pos },
}

impl SpoolKey {
    pub fn generation(&self) -> &Generation {
        match self {
            SpoolKey::Snapshot { generation, .. } | SpoolKey::Segment { generation, .. } => generation,
        }
    }

    pub fn object_key(&self) -> String {
        match self {
            SpoolKey::Snapshot { generation, index } => layout::snapshot_key(generation, *index),
            SpoolKey::Segment { generation, pos } => layout::wal_segment_key(generation, *pos),
        }
    }

    fn sort_key(&self) -> (Generation, u8, Pos) {
        match self {
            SpoolKey::Snapshot { generation, index } => (generation.clone(), 0, Pos { index: *index, offset: 0 }),
            SpoolKey::Segment { generation, pos } => (generation.clone(), 1, *pos),
        }
    }
}

/// Something a replica needs in order to restore the current state of a generation and can no longer get. The
/// uploaders find these; the sync loop answers them with a new generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// A staged object's file went missing before every replica had it.
    Staged(SpoolKey),
    /// A replica holds no snapshot of the generation, and none is on its way: it was emptied, or is new, since the
    /// generation began.
    NoSnapshot { replica: String, generation: Generation },
}

impl Loss {
    pub fn generation(&self) -> &Generation {
        match self {
            Loss::Staged(key) => key.generation(),
            Loss::NoSnapshot { generation, .. } => generation,
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Loss::Staged(key) => write!(f, "{} was lost from the spool before it was uploaded", key.object_key()),
            Loss::NoSnapshot { replica, generation } => {
                write!(f, "replica {replica} holds no snapshot of generation {generation}")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct SpoolEntry {
    pub key: SpoolKey,
    pub path: PathBuf,
    pub size: u64,
    pub created: SystemTime,
    seq: u64,
}

#[derive(Debug)]
struct Inner {
    /// Pending entries in staging order, with the replicas (by position) that still need each.
    entries: BTreeMap<u64, (SpoolEntry, Vec<bool>)>,
    /// The pending entry of each key.
    by_key: BTreeMap<SpoolKey, u64>,
    next_seq: u64,
    /// Losses not yet reported by [`Spool::take_lost`].
    lost: Vec<Loss>,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    replicas: usize,
    inner: Mutex<Inner>,
}

impl Spool {
    /// Open the spool at `dir`, taking every entry already there as pending for every replica (uploads are
    /// idempotent, so re-sending after a restart is harmless).
    pub fn open(dir: PathBuf, replicas: usize) -> Result<Self> {
        std::fs::create_dir_all(&dir).at(&dir)?;
        let mut found = vec![];
        let gens_dir = dir.join(layout::GENERATIONS_DIR);
        for gen_entry in read_dir(&gens_dir)? {
            let Ok(generation) = Generation::parse(&gen_entry.file_name().to_string_lossy()) else {
                continue;
            };
            for f in read_dir(&gen_entry.path().join("snapshots"))? {
                if let Some(index) = layout::parse_snapshot_file_name(&f.file_name().to_string_lossy()) {
                    found.push((SpoolKey::Snapshot { generation: generation.clone(), index }, f.path()));
                }
            }
            for f in read_dir(&gen_entry.path().join("wal"))? {
                if let Some(pos) = layout::parse_wal_segment_file_name(&f.file_name().to_string_lossy()) {
                    found.push((SpoolKey::Segment { generation: generation.clone(), pos }, f.path()));
                }
            }
        }
        found.sort_by_key(|a| a.0.sort_key());
        let spool = Self {
            dir,
            replicas,
            inner: Mutex::new(Inner { entries: BTreeMap::new(), by_key: BTreeMap::new(), next_seq: 0, lost: vec![] }),
        };
        for (key, path) in found {
            let meta = std::fs::metadata(&path).at(&path)?;
            spool.insert(key, path, meta.len(), meta.modified().unwrap_or_else(|_| SystemTime::now()));
        }
        Ok(spool)
    }

    /// Where a staged object lives in the spool.
    pub fn path_for(&self, key: &SpoolKey) -> PathBuf {
        key.object_key().split('/').fold(self.dir.clone(), |p, c| p.join(c))
    }

    /// Register a file already written (atomically) at [`Spool::path_for`].
    pub fn insert(&self, key: SpoolKey, path: PathBuf, size: u64, created: SystemTime) {
        let mut inner = lock(&self.inner);
        // Staging a key again replaced its file: one upload of the new file stands for both, and the older entry
        // must not delete the file once it is uploaded (an upload in flight finds its entry gone and leaves it).
        let seq = inner.next_seq;
        inner.next_seq += 1;
        if let Some(older) = inner.by_key.insert(key.clone(), seq) {
            inner.entries.remove(&older);
        }
        let entry = SpoolEntry { key, path, size, created, seq };
        inner.entries.insert(seq, (entry, vec![true; self.replicas]));
    }

    /// Entries replica `replica` still has to upload, oldest first.
    pub fn pending(&self, replica: usize) -> Vec<SpoolEntry> {
        let inner = lock(&self.inner);
        inner.entries.values().filter(|(_, need)| need[replica]).map(|(e, _)| e.clone()).collect()
    }

    /// When the oldest entry replica `replica` still needs was staged: how far behind it is.
    pub fn oldest_pending(&self, replica: usize) -> Option<SystemTime> {
        let inner = lock(&self.inner);
        inner.entries.values().filter(|(_, need)| need[replica]).map(|(e, _)| e.created).min()
    }

    /// Total bytes of entries some replica still needs.
    pub fn pending_bytes(&self) -> u64 {
        let inner = lock(&self.inner);
        inner.entries.values().map(|(e, _)| e.size).sum()
    }

    pub fn is_empty(&self) -> bool {
        lock(&self.inner).entries.is_empty()
    }

    /// Record that `replica` has `entry`; the file goes once every replica has it.
    pub fn mark_uploaded(&self, replica: usize, entry: &SpoolEntry) {
        let remove = {
            let mut inner = lock(&self.inner);
            let Some((_, need)) = inner.entries.get_mut(&entry.seq) else {
                return;
            };
            need[replica] = false;
            if need.iter().any(|n| *n) {
                false
            } else {
                inner.entries.remove(&entry.seq);
                inner.by_key.remove(&entry.key);
                true
            }
        };
        if remove && let Err(e) = std::fs::remove_file(&entry.path) {
            tracing::warn!(path = %entry.path.display(), error = %e, "could not remove uploaded spool file");
        }
    }

    /// After an upload of `entry` failed: if its file is gone while the entry is still pending (someone or something
    /// deleted it), no replica can ever have it. Drop it for every replica, so that it stops holding up the queue,
    /// and remember the loss for [`Spool::take_lost`]. Returns whether the entry was lost.
    pub fn discard_if_lost(&self, entry: &SpoolEntry) -> bool {
        let mut inner = lock(&self.inner);
        // Checked under the lock: a re-staged key replaces its file by rename, so a pending entry's file is missing
        // only if it really was lost.
        if !inner.entries.contains_key(&entry.seq)
            || !matches!(std::fs::symlink_metadata(&entry.path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        {
            return false;
        }
        inner.entries.remove(&entry.seq);
        inner.by_key.remove(&entry.key);
        inner.lost.push(Loss::Staged(entry.key.clone()));
        true
    }

    /// Whether replica `replica` still has a snapshot of `generation` to upload.
    pub fn snapshot_pending(&self, replica: usize, generation: &Generation) -> bool {
        let inner = lock(&self.inner);
        inner.entries.values().any(|(e, need)| {
            need[replica] && matches!(&e.key, SpoolKey::Snapshot { generation: g, .. } if g == generation)
        })
    }

    /// Replica `replica` holds no snapshot of `generation`: what the spool still has of it is of no use to that
    /// replica, and a new generation must start.
    pub fn snapshot_missing(&self, replica: usize, replica_name: String, generation: &Generation) {
        for entry in self.pending(replica).into_iter().filter(|e| e.key.generation() == generation) {
            self.mark_uploaded(replica, &entry);
        }
        let mut inner = lock(&self.inner);
        inner.lost.push(Loss::NoSnapshot { replica: replica_name, generation: generation.clone() });
    }

    /// The losses found since the last call, oldest first.
    pub fn take_lost(&self) -> Vec<Loss> {
        std::mem::take(&mut lock(&self.inner).lost)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect::<std::io::Result<Vec<_>>>().at(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(vec![]),
        Err(e) => Err(crate::error::Error::Io { path: dir.to_owned(), source: e }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_a_key_again_keeps_one_entry_and_its_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path().join("spool"), 1).expect("open");
        let key =
            SpoolKey::Snapshot { generation: Generation::parse("0123456789abcdef").expect("generation"), index: 2 };
        let path = spool.path_for(&key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, b"first").expect("write");
        spool.insert(key.clone(), path.clone(), 5, SystemTime::now());
        let in_flight = spool.pending(0);
        std::fs::write(&path, b"second").expect("rewrite");
        spool.insert(key.clone(), path.clone(), 6, SystemTime::now());

        // The upload of the first version finishes after the second was staged.
        spool.mark_uploaded(0, &in_flight[0]);
        assert!(path.exists(), "the file the newer entry needs was removed");
        let pending = spool.pending(0);
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].size, 6);
        spool.mark_uploaded(0, &pending[0]);
        assert!(!path.exists() && spool.is_empty());
    }

    #[test]
    fn a_pending_entry_whose_file_vanished_is_dropped_and_reported_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path().join("spool"), 2).expect("open");
        let generation = Generation::parse("0123456789abcdef").expect("generation");
        let keys: Vec<SpoolKey> = (0..2)
            .map(|offset| SpoolKey::Segment { generation: generation.clone(), pos: Pos { index: 0, offset } })
            .collect();
        for key in &keys {
            let path = spool.path_for(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, b"frames").expect("write");
            spool.insert(key.clone(), path, 6, SystemTime::now());
        }
        let pending = spool.pending(0);
        assert!(!spool.discard_if_lost(&pending[0]), "an entry whose file exists is not lost");

        std::fs::remove_file(&pending[0].path).expect("remove");
        assert!(spool.discard_if_lost(&pending[0]));
        assert!(!spool.discard_if_lost(&pending[0]), "a loss is reported once");
        for replica in 0..2 {
            let left: Vec<SpoolKey> = spool.pending(replica).into_iter().map(|e| e.key).collect();
            assert_eq!(left, keys[1..], "replica {replica} still waits for the lost entry");
        }
        assert_eq!(spool.take_lost(), [Loss::Staged(keys[0].clone())]);
        assert!(spool.take_lost().is_empty());
    }

    #[test]
    fn a_replica_without_the_snapshot_gives_up_the_generation_and_leaves_the_rest_to_the_others() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path().join("spool"), 2).expect("open");
        let old = Generation::parse("0123456789abcdef").expect("generation");
        let new = Generation::parse("fedcba9876543210").expect("generation");
        let keys = [
            SpoolKey::Segment { generation: old.clone(), pos: Pos { index: 0, offset: 0 } },
            SpoolKey::Snapshot { generation: new.clone(), index: 0 },
        ];
        for key in &keys {
            let path = spool.path_for(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, b"data").expect("write");
            spool.insert(key.clone(), path, 4, SystemTime::now());
        }
        assert!(spool.snapshot_pending(0, &new) && !spool.snapshot_pending(0, &old));

        spool.snapshot_missing(1, "b".into(), &old);
        let keys_of = |replica| spool.pending(replica).into_iter().map(|e| e.key).collect::<Vec<_>>();
        assert_eq!(keys_of(1), keys[1..], "replica 1 still waits for the generation it cannot restore");
        assert_eq!(keys_of(0), keys, "the other replica lost what it needs");
        assert!(spool.path_for(&keys[0]).exists(), "a file another replica needs was removed");
        assert_eq!(spool.take_lost(), [Loss::NoSnapshot { replica: "b".into(), generation: old }]);
    }
}
