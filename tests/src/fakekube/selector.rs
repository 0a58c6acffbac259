//! Label and field selectors, parsed by the watch-cache's parser (the API server's grammar: `=`, `==`, `!=`,
//! `in`, `notin`, existence `k` and `!k`); fields are `metadata.name` and `metadata.namespace` with `=`/`==`/`!=`.

use litecar_watchcache::FilterOp;
use litecar_watchcache::selector::{self, Requirement};
use serde_json::Value;

#[derive(Debug, Clone, Default)]
pub struct Selector {
    reqs: Vec<Requirement>,
}

impl Selector {
    pub fn parse(s: &str) -> Result<Self, String> {
        selector::labels(s).map(|reqs| Self { reqs }).map_err(|e| e.to_string())
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Whether an object meets every requirement; `get(key)` is its value (a label, or a field).
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|r| r.matches(get(&r.key).as_deref()))
    }

    pub fn check_fields(&self) -> Result<(), String> {
        for r in &self.reqs {
            let equality = matches!(r.op, FilterOp::Eq | FilterOp::NotEq);
            if !equality || !matches!(r.key.as_str(), "metadata.name" | "metadata.namespace") {
                return Err(format!("field label not supported: {}", r.term));
            }
        }
        Ok(())
    }
}

pub fn label(obj: &Value, k: &str) -> Option<String> {
    obj["metadata"]["labels"][k].as_str().map(str::to_owned)
}

pub fn field(obj: &Value, k: &str) -> Option<String> {
    match k {
        "metadata.name" => obj["metadata"]["name"].as_str().map(str::to_owned),
        "metadata.namespace" => Some(obj["metadata"]["namespace"].as_str().unwrap_or("").to_owned()),
        _ => None,
    }
}
