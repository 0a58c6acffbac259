//! The YAML configuration file: Litestream 0.3's keys (and 0.5's `replica:` and `snapshot:`), plus litecar's own
//! sections. Loading is parse (typed, deserialize-only), then unknown keys (warnings, or errors when strict), then
//! one resolve step that holds every default and check. Every problem names the file, the key and the line, and no
//! credential is ever quoted.

mod duration;
mod env;
mod follow;
pub mod keys;
pub mod redact;
mod replica;
mod resolve;
mod rest;
mod s3;
mod sftp;
mod tree;
mod types;

use std::path::{Path, PathBuf};

pub use duration::{GoDuration, go_format};
pub use env::{expand_env, expand_home, expand_with};
pub use follow::FollowSettings;
pub use keys::UnknownKey;
pub use replica::{Inherited, ReplicaSettings, resolve_replica};
pub use resolve::{DEFAULT_SHUTDOWN_TIMEOUT, DbSettings, Problem, Settings};
pub use rest::{JwtKey, RestAuth, RestSettings, RestTls};
pub use types::*;

/// Where a config file is looked for when `-config` is not given, in order; the first that is set (variables) or
/// exists (files) is used.
pub const CONFIG_ENV_VARS: &[&str] = &["LITECAR_CONFIG", "LITESTREAM_CONFIG"];
pub const DEFAULT_CONFIG_PATHS: &[&str] = &["/etc/litecar.yml", "/etc/litestream.yml"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {}{message}{snippet}", line_prefix(*line))]
    Parse { path: PathBuf, line: Option<u32>, message: String, snippet: String },
    #[error("config file {path}: {}{key}: {message}{snippet}", line_prefix(*line))]
    Invalid { path: PathBuf, key: String, line: Option<u32>, message: String, snippet: String },
    #[error("config file {path}: unknown keys are errors with -strict (or `strict: true`):\n  {}",
        keys.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Strict { path: PathBuf, keys: Vec<UnknownKey> },
}

fn line_prefix(line: Option<u32>) -> String {
    line.map(|l| format!("line {l}: ")).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Expand `$VAR` and `${VAR}` (Litestream's default; off with `-no-expand-env`).
    pub expand_env: bool,
    /// Unknown keys are errors (`-strict`).
    pub strict: bool,
}

/// A loaded config: what to run with, and what to warn about once logging is set up.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub settings: Settings,
    /// The file as written (after `$VAR` expansion), for commands that look entries up by database path.
    pub config: Config,
    pub warnings: Vec<String>,
}

impl Loaded {
    /// The database entry for `path`, matched after making both absolute.
    pub fn find_db(&self, path: &Path) -> Option<&DbSettings> {
        let want = absolute(&expand_home(&path.to_string_lossy()));
        self.settings.dbs.iter().find(|d| absolute(&d.path) == want)
    }
}

pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_owned())
}

/// Read, parse, check and resolve a config file.
pub fn load(path: &Path, opts: LoadOptions) -> Result<Loaded, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    parse(path, &text, opts)
}

pub fn parse(path: &Path, text: &str, opts: LoadOptions) -> Result<Loaded, ConfigError> {
    let text = if opts.expand_env { expand_env(text) } else { text.to_owned() };
    let (redacted, secrets) = redact::redact_text(&text);
    let parse_error = |e: serde_saphyr::Error| {
        let line = e.location().map(|l| u32::try_from(l.line()).unwrap_or(u32::MAX)).filter(|l| *l > 0);
        let message = e.without_snippet().to_string();
        let message = message.trim_start_matches("error: ").to_owned();
        ConfigError::Parse {
            path: path.to_owned(),
            line,
            message: redact::scrub(&message, &secrets),
            snippet: snippet(&redacted, line),
        }
    };
    let (config, unknown, lines) = if text.trim().is_empty() || text.lines().all(|l| l.trim_start().starts_with('#')) {
        (Config::default(), vec![], tree::Lines::default())
    } else {
        let root: tree::Node = serde_saphyr::from_str(&text).map_err(parse_error)?;
        let config: Config = serde_saphyr::from_str(&text).map_err(parse_error)?;
        (config, keys::unknown_keys(&root), tree::Lines::of(&root))
    };
    let strict = opts.strict || config.strict == Some(true);
    let typos: Vec<UnknownKey> = unknown.iter().filter(|k| k.is_unknown()).cloned().collect();
    if strict && !typos.is_empty() {
        return Err(ConfigError::Strict { path: path.to_owned(), keys: typos });
    }
    let settings = resolve::resolve(&config).map_err(|p| {
        let line = lines.line(&p.key);
        ConfigError::Invalid {
            path: path.to_owned(),
            key: p.key,
            line,
            message: redact::scrub(&p.message, &secrets),
            snippet: snippet(&redacted, line),
        }
    })?;
    let mut warnings: Vec<String> = unknown
        .iter()
        .map(|k| format!("config file {}: {}", path.display(), redact::scrub(&k.to_string(), &secrets)))
        .collect();
    warnings.extend(
        settings.notes.iter().map(|n| format!("config file {}: {}", path.display(), redact::scrub(n, &secrets))),
    );
    Ok(Loaded { path: path.to_owned(), settings, config, warnings })
}

/// Resolve a config built in code (command-line arguments): problems name the key only.
pub fn parse_config(config: &Config) -> Result<Settings, Problem> {
    resolve::resolve(config)
}

/// The line at fault with one line either side, numbered, from the redacted text.
fn snippet(redacted: &str, line: Option<u32>) -> String {
    let Some(line) = line else { return String::new() };
    let lines: Vec<&str> = redacted.lines().collect();
    let at = line as usize;
    if at == 0 || at > lines.len() {
        return String::new();
    }
    let width = (at + 1).to_string().len();
    let mut out = String::new();
    for n in at.saturating_sub(1).max(1)..=(at + 1).min(lines.len()) {
        let mark = if n == at { '>' } else { ' ' };
        out.push_str(&format!("\n {mark} {n:>width$} | {}", lines[n - 1]));
    }
    out
}

#[cfg(test)]
mod tests;
