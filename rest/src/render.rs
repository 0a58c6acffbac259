//! Rows as JSON, with keys in the order the client selected them.

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value as Json;

use crate::error::RestError;

/// Rows as read from SQLite, converted to JSON values, with the key of each column.
#[derive(Clone, Debug, Default)]
pub struct Rows {
    pub keys: Vec<String>,
    pub rows: Vec<Vec<Json>>,
}

struct Row<'a> {
    keys: &'a [String],
    values: &'a [Json],
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.keys.len()))?;
        for (key, value) in self.keys.iter().zip(self.values) {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl Serialize for Rows {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.rows.len()))?;
        for values in &self.rows {
            seq.serialize_element(&Row { keys: &self.keys, values })?;
        }
        seq.end()
    }
}

impl Rows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// A JSON array of objects.
    pub fn array(&self) -> Result<Vec<u8>, RestError> {
        serde_json::to_vec(self).map_err(|e| RestError::Internal(format!("rendering rows: {e}")))
    }

    /// The first row as one JSON object (callers check there is exactly one).
    pub fn object(&self) -> Result<Vec<u8>, RestError> {
        let values = self.rows.first().map(Vec::as_slice).unwrap_or_default();
        serde_json::to_vec(&Row { keys: &self.keys, values })
            .map_err(|e| RestError::Internal(format!("rendering row: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_selected_key_order() {
        let rows = Rows { keys: vec!["z".into(), "a".into()], rows: vec![vec![json!(1), json!(null)]] };
        assert_eq!(String::from_utf8(rows.array().expect("renders")).expect("renders"), r#"[{"z":1,"a":null}]"#);
        assert_eq!(String::from_utf8(rows.object().expect("renders")).expect("renders"), r#"{"z":1,"a":null}"#);
    }
}
