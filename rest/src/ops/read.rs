//! GET and HEAD: rows, the total when asked for, and the 416 check.

use rusqlite::Connection;
use rusqlite::types::Value;

use super::collect;
use crate::db::DbError;
use crate::db::schema::Schema;
use crate::embed;
use crate::error::RestError;
use crate::query::QueryParams;
use crate::render::{Format, Rows};
use crate::sql::{order_clause, quote};

/// Which rows of the result a response carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub offset: u64,
    pub limit: Option<u64>,
}

impl Window {
    /// The intersection of `offset`/`limit` with the `Range` header (as PostgREST does), capped at `max_rows`.
    pub fn new(query: &QueryParams, range: Option<(u64, Option<u64>)>, max_rows: Option<usize>) -> Self {
        let query_start = query.offset.unwrap_or(0);
        let query_end = query.limit.map(|limit| query_start.saturating_add(limit));
        let (range_start, range_end) = match range {
            Some((first, last)) => (first, last.map(|last| last.saturating_add(1))),
            None => (0, None),
        };
        let offset = query_start.max(range_start);
        // Exclusive end of the window, if bounded.
        let end = match (query_end, range_end) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut limit = end.map(|end| end.saturating_sub(offset));
        if let Some(max) = max_rows {
            let max = u64::try_from(max).unwrap_or(u64::MAX);
            limit = Some(limit.map_or(max, |l| l.min(max)));
        }
        Window { offset, limit }
    }
}

pub struct ReadOutcome {
    pub rows: Rows,
    pub total: Option<u64>,
}

pub fn read(
    conn: &Connection,
    schema: &Schema,
    table: &str,
    query: &QueryParams,
    window: Window,
    count: bool,
    format: Format,
) -> Result<ReadOutcome, DbError> {
    let table = schema.table(table)?;
    let (output, filter) = embed::resolve(schema, table, query)?;
    let order = order_clause(table, &query.order)?;
    let mut params = output.params.clone();
    params.extend(filter.params.iter().cloned());
    // SQLite (3.47+) plans with the value bound to LIMIT, so rebinding it makes every execution of a cached
    // statement recompile. Without a limit (a point read, typically) the clause is the constant LIMIT -1
    // ("no limit"), which keeps the cached statement valid; the offset may stay a parameter.
    let limit = match window.limit {
        Some(limit) => {
            params.push(Value::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
            "?"
        }
        None => "-1",
    };
    params.push(Value::Integer(i64::try_from(window.offset).unwrap_or(i64::MAX)));
    let sql = format!(
        "SELECT {} FROM {}{}{} LIMIT {limit} OFFSET ?",
        output.sql_list(),
        quote(&table.name),
        filter.sql,
        order
    );
    let mut rows = Rows::with_format(&output.keys, format)?;
    collect(conn, &sql, &params, &output, &mut rows)?;

    let total = if count {
        let count_sql = format!("SELECT count(*) FROM {}{}", quote(&table.name), filter.sql);
        let n: i64 =
            conn.prepare_cached(&count_sql)?.query_row(rusqlite::params_from_iter(&filter.params), |r| r.get(0))?;
        Some(u64::try_from(n).unwrap_or(0))
    } else {
        None
    };
    // PostgREST answers a window past the end with `200 []` (so "page until empty" loops end), and only with a
    // count does it tell the client it overshot: 416 beyond the total, 206 `*/N` at the total exactly.
    if let Some(total) = total
        && rows.is_empty()
        && window.offset > total
    {
        return Err(RestError::RangeNotSatisfiable { table: table.name.clone(), offset: window.offset, total }.into());
    }
    Ok(ReadOutcome { rows, total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(limit: Option<u64>, offset: Option<u64>) -> QueryParams {
        QueryParams { limit, offset, ..QueryParams::default() }
    }

    #[test]
    fn window_intersects_query_and_range() {
        assert_eq!(Window::new(&query(None, None), None, None), Window { offset: 0, limit: None });
        assert_eq!(Window::new(&query(Some(10), Some(5)), None, None), Window { offset: 5, limit: Some(10) });
        assert_eq!(Window::new(&query(None, None), Some((0, Some(24))), None), Window { offset: 0, limit: Some(25) });
        assert_eq!(Window::new(&query(Some(10), None), Some((5, None)), None), Window { offset: 5, limit: Some(5) });
        assert_eq!(
            Window::new(&query(Some(2), Some(8)), Some((0, Some(4))), None),
            Window { offset: 8, limit: Some(0) }
        );
        assert_eq!(Window::new(&query(None, None), None, Some(3)), Window { offset: 0, limit: Some(3) });
    }
}
