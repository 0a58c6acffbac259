//! Objects as the API sent them, prepared for the store without a JSON tree.
//!
//! Decoding every object into a `serde_json::Value` tree, freeing it and encoding it again was most of the
//! ingester's CPU. Instead the ingester transcodes each top-level entry of an object straight from the
//! deserializer into JSON text (no tree; it works on kube-rs' buffered list items as well as on a watch line),
//! and reads only what the store needs (the metadata columns, labels and configured field paths) from that
//! text with partial, borrowing decoders that skip everything else.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::path::FieldPath;
use crate::{Error, Result};

/// An object ready to be written: the columns of its row, its labels and configured fields, and its JSON.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    pub(crate) key: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
    pub(crate) created: Option<String>,
    pub(crate) labels: Vec<(String, String)>,
    /// Values of field paths by their text (strings bare, null/missing None, the rest as JSON text, as
    /// [`FieldPath::scalar`]); a field the store indexes but this list lacks is read from `text` when written.
    pub(crate) fields: Vec<(String, Option<String>)>,
    pub(crate) text: String,
}

impl Prepared {
    /// Resource versions are etcd revisions in practice; the event log orders by them.
    pub(crate) fn rv(&self) -> Option<u64> {
        self.resource_version.as_deref()?.parse().ok()
    }

    /// From a JSON tree (the `Store` API's objects); the same columns the ingester's path gives.
    pub(crate) fn from_value(obj: &Value, key: String, fields: &[FieldPath]) -> Result<Self> {
        let meta = obj.get("metadata");
        let s = |f: &str| meta.and_then(|m| m.get(f)).and_then(Value::as_str).map(str::to_owned);
        let labels = meta
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|l| l.iter().map(|(k, v)| (k.clone(), v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))))
            .into_iter()
            .flatten()
            .collect();
        let text = serde_json::to_string(obj).map_err(|source| Error::Json {
            resource: String::new(),
            key: key.clone(),
            source,
        })?;
        Ok(Self {
            namespace: s("namespace").unwrap_or_default(),
            name: s("name").unwrap_or_default(),
            uid: s("uid"),
            resource_version: s("resourceVersion"),
            created: s("creationTimestamp"),
            labels,
            fields: fields.iter().map(|f| (f.text.clone(), f.scalar(obj))).collect(),
            text,
            key,
        })
    }
}

/// An object as a list page or watch event carried it: its top-level entries as JSON text, in the order sent,
/// and the metadata read from them.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawEntries {
    pub(crate) entries: Vec<(String, String)>,
    pub(crate) name: Option<String>,
    pub(crate) namespace: Option<String>,
    pub(crate) uid: Option<String>,
    pub(crate) resource_version: Option<String>,
    pub(crate) created: Option<String>,
    pub(crate) labels: Vec<(String, String)>,
}

/// The metadata columns, borrowed from the metadata's text; every other member is skipped unparsed.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    namespace: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    resource_version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    creation_timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    labels: Option<&'a RawValue>,
}

/// A JSON string's value; anything else is None (as `Value::as_str`).
fn json_str(raw: Option<&RawValue>) -> Option<String> {
    let t = raw?.get();
    if t.starts_with('"') { serde_json::from_str(t).ok() } else { None }
}

/// The value as an index column holds it: strings bare, null None, the rest as compact JSON (as
/// [`FieldPath::scalar`] renders a tree).
fn scalar(raw: &RawValue) -> std::result::Result<Option<String>, serde_json::Error> {
    let t = raw.get();
    if t.starts_with('"') {
        return serde_json::from_str(t).map(Some);
    }
    Ok(match serde_json::from_str::<Value>(t)? {
        Value::Null => None,
        other => Some(other.to_string()),
    })
}

impl RawEntries {
    /// Read the metadata columns and labels from the `metadata` entry.
    fn read_meta(&mut self) -> std::result::Result<(), serde_json::Error> {
        let Some((_, text)) = self.entries.iter().find(|(k, _)| k == "metadata") else { return Ok(()) };
        if !text.starts_with('{') {
            return Ok(());
        }
        let m: Meta<'_> = serde_json::from_str(text)?;
        self.name = json_str(m.name);
        self.namespace = json_str(m.namespace);
        self.uid = json_str(m.uid);
        self.resource_version = json_str(m.resource_version);
        self.created = json_str(m.creation_timestamp);
        if let Some(l) = m.labels.filter(|l| l.get().starts_with('{')) {
            let map: Vec<(String, &RawValue)> = serde_json::from_str::<MapEntries<'_>>(l.get())?.0;
            let mut labels: Vec<(String, String)> = Vec::with_capacity(map.len());
            for (k, v) in map {
                // a label that is not a string is kept as its JSON text (null as "null"), as before
                let v = match scalar(v)? {
                    Some(s) => s,
                    None => "null".to_owned(),
                };
                // a repeated key: the last one wins, as in a decoded tree
                match labels.iter_mut().find(|(lk, _)| *lk == k) {
                    Some(e) => e.1 = v,
                    None => labels.push((k, v)),
                }
            }
            self.labels = labels;
        }
        Ok(())
    }

    /// The value at `path`, read from the entries' text.
    fn field(&self, path: &FieldPath) -> std::result::Result<Option<String>, serde_json::Error> {
        let Some((first, rest)) = path.segments.split_first() else { return Ok(None) };
        // the last entry of a repeated key wins, as in a decoded tree
        let Some((_, text)) = self.entries.iter().rev().find(|(k, _)| k == first) else { return Ok(None) };
        let mut cur: &RawValue = serde_json::from_str(text)?;
        for seg in rest {
            let t = cur.get();
            let next = if t.starts_with('{') {
                let m: MapEntries<'_> = serde_json::from_str(t)?;
                m.0.into_iter().rev().find(|(k, _)| k == seg).map(|(_, v)| v)
            } else if t.starts_with('[') {
                let a: Vec<&RawValue> = serde_json::from_str(t)?;
                seg.parse::<usize>().ok().and_then(|i| a.get(i).copied())
            } else {
                None
            };
            match next {
                Some(n) => cur = n,
                None => return Ok(None),
            }
        }
        scalar(cur)
    }

    /// The stored object: `apiVersion` and `kind` first (list items lack them), the other entries in the
    /// order sent, minus `drop` (a Secret's data unless configured otherwise).
    pub(crate) fn prepare(
        self,
        resource: &str,
        api_version: &str,
        kind: &str,
        drop: &[&str],
        fields: &[FieldPath],
    ) -> Result<Prepared> {
        let json = |source| Error::Json { resource: resource.to_owned(), key: String::new(), source };
        let key = match self.name.as_deref().filter(|n| !n.is_empty()) {
            Some(name) => match self.namespace.as_deref().filter(|n| !n.is_empty()) {
                Some(ns) => format!("{ns}/{name}"),
                None => name.to_owned(),
            },
            None => {
                let shown: String = self.entries.iter().map(|(k, v)| format!("{k}={v} ")).collect();
                let shown: String = shown.chars().take(200).collect();
                return Err(Error::NoName { resource: resource.to_owned(), object: shown });
            }
        };
        let mut fvals = Vec::with_capacity(fields.len());
        for f in fields {
            fvals.push((f.text.clone(), self.field(f).map_err(json)?));
        }
        let len: usize = self.entries.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let mut text = String::with_capacity(len + api_version.len() + kind.len() + 32);
        text.push_str(r#"{"apiVersion":"#);
        text.push_str(&serde_json::to_string(api_version).map_err(json)?);
        text.push_str(r#","kind":"#);
        text.push_str(&serde_json::to_string(kind).map_err(json)?);
        for (i, (k, v)) in self.entries.iter().enumerate() {
            if k == "apiVersion" || k == "kind" || drop.contains(&k.as_str()) {
                continue;
            }
            // a repeated key keeps its last value only, as a decoded tree would
            if self.entries[i + 1..].iter().any(|(later, _)| later == k) {
                continue;
            }
            text.push(',');
            text.push_str(&serde_json::to_string(k).map_err(json)?);
            text.push(':');
            text.push_str(v);
        }
        text.push('}');
        Ok(Prepared {
            key,
            namespace: self.namespace.unwrap_or_default(),
            name: self.name.unwrap_or_default(),
            uid: self.uid,
            resource_version: self.resource_version,
            created: self.created,
            labels: self.labels,
            fields: fvals,
            text,
        })
    }
}

/// A JSON object's members in order, values unparsed.
struct MapEntries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for MapEntries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MapEntries<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(MapEntries(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> serde::Deserialize<'de> for RawEntries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawEntries;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Kubernetes object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out = RawEntries::default();
                while let Some(k) = m.next_key::<String>()? {
                    let mut buf = Vec::with_capacity(256);
                    m.next_value_seed(Transcode(&mut buf))?;
                    let v = String::from_utf8(buf).map_err(de::Error::custom)?;
                    out.entries.push((k, v));
                }
                out.read_meta().map_err(de::Error::custom)?;
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// Writes whatever it is given to deserialize as compact JSON into the buffer (serde_json's escaping), without
/// building anything in between.
struct Transcode<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Transcode<'_> {
    fn put<T: serde::Serialize + ?Sized, E: de::Error>(&mut self, v: &T) -> std::result::Result<(), E> {
        serde_json::to_writer(&mut *self.0, v).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(mut self, v: bool) -> std::result::Result<(), E> {
        self.put(&v)
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> std::result::Result<(), E> {
        self.put(&v)
    }
    fn visit_u64<E: de::Error>(mut self, v: u64) -> std::result::Result<(), E> {
        self.put(&v)
    }
    fn visit_i128<E: de::Error>(mut self, v: i128) -> std::result::Result<(), E> {
        self.put(&v)
    }
    fn visit_u128<E: de::Error>(mut self, v: u128) -> std::result::Result<(), E> {
        self.put(&v)
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> std::result::Result<(), E> {
        // as a decoded tree would render it (a non-finite number cannot come from JSON)
        self.put(&Value::from(v))
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> std::result::Result<(), E> {
        self.put(v)
    }
    fn visit_bytes<E: de::Error>(mut self, v: &[u8]) -> std::result::Result<(), E> {
        self.put(v)
    }
    fn visit_unit<E: de::Error>(self) -> std::result::Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> std::result::Result<(), E> {
        self.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> std::result::Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        loop {
            if !first {
                self.0.push(b',');
            }
            if s.next_element_seed(Transcode(&mut *self.0))?.is_none() {
                if !first {
                    // the comma written before looking for another element
                    self.0.pop();
                }
                break;
            }
            first = false;
        }
        self.0.push(b']');
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<(), A::Error> {
        self.0.push(b'{');
        let mut first = true;
        loop {
            if !first {
                self.0.push(b',');
            }
            if m.next_key_seed(Key(&mut *self.0))?.is_none() {
                if !first {
                    self.0.pop();
                }
                break;
            }
            self.0.push(b':');
            m.next_value_seed(Transcode(&mut *self.0))?;
            first = false;
        }
        self.0.push(b'}');
        Ok(())
    }
}

/// An object member's name, written as a JSON string whatever type the deserializer gives it.
struct Key<'b>(&'b mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        let start = self.0.len();
        let buf = &mut *self.0;
        Transcode(&mut *buf).deserialize(d)?;
        if buf.get(start) != Some(&b'"') {
            // JSON names are strings: a number or bool key (from a buffered non-JSON source) is quoted
            let inner = buf.split_off(start);
            let s = String::from_utf8(inner).map_err(de::Error::custom)?;
            serde_json::to_writer(&mut *buf, &s).map_err(de::Error::custom)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(paths: &[&str]) -> Vec<FieldPath> {
        paths.iter().map(|p| FieldPath::parse(p).unwrap()).collect()
    }

    #[test]
    fn the_prepared_object_matches_what_a_tree_gives() {
        let obj = json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "resourceVersion": "42",
                         "creationTimestamp": "2024-01-01T00:00:00Z", "labels": {"app": "web", "n": 3, "z": null}},
            "spec": {"nodeName": "node-1", "containers": [{"image": "img", "ports": [{"containerPort": 80}]}],
                     "f": 1.5, "o": {"b": 1, "a": [true, null]}},
            "status": {"phase": "Running"},
            "data": {"k": "c2VjcmV0"}
        });
        let text = serde_json::to_string(&obj).unwrap();
        let paths = fields(&[
            "spec.nodeName",
            "status.phase",
            "spec.containers[0].image",
            "spec.containers[0].ports[0].containerPort",
            "spec.f",
            "spec.o",
            "spec.missing",
            "metadata.name",
        ]);
        let raw: RawEntries = serde_json::from_str(&text).unwrap();
        let p = raw.prepare("v1/Secret", "v1", "Secret", &["data", "stringData"], &paths).unwrap();
        let mut want_tree = obj.clone();
        want_tree.as_object_mut().unwrap().remove("data");
        want_tree["apiVersion"] = json!("v1");
        want_tree["kind"] = json!("Secret");
        let want = Prepared::from_value(&want_tree, "ns/p".into(), &paths).unwrap();
        assert_eq!(p.key, want.key);
        assert_eq!(
            (&p.namespace, &p.name, &p.uid, &p.resource_version, &p.created),
            (&want.namespace, &want.name, &want.uid, &want.resource_version, &want.created)
        );
        let mut labels = p.labels.clone();
        labels.sort();
        assert_eq!(labels, want.labels);
        assert_eq!(p.fields, want.fields);
        let stored: Value = serde_json::from_str(&p.text).unwrap();
        assert_eq!(stored, want_tree);
        assert_eq!(p.rv(), Some(42));
    }

    #[test]
    fn transcoding_keeps_order_and_works_on_buffered_input() {
        // an adjacently tagged enum with its content first is buffered by serde before the object is read
        #[derive(serde::Deserialize)]
        #[serde(tag = "type", content = "object")]
        enum Ev {
            #[serde(rename = "ADDED")]
            Added(RawEntries),
        }
        let line = r#"{"object":{"metadata":{"name":"a","resourceVersion":"7","labels":{"x":"y"}},"spec":{"z":"\u003c","a":[1,-2,0.5]}},"type":"ADDED"}"#;
        let Ev::Added(raw) = serde_json::from_str(line).unwrap();
        assert_eq!(raw.resource_version.as_deref(), Some("7"));
        assert_eq!(raw.labels, [("x".to_owned(), "y".to_owned())]);
        let p = raw.prepare("v1/Pod", "v1", "Pod", &[], &[]).unwrap();
        assert_eq!(
            p.text,
            r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a","resourceVersion":"7","labels":{"x":"y"}},"spec":{"z":"<","a":[1,-2,0.5]}}"#
        );
        let direct: RawEntries = serde_json::from_str(&line[10..line.len() - 16]).unwrap();
        assert_eq!(direct.prepare("v1/Pod", "v1", "Pod", &[], &[]).unwrap().text, p.text);
    }

    #[test]
    fn an_object_without_a_name_is_refused() {
        let raw: RawEntries = serde_json::from_str(r#"{"metadata":{"namespace":"x"}}"#).unwrap();
        assert!(matches!(raw.prepare("v1/Pod", "v1", "Pod", &[], &[]), Err(Error::NoName { .. })));
    }
}
