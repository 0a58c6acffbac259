use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use litecar::cli::{Cli, Command};
use litecar::commands::{self, RestoreOutcome};
use litecar::config::{Config, DbConfig, ReplicaConfig};
use litecar::metrics::Metrics;
use litecar::{http, logging, replicas, rest, supervisor};

fn main() -> ExitCode {
    let cli = Cli::parse_from(litecar::cli::normalize_args(std::env::args_os()));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each said once: the library's errors already quote their sources.
fn describe(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if line.ends_with(&cause) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&cause);
    }
    line
}

async fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Command::Version => {
            println!("litecar {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
        Command::Replicate { config, exec, args } => {
            let (config_file, config_path) = if args.is_empty() {
                let (c, p) = commands::load_config(&config)?;
                let c = c.with_context(|| {
                    format!("no config file at {} and no DB_PATH REPLICA_URL arguments", p.display())
                })?;
                (c, Some(p))
            } else {
                (config_from_args(&args)?, None)
            };
            if config_file.dbs.is_empty() {
                bail!(
                    "no databases to replicate in {}",
                    config_path.map(|p| p.display().to_string()).unwrap_or_default()
                );
            }
            run_daemon(config_file, exec, true).await
        }
        Command::Ingest { config } => {
            let (config_file, path) = commands::load_config(&config)?;
            let config_file = config_file.with_context(|| format!("no config file at {}", path.display()))?;
            if config_file.watchcache.is_none() {
                bail!("config file {}: no watchcache: section", path.display());
            }
            run_daemon(config_file, None, false).await
        }
        Command::Serve { config } => {
            let (config_file, path) = commands::load_config(&config)?;
            let config_file = config_file.with_context(|| format!("no config file at {}", path.display()))?;
            if config_file.rest.as_ref().is_none_or(|r| r.enabled == Some(false)) {
                bail!("config file {}: no enabled rest: section to serve", path.display());
            }
            run_daemon(config_file, None, false).await
        }
        Command::Follow(args) => {
            let (config_file, path) = commands::load_config(&args.config)?;
            let follows = litecar::follow::plan(&args, config_file.as_ref(), &path)?;
            let config_file = config_file.unwrap_or_default();
            run_plan(config_file, None, vec![], follows).await
        }
        Command::Restore(args) => {
            logging::init(None);
            match commands::restore(args).await? {
                RestoreOutcome::Restored => Ok(0),
                RestoreOutcome::Skipped(why) => {
                    eprintln!("{why}");
                    Ok(0)
                }
            }
        }
        Command::Generations(args) => commands::generations(args).await.map(|()| 0),
        Command::Snapshots(args) => commands::snapshots(args).await.map(|()| 0),
        Command::Wal(args) => commands::wal(args).await.map(|()| 0),
        Command::Databases { config } => commands::databases(config).map(|()| 0),
    }
}

/// Replication (when `replicate`), the REST API and the metrics endpoint, as the config asks.
async fn run_daemon(config_file: Config, exec: Option<String>, replicate: bool) -> Result<i32> {
    let shutdown_timeout = config_file.shutdown_timeout.map(|g| g.0).unwrap_or(replicas::DEFAULT_SHUTDOWN_TIMEOUT);
    let mut dbs = vec![];
    for db in config_file.dbs.iter().filter(|_| replicate) {
        let reps = db
            .replicas
            .iter()
            .map(|r| replicas::replica_options(r, Some(&config_file)))
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("database {}", db.path))?;
        if reps.is_empty() {
            bail!("database {} has no replicas", db.path);
        }
        dbs.push((replicas::db_options(db, shutdown_timeout), reps));
    }
    run_plan(config_file, exec, dbs, vec![]).await
}

/// Run the supervisor over replicators, followers, the REST API and the metrics endpoint.
async fn run_plan(
    config_file: Config,
    exec: Option<String>,
    dbs: Vec<(litecar_replicate::replicator::DbOptions, Vec<litecar_replicate::replicator::ReplicaOptions>)>,
    follows: Vec<litecar_replicate::follow::FollowOptions>,
) -> Result<i32> {
    logging::init(config_file.logging.as_ref());
    let shutdown_timeout = config_file.shutdown_timeout.map(|g| g.0).unwrap_or(replicas::DEFAULT_SHUTDOWN_TIMEOUT);
    let exec = exec.or(config_file.exec.clone());
    let addr = config_file.addr.as_deref().filter(|a| !a.is_empty()).map(http::parse_addr).transpose()?;
    let metrics = Metrics::new().context("setting up metrics")?;
    let mut rest = rest::plan(&config_file)?;
    if let Some(r) = rest.as_mut().filter(|r| follows.iter().any(|f| f.path == r.options.db_path)) {
        // A follower's copy takes no writes but the follower's own.
        r.options.read_only = true;
    }
    let watchcache = config_file.watchcache.as_ref().map(litecar::watchcache::plan);
    supervisor::run(supervisor::Plan { dbs, follows, exec, shutdown_timeout, addr, metrics, rest, watchcache }).await
}

/// `replicate DB_PATH REPLICA_URL...` without a config file.
fn config_from_args(args: &[String]) -> Result<Config> {
    let [db, urls @ ..] = args else { bail!("expected DB_PATH REPLICA_URL...") };
    if urls.is_empty() {
        bail!("replicate {db}: give at least one replica URL after the database path");
    }
    let db_path = PathBuf::from(db);
    Ok(Config {
        dbs: vec![DbConfig {
            path: db_path.display().to_string(),
            replicas: urls.iter().map(|u| ReplicaConfig { url: Some(u.clone()), ..Default::default() }).collect(),
            ..Default::default()
        }],
        ..Default::default()
    })
}
