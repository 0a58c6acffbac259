//! The database side of each table operation, run on a pooled connection inside the request's transaction.

pub mod read;
pub mod write;

use rusqlite::types::Value;
use rusqlite::{Connection, params_from_iter};

use crate::render::Rows;
use crate::sql::Output;
use crate::values::to_json;

/// Runs `sql` once and appends its rows (a SELECT or a RETURNING) to `rows`.
fn collect(conn: &Connection, sql: &str, params: &[Value], output: &Output, rows: &mut Rows) -> rusqlite::Result<()> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut cursor = statement.query(params_from_iter(params))?;
    while let Some(row) = cursor.next()? {
        let mut values = Vec::with_capacity(output.columns.len());
        for (i, column) in output.columns.iter().enumerate() {
            values.push(to_json(Some(column), row.get_ref(i)?));
        }
        rows.rows.push(values);
    }
    Ok(())
}
