//! PostgREST-style table API over SQLite (issue 4).
