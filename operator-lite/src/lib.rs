//! litecar-operator: `SqliteDatabase` resources (the SQLite Operator's API) rendered into a litecar-replicated
//! SQLite database: a claim, a ConfigMap with litecar's config, a Deployment (or a sidecar injected into the
//! application's Deployment), a Service and an Ingress.

pub mod config;
pub mod initdb;
pub mod manifest;
pub mod names;
pub mod pod;
pub mod render;
pub mod sidecar;
pub mod types;
pub mod validate;

pub use pod::RenderOptions;
pub use render::{Rendered, render};
pub use types::{SqliteDatabase, SqliteDatabaseSpec, SqliteDatabaseStatus};

/// The CustomResourceDefinition, as `litecar-operator crd` prints it and the chart ships it.
pub fn crd_yaml() -> Result<String, serde_saphyr::ser::Error> {
    use kube::CustomResourceExt;
    serde_saphyr::to_string(&SqliteDatabase::crd())
}
