//! `labelSelector` and `fieldSelector` as the API server parses them, as steve filters for lists and as a matcher
//! for watch events.

use serde_json::Value;

use super::Target;
use crate::path::FieldPath;
use crate::query::{Filter, FilterOp, ListOptions};
use crate::{Error, Result};

/// A list or watch's selection as steve filters (for lists) and as a matcher (for watch events).
pub(crate) struct Selection {
    namespace: Option<String>,
    filters: Vec<Filter>,
}

impl Selection {
    pub(crate) fn new(t: &Target, labels: Option<&str>, fields: Option<&str>) -> Result<Self> {
        let mut filters = Vec::new();
        for term in split_terms(labels.unwrap_or("")) {
            filters.push(label_term(term)?);
        }
        for term in split_terms(fields.unwrap_or("")) {
            let (path, op, value) = match (term.split_once("!="), term.split_once("==").or(term.split_once('='))) {
                (Some((p, v)), _) => (p, FilterOp::NotEq, v),
                (None, Some((p, v))) => (p, FilterOp::Eq, v),
                _ => return Err(bad(term, "a field selector term is FIELD=VALUE or FIELD!=VALUE")),
            };
            let field = FieldPath::parse(path.trim())?;
            filters.push(Filter { term: term.to_owned(), field, op, values: vec![value.trim().to_owned()] });
        }
        Ok(Self { namespace: t.namespace.clone(), filters })
    }

    pub(crate) fn options(&self) -> ListOptions {
        ListOptions {
            filters: self.filters.iter().map(|f| vec![f.clone()]).collect(),
            namespaces: self.namespace.iter().cloned().collect(),
            ..Default::default()
        }
    }

    /// Whether a watch event's object is selected.
    pub(crate) fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        self.filters.iter().all(|f| {
            let v = f.field.scalar(obj);
            match f.op {
                FilterOp::Eq => v.as_deref() == f.values.first().map(String::as_str),
                FilterOp::NotEq => v.as_deref() != f.values.first().map(String::as_str),
                FilterOp::In => v.is_some_and(|v| f.values.contains(&v)),
                FilterOp::NotIn => v.is_none_or(|v| !f.values.contains(&v)),
                FilterOp::Exists => v.is_some(),
                FilterOp::NotExists => v.is_none(),
                _ => false,
            }
        })
    }
}

pub(crate) fn bad(term: &str, reason: &str) -> Error {
    Error::Query { term: term.to_owned(), reason: reason.to_owned() }
}

/// Selector terms: commas outside parentheses separate them (all must hold).
fn split_terms(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0i32, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().map(str::trim).filter(|t| !t.is_empty()).collect()
}

/// One label selector term: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
fn label_term(term: &str) -> Result<Filter> {
    let label = |k: &str| FieldPath::parse(&format!("metadata.labels[{}]", k.trim()));
    let filter = |k: &str, op, values: Vec<String>| -> Result<Filter> {
        if k.trim().is_empty() {
            return Err(bad(term, "a label selector term needs a key"));
        }
        Ok(Filter { term: term.to_owned(), field: label(k)?, op, values })
    };
    for (kw, op) in [(" notin ", FilterOp::NotIn), (" in ", FilterOp::In)] {
        if let Some((k, list)) = term.split_once(kw) {
            let inner = list
                .trim()
                .strip_prefix('(')
                .and_then(|l| l.strip_suffix(')'))
                .ok_or_else(|| bad(term, "a set needs a parenthesised list"))?;
            return filter(k, op, inner.split(',').map(|v| v.trim().to_owned()).collect());
        }
    }
    if let Some((k, v)) = term.split_once("!=") {
        return filter(k, FilterOp::NotEq, vec![v.trim().to_owned()]);
    }
    if let Some((k, v)) = term.split_once("==").or(term.split_once('=')) {
        return filter(k, FilterOp::Eq, vec![v.trim().to_owned()]);
    }
    match term.strip_prefix('!') {
        Some(k) => filter(k, FilterOp::NotExists, vec![]),
        None => filter(term, FilterOp::Exists, vec![]),
    }
}
