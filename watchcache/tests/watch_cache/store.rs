//! client-go store_test.go / index_test.go facts, stated against the SQLite store.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use litecar_watchcache::{Database, Error, Indexers, Repository, ResourceType, StoreConfig};
use serde_json::{Value, json};

/// An object keyed `id` with a value, as client-go's testStoreObject.
fn obj(id: &str, val: &str) -> Value {
    json!({"metadata": {"name": id}, "val": val})
}

fn val(o: &Option<Value>) -> Option<&str> {
    o.as_ref().and_then(|o| o["val"].as_str())
}

fn check_store(store: &litecar_watchcache::Store) {
    // add, get, update, delete
    store.add(obj("foo", "bar")).unwrap();
    assert_eq!(val(&store.get(&obj("foo", "")).unwrap()), Some("bar"));
    store.update(obj("foo", "baz")).unwrap();
    assert_eq!(val(&store.get_by_key("foo").unwrap()), Some("baz"));
    store.delete(&obj("foo", "")).unwrap();
    assert_eq!(store.get_by_key("foo").unwrap(), None);
    // deleting a missing key is not an error
    store.delete(&obj("foo", "")).unwrap();

    // list and list_keys
    store.add(obj("a", "b")).unwrap();
    store.add(obj("c", "d")).unwrap();
    store.add(obj("e", "e")).unwrap();
    let vals: BTreeSet<String> = store.list().unwrap().iter().map(|o| o["val"].as_str().unwrap().into()).collect();
    assert_eq!(vals, BTreeSet::from(["b".into(), "d".into(), "e".into()]));
    assert_eq!(store.list_keys().unwrap(), ["a", "c", "e"]);

    // replace with a different set leaves exactly that set
    store.replace(vec![obj("foo", "foo"), obj("bar", "bar")], Some("10")).unwrap();
    assert_eq!(store.list_keys().unwrap(), ["bar", "foo"]);
    assert_eq!(val(&store.get_by_key("foo").unwrap()), Some("foo"));
    assert_eq!(store.get_by_key("a").unwrap(), None);

    // replace with nothing empties the store
    store.replace(vec![], Some("11")).unwrap();
    assert!(store.is_empty().unwrap());
}

#[test]
fn store_semantics_in_memory() {
    check_store(&pods());
}

#[test]
fn store_semantics_on_a_file_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k8s.db");
    let rt = ResourceType::new("", "v1", "Pod");
    {
        let s = Database::open(&path).unwrap().store(rt.clone(), StoreConfig::default()).unwrap();
        check_store(&s);
        s.add(pod("ns", "kept", 20)).unwrap();
    }
    let s = Database::open(&path).unwrap().store(rt, StoreConfig::default()).unwrap();
    assert_eq!(s.list_keys().unwrap(), ["ns/kept"]);
    assert_eq!(s.last_resource_version().unwrap(), 20);
}

#[test]
fn the_wal_is_checkpointed_beside_the_writer() {
    // 1,200 commits of 6 KB objects write some ten thousand WAL pages (80 MB); checkpoints (on their own thread,
    // or by a commit past four times their threshold) keep the WAL file to a few thousand
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k8s.db");
    let s = Database::open(&path).unwrap().store(ResourceType::new("", "v1", "Pod"), StoreConfig::default()).unwrap();
    let filler = "x".repeat(6000);
    for i in 0..1200 {
        let mut p = pod("ns", &format!("p{}", i % 50), i + 1);
        p["metadata"]["annotations"] = json!({ "filler": filler });
        s.add(p).unwrap();
    }
    let wal = std::fs::metadata(dir.path().join("k8s.db-wal")).unwrap().len();
    assert!(wal < 40 << 20, "the WAL grew to {wal} bytes");
}

#[test]
fn keys_are_namespace_slash_name_or_name() {
    let s = pods();
    s.add(pod("default", "a", 1)).unwrap();
    s.add(json!({"metadata": {"name": "cluster-wide"}})).unwrap();
    assert_eq!(s.list_keys().unwrap(), ["cluster-wide", "default/a"]);
    let err = s.add(json!({"metadata": {"namespace": "x"}})).unwrap_err();
    assert!(matches!(err, Error::NoName { .. }), "{err}");
    assert!(err.to_string().contains("v1/Pod"), "{err}");
}

#[test]
fn readers_never_see_a_half_replaced_store() {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(dir.path().join("k8s.db")).unwrap();
    let s = db.store(ResourceType::new("", "v1", "Pod"), StoreConfig::default()).unwrap();
    let set = |tag: &str| (0..200).map(|i| pod("ns", &format!("{tag}-{i}"), i)).collect::<Vec<_>>();
    s.replace(set("a"), None).unwrap();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let keys = s.list_keys().unwrap();
                assert_eq!(keys.len(), 200, "a reader saw {} objects", keys.len());
                let tags: BTreeSet<&str> = keys.iter().map(|k| &k[3..4]).collect();
                assert_eq!(tags.len(), 1, "a reader saw a mix of two sets");
                seen += 1;
            }
            seen
        })
    };
    for round in 0..20 {
        s.replace(set(if round % 2 == 0 { "b" } else { "a" }), None).unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
}

fn by_val() -> Indexers {
    Indexers::from([("by_val".to_owned(), Arc::new(|o: &Value| vec![o["val"].as_str().unwrap_or("").to_owned()]) as _)])
}

#[test]
fn index_groups_objects_by_value() {
    let s = pods();
    s.add_indexers(by_val()).unwrap();
    s.add(obj("a", "b")).unwrap();
    s.add(obj("c", "b")).unwrap();
    s.add(obj("e", "f")).unwrap();
    s.add(obj("g", "h")).unwrap();
    for (v, keys) in [("b", vec!["a", "c"]), ("f", vec!["e"]), ("h", vec!["g"])] {
        let found: Vec<String> = s
            .index("by_val", &obj("", v))
            .unwrap()
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap().into())
            .collect();
        assert_eq!(found, keys, "index value {v}");
        assert_eq!(s.index_keys("by_val", v).unwrap(), keys);
    }
    assert!(matches!(s.index("nope", &obj("", "b")), Err(Error::UnknownIndex { .. })));
    assert!(matches!(s.index_keys("nope", "b"), Err(Error::UnknownIndex { .. })));
    assert!(matches!(s.add_indexers(by_val()), Err(Error::IndexerConflict { .. })));
}

fn pod_users(name: &str, users: &str, label: &str) -> Value {
    json!({"metadata": {"namespace": "ns", "name": name, "annotations": {"users": users}, "labels": {"foo": label}}})
}

#[test]
fn index_func_values_and_multi_value_index_keys() {
    let s = pods();
    s.add(pod_users("one", "ernie,bert", "bar")).unwrap();
    s.add(pod_users("two", "bert,oscar", "bar")).unwrap();
    s.add(pod_users("tre", "ernie,elmo", "biz")).unwrap();
    // added after the objects: existing objects are indexed at once
    s.add_indexers(Indexers::from([
        (
            "by_user".to_owned(),
            Arc::new(|o: &Value| {
                o["metadata"]["annotations"]["users"].as_str().unwrap_or("").split(',').map(str::to_owned).collect()
            }) as _,
        ),
        (
            "testmodes".to_owned(),
            Arc::new(|o: &Value| o["metadata"]["labels"]["foo"].as_str().map(|s| vec![s.into()]).unwrap_or_default())
                as _,
        ),
    ]))
    .unwrap();
    assert_eq!(s.list_index_func_values("testmodes").unwrap(), ["bar", "biz"]);
    assert!(s.list_index_func_values("unknown").unwrap().is_empty());
    for (user, keys) in
        [("ernie", vec!["one", "tre"]), ("bert", vec!["one", "two"]), ("elmo", vec!["tre"]), ("oscar", vec!["two"])]
    {
        assert_eq!(names(&s.by_index("by_user", user).unwrap()), keys, "user {user}");
    }
    s.delete(&pod_users("tre", "", "")).unwrap();
    assert!(s.by_index("by_user", "elmo").unwrap().is_empty());
    s.update(pod_users("one", "oscar", "bar")).unwrap();
    assert_eq!(names(&s.by_index("by_user", "bert").unwrap()), ["two"]);
    assert_eq!(names(&s.by_index("by_user", "oscar").unwrap()), ["one", "two"]);
    assert_eq!(s.index_keys("by_user", "oscar").unwrap(), ["ns/one", "ns/two"]);
    // tre's "biz" left with it; an object without the label adds no value
    s.add(pod("other", "x", 1)).unwrap();
    s.resync().unwrap();
    assert_eq!(s.list_index_func_values("testmodes").unwrap(), ["bar"]);
}

#[test]
fn repository_is_strict() {
    let repo = Repository::new(pods());
    repo.create(pod("ns1", "a", 1)).unwrap();
    repo.create(pod("ns2", "a", 2)).unwrap();
    repo.create(json!({"metadata": {"name": "global"}})).unwrap();
    let e = repo.create(pod("ns1", "a", 3)).unwrap_err();
    assert!(matches!(&e, Error::AlreadyExists { key, .. } if key == "ns1/a"), "{e}");
    assert!(e.to_string().contains("ns1/a"));
    let e = repo.update(pod("ns1", "missing", 4)).unwrap_err();
    assert!(matches!(&e, Error::NotFound { key, .. } if key == "ns1/missing"), "{e}");
    let e = repo.delete(Some("ns3"), "a").unwrap_err();
    assert!(matches!(&e, Error::NotFound { key, .. } if key == "ns3/a"), "{e}");
    assert!(matches!(repo.get(Some("ns1"), "zzz"), Err(Error::NotFound { .. })));
    repo.update(with_labels(pod("ns1", "a", 5), &[("v", "2")])).unwrap();
    assert_eq!(repo.get(Some("ns1"), "a").unwrap()["metadata"]["labels"]["v"], "2");
    assert_eq!(repo.get(None, "global").unwrap()["metadata"]["name"], "global");
    assert_eq!(names(&repo.list(Some("ns1")).unwrap()), ["a"]);
    assert_eq!(repo.list(None).unwrap().len(), 3);
    repo.delete(Some("ns1"), "a").unwrap();
    assert!(matches!(repo.get(Some("ns1"), "a"), Err(Error::NotFound { .. })));
    assert!(repo.list(Some("ns1")).unwrap().is_empty());
}
