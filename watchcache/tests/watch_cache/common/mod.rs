#![allow(dead_code, clippy::unwrap_used)]
use litecar_watchcache::{Database, ResourceType, Store, StoreConfig};
use serde_json::{Value, json};

pub fn pods() -> Store {
    pods_with(StoreConfig::default())
}

pub fn pods_with(cfg: StoreConfig) -> Store {
    Database::open(":memory:").unwrap().store(ResourceType::new("", "v1", "Pod"), cfg).unwrap()
}

pub fn pod(ns: &str, name: &str, rv: u64) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
           "metadata": {"namespace": ns, "name": name, "uid": format!("uid-{name}"), "resourceVersion": rv.to_string()}})
}

pub fn with_labels(mut v: Value, labels: &[(&str, &str)]) -> Value {
    let l: serde_json::Map<String, Value> = labels.iter().map(|(k, x)| (k.to_string(), json!(x))).collect();
    v["metadata"]["labels"] = Value::Object(l);
    v
}

pub fn names(items: &[Value]) -> Vec<String> {
    items.iter().map(|o| o["metadata"]["name"].as_str().unwrap().to_owned()).collect()
}
