//! The shipper thread: owns the [`Shipper`] (its SQLite connections and locks must stay on one thread) and serves
//! the async side's commands over a channel, one at a time. Between commands it steps aside for the application's
//! checkpoints.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::shipper::{Shipper, SyncReport};
use crate::spool::Loss;

/// A command's answer. One sync can serve several commands, so its error is shared between their callers; each gets
/// it with its type, not as text.
type Reply = oneshot::Sender<Result<SyncReport, Arc<Error>>>;

pub(super) enum Command {
    /// Sync, then deal with what the replicas lost, if anything.
    Sync(Vec<Loss>, Reply),
    Snapshot(Reply),
}

impl Command {
    fn replies(self) -> Vec<Reply> {
        match self {
            Command::Sync(_, reply) | Command::Snapshot(reply) => vec![reply],
        }
    }
}

/// The async side's end of the channel.
#[derive(Clone)]
pub(super) struct ShipperHandle {
    tx: mpsc::Sender<Command>,
}

impl ShipperHandle {
    /// Copy what is new in the WAL (and, when replicas lost objects from the spool, deal with that first).
    pub(super) async fn sync(&self, lost: Vec<Loss>) -> Result<SyncReport> {
        self.request(|reply| Command::Sync(lost, reply)).await
    }

    pub(super) async fn snapshot(&self) -> Result<SyncReport> {
        self.request(Command::Snapshot).await
    }

    async fn request(&self, make: impl FnOnce(Reply) -> Command) -> Result<SyncReport> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(make(reply)).map_err(|_| Error::Cancelled)?;
        rx.await.map_err(|_| Error::Cancelled)?.map_err(Error::unshare)
    }
}

/// Start the shipper's thread. When the database is deleted or replaced under it, it lets go of the old file (whose
/// WAL and locks the application no longer uses) and, at the next command, opens whatever is at the path then, as a
/// restart would: a new generation. The thread ends, closing the shipper, once every [`ShipperHandle`] is dropped.
pub(super) fn spawn(
    shipper: Shipper,
    reopen: impl Fn() -> Result<Shipper> + Send + 'static,
    stepped_aside: impl Fn(&SyncReport) + Send + 'static,
) -> Result<(ShipperHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let name =
        format!("litecar-ship-{}", shipper.db_path().file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    let span = tracing::Span::current();
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let _span = span.entered();
            serve(shipper, reopen, &rx, stepped_aside)
        })
        .map_err(|e| Error::Io { path: PathBuf::from("shipper thread"), source: e })?;
    Ok((ShipperHandle { tx }, thread))
}

fn serve(
    shipper: Shipper,
    reopen: impl Fn() -> Result<Shipper>,
    rx: &mpsc::Receiver<Command>,
    stepped_aside: impl Fn(&SyncReport),
) {
    let mut current = Some(shipper);
    let mut last_write = Instant::now();
    loop {
        // Between commands: is another process's checkpoint waiting for our read lock? Every millisecond while the
        // database is being written (writers would wait behind that checkpoint), less often when idle (syncs still
        // come every monitor-interval then, finding nothing new).
        let poll = if last_write.elapsed() < COOPERATE_IDLE_AFTER { COOPERATE_POLL } else { COOPERATE_POLL_IDLE };
        let cmd = match rx.recv_timeout(poll) {
            Ok(cmd) => cmd,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(s) = current.as_mut()
                    && cooperate(s, &stepped_aside)
                {
                    last_write = Instant::now();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let shipper = match current {
            Some(ref mut s) => s,
            None => match reopen() {
                Ok(s) => {
                    tracing::info!("replicating the database file now at the path");
                    current.insert(s)
                }
                Err(e) => {
                    send_all(cmd.replies(), Err(Arc::new(e)));
                    continue;
                }
            },
        };
        let wrote = |r: &Result<SyncReport>| r.as_ref().is_ok_and(|r| r.bytes > 0 || !r.app_waits.is_empty());
        let replaced = match cmd {
            Command::Sync(mut lost, reply) => {
                // Coalesce a burst of queued syncs into this one.
                let mut replies = vec![reply];
                let mut snapshot = vec![];
                while let Ok(more) = rx.try_recv() {
                    match more {
                        Command::Sync(more_lost, r) => {
                            lost.extend(more_lost);
                            replies.push(r);
                        }
                        Command::Snapshot(r) => snapshot.push(r),
                    }
                }
                let mut result = if lost.is_empty() { shipper.sync() } else { shipper.objects_lost(&lost) };
                if result.is_ok() && shipper.snapshot_due_by_size() {
                    result = shipper.snapshot_by_size();
                }
                let replaced = matches!(result, Err(Error::Replaced { .. }));
                if wrote(&result) {
                    last_write = Instant::now();
                }
                let result = result.map_err(Arc::new);
                // A replaced file gets no snapshot: the one at the path starts its own generation.
                let for_snapshot = (replaced && !snapshot.is_empty()).then(|| result.clone());
                send_all(replies, result);
                if !snapshot.is_empty() {
                    send_all(snapshot, for_snapshot.unwrap_or_else(|| shipper.snapshot().map_err(Arc::new)));
                }
                replaced
            }
            Command::Snapshot(reply) => {
                let result = shipper.snapshot();
                let replaced = matches!(result, Err(Error::Replaced { .. }));
                send_all(vec![reply], result.map_err(Arc::new));
                replaced
            }
        };
        if replaced && let Some(old) = current.take() {
            close(old);
        }
        // A command may have given up the write lock to a checkpoint that waits for us.
        if let Some(s) = current.as_mut() {
            _ = cooperate(s, &stepped_aside);
        }
    }
    if let Some(shipper) = current {
        close(shipper);
    }
}

/// How often the shipper thread looks, between commands, for another process's checkpoint waiting for its read lock.
const COOPERATE_POLL: Duration = Duration::from_millis(1);
/// …and once no sync found anything new for this long (nothing is being written), this often: an idle poll costs a
/// thread wake-up and a system call, and a checkpoint of an idle database holds up no writer.
const COOPERATE_POLL_IDLE: Duration = Duration::from_millis(10);
const COOPERATE_IDLE_AFTER: Duration = Duration::from_secs(2);

/// Whether it stepped aside (the application is busy with its database).
fn cooperate(shipper: &mut Shipper, stepped_aside: &impl Fn(&SyncReport)) -> bool {
    match shipper.cooperate() {
        Ok(Some(report)) => {
            stepped_aside(&report);
            return true;
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "stepping aside for the application's checkpoint failed"),
    }
    false
}

fn close(shipper: Shipper) {
    if let Err(e) = shipper.close() {
        tracing::warn!(error = %e, "releasing the read lock failed");
    }
}

/// Answer every reply with `result`; the last one gets it unshared, so that a lone caller owns its error.
fn send_all(replies: Vec<Reply>, result: std::result::Result<SyncReport, Arc<Error>>) {
    let mut replies = replies.into_iter().peekable();
    while let Some(reply) = replies.next() {
        if replies.peek().is_none() {
            _ = reply.send(result);
            return;
        }
        _ = reply.send(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_caller_of_a_failed_sync_gets_the_error_with_its_type() {
        let (replies, receivers): (Vec<_>, Vec<_>) = (0..3).map(|_| oneshot::channel()).unzip();
        send_all(replies, Err(Arc::new(Error::Replaced { path: PathBuf::from("app.db") })));
        for rx in receivers {
            let e = rx.await.expect("a reply").map_err(Error::unshare).expect_err("the sync's error");
            assert!(matches!(e.root(), Error::Replaced { path } if path == &PathBuf::from("app.db")), "{e:?}");
        }
        let (reply, rx) = oneshot::channel();
        send_all(vec![reply], Err(Arc::new(Error::Cancelled)));
        let lone = rx.await.expect("a reply").map_err(Error::unshare).expect_err("the error");
        assert!(matches!(lone, Error::Cancelled), "a lone caller owns its error: {lone:?}");
        assert!(lone.is_permanent());
    }
}
