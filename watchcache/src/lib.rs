//! Kubernetes list/watch into SQLite (issue 6).
