use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Parser;
use litecar::cli::{Cli, Command};
use litecar::commands::{self, RestoreOutcome};
use litecar::config::{self, Config, DbConfig, ReplicaConfig, Settings};
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
        Command::Replicate { config, exec, trace, args } => {
            let (settings, loaded) = if args.is_empty() {
                let (loaded, source) = commands::load_config_quiet(&config)?;
                let loaded = loaded.with_context(|| {
                    format!("no config file at {} and no DB_PATH REPLICA_URL arguments", source.path().display())
                })?;
                (loaded.settings.clone(), Some((loaded, source)))
            } else {
                (settings_from_args(&args)?, None)
            };
            run_daemon(settings, loaded, exec, true, trace.as_deref(), vec![]).await
        }
        Command::Ingest { config } => {
            let (loaded, source) = commands::load_config_quiet(&config)?;
            let loaded = loaded.with_context(|| format!("no config file at {}", source.path().display()))?;
            if loaded.settings.watchcache.is_none() {
                bail!("config file {}: no watchcache: section", source.path().display());
            }
            run_daemon(loaded.settings.clone(), Some((loaded, source)), None, false, None, vec![]).await
        }
        Command::Serve { config } => {
            let (loaded, source) = commands::load_config_quiet(&config)?;
            let loaded = loaded.with_context(|| format!("no config file at {}", source.path().display()))?;
            if loaded.settings.rest.is_none() {
                bail!("config file {}: no enabled rest: section to serve", source.path().display());
            }
            run_daemon(loaded.settings.clone(), Some((loaded, source)), None, false, None, vec![]).await
        }
        Command::Follow(args) => {
            let (loaded, source) = commands::load_config_quiet(&args.config)?;
            let settings = match &loaded {
                Some(l) => l.settings.clone(),
                None => config::parse_config(&config::Config::default())
                    .map_err(|p| anyhow::anyhow!("{}: {}", p.key, p.message))?,
            };
            let follows = litecar::follow::plan(&args, loaded.as_ref().map(|l| &l.settings), source.path()).await?;
            run_daemon(settings, loaded.map(|l| (l, source)), None, false, None, follows).await
        }
        Command::Restore(args) => {
            logging::init(logging::Options { verbose: args.verbose, ..Default::default() })?;
            match commands::restore(args).await? {
                RestoreOutcome::Restored => Ok(0),
                RestoreOutcome::Skipped(why) => {
                    eprintln!("{why}");
                    Ok(0)
                }
            }
        }
        Command::Generations(args) => {
            early_logging(None)?;
            commands::generations(args).await.map(|()| 0)
        }
        Command::Snapshots(args) => {
            early_logging(None)?;
            commands::snapshots(args).await.map(|()| 0)
        }
        Command::Wal(args) => {
            early_logging(None)?;
            commands::wal(args).await.map(|()| 0)
        }
        Command::Databases { config } => {
            early_logging(None)?;
            commands::databases(config).map(|()| 0)
        }
    }
}

/// Logging for the one-shot commands, which have no `logging:` of their own.
fn early_logging(trace: Option<&std::path::Path>) -> Result<()> {
    logging::init(logging::Options { trace, ..Default::default() })
}

/// Replication (when `replicate`), the REST API and the metrics endpoint, as the config asks.
async fn run_daemon(
    settings: Settings,
    loaded: Option<(config::Loaded, commands::ConfigSource)>,
    exec: Option<String>,
    replicate: bool,
    trace: Option<&std::path::Path>,
    follows: Vec<litecar_replicate::follow::FollowOptions>,
) -> Result<i32> {
    logging::init(logging::Options { config: settings.logging.as_ref(), trace, ..Default::default() })?;
    if let Some((loaded, source)) = &loaded {
        commands::report(loaded, source);
    }
    if replicate && settings.dbs.is_empty() {
        tracing::warn!("no databases to replicate; running idle (metrics and health only) until stopped");
    }
    let shutdown_timeout = settings.shutdown_timeout;
    let mut dbs = vec![];
    for db in settings.dbs.iter().filter(|_| replicate) {
        let mut reps = vec![];
        for r in &db.replicas {
            reps.push(replicas::replica_options(r).await.with_context(|| format!("database {}", db.path.display()))?);
        }
        dbs.push((replicas::db_options(db, shutdown_timeout), reps));
    }
    let exec = exec.or(settings.exec.clone());
    let addr = settings.addr.as_deref().map(http::parse_addr).transpose()?;
    let metrics = Metrics::new().context("setting up metrics")?;
    let mut rest = settings.rest.as_ref().map(rest::plan).transpose()?;
    if let Some(r) = rest.as_mut().filter(|r| follows.iter().any(|f| f.path == r.options.db_path)) {
        // A follower's copy takes no writes but the follower's own.
        r.options.read_only = true;
    }
    let watchcache = settings.watchcache.as_ref().map(litecar::watchcache::plan);
    let validations = if replicate { litecar::validate::tasks(&settings).await? } else { vec![] };
    let validation_stop = tokio_util::sync::CancellationToken::new();
    let mut validating = tokio::task::JoinSet::new();
    if !validations.is_empty() {
        let counters = litecar::validate::Counters::register(&metrics.registry).context("setting up metrics")?;
        for task in validations {
            validating.spawn(litecar::validate::run(task, counters.clone(), validation_stop.clone()));
        }
    }
    let code =
        supervisor::run(supervisor::Plan { dbs, follows, exec, shutdown_timeout, addr, metrics, rest, watchcache })
            .await;
    validation_stop.cancel();
    while validating.join_next().await.is_some() {}
    code
}

/// `replicate DB_PATH REPLICA_URL...` without a config file.
fn settings_from_args(args: &[String]) -> Result<Settings> {
    let [db, urls @ ..] = args else { bail!("expected DB_PATH REPLICA_URL...") };
    if urls.is_empty() {
        bail!("replicate {db}: give at least one replica URL after the database path");
    }
    let config = Config {
        dbs: vec![DbConfig {
            path: Some(db.clone()),
            replicas: urls.iter().map(|u| ReplicaConfig { url: Some(u.clone()), ..Default::default() }).collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    config::parse_config(&config).map_err(|p| anyhow::anyhow!("replicate {db}: {}: {}", p.key, p.message))
}
