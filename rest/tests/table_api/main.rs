//! The table API's integration tests, each module against the router with real SQLite files.
//! One test binary for the crate's integration tests: it links once.

mod auth;
mod common;
mod database;
mod embed;
mod injection;
mod metrics;
mod prefer;
mod read;
mod timeout;
mod write;
