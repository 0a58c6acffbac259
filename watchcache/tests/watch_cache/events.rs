//! Event log, compaction, state_at and watch sessions.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use litecar_watchcache::{Error, EventType, WriteOp};
use tokio_util::sync::CancellationToken;

#[test]
fn log_records_adds_updates_deletes_with_resource_versions() {
    let s = pods();
    s.add(pod("ns", "a", 10)).unwrap();
    s.add(pod("ns", "b", 11)).unwrap();
    s.update(with_labels(pod("ns", "a", 12), &[("x", "1")])).unwrap();
    // an identical write is not a change
    s.update(with_labels(pod("ns", "a", 12), &[("x", "1")])).unwrap();
    s.delete(&pod("ns", "b", 13)).unwrap();
    let evs = s.list_since(0).unwrap();
    let got: Vec<(u64, EventType, &str)> = evs.iter().map(|e| (e.rv, e.kind, e.key.as_str())).collect();
    assert_eq!(
        got,
        [
            (10, EventType::Added, "ns/a"),
            (11, EventType::Added, "ns/b"),
            (12, EventType::Modified, "ns/a"),
            (13, EventType::Deleted, "ns/b")
        ]
    );
    assert_eq!(s.list_since(11).unwrap().len(), 2);
    assert!(s.list_since(13).unwrap().is_empty());
    assert_eq!(evs[2].to_wire()["type"], "MODIFIED");
}

#[test]
fn replace_logs_the_difference() {
    let s = pods();
    s.replace(vec![pod("ns", "a", 1), pod("ns", "b", 2)], Some("2")).unwrap();
    s.replace(vec![pod("ns", "a", 1), pod("ns", "c", 5)], Some("7")).unwrap();
    // the first list is where the log starts: older revisions cannot be proven complete
    assert!(matches!(s.list_since(1), Err(Error::Expired { .. })));
    let evs = s.list_since(2).unwrap();
    let got: Vec<(u64, EventType, &str)> = evs.iter().map(|e| (e.rv, e.kind, e.key.as_str())).collect();
    // each difference gets a revision of its own, in commit order, ending at the list's revision
    assert_eq!(got, [(6, EventType::Added, "ns/c"), (7, EventType::Deleted, "ns/b")]);
    assert_eq!(evs[0].object["metadata"]["resourceVersion"], "6");
    assert_eq!(evs[1].object["metadata"]["resourceVersion"], "7");
    assert_eq!(s.get_by_key("ns/c").unwrap().unwrap()["metadata"]["resourceVersion"], "6");
    assert_eq!(s.last_resource_version().unwrap(), 7);
}

#[test]
fn state_at_answers_for_objects_and_lists() {
    let s = pods();
    s.add(pod("ns", "a", 10)).unwrap();
    s.add(pod("ns", "b", 20)).unwrap();
    s.update(with_labels(pod("ns", "a", 30), &[("v", "2")])).unwrap();
    s.delete(&pod("ns", "b", 40)).unwrap();
    assert_eq!(s.state_at("ns/a", 5).unwrap(), None);
    assert_eq!(s.state_at("ns/a", 25).unwrap().unwrap()["metadata"]["resourceVersion"], "10");
    assert_eq!(s.state_at("ns/a", 30).unwrap().unwrap()["metadata"]["labels"]["v"], "2");
    assert!(s.state_at("ns/b", 39).unwrap().is_some());
    assert_eq!(s.state_at("ns/b", 40).unwrap(), None);
    assert_eq!(names(&s.list_at(25).unwrap()), ["a", "b"]);
    assert_eq!(names(&s.list_at(45).unwrap()), ["a"]);
}

#[test]
fn compaction_expires_old_revisions_but_keeps_state() {
    let s = pods();
    for rv in 1..=10 {
        s.add(with_labels(pod("ns", "a", rv), &[("n", &rv.to_string())])).unwrap();
    }
    s.add(pod("ns", "gone", 11)).unwrap();
    s.delete(&pod("ns", "gone", 12)).unwrap();
    s.add(pod("ns", "b", 13)).unwrap();
    assert!(s.compact(8).unwrap() > 0);
    let e = s.list_since(7).unwrap_err();
    assert!(matches!(e, Error::Expired { requested: 7, compacted: 8, .. }), "{e}");
    assert!(matches!(s.state_at("ns/a", 7), Err(Error::Expired { .. })));
    assert_eq!(s.state_at("ns/a", 8).unwrap().unwrap()["metadata"]["labels"]["n"], "8");
    assert_eq!(s.list_since(8).unwrap().iter().map(|e| e.rv).collect::<Vec<_>>(), [9, 10, 11, 12, 13]);
    // by count: keep the newest 2 events
    s.compact_keep_last(2).unwrap();
    assert_eq!(s.list_since(11).unwrap().iter().map(|e| e.rv).collect::<Vec<_>>(), [12, 13]);
    assert!(s.list_since(10).is_err());
    assert_eq!(names(&s.list_at(12).unwrap()), ["a"]);
    assert_eq!(names(&s.list_at(13).unwrap()), ["a", "b"]);
    // by age: everything is older than zero seconds
    std::thread::sleep(Duration::from_millis(5));
    s.compact_older_than(Duration::ZERO).unwrap();
    assert!(matches!(s.list_since(12), Err(Error::Expired { compacted: 13, .. })));
    assert_eq!(names(&s.list_at(13).unwrap()), ["a", "b"]);
}

#[tokio::test]
async fn snapshot_then_watch_sees_every_later_event_once_in_order() {
    let s = pods();
    s.add(pod("ns", "a", 1)).unwrap();
    let (items, rv) = s.snapshot().unwrap();
    assert_eq!((names(&items), rv), (vec!["a".to_owned()], 1));
    s.add(pod("ns", "b", 2)).unwrap();
    let cancel = CancellationToken::new();
    let mut w1 = s.watch(rv, cancel.clone()).unwrap();
    let mut w2 = s.watch(rv, cancel.clone()).unwrap();
    let writer = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || {
            for i in 3..=50u64 {
                let ops = vec![WriteOp::Upsert(pod("ns", &format!("p{i}"), i))];
                s.write(ops).unwrap();
            }
            s.write(vec![WriteOp::Delete { key: "ns/a".into(), object: Some(pod("ns", "a", 51)) }]).unwrap();
        })
    };
    for w in [&mut w1, &mut w2] {
        let mut rvs = Vec::new();
        while rvs.len() < 50 {
            let e = tokio::time::timeout(Duration::from_secs(10), w.next()).await.unwrap().unwrap().unwrap();
            rvs.push(e.rv);
        }
        assert_eq!(rvs, (2..=51).collect::<Vec<_>>());
    }
    writer.await.unwrap();
    cancel.cancel();
    assert!(tokio::time::timeout(Duration::from_secs(5), w1.next()).await.unwrap().is_none());
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_expired() {
    let s = pods();
    for rv in 1..=5 {
        s.add(pod("ns", &format!("p{rv}"), rv)).unwrap();
    }
    s.compact(4).unwrap();
    assert!(matches!(s.watch(2, CancellationToken::new()), Err(Error::Expired { .. })));
    let mut w = s.watch(4, CancellationToken::new()).unwrap();
    assert_eq!(w.next().await.unwrap().unwrap().rv, 5);
}

#[tokio::test]
async fn a_relist_logs_changes_and_deletes_that_a_watcher_at_the_last_revision_sees() {
    let s = pods();
    s.replace(vec![pod("ns", "a", 1), pod("ns", "b", 2), pod("ns", "c", 3)], None).unwrap();
    assert_eq!(s.last_resource_version().unwrap(), 3);
    let mut w = s.watch(3, CancellationToken::new()).unwrap();
    // b changed and c vanished while we were not watching; without the list's own revision the changes take
    // the revisions just after everything seen so far, one each, in commit order
    s.replace(vec![pod("ns", "a", 1), with_labels(pod("ns", "b", 5), &[("v", "2")])], None).unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().unwrap().unwrap();
        got.push((e.kind, e.key.clone(), e.rv, e.object["metadata"]["resourceVersion"].clone()));
    }
    assert_eq!(
        got,
        [
            (EventType::Modified, "ns/b".to_owned(), 4, serde_json::json!("4")),
            (EventType::Deleted, "ns/c".to_owned(), 5, serde_json::json!("5")),
        ]
    );
    assert_eq!(s.last_resource_version().unwrap(), 5);
    // the versions the relist replaced are still in the log
    assert!(s.state_at("ns/b", 3).unwrap().unwrap()["metadata"].get("labels").is_none());
    assert_eq!(s.state_at("ns/b", 4).unwrap().unwrap()["metadata"]["labels"]["v"], "2");
    assert_eq!(s.state_at("ns/c", 4).unwrap().unwrap()["metadata"]["resourceVersion"], "3");
    assert_eq!(s.state_at("ns/c", 5).unwrap(), None);
    assert_eq!(names(&s.list_at(3).unwrap()), ["a", "b", "c"]);
    // an unchanged relist logs nothing
    s.replace(vec![pod("ns", "a", 1), with_labels(pod("ns", "b", 5), &[("v", "2")])], None).unwrap();
    assert_eq!(s.list_since(5).unwrap().len(), 0);
    assert_eq!(s.get_by_key("ns/b").unwrap().unwrap()["metadata"]["resourceVersion"], "4");
    // and a watch event that repeats what the relist logged is no change either
    s.add(with_labels(pod("ns", "b", 5), &[("v", "2")])).unwrap();
    assert_eq!(s.list_since(5).unwrap().len(), 0);
    // an upstream change older than the log's revision is logged after it, with a revision of its own
    s.add(pod("ns", "a", 2)).unwrap();
    let evs = s.list_since(5).unwrap();
    assert_eq!((evs[0].rv, evs[0].object["metadata"]["resourceVersion"].clone()), (6, serde_json::json!("6")));
    // a watcher never sees resourceVersions go backwards
    let all = s.list_since(3).unwrap();
    assert!(all.windows(2).all(|w| w[0].rv < w[1].rv), "{all:?}");
}

#[test]
fn a_version_newer_than_the_store_is_refused() {
    let s = pods();
    s.replace(vec![pod("ns", "a", 1)], Some("10")).unwrap();
    assert!(matches!(s.list_since(11), Err(Error::TooNew { .. })));
    assert!(s.list_since(10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_cut_off_and_the_others_see_everything() {
    let s = pods();
    s.add(pod("ns", "p0", 1)).unwrap();
    s.set_watch_lag_limit(50);
    let mut slow = s.watch(1, CancellationToken::new()).unwrap();
    let mut fast = s.watch(1, CancellationToken::new()).unwrap();
    // the fast watcher reads each event as it is written (never more than one behind); the slow one never reads
    for i in 2..=200u64 {
        s.add(pod("ns", &format!("p{i}"), i)).unwrap();
        let e = tokio::time::timeout(Duration::from_secs(10), fast.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(e.rv, i);
    }
    // the slow one gets at most what the shared ring still held for it, in order, then the cut-off instead of
    // the rest
    let mut got = Vec::new();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), slow.next()).await.unwrap() {
            Some(Ok(e)) => got.push(e.rv),
            Some(Err(e)) => break e,
            None => panic!("the slow watcher ended without an error after {got:?}"),
        }
    };
    assert!(matches!(end, Error::TooSlow { .. }), "{end}");
    assert!(end.to_string().contains("behind"), "{end}");
    assert!(got.len() < 199, "a slow watcher was sent everything: {}", got.len());
    assert!(got.windows(2).all(|w| w[0] + 1 == w[1]) && got.first().is_none_or(|f| *f == 2), "{got:?}");
}
