//! PostgreSQL full-text queries (`to_tsquery`, `plainto_tsquery`, `phraseto_tsquery`, `websearch_to_tsquery`
//! syntax, as PostgREST's `fts`, `plfts`, `phfts` and `wfts` take them) as FTS5 query strings.
//!
//! Every word becomes an FTS5 string (`"word"`), so no client text is read as FTS5 syntax; only the operators
//! recognised here are written as FTS5 operators. `None` means the query has no words and matches nothing.

use super::filter::FtsSyntax;

/// `Err` carries a reason for a 400.
pub fn to_fts5(syntax: FtsSyntax, text: &str) -> Result<Option<String>, String> {
    match syntax {
        FtsSyntax::Plain => Ok(and_words(words(text))),
        FtsSyntax::Phrase => {
            let words: Vec<&str> = words(text).collect();
            Ok((!words.is_empty()).then(|| string(&words.join(" "))))
        }
        FtsSyntax::Websearch => websearch(text),
        FtsSyntax::Operators => operators(text),
    }
}

/// Runs of letters and digits, as PostgreSQL's parser splits plain text; punctuation separates words.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| !w.is_empty())
}

/// An FTS5 string: double quotes around, inner quotes doubled.
fn string(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

fn and_words<'a>(words: impl Iterator<Item = &'a str>) -> Option<String> {
    let quoted: Vec<String> = words.map(string).collect();
    (!quoted.is_empty()).then(|| quoted.join(" AND "))
}

/// `websearch_to_tsquery`: words are ANDed, `"quoted text"` is a phrase, `or` between two terms ORs them,
/// `-term` excludes.
fn websearch(text: &str) -> Result<Option<String>, String> {
    let mut clauses: Vec<Vec<String>> = Vec::new();
    let mut excluded: Vec<String> = Vec::new();
    let mut pending_or = false;
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let negate = rest.starts_with('-');
        if negate {
            rest = &rest[1..];
        }
        let (raw, after, phrase) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""), true)
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (&rest[..end], &rest[end..], false)
        };
        rest = after.trim_start();
        if !phrase && !negate && raw.eq_ignore_ascii_case("or") {
            pending_or = !clauses.is_empty();
            continue;
        }
        let found: Vec<&str> = words(raw).collect();
        if found.is_empty() {
            continue;
        }
        let term = if phrase || found.len() > 1 { string(&found.join(" ")) } else { string(found[0]) };
        if negate {
            excluded.push(term);
        } else if pending_or && let Some(last) = clauses.last_mut() {
            last.push(term);
        } else {
            clauses.push(vec![term]);
        }
        pending_or = false;
    }
    if clauses.is_empty() {
        return if excluded.is_empty() {
            Ok(None)
        } else {
            Err("a full-text query needs at least one word that is not excluded".to_owned())
        };
    }
    let mut query =
        clauses
            .into_iter()
            .map(|alternatives| {
                if alternatives.len() == 1 { alternatives.join("") } else { format!("({})", alternatives.join(" OR ")) }
            })
            .collect::<Vec<_>>()
            .join(" AND ");
    if !excluded.is_empty() {
        query = format!("({query}) NOT ({})", excluded.join(" OR "));
    }
    Ok(Some(query))
}

/// `to_tsquery`: words joined by `&`, `|` and parentheses, `& !word` to exclude, `word:*` for a prefix.
fn operators(text: &str) -> Result<Option<String>, String> {
    let mut out = String::new();
    let mut chars = text.char_indices().peekable();
    let mut expect_term = true;
    let mut depth = 0usize;
    let mut any_word = false;
    while let Some((i, c)) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '&' if !expect_term => {
                while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                if chars.next_if(|(_, c)| *c == '!').is_some() {
                    out.push_str(" NOT ");
                } else {
                    out.push_str(" AND ");
                }
                expect_term = true;
            }
            '|' if !expect_term => {
                out.push_str(" OR ");
                expect_term = true;
            }
            '(' if expect_term => {
                depth += 1;
                out.push('(');
            }
            ')' if !expect_term && depth > 0 => {
                depth -= 1;
                out.push(')');
            }
            '!' => return Err("`!` is only supported after `&` (as `a & !b`): FTS5 has no unary NOT".to_owned()),
            '<' => return Err("phrase operators (`<->`) are not supported; use phfts for phrases".to_owned()),
            c if expect_term && (c.is_alphanumeric() || c == '_') => {
                let mut end = i + c.len_utf8();
                while let Some((j, c)) = chars.next_if(|(_, c)| c.is_alphanumeric() || *c == '_') {
                    end = j + c.len_utf8();
                }
                out.push_str(&string(&text[i..end]));
                if text[end..].starts_with(":*") {
                    chars.next();
                    chars.next();
                    out.push_str(" *");
                }
                expect_term = false;
                any_word = true;
            }
            other => return Err(format!("unexpected `{other}` in the full-text query")),
        }
    }
    if depth != 0 || (expect_term && any_word) {
        return Err("the full-text query is incomplete (an operator or parenthesis is not closed)".to_owned());
    }
    Ok(any_word.then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fts(syntax: FtsSyntax, text: &str) -> Option<String> {
        to_fts5(syntax, text).expect("valid query")
    }

    #[test]
    fn plain_phrase_and_websearch() {
        assert_eq!(fts(FtsSyntax::Plain, "fat  cats!"), Some(r#""fat" AND "cats""#.into()));
        assert_eq!(fts(FtsSyntax::Plain, " ,; "), None);
        assert_eq!(fts(FtsSyntax::Phrase, "fat \"cats"), Some(r#""fat cats""#.into()));
        assert_eq!(
            fts(FtsSyntax::Websearch, r#""sad cat" or fat -rat mouse"#),
            Some(r#"(("sad cat" OR "fat") AND "mouse") NOT ("rat")"#.into())
        );
        assert_eq!(fts(FtsSyntax::Websearch, "or cat"), Some(r#""cat""#.into()));
        assert!(to_fts5(FtsSyntax::Websearch, "-cat").is_err());
    }

    #[test]
    fn operators_translate_and_refuse_what_fts5_lacks() {
        assert_eq!(
            fts(FtsSyntax::Operators, "fat & (rat | cat:*) & !dog"),
            Some(r#""fat" AND ("rat" OR "cat" *) NOT "dog""#.into())
        );
        for bad in ["!dog", "a <-> b", "a &", "(a", "a | ", "a\"b", "NEAR(a b)"] {
            assert!(to_fts5(FtsSyntax::Operators, bad).is_err(), "{bad}");
        }
    }
}
