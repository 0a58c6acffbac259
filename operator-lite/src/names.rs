//! What the objects of a `SqliteDatabase` are called, and where they live: shared by the rendered objects, the
//! pod parts and the controller, which looks them up.

use crate::types::SqliteDatabase;

pub struct Names;

impl Names {
    pub fn pvc(db: &str) -> String {
        format!("{db}-db-storage")
    }
    pub fn config_map(db: &str) -> String {
        format!("{db}-litecar")
    }
    pub fn deployment(db: &str) -> String {
        db.to_owned()
    }
    pub fn service(db: &str) -> String {
        format!("{db}-service")
    }
    pub fn ingress(db: &str) -> String {
        format!("{db}-ingress")
    }
}

pub fn name(db: &SqliteDatabase) -> String {
    db.metadata.name.clone().unwrap_or_default()
}

pub fn namespace(db: &SqliteDatabase) -> String {
    db.metadata.namespace.clone().unwrap_or_else(|| "default".into())
}
