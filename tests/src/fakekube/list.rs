//! Lists as the API server serves them: selectors, resourceVersion semantics over the history, and pages.

use super::*;
pub(super) struct Filters {
    namespace: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl Filters {
    pub(super) fn parse(target: &Target, q: &BTreeMap<String, String>) -> Result<Self, ApiError> {
        let bad = |e: String| ApiError::new(400, "BadRequest", e);
        let labels = Selector::parse(q.get("labelSelector").map(String::as_str).unwrap_or("")).map_err(bad)?;
        let fields = Selector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or("")).map_err(bad)?;
        fields.check_fields().map_err(bad)?;
        Ok(Self { namespace: target.namespace.clone(), labels, fields })
    }

    pub(super) fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj["metadata"]["namespace"].as_str() != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(|k| selector::label(obj, k)) && self.fields.matches(|k| selector::field(obj, k))
    }
}

pub(super) fn expired(message: &str) -> ApiError {
    ApiError::new(410, "Expired", message)
}

/// The objects of `resource` changed after revision `rv`, with their state at `rv` (None: absent then). Found by
/// walking the history backwards, so a list pinned to a recent revision costs the changes since, not the history.
pub(super) fn changed_since(db: &Db, resource: &str, rv: u64) -> BTreeMap<String, Option<Value>> {
    let key = |e: &Event| {
        let m = &e.object["metadata"];
        key_of(m["namespace"].as_str(), m["name"].as_str().unwrap_or_default())
    };
    let mut touched = BTreeMap::new();
    let mut unresolved = 0usize;
    for e in db.history.iter().rev().filter(|e| e.resource == resource) {
        if e.rv > rv {
            if touched.insert(key(e), None::<Option<Value>>).is_none() {
                unresolved += 1;
            }
            continue;
        }
        if unresolved == 0 {
            break;
        }
        if let Some(slot @ None) = touched.get_mut(&key(e)) {
            *slot = Some((e.kind != "DELETED").then(|| e.object.clone()));
            unresolved -= 1;
        }
    }
    // keys with no event at or before rv did not exist then
    touched.into_iter().map(|(k, v)| (k, v.flatten())).collect()
}

/// Merge two key-ordered sequences (the second wins nothing: the caller keeps their keys disjoint).
pub(super) fn merge_by_key<'a>(
    a: impl Iterator<Item = (&'a String, &'a Value)>,
    b: impl Iterator<Item = (&'a String, &'a Value)>,
) -> impl Iterator<Item = (&'a String, &'a Value)> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some((ka, _)), Some((kb, _))) => {
            if ka <= kb {
                a.next()
            } else {
                b.next()
            }
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// A list page, serialized straight from the stored objects (no copy of them).
pub(super) fn list(shared: &Shared, target: &Target, q: &BTreeMap<String, String>) -> Result<String, ApiError> {
    let filters = Filters::parse(target, q)?;
    let db = lock(&shared.db);
    let def = resource_def(&db, &target.resource)?;
    let rv_param = q.get("resourceVersion").map(String::as_str).unwrap_or("");
    let exact = q.get("resourceVersionMatch").is_some_and(|m| m == "Exact");
    let parse =
        |s: &str| s.parse::<u64>().map_err(|_| ApiError::new(400, "BadRequest", format!("bad resourceVersion {s:?}")));
    // continue tokens pin the revision of the first page: "<rv>|<last key>"
    let (at, after) = match q.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (rv, key) =
                token.split_once('|').ok_or_else(|| ApiError::new(400, "BadRequest", "bad continue token"))?;
            let rv = parse(rv)?;
            if rv < db.compacted {
                return Err(expired("The provided continue parameter is too old to display a consistent list result."));
            }
            (rv, Some(key.to_owned()))
        }
        None => match rv_param {
            "" | "0" => (db.rv, None),
            s if exact => {
                let rv = parse(s)?;
                if rv < db.compacted {
                    return Err(expired(&format!("too old resource version: {rv} ({})", db.compacted)));
                }
                if rv > db.rv {
                    return Err(ApiError::new(
                        504,
                        "Timeout",
                        format!("Too large resource version: {rv}, current: {}", db.rv),
                    ));
                }
                (rv, None)
            }
            s => {
                let rv = parse(s)?;
                if rv > db.rv {
                    return Err(ApiError::new(
                        504,
                        "Timeout",
                        format!("Too large resource version: {rv}, current: {}", db.rv),
                    ));
                }
                (db.rv, None)
            }
        },
    };
    // Pages are read in place (no copy of the object map per page, which made a paged list quadratic); a
    // revision older than the current one overlays the objects changed since with their state then.
    let overlay = if at == db.rv { BTreeMap::new() } else { changed_since(&db, &target.resource, at) };
    let empty = BTreeMap::new();
    let live = db.objects.get(&target.resource).unwrap_or(&empty);
    let from = match &after {
        Some(a) => std::ops::Bound::Excluded(a.as_str()),
        None => std::ops::Bound::Unbounded,
    };
    let base = live.range::<str, _>((from, std::ops::Bound::Unbounded)).filter(|(k, _)| !overlay.contains_key(*k));
    let then =
        overlay.range::<str, _>((from, std::ops::Bound::Unbounded)).filter_map(|(k, v)| v.as_ref().map(|v| (k, v)));
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).filter(|l| *l > 0).unwrap_or(usize::MAX);
    let mut matching = merge_by_key(base, then).filter(|(_, o)| filters.matches(o));
    let mut items = Vec::new();
    let mut last = None;
    let encoded = db.json.get(&target.resource);
    for (k, o) in matching.by_ref().take(limit) {
        if last.is_some() {
            items.push(b',');
        }
        // objects changed since the page's revision are encoded as they were then
        match encoded.and_then(|m| m.get(k)).filter(|_| !overlay.contains_key(k)) {
            Some(json) => items.extend_from_slice(json.as_bytes()),
            // writing a Value into a Vec cannot fail
            None => drop(serde_json::to_writer(&mut items, o)),
        }
        last = Some(k);
    }
    let more = matching.next().is_some();
    // remainingItemCount only without selectors, as the API server sends it (its storage counts keys, which
    // says nothing of how many a selector would take); without changes since the page's revision nor a
    // namespace that is a plain count of the map's remaining keys, not a filtered merge
    let remaining = (more && filters.labels.is_empty() && filters.fields.is_empty()).then(|| {
        if overlay.is_empty() && filters.namespace.is_none() {
            let after_page = last.map_or(from, |l| std::ops::Bound::Excluded(l.as_str()));
            live.range::<str, _>((after_page, std::ops::Bound::Unbounded)).count()
        } else {
            matching.count() + 1
        }
    });
    let mut meta = json!({"resourceVersion": at.to_string()});
    if more && let Some(last) = last {
        meta["continue"] = json!(format!("{at}|{last}"));
        if let Some(n) = remaining {
            meta["remainingItemCount"] = json!(n);
        }
    }
    let head = json!({"kind": format!("{}List", def.kind), "apiVersion": def.api_version(), "metadata": meta});
    let head = head.to_string();
    let mut body = String::with_capacity(head.len() + items.len() + 16);
    body.push_str(head.strip_suffix('}').unwrap_or(&head));
    body.push_str(r#","items":["#);
    body.push_str(&String::from_utf8_lossy(&items));
    body.push_str("]}");
    Ok(body)
}
