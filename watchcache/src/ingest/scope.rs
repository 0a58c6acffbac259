//! The resource's scope from the API server's discovery document (`/api/{version}` or
//! `/apis/{group}/{version}`): the configuration names a kind, and a custom resource may be cluster-scoped; the
//! read API serves each resource at the paths the API server serves it at.

use tokio_util::sync::CancellationToken;

use super::{Backoff, ResourceSpec, blocking};
use crate::{Result, Store};

/// Failed discoveries in a row after which ingesting goes on with the scope recorded before (or the built-in one).
const TRIES: u32 = 5;

/// Ask discovery whether the resource is namespaced and record it with the store; retried with backoff, then
/// given up with a warning, since the list and watch do not depend on it. Err only for a store error.
pub(super) async fn discover(
    client: &kube::Client,
    spec: &ResourceSpec,
    store: &Store,
    cancel: &CancellationToken,
) -> Result<()> {
    let rt = &spec.resource;
    let plural = spec.plural();
    let mut backoff = Backoff::default();
    for _ in 0..TRIES {
        let list = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            l = async {
                if rt.group.is_empty() {
                    client.list_core_api_resources(&rt.version).await
                } else {
                    client.list_api_group_resources(&rt.api_version()).await
                }
            } => l,
        };
        match list {
            Ok(list) => {
                // the plural the cache serves, else the kind (a subresource's name has a slash)
                let found = list
                    .resources
                    .iter()
                    .find(|r| r.name == plural)
                    .or_else(|| list.resources.iter().find(|r| r.kind == rt.kind && !r.name.contains('/')));
                match found {
                    Some(r) => {
                        let (s, namespaced) = (store.clone(), r.namespaced);
                        return blocking(move || s.set_namespaced(namespaced)).await;
                    }
                    None => tracing::warn!(resource = %rt, "discovery of {} lists no {plural}", rt.api_version()),
                }
            }
            Err(e) => tracing::warn!(resource = %rt, "discovery of {} failed: {e}", rt.api_version()),
        }
        if backoff.wait(cancel).await {
            return Ok(());
        }
    }
    let recorded = match store.namespaced() {
        Some(true) => "namespaced, as recorded before",
        Some(false) => "cluster-scoped, as recorded before",
        None => "scoped as the API server's built-in resource of that name",
    };
    tracing::warn!(resource = %rt, "no scope from discovery: served {recorded}");
    Ok(())
}
