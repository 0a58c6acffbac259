//! The event types of the log: a leaf module, so the store's write path and the log's readers share them.

use std::sync::OnceLock;

use axum::body::Bytes;
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
    /// The wire line, encoded once however many watchers send it (see [`WatchEvent::wire_line`]).
    wire: OnceLock<Bytes>,
}

impl WatchEvent {
    pub fn new(seq: i64, rv: u64, kind: EventType, key: String, object: Value) -> Self {
        Self { seq, rv, kind, key, object, wire: OnceLock::new() }
    }

    /// [`WatchEvent::to_wire`] as one newline-terminated JSON line, encoded on first use and shared after: a
    /// thousand watchers of one event cost one encoding.
    pub fn wire_line(&self) -> Bytes {
        self.wire
            .get_or_init(|| {
                #[derive(serde::Serialize)]
                struct Wire<'a> {
                    #[serde(rename = "type")]
                    kind: &'static str,
                    object: &'a Value,
                }
                let mut out =
                    serde_json::to_vec(&Wire { kind: self.kind.as_str(), object: &self.object }).unwrap_or_default();
                out.push(b'\n');
                Bytes::from(out)
            })
            .clone()
    }

    /// The Kubernetes watch wire form: `{"type": "ADDED", "object": {...}}`.
    pub fn to_wire(&self) -> Value {
        serde_json::json!({"type": self.kind.as_str(), "object": self.object})
    }
}
