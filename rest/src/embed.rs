//! Resource embedding: related rows along foreign keys, as nested JSON built by SQLite in the same query.
//!
//! `select=*,orders(*)` on `customers` adds, per customer, a correlated subquery that aggregates the matching
//! `orders` rows with `json_group_array(json_object(...))` (one-to-many: an array) or picks the one referenced
//! row with `json_object(...)` (many-to-one: an object or null). Filters, `order`, `limit` and `offset` given as
//! `orders.status=eq.paid`, `orders.order=id.desc`, ... apply inside that subquery; `!inner` also keeps only the
//! parent rows that have a match. Table, column and relationship names all come from the schema; the JSON keys,
//! which the client chooses, are bound parameters like every value.

use std::collections::HashSet;

use rusqlite::types::Value;

use crate::db::schema::{Affinity, Column, Schema, Table};
use crate::error::{RestError, echo};
use crate::query::{Embed, QueryParams, SelectItem};
use crate::sql::{Output, Where, column, order_clause, quote, where_clause};

/// The response's output and the top-level WHERE clause (the filters and any `!inner` conditions).
pub fn resolve(schema: &Schema, table: &Table, query: &QueryParams) -> Result<(Output, Where), RestError> {
    let mut builder = Builder { schema, query, aliases: 0, used: HashSet::new() };
    let mut output = Output::default();
    let mut inner = Vec::new();
    let parent = quote(&table.name);
    for item in query.select.as_deref().unwrap_or(&[SelectItem::Star]) {
        match item {
            SelectItem::Embed(embed) => {
                let sql = builder.embed(table, &parent, embed, embed.key())?;
                output.params.extend(sql.params);
                output.push(embed.key().to_owned(), json_column(embed.key()), sql.expr);
                inner.extend(sql.inner);
            }
            item => output.push_columns(table, item)?,
        }
    }
    if let Some(path) = query.embedded.keys().find(|path| !builder.used.contains(path.as_str())) {
        return Err(RestError::bad_query(path, format!("`{}` is not an embedded resource of this select", echo(path))));
    }
    let mut filter = where_clause(table, &query.filters)?;
    for (condition, params) in inner {
        filter.sql = if filter.sql.is_empty() {
            format!(" WHERE {condition}")
        } else {
            format!("{} AND {condition}", filter.sql)
        };
        filter.params.extend(params);
    }
    Ok((output, filter))
}

/// How an embedded table relates to its parent.
struct Relation<'s> {
    child: &'s Table,
    /// One-to-many (the child references the parent): an array; otherwise an object.
    to_many: bool,
    /// (parent column, child column) pairs that must be equal.
    pairs: Vec<(String, String)>,
    /// The referencing columns, which a `!hint` may name.
    fk_columns: Vec<String>,
}

fn pk_names(table: &Table) -> Vec<String> {
    table.primary_key().iter().map(|c| c.name.clone()).collect()
}

fn relation<'s>(schema: &'s Schema, parent: &Table, embed: &Embed) -> Result<Relation<'s>, RestError> {
    // Not allowed, missing and unrelated answer alike, so embedding cannot probe for tables.
    let none = || RestError::NoRelationship { parent: parent.name.clone(), child: echo(&embed.table) };
    let child = schema.table(&embed.table).map_err(|_| none())?;
    let mut found = Vec::new();
    for fk in parent.foreign_keys.iter().filter(|fk| fk.table.eq_ignore_ascii_case(&child.name)) {
        let to = if fk.to.is_empty() { pk_names(child) } else { fk.to.clone() };
        let pairs: Vec<(String, String)> = fk.from.iter().cloned().zip(to).collect();
        found.push(Relation { child, to_many: false, pairs, fk_columns: fk.from.clone() });
    }
    for fk in child.foreign_keys.iter().filter(|fk| fk.table.eq_ignore_ascii_case(&parent.name)) {
        let to = if fk.to.is_empty() { pk_names(parent) } else { fk.to.clone() };
        let pairs: Vec<(String, String)> = to.into_iter().zip(fk.from.iter().cloned()).collect();
        found.push(Relation { child, to_many: true, pairs, fk_columns: fk.from.clone() });
    }
    // A key that names columns the tables do not have (SQLite accepts such declarations) relates nothing.
    found.retain(|r| {
        !r.pairs.is_empty() && r.pairs.iter().all(|(p, c)| parent.column(p).is_some() && child.column(c).is_some())
    });
    if let Some(hint) = &embed.hint {
        found.retain(|r| r.fk_columns.iter().any(|c| c == hint));
    }
    match found.len() {
        0 => Err(none()),
        1 => Ok(found.remove(0)),
        n => Err(RestError::AmbiguousRelationship { parent: parent.name.clone(), child: child.name.clone(), count: n }),
    }
}

/// An embedded value's SQL, its parameters, and the `!inner` conditions it puts on the parent's rows.
struct EmbedSql {
    expr: String,
    params: Vec<Value>,
    inner: Vec<(String, Vec<Value>)>,
}

struct Builder<'a> {
    schema: &'a Schema,
    query: &'a QueryParams,
    aliases: usize,
    used: HashSet<String>,
}

impl Builder<'_> {
    fn embed(&mut self, parent: &Table, parent_ref: &str, embed: &Embed, path: &str) -> Result<EmbedSql, RestError> {
        let relation = relation(self.schema, parent, embed)?;
        let child = relation.child;
        if !self.used.insert(path.to_owned()) {
            return Err(RestError::bad_query(path, "embedded twice under the same name; give one an alias"));
        }
        self.aliases += 1;
        let alias = quote(&format!("e{}", self.aliases));

        // json_object(?, value, ...) over the child's selected items.
        let mut object = String::from("json_object(");
        let mut params = Vec::new();
        let mut child_inner = Vec::new();
        let mut first = true;
        let mut add = |key: &str, expr: String, params: &mut Vec<Value>| {
            if !first {
                object.push_str(", ");
            }
            first = false;
            object.push_str("?, ");
            object.push_str(&expr);
            params.push(Value::Text(key.to_owned()));
        };
        for item in &embed.select {
            match item {
                SelectItem::Star => {
                    for c in &child.columns {
                        add(&c.name, json_value(&alias, c), &mut params);
                    }
                }
                SelectItem::Column { column: name, alias: key } => {
                    let c = column(child, name)?;
                    add(key.as_deref().unwrap_or(&c.name), json_value(&alias, c), &mut params);
                }
                SelectItem::Embed(nested) => {
                    let nested_path = format!("{path}.{}", nested.key());
                    let sql = self.embed(child, &alias, nested, &nested_path)?;
                    // Placeholders of the key come first in the text, then the nested subquery's.
                    let mut key_and_nested = Vec::new();
                    add(nested.key(), format!("json({})", sql.expr), &mut key_and_nested);
                    key_and_nested.extend(sql.params);
                    params.extend(key_and_nested);
                    child_inner.extend(sql.inner);
                }
            }
        }
        object.push(')');

        // Which child rows belong to the parent row.
        let scoped = self.query.embedded.get(path).cloned().unwrap_or_default();
        let mut conditions: Vec<String> =
            relation.pairs.iter().map(|(p, c)| format!("{alias}.{} = {parent_ref}.{}", quote(c), quote(p))).collect();
        let filter = where_clause(child, &scoped.filters)?;
        let mut condition_params = filter.params;
        if let Some(sql) = filter.sql.strip_prefix(" WHERE ") {
            conditions.push(format!("({sql})"));
        }
        for (sql, inner_params) in child_inner {
            conditions.push(sql);
            condition_params.extend(inner_params);
        }
        let condition = conditions.join(" AND ");
        let from = format!("{} AS {alias}", quote(&child.name));

        let mut expr_params = params;
        expr_params.extend(condition_params.iter().cloned());
        let expr = if relation.to_many {
            let order = order_clause(child, &scoped.order)?;
            match (scoped.limit, scoped.offset) {
                // The aggregate orders its input itself, and takes json_object's result as JSON without
                // parsing it again; an empty set aggregates to `[]`.
                (None, None) => format!("(SELECT json_group_array({object}{order}) FROM {from} WHERE {condition})"),
                (limit, offset) => {
                    let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
                    expr_params.push(Value::Integer(limit));
                    expr_params.push(Value::Integer(i64::try_from(offset.unwrap_or(0)).unwrap_or(i64::MAX)));
                    format!(
                        "(SELECT json_group_array(json(\"j\")) FROM \
                         (SELECT {object} AS \"j\" FROM {from} WHERE {condition}{order} LIMIT ? OFFSET ?))"
                    )
                }
            }
        } else {
            format!("(SELECT {object} FROM {from} WHERE {condition} LIMIT 1)")
        };
        let inner = if embed.inner {
            vec![(format!("EXISTS (SELECT 1 FROM {from} WHERE {condition})"), condition_params)]
        } else {
            Vec::new()
        };
        Ok(EmbedSql { expr, params: expr_params, inner })
    }
}

/// A column's value as JSON the way the top level renders it (see `values::write_json`): booleans for BOOL
/// columns, JSON columns embedded, blobs as `\x` hex.
fn json_value(alias: &str, c: &Column) -> String {
    let x = format!("{alias}.{}", quote(&c.name));
    if c.is_bool() {
        format!("json(CASE {x} WHEN 1 THEN 'true' WHEN 0 THEN 'false' ELSE json_quote({x}) END)")
    } else if c.is_json() {
        format!("json(CASE WHEN json_valid({x}) THEN {x} ELSE json_quote({x}) END)")
    } else {
        format!("CASE WHEN typeof({x}) = 'blob' THEN '\\x' || lower(hex({x})) ELSE {x} END")
    }
}

/// An embedded value is JSON text, rendered as JSON.
fn json_column(key: &str) -> Column {
    Column {
        name: key.to_owned(),
        declared: "JSON".to_owned(),
        affinity: Affinity::Numeric,
        not_null: false,
        has_default: false,
        pk: 0,
        generated: false,
    }
}
