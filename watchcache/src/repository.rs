//! The strict repository (kyverno reports-server v2 storage semantics) over a [`Store`]: create fails if the
//! object exists, update and delete fail if it does not.

use serde_json::Value;

use crate::store::{Store, WriteOp};
use crate::{Error, Result};

#[derive(Clone)]
pub struct Repository {
    store: Store,
}

fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

impl Repository {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn exists(&self, key: &str) -> Result<bool> {
        self.store.contains_key(key)
    }

    fn not_found(&self, key: String) -> Error {
        Error::NotFound { resource: self.store.name().to_owned(), key }
    }

    // The check and the write are separate lock holds; the repository is meant for one writer per type (as the
    // reports-server's), so no other writer can slip between them.
    pub fn create(&self, obj: Value) -> Result<()> {
        let k = self.store.key_of(&obj)?;
        if self.exists(&k)? {
            return Err(Error::AlreadyExists { resource: self.store.name().to_owned(), key: k });
        }
        self.store.write(vec![WriteOp::Upsert(obj)]).map(drop)
    }

    pub fn update(&self, obj: Value) -> Result<()> {
        let k = self.store.key_of(&obj)?;
        if !self.exists(&k)? {
            return Err(self.not_found(k));
        }
        self.store.write(vec![WriteOp::Upsert(obj)]).map(drop)
    }

    pub fn get(&self, namespace: Option<&str>, name: &str) -> Result<Value> {
        let k = key(namespace, name);
        self.store.get_by_key(&k)?.ok_or_else(|| self.not_found(k))
    }

    /// Objects of one namespace, or of all namespaces (and cluster-scoped ones) for None; ordered by key.
    pub fn list(&self, namespace: Option<&str>) -> Result<Vec<Value>> {
        let Some(ns) = namespace.filter(|n| !n.is_empty()) else { return self.store.list() };
        let opts = crate::ListOptions { namespaces: vec![ns.to_owned()], ..Default::default() };
        self.store.query(&opts).map(|r| r.items)
    }

    pub fn delete(&self, namespace: Option<&str>, name: &str) -> Result<()> {
        let k = key(namespace, name);
        if self.store.write(vec![WriteOp::Delete { key: k.clone(), object: None }])?.is_empty() {
            return Err(self.not_found(k));
        }
        Ok(())
    }
}
