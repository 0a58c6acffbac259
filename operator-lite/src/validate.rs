//! Checks the CRD schema cannot express (or that a manifest rendered without a cluster never went through), each
//! naming the field at fault.

use std::collections::BTreeSet;

use litecar::config::GoDuration;

use crate::types::{ReplicaType, SqliteDatabase};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("SqliteDatabase {resource}: {field}: {message}")]
pub struct SpecError {
    /// `namespace/name` of the resource.
    pub resource: String,
    /// The field's path, such as `spec.sqliteRest.authSecret`.
    pub field: String,
    pub message: String,
}

/// The resource's `namespace/name` (`default` when the manifest names no namespace).
pub fn resource_key(db: &SqliteDatabase) -> String {
    format!(
        "{}/{}",
        db.metadata.namespace.as_deref().unwrap_or("default"),
        db.metadata.name.as_deref().unwrap_or("<unnamed>")
    )
}

pub fn validate(db: &SqliteDatabase) -> Result<(), SpecError> {
    let err = |field: &str, message: String| SpecError { resource: resource_key(db), field: field.into(), message };
    let name = db.metadata.name.as_deref().unwrap_or("");
    if name.is_empty() {
        return Err(err("metadata.name", "required".into()));
    }
    // Object names derived from it (`<name>-db-storage`, `<name>-service`) must stay valid DNS labels.
    if name.len() > 52 || !is_dns_label(name) {
        return Err(err(
            "metadata.name",
            format!("{name:?} must be a DNS label (lowercase letters, digits, '-') of at most 52 characters"),
        ));
    }
    let spec = &db.spec;
    let file = &spec.database.name;
    if file.is_empty() || file.starts_with('.') || !file.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        return Err(err(
            "spec.database.name",
            format!("{file:?} is not a plain file name (letters, digits, '.', '_', '-'; not starting with '.')"),
        ));
    }
    if !is_quantity(&spec.database.storage.size) {
        return Err(err(
            "spec.database.storage.size",
            format!("{:?} is not a quantity such as 1Gi or 500Mi", spec.database.storage.size),
        ));
    }
    let mut gcs_secrets = BTreeSet::new();
    if let Some(ls) = &spec.litestream {
        for (i, r) in ls.replicas.iter().enumerate() {
            let at = |f: &str| format!("spec.litestream.replicas[{i}].{f}");
            if r.kind != ReplicaType::Local && r.bucket.trim().is_empty() {
                return Err(err(&at("bucket"), format!("required for type {}", r.kind.as_str())));
            }
            for (field, value) in [("retention", &r.retention), ("retentionCheckInterval", &r.retention_check_interval)]
            {
                if let Some(v) = value {
                    GoDuration::parse(v).map_err(|m| err(&at(field), m))?;
                }
            }
            if let Some(c) = &r.credentials {
                if c.secret_name.is_empty() {
                    return Err(err(&at("credentials.secretName"), "required".into()));
                }
                if r.kind == ReplicaType::Gcs {
                    gcs_secrets.insert((c.secret_name.clone(), c.secret_key().to_owned()));
                }
            }
            if let Some(p) = &r.path
                && r.kind == ReplicaType::Local
                && p.split('/').any(|s| s == "..")
            {
                return Err(err(&at("path"), format!("{p:?} must stay inside the volume (no '..')")));
            }
        }
    }
    if gcs_secrets.len() > 1 {
        return Err(err(
            "spec.litestream.replicas",
            "GCS replicas must share one credentials secret and key (a pod has one GOOGLE_APPLICATION_CREDENTIALS)"
                .into(),
        ));
    }
    let rest_enabled = spec.sqlite_rest.as_ref().is_some_and(|r| r.enabled);
    if let Some(rest) = spec.sqlite_rest.as_ref().filter(|r| r.enabled) {
        if rest.auth_secret.as_deref().is_none_or(str::is_empty) {
            return Err(err(
                "spec.sqliteRest.authSecret",
                "required when sqliteRest.enabled is true (a Secret whose `token` key is the JWT secret)".into(),
            ));
        }
        if !(1..=65535).contains(&rest.port) {
            return Err(err("spec.sqliteRest.port", format!("{} is not a port (1-65535)", rest.port)));
        }
    }
    if let Some(m) = spec.sqlite_rest.as_ref().and_then(|r| r.metrics.as_ref()).filter(|m| m.enabled) {
        if !(1..=65535).contains(&m.port) {
            return Err(err("spec.sqliteRest.metrics.port", format!("{} is not a port (1-65535)", m.port)));
        }
        if rest_enabled && spec.sqlite_rest.as_ref().is_some_and(|r| r.port == m.port) {
            return Err(err("spec.sqliteRest.metrics.port", format!("{} is also sqliteRest.port", m.port)));
        }
    }
    if let Some(ing) = spec.ingress.as_ref().filter(|i| i.enabled) {
        if ing.host.as_deref().is_none_or(str::is_empty) {
            return Err(err("spec.ingress.host", "required when ingress.enabled is true".into()));
        }
        if !rest_enabled {
            return Err(err(
                "spec.ingress.enabled",
                "the Ingress routes to the REST API: enable sqliteRest too".into(),
            ));
        }
        if let Some(tls) = ing.tls.as_ref().filter(|t| t.enabled)
            && tls.secret_name.as_deref().is_none_or(str::is_empty)
        {
            return Err(err("spec.ingress.tls.secretName", "required when tls.enabled is true".into()));
        }
    }
    Ok(())
}

fn is_dns_label(s: &str) -> bool {
    !s.starts_with('-')
        && !s.ends_with('-')
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_quantity(s: &str) -> bool {
    let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &s[digits.len()..];
    let number_ok = !digits.is_empty()
        && digits.split('.').count() <= 2
        && digits.split('.').all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    number_ok && ["", "E", "P", "T", "G", "M", "K", "Ei", "Pi", "Ti", "Gi", "Mi", "Ki"].contains(&suffix)
}
