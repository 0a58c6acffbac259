//! Keyset `continue` tokens: the sort values and key of the last object on a page, bound to the query.
//!
//! An offset would skip objects when earlier ones are deleted between pages; a keyset resumes exactly after the
//! last object returned, whatever changed before it. The token also carries a fingerprint of the query (store,
//! filters, sort, namespaces), so a token from another query is refused instead of silently mis-paging.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::types::Value as Sql;

use crate::list_options::ListOptions;
use crate::{Error, Result};

const PREFIX: &str = "k1.";

/// Where the next page starts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Position {
    /// Fingerprint of the query the token belongs to.
    q: String,
    /// The last object's sort values, in sort order (NULL as None).
    v: Vec<Option<String>>,
    /// The last object's key (the final sort column).
    k: String,
}

fn bad(token: &str, reason: &str) -> Error {
    Error::Query { term: format!("continue={token}"), reason: reason.to_owned() }
}

/// FNV-1a over what decides the set and order of a query's objects (not the page size, which a client may
/// change between pages, nor projections).
pub(crate) fn fingerprint(store: &str, o: &ListOptions) -> String {
    let text = format!("{store}\n{:?}\n{:?}\n{:?}", o.filters, o.sort, o.namespaces);
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

impl Position {
    pub(crate) fn new(fingerprint: String, values: Vec<Option<String>>, key: String) -> Self {
        Self { q: fingerprint, v: values, k: key }
    }

    pub(crate) fn encode(&self) -> String {
        // serializing plain strings cannot fail
        let json = serde_json::to_vec(self).unwrap_or_default();
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// The position in `token`, which must belong to a query with `fingerprint` and `sorts` sort keys.
    pub(crate) fn decode(token: &str, fingerprint: &str, sorts: usize) -> Result<Self> {
        let body = token.strip_prefix(PREFIX).ok_or_else(|| bad(token, "not a continue token from this API"))?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| bad(token, "not a continue token from this API"))?;
        let p: Self = serde_json::from_slice(&json).map_err(|_| bad(token, "not a continue token from this API"))?;
        if p.q != fingerprint || p.v.len() != sorts {
            return Err(bad(token, "the token belongs to another query (filters, sort or namespaces differ)"));
        }
        Ok(p)
    }

    /// SQL true for rows after this position under `order` (each sort expression with its parameters and
    /// direction; the key `o.key` ascending comes last). SQLite sorts NULL first ascending and last
    /// descending; the comparisons follow that.
    pub(crate) fn after(&self, order: &[(String, Vec<Sql>, bool)]) -> (String, Vec<Sql>) {
        let mut ors = Vec::new();
        let mut params = Vec::new();
        for i in 0..=order.len() {
            let mut ands = Vec::new();
            // parameters in the order their `?` appear
            for ((sql, p, _), v) in order.iter().zip(&self.v).take(i) {
                ands.push(format!("{sql} IS ?"));
                params.extend(p.iter().cloned());
                params.push(text(v));
            }
            match (order.get(i), self.v.get(i)) {
                (Some((sql, p, desc)), Some(v)) => match (desc, v) {
                    (false, None) => {
                        ands.push(format!("{sql} IS NOT NULL"));
                        params.extend(p.iter().cloned());
                    }
                    (false, Some(v)) => {
                        ands.push(format!("{sql} > ?"));
                        params.extend(p.iter().cloned());
                        params.push(Sql::Text(v.clone()));
                    }
                    (true, None) => ands.push("0".to_owned()),
                    (true, Some(v)) => {
                        ands.push(format!("({sql} < ? OR {sql} IS NULL)"));
                        params.extend(p.iter().cloned());
                        params.push(Sql::Text(v.clone()));
                        params.extend(p.iter().cloned());
                    }
                },
                _ => {
                    ands.push("o.key > ?".to_owned());
                    params.push(Sql::Text(self.k.clone()));
                }
            }
            ors.push(format!("({})", ands.join(" AND ")));
        }
        (format!("({})", ors.join(" OR ")), params)
    }
}

fn text(v: &Option<String>) -> Sql {
    match v {
        Some(s) => Sql::Text(s.clone()),
        None => Sql::Null,
    }
}
