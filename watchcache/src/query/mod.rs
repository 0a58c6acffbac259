//! Rancher steve's list query language over a store's tables.
//!
//! `filter=` terms are ANDed across repeated parameters and ORed within one parameter (commas). Operators:
//! `=`/`==` (equal), `!=`, `~` (contains), `!~`, `in (a,b)`, `notin (a,b)`, `<`, `>` (numeric), and label
//! existence `metadata.labels[k]` / `!metadata.labels[k]`. `sort=a,-b`, `pagesize=`/`page=` (1-based) or
//! `continue=`, `revision=` (not older than), `summary=field` (value counts), `include=`/`exclude=` (JSON-path
//! projections of the returned items), `namespace=a,b`. Fields usable in filters, sorts and summaries:
//! `id`, `metadata.name`, `metadata.namespace`, `metadata.creationTimestamp`, any `metadata.labels[k]` and the
//! store's configured fields. All values are bound as SQL parameters; only fixed SQL is spliced.

use std::collections::BTreeMap;

use crate::Result;
pub(crate) use crate::list_options::{Filter, FilterOp, ListOptions, ListResult, SortKey};
use crate::path::project;
use crate::store::Store;

mod page;
mod parse;
mod sql;

pub(crate) use parse::parse_pairs;

/// What a page read counts besides the page itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counting {
    /// Every matching object (steve's `count` and `pages`).
    All,
    /// The objects after the page, when another page follows (the API server's `remainingItemCount`).
    Remaining,
    Nothing,
}

/// A page of stored objects as the JSON text the store holds, for answers that pass it on untouched.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawPage {
    /// (key, JSON) in the query's order.
    pub(crate) items: Vec<(String, String)>,
    /// Matching objects across all pages ([`Counting::All`]).
    pub(crate) count: Option<usize>,
    /// Matching objects after this page ([`Counting::Remaining`], only when another page follows).
    pub(crate) remaining: Option<usize>,
    pub(crate) continue_token: Option<String>,
    pub(crate) revision: u64,
    pub(crate) summary: BTreeMap<String, BTreeMap<String, usize>>,
}

impl Store {
    /// Run a query against the current contents.
    pub fn query(&self, o: &ListOptions) -> Result<ListResult> {
        let page = self.query_raw(o, Counting::All)?;
        let items = page
            .items
            .iter()
            .map(|(k, t)| self.decode(k, t).map(|v| project(v, &o.include, &o.exclude)))
            .collect::<Result<Vec<_>>>()?;
        let count = page.count.unwrap_or(items.len());
        let pages = match o.page_size {
            Some(size) => count.div_ceil(size),
            None => usize::from(count > 0),
        };
        Ok(ListResult {
            items,
            count,
            pages,
            continue_token: page.continue_token,
            revision: page.revision,
            summary: page.summary,
        })
    }
}
