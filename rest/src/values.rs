//! Conversions between JSON, query-string text and SQLite values.
//!
//! Comparison semantics (filters): values are bound as parameters, never spliced into SQL. A filter value is
//! bound as TEXT and SQLite's comparison affinity does the rest: against a column with INTEGER, REAL or
//! NUMERIC affinity, `'5'` becomes the number 5 (so `age=gt.10` compares numerically, and `'abc'` stays text
//! and sorts after every number); against a TEXT column the comparison is textual. Two additions make the
//! result what a JSON client expects: columns declared without a type (BLOB affinity, where SQLite applies no
//! conversion) receive values that look like integers or reals as numbers, and columns declared BOOL/BOOLEAN
//! receive `true`/`false` as 1/0.
//!
//! Body values: JSON null, numbers and strings are stored as NULL, INTEGER/REAL and TEXT (then the column's
//! affinity applies, as for any SQLite insert); booleans as 1/0; arrays and objects as their JSON text. Columns
//! declared BLOB take and give `\x`-prefixed hex strings, as PostgREST does for `bytea`.

use rusqlite::types::{Value, ValueRef};
use serde_json::Value as Json;

use crate::db::schema::{Affinity, Column};
use crate::error::RestError;

pub fn filter_value(column: &Column, text: &str) -> Value {
    if column.is_bool() {
        match text.to_ascii_lowercase().as_str() {
            "true" => return Value::Integer(1),
            "false" => return Value::Integer(0),
            _ => {}
        }
    }
    if column.is_blob()
        && let Some(bytes) = decode_hex(text)
    {
        return Value::Blob(bytes);
    }
    if column.affinity == Affinity::Blob {
        if let Ok(integer) = text.parse::<i64>() {
            return Value::Integer(integer);
        }
        if let Ok(real) = text.parse::<f64>()
            && real.is_finite()
            && text.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
        {
            return Value::Real(real);
        }
    }
    Value::Text(text.to_owned())
}

pub fn body_value(table: &str, column: &Column, json: &Json) -> Result<Value, RestError> {
    Ok(match json {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(i64::from(*b)),
        Json::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Value::Integer(i),
            (None, Some(f)) => Value::Real(f),
            (None, None) => {
                return Err(RestError::bad_body(table, format!("number for column `{}` is out of range", column.name)));
            }
        },
        Json::String(s) if column.is_blob() && s.starts_with("\\x") => match decode_hex(s) {
            Some(bytes) => Value::Blob(bytes),
            None => {
                return Err(RestError::bad_body(
                    table,
                    format!("column `{}` expects `\\x` and hex digits", column.name),
                ));
            }
        },
        Json::String(s) => Value::Text(s.clone()),
        Json::Array(_) | Json::Object(_) => Value::Text(json.to_string()),
    })
}

pub fn to_json(column: Option<&Column>, value: ValueRef<'_>) -> Json {
    match value {
        ValueRef::Null => Json::Null,
        ValueRef::Integer(i) => match column {
            Some(c) if c.is_bool() && (i == 0 || i == 1) => Json::Bool(i == 1),
            _ => Json::from(i),
        },
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number),
        ValueRef::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            if column.is_some_and(Column::is_json)
                && let Ok(parsed) = serde_json::from_str::<Json>(&text)
            {
                return parsed;
            }
            Json::String(text.into_owned())
        }
        ValueRef::Blob(bytes) => Json::String(encode_hex(bytes)),
    }
}

pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(2 + bytes.len() * 2);
    out.push_str("\\x");
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// `\x0aff` -> bytes; `None` unless the prefix is there and every digit pair is hex.
pub fn decode_hex(text: &str) -> Option<Vec<u8>> {
    let digits = text.strip_prefix("\\x")?.as_bytes();
    if digits.len() % 2 != 0 {
        return None;
    }
    digits.chunks(2).map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(declared: &str) -> Column {
        Column {
            name: "c".into(),
            declared: declared.into(),
            affinity: Affinity::of_declared(declared),
            not_null: false,
            has_default: false,
            pk: 0,
            generated: false,
        }
    }

    #[test]
    fn filter_values_follow_the_column() {
        assert_eq!(filter_value(&column("INTEGER"), "5"), Value::Text("5".into()));
        assert_eq!(filter_value(&column(""), "5"), Value::Integer(5));
        assert_eq!(filter_value(&column(""), "2.5"), Value::Real(2.5));
        assert_eq!(filter_value(&column(""), "inf"), Value::Text("inf".into()));
        assert_eq!(filter_value(&column("BOOLEAN"), "TRUE"), Value::Integer(1));
        assert_eq!(filter_value(&column("BLOB"), "\\x00ff"), Value::Blob(vec![0, 255]));
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let bytes = vec![0u8, 1, 127, 128, 255];
        assert_eq!(decode_hex(&encode_hex(&bytes)), Some(bytes));
        assert_eq!(decode_hex("\\x0"), None);
        assert_eq!(decode_hex("\\xzz"), None);
        assert_eq!(decode_hex("00"), None);
    }

    #[test]
    fn body_values_map_json_types() {
        let text = column("TEXT");
        assert_eq!(body_value("t", &text, &serde_json::json!(true)).expect("valid value"), Value::Integer(1));
        assert_eq!(
            body_value("t", &text, &serde_json::json!({"a": 1})).expect("valid value"),
            Value::Text("{\"a\":1}".into())
        );
        assert!(body_value("t", &column("BLOB"), &serde_json::json!("\\xzz")).is_err());
    }
}
