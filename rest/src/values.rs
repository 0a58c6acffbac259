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
//! Body values are checked against the column's declared type, so that what is stored reads back as the
//! type the OpenAPI document promises (SQLite itself would store any value in any non-STRICT column):
//! - INTEGER/REAL/NUMERIC affinity: JSON numbers, booleans (1/0), and strings that are numbers (SQLite's
//!   affinity then stores them as numbers); anything else is a 400.
//! - declared BOOL/BOOLEAN: `true`/`false` (stored as 1/0) and the numbers 0 and 1.
//! - declared BLOB: `\x`-prefixed hex strings, as PostgREST does for `bytea`; blobs read back the same way.
//! - TEXT affinity: strings; numbers and booleans are stored as their text, arrays and objects as JSON text.
//! - declared JSON/JSONB, or no declared type: any JSON value (arrays and objects as JSON text).
//!
//! `null` is accepted everywhere (NOT NULL is the database's to enforce: 409).

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
        if is_numeric_text(text)
            && let Ok(real) = text.parse::<f64>()
        {
            return Value::Real(real);
        }
    }
    Value::Text(text.to_owned())
}

/// What JSON a column takes in a body, from its declared type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    Any,
    Integer,
    Number,
    Boolean,
    Text,
    Bytes,
}

fn expectation(column: &Column) -> Expect {
    if column.is_json() {
        Expect::Any
    } else if column.is_bool() {
        Expect::Boolean
    } else if column.is_blob() {
        Expect::Bytes
    } else {
        match column.affinity {
            Affinity::Integer => Expect::Integer,
            Affinity::Real | Affinity::Numeric => Expect::Number,
            Affinity::Text => Expect::Text,
            Affinity::Blob => Expect::Any,
        }
    }
}

fn json_kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn number(n: &serde_json::Number) -> Option<Value> {
    match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => Some(Value::Integer(i)),
        (None, Some(f)) if f.is_finite() => Some(Value::Real(f)),
        _ => None,
    }
}

/// An integral JSON number (`3` or `3.0`) within i64.
fn integer(n: &serde_json::Number) -> Option<Value> {
    if let Some(i) = n.as_i64() {
        return Some(Value::Integer(i));
    }
    let f = n.as_f64()?;
    // i64::MAX as f64 rounds up to 2^63, which is out of range: compare with a strict upper bound.
    let in_range = f.is_finite() && f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63);
    // Exact: `f` is integral and in range, so the cast neither truncates nor saturates.
    in_range.then_some(Value::Integer(f as i64))
}

fn is_numeric_text(text: &str) -> bool {
    text.parse::<i64>().is_ok()
        || (text.parse::<f64>().is_ok_and(f64::is_finite)
            && text.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
}

pub fn body_value(table: &str, column: &Column, json: &Json) -> Result<Value, RestError> {
    let mismatch = |wanted: &str| {
        RestError::bad_body(
            table,
            format!("column `{}` ({}) expects {wanted}, not {}", column.name, column.declared, json_kind(json)),
        )
    };
    let expect = expectation(column);
    Ok(match (expect, json) {
        (_, Json::Null) => Value::Null,
        (Expect::Boolean, Json::Bool(b)) => Value::Integer(i64::from(*b)),
        (Expect::Boolean, Json::Number(n)) if n.as_i64() == Some(0) || n.as_i64() == Some(1) => {
            Value::Integer(n.as_i64().unwrap_or_default())
        }
        (Expect::Boolean, _) => return Err(mismatch("a boolean")),
        (Expect::Bytes, Json::String(s)) => {
            decode_hex(s).map(Value::Blob).ok_or_else(|| mismatch("`\\x` and hex digits"))?
        }
        (Expect::Bytes, _) => return Err(mismatch("a `\\x`-prefixed hex string")),
        (Expect::Integer, Json::Number(n)) => integer(n).ok_or_else(|| mismatch("an integer within 64 bits"))?,
        (Expect::Integer, Json::String(s)) if s.parse::<i64>().is_ok() => Value::Text(s.clone()),
        (Expect::Integer, Json::Array(_) | Json::Object(_) | Json::String(_)) => return Err(mismatch("an integer")),
        (Expect::Number, Json::String(s)) if is_numeric_text(s) => Value::Text(s.clone()),
        (Expect::Number, Json::Array(_) | Json::Object(_) | Json::String(_)) => return Err(mismatch("a number")),
        (Expect::Text, Json::Bool(b)) => Value::Text(b.to_string()),
        (Expect::Text, Json::Number(n)) => Value::Text(n.to_string()),
        (_, Json::Bool(b)) => Value::Integer(i64::from(*b)),
        (_, Json::Number(n)) => number(n).ok_or_else(|| mismatch("a number in range"))?,
        (_, Json::String(s)) => Value::Text(s.clone()),
        (_, Json::Array(_) | Json::Object(_)) => Value::Text(json.to_string()),
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

/// Writes `value` as the JSON text of [`to_json`]'s value, without building that value: a row's values go
/// straight into the response body.
pub fn write_json(out: &mut Vec<u8>, column: Option<&Column>, value: ValueRef<'_>) -> serde_json::Result<()> {
    match value {
        ValueRef::Null => out.extend_from_slice(b"null"),
        ValueRef::Integer(i) => match column {
            Some(c) if c.is_bool() && (i == 0 || i == 1) => {
                out.extend_from_slice(if i == 1 { b"true" } else { b"false" })
            }
            _ => serde_json::to_writer(&mut *out, &i)?,
        },
        // serde_json writes a non-finite float as `null`, as `to_json` renders it.
        ValueRef::Real(f) => serde_json::to_writer(&mut *out, &f)?,
        ValueRef::Text(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            if column.is_some_and(Column::is_json)
                && let Ok(parsed) = serde_json::from_str::<Json>(&text)
            {
                return serde_json::to_writer(&mut *out, &parsed);
            }
            serde_json::to_writer(&mut *out, &*text)?;
        }
        ValueRef::Blob(bytes) => serde_json::to_writer(&mut *out, &encode_hex(bytes))?,
    }
    Ok(())
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
    fn written_json_is_the_json_of_to_json() {
        let values = [
            ValueRef::Null,
            ValueRef::Integer(0),
            ValueRef::Integer(1),
            ValueRef::Integer(-7),
            ValueRef::Integer(i64::MAX),
            ValueRef::Real(3.0),
            ValueRef::Real(-0.25),
            ValueRef::Real(1e300),
            ValueRef::Real(f64::NAN),
            ValueRef::Real(f64::INFINITY),
            ValueRef::Text(b"plain"),
            ValueRef::Text("quote \" backslash \\ tab \t nl \n \u{1} é \u{2028}".as_bytes()),
            ValueRef::Text(b"not utf-8: \xff\xfe"),
            ValueRef::Text(br#"{"b": [1, 2.5, null], "a": "x"}"#),
            ValueRef::Text(b"{not json"),
            ValueRef::Blob(&[0, 1, 0xfe, 0xff]),
        ];
        for declared in ["INTEGER", "TEXT", "REAL", "BOOLEAN", "JSON", "BLOB", ""] {
            let column = column(declared);
            for value in values {
                for column in [None, Some(&column)] {
                    let mut written = Vec::new();
                    write_json(&mut written, column, value).expect("writes");
                    let expected = serde_json::to_vec(&to_json(column, value)).expect("renders");
                    assert_eq!(
                        String::from_utf8_lossy(&written),
                        String::from_utf8_lossy(&expected),
                        "{declared} {value:?}"
                    );
                }
            }
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
    fn body_values_follow_the_declared_type() {
        use serde_json::json;
        let ok = |declared: &str, json: Json| body_value("t", &column(declared), &json).expect("accepted");
        let refused = |declared: &str, json: Json| body_value("t", &column(declared), &json).is_err();
        assert_eq!(ok("TEXT", json!(true)), Value::Text("true".into()));
        assert_eq!(ok("TEXT", json!(1.5)), Value::Text("1.5".into()));
        assert_eq!(ok("TEXT", json!({"a": 1})), Value::Text("{\"a\":1}".into()));
        assert_eq!(ok("INTEGER", json!(7)), Value::Integer(7));
        assert_eq!(ok("INTEGER", json!("7")), Value::Text("7".into()), "affinity makes it 7");
        assert_eq!(ok("INTEGER", json!(3.0)), Value::Integer(3));
        assert!(refused("INTEGER", json!(1.5)));
        assert!(refused("INTEGER", json!(1.3e24)));
        assert!(refused("INTEGER", json!("1.5")));
        assert_eq!(ok("NUMERIC", json!(1.3e24)), Value::Real(1.3e24));
        assert_eq!(ok("REAL", json!(true)), Value::Integer(1));
        assert!(refused("INTEGER", json!("seven")));
        assert!(refused("REAL", json!([1])));
        assert_eq!(ok("BOOLEAN", json!(false)), Value::Integer(0));
        assert_eq!(ok("BOOLEAN", json!(1)), Value::Integer(1));
        assert!(refused("BOOLEAN", json!(2)));
        assert!(refused("BOOLEAN", json!("true")));
        assert_eq!(ok("BLOB", json!("\\x00ff")), Value::Blob(vec![0, 255]));
        assert!(refused("BLOB", json!("\\xzz")));
        assert!(refused("BLOB", json!("plain")));
        assert!(refused("BLOB", json!(5)));
        assert_eq!(ok("JSON", json!([1, 2])), Value::Text("[1,2]".into()));
        assert_eq!(ok("", json!("anything")), Value::Text("anything".into()));
        assert_eq!(ok("INTEGER", json!(null)), Value::Null);
    }
}
