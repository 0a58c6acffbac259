//! The database side of each table operation, run on a pooled connection inside the request's transaction.

pub mod read;
pub mod write;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use crate::db::DbError;
use crate::render::Rows;
use crate::sql::Output;

/// Runs `sql` once and appends its rows (a SELECT or a RETURNING) to `rows`.
fn collect(conn: &Connection, sql: &str, params: &[Value], output: &Output, rows: &mut Rows) -> Result<(), DbError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut cursor = statement.query(params_from_iter(params))?;
    while let Some(row) = cursor.next()? {
        rows.push(row, &output.columns)?;
    }
    Ok(())
}
