//! `litecar follow`: the config's `follow:` list (or a replica URL and `-o`) turned into followers.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use litecar_replicate::follow::{DEFAULT_POLL_INTERVAL, FollowOptions};
use serde::{Deserialize, Serialize};

use crate::cli::FollowArgs;
use crate::config::{Config, DbConfig, GoDuration, ReplicaConfig};
use crate::replicas;

/// One entry of `follow:`: the follower's database and the replica it follows, written with the keys of
/// `dbs[].replicas` (`url`, or `type` with `bucket` and `replica-path`, credentials, endpoint, ...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FollowConfig {
    /// The follower's database: a read-only copy that litecar keeps up to date.
    pub path: String,
    /// How often to ask an object store for new segments; default 1s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval: Option<GoDuration>,
    /// The replica's path inside its bucket or directory, for replicas given by `type` rather than `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_path: Option<String>,
    #[serde(flatten)]
    pub replica: ReplicaConfig,
}

impl FollowConfig {
    fn replica_config(&self) -> ReplicaConfig {
        ReplicaConfig { path: self.replica_path.clone(), ..self.replica.clone() }
    }
}

/// Check the `follow:` list; the error names the key at fault.
pub fn validate(follow: &[FollowConfig], dbs: &[DbConfig]) -> Result<(), (String, String)> {
    let mut seen = std::collections::HashSet::new();
    for (i, f) in follow.iter().enumerate() {
        let key = |k: &str| format!("follow[{i}].{k}");
        if f.path.trim().is_empty() {
            return Err((key("path"), "must not be empty: the follower's database".into()));
        }
        if !seen.insert(f.path.clone()) {
            return Err((key("path"), format!("{} is listed twice", f.path)));
        }
        if dbs.iter().any(|d| d.path == f.path) {
            return Err((
                key("path"),
                format!("{} is also in dbs: a database is either replicated or a follower", f.path),
            ));
        }
        let r = f.replica_config();
        if r.url.is_some() && (r.path.is_some() || r.bucket.is_some()) {
            return Err((key("url"), "set either url, or type with bucket/replica-path, not both".into()));
        }
        if r.url.is_none() && r.path.is_none() && r.bucket.is_none() {
            return Err((key("url"), "required: the replica to follow (or type with bucket/replica-path)".into()));
        }
        if let Some(kind) = &r.kind
            && !["file", "s3", "abs", "gcs"].contains(&kind.as_str())
        {
            return Err((key("type"), format!("unknown replica type {kind:?} (file, s3, abs, gcs)")));
        }
        if f.poll_interval.is_some_and(|p| p.0.is_zero()) {
            return Err((key("poll-interval"), "must be more than 0".into()));
        }
    }
    Ok(())
}

/// The followers to run: the URL and `-o` of the command line, else the config's `follow:` list.
pub fn plan(args: &FollowArgs, config: Option<&Config>, config_path: &Path) -> Result<Vec<FollowOptions>> {
    let cli_interval = args
        .poll_interval
        .as_deref()
        .map(|s| GoDuration::parse(s).map(|g| g.0).map_err(anyhow::Error::msg).context("-poll-interval"))
        .transpose()?;
    if cli_interval.is_some_and(|d| d.is_zero()) {
        bail!("-poll-interval: must be more than 0");
    }
    if let Some(url) = &args.url {
        let Some(output) = &args.output else { bail!("following {url} needs the follower's database path: -o PATH") };
        let replica = replicas::from_url(url)?;
        return Ok(vec![FollowOptions {
            path: output.clone(),
            replica,
            poll_interval: cli_interval.unwrap_or(DEFAULT_POLL_INTERVAL),
        }]);
    }
    if args.output.is_some() {
        bail!("-o needs a REPLICA_URL to follow; the config's follow: list names its own paths");
    }
    let entries = config.map(|c| c.follow.as_slice()).unwrap_or_default();
    if entries.is_empty() {
        bail!("nothing to follow: give REPLICA_URL -o PATH, or list follow: entries in {}", config_path.display());
    }
    entries
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let replica = replicas::from_config(&f.replica_config(), config)
                .with_context(|| format!("config file {}: follow[{i}]", config_path.display()))?;
            let interval: Option<Duration> = f.poll_interval.map(|g| g.0);
            Ok(FollowOptions {
                path: PathBuf::from(&f.path),
                replica,
                poll_interval: cli_interval.or(interval).unwrap_or(DEFAULT_POLL_INTERVAL),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Config, crate::config::ConfigError> {
        Config::parse(Path::new("litecar.yml"), yaml, false)
    }

    #[test]
    fn follow_entries_take_replica_keys_and_a_poll_interval() {
        let c = parse(
            "follow:\n  - path: /data/app.db\n    url: s3://bucket/app\n    endpoint: http://127.0.0.1:9000\n    \
             poll-interval: 250ms\n  - path: /data/b.db\n    type: file\n    replica-path: /backups/b\n",
        )
        .expect("valid");
        assert_eq!(c.follow.len(), 2);
        assert_eq!(c.follow[0].replica.url.as_deref(), Some("s3://bucket/app"));
        assert_eq!(c.follow[0].replica.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(c.follow[0].poll_interval, Some(GoDuration(Duration::from_millis(250))));
        assert_eq!(c.follow[1].replica_config().path.as_deref(), Some("/backups/b"));
        let args = FollowArgs { config: Default::default(), output: None, poll_interval: None, url: None };
        let plans = plan(&args, Some(&c), Path::new("litecar.yml")).expect("plan");
        assert_eq!(plans[0].poll_interval, Duration::from_millis(250));
        assert_eq!(plans[1].replica.describe(), "file (file:///backups/b)");
    }

    #[test]
    fn bad_follow_entries_name_the_key() {
        let cases = [
            ("follow:\n  - path: /a.db\n", "follow[0].url"),
            ("follow:\n  - path: ''\n    url: file:///r\n", "follow[0].path"),
            ("follow:\n  - path: /a.db\n    url: file:///r\n    poll-interval: 0s\n", "follow[0].poll-interval"),
            ("follow:\n  - path: /a.db\n    url: file:///r\n  - path: /a.db\n    url: file:///s\n", "follow[1].path"),
            (
                "dbs:\n  - path: /a.db\n    replicas: [{url: file:///r}]\nfollow:\n  - path: /a.db\n    url: file:///r\n",
                "follow[0].path",
            ),
            ("follow:\n  - path: /a.db\n    type: ftp\n    replica-path: /r\n", "follow[0].type"),
        ];
        for (yaml, key) in cases {
            let e = parse(yaml).expect_err(yaml).to_string();
            assert!(e.contains(key), "{yaml}: {e}");
        }
    }

    #[test]
    fn a_url_needs_an_output_path() {
        let args =
            FollowArgs { config: Default::default(), output: None, poll_interval: None, url: Some("file:///r".into()) };
        let e = plan(&args, None, Path::new("x")).expect_err("no -o").to_string();
        assert!(e.contains("-o PATH"), "{e}");
    }
}
