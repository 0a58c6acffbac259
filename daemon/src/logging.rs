use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// Set up logging on stderr: `RUST_LOG` wins over the config's level; `type: json` gives one JSON object per line.
pub fn init(cfg: Option<&LoggingConfig>) {
    let level = cfg.and_then(|c| c.level.clone()).unwrap_or_else(|| "info".to_owned()).to_ascii_lowercase();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match cfg.and_then(|c| c.kind) {
        Some(LogFormat::Json) => builder.json().try_init(),
        _ => builder.try_init(),
    };
    // A second initialisation (tests) keeps the first subscriber.
    drop(result);
}
