//! Replication core of litecar: WAL reading, the Litestream 0.3 replica layout, snapshots, retention and restore.

pub mod backend;
pub mod client;
pub mod compress;
pub mod encryption;
pub mod error;
pub mod faults;
pub mod file;
pub mod follow;
mod fsutil;
pub mod layout;
pub mod object;
pub mod replicator;
pub mod restore;
pub mod retention;
pub mod sftp;
pub mod shipper;
pub mod spool;
pub mod state;
pub mod validate;
pub mod wal;
mod watch;

pub use client::{ObjectClient, ObjectInfo, Replica, SegmentInfo, SnapshotInfo};
pub use error::{Error, ReplicaError, Result};
pub use file::FileClient;
pub use layout::{Generation, Pos};
