//! Horizontal filters: `col=[not.]op.value` and the logic trees `or=(...)`, `and=(...)`, `not.or=(...)`.

use super::lex::{split_name, split_top, unquote};
use crate::error::RestError;

/// Deepest nesting of `and(...)`/`or(...)` accepted; keeps recursion (ours and SQLite's) bounded.
const MAX_DEPTH: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Like,
    Ilike,
    In,
    Is,
    IsDistinct,
    /// Full-text search on an FTS5 table, with the PostgreSQL function whose syntax the query follows.
    Fts(FtsSyntax),
}

/// `fts` (to_tsquery), `plfts` (plainto_tsquery), `phfts` (phraseto_tsquery), `wfts` (websearch_to_tsquery).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FtsSyntax {
    Operators,
    Plain,
    Phrase,
    Websearch,
}

/// `op(any)` / `op(all)`: the operator applied to each value of a `{a,b}` list, ORed or ANDed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Quantifier {
    Any,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsValue {
    Null,
    True,
    False,
    Unknown,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Operand {
    Text(String),
    List(Vec<String>),
    Is(IsValue),
    /// The `{a,b}` list of a quantified operator.
    Quantified(Quantifier, Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Predicate {
    pub column: String,
    pub negate: bool,
    pub op: Op,
    pub operand: Operand,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Junction {
    And,
    Or,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Condition {
    Predicate(Predicate),
    Group { junction: Junction, negate: bool, items: Vec<Condition> },
}

/// Operators PostgREST has that SQLite has no counterpart for (ranges, arrays, regex).
const UNSUPPORTED: &[&str] = &["cs", "cd", "ov", "sl", "sr", "nxr", "nxl", "adj", "match", "imatch"];

/// `value` of a `column=value` query pair. At top level the value after the operator is taken literally;
/// inside logic trees it may be double-quoted to contain `,` or parentheses.
pub fn parse_predicate(column: &str, expr: &str, in_tree: bool) -> Result<Predicate, RestError> {
    let term = || format!("{column}={expr}");
    let (negate, rest) = match expr.strip_prefix("not.") {
        Some(rest) => (true, rest),
        None => (false, expr),
    };
    let Some((name, value)) = rest.split_once('.') else {
        return Err(RestError::bad_query(term(), "expected `operator.value`, e.g. `eq.1`"));
    };
    // `fts(english)`: the language is the FTS5 table's tokenizer's, so it is accepted and not used.
    let (name, language) = match name.split_once('(') {
        Some((base, arg)) if arg.ends_with(')') => (base, Some(&arg[..arg.len() - 1])),
        _ => (name, None),
    };
    let quantifier = match language {
        Some("any") => Some(Quantifier::Any),
        Some("all") => Some(Quantifier::All),
        _ => None,
    };
    let op = match name {
        "fts" => Op::Fts(FtsSyntax::Operators),
        "plfts" => Op::Fts(FtsSyntax::Plain),
        "phfts" => Op::Fts(FtsSyntax::Phrase),
        "wfts" => Op::Fts(FtsSyntax::Websearch),
        _ if language.is_some() && quantifier.is_none() => {
            return Err(RestError::bad_query(
                term(),
                "only fts operators take an argument; others take (any) or (all)",
            ));
        }
        "eq" => Op::Eq,
        "neq" => Op::Neq,
        "gt" => Op::Gt,
        "gte" | "ge" => Op::Gte,
        "lt" => Op::Lt,
        "lte" | "le" => Op::Lte,
        "like" => Op::Like,
        "ilike" => Op::Ilike,
        "in" => Op::In,
        "is" => Op::Is,
        "isdistinct" => Op::IsDistinct,
        other if UNSUPPORTED.contains(&other) => {
            return Err(RestError::bad_query(term(), format!("operator `{other}` is not supported on SQLite")));
        }
        other => return Err(RestError::bad_query(term(), format!("unknown operator `{}`", crate::error::echo(other)))),
    };
    if let Some(quantifier) = quantifier {
        if !matches!(op, Op::Eq | Op::Neq | Op::Gt | Op::Gte | Op::Lt | Op::Lte | Op::Like | Op::Ilike) {
            return Err(RestError::bad_query(
                term(),
                "(any) and (all) apply to eq, neq, gt, gte, lt, lte, like, ilike",
            ));
        }
        let values = parse_braced(value)
            .map_err(|_| RestError::bad_query(term(), "(any) and (all) expect a list in braces, e.g. `{a*,b*}`"))?;
        return Ok(Predicate {
            column: column.to_owned(),
            negate,
            op,
            operand: Operand::Quantified(quantifier, values),
        });
    }
    let operand =
        match op {
            Op::In => Operand::List(parse_list(value).map_err(|_| {
                RestError::bad_query(term(), "`in` expects a parenthesised list, e.g. `in.(1,2,\"a,b\")`")
            })?),
            Op::Is => Operand::Is(match value.to_ascii_lowercase().as_str() {
                "null" => IsValue::Null,
                "true" => IsValue::True,
                "false" => IsValue::False,
                "unknown" => IsValue::Unknown,
                _ => return Err(RestError::bad_query(term(), "`is` accepts null, true, false or unknown")),
            }),
            _ if in_tree => Operand::Text(unquote(value)?),
            _ => Operand::Text(value.to_owned()),
        };
    Ok(Predicate { column: column.to_owned(), negate, op, operand })
}

fn parse_list(value: &str) -> Result<Vec<String>, RestError> {
    let inner = value
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| RestError::bad_query(value, "expected a parenthesised list"))?;
    split_items(inner)
}

/// `{a,"b,c"}`, PostgreSQL's array literal as PostgREST's `(any)`/`(all)` operators take it.
fn parse_braced(value: &str) -> Result<Vec<String>, RestError> {
    let inner = value
        .strip_prefix('{')
        .and_then(|v| v.strip_suffix('}'))
        .ok_or_else(|| RestError::bad_query(value, "expected a list in braces"))?;
    split_items(inner)
}

fn split_items(inner: &str) -> Result<Vec<String>, RestError> {
    if inner.is_empty() {
        return Ok(Vec::new());
    }
    split_top(inner, ',')?.into_iter().map(unquote).collect()
}

/// The value of `or=`/`and=` (with `negate` for `not.or=`/`not.and=`): `(item,item,...)` where an item is
/// `col.[not.]op.value` or a nested `[not.]and(...)`/`[not.]or(...)`.
pub fn parse_tree(junction: Junction, negate: bool, value: &str) -> Result<Condition, RestError> {
    parse_group(junction, negate, value, 0)
}

fn parse_group(junction: Junction, negate: bool, value: &str, depth: usize) -> Result<Condition, RestError> {
    if depth >= MAX_DEPTH {
        return Err(RestError::bad_query(value, format!("logic trees nest at most {MAX_DEPTH} levels")));
    }
    let inner = value
        .strip_prefix('(')
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(|| RestError::bad_query(value, "a logic tree must be parenthesised, e.g. or=(a.eq.1,b.eq.2)"))?;
    let mut items = Vec::new();
    for item in split_top(inner, ',')? {
        if item.is_empty() {
            return Err(RestError::bad_query(value, "empty condition in logic tree"));
        }
        let (item_negate, rest) = match item.strip_prefix("not.") {
            Some(rest) if rest.starts_with("and(") || rest.starts_with("or(") => (true, rest),
            _ => (false, item),
        };
        if let Some(group) = rest.strip_prefix("and").filter(|g| g.starts_with('(')) {
            items.push(parse_group(Junction::And, item_negate, group, depth + 1)?);
        } else if let Some(group) = rest.strip_prefix("or").filter(|g| g.starts_with('(')) {
            items.push(parse_group(Junction::Or, item_negate, group, depth + 1)?);
        } else {
            let (column, expr) = split_name(item, '.')?;
            let expr = expr.ok_or_else(|| RestError::bad_query(item, "expected `column.operator.value`"))?;
            items.push(Condition::Predicate(parse_predicate(&column, expr, true)?));
        }
    }
    Ok(Condition::Group { junction, negate, items })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(column: &str, op: Op, value: &str) -> Condition {
        Condition::Predicate(Predicate {
            column: column.into(),
            negate: false,
            op,
            operand: Operand::Text(value.into()),
        })
    }

    #[test]
    fn parses_operators_and_negation() {
        let p = parse_predicate("a", "not.ge.5", false).expect("valid filter");
        assert_eq!((p.negate, p.op, p.operand), (true, Op::Gte, Operand::Text("5".into())));
        let p = parse_predicate("a", "in.(1,\"x,y\",)", false).expect("valid filter");
        assert_eq!(p.operand, Operand::List(vec!["1".into(), "x,y".into(), "".into()]));
        assert_eq!(parse_predicate("a", "in.()", false).expect("valid filter").operand, Operand::List(vec![]));
        assert_eq!(parse_predicate("a", "is.NULL", false).expect("valid filter").operand, Operand::Is(IsValue::Null));
        // Top-level values are literal: quotes and dots are part of the value.
        assert_eq!(
            parse_predicate("a", "eq.\"x\".y", false).expect("valid filter").operand,
            Operand::Text("\"x\".y".into())
        );
    }

    #[test]
    fn rejects_unknown_and_unsupported_operators() {
        for expr in ["eq", "zz.1", "match.x", "in(any).{1}", "eq(any).1", "eq(some).{1}", "is.maybe", "in.1,2", ""] {
            let error = parse_predicate("a", expr, false).expect_err("must fail");
            assert!(matches!(error, RestError::BadQuery { .. }), "{expr}: {error}");
        }
    }

    #[test]
    fn parses_quantified_and_fts_operators() {
        let p = parse_predicate("a", "like(any).{a*,\"b,c\"}", false).expect("valid filter");
        assert_eq!(
            (p.op, p.operand),
            (Op::Like, Operand::Quantified(Quantifier::Any, vec!["a*".into(), "b,c".into()]))
        );
        let p = parse_predicate("a", "not.ilike(all).{}", false).expect("valid filter");
        assert_eq!((p.negate, p.operand), (true, Operand::Quantified(Quantifier::All, vec![])));
        let p = parse_predicate("a", "wfts(english).cat -dog", false).expect("valid filter");
        assert_eq!((p.op, p.operand), (Op::Fts(FtsSyntax::Websearch), Operand::Text("cat -dog".into())));
        assert_eq!(parse_predicate("a", "phfts.x", false).expect("valid filter").op, Op::Fts(FtsSyntax::Phrase));
    }

    #[test]
    fn parses_nested_trees() {
        let tree =
            parse_tree(Junction::Or, false, "(a.eq.1,not.and(b.gt.2,c.lt.\"3,4\"),d.in.(1,2))").expect("valid filter");
        let expected = Condition::Group {
            junction: Junction::Or,
            negate: false,
            items: vec![
                text("a", Op::Eq, "1"),
                Condition::Group {
                    junction: Junction::And,
                    negate: true,
                    items: vec![text("b", Op::Gt, "2"), text("c", Op::Lt, "3,4")],
                },
                Condition::Predicate(Predicate {
                    column: "d".into(),
                    negate: false,
                    op: Op::In,
                    operand: Operand::List(vec!["1".into(), "2".into()]),
                }),
            ],
        };
        assert_eq!(tree, expected);
    }

    #[test]
    fn bounds_tree_depth() {
        let deep = format!("({}a.eq.1{})", "and(".repeat(40), ")".repeat(40));
        assert!(parse_tree(Junction::Or, false, &deep).is_err());
        assert!(parse_tree(Junction::Or, false, "a.eq.1").is_err());
        assert!(parse_tree(Junction::Or, false, "(a.eq.1,)").is_err());
    }
}
