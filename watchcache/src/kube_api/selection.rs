//! `labelSelector` and `fieldSelector` as the API server parses them, as steve filters for lists and as a matcher
//! for watch events.

use serde_json::Value;

use super::Target;
use crate::list_options::{Filter, ListOptions};
use crate::path::FieldPath;
use crate::selector::{self, Requirement};
use crate::{Error, Result, Store};

/// A list or watch's selection as steve filters (for lists) and as a matcher (for watch events).
pub(crate) struct Selection {
    namespace: Option<String>,
    /// Each requirement with the path of the value it tests.
    reqs: Vec<(FieldPath, Requirement)>,
}

impl Selection {
    pub(crate) fn new(t: &Target, labels: Option<&str>, fields: Option<&str>) -> Result<Self> {
        let mut reqs = Vec::new();
        for r in selector::labels(labels.unwrap_or(""))? {
            reqs.push((FieldPath::parse(&format!("metadata.labels[{}]", r.key))?, r));
        }
        for r in selector::fields(fields.unwrap_or(""))? {
            reqs.push((FieldPath::parse(&r.key)?, r));
        }
        Ok(Self { namespace: t.namespace.clone(), reqs })
    }

    pub(crate) fn options(&self) -> ListOptions {
        let filter = |(field, r): &(FieldPath, Requirement)| Filter {
            term: r.term.clone(),
            field: field.clone(),
            op: r.op,
            values: r.values.clone(),
        };
        ListOptions {
            filters: self.reqs.iter().map(|r| vec![filter(r)]).collect(),
            namespaces: self.namespace.iter().cloned().collect(),
            ..Default::default()
        }
    }

    /// Whether only the namespace restricts the selection (the API server's "empty predicate").
    pub(crate) fn selects_all(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The key prefix of the selected namespace (`ns/`), or "" for all.
    pub(crate) fn key_prefix(&self) -> String {
        self.namespace.as_ref().map(|ns| format!("{ns}/")).unwrap_or_default()
    }

    /// Whether a stored object (its key and JSON) is selected; decodes it only when a selector needs to look.
    pub(crate) fn matches_stored(&self, store: &Store, key: &str, text: &str) -> Result<bool> {
        if !key.starts_with(&self.key_prefix()) {
            return Ok(false);
        }
        if self.reqs.is_empty() {
            return Ok(true);
        }
        Ok(self.matches(&store.decode(key, text)?))
    }

    /// Whether a watch event's object is selected.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        self.reqs.iter().all(|(field, r)| r.matches(field.scalar(obj).as_deref()))
    }
}

pub(crate) fn bad(term: &str, reason: &str) -> Error {
    Error::Query { term: term.to_owned(), reason: reason.to_owned() }
}
