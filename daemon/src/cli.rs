//! Command line: Litestream 0.3's verbs and flags. Litestream spells long flags with one dash (`-config`); both
//! spellings are accepted.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "litecar", version, about = "SQLite replication sidecar; a drop-in for Litestream 0.3")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArgs {
    /// Config file (default: $LITECAR_CONFIG, else $LITESTREAM_CONFIG, else /etc/litecar.yml, else
    /// /etc/litestream.yml).
    #[arg(long = "config", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Do not expand $VAR and ${VAR} in the config file.
    #[arg(long = "no-expand-env")]
    pub no_expand_env: bool,
    /// Unknown keys in the config file are errors, not warnings (for linting configs in CI).
    #[arg(long = "strict")]
    pub strict: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Replicate databases continuously, from the config file or from DB_PATH REPLICA_URL... arguments.
    Replicate {
        #[command(flatten)]
        config: ConfigArgs,
        /// Run this command as a child process; replication stops when it exits and its exit code is returned.
        #[arg(long = "exec", value_name = "CMD")]
        exec: Option<String>,
        /// Also write a debug-level log to this file (Litestream's trace output).
        #[arg(long = "trace", value_name = "PATH")]
        trace: Option<PathBuf>,
        /// Database path followed by one or more replica URLs (instead of a config file).
        #[arg(value_name = "DB_PATH REPLICA_URL")]
        args: Vec<String>,
    },
    /// Fill the config's `watchcache:` database from the Kubernetes API (and serve it under /k8s on the REST
    /// listener if there is a `rest:` section), without replicating.
    Ingest {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Serve the REST table API of the config's `rest:` section, without replicating.
    Serve {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Keep read-only copies of databases up to date from their replicas (a URL and -o, or the config's `follow:`
    /// list), until SIGTERM.
    Follow(FollowArgs),
    /// Restore a database from a replica.
    Restore(RestoreArgs),
    /// List the generations of a database's replicas.
    Generations(ListArgs),
    /// List snapshots.
    Snapshots(ListArgs),
    /// List WAL segments.
    Wal(ListArgs),
    /// List the databases in the config file.
    Databases {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Output path (default: the database path).
    #[arg(short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Restore from this replica only.
    #[arg(long = "replica", value_name = "NAME")]
    pub replica: Option<String>,
    /// Restore from this generation.
    #[arg(long = "generation", value_name = "G")]
    pub generation: Option<String>,
    /// Restore up to and including this WAL index (hex).
    #[arg(long = "index", value_name = "HEX")]
    pub index: Option<String>,
    /// Restore the state as of this time (RFC 3339, any offset).
    #[arg(long = "timestamp", value_name = "RFC3339")]
    pub timestamp: Option<String>,
    /// Downloads in flight at once.
    #[arg(long = "parallelism", value_name = "N", default_value_t = 8)]
    pub parallelism: usize,
    /// Do nothing (and succeed) if the output database already exists.
    #[arg(long = "if-db-not-exists")]
    pub if_db_not_exists: bool,
    /// Do nothing (and succeed) if no backup exists.
    #[arg(long = "if-replica-exists")]
    pub if_replica_exists: bool,
    /// Verbose output: debug-level logging of what is downloaded and applied.
    #[arg(short = 'v')]
    pub verbose: bool,
    /// Run the full `PRAGMA integrity_check` instead of `quick_check` on the result.
    #[arg(long = "integrity-check")]
    pub integrity_check: bool,
    /// Database path (looked up in the config) or replica URL.
    #[arg(value_name = "DB_PATH|REPLICA_URL")]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct FollowArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The follower's database (required with REPLICA_URL).
    #[arg(short = 'o', value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// How often to ask an object store for new segments (Go duration; default 1s). File replicas are watched.
    #[arg(long = "poll-interval", value_name = "DURATION")]
    pub poll_interval: Option<String>,
    /// Replica to follow (instead of the config file's `follow:` list).
    #[arg(value_name = "REPLICA_URL")]
    pub url: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Only this replica.
    #[arg(long = "replica", value_name = "NAME")]
    pub replica: Option<String>,
    /// Only this generation.
    #[arg(long = "generation", value_name = "G")]
    pub generation: Option<String>,
    /// Database path (looked up in the config) or replica URL.
    #[arg(value_name = "DB_PATH|REPLICA_URL")]
    pub target: String,
}

const LONG_FLAGS: &[&str] = &[
    "config",
    "no-expand-env",
    "strict",
    "exec",
    "trace",
    "replica",
    "generation",
    "index",
    "timestamp",
    "parallelism",
    "if-db-not-exists",
    "if-replica-exists",
    "integrity-check",
    "poll-interval",
    "help",
    "version",
];

/// Rewrite Litestream's `-flag` and `-flag=value` spellings of long flags as `--flag`.
pub fn normalize_args(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut out = vec![];
    let mut rest_are_values = false;
    for a in args {
        if rest_are_values {
            out.push(a);
            continue;
        }
        let Some(s) = a.to_str() else {
            out.push(a);
            continue;
        };
        if s == "--" {
            rest_are_values = true;
            out.push(a);
            continue;
        }
        if let Some(body) = s.strip_prefix('-').filter(|b| !b.starts_with('-')) {
            let name = body.split_once('=').map_or(body, |(n, _)| n);
            if LONG_FLAGS.contains(&name) {
                out.push(OsString::from(format!("-{s}")));
                continue;
            }
        }
        out.push(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(normalize_args(args.iter().map(OsString::from))).expect("parses")
    }

    #[test]
    fn litestream_single_dash_flags() {
        let cli = parse(&[
            "litecar",
            "restore",
            "-config",
            "/c.yml",
            "-o",
            "/out.db",
            "-if-db-not-exists",
            "-index=1f",
            "/data/app.db",
        ]);
        let Command::Restore(r) = cli.command else { panic!("restore") };
        assert_eq!(r.config.config, Some(PathBuf::from("/c.yml")));
        assert_eq!(r.output, Some(PathBuf::from("/out.db")));
        assert!(r.if_db_not_exists);
        assert_eq!(r.index.as_deref(), Some("1f"));
        assert_eq!(r.target, "/data/app.db");
    }

    #[test]
    fn kubernetes_guide_args_and_litestream_only_flags() {
        let cli = parse(&["litecar", "restore", "-if-db-not-exists", "-if-replica-exists", "-v", "/var/lib/myapp/db"]);
        let Command::Restore(r) = cli.command else { panic!("restore") };
        assert!(r.if_db_not_exists && r.if_replica_exists && r.verbose);
        assert_eq!((r.config.config, r.target.as_str()), (None, "/var/lib/myapp/db"));
        let cli = parse(&["litecar", "replicate", "-trace", "/tmp/trace.log", "-strict"]);
        let Command::Replicate { trace, config, .. } = cli.command else { panic!("replicate") };
        assert_eq!(trace, Some(PathBuf::from("/tmp/trace.log")));
        assert!(config.strict);
    }

    #[test]
    fn follow_takes_litestream_spellings() {
        let cli =
            parse(&["litecar", "follow", "-config", "/c.yml", "-o", "/r.db", "-poll-interval=250ms", "s3://b/app"]);
        let Command::Follow(f) = cli.command else { panic!("follow") };
        assert_eq!(f.config.config, Some(PathBuf::from("/c.yml")));
        assert_eq!(f.output, Some(PathBuf::from("/r.db")));
        assert_eq!(f.poll_interval.as_deref(), Some("250ms"));
        assert_eq!(f.url.as_deref(), Some("s3://b/app"));
        let Command::Follow(f) = parse(&["litecar", "follow"]).command else { panic!("follow") };
        assert!(f.url.is_none() && f.output.is_none());
    }

    #[test]
    fn replicate_with_arguments_and_exec() {
        let cli = parse(&["litecar", "replicate", "-exec", "myapp --port 80", "a.db", "file:///r"]);
        let Command::Replicate { exec, args, .. } = cli.command else { panic!("replicate") };
        assert_eq!(exec.as_deref(), Some("myapp --port 80"));
        assert_eq!(args, ["a.db", "file:///r"]);
    }
}
