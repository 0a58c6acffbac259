//! Splitting and unquoting shared by the filter, select and order grammars.
//!
//! PostgREST lets a value or name be double-quoted (`"a,b"`, with `\"` and `\\` escapes) so it can contain
//! the grammar's delimiters.

use crate::error::RestError;

/// Splits on `sep` at parenthesis depth 0 and outside double quotes.
pub fn split_top(text: &str, sep: char) -> Result<Vec<&str>, RestError> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            // Braces group too: the `{a,b}` lists of `like(any)` and friends sit inside logic trees.
            '(' | '{' => depth += 1,
            ')' | '}' => {
                depth = depth.checked_sub(1).ok_or_else(|| RestError::bad_query(text, format!("unbalanced `{c}`")))?;
            }
            c if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    if quoted {
        return Err(RestError::bad_query(text, "unterminated double quote"));
    }
    if depth != 0 {
        return Err(RestError::bad_query(text, "unbalanced `(` or `{`"));
    }
    parts.push(&text[start..]);
    Ok(parts)
}

/// `"a \"b\""` -> `a "b"`; text without surrounding quotes is returned as is.
pub fn unquote(text: &str) -> Result<String, RestError> {
    let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')).filter(|_| text.len() >= 2) else {
        return Ok(text.to_owned());
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => out.push(next),
                None => return Err(RestError::bad_query(text, "dangling backslash in quoted text")),
            },
            '"' => return Err(RestError::bad_query(text, "unescaped double quote inside quoted text")),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Splits a leading name (possibly quoted) from the rest at the first `sep` outside quotes:
/// `"a.b".eq.1` -> (`a.b`, `eq.1`).
pub fn split_name(text: &str, sep: char) -> Result<(String, Option<&str>), RestError> {
    if text.starts_with('"') {
        let mut escaped = false;
        for (i, c) in text.char_indices().skip(1) {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    let name = unquote(&text[..=i])?;
                    let rest = &text[i + 1..];
                    return match rest.strip_prefix(sep) {
                        Some(rest) => Ok((name, Some(rest))),
                        None if rest.is_empty() => Ok((name, None)),
                        None => Err(RestError::bad_query(text, format!("expected `{sep}` after quoted name"))),
                    };
                }
                _ => {}
            }
        }
        return Err(RestError::bad_query(text, "unterminated double quote"));
    }
    Ok(match text.split_once(sep) {
        Some((name, rest)) => (name.to_owned(), Some(rest)),
        None => (text.to_owned(), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_parens() {
        assert_eq!(split_top(r#"a,"b,c",d(e,f),g"#, ',').expect("valid text"), vec!["a", r#""b,c""#, "d(e,f)", "g"]);
        assert_eq!(split_top(r#""x\",y",z"#, ',').expect("valid text"), vec![r#""x\",y""#, "z"]);
        assert_eq!(split_top("a.like(any).{x,y},b", ',').expect("valid text"), vec!["a.like(any).{x,y}", "b"]);
        assert!(split_top("a(b", ',').is_err());
        assert!(split_top("a)b", ',').is_err());
        assert!(split_top("\"a", ',').is_err());
    }

    #[test]
    fn unquotes_with_escapes() {
        assert_eq!(unquote(r#""a \"b\" \\""#).expect("valid text"), r#"a "b" \"#);
        assert_eq!(unquote("plain").expect("valid text"), "plain");
        assert_eq!(unquote("\"").expect("valid text"), "\"");
        assert!(unquote(r#""a"b""#).is_err());
    }

    #[test]
    fn splits_quoted_names() {
        assert_eq!(split_name(r#""a.b".eq.1"#, '.').expect("valid text"), ("a.b".to_owned(), Some("eq.1")));
        assert_eq!(split_name("a.eq.1", '.').expect("valid text"), ("a".to_owned(), Some("eq.1")));
        assert_eq!(split_name("a", '.').expect("valid text"), ("a".to_owned(), None));
        assert!(split_name(r#""a"x"#, '.').is_err());
    }
}
