//! steve ListOptions queries.
#![allow(clippy::unwrap_used)]

use crate::common;

use common::*;
use litecar_watchcache::{Error, ListOptions, StoreConfig};
use serde_json::json;

fn fixture() -> litecar_watchcache::Store {
    let s = pods_with(StoreConfig { fields: vec!["spec.nodeName".into(), "status.phase".into()] });
    let mk = |ns: &str, name: &str, rv, node: &str, phase: &str, labels: &[(&str, &str)], created: &str| {
        let mut p = with_labels(pod(ns, name, rv), labels);
        p["spec"] = json!({"nodeName": node});
        p["status"] = json!({"phase": phase});
        p["metadata"]["creationTimestamp"] = json!(created);
        p
    };
    s.add(mk("default", "web-1", 1, "n1", "Running", &[("app", "web"), ("tier", "1")], "2024-01-03T00:00:00Z"))
        .unwrap();
    s.add(mk("default", "web-2", 2, "n2", "Pending", &[("app", "web"), ("tier", "2")], "2024-01-01T00:00:00Z"))
        .unwrap();
    s.add(mk("kube-system", "dns", 3, "n1", "Running", &[("app", "dns"), ("tier", "10")], "2024-01-02T00:00:00Z"))
        .unwrap();
    s.add(mk("other", "db", 4, "n3", "Failed", &[("app.kubernetes.io/name", "db")], "2024-01-04T00:00:00Z")).unwrap();
    s
}

fn q(s: &litecar_watchcache::Store, query: &str) -> Vec<String> {
    names(&s.query(&ListOptions::parse_query(query).unwrap()).unwrap().items)
}

#[test]
fn filters() {
    let s = fixture();
    assert_eq!(q(&s, "filter=metadata.name=dns"), ["dns"]);
    assert_eq!(q(&s, "filter=metadata.name==dns"), ["dns"]);
    assert_eq!(q(&s, "filter=metadata.name!=dns"), ["web-1", "web-2", "db"]);
    assert_eq!(q(&s, "filter=metadata.name~web"), ["web-1", "web-2"]);
    assert_eq!(q(&s, "filter=metadata.name!~web"), ["dns", "db"]);
    // commas OR, repeated filters AND
    assert_eq!(q(&s, "filter=metadata.name=dns,metadata.name=db"), ["dns", "db"]);
    assert_eq!(q(&s, "filter=spec.nodeName=n1&filter=metadata.labels[app]=dns"), ["dns"]);
    assert_eq!(q(&s, "filter=metadata.namespace%20in%20(default,other)"), ["web-1", "web-2", "db"]);
    assert_eq!(q(&s, "filter=metadata.namespace%20notin%20(default,other)"), ["dns"]);
    assert_eq!(q(&s, "filter=metadata.labels[tier]>1"), ["web-2", "dns"]);
    assert_eq!(q(&s, "filter=metadata.labels[tier]<2"), ["web-1"]);
    assert_eq!(q(&s, "filter=metadata.labels[app.kubernetes.io/name]"), ["db"]);
    assert_eq!(q(&s, "filter=!metadata.labels[app]"), ["db"]);
    // != includes objects without the label, as in Kubernetes label selectors
    assert_eq!(q(&s, "filter=metadata.labels[app]!=web"), ["dns", "db"]);
    assert_eq!(q(&s, "filter=status.phase%20in%20(Running)&namespace=default"), ["web-1"]);
    // values are bound, not spliced
    assert!(q(&s, "filter=metadata.name=x'%20OR%201=1%20--").is_empty());
}

#[test]
fn sort_page_continue_summary_projection() {
    let s = fixture();
    assert_eq!(q(&s, "sort=-metadata.name"), ["web-2", "web-1", "dns", "db"]);
    assert_eq!(q(&s, "sort=spec.nodeName,-metadata.name"), ["web-1", "dns", "web-2", "db"]);
    assert_eq!(q(&s, "sort=metadata.creationTimestamp"), ["web-2", "dns", "web-1", "db"]);
    let r = s.query(&ListOptions::parse_query("sort=metadata.name&pagesize=3").unwrap()).unwrap();
    assert_eq!((names(&r.items), r.count, r.pages), (vec!["db".into(), "dns".into(), "web-1".into()], 4, 2));
    let token = r.continue_token.unwrap();
    let r2 = s
        .query(&ListOptions::parse_query(&format!("sort=metadata.name&pagesize=3&continue={token}")).unwrap())
        .unwrap();
    assert_eq!(names(&r2.items), ["web-2"]);
    assert_eq!(r2.continue_token, None);
    assert_eq!(q(&s, "sort=metadata.name&pagesize=3&page=2"), ["web-2"]);
    let r = s.query(&ListOptions::parse_query("summary=status.phase,metadata.namespace").unwrap()).unwrap();
    assert_eq!(r.summary["status.phase"]["Running"], 2);
    assert_eq!(r.summary["status.phase"]["Failed"], 1);
    assert_eq!(r.summary["metadata.namespace"]["default"], 2);
    assert_eq!(r.revision, 4);
    let r = s.query(&ListOptions::parse_query("filter=metadata.name=dns&include=metadata.name,spec").unwrap()).unwrap();
    assert_eq!(r.items[0], json!({"metadata": {"name": "dns"}, "spec": {"nodeName": "n1"}}));
    let r = s.query(&ListOptions::parse_query("filter=metadata.name=dns&exclude=status,metadata").unwrap()).unwrap();
    assert_eq!(r.items[0], json!({"apiVersion": "v1", "kind": "Pod", "spec": {"nodeName": "n1"}}));
}

#[test]
fn errors_name_the_term() {
    let s = fixture();
    let e = s.query(&ListOptions::parse_query("filter=spec.unknown=x").unwrap()).unwrap_err();
    assert!(matches!(&e, Error::Query { term, .. } if term == "spec.unknown=x"), "{e}");
    let e = s.query(&ListOptions::parse_query("sort=spec.bogus").unwrap()).unwrap_err();
    assert!(e.to_string().contains("spec.bogus"), "{e}");
    let e = s.query(&ListOptions::parse_query("continue=garbage").unwrap()).unwrap_err();
    assert!(e.to_string().contains("garbage"), "{e}");
    assert!(matches!(s.query(&ListOptions::parse_query("revision=99").unwrap()), Err(Error::TooNew { .. })));
    assert_eq!(q(&s, "revision=3").len(), 4);
}

#[test]
fn negations_include_objects_without_the_label_or_field() {
    let s = fixture();
    // "db" has neither an app label nor a tier; add one without spec.nodeName (results are in key order)
    s.add(with_labels(pod("other", "bare", 5), &[("tier", "3")])).unwrap();
    assert_eq!(q(&s, "filter=metadata.labels[app]%20notin%20(web)"), ["dns", "bare", "db"]);
    assert_eq!(q(&s, "filter=metadata.labels[app]!~we"), ["dns", "bare", "db"]);
    assert_eq!(q(&s, "filter=metadata.labels[app]~we"), ["web-1", "web-2"]);
    assert_eq!(q(&s, "filter=spec.nodeName!=n1"), ["web-2", "bare", "db"]);
    assert_eq!(q(&s, "filter=spec.nodeName%20notin%20(n1,n2)"), ["bare", "db"]);
    assert_eq!(q(&s, "filter=spec.nodeName!~n"), ["bare"]);
    assert_eq!(q(&s, "filter=spec.nodeName%20in%20(n2,n3)"), ["web-2", "db"]);
    assert_eq!(q(&s, "filter=!metadata.labels[tier]"), ["db"]);
    // a positive test ORed with a negated one, and ANDed with a namespace
    assert_eq!(q(&s, "filter=metadata.labels[app]=dns,!metadata.labels[app]"), ["dns", "bare", "db"]);
    assert_eq!(q(&s, "filter=metadata.labels[tier]&namespace=other"), ["bare"]);
    let r = s.query(&ListOptions::parse_query("filter=metadata.labels[app]=web&pagesize=1").unwrap()).unwrap();
    assert_eq!((names(&r.items), r.count, r.pages), (vec!["web-1".into()], 2, 2));
}

#[test]
fn selective_and_broad_terms_give_the_same_answers_on_many_objects() {
    // enough objects that a label test and a namespace restriction each get to start the query
    let s = pods_with(StoreConfig { fields: vec!["spec.nodeName".into()] });
    let mut ops = Vec::new();
    for i in 0..300 {
        let mut p = with_labels(
            pod(&format!("ns-{}", i % 3), &format!("p{i:03}"), i + 1),
            &[("app", &format!("a{}", i % 50)), ("tier", if i % 2 == 0 { "web" } else { "db" })],
        );
        p["spec"] = json!({"nodeName": format!("n{}", i % 7)});
        ops.push(litecar_watchcache::WriteOp::Upsert(p));
    }
    s.write(ops).unwrap();
    let brute = |ns: Option<&str>, app: Option<&str>, tier: Option<&str>, node: Option<&str>| -> Vec<String> {
        let mut out: Vec<String> = s
            .list()
            .unwrap()
            .into_iter()
            .filter(|p| ns.is_none_or(|n| p["metadata"]["namespace"] == n))
            .filter(|p| app.is_none_or(|a| p["metadata"]["labels"]["app"] == a))
            .filter(|p| tier.is_none_or(|t| p["metadata"]["labels"]["tier"] == t))
            .filter(|p| node.is_none_or(|n| p["spec"]["nodeName"] == n))
            .map(|p| p["metadata"]["name"].as_str().unwrap().to_owned())
            .collect();
        out.sort_by(|a, b| b.cmp(a));
        out
    };
    assert_eq!(q(&s, "filter=metadata.labels[app]=a7&sort=-metadata.name"), brute(None, Some("a7"), None, None));
    assert_eq!(
        q(&s, "filter=metadata.namespace=ns-1&filter=metadata.labels[tier]=web&sort=-metadata.name"),
        brute(Some("ns-1"), None, Some("web"), None)
    );
    assert_eq!(
        q(&s, "filter=spec.nodeName=n3&filter=metadata.labels[tier]=db&sort=-metadata.name"),
        brute(None, None, Some("db"), Some("n3"))
    );
    assert_eq!(
        q(&s, "filter=metadata.namespace=ns-2&filter=metadata.labels[app]=a5&sort=-metadata.name"),
        brute(Some("ns-2"), Some("a5"), None, None)
    );
    let r = s
        .query(
            &ListOptions::parse_query("filter=metadata.labels[tier]=web&sort=-metadata.name&pagesize=100&page=2")
                .unwrap(),
        )
        .unwrap();
    assert_eq!((r.count, names(&r.items)), (150, brute(None, None, Some("web"), None)[100..].to_vec()));
}

#[test]
fn a_store_opened_again_with_more_fields_indexes_them() {
    // the ingester and a reader may open the same store in either order: the fields of both are queryable
    let db = litecar_watchcache::Database::open(":memory:").unwrap();
    let rt = litecar_watchcache::ResourceType::new("", "v1", "Pod");
    let first = db.store(rt.clone(), StoreConfig::default()).unwrap();
    let mut p = pod("a", "x", 1);
    p["spec"] = json!({"nodeName": "n1"});
    first.add(p).unwrap();
    let second = db.store(rt, StoreConfig { fields: vec!["spec.nodeName".into()] }).unwrap();
    assert_eq!(q(&second, "filter=spec.nodeName=n1"), ["x"]);
    assert_eq!(q(&first, "filter=spec.nodeName=n1"), ["x"]);
}

/// Walk every page of `query` (which sets pagesize), running `between` after each page.
fn walk(s: &litecar_watchcache::Store, query: &str, mut between: impl FnMut(usize)) -> Vec<String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for page in 0.. {
        let full = match &token {
            Some(t) => format!("{query}&continue={t}"),
            None => query.to_owned(),
        };
        let r = s.query(&ListOptions::parse_query(&full).unwrap()).unwrap();
        out.extend(names(&r.items));
        between(page);
        match r.continue_token {
            Some(t) => token = Some(t.replace('=', "%3D")),
            None => return out,
        }
    }
    unreachable!()
}

#[test]
fn continue_tokens_are_keysets_stable_under_deletes_and_bound_to_their_query() {
    let s = pods();
    for i in 0..20 {
        s.add(with_labels(pod("ns", &format!("p{i:02}"), 100 + i), &[("grp", if i % 2 == 0 { "a" } else { "b" })]))
            .unwrap();
    }
    // deleting objects already returned must not make the walk skip any that are still there
    let all = walk(&s, "sort=metadata.name&limit=3", |page| {
        if page < 3 {
            s.delete(&pod("ns", &format!("p{:02}", page * 3), 0)).unwrap();
        }
    });
    let want: Vec<String> = (0..20).map(|i| format!("p{i:02}")).collect();
    assert_eq!(all, want);
    // descending sorts on a label (with objects lacking it) and then the key
    s.add(pod("ns", "nolabel", 1000)).unwrap();
    let desc = walk(&s, "sort=-metadata.labels[grp],metadata.name&pagesize=2", |_| {});
    let full = q(&s, "sort=-metadata.labels[grp],metadata.name");
    assert_eq!(desc, full);
    assert_eq!(full.last().map(String::as_str), Some("nolabel"));
    let asc = walk(&s, "sort=metadata.labels[grp]&pagesize=4", |_| {});
    assert_eq!(asc, q(&s, "sort=metadata.labels[grp]"));
    // a token from another query is refused, naming the token
    let r = s.query(&ListOptions::parse_query("sort=metadata.name&limit=2").unwrap()).unwrap();
    let token = r.continue_token.unwrap();
    let e = s.query(&ListOptions::parse_query(&format!("sort=-metadata.name&limit=2&continue={token}")).unwrap());
    match e {
        Err(Error::Query { term, reason }) => {
            assert!(term.starts_with("continue="), "{term}");
            assert!(reason.contains("another query"), "{reason}");
        }
        other => panic!("expected a query error, got {other:?}"),
    }
}

#[test]
fn steve_quoted_values_and_limit() {
    let s = fixture();
    assert_eq!(q(&s, "filter=metadata.name='dns'"), ["dns"]);
    assert_eq!(q(&s, "filter=metadata.name=%22dns%22"), ["dns"]);
    assert_eq!(q(&s, "filter=metadata.namespace%20in%20('default','other')"), ["web-1", "web-2", "db"]);
    assert_eq!(q(&s, "filter=metadata.name='dns',metadata.name='db'"), ["dns", "db"]);
    assert_eq!(q(&s, "filter=metadata.name='a,b'"), Vec::<String>::new());
    assert_eq!(q(&s, "limit=2&sort=metadata.name"), ["db", "dns"]);
}
