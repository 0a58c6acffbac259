//! The one-shot commands: restore and the listings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use litecar_replicate::restore::{self, Plan, RestoreOptions, Target};
use litecar_replicate::{Generation, Replica};

use crate::cli::{ConfigArgs, ListArgs, RestoreArgs};
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::replicas;

/// The config path in force: `--config`, else `$LITECAR_CONFIG`, else `/etc/litecar.yml`.
pub fn config_path(args: &ConfigArgs) -> (PathBuf, bool) {
    if let Some(p) = &args.config {
        return (p.clone(), true);
    }
    match std::env::var_os("LITECAR_CONFIG") {
        Some(p) if !p.is_empty() => (PathBuf::from(p), true),
        _ => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    }
}

/// Load the config; a missing default config file is not an error (`None`), a missing explicit one is.
pub fn load_config(args: &ConfigArgs) -> Result<(Option<Config>, PathBuf)> {
    let (path, explicit) = config_path(args);
    if !explicit && !path.exists() {
        return Ok((None, path));
    }
    let config = Config::load(&path, !args.no_expand_env)?;
    Ok((Some(config), path))
}

fn time(t: Option<SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string()).unwrap_or_else(|| "-".into())
}

/// Exit status of a restore that did or did not do anything, for scripts.
pub enum RestoreOutcome {
    Restored,
    Skipped(&'static str),
}

pub async fn restore(args: RestoreArgs) -> Result<RestoreOutcome> {
    let (config, config_path) = load_config(&args.config)?;
    let output = match (&args.output, replicas::is_url(&args.target)) {
        (Some(o), _) => o.clone(),
        (None, false) => PathBuf::from(&args.target),
        (None, true) => bail!("restoring from a replica URL needs an output path: -o PATH"),
    };
    if args.if_db_not_exists && output.exists() {
        return Ok(RestoreOutcome::Skipped("database already exists, skipping"));
    }
    if output.exists() {
        bail!(litecar_replicate::Error::OutputExists { path: output });
    }
    let target = Target {
        generation: args.generation.as_deref().map(Generation::parse).transpose()?,
        index: args
            .index
            .as_deref()
            .map(|s| {
                u32::from_str_radix(s.trim_start_matches("0x"), 16)
                    .with_context(|| format!("--index {s:?} is not a hexadecimal WAL index"))
            })
            .transpose()?,
        timestamp: args.timestamp.as_deref().map(parse_timestamp).transpose()?,
    };
    let replicas = replicas::for_target(&args.target, config.as_ref(), &config_path, args.replica.as_deref())?;
    let Some((replica, plan)) = best_plan(&replicas, &target).await? else {
        if args.if_replica_exists {
            return Ok(RestoreOutcome::Skipped("no matching backups found, skipping"));
        }
        bail!(litecar_replicate::Error::NoBackups(args.target.clone()));
    };
    tracing::info!(
        replica = %replica.describe(), generation = %plan.generation, snapshot = format!("{:08x}", plan.snapshot.index),
        segments = plan.segments.len(), bytes = plan.bytes(), output = %output.display(), "restoring"
    );
    let started = std::time::Instant::now();
    let opts = RestoreOptions {
        output: output.clone(),
        parallelism: args.parallelism,
        full_integrity_check: args.integrity_check,
    };
    let progress = Progress::new(plan.bytes());
    let summary = restore::restore(replica, &plan, &opts, &|n| progress.update(n)).await?;
    progress.finish();
    tracing::info!(
        output = %output.display(), generation = %summary.generation, last_index = format!("{:08x}", summary.last_index),
        bytes = summary.bytes_downloaded, elapsed_ms = started.elapsed().as_millis() as u64, "restore complete"
    );
    Ok(RestoreOutcome::Restored)
}

pub fn parse_timestamp(s: &str) -> Result<SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z').trim_end_matches("+00:00"))
        .or_else(|_| humantime::parse_rfc3339(s))
        .with_context(|| format!("--timestamp {s:?} is not an RFC 3339 UTC time such as 2026-01-02T15:04:05Z"))
}

/// Across replicas, the plan with the newest data (as Litestream picks among replicas).
async fn best_plan<'a>(replicas: &'a [Replica], target: &Target) -> Result<Option<(&'a Replica, Plan)>> {
    let mut best: Option<(&Replica, Plan, SystemTime)> = None;
    for r in replicas {
        let plan = restore::plan(r, target).await.with_context(|| format!("reading replica {}", r.describe()))?;
        if let Some(plan) = plan {
            let updated = plan.updated();
            if best.as_ref().is_none_or(|(_, _, t)| updated > *t) {
                best = Some((r, plan, updated));
            }
        }
    }
    Ok(best.map(|(r, p, _)| (r, p)))
}

fn list_replicas(args: &ListArgs) -> Result<Vec<Replica>> {
    let (config, path) = load_config(&args.config)?;
    replicas::for_target(&args.target, config.as_ref(), &path, args.replica.as_deref())
}

async fn generations_of(r: &Replica, only: Option<&str>) -> Result<Vec<Generation>> {
    let gens = r.generations().await.with_context(|| format!("listing {}", r.describe()))?;
    Ok(match only {
        Some(g) => gens.into_iter().filter(|x| x.as_str() == g).collect(),
        None => gens,
    })
}

fn print_table(rows: Vec<Vec<String>>) -> Result<()> {
    let widths: Vec<usize> =
        (0..rows.first().map_or(0, |r| r.len())).map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut out = std::io::stdout().lock();
    for row in rows {
        let line: Vec<String> = row.iter().enumerate().map(|(i, v)| format!("{v:<w$}", w = widths[i])).collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

pub async fn generations(args: ListArgs) -> Result<()> {
    let mut rows = vec![vec!["name".into(), "generation".into(), "lag".into(), "start".into(), "end".into()]];
    for r in list_replicas(&args)? {
        for g in generations_of(&r, args.generation.as_deref()).await? {
            let s = restore::summarize(&r, &g).await?;
            let lag = s
                .last
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .map(|d| humantime::format_duration(std::time::Duration::from_secs(d.as_secs())).to_string())
                .unwrap_or_else(|| "-".into());
            rows.push(vec![r.name.clone(), g.to_string(), lag, time(s.first), time(s.last)]);
        }
    }
    print_table(rows)
}

pub async fn snapshots(args: ListArgs) -> Result<()> {
    let mut rows = vec![vec!["replica".into(), "generation".into(), "index".into(), "size".into(), "created".into()]];
    for r in list_replicas(&args)? {
        for g in generations_of(&r, args.generation.as_deref()).await? {
            for s in r.snapshots(&g).await? {
                rows.push(vec![
                    r.name.clone(),
                    g.to_string(),
                    s.index.to_string(),
                    s.size.to_string(),
                    time(Some(s.created)),
                ]);
            }
        }
    }
    print_table(rows)
}

pub async fn wal(args: ListArgs) -> Result<()> {
    let mut rows = vec![vec![
        "replica".into(),
        "generation".into(),
        "index".into(),
        "offset".into(),
        "size".into(),
        "created".into(),
    ]];
    for r in list_replicas(&args)? {
        for g in generations_of(&r, args.generation.as_deref()).await? {
            for s in r.segments(&g).await? {
                rows.push(vec![
                    r.name.clone(),
                    g.to_string(),
                    s.pos.index.to_string(),
                    s.pos.offset.to_string(),
                    s.size.to_string(),
                    time(Some(s.created)),
                ]);
            }
        }
    }
    print_table(rows)
}

pub fn databases(args: ConfigArgs) -> Result<()> {
    let (config, path) = load_config(&args)?;
    let config = config.with_context(|| format!("no config file at {}", path.display()))?;
    let mut rows = vec![vec!["path".into(), "replicas".into()]];
    for db in &config.dbs {
        let names: Vec<String> = db.replicas.iter().map(|r| r.display_name()).collect();
        rows.push(vec![Path::new(&db.path).display().to_string(), names.join(",")]);
    }
    print_table(rows)
}

/// Download progress: a bar with bytes and rate on a terminal, a log line every few seconds otherwise.
struct Progress {
    bar: Option<indicatif::ProgressBar>,
    total: u64,
    last_log: std::sync::Mutex<std::time::Instant>,
}

impl Progress {
    fn new(total: u64) -> Self {
        let bar = std::io::IsTerminal::is_terminal(&std::io::stderr()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "restoring [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Self { bar, total, last_log: std::sync::Mutex::new(std::time::Instant::now()) }
    }

    fn update(&self, downloaded: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(downloaded);
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= std::time::Duration::from_secs(5) {
            *last = std::time::Instant::now();
            tracing::info!(downloaded, total = self.total, "restore progress");
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
