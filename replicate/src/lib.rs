//! Replication core of litecar: WAL reading, the Litestream 0.3 replica layout, snapshots, retention and restore.
//!
//! The public API is what the daemon needs: [`replicator`] (one database's replication, its options and status),
//! [`CheckpointPolicy`], [`restore`], [`follow`] (read replicas), [`validate`] (replica validation), the replica-client trait [`ObjectClient`] with
//! [`Replica`] over it, and the constructors of clients ([`backend::connect`], [`FileClient`], [`AgeClient`], [`sftp`]).
//! Everything else is the crate's own; tests outside it reach some internals through `test_utils` (feature
//! `test-utils`).

pub mod backend;
mod cancel;
mod client;
mod compress;
mod encryption;
mod error;
#[cfg(any(test, feature = "test-utils"))]
mod faults;
mod file;
pub mod follow;
mod fsutil;
mod layout;
mod object;
pub mod replicator;
pub mod restore;
mod retention;
pub mod sftp;
mod shipper;
mod spool;
mod state;
mod sync;
pub mod validate;
mod wal;
mod watch;

pub use client::{ObjectClient, ObjectInfo, OpCounters, OpObserver, Replica, SegmentInfo, SnapshotInfo};
pub use encryption::{AgeClient, AgeKeys};
pub use error::{Error, ReplicaError, Result};
pub use file::FileClient;
pub use layout::{Generation, Pos};
pub use shipper::CheckpointPolicy;

/// Internals for tests outside the crate: the shipper and spool to drive directly, the fault-injecting client, the
/// layout's names, LZ4 framing and retention.
#[cfg(feature = "test-utils")]
pub mod test_utils {
    pub use crate::compress::{Lz4Writer, decompress_into};
    pub use crate::faults::{FaultConfig, FaultyClient};
    /// The replica layout's key and file names.
    pub mod layout {
        pub use crate::layout::*;
    }
    pub use crate::retention::enforce as enforce_retention;
    pub use crate::shipper::Shipper;
    pub use crate::spool::Spool;
    pub use crate::wal::wal_path;
}
