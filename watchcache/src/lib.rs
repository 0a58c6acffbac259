//! Kubernetes list/watch into SQLite.
//!
//! - [`Database`] opens one SQLite file (or `:memory:`) and hands out one [`Store`] per resource type.
//! - [`Store`] has client-go's `Store`/`Indexer` semantics; [`Repository`] is the strict create/get/update/delete
//!   API (reports-server style); both write through the same tables and the same event log.
//! - The event log ([`WatchEvent`], [`Store::list_since`], [`Store::state_at`], [`Store::watch`]) backs watch
//!   fan-out; [`ListOptions`] is Rancher steve's filter/sort/page language.
//! - [`ingest()`] fills stores from the Kubernetes API with kube-rs' watcher.

// Tests may unwrap: a panic there is a test failure with a backtrace, which is what we want.
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
mod event;
mod events;
mod http;
mod ingest;
mod keyset;
mod kube_api;
mod list_options;
mod names;
mod page_at;
mod path;
mod query;
mod raw;
mod repository;
mod resource;
pub mod selector;
mod serve;
mod store;
mod sync;
mod watch;

pub use error::{Error, Result};
pub use event::{EventType, WatchEvent};
pub use http::K8sApi;
pub use ingest::{ResourceSpec, ingest};
pub use kube_api::auth_status::kube_auth_status;
pub use kube_api::table::{IncludeObject, to_table, wants_table};
pub use serve::serve;
pub use watch::WatchSession;

pub use list_options::{Filter, FilterOp, ListOptions, ListResult, SortKey};
pub use path::FieldPath;
pub use repository::Repository;
pub use resource::{ResourceType, object_key};
pub use store::{Database, IndexFunc, Indexers, Store, StoreConfig, WriteOp};

/// The steve-style `/k8s` routes and the Kubernetes-compatible read API (`/api`, `/apis`) over the stores of
/// `state`.
pub fn router(state: K8sApi) -> axum::Router {
    http::routes(state.clone()).merge(kube_api::routes(state))
}
