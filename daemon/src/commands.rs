//! The one-shot commands: restore and the listings.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use litecar_replicate::restore::{self, Plan, RestoreOptions, Target};
use litecar_replicate::{Generation, Replica};
use litecar_rest::sync::lock;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::cli::{ConfigArgs, ListArgs, RestoreArgs};
use crate::config::{self, CONFIG_ENV_VARS, DEFAULT_CONFIG_PATHS, LoadOptions, Loaded};
use crate::replicas;

/// Which config file is in force and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `-config PATH`.
    Flag(PathBuf),
    /// `$LITECAR_CONFIG` or `$LITESTREAM_CONFIG` (the variable's name).
    Env(&'static str, PathBuf),
    /// The first default path that exists.
    Default(PathBuf),
    /// None of the defaults exists (the first one is named in messages).
    Missing(PathBuf),
}

impl ConfigSource {
    pub fn path(&self) -> &Path {
        match self {
            ConfigSource::Flag(p) | ConfigSource::Env(_, p) | ConfigSource::Default(p) | ConfigSource::Missing(p) => p,
        }
    }

    fn describe(&self) -> String {
        match self {
            ConfigSource::Flag(p) => format!("{} (-config)", p.display()),
            ConfigSource::Env(v, p) => format!("{} (${v})", p.display()),
            ConfigSource::Default(p) | ConfigSource::Missing(p) => format!("{} (default)", p.display()),
        }
    }
}

/// The config file in force: `-config`, else `$LITECAR_CONFIG`, else `$LITESTREAM_CONFIG`, else the first of
/// `/etc/litecar.yml`, `/etc/litestream.yml` that exists.
pub fn config_source(args: &ConfigArgs) -> ConfigSource {
    config_source_with(args, |v| std::env::var_os(v), |p| p.exists())
}

fn config_source_with(
    args: &ConfigArgs,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    exists: impl Fn(&Path) -> bool,
) -> ConfigSource {
    if let Some(p) = &args.config {
        return ConfigSource::Flag(config::expand_home(&p.to_string_lossy()));
    }
    for var in CONFIG_ENV_VARS {
        if let Some(p) = env(var).filter(|p| !p.is_empty()) {
            return ConfigSource::Env(var, config::expand_home(&p.to_string_lossy()));
        }
    }
    match DEFAULT_CONFIG_PATHS.iter().map(PathBuf::from).find(|p| exists(p)) {
        Some(p) => ConfigSource::Default(p),
        None => ConfigSource::Missing(PathBuf::from(DEFAULT_CONFIG_PATHS[0])),
    }
}

/// Load the config and log which file it is and its warnings (logging must be set up).
pub fn load_config(args: &ConfigArgs) -> Result<(Option<Loaded>, PathBuf)> {
    let (loaded, source) = load_config_quiet(args)?;
    if let Some(l) = &loaded {
        report(l, &source);
    }
    Ok((loaded, source.path().to_owned()))
}

/// Load the config without logging anything, for the daemon, whose logging is set up from the config itself; it
/// calls `report` once it has. No file at the default paths is not an error (`None`), a missing named one is.
pub fn load_config_quiet(args: &ConfigArgs) -> Result<(Option<Loaded>, ConfigSource)> {
    let source = config_source(args);
    if let ConfigSource::Missing(_) = source {
        return Ok((None, source));
    }
    let loaded = config::load(source.path(), LoadOptions { expand_env: !args.no_expand_env, strict: args.strict })?;
    Ok((Some(loaded), source))
}

/// Log which config file is in use and what it warns about.
pub fn report(loaded: &Loaded, source: &ConfigSource) {
    tracing::info!(config = %source.describe(), "using config file");
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
}

fn time(t: Option<SystemTime>) -> String {
    t.map(|t| humantime::format_rfc3339_seconds(t).to_string()).unwrap_or_else(|| "-".into())
}

/// Exit status of a restore that did or did not do anything, for scripts.
pub enum RestoreOutcome {
    Restored,
    Skipped(&'static str),
}

/// Restore as `args` ask. SIGTERM or SIGINT ends it promptly, also while a replica does not answer: the output is
/// then not written and nothing temporary is left.
pub async fn restore(args: RestoreArgs) -> Result<RestoreOutcome> {
    let cancel = CancellationToken::new();
    let received = std::sync::Arc::new(std::sync::OnceLock::new());
    let mut signals = Vec::new();
    for (kind, name) in [(SignalKind::terminate(), "SIGTERM"), (SignalKind::interrupt(), "SIGINT")] {
        let mut s = signal(kind).with_context(|| format!("installing the {name} handler"))?;
        let (cancel, received) = (cancel.clone(), received.clone());
        signals.push(tokio::spawn(async move {
            if s.recv().await.is_some() {
                let _ = received.set(name);
                cancel.cancel();
            }
        }));
    }
    let result = restore_until(args, &cancel).await;
    for s in signals {
        s.abort();
    }
    match (result, received.get()) {
        (Err(e), Some(name)) => Err(e.context(format!("restore interrupted by {name}; the output was not written"))),
        (result, _) => result,
    }
}

async fn restore_until(args: RestoreArgs, cancel: &CancellationToken) -> Result<RestoreOutcome> {
    let (config, config_path) = load_config(&args.config)?;
    let output = match (&args.output, replicas::is_url(&args.target)) {
        (Some(o), _) => o.clone(),
        (None, false) => config::expand_home(&args.target),
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
    let connect = replicas::for_target(&args.target, config.as_ref(), &config_path, args.replica.as_deref());
    let replicas = tokio::select! {
        r = connect => r?,
        _ = cancel.cancelled() => bail!(litecar_replicate::Error::Cancelled),
    };
    // Every request ends when the restore is cancelled, even one the store never answers.
    let replicas: Vec<Replica> = replicas.iter().map(|r| r.cancellable(cancel.clone())).collect();
    let Some((replica, plan)) = best_plan(&replicas, &target).await? else {
        if args.if_replica_exists {
            return Ok(RestoreOutcome::Skipped("no matching backups found, skipping"));
        }
        // Name where was looked, so a wrong path or an empty directory on the replica is plain to see.
        let looked: Vec<String> = replicas.iter().map(|r| r.describe()).collect();
        let what = if replicas::is_url(&args.target) {
            args.target.clone()
        } else {
            format!("{} in {}", args.target, looked.join(", "))
        };
        bail!(litecar_replicate::Error::NoBackups(what));
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
    let summary = restore::restore_cancellable(replica, &plan, &opts, &|n| progress.update(n), cancel).await?;
    progress.finish();
    tracing::info!(
        output = %output.display(), generation = %summary.generation, last_index = format!("{:08x}", summary.last_index),
        bytes = summary.bytes_downloaded, elapsed_ms = started.elapsed().as_millis() as u64, "restore complete"
    );
    Ok(RestoreOutcome::Restored)
}

/// An RFC 3339 time with any offset (`2026-01-02T03:04:05Z`, `2026-01-02T03:04:05.5+01:00`), as Go's
/// `time.RFC3339Nano` parser takes it.
pub fn parse_timestamp(s: &str) -> Result<SystemTime> {
    let bad = || {
        anyhow::anyhow!(
            "-timestamp {s:?} is not an RFC 3339 time such as 2026-01-02T15:04:05Z or 2026-01-02T16:04:05+01:00"
        )
    };
    let t = s.trim();
    let (local, offset_secs) = if let Some(l) = t.strip_suffix(['Z', 'z']) {
        (l, 0i64)
    } else {
        let split = t.len().checked_sub(6).filter(|&i| t.is_char_boundary(i)).ok_or_else(bad)?;
        let (l, off) = t.split_at(split);
        let sign = match off.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return Err(bad()),
        };
        let (h, m) = off[1..].split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if h > 23 || m > 59 {
            return Err(bad());
        }
        (l, sign * (h * 3600 + m * 60))
    };
    if local.len() < 19 || !matches!(local.as_bytes()[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let utc = humantime::parse_rfc3339_weak(local).map_err(|_| bad())?;
    let shifted = if offset_secs >= 0 {
        utc.checked_sub(std::time::Duration::from_secs(offset_secs.unsigned_abs()))
    } else {
        utc.checked_add(std::time::Duration::from_secs(offset_secs.unsigned_abs()))
    };
    shifted.ok_or_else(bad)
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

async fn list_replicas(args: &ListArgs) -> Result<(Vec<Replica>, Option<PathBuf>)> {
    let (config, path) = load_config(&args.config)?;
    let replicas = replicas::for_target(&args.target, config.as_ref(), &path, args.replica.as_deref()).await?;
    let db = (!replicas::is_url(&args.target)).then(|| config::expand_home(&args.target));
    Ok((replicas, db))
}

/// When the database (or its WAL) was last written, as Litestream measures replica lag from.
fn db_updated_at(db: &Path) -> Option<SystemTime> {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    [mtime(db), mtime(Path::new(&wal))].into_iter().flatten().max()
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
    let (replicas, db) = list_replicas(&args).await?;
    // Lag is the database's last write minus the replica's, as in Litestream (a replica URL: now).
    let reference = db.as_deref().and_then(db_updated_at).unwrap_or_else(SystemTime::now);
    for r in replicas {
        for g in generations_of(&r, args.generation.as_deref()).await? {
            let s = restore::summarize(&r, &g).await?;
            let lag = s
                .last
                .map(|t| match reference.duration_since(t) {
                    Ok(d) => config::go_format(d, false),
                    Err(e) => config::go_format(e.duration(), true),
                })
                .unwrap_or_else(|| "-".into());
            rows.push(vec![r.name.clone(), g.to_string(), lag, time(s.first), time(s.last)]);
        }
    }
    print_table(rows)
}

pub async fn snapshots(args: ListArgs) -> Result<()> {
    let mut rows = vec![vec!["replica".into(), "generation".into(), "index".into(), "size".into(), "created".into()]];
    for r in list_replicas(&args).await?.0 {
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
    for r in list_replicas(&args).await?.0 {
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
    for db in &config.settings.dbs {
        let names: Vec<String> = db.replicas.iter().map(|r| r.name.clone()).collect();
        rows.push(vec![db.path.display().to_string(), names.join(",")]);
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
        let mut last = lock(&self.last_log);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_offsets() {
        let utc = parse_timestamp("2026-01-02T03:04:05Z").expect("utc");
        assert_eq!(parse_timestamp("2026-01-02T04:04:05+01:00").expect("+01:00"), utc);
        assert_eq!(parse_timestamp("2026-01-01T22:34:05-04:30").expect("-04:30"), utc);
        assert_eq!(parse_timestamp("2026-01-02T03:04:05+00:00").expect("+00:00"), utc);
        let frac = parse_timestamp("2026-01-02T03:04:05.250Z").expect("fraction");
        assert_eq!(frac.duration_since(utc).expect("later"), std::time::Duration::from_millis(250));
        for bad in ["yesterday", "2026-01-02", "2026-01-02T03:04:05+1", "2026-01-02T03:04:05+25:00"] {
            assert!(parse_timestamp(bad).expect_err(bad).to_string().contains("RFC 3339"), "{bad}");
        }
    }

    #[test]
    fn config_file_order() {
        let none = ConfigArgs::default();
        let env = |set: &'static [(&'static str, &'static str)]| {
            move |v: &str| set.iter().find(|(k, _)| *k == v).map(|(_, p)| std::ffi::OsString::from(p))
        };
        let flag = ConfigArgs { config: Some("/x.yml".into()), ..Default::default() };
        assert_eq!(
            config_source_with(&flag, env(&[("LITECAR_CONFIG", "/l.yml")]), |_| true),
            ConfigSource::Flag("/x.yml".into())
        );
        let both = env(&[("LITECAR_CONFIG", "/l.yml"), ("LITESTREAM_CONFIG", "/s.yml")]);
        assert_eq!(config_source_with(&none, both, |_| true), ConfigSource::Env("LITECAR_CONFIG", "/l.yml".into()));
        let ls = env(&[("LITESTREAM_CONFIG", "/s.yml")]);
        assert_eq!(config_source_with(&none, ls, |_| true), ConfigSource::Env("LITESTREAM_CONFIG", "/s.yml".into()));
        let only_litestream = |p: &Path| p == Path::new("/etc/litestream.yml");
        assert_eq!(
            config_source_with(&none, env(&[]), only_litestream),
            ConfigSource::Default("/etc/litestream.yml".into())
        );
        assert_eq!(config_source_with(&none, env(&[]), |_| true), ConfigSource::Default("/etc/litecar.yml".into()));
        assert_eq!(config_source_with(&none, env(&[]), |_| false), ConfigSource::Missing("/etc/litecar.yml".into()));
    }
}
