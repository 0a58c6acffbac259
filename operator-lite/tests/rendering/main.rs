//! litecar-operator's integration tests: rendered objects against golden files, and properties.
//! One test binary for the crate's integration tests: it links once.

mod props;
mod render;
