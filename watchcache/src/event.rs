//! The event types of the log: a leaf module, so the store's write path and the log's readers share them.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "ADDED" => Some(Self::Added),
            "MODIFIED" => Some(Self::Modified),
            "DELETED" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// One logged change. `seq` orders events within a store; `rv` is the Kubernetes resource version.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub seq: i64,
    pub rv: u64,
    pub kind: EventType,
    pub key: String,
    pub object: Value,
}

impl WatchEvent {
    /// The Kubernetes watch wire form: `{"type": "ADDED", "object": {...}}`.
    pub fn to_wire(&self) -> Value {
        serde_json::json!({"type": self.kind.as_str(), "object": self.object})
    }
}
