//! The daemon's integration tests: its router, the Litestream config corpus, TLS.
//! One test binary for the crate's integration tests: it links once.

mod app;
mod corpus;
mod tls;
