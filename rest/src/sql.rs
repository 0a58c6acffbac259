//! Parsed query terms, resolved against a table of the live schema, as SQL text and bound parameters.
//!
//! The only client text that reaches SQL text is an identifier that was found in the schema, and it is the
//! schema's own spelling that is quoted and written; every value is a `?` parameter.

use rusqlite::types::Value;

use crate::db::schema::{Column, Table};
use crate::error::RestError;
use crate::query::fts;
use crate::query::{Condition, IsValue, Junction, Nulls, Op, Operand, OrderTerm, Predicate, Quantifier, SelectItem};
use crate::values::filter_value;

pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A column named in the query string (`select`, filters, `order`, `on_conflict`).
pub fn column<'a>(table: &'a Table, name: &str) -> Result<&'a Column, RestError> {
    table.column(name).ok_or_else(|| RestError::undefined_column(&table.name, name))
}

/// A column named by a body key or `columns=`, to be written.
pub fn writable_column<'a>(table: &'a Table, name: &str) -> Result<&'a Column, RestError> {
    let found = table.column(name).ok_or_else(|| RestError::unknown_column(&table.name, name))?;
    if found.generated {
        return Err(RestError::ReadOnlyColumn {
            table: table.name.clone(),
            column: found.name.clone(),
            reason: "it is a generated column",
        });
    }
    Ok(found)
}

/// The columns of a response, under the keys the client asked for.
#[derive(Clone, Debug, Default)]
pub struct Output {
    pub keys: Vec<String>,
    /// How each value is rendered (an embedded resource is a JSON column).
    pub columns: Vec<Column>,
    /// The SQL expression of each value.
    pub exprs: Vec<String>,
    /// Parameters of `exprs`, in order.
    pub params: Vec<Value>,
}

impl Output {
    /// The output of a write's RETURNING: columns only.
    pub fn resolve(table: &Table, select: Option<&[SelectItem]>) -> Result<Self, RestError> {
        let mut output = Output::default();
        for item in select.unwrap_or(&[SelectItem::Star]) {
            match item {
                SelectItem::Embed(embed) => {
                    return Err(RestError::bad_query(
                        embed.key(),
                        "embedding related tables is supported on reads only",
                    ));
                }
                item => output.push_columns(table, item)?,
            }
        }
        Ok(output)
    }

    /// `*` or one column, unqualified.
    pub fn push_columns(&mut self, table: &Table, item: &SelectItem) -> Result<(), RestError> {
        match item {
            SelectItem::Star => {
                for c in &table.columns {
                    self.push(c.name.clone(), c.clone(), quote(&c.name));
                }
            }
            SelectItem::Column { column: name, alias } => {
                let c = column(table, name)?;
                self.push(alias.clone().unwrap_or_else(|| c.name.clone()), c.clone(), quote(&c.name));
            }
            SelectItem::Embed(_) => {}
        }
        Ok(())
    }

    pub fn push(&mut self, key: String, column: Column, expr: String) {
        self.keys.push(key);
        self.columns.push(column);
        self.exprs.push(expr);
    }

    pub fn sql_list(&self) -> String {
        self.exprs.join(", ")
    }
}

/// ` WHERE ...` (or empty) and its parameters.
#[derive(Clone, Debug, Default)]
pub struct Where {
    pub sql: String,
    pub params: Vec<Value>,
}

pub fn where_clause(table: &Table, filters: &[Condition]) -> Result<Where, RestError> {
    let mut clause = Where::default();
    if filters.is_empty() {
        return Ok(clause);
    }
    let mut sql = String::new();
    for (i, condition) in filters.iter().enumerate() {
        if i > 0 {
            sql.push_str(" AND ");
        }
        condition_sql(table, condition, &mut sql, &mut clause.params)?;
    }
    clause.sql = format!(" WHERE {sql}");
    Ok(clause)
}

fn condition_sql(
    table: &Table,
    condition: &Condition,
    sql: &mut String,
    params: &mut Vec<Value>,
) -> Result<(), RestError> {
    match condition {
        Condition::Predicate(predicate) => predicate_sql(table, predicate, sql, params),
        Condition::Group { junction, negate, items } => {
            if *negate {
                sql.push_str("NOT ");
            }
            sql.push('(');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    sql.push_str(if *junction == Junction::And { " AND " } else { " OR " });
                }
                condition_sql(table, item, sql, params)?;
            }
            sql.push(')');
            Ok(())
        }
    }
}

fn predicate_sql(table: &Table, p: &Predicate, sql: &mut String, params: &mut Vec<Value>) -> Result<(), RestError> {
    let c = column(table, &p.column)?;
    let name = quote(&c.name);
    let expr = match (p.op, &p.operand) {
        (Op::Is, Operand::Is(value)) => {
            let test = match value {
                IsValue::Null | IsValue::Unknown => "NULL",
                IsValue::True => "TRUE",
                IsValue::False => "FALSE",
            };
            format!("{name} IS {test}")
        }
        (Op::In, Operand::List(values)) => {
            params.extend(values.iter().map(|v| filter_value(c, v)));
            format!("{name} IN ({})", vec!["?"; values.len()].join(", "))
        }
        (Op::Fts(syntax), Operand::Text(text)) => {
            if !table.is_fts5 {
                return Err(RestError::bad_query(
                    &p.column,
                    format!(
                        "full-text search needs an FTS5 table (CREATE VIRTUAL TABLE ... USING fts5); `{}` is not one",
                        table.name
                    ),
                ));
            }
            match fts::to_fts5(syntax, text).map_err(|reason| RestError::bad_query(text, reason))? {
                // Through the rowid, so that the match may sit under NOT or OR, where FTS5 refuses MATCH.
                Some(query) => {
                    params.push(Value::Text(query));
                    format!("rowid IN (SELECT rowid FROM {} WHERE {name} MATCH ?)", quote(&table.name))
                }
                None => "0".to_owned(),
            }
        }
        (op, Operand::Quantified(quantifier, values)) => {
            let (junction, empty) = match quantifier {
                Quantifier::Any => (" OR ", "0"),
                Quantifier::All => (" AND ", "1"),
            };
            if values.is_empty() {
                empty.to_owned()
            } else {
                let terms = values
                    .iter()
                    .map(|value| compare(c, &name, op, value, params).map(|t| format!("({t})")))
                    .collect::<Result<Vec<_>, _>>()?;
                format!("({})", terms.join(junction))
            }
        }
        (op, Operand::Text(value)) => compare(c, &name, op, value, params)?,
        _ => return Err(RestError::bad_query(&p.column, "operator and value do not fit together")),
    };
    if p.negate {
        sql.push_str(&format!("NOT ({expr})"));
    } else {
        sql.push_str(&expr);
    }
    Ok(())
}

/// `name op ?` for one text value.
fn compare(c: &Column, name: &str, op: Op, value: &str, params: &mut Vec<Value>) -> Result<String, RestError> {
    let operator = match op {
        // GLOB, unlike LIKE, is case-sensitive, which is what `like` means in PostgREST.
        Op::Like => {
            params.push(Value::Text(glob_pattern(value)));
            return Ok(format!("{name} GLOB ?"));
        }
        Op::Ilike => {
            params.push(Value::Text(like_pattern(value)));
            return Ok(format!("{name} LIKE ? ESCAPE '\\'"));
        }
        Op::Eq => "=",
        Op::Neq => "<>",
        Op::Gt => ">",
        Op::Gte => ">=",
        Op::Lt => "<",
        Op::Lte => "<=",
        Op::IsDistinct => "IS NOT",
        Op::In | Op::Is | Op::Fts(_) => {
            return Err(RestError::bad_query(&c.name, "operator and value do not fit together"));
        }
    };
    params.push(filter_value(c, value));
    Ok(format!("{name} {operator} ?"))
}

/// PostgREST `like` pattern (`*` or `%` any run, `_` one character, `\` escapes) as a GLOB pattern.
pub fn glob_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '%' => out.push('*'),
            '_' => out.push('?'),
            '\\' => match chars.next() {
                Some(literal) => push_glob_literal(&mut out, literal),
                None => out.push('\\'),
            },
            literal => push_glob_literal(&mut out, literal),
        }
    }
    out
}

fn push_glob_literal(out: &mut String, c: char) {
    match c {
        '*' | '?' | '[' => {
            out.push('[');
            out.push(c);
            out.push(']');
        }
        c => out.push(c),
    }
}

/// PostgREST `ilike` pattern as a LIKE pattern with `\` as the escape character.
pub fn like_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '%' => out.push('%'),
            '_' => out.push('_'),
            '\\' => {
                let literal = chars.next().unwrap_or('\\');
                if matches!(literal, '%' | '_' | '\\') {
                    out.push('\\');
                }
                out.push(literal);
            }
            c => out.push(c),
        }
    }
    out
}

/// ` ORDER BY ...` (or empty).
pub fn order_clause(table: &Table, order: &[OrderTerm]) -> Result<String, RestError> {
    if order.is_empty() {
        return Ok(String::new());
    }
    let terms = order
        .iter()
        .map(|term| {
            let c = column(table, &term.column)?;
            let direction = if term.descending { "DESC" } else { "ASC" };
            // PostgreSQL's defaults (NULLs sort as larger than any value), which PostgREST clients rely on;
            // SQLite's own are the opposite. A column that cannot hold NULL gets no NULLS clause: with one
            // that differs from SQLite's order, SQLite cannot walk an index in order and sorts instead.
            let nulls = match (term.nulls, term.descending) {
                _ if c.not_null || c.is_rowid_alias(table) => "",
                (Some(Nulls::First), _) | (None, true) => " NULLS FIRST",
                (Some(Nulls::Last), _) | (None, false) => " NULLS LAST",
            };
            Ok(format!("{} {direction}{nulls}", quote(&c.name)))
        })
        .collect::<Result<Vec<_>, RestError>>()?;
    Ok(format!(" ORDER BY {}", terms.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::schema::Affinity;
    use crate::query::QueryParams;

    fn table() -> Table {
        let column = |name: &str, declared: &str| Column {
            name: name.into(),
            declared: declared.into(),
            affinity: Affinity::of_declared(declared),
            not_null: false,
            has_default: false,
            pk: 0,
            generated: false,
        };
        Table {
            name: "t".into(),
            is_view: false,
            is_fts5: false,
            foreign_keys: vec![],
            columns: vec![column("a", "INTEGER"), column("we\"ird", "TEXT")],
        }
    }

    #[test]
    fn builds_parameterised_where() {
        let q = QueryParams::parse(Some("a=in.(1,2)&or=(\"we\\\"ird\".like.x*,not.and(a.is.null,a.neq.3))"))
            .expect("valid query");
        let clause = where_clause(&table(), &q.filters).expect("valid query");
        assert_eq!(
            clause.sql,
            " WHERE \"a\" IN (?, ?) AND (\"we\"\"ird\" GLOB ? OR NOT (\"a\" IS NULL AND \"a\" <> ?))"
        );
        assert_eq!(clause.params.len(), 4);
    }

    #[test]
    fn unknown_columns_are_named() {
        let q = QueryParams::parse(Some("nope=eq.1")).expect("valid query");
        let error = where_clause(&table(), &q.filters).expect_err("must fail");
        assert_eq!(error.to_string(), "column `nope` does not exist in table `t`");
    }

    #[test]
    fn nulls_order_like_postgresql_only_where_nulls_can_be() {
        let mut t = table();
        let order = |t: &Table, text: &str| {
            order_clause(t, &crate::query::select::parse_order(text).expect("valid order")).expect("known columns")
        };
        assert_eq!(order(&t, "a,a.desc"), " ORDER BY \"a\" ASC NULLS LAST, \"a\" DESC NULLS FIRST");
        assert_eq!(order(&t, "a.asc.nullsfirst"), " ORDER BY \"a\" ASC NULLS FIRST");
        // Without NULLs the clause changes nothing, and leaving it out lets SQLite walk an index in order.
        t.columns[0].not_null = true;
        assert_eq!(order(&t, "a.desc,a.nullsfirst"), " ORDER BY \"a\" DESC, \"a\" ASC");
    }

    #[test]
    fn translates_patterns() {
        assert_eq!(glob_pattern("a*b%c_d?[e\\*"), "a*b*c?d[?][[]e[*]");
        assert_eq!(like_pattern("a*b%c_d\\%e\\x"), "a%b%c_d\\%ex");
    }
}
