//! The watch-cache's integration tests: store, queries, events, the HTTP API and fan-out.
//! One test binary for the crate's integration tests: it links once.

mod common;
mod events;
mod fanout;
mod http;
mod query;
mod store;
