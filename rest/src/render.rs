//! Rows as JSON (or CSV), with keys in the order the client selected them, written as they are read.

use rusqlite::Row;
use rusqlite::types::ValueRef;

use crate::db::schema::Column;
use crate::error::RestError;
use crate::values::{encode_hex, write_json};

/// How rows are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    #[default]
    Json,
    /// JSON objects without their null-valued keys (`nulls=stripped` media types).
    JsonStripNulls,
    /// PostgREST's `text/csv`: a header line of keys, then one line per row in PostgreSQL's record text form.
    Csv,
}

/// Rows rendered while SQLite steps through them: no intermediate values per cell.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    format: Format,
    /// Each key as a JSON string followed by `:` (CSV: the header line), rendered once per response.
    keys: Vec<Vec<u8>>,
    /// The objects, comma-separated, without the enclosing brackets (CSV: the lines, newline-separated).
    objects: Vec<u8>,
    /// Where the first object ends, for [`Rows::object`].
    first_end: usize,
    count: usize,
}

fn rendering(error: serde_json::Error) -> RestError {
    RestError::Internal(format!("rendering rows: {error}"))
}

impl Rows {
    pub fn with_format(keys: &[String], format: Format) -> Result<Self, RestError> {
        let keys = match format {
            Format::Csv => vec![keys.join(",").into_bytes()],
            Format::Json | Format::JsonStripNulls => keys
                .iter()
                .map(|key| {
                    let mut rendered = serde_json::to_vec(key).map_err(rendering)?;
                    rendered.push(b':');
                    Ok(rendered)
                })
                .collect::<Result<_, RestError>>()?,
        };
        Ok(Rows { format, keys, ..Rows::default() })
    }

    /// Appends `row`, whose values are the `columns` in key order.
    pub fn push(&mut self, row: &Row<'_>, columns: &[Column]) -> Result<(), crate::db::DbError> {
        if self.format == Format::Csv {
            return self.push_csv(row, columns);
        }
        if self.count > 0 {
            self.objects.push(b',');
        }
        self.objects.push(b'{');
        let mut written = 0;
        for (i, (key, column)) in self.keys.iter().zip(columns).enumerate() {
            let value = row.get_ref(i)?;
            if self.format == Format::JsonStripNulls && value == ValueRef::Null {
                continue;
            }
            if written > 0 {
                self.objects.push(b',');
            }
            written += 1;
            self.objects.extend_from_slice(key);
            write_json(&mut self.objects, Some(column), value).map_err(rendering)?;
        }
        self.objects.push(b'}');
        self.row_done();
        Ok(())
    }

    fn push_csv(&mut self, row: &Row<'_>, columns: &[Column]) -> Result<(), crate::db::DbError> {
        if self.count > 0 {
            self.objects.push(b'\n');
        }
        for (i, column) in columns.iter().enumerate() {
            if i > 0 {
                self.objects.push(b',');
            }
            write_csv_field(&mut self.objects, column, row.get_ref(i)?).map_err(rendering)?;
        }
        self.row_done();
        Ok(())
    }

    fn row_done(&mut self) {
        if self.count == 0 {
            self.first_end = self.objects.len();
        }
        self.count += 1;
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A JSON array of objects (CSV: the header line and the rows).
    pub fn array(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.objects.len() + 2);
        if self.format == Format::Csv {
            body.extend_from_slice(self.keys.first().map_or(&[][..], Vec::as_slice));
            if self.count > 0 {
                body.push(b'\n');
            }
            body.extend_from_slice(&self.objects);
            return body;
        }
        body.push(b'[');
        body.extend_from_slice(&self.objects);
        body.push(b']');
        body
    }

    /// The first row as one JSON object (callers check there is exactly one); `{}` when there is none.
    pub fn object(&self) -> Vec<u8> {
        if self.count == 0 { b"{}".to_vec() } else { self.objects[..self.first_end].to_vec() }
    }
}

/// One value as PostgreSQL writes a record field (which is what PostgREST's CSV is made of): NULL empty,
/// booleans `t`/`f`, and the text quoted when it is empty or holds a delimiter, a quote, a backslash or space.
fn write_csv_field(out: &mut Vec<u8>, column: &Column, value: ValueRef<'_>) -> serde_json::Result<()> {
    let text = match value {
        ValueRef::Null => return Ok(()),
        ValueRef::Integer(i) if column.is_bool() && (i == 0 || i == 1) => {
            out.push(if i == 1 { b't' } else { b'f' });
            return Ok(());
        }
        ValueRef::Integer(_) | ValueRef::Real(_) => {
            return write_json(out, Some(column), value);
        }
        ValueRef::Text(bytes) => String::from_utf8_lossy(bytes),
        ValueRef::Blob(bytes) => encode_hex(bytes).into(),
    };
    let quote = text.is_empty()
        || text.bytes().any(|b| matches!(b, b'"' | b'\\' | b'(' | b')' | b',') || b.is_ascii_whitespace());
    if !quote {
        out.extend_from_slice(text.as_bytes());
        return Ok(());
    }
    out.push(b'"');
    for b in text.bytes() {
        if matches!(b, b'"' | b'\\') {
            out.push(b);
        }
        out.push(b);
    }
    out.push(b'"');
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn rows(sql: &str) -> Rows {
        rows_as(sql, Format::Json)
    }

    fn rows_as(sql: &str, format: Format) -> Rows {
        let conn = Connection::open_in_memory().expect("in-memory sqlite");
        let column = |name: &str, declared: &str| Column {
            name: name.into(),
            declared: declared.into(),
            affinity: crate::db::schema::Affinity::of_declared(declared),
            not_null: false,
            has_default: false,
            pk: 0,
            generated: false,
        };
        let columns = [column("z", "INTEGER"), column("a", "TEXT")];
        let mut rows = Rows::with_format(&["z".to_owned(), "a\"".to_owned()], format).expect("keys");
        let mut statement = conn.prepare(sql).expect("valid SQL");
        let mut cursor = statement.query([]).expect("runs");
        while let Some(row) = cursor.next().expect("steps") {
            rows.push(row, &columns).expect("renders");
        }
        rows
    }

    #[test]
    fn keeps_selected_key_order() {
        let two = rows("SELECT 1, NULL UNION ALL SELECT 2, 'x'");
        assert_eq!(two.len(), 2);
        assert_eq!(String::from_utf8(two.array()).expect("utf-8"), r#"[{"z":1,"a\"":null},{"z":2,"a\"":"x"}]"#);
        assert_eq!(String::from_utf8(two.object()).expect("utf-8"), r#"{"z":1,"a\"":null}"#);
        let stripped = rows_as("SELECT 1, NULL UNION ALL SELECT NULL, 'x'", Format::JsonStripNulls);
        assert_eq!(String::from_utf8(stripped.array()).expect("utf-8"), r#"[{"z":1},{"a\"":"x"}]"#);
        let csv = rows_as("SELECT 1, NULL UNION ALL SELECT 2, 'a,\"b\" c' UNION ALL SELECT 3, ''", Format::Csv);
        assert_eq!(String::from_utf8(csv.array()).expect("utf-8"), "z,a\"\n1,\n2,\"a,\"\"b\"\" c\"\n3,\"\"");
        let none = rows("SELECT 1, 2 WHERE 0");
        assert!(none.is_empty());
        assert_eq!(none.array(), b"[]");
        assert_eq!(none.object(), b"{}");
    }
}
