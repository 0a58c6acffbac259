//! Watch fan-out: many watchers on one store share one reader of the log; each sees every event once, in order,
//! whether it follows the live ring, starts behind it, or falls out of it within the lag limit.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::*;
use litecar_watchcache::{Store, WatchSession, WriteOp};
use tokio_util::sync::CancellationToken;

/// Write pods p{from}..=p{to} (resource version = number), `batch` per transaction.
fn write_pods(s: &Store, from: u64, to: u64, batch: u64) {
    let mut i = from;
    while i <= to {
        let end = (i + batch - 1).min(to);
        s.write((i..=end).map(|n| WriteOp::Upsert(pod("ns", &format!("p{n}"), n))).collect()).unwrap();
        i = end + 1;
    }
}

async fn collect(w: &mut WatchSession, n: usize) -> Vec<u64> {
    let mut rvs = Vec::with_capacity(n);
    while rvs.len() < n {
        let e = tokio::time::timeout(Duration::from_secs(30), w.next()).await.unwrap().unwrap().unwrap();
        rvs.push(e.rv);
    }
    rvs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_watchers_each_see_every_event_once_in_order() {
    let s = pods();
    s.add(pod("ns", "p1", 1)).unwrap();
    let cancel = CancellationToken::new();
    let mut watchers: Vec<WatchSession> = (0..300).map(|_| s.watch(1, cancel.clone()).unwrap()).collect();
    let writer = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || {
            for i in 2..=201 {
                write_pods(&s, i, i, 1);
            }
        })
    };
    let readers: Vec<_> =
        watchers.drain(..).map(|mut w| tokio::spawn(async move { collect(&mut w, 200).await })).collect();
    for r in readers {
        assert_eq!(r.await.unwrap(), (2..=201).collect::<Vec<_>>());
    }
    writer.await.unwrap();
    // one that joins later starts where it asked
    let mut late = s.watch(150, cancel.clone()).unwrap();
    assert_eq!(collect(&mut late, 51).await, (151..=201).collect::<Vec<_>>());
    cancel.cancel();
    assert!(tokio::time::timeout(Duration::from_secs(5), late.next()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_starting_far_behind_catches_up_from_the_log_while_writes_go_on() {
    let s = pods();
    write_pods(&s, 1, 3000, 500);
    let mut w = s.watch(1, CancellationToken::new()).unwrap();
    let writer = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || write_pods(&s, 3001, 3500, 1))
    };
    assert_eq!(collect(&mut w, 3499).await, (2..=3500).collect::<Vec<_>>());
    writer.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_that_falls_out_of_the_ring_within_the_lag_limit_misses_nothing() {
    let s = pods();
    s.add(pod("ns", "p1", 1)).unwrap();
    let mut idle = s.watch(1, CancellationToken::new()).unwrap();
    let mut fast = s.watch(1, CancellationToken::new()).unwrap();
    let writer = {
        let s = s.clone();
        tokio::task::spawn_blocking(move || write_pods(&s, 2, 4001, 10))
    };
    // the fast watcher saw all 4,000 through the ring, so the ring has moved on far past the idle one
    assert_eq!(collect(&mut fast, 4000).await, (2..=4001).collect::<Vec<_>>());
    writer.await.unwrap();
    assert_eq!(collect(&mut idle, 4000).await, (2..=4001).collect::<Vec<_>>());
}
