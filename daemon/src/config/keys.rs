//! Unknown keys. Litestream ignores them, and real configs carry them (`forcePathStyle`, `access_key_id`), so they
//! are warnings that name the key, its line and the nearest known key; `-strict` makes them errors. The known keys of
//! each section are read from the config types themselves, so a key added to a type is known here at once.

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::tree::{Node, Value};
use super::types::{
    AgeConfig, Config, DbConfig, FollowerConfig, JwtConfig, LoggingConfig, ReplicaConfig, RestConfig, RoleConfig,
    SnapshotConfig, TlsConfig, WatchResource, WatchcacheConfig,
};

/// A section of the file whose keys are a struct's fields. A new section is one variant here, its type in
/// `fields`, and where it sits in `child`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Root,
    Logging,
    Snapshot,
    Db,
    Replica,
    Age,
    Rest,
    Tls,
    Auth,
    /// `roles:`, a map from any role name to a `Role`.
    Roles,
    Role,
    Watchcache,
    Resource,
    /// An entry of `follow:`: a follower's own keys and a replica's.
    Follow,
}

fn fields(s: Section) -> &'static [&'static str] {
    match s {
        Section::Root => fields_of::<Config>(),
        Section::Logging => fields_of::<LoggingConfig>(),
        Section::Snapshot => fields_of::<SnapshotConfig>(),
        Section::Db => fields_of::<DbConfig>(),
        Section::Replica => fields_of::<ReplicaConfig>(),
        Section::Age => fields_of::<AgeConfig>(),
        Section::Rest => fields_of::<RestConfig>(),
        Section::Tls => fields_of::<TlsConfig>(),
        Section::Auth => fields_of::<JwtConfig>(),
        Section::Roles => &[],
        Section::Role => fields_of::<RoleConfig>(),
        Section::Watchcache => fields_of::<WatchcacheConfig>(),
        Section::Resource => fields_of::<WatchResource>(),
        Section::Follow => {
            static FOLLOW: OnceLock<Vec<&'static str>> = OnceLock::new();
            FOLLOW.get_or_init(|| {
                let own = fields_of::<FollowerConfig>();
                let replica = fields_of::<ReplicaConfig>().iter().filter(|k| !own.contains(k));
                own.iter().chain(replica).copied().collect()
            })
        }
    }
}

/// The section a known key opens, if its value is checked further.
fn child(s: Section, key: &str) -> Option<Section> {
    Some(match (s, key) {
        (Section::Root, "logging") => Section::Logging,
        (Section::Root, "snapshot") => Section::Snapshot,
        (Section::Root, "dbs") => Section::Db,
        (Section::Root, "rest") => Section::Rest,
        (Section::Root, "watchcache") => Section::Watchcache,
        (Section::Db, "replicas" | "replica") => Section::Replica,
        (Section::Root, "follow") => Section::Follow,
        (Section::Replica | Section::Follow, "age") => Section::Age,
        (Section::Rest, "auth") => Section::Auth,
        (Section::Rest, "tls") => Section::Tls,
        (Section::Auth, "roles") => Section::Roles,
        (Section::Roles, _) => Section::Role,
        (Section::Watchcache, "resources") => Section::Resource,
        _ => return None,
    })
}

/// Keys that Litestream reads and litecar does not: they are reported with what they mean here, not as typos.
const NOT_IMPLEMENTED: &[(Section, &str, &str)] = &[
    (Section::Root, "mcp-addr", "Litestream 0.5's MCP server is not part of litecar"),
    (Section::Root, "levels", "Litestream 0.5's compaction levels do not apply to the 0.3 layout litecar writes"),
    (Section::Root, "l0-retention", "Litestream 0.5's compaction levels do not apply to the 0.3 layout litecar writes"),
    (
        Section::Root,
        "l0-retention-check-interval",
        "Litestream 0.5's compaction levels do not apply to the 0.3 layout litecar writes",
    ),
    (Section::Db, "dir", "Litestream 0.5's directory replication is not implemented; list each database's path"),
    (Section::Db, "pattern", "Litestream 0.5's directory replication is not implemented; list each database's path"),
    (Section::Db, "recursive", "Litestream 0.5's directory replication is not implemented; list each database's path"),
    (Section::Db, "busy-timeout", "litecar's lock waits are not configurable"),
];

/// A key that is not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// Where it sits (`dbs[0].replicas[0]`), empty at the top level.
    pub section: String,
    pub key: String,
    pub line: u32,
    pub suggestion: Option<&'static str>,
    /// Set for keys Litestream reads but litecar does not implement: what that means.
    pub not_implemented: Option<&'static str>,
}

impl UnknownKey {
    /// A typo or a foreign key (as opposed to a known Litestream key litecar does not implement).
    pub fn is_unknown(&self) -> bool {
        self.not_implemented.is_none()
    }
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let place = if self.section.is_empty() { String::new() } else { format!(" in {}", self.section) };
        if let Some(note) = self.not_implemented {
            return write!(f, "line {}: key `{}`{place} is ignored: {note}", self.line, self.key);
        }
        write!(f, "line {}: unknown key `{}`{place}", self.line, self.key)?;
        if let Some(s) = self.suggestion {
            write!(f, "; did you mean `{s}`?")?;
        }
        Ok(())
    }
}

/// Every key of `root` that no config type reads.
pub fn unknown_keys(root: &Node) -> Vec<UnknownKey> {
    let mut out = vec![];
    walk(root, Section::Root, "", &mut out);
    out
}

fn walk(node: &Node, section: Section, path: &str, out: &mut Vec<UnknownKey>) {
    let Value::Map(entries) = &node.value else { return };
    for e in entries {
        let known = section == Section::Roles || fields(section).contains(&e.key.as_str());
        if !known {
            let not_implemented =
                NOT_IMPLEMENTED.iter().find(|(s, k, _)| *s == section && *k == e.key).map(|(_, _, note)| *note);
            out.push(UnknownKey {
                section: path.to_owned(),
                key: e.key.clone(),
                line: e.line,
                suggestion: if not_implemented.is_some() { None } else { nearest(&e.key, fields(section)) },
                not_implemented,
            });
            continue;
        }
        let Some(next) = child(section, &e.key) else { continue };
        let p = if path.is_empty() { e.key.clone() } else { format!("{path}.{}", e.key) };
        match &e.value.value {
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, next, &format!("{p}[{i}]"), out);
                }
            }
            _ => walk(&e.value, next, &p, out),
        }
    }
}

/// The known key `key` most likely meant: the same letters in another spelling (`forcePathStyle`,
/// `access_key_id`), else the closest by edit distance.
fn nearest(key: &str, known: &'static [&'static str]) -> Option<&'static str> {
    let norm = |s: &str| s.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_lowercase();
    let k = norm(key);
    if let Some(same) = known.iter().find(|c| norm(c) == k) {
        return Some(same);
    }
    known
        .iter()
        .map(|c| (strsim::levenshtein(&k, &norm(c)), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The field names a derived `Deserialize` struct accepts, read by asking it to deserialize from a deserializer
/// that records them and gives up.
fn fields_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    struct Probe<'a>(&'a mut &'static [&'static str]);

    #[derive(Debug)]
    struct Stop;
    impl fmt::Display for Stop {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("field probe")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<M: fmt::Display>(_: M) -> Self {
            Stop
        }
    }

    impl<'de> Deserializer<'de> for Probe<'_> {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            *self.0 = fields;
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
            unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Probe(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_fields_come_from_the_types() {
        let replica = fields(Section::Replica);
        assert!(replica.contains(&"force-path-style") && replica.contains(&"type"), "{replica:?}");
        assert!(fields(Section::Root).contains(&"dbs"));
        let follow = fields(Section::Follow);
        assert!(follow.contains(&"poll-interval") && follow.contains(&"endpoint"), "{follow:?}");
        assert_eq!(follow.iter().filter(|k| **k == "path").count(), 1, "{follow:?}");
    }

    #[test]
    fn nearest_known_key() {
        let known = fields(Section::Replica);
        assert_eq!(nearest("forcePathStyle", known), Some("force-path-style"));
        assert_eq!(nearest("access_key_id", known), Some("access-key-id"));
        assert_eq!(nearest("retension", known), Some("retention"));
        assert_eq!(nearest("completely-different", known), None);
    }
}
