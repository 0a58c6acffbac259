use std::path::Path;

use anyhow::{Context, Result};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LoggingConfig};

/// How much to log on stderr: the config's level, or `debug` when verbose; `RUST_LOG` wins over both.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    pub config: Option<&'a LoggingConfig>,
    pub verbose: bool,
    /// Also write a debug-level log to this file (`replicate -trace PATH`).
    pub trace: Option<&'a Path>,
}

/// Set up logging on stderr: `type: json` gives one JSON object per line.
pub fn init(opts: Options<'_>) -> Result<()> {
    let cfg = opts.config;
    let default = if opts.verbose { "debug".to_owned() } else { "info".to_owned() };
    let level = cfg.and_then(|c| c.level.clone()).filter(|_| !opts.verbose).unwrap_or(default).to_ascii_lowercase();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let stderr: Box<dyn Layer<Registry> + Send + Sync> = match cfg.and_then(|c| c.kind) {
        Some(LogFormat::Json) => tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed(),
        _ => tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).boxed(),
    };
    let trace = match opts.trace {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("-trace {}: opening the trace file", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_ansi(false)
                    .with_filter(LevelFilter::DEBUG),
            )
        }
        None => None,
    };
    // A second initialisation (tests) keeps the first subscriber.
    drop(tracing_subscriber::registry().with(stderr.with_filter(filter)).with(trace).try_init());
    Ok(())
}
