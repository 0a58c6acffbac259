//! Reading Kubernetes manifests (a YAML stream) for `litecar-operator render`: `SqliteDatabase` documents, and the
//! application Deployments that ask for litecar as a sidecar.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;

use crate::names::namespace;
use crate::pod::RenderOptions;
use crate::render::{RenderError, render};
use crate::sidecar;
use crate::types::SqliteDatabase;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error(transparent)]
    Invalid(Box<InvalidDocument>),
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: document {doc} ({kind} {name}): {field}: {message}")]
pub struct InvalidDocument {
    pub path: PathBuf,
    /// 1-based position in the stream.
    pub doc: usize,
    pub kind: String,
    pub name: String,
    /// The path inside the document, such as `spec.litestream.replicas[0].type`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Default)]
pub struct Manifests {
    pub databases: Vec<SqliteDatabase>,
    pub deployments: Vec<Deployment>,
}

pub fn read(path: &Path) -> Result<Manifests, ManifestError> {
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read { path: path.to_owned(), source })?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Manifests, ManifestError> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| ManifestError::Yaml { path: path.to_owned(), message: e.to_string() })?;
    let mut out = Manifests::default();
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let name = doc["metadata"]["name"].as_str().unwrap_or("<unnamed>").to_owned();
        let invalid = |field: String, message: String| {
            ManifestError::Invalid(Box::new(InvalidDocument {
                path: path.to_owned(),
                doc: i + 1,
                kind: kind.clone(),
                name: name.clone(),
                field,
                message,
            }))
        };
        match (doc["apiVersion"].as_str().unwrap_or_default(), kind.as_str()) {
            ("database.sqlite.io/v1alpha1", "SqliteDatabase") => {
                let db: SqliteDatabase = serde_path_to_error::deserialize(doc)
                    .map_err(|e| invalid(e.path().to_string(), e.inner().to_string()))?;
                out.databases.push(db);
            }
            ("apps/v1", "Deployment") => {
                let d: Deployment = serde_path_to_error::deserialize(doc)
                    .map_err(|e| invalid(e.path().to_string(), e.inner().to_string()))?;
                out.deployments.push(d);
            }
            (_, "SqliteDatabase") => {
                return Err(invalid("apiVersion".into(), "expected database.sqlite.io/v1alpha1".into()));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// Every object the operator would apply for these manifests: each SqliteDatabase's objects, then each annotated
/// Deployment with litecar injected.
pub fn render_all(m: &Manifests, opts: &RenderOptions) -> Result<Vec<Value>, RenderError> {
    let mut objects = Vec::new();
    for db in &m.databases {
        objects.extend(render(db, opts)?.objects());
    }
    for d in &m.deployments {
        let Some(wanted) = sidecar::requested_database(d) else { continue };
        let ns = d.metadata.namespace.as_deref().unwrap_or("default");
        let db = m
            .databases
            .iter()
            .find(|db| db.metadata.name.as_deref() == Some(wanted) && namespace(db) == ns)
            .ok_or_else(|| RenderError::MissingDatabase {
                deployment: format!("{ns}/{}", d.metadata.name.as_deref().unwrap_or_default()),
                database: wanted.to_owned(),
                annotation: sidecar::ANNOTATION,
            })?;
        let injected = sidecar::inject(db, d, opts)?;
        objects.push(serde_json::to_value(injected).unwrap_or(Value::Null));
    }
    Ok(objects)
}
