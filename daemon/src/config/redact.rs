//! Credentials never leave the process in text: config snippets, error messages, warnings and listings go through
//! here. A credential is the value of a credential key (in block or flow style, including a block list under it),
//! the password of a URL's user info, or anything shaped like an age secret key.

pub const REDACTED: &str = "[redacted]";

/// Keys whose values are credentials, in every section.
pub const CREDENTIAL_KEYS: &[&str] = &[
    "access-key-id",
    "secret-access-key",
    "account-key",
    "sas-token",
    "password",
    "identities",
    "identity",
    "session-token",
    "jwt-secret",
];

const AGE_SECRET_PREFIX: &str = "AGE-SECRET-KEY-";

/// `text` with every credential value replaced, and the values that were replaced (to scrub from messages that
/// quote them).
pub fn redact_text(text: &str) -> (String, Vec<String>) {
    let mut secrets = vec![];
    let mut out = Vec::new();
    // Indentation of a credential key whose value is a block below it (a list of identities).
    let mut block_under: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        if let Some(key_indent) = block_under {
            let is_item = body.starts_with("- ") || body == "-";
            if !body.is_empty() && (indent > key_indent || (indent == key_indent && is_item)) {
                let value = body.trim_start_matches('-').trim();
                if !value.is_empty() && !value.starts_with('#') {
                    secrets.push(unquote(value).to_owned());
                    out.push(line.replacen(value, REDACTED, 1));
                    continue;
                }
                out.push(line.to_owned());
                continue;
            }
            block_under = None;
        }
        let (redacted, block) = redact_line(line, &mut secrets);
        if block {
            block_under = Some(indent + line.trim_start().find(|c: char| c != '-' && c != ' ').unwrap_or(0));
        }
        out.push(redacted);
    }
    let joined = out.concat();
    let joined = scrub_patterns(&joined);
    (joined, secrets)
}

/// One line with the values of credential keys on it replaced; `true` when such a key opens a block below.
fn redact_line(line: &str, secrets: &mut Vec<String>) -> (String, bool) {
    let mut out = line.to_owned();
    let mut opens_block = false;
    for key in CREDENTIAL_KEYS {
        let mut from = 0;
        while let Some(pos) = out[from..].find(key).map(|p| p + from) {
            let before = out[..pos].chars().last();
            let after = &out[pos + key.len()..];
            let boundary = before.is_none_or(|c| c.is_whitespace() || matches!(c, '{' | ',' | '-' | '"' | '\''));
            let colon = after.trim_start_matches(['"', '\'']).strip_prefix(':');
            let (true, Some(rest)) = (boundary, colon) else {
                from = pos + key.len();
                continue;
            };
            let value_start = out.len() - rest.len();
            let line_end = out.trim_end_matches(['\n', '\r']).len();
            let in_flow = out[..pos].contains('{');
            let list_end = if rest.trim_start().starts_with('[') { rest.find(']') } else { None };
            let end = if let Some(e) = list_end {
                value_start + e + 1
            } else if in_flow {
                rest.find([',', '}']).map_or(line_end, |e| value_start + e)
            } else {
                rest.find(" #").map_or(line_end, |e| value_start + e)
            }
            .min(line_end)
            .max(value_start);
            let value = out[value_start..end].trim();
            if value.is_empty() {
                opens_block = !in_flow;
                from = end.max(pos + key.len());
                continue;
            }
            if value.starts_with('[') {
                // A flow list of identities: every item is secret.
                for item in value.trim_matches(['[', ']']).split(',') {
                    let item = unquote(item);
                    if !item.is_empty() {
                        secrets.push(item.to_owned());
                    }
                }
            } else {
                secrets.push(unquote(value).to_owned());
            }
            let replacement = format!(" {REDACTED}");
            out = format!("{}{replacement}{}", &out[..value_start], &out[end..]);
            from = value_start + replacement.len();
        }
    }
    (out, opens_block)
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches(['"', '\''])
}

/// Patterns that are secret wherever they appear: age secret keys and URL passwords.
fn scrub_patterns(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find(AGE_SECRET_PREFIX) {
        out.push_str(&rest[..pos + AGE_SECRET_PREFIX.len()]);
        out.push_str(REDACTED);
        rest = &rest[pos + AGE_SECRET_PREFIX.len()..];
        rest = &rest[rest.find(|c: char| !c.is_ascii_alphanumeric()).unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    scrub_url_passwords(&out)
}

/// `scheme://user:password@host` -> `scheme://user:[redacted]@host`.
fn scrub_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        out.push_str(&rest[..pos + 3]);
        rest = &rest[pos + 3..];
        let authority_end = rest.find(|c: char| c == '/' || c.is_whitespace() || c == '"').unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        if let Some(at) = authority.rfind('@')
            && let Some(colon) = authority[..at].find(':')
        {
            out.push_str(&authority[..colon + 1]);
            out.push_str(REDACTED);
            out.push_str(&authority[at..]);
            rest = &rest[authority_end..];
        }
    }
    out.push_str(rest);
    out
}

/// `message` with the given secret values and secret-looking patterns replaced.
pub fn scrub(message: &str, secrets: &[String]) -> String {
    let mut out = message.to_owned();
    let mut sorted: Vec<&String> = secrets.iter().filter(|s| s.len() >= 3).collect();
    sorted.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for s in sorted {
        out = out.replace(s.as_str(), REDACTED);
    }
    scrub_patterns(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_flow_and_list_values() {
        let text = "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/p\n        secret-access-key: s3cr3t # c\n        \
                    access-key-id: \"AKIAXYZ\"\n        age:\n          identities:\n            - AGE-SECRET-KEY-1ABC\n            \
                    - other-identity\n          recipients: [age1xyz]\n      - {type: s3, account-key: k3y, bucket: b}\n";
        let (out, secrets) = redact_text(text);
        for s in ["s3cr3t", "AKIAXYZ", "1ABC", "other-identity", "k3y"] {
            assert!(!out.contains(s), "{s} in {out}");
        }
        assert!(out.contains("age1xyz") && out.contains("bucket: b}") && out.contains("# c"), "{out}");
        assert!(secrets.contains(&"s3cr3t".to_owned()) && secrets.contains(&"other-identity".to_owned()));
        assert_eq!(out.lines().count(), text.lines().count());
    }

    #[test]
    fn urls_and_messages() {
        assert_eq!(scrub_url_passwords("sftp://me:pw@host:22/x"), "sftp://me:[redacted]@host:22/x");
        assert_eq!(scrub_url_passwords("s3://bucket/a@b"), "s3://bucket/a@b");
        let m = scrub("invalid value \"hunter22\" and AGE-SECRET-KEY-1QQQ.", &["hunter22".into()]);
        assert_eq!(m, "invalid value \"[redacted]\" and AGE-SECRET-KEY-[redacted].");
    }
}
