//! SQLite errors as API errors.

use rusqlite::ErrorCode;
use rusqlite::ffi;

use crate::error::RestError;

/// SQLite's extended constraint codes, as the SQLSTATE a PostgreSQL client would see for the same violation.
fn sqlstate(extended: i32) -> &'static str {
    match extended {
        ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY | ffi::SQLITE_CONSTRAINT_ROWID => "23505",
        ffi::SQLITE_CONSTRAINT_FOREIGNKEY => "23503",
        ffi::SQLITE_CONSTRAINT_NOTNULL => "23502",
        ffi::SQLITE_CONSTRAINT_CHECK => "23514",
        _ => "23000",
    }
}

/// `timed_out` tells an interrupt by the request time limit from any other interrupt.
pub(crate) fn map_sqlite(error: rusqlite::Error, table: &str, timed_out: bool, limit_ms: u128) -> RestError {
    let table = table.to_owned();
    match error {
        rusqlite::Error::SqliteFailure(failure, message) => {
            let message = message.unwrap_or_else(|| failure.to_string());
            match failure.code {
                ErrorCode::OperationInterrupted if timed_out => RestError::Timeout { table, limit_ms },
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => RestError::Busy { table },
                // STRICT tables report a wrong type as a constraint; it is the body's fault, not a conflict.
                ErrorCode::ConstraintViolation if failure.extended_code == ffi::SQLITE_CONSTRAINT_DATATYPE => {
                    RestError::BadBody { table, reason: message }
                }
                ErrorCode::ConstraintViolation => {
                    RestError::Constraint { table, sqlstate: sqlstate(failure.extended_code), message }
                }
                ErrorCode::TypeMismatch | ErrorCode::TooBig => RestError::BadBody { table, reason: message },
                ErrorCode::CannotOpen | ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt => {
                    // SQLite's message names the file; clients get the generic description, the log the rest.
                    tracing::warn!(%message, "table API cannot use the database");
                    RestError::Unavailable { reason: failure.to_string() }
                }
                // With every identifier validated, a plain SQL error comes from what the request asked for:
                // an `on_conflict` that matches no unique index, a write to a view without triggers, ...
                _ if failure.extended_code == ffi::SQLITE_ERROR => RestError::Rejected { table, message },
                _ => RestError::Sqlite { table, message },
            }
        }
        other => RestError::Sqlite { table, message: other.to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    #[test]
    fn unique_violation_maps_to_conflict() {
        let conn = Connection::open_in_memory().expect("in-memory sqlite");
        conn.execute_batch("CREATE TABLE t (a INTEGER UNIQUE); INSERT INTO t VALUES (1)").expect("in-memory sqlite");
        let error = conn.execute("INSERT INTO t VALUES (1)", []).expect_err("must fail");
        let mapped = map_sqlite(error, "t", false, 0);
        assert_eq!(mapped.status(), axum::http::StatusCode::CONFLICT);
        assert_eq!(mapped.code(), "23505");
        assert!(mapped.to_string().contains("`t`"), "{mapped}");
    }
}
