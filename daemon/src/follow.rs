//! `litecar follow`: the config's `follow:` list (or a replica URL and `-o`) turned into followers.

use anyhow::{Context, Result, bail};
use litecar_replicate::follow::{DEFAULT_POLL_INTERVAL, FollowOptions};

use crate::cli::FollowArgs;
use crate::config::{GoDuration, Settings};
use crate::replicas;

/// The followers to run: the URL and `-o` of the command line, else the config's `follow:` list.
pub async fn plan(
    args: &FollowArgs,
    settings: Option<&Settings>,
    config_path: &std::path::Path,
) -> Result<Vec<FollowOptions>> {
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
        let replica = replicas::connect(&replicas::from_url(url)?).await?;
        return Ok(vec![FollowOptions {
            path: output.clone(),
            replica,
            poll_interval: cli_interval.unwrap_or(DEFAULT_POLL_INTERVAL),
        }]);
    }
    if args.output.is_some() {
        bail!("-o needs a REPLICA_URL to follow; the config's follow: list names its own paths");
    }
    let entries = settings.map(|s| s.follow.as_slice()).unwrap_or_default();
    if entries.is_empty() {
        bail!("nothing to follow: give REPLICA_URL -o PATH, or list follow: entries in {}", config_path.display());
    }
    let mut out = vec![];
    for (i, f) in entries.iter().enumerate() {
        let replica = replicas::connect(&f.replica)
            .await
            .with_context(|| format!("config file {}: follow[{i}]", config_path.display()))?;
        out.push(FollowOptions {
            path: f.path.clone(),
            replica,
            poll_interval: cli_interval.or(f.poll_interval).unwrap_or(DEFAULT_POLL_INTERVAL),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::config::{ConfigError, LoadOptions, Loaded};

    fn parse(yaml: &str) -> Result<Loaded, ConfigError> {
        crate::config::parse(Path::new("litecar.yml"), yaml, LoadOptions::default())
    }

    #[tokio::test]
    async fn follow_entries_take_replica_keys_and_a_poll_interval() {
        let c = parse(
            "follow:\n  - path: /data/app.db\n    url: s3://bucket/app\n    endpoint: http://127.0.0.1:9000\n    \
             region: us-east-1\n    poll-interval: 250ms\n  - path: /data/b.db\n    type: file\n    \
             replica-path: /backups/b\n",
        )
        .expect("valid");
        assert_eq!(c.config.follow.len(), 2);
        assert_eq!(c.config.follow[0].replica.url.as_deref(), Some("s3://bucket/app"));
        assert_eq!(c.settings.follow[0].poll_interval, Some(Duration::from_millis(250)));
        assert_eq!(c.settings.follow[1].path, Path::new("/data/b.db"));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        let args = FollowArgs { config: Default::default(), output: None, poll_interval: None, url: None };
        let plans = plan(&args, Some(&c.settings), Path::new("litecar.yml")).await.expect("plan");
        assert_eq!(plans[0].poll_interval, Duration::from_millis(250));
        assert_eq!(plans[1].poll_interval, DEFAULT_POLL_INTERVAL);
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
    fn unknown_keys_in_follow_entries_warn_with_line_and_nearest_key_and_strict_refuses_them() {
        let text = "follow:\n  - path: /a.db\n    url: s3://b/app\n    pollInterval: 2s\n    forcePathStyle: true\n  \
                    - path: /b.db\n    url: file:///r\n    poll-interval: 1s\n";
        let l = parse(text).expect("accepted with warnings");
        let w = l.warnings.join("\n");
        assert!(w.contains("line 4: unknown key `pollInterval` in follow[0]; did you mean `poll-interval`?"), "{w}");
        assert!(
            w.contains("line 5: unknown key `forcePathStyle` in follow[0]; did you mean `force-path-style`?"),
            "{w}"
        );
        assert_eq!(l.warnings.len(), 2, "known keys of either kind are not reported: {w}");
        let strict =
            crate::config::parse(Path::new("litecar.yml"), text, LoadOptions { strict: true, ..Default::default() });
        let e = strict.expect_err("strict").to_string();
        assert!(e.contains("pollInterval") && e.contains("follow[0]") && e.contains("-strict"), "{e}");
    }

    #[tokio::test]
    async fn a_url_needs_an_output_path() {
        let args =
            FollowArgs { config: Default::default(), output: None, poll_interval: None, url: Some("file:///r".into()) };
        let e = plan(&args, None, Path::new("x")).await.expect_err("no -o").to_string();
        assert!(e.contains("-o PATH"), "{e}");
    }
}
