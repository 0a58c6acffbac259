//! `--exec`: run the application as a child process, as Litestream does (split into words, not run by a shell).

use anyhow::{Result, bail};

/// Split a command line into words: whitespace separates, single and double quotes group, backslash escapes.
pub fn split_words(cmd: &str) -> Result<Vec<String>> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = cmd.chars();
    let mut quote: Option<char> = None;
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => match chars.next() {
                Some(n) => cur.push(n),
                None => bail!("exec command {cmd:?} ends with a backslash"),
            },
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, c) => {
                cur.push(c);
                in_word = true;
            }
        }
        if quote.is_some() || !cur.is_empty() {
            in_word = true;
        }
    }
    if quote.is_some() {
        bail!("exec command {cmd:?} has an unterminated quote");
    }
    if in_word {
        words.push(cur);
    }
    if words.is_empty() {
        bail!("exec command is empty");
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(
            split_words("app --flag 'a b' \"c \\\"d\\\"\" e\\ f").expect("ok"),
            ["app", "--flag", "a b", "c \"d\"", "e f"]
        );
        assert_eq!(split_words("sh -c ''").expect("ok"), ["sh", "-c", ""]);
        assert!(split_words("app 'open").is_err());
        assert!(split_words("   ").is_err());
    }
}
