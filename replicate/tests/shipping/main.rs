//! Replication's integration tests: the shipper, checkpoints beside applications, retention.
//! One test binary for the crate's integration tests: it links once.

mod checkpoints;
mod common;
mod retention;
mod shipper;
