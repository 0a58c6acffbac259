//! POST (insert, bulk insert, upsert), PATCH, PUT and DELETE.

use rusqlite::Connection;
use rusqlite::types::Value;
use serde_json::{Map, Value as Json};

use super::collect;
use crate::db::DbError;
use crate::db::schema::{Column, Table};
use crate::error::RestError;
use crate::headers::Resolution;
use crate::query::{Condition, Op, Operand, QueryParams};
use crate::render::{Format, Rows};
use crate::sql::{Output, column, quote, where_clause, writable_column};
use crate::values::body_value;

/// What a write did: the rows it returned (only with `return=representation`) and how many it touched.
pub struct WriteOutcome {
    pub rows: Rows,
    pub affected: usize,
}

/// What every write needs besides its body.
pub struct WriteRequest<'a> {
    pub table: &'a Table,
    pub query: &'a QueryParams,
    /// Resolved `select`, when the rows are to be returned.
    pub returning: Option<Output>,
    /// How returned rows are rendered.
    pub format: Format,
}

/// The `Prefer` settings of an insert.
#[derive(Clone, Copy, Debug, Default)]
pub struct WriteOptions {
    pub resolution: Option<Resolution>,
    /// Keys absent from a row take the column's DEFAULT instead of NULL.
    pub missing_default: bool,
}

impl WriteRequest<'_> {
    fn returning_sql(&self) -> String {
        self.returning.as_ref().map(|o| format!(" RETURNING {}", o.sql_list())).unwrap_or_default()
    }

    /// Runs `sql` once per parameter set, collecting RETURNING rows or counting changes.
    fn execute(&self, conn: &Connection, sql: &str, param_sets: &[Vec<Value>]) -> Result<WriteOutcome, DbError> {
        self.execute_each(conn, param_sets.iter().map(|params| (sql, params.as_slice())))
    }

    /// Runs each statement with its parameters, collecting RETURNING rows or counting changes.
    fn execute_each<'s>(
        &self,
        conn: &Connection,
        statements: impl Iterator<Item = (&'s str, &'s [Value])>,
    ) -> Result<WriteOutcome, DbError> {
        let mut outcome = WriteOutcome { rows: Rows::default(), affected: 0 };
        match &self.returning {
            Some(output) => {
                outcome.rows = Rows::with_format(&output.keys, self.format)?;
                for (sql, params) in statements {
                    collect(conn, sql, params, output, &mut outcome.rows)?;
                }
                outcome.affected = outcome.rows.len();
            }
            None => {
                for (sql, params) in statements {
                    outcome.affected += conn.prepare_cached(sql)?.execute(rusqlite::params_from_iter(params))?;
                }
            }
        }
        Ok(outcome)
    }

    fn bad_body(&self, reason: impl Into<String>) -> RestError {
        RestError::bad_body(&self.table.name, reason)
    }
}

fn object_rows<'b>(request: &WriteRequest<'_>, body: &'b Json) -> Result<Vec<&'b Map<String, Json>>, RestError> {
    match body {
        Json::Object(map) => Ok(vec![map]),
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| item.as_object().ok_or_else(|| request.bad_body(format!("element #{i} is not an object"))))
            .collect(),
        _ => Err(request.bad_body("expected a JSON object or an array of objects")),
    }
}

/// The named columns, each once (`columns=a,a` means `a`).
fn columns_of<'t>(table: &'t Table, names: &[String]) -> Result<Vec<&'t Column>, RestError> {
    let mut columns: Vec<&Column> = Vec::with_capacity(names.len());
    for name in names {
        let c = writable_column(table, name)?;
        if !columns.iter().any(|seen| seen.name == c.name) {
            columns.push(c);
        }
    }
    Ok(columns)
}

fn row_params(
    request: &WriteRequest<'_>,
    columns: &[&Column],
    row: &Map<String, Json>,
) -> Result<Vec<Value>, RestError> {
    columns
        .iter()
        .map(|c| row.get(&c.name).map_or(Ok(Value::Null), |v| body_value(&request.table.name, c, v)))
        .collect()
}

fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

fn column_list(columns: &[&Column]) -> String {
    columns.iter().map(|c| quote(&c.name)).collect::<Vec<_>>().join(", ")
}

/// `ON CONFLICT (...) DO ...` for an upsert of `columns` keyed by `conflict`.
fn upsert_clause(columns: &[&Column], conflict: &[&Column], resolution: Resolution) -> String {
    let target = column_list(conflict);
    match resolution {
        Resolution::Ignore => format!(" ON CONFLICT ({target}) DO NOTHING"),
        Resolution::Merge => {
            let mut updates: Vec<String> = columns
                .iter()
                .filter(|c| !conflict.iter().any(|k| k.name == c.name))
                .map(|c| format!("{0} = excluded.{0}", quote(&c.name)))
                .collect();
            if updates.is_empty() {
                // Nothing to merge: a no-op update still lets RETURNING report the existing row.
                updates = conflict.iter().take(1).map(|c| format!("{0} = excluded.{0}", quote(&c.name))).collect();
            }
            format!(" ON CONFLICT ({target}) DO UPDATE SET {}", updates.join(", "))
        }
    }
}

pub fn insert(
    conn: &Connection,
    request: &WriteRequest<'_>,
    body: &Json,
    options: WriteOptions,
) -> Result<WriteOutcome, DbError> {
    let table = request.table;
    let rows = object_rows(request, body)?;
    let names: Vec<String> = match &request.query.columns {
        Some(names) => names.clone(),
        None => {
            let names: Vec<String> = rows.first().map(|r| r.keys().cloned().collect()).unwrap_or_default();
            for (i, row) in rows.iter().enumerate().skip(1) {
                if row.len() != names.len() || !names.iter().all(|n| row.contains_key(n)) {
                    return Err(request
                        .bad_body(format!(
                            "row #{i} has other keys than row #0; all rows of a bulk insert need the same keys"
                        ))
                        .into());
                }
            }
            names
        }
    };
    let columns = columns_of(table, &names)?;
    let conflict: Vec<&Column> = match &request.query.on_conflict {
        Some(names) => {
            let mut conflict: Vec<&Column> = Vec::new();
            for name in names {
                let c = column(table, name)?;
                if !conflict.iter().any(|seen| seen.name == c.name) {
                    conflict.push(c);
                }
            }
            conflict
        }
        None => table.primary_key(),
    };
    if options.resolution.is_some() {
        if columns.is_empty() {
            return Err(request.bad_body("an upsert needs at least one column").into());
        }
        if conflict.is_empty() {
            return Err(RestError::bad_query(
                "on_conflict",
                format!("table `{}` has no primary key; name its unique columns with on_conflict", table.name),
            )
            .into());
        }
    }
    let statement = |columns: &[&Column]| {
        let mut sql = if columns.is_empty() {
            format!("INSERT INTO {} DEFAULT VALUES", quote(&table.name))
        } else {
            format!(
                "INSERT INTO {} ({}) VALUES ({})",
                quote(&table.name),
                column_list(columns),
                placeholders(columns.len())
            )
        };
        if let Some(resolution) = options.resolution
            && !columns.is_empty()
        {
            sql.push_str(&upsert_clause(columns, &conflict, resolution));
        }
        sql.push_str(&request.returning_sql());
        sql
    };
    if !options.missing_default {
        let sql = statement(&columns);
        let param_sets = rows.iter().map(|row| row_params(request, &columns, row)).collect::<Result<Vec<_>, _>>()?;
        return request.execute(conn, &sql, &param_sets);
    }
    // A row's absent keys are left out of its INSERT, so SQLite applies their DEFAULT (SQLite has no DEFAULT
    // keyword in VALUES). Rows with the same keys share one cached statement.
    let mut statements = Vec::with_capacity(rows.len());
    for row in &rows {
        let present: Vec<&Column> = columns.iter().copied().filter(|c| row.contains_key(&c.name)).collect();
        statements.push((statement(&present), row_params(request, &present, row)?));
    }
    request.execute_each(conn, statements.iter().map(|(sql, params)| (sql.as_str(), params.as_slice())))
}

/// PATCH and DELETE apply to filtered rows only; `limit`/`offset`/`order` would need SQLite's optional
/// `UPDATE ... LIMIT`, so they are refused rather than silently ignored.
fn check_filtered(request: &WriteRequest<'_>, method: &str, allow_unfiltered: bool) -> Result<(), RestError> {
    let query = request.query;
    if query.limit.is_some() || query.offset.is_some() || !query.order.is_empty() {
        return Err(RestError::bad_query("limit", format!("limit, offset and order are not supported on {method}")));
    }
    if query.filters.is_empty() && !allow_unfiltered {
        return Err(RestError::UnfilteredWrite { table: request.table.name.clone(), method: method.to_owned() });
    }
    Ok(())
}

pub fn update(
    conn: &Connection,
    request: &WriteRequest<'_>,
    body: &Json,
    allow_unfiltered: bool,
) -> Result<WriteOutcome, DbError> {
    check_filtered(request, "PATCH", allow_unfiltered)?;
    let map = body.as_object().ok_or_else(|| request.bad_body("PATCH expects a JSON object"))?;
    if map.is_empty() {
        return Err(request.bad_body("PATCH body names no column to update").into());
    }
    let names: Vec<String> = map.keys().cloned().collect();
    let columns = columns_of(request.table, &names)?;
    let filter = where_clause(request.table, &request.query.filters)?;
    let assignments = columns.iter().map(|c| format!("{} = ?", quote(&c.name))).collect::<Vec<_>>().join(", ");
    let sql =
        format!("UPDATE {} SET {assignments}{}{}", quote(&request.table.name), filter.sql, request.returning_sql());
    let mut params = row_params(request, &columns, map)?;
    params.extend(filter.params);
    request.execute(conn, &sql, &[params])
}

pub fn delete(conn: &Connection, request: &WriteRequest<'_>, allow_unfiltered: bool) -> Result<WriteOutcome, DbError> {
    check_filtered(request, "DELETE", allow_unfiltered)?;
    let filter = where_clause(request.table, &request.query.filters)?;
    let sql = format!("DELETE FROM {}{}{}", quote(&request.table.name), filter.sql, request.returning_sql());
    request.execute(conn, &sql, &[filter.params])
}

/// PostgREST's PUT: an upsert of one whole row, addressed by `eq` filters on exactly the primary key.
pub fn put(conn: &Connection, request: &WriteRequest<'_>, body: &Json) -> Result<WriteOutcome, DbError> {
    let table = request.table;
    let bad_put = |reason: String| RestError::BadPut { table: table.name.clone(), reason };
    let pk = table.primary_key();
    if pk.is_empty() {
        return Err(bad_put("the table has no primary key".into()).into());
    }
    if request.query.limit.is_some() || request.query.offset.is_some() {
        return Err(bad_put("limit and offset are not allowed".into()).into());
    }
    let mut keys: Vec<(&Column, &str)> = Vec::new();
    for condition in &request.query.filters {
        let key = match condition {
            Condition::Predicate(p) if p.op == Op::Eq && !p.negate => match &p.operand {
                Operand::Text(value) => pk.iter().find(|c| c.name == p.column).map(|c| (*c, value.as_str())),
                _ => None,
            },
            _ => None,
        };
        match key {
            Some(key) if !keys.iter().any(|(c, _)| c.name == key.0.name) => keys.push(key),
            _ => return Err(bad_put("filters must be `eq` on each primary-key column and nothing else".into()).into()),
        }
    }
    if keys.len() != pk.len() {
        return Err(bad_put("filters must be `eq` on each primary-key column and nothing else".into()).into());
    }
    let map = match body {
        Json::Object(map) => map,
        Json::Array(items) if items.len() == 1 => {
            items[0].as_object().ok_or_else(|| bad_put("expected one JSON object".into()))?
        }
        _ => return Err(bad_put("expected one JSON object".into()).into()),
    };
    if let Some(missing) = table.columns.iter().find(|c| !c.generated && !map.contains_key(&c.name)) {
        return Err(bad_put(format!("the body lacks column `{}`; PUT replaces the whole row", missing.name)).into());
    }
    for (c, value) in &keys {
        let matches = match map.get(&c.name) {
            Some(Json::String(s)) => s == value,
            Some(Json::Number(n)) => n.to_string() == *value,
            _ => false,
        };
        if !matches {
            return Err(bad_put(format!("the body's `{}` does not match the URL filter", c.name)).into());
        }
    }
    let names: Vec<String> = map.keys().cloned().collect();
    let columns = columns_of(table, &names)?;
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({}){}{}",
        quote(&table.name),
        column_list(&columns),
        placeholders(columns.len()),
        upsert_clause(&columns, &pk, Resolution::Merge),
        request.returning_sql()
    );
    let params = row_params(request, &columns, map)?;
    request.execute(conn, &sql, &[params])
}
