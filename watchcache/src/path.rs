//! Field paths as steve writes them: `metadata.name`, `metadata.labels[app.kubernetes.io/name]`, `spec.nodeName`.

use serde_json::{Map, Value};

use crate::{Error, Result};

/// A parsed dotted path; bracketed segments may contain dots and slashes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    pub text: String,
    pub segments: Vec<String>,
}

impl FieldPath {
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |reason: &str| Error::FieldPath { path: text.to_owned(), reason: reason.to_owned() };
        let mut segments = Vec::new();
        let mut cur = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '.' => {
                    if cur.is_empty() {
                        // "a[b].c" leaves cur empty after the bracket; only an empty plain segment is wrong
                        if segments.is_empty() {
                            return Err(bad("empty segment"));
                        }
                        continue;
                    }
                    segments.push(std::mem::take(&mut cur));
                }
                '[' => {
                    if !cur.is_empty() {
                        segments.push(std::mem::take(&mut cur));
                    }
                    let mut inner = String::new();
                    loop {
                        match chars.next() {
                            Some(']') => break,
                            Some(c) => inner.push(c),
                            None => return Err(bad("unclosed [")),
                        }
                    }
                    if inner.is_empty() {
                        return Err(bad("empty []"));
                    }
                    segments.push(inner);
                }
                ']' => return Err(bad("unexpected ]")),
                c if c.is_whitespace() => return Err(bad("whitespace")),
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            segments.push(cur);
        }
        if segments.is_empty() {
            return Err(bad("empty path"));
        }
        Ok(Self { text: text.to_owned(), segments })
    }

    pub fn get<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        let mut cur = v;
        for s in &self.segments {
            cur = match cur {
                Value::Object(m) => m.get(s)?,
                Value::Array(a) => a.get(s.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    /// The value as stored in an index column: strings bare, null/missing as None, the rest as JSON text.
    pub fn scalar(&self, v: &Value) -> Option<String> {
        match self.get(v)? {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    fn remove(&self, v: &mut Value) {
        let Some((last, parents)) = self.segments.split_last() else { return };
        let mut cur = v;
        for s in parents {
            cur = match cur.get_mut(s.as_str()) {
                Some(next) => next,
                None => return,
            };
        }
        if let Value::Object(m) = cur {
            m.remove(last);
        }
    }

    fn copy_into(&self, from: &Value, to: &mut Value) {
        let Some(val) = self.get(from) else { return };
        let Some((last, parents)) = self.segments.split_last() else { return };
        let mut cur = to;
        for s in parents {
            if !cur.is_object() {
                *cur = Value::Object(Map::new());
            }
            let Value::Object(m) = cur else { return };
            cur = m.entry(s.clone()).or_insert_with(|| Value::Object(Map::new()));
        }
        if let Value::Object(m) = cur {
            m.insert(last.clone(), val.clone());
        }
    }
}

/// steve's include/exclude: keep only `include` paths (when any), then drop `exclude` paths.
pub(crate) fn project(obj: Value, include: &[FieldPath], exclude: &[FieldPath]) -> Value {
    let mut out = if include.is_empty() {
        obj
    } else {
        let mut o = Value::Object(Map::new());
        for p in include {
            p.copy_into(&obj, &mut o);
        }
        o
    };
    for p in exclude {
        p.remove(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_brackets_and_dots() {
        let p = FieldPath::parse("metadata.labels[app.kubernetes.io/name]").unwrap();
        assert_eq!(p.segments, ["metadata", "labels", "app.kubernetes.io/name"]);
        let p = FieldPath::parse("spec.containers[0].image").unwrap();
        assert_eq!(p.segments, ["spec", "containers", "0", "image"]);
        assert!(FieldPath::parse("a[b").is_err());
        assert!(FieldPath::parse("").is_err());
        assert!(FieldPath::parse(".a").is_err());
    }

    #[test]
    fn scalar_and_projection() {
        let o = json!({"metadata": {"name": "a", "labels": {"x.y/z": "1"}}, "spec": {"n": 3, "c": [{"i": "img"}]}});
        assert_eq!(FieldPath::parse("metadata.labels[x.y/z]").unwrap().scalar(&o).as_deref(), Some("1"));
        assert_eq!(FieldPath::parse("spec.n").unwrap().scalar(&o).as_deref(), Some("3"));
        assert_eq!(FieldPath::parse("spec.c[0].i").unwrap().scalar(&o).as_deref(), Some("img"));
        assert_eq!(FieldPath::parse("spec.missing").unwrap().scalar(&o), None);
        let inc = [FieldPath::parse("metadata.name").unwrap(), FieldPath::parse("spec.n").unwrap()];
        assert_eq!(project(o.clone(), &inc, &[]), json!({"metadata": {"name": "a"}, "spec": {"n": 3}}));
        let exc = [FieldPath::parse("spec").unwrap()];
        assert_eq!(project(o, &[], &exc), json!({"metadata": {"name": "a", "labels": {"x.y/z": "1"}}}));
    }
}
