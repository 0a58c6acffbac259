//! Objects as the ingester reads them from the API (without a JSON tree) and their conversion into rows.

use std::borrow::Cow;

use kube::api::{Api, ApiResource, GroupVersionKind};
use kube::core::{DynamicResourceScope, ObjectMeta, Resource};

use super::ResourceSpec;
use crate::Result;
use crate::path::FieldPath;
use crate::raw::{Prepared, RawEntries};
use crate::store::RowOp;

/// An object as the API sent it: its top-level entries as JSON text and the metadata the store needs (see
/// [`crate::raw`]), plus the few metadata fields kube-rs' watcher reads (the resourceVersion). No JSON tree is
/// built: decoding every object into one, freeing it and encoding it again was most of the ingester's CPU.
#[derive(Clone, Debug)]
pub(super) struct RawObject {
    metadata: ObjectMeta,
    raw: RawEntries,
}

impl<'de> serde::Deserialize<'de> for RawObject {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let raw = RawEntries::deserialize(d)?;
        let metadata = ObjectMeta {
            name: raw.name.clone(),
            namespace: raw.namespace.clone(),
            resource_version: raw.resource_version.clone(),
            ..ObjectMeta::default()
        };
        Ok(Self { metadata, raw })
    }
}

impl Resource for RawObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

pub(super) fn api_for(client: kube::Client, spec: &ResourceSpec) -> Api<RawObject> {
    let rt = &spec.resource;
    let gvk = GroupVersionKind::gvk(&rt.group, &rt.version, &rt.kind);
    let ar = match &spec.plural {
        Some(p) => ApiResource::from_gvk_with_plural(&gvk, p),
        None => ApiResource::from_gvk(&gvk),
    };
    match &spec.namespace {
        Some(ns) => Api::namespaced_with(client, ns, &ar),
        None => Api::all_with(client, &ar),
    }
}

/// What the ingester needs to turn objects into rows, fixed for a resource's run.
pub(super) struct Preparer {
    resource: String,
    api_version: String,
    kind: String,
    /// Top-level entries not stored: a Secret's data unless configured otherwise.
    drop: &'static [&'static str],
    fields: Vec<FieldPath>,
}

impl Preparer {
    pub(super) fn new(spec: &ResourceSpec, fields: Vec<FieldPath>) -> Self {
        let rt = &spec.resource;
        let secret = rt.kind == "Secret" && rt.group.is_empty() && !spec.keep_secret_data;
        Self {
            resource: rt.to_string(),
            api_version: rt.api_version(),
            kind: rt.kind.clone(),
            drop: if secret { &["data", "stringData"] } else { &[] },
            fields,
        }
    }

    /// The stored object: apiVersion/kind filled in (list items lack them), secrets stripped.
    pub(super) fn prepare(&self, obj: RawObject) -> Result<Prepared> {
        obj.raw.prepare(&self.resource, &self.api_version, &self.kind, self.drop, &self.fields)
    }

    pub(super) fn delete(&self, obj: RawObject) -> Result<RowOp> {
        let p = self.prepare(obj)?;
        Ok(RowOp::Delete { key: p.key.clone(), object: Some(p) })
    }
}
