//! Resource types (group/version/kind) and object keys.

use serde_json::Value;

/// A Kubernetes resource type; the core group is the empty string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct ResourceType {
    #[serde(default)]
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl ResourceType {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self { group: group.to_owned(), version: version.to_owned(), kind: kind.to_owned() }
    }

    /// `apiVersion` as objects spell it: `v1` for core, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// Table-name prefix: only [a-z0-9_] so it can be spliced into SQL identifiers; a hash of the exact
    /// group/version/kind keeps `a.b` and `a_b` apart after sanitising.
    pub(crate) fn table_prefix(&self) -> String {
        let raw = format!("{}_{}_{}", self.group, self.version, self.kind).to_ascii_lowercase();
        let clean: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
        // FNV-1a: stable across builds, unlike DefaultHasher's unspecified algorithm
        let mut h: u32 = 0x811c9dc5;
        for b in format!("{}/{}/{}", self.group, self.version, self.kind).bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x01000193);
        }
        format!("wc_{clean}_{h:08x}")
    }
}

impl std::fmt::Display for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.kind)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.kind)
        }
    }
}

/// client-go's MetaNamespaceKeyFunc: `namespace/name`, or `name` for cluster-scoped objects.
pub fn object_key(obj: &Value) -> Option<String> {
    let meta = obj.get("metadata")?;
    let name = meta.get("name")?.as_str().filter(|s| !s.is_empty())?;
    match meta.get("namespace").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        Some(ns) => Some(format!("{ns}/{name}")),
        None => Some(name.to_owned()),
    }
}

pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Resource versions are opaque to clients but etcd revisions in practice; the event log orders by them.
pub(crate) fn parse_rv(obj: &Value) -> Option<u64> {
    meta_str(obj, "resourceVersion")?.parse().ok()
}
