//! The config text as a tree of keys with their line numbers: validation errors and unknown-key warnings name the
//! line of the key at fault, which the typed config no longer knows once it is deserialized.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

#[derive(Debug)]
pub struct Node {
    pub line: u32,
    pub value: Value,
}

#[derive(Debug)]
pub enum Value {
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Scalar(String),
    Null,
}

#[derive(Debug)]
pub struct Entry {
    pub key: String,
    pub line: u32,
    pub value: Node,
}

/// A mapping key of any scalar type, as text.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Value::deserialize(d)? {
            Value::Scalar(s) => Ok(KeyText(s)),
            Value::Null => Ok(KeyText(String::new())),
            _ => Ok(KeyText("<complex key>".into())),
        }
    }
}

fn line_of(loc: &serde_saphyr::Location) -> u32 {
    u32::try_from(loc.line()).unwrap_or(u32::MAX)
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<Value>::deserialize(d)?;
        Ok(Node { line: line_of(&s.referenced), value: s.value })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_string()))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Scalar(v.to_owned()))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Value, E> {
        Ok(Value::Scalar(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = vec![];
        while let Some(n) = seq.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Value::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = vec![];
        while let Some(k) = map.next_key::<Spanned<KeyText>>()? {
            let value = map.next_value::<Node>()?;
            entries.push(Entry { key: k.value.0, line: line_of(&k.referenced), value });
        }
        Ok(Value::Map(entries))
    }
}

impl Node {
    /// The entry `key` of a mapping.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|e| e.key == key),
            _ => None,
        }
    }
}

/// Line numbers by key path (`dbs[0].replicas[1].endpoint`); a path that is not in the file takes the line of its
/// nearest ancestor that is.
#[derive(Debug, Default, Clone)]
pub struct Lines(HashMap<String, u32>);

impl Lines {
    pub fn of(root: &Node) -> Self {
        let mut lines = HashMap::new();
        fn walk(node: &Node, path: &str, lines: &mut HashMap<String, u32>) {
            match &node.value {
                Value::Map(entries) => {
                    for e in entries {
                        let p = if path.is_empty() { e.key.clone() } else { format!("{path}.{}", e.key) };
                        lines.insert(p.clone(), e.line);
                        walk(&e.value, &p, lines);
                    }
                }
                Value::Seq(items) => {
                    for (i, n) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        lines.insert(p.clone(), n.line);
                        walk(n, &p, lines);
                    }
                }
                _ => {}
            }
        }
        walk(root, "", &mut lines);
        Self(lines)
    }

    pub fn line(&self, path: &str) -> Option<u32> {
        let mut p = path;
        loop {
            if let Some(l) = self.0.get(p) {
                return Some(*l);
            }
            p = &p[..p.rfind(['.', '['])?];
        }
    }
}
