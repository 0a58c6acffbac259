//! Whether a resource is namespaced, as the API server's discovery says. The configuration names a kind, not its
//! scope, and a custom resource may be cluster-scoped: the ingester asks discovery and the answer is kept with
//! the store, so a restart that cannot reach the API yet still serves the resource at the right paths.

use std::sync::atomic::Ordering;

use super::Store;
use crate::Result;
use crate::names::write_meta;

/// The store meta value that holds the scope.
pub(super) const META: &str = "namespaced";
const UNKNOWN: u8 = 0;
const NAMESPACED: u8 = 1;
const CLUSTER: u8 = 2;

/// The in-memory form of the stored value.
pub(super) fn decode(meta: Option<&str>) -> u8 {
    match meta {
        Some("true") => NAMESPACED,
        Some("false") => CLUSTER,
        _ => UNKNOWN,
    }
}

impl Store {
    /// Record the resource's scope as the API server's discovery gives it.
    pub fn set_namespaced(&self, namespaced: bool) -> Result<()> {
        let p = self.inner.p.clone();
        self.write_tx("record the scope", |tx, _| write_meta(tx, &p, META, &namespaced.to_string()))?;
        self.inner.scope.store(if namespaced { NAMESPACED } else { CLUSTER }, Ordering::SeqCst);
        Ok(())
    }

    /// Whether the resource is namespaced; None when no discovery recorded it (a store filled through the
    /// `Store` API).
    pub fn namespaced(&self) -> Option<bool> {
        match self.inner.scope.load(Ordering::SeqCst) {
            NAMESPACED => Some(true),
            CLUSTER => Some(false),
            _ => None,
        }
    }
}
