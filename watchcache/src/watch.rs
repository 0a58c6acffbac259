//! Watch fan-out: one reader of the event log per store publishes every committed event once, decoded once,
//! into a shared ring (a tokio broadcast channel); each watcher follows the ring with its own cursor.
//!
//! A watcher therefore costs a cursor, not a task, a queue or a read of the log per event, and a slow one holds
//! no memory: the ring is shared and fixed in size. A watcher that starts behind the ring (resuming from an
//! older revision) or falls out of it reads the log itself, a chunk at a time, until it reaches the ring; one
//! more than the lag limit behind the log's head is cut off with `TooSlow` (the API answers 410 and the client
//! relists), as the API server's watch cache drops a watcher that cannot keep up.
//!
//! Ordering: a watcher subscribes to the ring before it reads the log, so every event committed after that
//! read is in the ring; what it has already read (seq at or below its cursor) is skipped there.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::event::WatchEvent;
use crate::store::{Inner, Store};
use crate::sync::lock;
use crate::{Error, Result};

/// Events a store's ring holds: about 10 MB of decoded 2 KB pods. A watcher further behind reads the log.
const RING: usize = 1024;
/// Events the publisher reads from the log at once.
const PUBLISH_CHUNK: i64 = 256;
/// Events a watcher catching up reads from the log at once: the most it holds beyond its cursor.
const CATCH_UP_CHUNK: i64 = 64;

impl Store {
    /// Every event after revision `rv`, then live events as they commit, until `cancel` or the session is
    /// dropped. Fails at once with `Expired` if `rv` is compacted away (or before the log starts) and `TooNew`
    /// if it is newer than the store. A watcher more than [`Store::set_watch_lag_limit`] events behind the
    /// log's head (or than it started, if more) when it falls out of the shared ring is cut off (`TooSlow`,
    /// after the events it was sent): a client resuming from far back may catch up, one that does not read
    /// may not fall further behind.
    pub fn watch(&self, rv: u64, cancel: CancellationToken) -> Result<WatchSession> {
        let live = self.subscribe();
        let last_seq = self.read(|c, n| self.start_seq(c, n, rv))?;
        Ok(WatchSession {
            store: self.clone(),
            last_seq,
            started_behind: self.behind(last_seq),
            live,
            catching_up: true,
            backlog: VecDeque::new(),
            cancel,
            done: false,
        })
    }

    /// How far (in events) a watcher may fall behind the log's head before it is cut off.
    pub fn set_watch_lag_limit(&self, events: usize) {
        self.inner.watch_lag_limit.store(events, Ordering::Relaxed);
    }

    /// Events committed after `seq`, by the last notification.
    fn behind(&self, seq: i64) -> u64 {
        (*self.inner.notify.borrow() - seq).max(0) as u64
    }

    /// A receiver of the ring, starting its publisher if nobody watches yet.
    fn subscribe(&self) -> broadcast::Receiver<Arc<WatchEvent>> {
        let mut slot = lock(&self.inner.fanout);
        if let Some(tx) = slot.as_ref() {
            return tx.subscribe();
        }
        let capacity = self.inner.watch_lag_limit.load(Ordering::Relaxed).clamp(1, RING);
        let (tx, rx) = broadcast::channel(capacity);
        let mut notified = self.inner.notify.subscribe();
        // taken now, not when the task first runs: the subscriber's first read of the log happens after this,
        // so whatever commits after it reaches the subscriber through the ring
        let from = *notified.borrow_and_update();
        tokio::spawn(publish(Arc::downgrade(&self.inner), tx.clone(), notified, from));
        *slot = Some(tx);
        rx
    }

    /// Take the ring `tx` out of service (if it still is); with `idle`, only when nobody receives from it.
    /// Returns whether it was taken out.
    fn retire(&self, tx: &broadcast::Sender<Arc<WatchEvent>>, idle: bool) -> bool {
        let mut slot = lock(&self.inner.fanout);
        if idle && tx.receiver_count() > 0 {
            return false;
        }
        if slot.as_ref().is_some_and(|s| s.same_channel(tx)) {
            *slot = None;
        }
        true
    }
}

/// Read the log after `last_seq` as commits are notified and publish each event into the ring. Ends when the
/// store is dropped, when nobody watches, or on a read error (the watchers then read the log themselves and
/// meet the error there, or start a new publisher).
async fn publish(
    inner: Weak<Inner>,
    tx: broadcast::Sender<Arc<WatchEvent>>,
    mut notified: tokio::sync::watch::Receiver<i64>,
    mut last_seq: i64,
) {
    loop {
        let head = *notified.borrow_and_update();
        if head <= last_seq {
            if notified.changed().await.is_err() {
                return;
            }
            continue;
        }
        let Some(inner) = inner.upgrade() else { return };
        let store = Store { inner };
        if tx.receiver_count() == 0 && store.retire(&tx, true) {
            return;
        }
        let s = store.clone();
        let from = last_seq;
        let read = tokio::task::spawn_blocking(move || -> Result<Vec<WatchEvent>> {
            let evs = s.events_after_seq(from, PUBLISH_CHUNK)?;
            // encoded here, off the executor, so no watcher waits for (or blocks a worker thread on) the first
            // encoding of an event everyone sends
            for e in &evs {
                e.wire_line();
            }
            Ok(evs)
        })
        .await;
        let evs = match read.map_err(|e| Error::Join(e.to_string())).and_then(|r| r) {
            Ok(evs) => evs,
            Err(e) => {
                tracing::warn!(resource = %store.name(), error = %e, "watch fan-out: reading the event log failed");
                store.retire(&tx, false);
                return;
            }
        };
        if evs.is_empty() {
            // compaction removed superseded events past our position; nothing is left to send below the head
            last_seq = head;
            continue;
        }
        for e in evs {
            last_seq = e.seq;
            // no receivers is not an error: the next turn retires the ring
            let _ = tx.send(Arc::new(e));
        }
    }
}

/// Events of one watcher; ends on cancellation. An `Err` (Expired after compaction overtook a slow reader,
/// TooSlow when it fell too far behind) is the last item.
pub struct WatchSession {
    store: Store,
    /// The last event handed out (or the start point).
    last_seq: i64,
    /// How far behind the log's head the session started: it may stay that far behind, if more than the limit.
    started_behind: u64,
    live: broadcast::Receiver<Arc<WatchEvent>>,
    /// Reading the log until a read comes back short: the ring has everything after that.
    catching_up: bool,
    backlog: VecDeque<WatchEvent>,
    cancel: CancellationToken,
    done: bool,
}

impl WatchSession {
    pub async fn next(&mut self) -> Option<Result<Arc<WatchEvent>>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(e) = self.backlog.pop_front() {
                self.last_seq = e.seq;
                return Some(Ok(Arc::new(e)));
            }
            if self.catching_up {
                if let Some(e) = self.too_slow() {
                    return self.end(Some(e));
                }
                let from = self.last_seq;
                let read = self.store.off_thread(move |s| s.events_after_seq(from, CATCH_UP_CHUNK));
                let evs = tokio::select! {
                    _ = self.cancel.cancelled() => return self.end(None),
                    r = read => match r {
                        Ok(evs) => evs,
                        Err(e) => return self.end(Some(e)),
                    },
                };
                self.catching_up = evs.len() as i64 == CATCH_UP_CHUNK;
                self.backlog = evs.into();
                continue;
            }
            let received = tokio::select! {
                _ = self.cancel.cancelled() => return self.end(None),
                r = self.live.recv() => r,
            };
            match received {
                Ok(e) if e.seq <= self.last_seq => {}
                Ok(e) => {
                    self.last_seq = e.seq;
                    return Some(Ok(e));
                }
                // fell out of the ring: read the log if still within the limit
                Err(RecvError::Lagged(_)) => self.rejoin(),
                // the publisher stopped (a failed read): read the log, which reports the error if it persists
                Err(RecvError::Closed) => self.rejoin(),
            }
        }
    }

    /// `TooSlow` if the session is further behind the log's head than it may be.
    fn too_slow(&self) -> Option<Error> {
        let behind = self.store.behind(self.last_seq);
        let limit = self.store.inner.watch_lag_limit.load(Ordering::Relaxed) as u64;
        (behind > limit.max(self.started_behind))
            .then(|| Error::TooSlow { resource: self.store.name().to_owned(), behind })
    }

    /// Subscribe again and read the log from the cursor up to the ring.
    fn rejoin(&mut self) {
        self.live = self.store.subscribe();
        self.catching_up = true;
    }

    fn end(&mut self, e: Option<Error>) -> Option<Result<Arc<WatchEvent>>> {
        self.done = true;
        self.backlog.clear();
        e.map(Err)
    }

    pub fn into_stream(self) -> impl futures::Stream<Item = Result<Arc<WatchEvent>>> + Send + 'static {
        futures::stream::unfold(self, |mut s| async move { s.next().await.map(|e| (e, s)) })
    }
}
