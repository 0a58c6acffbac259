//! Rows as JSON, with keys in the order the client selected them, written as they are read.

use rusqlite::Row;

use crate::db::schema::Column;
use crate::error::RestError;
use crate::values::write_json;

/// Rows as JSON objects, rendered while SQLite steps through them: no intermediate values per cell.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    /// Each key as a JSON string followed by `:`, rendered once per response.
    keys: Vec<Vec<u8>>,
    /// The objects, comma-separated, without the enclosing brackets.
    objects: Vec<u8>,
    /// Where the first object ends, for [`Rows::object`].
    first_end: usize,
    count: usize,
}

fn rendering(error: serde_json::Error) -> RestError {
    RestError::Internal(format!("rendering rows: {error}"))
}

impl Rows {
    pub fn new(keys: &[String]) -> Result<Self, RestError> {
        let keys = keys
            .iter()
            .map(|key| {
                let mut rendered = serde_json::to_vec(key).map_err(rendering)?;
                rendered.push(b':');
                Ok(rendered)
            })
            .collect::<Result<_, RestError>>()?;
        Ok(Rows { keys, ..Rows::default() })
    }

    /// Appends `row`, whose values are the `columns` in key order.
    pub fn push(&mut self, row: &Row<'_>, columns: &[Column]) -> Result<(), crate::db::DbError> {
        if self.count > 0 {
            self.objects.push(b',');
        }
        self.objects.push(b'{');
        for (i, (key, column)) in self.keys.iter().zip(columns).enumerate() {
            if i > 0 {
                self.objects.push(b',');
            }
            self.objects.extend_from_slice(key);
            write_json(&mut self.objects, Some(column), row.get_ref(i)?).map_err(rendering)?;
        }
        self.objects.push(b'}');
        if self.count == 0 {
            self.first_end = self.objects.len();
        }
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// A JSON array of objects.
    pub fn array(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(self.objects.len() + 2);
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

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn rows(sql: &str) -> Rows {
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
        let mut rows = Rows::new(&["z".to_owned(), "a\"".to_owned()]).expect("keys");
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
        let none = rows("SELECT 1, 2 WHERE 0");
        assert!(none.is_empty());
        assert_eq!(none.array(), b"[]");
        assert_eq!(none.object(), b"{}");
    }
}
