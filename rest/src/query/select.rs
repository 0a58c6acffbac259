//! `select=col,alias:col,*,alias:table!hint!inner(...)` and `order=col.desc.nullslast,other`.

use super::lex::{split_name, split_top, unquote};
use crate::error::RestError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectItem {
    Star,
    Column { column: String, alias: Option<String> },
    Embed(Embed),
}

/// A related table embedded along a foreign key: `alias:table!hint!inner(select...)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Embed {
    pub table: String,
    pub alias: Option<String>,
    /// A column of the foreign key to use, when the tables are related in more than one way.
    pub hint: Option<String>,
    /// `!inner`: parent rows without a matching embedded row are left out.
    pub inner: bool,
    pub select: Vec<SelectItem>,
}

impl Embed {
    /// The key of the embedded value in each row, and the name its query-string parameters use.
    pub fn key(&self) -> &str {
        self.alias.as_deref().unwrap_or(&self.table)
    }
}

/// Deepest nesting of embedded resources accepted.
const MAX_EMBED_DEPTH: usize = 8;

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
    parse_select_at(value, 0)
}

fn parse_select_at(value: &str, depth: usize) -> Result<Vec<SelectItem>, RestError> {
    if value.is_empty() {
        return Ok(vec![SelectItem::Star]);
    }
    split_top(value, ',')?.into_iter().map(|item| parse_select_item(item.trim(), depth)).collect()
}

/// `[alias:]table[!hint][!inner](list)`, when `item` has that shape.
fn parse_embed(item: &str, depth: usize) -> Result<Option<SelectItem>, RestError> {
    if item.starts_with('"') || item.starts_with("...") {
        return Ok(None);
    }
    let Some(open) = item.find('(') else { return Ok(None) };
    let head = &item[..open];
    let list = item[open + 1..]
        .strip_suffix(')')
        .ok_or_else(|| RestError::bad_query(item, "an embedded resource ends with its `)`"))?;
    if depth + 1 >= MAX_EMBED_DEPTH {
        return Err(RestError::bad_query(item, format!("resources embed at most {MAX_EMBED_DEPTH} levels deep")));
    }
    let (alias, head) = match head.split_once(':') {
        Some((alias, rest)) if !alias.is_empty() => (Some(alias.to_owned()), rest),
        Some(_) => return Err(RestError::bad_query(item, "empty alias")),
        None => (None, head),
    };
    let mut parts = head.split('!');
    let table = parts.next().unwrap_or("").to_owned();
    if table.is_empty() {
        return Err(RestError::bad_query(item, "empty table name in an embedded resource"));
    }
    let mut embed = Embed { table, alias, hint: None, inner: false, select: Vec::new() };
    for part in parts {
        match part {
            "inner" if !embed.inner => embed.inner = true,
            "left" => {}
            "" => return Err(RestError::bad_query(item, "empty `!` hint")),
            hint if embed.hint.is_none() && !embed.inner => embed.hint = Some(hint.to_owned()),
            _ => return Err(RestError::bad_query(item, "expected `table!hint!inner(...)`")),
        }
    }
    embed.select = parse_select_at(list, depth + 1)?;
    Ok(Some(SelectItem::Embed(embed)))
}

fn parse_select_item(item: &str, depth: usize) -> Result<SelectItem, RestError> {
    if let Some(embed) = parse_embed(item, depth)? {
        return Ok(embed);
    }
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
        for bad in ["a::text", "rel(*", "...rel(*)", "a->b", "a,,b", ":a", "a:", "r!(*)", ":r(*)", "r!a!b(*)"] {
            assert!(parse_select(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_embedded_resources() {
        let items =
            parse_select("name,buyer:customers!customer_id!inner(name),orders(id,items(*))").expect("valid list");
        let SelectItem::Embed(buyer) = &items[1] else { panic!("embedded: {items:?}") };
        assert_eq!(
            (buyer.table.as_str(), buyer.key(), buyer.hint.as_deref(), buyer.inner),
            ("customers", "buyer", Some("customer_id"), true)
        );
        assert_eq!(buyer.select, vec![col("name", None)]);
        let SelectItem::Embed(orders) = &items[2] else { panic!("embedded: {items:?}") };
        assert_eq!(orders.key(), "orders");
        assert!(
            matches!(&orders.select[1], SelectItem::Embed(e) if e.table == "items" && e.select == [SelectItem::Star])
        );
        let deep = format!("{}x{}", "a(".repeat(20), ")".repeat(20));
        assert!(parse_select(&deep).is_err());
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
