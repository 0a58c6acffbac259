//! Label and field selectors as the API server parses them (the subset tests need: `=`, `==`, `!=`, `in`,
//! `notin`, existence `k` and `!k`; fields `metadata.name` and `metadata.namespace` with `=`/`==`/`!=`).

use serde_json::Value;

#[derive(Debug, Clone)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

#[derive(Debug, Clone, Default)]
pub struct Selector {
    reqs: Vec<Req>,
}

fn split_top(s: &str) -> Vec<&str> {
    let (mut depth, mut start, mut out) = (0, 0, Vec::new());
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

impl Selector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for term in split_top(s).into_iter().map(str::trim).filter(|t| !t.is_empty()) {
            let list = |rest: &str| -> Result<Vec<String>, String> {
                let inner = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')'));
                let inner = inner.ok_or_else(|| format!("bad set in selector term {term:?}"))?;
                Ok(inner.split(',').map(|v| v.trim().to_owned()).collect())
            };
            let req = if let Some((k, v)) = term.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                Req::NotIn(k.trim().into(), list(rest)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                Req::In(k.trim().into(), list(rest)?)
            } else if let Some(k) = term.strip_prefix('!') {
                Req::NotExists(k.trim().into())
            } else {
                Req::Exists(term.into())
            };
            reqs.push(req);
        }
        Ok(Self { reqs })
    }

    /// Labels: `get(key)` is the object's label value.
    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k).as_deref() == Some(v.as_str()),
            Req::NotEq(k, v) => get(k).as_deref() != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.contains(&x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.contains(&x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }

    pub fn check_fields(&self) -> Result<(), String> {
        for r in &self.reqs {
            match r {
                Req::Eq(k, _) | Req::NotEq(k, _) if k == "metadata.name" || k == "metadata.namespace" => {}
                other => return Err(format!("field label not supported: {other:?}")),
            }
        }
        Ok(())
    }
}

pub fn label(obj: &Value, k: &str) -> Option<String> {
    obj["metadata"]["labels"][k].as_str().map(str::to_owned)
}

pub fn field(obj: &Value, k: &str) -> Option<String> {
    match k {
        "metadata.name" => obj["metadata"]["name"].as_str().map(str::to_owned),
        "metadata.namespace" => Some(obj["metadata"]["namespace"].as_str().unwrap_or("").to_owned()),
        _ => None,
    }
}
