//! `select=col,alias:col,*` and `order=col.desc.nullslast,other`.

use super::lex::{split_name, split_top, unquote};
use crate::error::RestError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectItem {
    Star,
    Column { column: String, alias: Option<String> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nulls {
    First,
    Last,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderTerm {
    pub column: String,
    pub descending: bool,
    pub nulls: Option<Nulls>,
}

pub fn parse_select(value: &str) -> Result<Vec<SelectItem>, RestError> {
    if value.is_empty() {
        return Ok(vec![SelectItem::Star]);
    }
    split_top(value, ',')?.into_iter().map(|item| parse_select_item(item.trim())).collect()
}

fn parse_select_item(item: &str) -> Result<SelectItem, RestError> {
    if item == "*" {
        return Ok(SelectItem::Star);
    }
    if item.is_empty() {
        return Err(RestError::bad_query("select", "empty item in select list"));
    }
    let unsupported = |what: &str| RestError::bad_query(item, format!("{what} is not supported"));
    if item.starts_with("...") {
        return Err(unsupported("spreading embedded resources"));
    }
    // `alias:col`; `::` would be a cast, which SQLite's dynamic typing makes pointless.
    let (alias, column) = match split_name(item, ':')? {
        (_, Some(rest)) if rest.starts_with(':') => return Err(unsupported("casting with `::`")),
        (alias, Some(_)) if alias.is_empty() => return Err(RestError::bad_query(item, "empty alias")),
        (alias, Some(rest)) => (Some(alias), rest),
        (_, None) => (None, item),
    };
    if column.contains("->") {
        return Err(unsupported("JSON path selection"));
    }
    if column.contains('(') && !column.starts_with('"') {
        return Err(unsupported("embedding related tables"));
    }
    if column.contains("::") {
        return Err(unsupported("casting with `::`"));
    }
    let column = unquote(column)?;
    if column.is_empty() {
        return Err(RestError::bad_query(item, "empty column name"));
    }
    Ok(SelectItem::Column { column, alias })
}

pub fn parse_order(value: &str) -> Result<Vec<OrderTerm>, RestError> {
    split_top(value, ',')?.into_iter().map(|item| parse_order_term(item.trim())).collect()
}

fn parse_order_term(item: &str) -> Result<OrderTerm, RestError> {
    let (column, modifiers) = split_name(item, '.')?;
    if column.is_empty() {
        return Err(RestError::bad_query(item, "empty column name in order"));
    }
    let mut term = OrderTerm { column, descending: false, nulls: None };
    let mut seen_direction = false;
    for modifier in modifiers.map(|m| m.split('.').collect::<Vec<_>>()).unwrap_or_default() {
        match modifier {
            "asc" | "desc" if !seen_direction && term.nulls.is_none() => {
                term.descending = modifier == "desc";
                seen_direction = true;
            }
            "nullsfirst" if term.nulls.is_none() => term.nulls = Some(Nulls::First),
            "nullslast" if term.nulls.is_none() => term.nulls = Some(Nulls::Last),
            other => {
                return Err(RestError::bad_query(
                    item,
                    format!(
                        "unexpected order modifier `{}`; use col[.asc|.desc][.nullsfirst|.nullslast]",
                        crate::error::echo(other)
                    ),
                ));
            }
        }
    }
    Ok(term)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(column: &str, alias: Option<&str>) -> SelectItem {
        SelectItem::Column { column: column.into(), alias: alias.map(Into::into) }
    }

    #[test]
    fn parses_select_with_aliases_and_quotes() {
        assert_eq!(
            parse_select("id, n:name ,\"odd,col\",*").expect("valid list"),
            vec![col("id", None), col("name", Some("n")), col("odd,col", None), SelectItem::Star]
        );
        assert_eq!(parse_select("").expect("valid list"), vec![SelectItem::Star]);
        for bad in ["a::text", "rel(*)", "...rel(*)", "a->b", "a,,b", ":a", "a:"] {
            assert!(parse_select(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_order_terms() {
        assert_eq!(
            parse_order("a.desc.nullslast,b,\"c.d\".asc").expect("valid list"),
            vec![
                OrderTerm { column: "a".into(), descending: true, nulls: Some(Nulls::Last) },
                OrderTerm { column: "b".into(), descending: false, nulls: None },
                OrderTerm { column: "c.d".into(), descending: false, nulls: None },
            ]
        );
        for bad in ["a.sideways", "a.desc.asc", "a.nullsfirst.desc", ".desc", "a.nullsfirst.nullslast"] {
            assert!(parse_order(bad).is_err(), "{bad}");
        }
    }
}
