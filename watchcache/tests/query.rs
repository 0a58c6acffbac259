//! steve ListOptions queries.
#![allow(clippy::unwrap_used)]

mod common;

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
