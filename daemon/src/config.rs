//! The YAML configuration file: Litestream 0.3's keys, plus litecar's own. Unknown keys and bad values are errors
//! that name the file, the key and the line.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const DEFAULT_CONFIG_PATH: &str = "/etc/litecar.yml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: {key}: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Address of the metrics and health endpoints, such as `:9090`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<LoggingConfig>,
    /// Command to run as a child process; replication stops when it exits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    /// Default credentials for every replica (Litestream's global keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    /// litecar: how long a shutdown may take for the final sync and uploads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<GoDuration>,
    #[serde(default)]
    pub dbs: Vec<DbConfig>,
    /// litecar: the REST table API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rest: Option<RestConfig>,
    /// litecar: fill a database from the Kubernetes API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watchcache: Option<WatchcacheConfig>,
    /// litecar: read replicas that `litecar follow` keeps up to date.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub follow: Vec<crate::follow::FollowConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatchcacheConfig {
    /// The database to fill (`:memory:` works too).
    pub db: String,
    /// A kubeconfig file; default: in-cluster service account, else $KUBECONFIG / ~/.kube/config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    pub resources: Vec<WatchResource>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WatchResource {
    /// API group; empty or absent for the core group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub version: String,
    pub kind: String,
    /// URL plural, for kinds whose plural is irregular.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plural: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_selector: Option<String>,
    /// More indexed fields (JSON paths such as `spec.nodeName`) for filters and sorting.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Keep Secrets' data (stripped by default).
    #[serde(default)]
    pub keep_secret_data: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestConfig {
    /// Serve the API (default true when the section is present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Listen address, `:8080` style; default `:8080`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// The database to serve; default the only entry of `dbs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<String>,
    #[serde(default)]
    pub allowed_tables: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_unfiltered_writes: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_connections: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rows: Option<usize>,
    /// Serve reads only; writes answer 405. Always on when `db` is one of the `follow:` read replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// `none` (loopback only) or a JWT mapping; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSetting>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AuthSetting {
    /// The word `none`.
    Keyword(String),
    Jwt(Box<JwtConfig>),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JwtConfig {
    /// HS256/384/512 shared secret, from a mounted file or an environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_env: Option<String>,
    /// RS*/PS*/ES*/EdDSA public key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_public_key_file: Option<String>,
    /// A JWKS document; keys are chosen by `kid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leeway: Option<GoDuration>,
    /// The claim that names the role; default `role`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_claim: Option<String>,
    /// Role name -> what it may do. Without roles, any valid token may read and write every allowed table.
    #[serde(default)]
    pub roles: std::collections::BTreeMap<String, RoleConfig>,
    /// Role of tokens without the role claim; without it they are refused (403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_role: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RoleConfig {
    #[serde(default)]
    pub read_only: bool,
    /// Tables this role may use (default: all allowed tables).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LoggingConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<LogFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DbConfig {
    pub path: String,
    /// Accepted for Litestream compatibility; litecar keeps its state in `.<name>-litecar` next to the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_checkpoint_page_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_checkpoint_page_count: Option<u64>,
    #[serde(default)]
    pub replicas: Vec<ReplicaConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ReplicaConfig {
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_check_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_interval: Option<GoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key: Option<String>,
    /// litecar: credentials from mounted secret files (the file's content, trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_key_file: Option<String>,
    /// litecar: an Azure SAS token (or set AZURE_STORAGE_SAS_TOKEN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sas_token: Option<String>,
}

impl ReplicaConfig {
    /// The replica's name: its `name`, else its type, as Litestream names them.
    pub fn display_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        if let Some(k) = &self.kind {
            return k.clone();
        }
        match self.url.as_deref().and_then(|u| u.split_once("://")) {
            Some((scheme, _)) => scheme.to_owned(),
            None => "file".to_owned(),
        }
    }
}

/// A duration in Go's syntax (`1s`, `500ms`, `1h30m`, `1.5h`), as Litestream configs spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoDuration(pub Duration);

impl GoDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "0" {
            return Ok(Self(Duration::ZERO));
        }
        if s.is_empty() {
            return Err("empty duration".into());
        }
        let mut total = 0f64;
        let mut rest = s;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
            if num_len == 0 {
                return Err(format!("invalid duration {s:?}: expected a number at {rest:?}"));
            }
            let value: f64 = rest[..num_len].parse().map_err(|_| format!("invalid duration {s:?}"))?;
            rest = &rest[num_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let seconds = match &rest[..unit_len] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "" => {
                    return Err(format!("invalid duration {s:?}: missing unit (ns, us, ms, s, m, h)"));
                }
                u => {
                    return Err(format!("invalid duration {s:?}: unknown unit {u:?} (ns, us, ms, s, m, h)"));
                }
            };
            total += value * seconds;
            rest = &rest[unit_len..];
        }
        Ok(Self(Duration::from_secs_f64(total)))
    }
}

impl fmt::Display for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms.is_multiple_of(3_600_000) && ms > 0 {
            write!(f, "{}h", ms / 3_600_000)
        } else if ms.is_multiple_of(60_000) && ms > 0 {
            write!(f, "{}m", ms / 60_000)
        } else if ms.is_multiple_of(1000) {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GoDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Replace `$VAR` and `${VAR}` with the environment's values (unset variables become empty, as in Litestream).
pub fn expand_env(input: &str) -> String {
    expand_with(input, |name| std::env::var(name).ok())
}

pub fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let rest = &input[i + 1..];
        if let Some(body) = rest.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            out.push_str(&lookup(&body[..end]).unwrap_or_default());
            for _ in 0..end + 2 {
                chars.next();
            }
            continue;
        }
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
            out.push('$');
            continue;
        }
        out.push_str(&lookup(&rest[..len]).unwrap_or_default());
        for _ in 0..len {
            chars.next();
        }
    }
    out
}

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path, expand: bool) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text, expand)
    }

    pub fn parse(path: &Path, text: &str, expand: bool) -> Result<Self, ConfigError> {
        let text = if expand { expand_env(text) } else { text.to_owned() };
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            serde_saphyr::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.to_owned(),
                message: e.to_string().trim_start_matches("error: ").to_owned(),
            })?
        };
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: String, message: String| ConfigError::Invalid { path: path.to_owned(), key, message };
        if let Some(level) = self.logging.as_ref().and_then(|l| l.level.as_deref())
            && !["trace", "debug", "info", "warn", "error"].contains(&level.to_ascii_lowercase().as_str())
        {
            return Err(invalid(
                "logging.level".into(),
                format!("unknown level {level:?} (trace, debug, info, warn, error)"),
            ));
        }
        if let Some(rest) = &self.rest {
            match &rest.auth {
                None => {
                    return Err(invalid(
                        "rest.auth".into(),
                        "required: a JWT key (jwt-secret-file, jwt-secret-env, jwt-public-key-file or jwks-file), \
                         or `none` on a loopback address"
                            .into(),
                    ));
                }
                Some(AuthSetting::Keyword(k)) if k != "none" => {
                    return Err(invalid("rest.auth".into(), format!("{k:?} is not `none` or a JWT mapping")));
                }
                Some(AuthSetting::Jwt(j)) => {
                    let keys = [&j.jwt_secret_file, &j.jwt_secret_env, &j.jwt_public_key_file, &j.jwks_file];
                    if keys.iter().filter(|k| k.is_some()).count() != 1 {
                        return Err(invalid(
                            "rest.auth".into(),
                            "set exactly one of jwt-secret-file, jwt-secret-env, jwt-public-key-file, jwks-file".into(),
                        ));
                    }
                    for (name, role) in &j.roles {
                        for t in role.tables.iter().flatten() {
                            if !rest.allowed_tables.contains(t) {
                                return Err(invalid(
                                    format!("rest.auth.roles.{name}.tables"),
                                    format!("{t} is not in rest.allowed-tables"),
                                ));
                            }
                        }
                    }
                }
                _ => {}
            }
            if rest.db.is_none() && self.dbs.len() + self.follow.len() != 1 {
                return Err(invalid("rest.db".into(), "required unless exactly one database is configured".into()));
            }
        }
        if let Some(wc) = &self.watchcache {
            if wc.resources.is_empty() {
                return Err(invalid(
                    "watchcache.resources".into(),
                    "list at least one resource (version and kind)".into(),
                ));
            }
            for (i, r) in wc.resources.iter().enumerate() {
                if r.version.is_empty() || r.kind.is_empty() {
                    return Err(invalid(format!("watchcache.resources[{i}]"), "needs a version and a kind".into()));
                }
            }
        }
        crate::follow::validate(&self.follow, &self.dbs).map_err(|(key, message)| invalid(key, message))?;
        let mut seen = std::collections::HashSet::new();
        for (i, db) in self.dbs.iter().enumerate() {
            if db.path.trim().is_empty() {
                return Err(invalid(format!("dbs[{i}].path"), "must not be empty".into()));
            }
            if !seen.insert(db.path.clone()) {
                return Err(invalid(format!("dbs[{i}].path"), format!("{} is listed twice", db.path)));
            }
            if let (Some(min), Some(max)) = (db.min_checkpoint_page_count, db.max_checkpoint_page_count)
                && min > max
            {
                return Err(invalid(
                    format!("dbs[{i}].min-checkpoint-page-count"),
                    format!("{min} is larger than max-checkpoint-page-count {max}"),
                ));
            }
            let mut names = std::collections::HashSet::new();
            for (j, r) in db.replicas.iter().enumerate() {
                let key = format!("dbs[{i}].replicas[{j}]");
                if r.url.is_some() && (r.path.is_some() || r.bucket.is_some()) {
                    return Err(invalid(key, "set either url, or type with path/bucket, not both".into()));
                }
                if r.url.is_none() && r.path.is_none() && r.bucket.is_none() {
                    return Err(invalid(key, "needs a url, or a type with a path".into()));
                }
                if let Some(kind) = &r.kind
                    && !["file", "s3", "abs", "gcs"].contains(&kind.as_str())
                {
                    return Err(invalid(
                        format!("{key}.type"),
                        format!("unknown replica type {kind:?} (file, s3, abs, gcs)"),
                    ));
                }
                if !names.insert(r.display_name()) {
                    return Err(invalid(
                        format!("{key}.name"),
                        format!("replica name {:?} is used twice; give each replica a distinct name", r.display_name()),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The database entry for `path`, matched after making both absolute.
    pub fn find_db(&self, path: &Path) -> Option<&DbConfig> {
        let want = absolute(path);
        self.dbs.iter().find(|d| absolute(Path::new(&d.path)) == want)
    }
}

pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(GoDuration::parse("1s"), Ok(GoDuration(Duration::from_secs(1))));
        assert_eq!(GoDuration::parse("1h30m"), Ok(GoDuration(Duration::from_secs(5400))));
        assert_eq!(GoDuration::parse("500ms"), Ok(GoDuration(Duration::from_millis(500))));
        assert_eq!(GoDuration::parse("1.5h"), Ok(GoDuration(Duration::from_secs(5400))));
        assert_eq!(GoDuration::parse("0"), Ok(GoDuration(Duration::ZERO)));
        assert!(GoDuration::parse("10").expect_err("no unit").contains("missing unit"));
        assert!(GoDuration::parse("3 days").is_err());
        assert!(GoDuration::parse("1d").expect_err("days").contains("unknown unit"));
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| match k {
            "A" => Some("x".to_owned()),
            "B_2" => Some("y".to_owned()),
            _ => None,
        };
        assert_eq!(expand_with("$A ${B_2} $MISSING-${A}", env), "x y -x");
        assert_eq!(expand_with("cost $5 and $ alone", env), "cost $5 and $ alone");
    }

    #[test]
    fn litestream_config_loads() {
        let text = "
addr: \":9090\"
dbs:
  - path: /data/app.db
    monitor-interval: 1s
    checkpoint-interval: 1m
    min-checkpoint-page-count: 1000
    max-checkpoint-page-count: 10000
    replicas:
      - url: file:///backup/app
        sync-interval: 0s
        retention: 24h
      - type: file
        name: second
        path: /backup/two
";
        let c = Config::parse(Path::new("t.yml"), text, false).expect("valid config");
        assert_eq!(c.dbs[0].replicas.len(), 2);
        assert_eq!(c.dbs[0].replicas[0].retention, Some(GoDuration(Duration::from_secs(86400))));
        assert_eq!(c.dbs[0].replicas[0].display_name(), "file");
        assert_eq!(c.dbs[0].replicas[1].display_name(), "second");
    }

    #[test]
    fn errors_name_key_and_line() {
        let text = "dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///b\n        retention: 3 days\n";
        let err = Config::parse(Path::new("/etc/litecar.yml"), text, false).expect_err("bad duration").to_string();
        assert!(err.contains("/etc/litecar.yml"), "{err}");
        assert!(err.contains("line 5") || err.contains(":5:") || err.contains("5:"), "{err}");
        assert!(err.contains("3 days"), "{err}");

        let text = "dbs:\n  - path: /a.db\n    replicass: []\n";
        let err = Config::parse(Path::new("c.yml"), text, false).expect_err("unknown key").to_string();
        assert!(err.contains("replicass"), "{err}");
        assert!(err.contains('3'), "{err}");

        let text = "dbs:\n  - path: /a.db\n    replicas:\n      - name: x\n";
        let err = Config::parse(Path::new("c.yml"), text, false).expect_err("no url").to_string();
        assert!(err.contains("dbs[0].replicas[0]"), "{err}");
    }
}
