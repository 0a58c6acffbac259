//! A parsed list query: what every query language of the crate (steve's `filter=`/`sort=`, the Kubernetes API's
//! selectors) is turned into, and what a list answers. A leaf module, so that the parsers, the keyset tokens and
//! the query engine can all depend on it without depending on each other.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::path::FieldPath;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    Eq,
    NotEq,
    Contains,
    NotContains,
    In,
    NotIn,
    Lt,
    Gt,
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub term: String,
    pub field: FieldPath,
    pub op: FilterOp,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub field: FieldPath,
    pub descending: bool,
}

/// A parsed query. `filters` is an AND of OR-groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListOptions {
    pub filters: Vec<Vec<Filter>>,
    pub sort: Vec<SortKey>,
    pub page_size: Option<usize>,
    pub page: Option<usize>,
    pub continue_token: Option<String>,
    pub revision: Option<u64>,
    pub summary: Vec<FieldPath>,
    pub include: Vec<FieldPath>,
    pub exclude: Vec<FieldPath>,
    pub namespaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ListResult {
    pub items: Vec<Value>,
    /// Matching objects across all pages.
    pub count: usize,
    pub pages: usize,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_token: Option<String>,
    /// The store's revision when the list was read.
    pub revision: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub summary: BTreeMap<String, BTreeMap<String, usize>>,
}
