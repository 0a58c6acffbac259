//! `$VAR` / `${VAR}` expansion of the config text, and `~/` in paths.

use std::path::PathBuf;

/// Replace `$VAR` and `${VAR}` with the environment's values (unset variables become empty, as in Litestream).
pub fn expand_env(input: &str) -> String {
    expand_with(input, |name| std::env::var(name).ok())
}

pub fn expand_with(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut chars = input.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let rest = &input[i + 1..];
        if let Some(body) = rest.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            out.push_str(&lookup(&body[..end]).unwrap_or_default());
            for _ in 0..end + 2 {
                chars.next();
            }
            continue;
        }
        let len = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
        if len == 0 || rest.starts_with(|c: char| c.is_ascii_digit()) {
            out.push('$');
            continue;
        }
        out.push_str(&lookup(&rest[..len]).unwrap_or_default());
        for _ in 0..len {
            chars.next();
        }
    }
    out
}

/// `~/rest` and `~` as the home directory (`$HOME`), as Litestream expands database and replica paths.
pub fn expand_home(path: &str) -> PathBuf {
    let home = || std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from);
    if path == "~" {
        return home().unwrap_or_else(|| PathBuf::from(path));
    }
    match (path.strip_prefix("~/"), home()) {
        (Some(rest), Some(h)) => h.join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        let env = |k: &str| match k {
            "A" => Some("x".to_owned()),
            "B_2" => Some("y".to_owned()),
            _ => None,
        };
        assert_eq!(expand_with("$A ${B_2} $MISSING-${A}", env), "x y -x");
        assert_eq!(expand_with("cost $5 and $ alone", env), "cost $5 and $ alone");
    }

    #[test]
    fn home_expansion() {
        let Some(home) = std::env::var_os("HOME") else { return };
        assert_eq!(expand_home("~/data/app.db"), PathBuf::from(home).join("data/app.db"));
        assert_eq!(expand_home("/abs/~/x"), PathBuf::from("/abs/~/x"));
        assert_eq!(expand_home("~user/x"), PathBuf::from("~user/x"));
    }
}
