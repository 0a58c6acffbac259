//! The PostgREST query-string grammar, parsed into names and values that are checked against the schema
//! later (see `sql`).

pub mod filter;
pub mod fts;
mod lex;
pub mod select;
mod urlencoded;

pub use urlencoded::parse_pairs;

pub use filter::{Condition, IsValue, Junction, Op, Operand, Predicate, Quantifier};
pub use select::{Embed, Nulls, OrderTerm, SelectItem};

use std::collections::BTreeMap;

use crate::error::RestError;

/// Everything the query string of a table request says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueryParams {
    pub select: Option<Vec<SelectItem>>,
    /// ANDed together.
    pub filters: Vec<Condition>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    pub on_conflict: Option<Vec<String>>,
    pub columns: Option<Vec<String>>,
    /// `path.column=...`, `path.order=`, `path.limit=`, ... for embedded resources, keyed by the path of names
    /// (or aliases) joined with `.`.
    pub embedded: BTreeMap<String, Scoped>,
}

/// What the query string says about one embedded resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scoped {
    pub filters: Vec<Condition>,
    pub order: Vec<OrderTerm>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> Result<Self, RestError> {
        let mut params = QueryParams::default();
        for (key, value) in urlencoded::parse_pairs(raw.unwrap_or("")) {
            params.add(&key, &value)?;
        }
        Ok(params)
    }

    fn add(&mut self, key: &str, value: &str) -> Result<(), RestError> {
        let once = |present: bool| {
            if present { Err(RestError::bad_query(key, "given more than once")) } else { Ok(()) }
        };
        match key {
            "select" => {
                once(self.select.is_some())?;
                self.select = Some(select::parse_select(value)?);
            }
            "order" => {
                once(!self.order.is_empty())?;
                self.order = select::parse_order(value)?;
            }
            "limit" => {
                once(self.limit.is_some())?;
                self.limit = Some(parse_count(key, value)?);
            }
            "offset" => {
                once(self.offset.is_some())?;
                self.offset = Some(parse_count(key, value)?);
            }
            "on_conflict" => {
                once(self.on_conflict.is_some())?;
                self.on_conflict = Some(parse_names(key, value)?);
            }
            "columns" => {
                once(self.columns.is_some())?;
                self.columns = Some(parse_names(key, value)?);
            }
            "or" | "and" | "not.or" | "not.and" => {
                let negate = key.starts_with("not.");
                let junction = if key.ends_with("or") { Junction::Or } else { Junction::And };
                self.filters.push(filter::parse_tree(junction, negate, value)?);
            }
            "" => return Err(RestError::bad_query(format!("={value}"), "empty parameter name")),
            key if key.contains('.') => self.add_embedded(key, value)?,
            column => self.filters.push(Condition::Predicate(filter::parse_predicate(column, value, false)?)),
        }
        Ok(())
    }

    /// `orders.status=eq.paid`, `orders.order=id.desc`, `orders.items.limit=1`, `orders.not.or=(...)`.
    fn add_embedded(&mut self, key: &str, value: &str) -> Result<(), RestError> {
        let (path, last) = key.rsplit_once('.').unwrap_or(("", key));
        let (path, last, negate) = match path.strip_suffix(".not") {
            Some(path) if last == "or" || last == "and" => (path, last, true),
            _ => (path, last, false),
        };
        if path.is_empty() || path.split('.').any(str::is_empty) || last.is_empty() {
            return Err(RestError::bad_query(key, "expected `resource.column` or `resource.order|limit|offset`"));
        }
        let scoped = self.embedded.entry(path.to_owned()).or_default();
        let once = |present: bool| {
            if present { Err(RestError::bad_query(key, "given more than once")) } else { Ok(()) }
        };
        match last {
            "order" => {
                once(!scoped.order.is_empty())?;
                scoped.order = select::parse_order(value)?;
            }
            "limit" => {
                once(scoped.limit.is_some())?;
                scoped.limit = Some(parse_count(key, value)?);
            }
            "offset" => {
                once(scoped.offset.is_some())?;
                scoped.offset = Some(parse_count(key, value)?);
            }
            "or" | "and" => {
                let junction = if last == "or" { Junction::Or } else { Junction::And };
                scoped.filters.push(filter::parse_tree(junction, negate, value)?);
            }
            column => scoped.filters.push(Condition::Predicate(filter::parse_predicate(column, value, false)?)),
        }
        Ok(())
    }
}

/// A non-negative integer that SQLite's signed 64-bit LIMIT/OFFSET can hold.
fn parse_count(key: &str, value: &str) -> Result<u64, RestError> {
    value
        .parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| RestError::bad_query(format!("{key}={value}"), "expected an integer from 0 to 2^63-1"))
}

fn parse_names(key: &str, value: &str) -> Result<Vec<String>, RestError> {
    let names =
        lex::split_top(value, ',')?.into_iter().map(|name| lex::unquote(name.trim())).collect::<Result<Vec<_>, _>>()?;
    if names.iter().any(String::is_empty) {
        return Err(RestError::bad_query(format!("{key}={value}"), "empty column name"));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_reserved_and_filter_parameters() {
        let q = QueryParams::parse(Some("select=a&id=gt.1&or=(a.eq.1,b.eq.2)&limit=5&offset=2&order=a.desc"))
            .expect("valid query");
        assert_eq!(q.select, Some(vec![SelectItem::Column { column: "a".into(), alias: None }]));
        assert_eq!(q.filters.len(), 2);
        assert_eq!((q.limit, q.offset), (Some(5), Some(2)));
        assert_eq!(q.order.len(), 1);
    }

    #[test]
    fn collects_embedded_parameters() {
        let q = QueryParams::parse(Some(
            "select=*,orders(*)&orders.status=eq.paid&orders.order=id.desc&orders.items.limit=2&orders.not.or=(a.eq.1)",
        ))
        .expect("valid query");
        assert!(q.filters.is_empty());
        let orders = &q.embedded["orders"];
        assert_eq!((orders.filters.len(), orders.order.len()), (2, 1));
        assert_eq!(q.embedded["orders.items"].limit, Some(2));
        for bad in [".x=eq.1", "a..b=eq.1", "a.limit=x", "a.order=x.up"] {
            assert!(QueryParams::parse(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_reserved_parameters() {
        for raw in [
            "limit=-1",
            "limit=x",
            "offset=1.5",
            "limit=1&limit=2",
            "on_conflict=a,,b",
            "=x",
            "id",
            "offset=9223372036854775808",
        ] {
            assert!(QueryParams::parse(Some(raw)).is_err(), "{raw}");
        }
    }
}
