//! A resource's writer thread: applies the ingester's writes and list pages in order, folding queued ones into
//! one transaction.

use tokio::sync::mpsc;

use super::RESUME_RV;
use crate::raw::Prepared;
use crate::store::{RowOp, Staging, Store};
use crate::{Error, Result};

/// Objects per transaction at most when the writer folds queued batches together.
const MAX_TX: usize = 5_000;
/// Batches queued for the writer: enough to keep it busy while the next page is fetched and decoded, few enough
/// that memory stays at a few pages.
const QUEUE: usize = 8;

/// Work for a resource's writer thread.
pub(super) enum Cmd {
    Write { ops: Vec<RowOp>, resume: Option<u64> },
    ListStart,
    ListItems(Vec<Prepared>),
    ListDone { list_rv: u64 },
}

/// The writer thread: applies commands in order, folding runs of queued writes (or list pages) into one
/// transaction. Ends when every sender is gone (after the queue is drained) or on the first store error.
fn writer(store: Store, mut rx: mpsc::Receiver<Cmd>) -> Result<()> {
    let mut staging: Option<Staging> = None;
    let mut next: Option<Cmd> = None;
    loop {
        let cmd = match next.take() {
            Some(c) => c,
            None => match rx.blocking_recv() {
                Some(c) => c,
                None => return Ok(()),
            },
        };
        match cmd {
            Cmd::Write { mut ops, mut resume } => {
                while ops.len() < MAX_TX {
                    match rx.try_recv() {
                        Ok(Cmd::Write { ops: more, resume: r }) => {
                            ops.extend(more);
                            resume = resume.max(r);
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let resume = resume.map(|r| r.to_string());
                store.write_ops(ops, resume.as_deref().map(|r| (RESUME_RV, r)))?;
            }
            Cmd::ListStart => staging = Some(store.stage_begin()?),
            Cmd::ListItems(mut items) => {
                while items.len() < MAX_TX {
                    match rx.try_recv() {
                        Ok(Cmd::ListItems(more)) => items.extend(more),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let st = match &mut staging {
                    Some(st) => st,
                    None => staging.insert(store.stage_begin()?),
                };
                store.stage_items(st, items)?;
            }
            Cmd::ListDone { list_rv } => {
                let st = match staging.take() {
                    Some(st) => st,
                    None => store.stage_begin()?,
                };
                store.stage_commit(st, Some(list_rv), Some((RESUME_RV, &list_rv.to_string())))?;
            }
        }
    }
}

/// The sending side of a writer; `send` fails once the writer stopped, and `finish` returns its result.
pub(super) struct WriterHandle {
    tx: Option<mpsc::Sender<Cmd>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl WriterHandle {
    pub(super) fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        // a dedicated blocking thread for this resource's lifetime: SQLite calls block
        let task = tokio::task::spawn_blocking(move || writer(store, rx));
        Self { tx: Some(tx), task }
    }

    /// False when the writer has stopped (its error comes from `finish`).
    pub(super) async fn send(&self, cmd: Cmd) -> bool {
        match &self.tx {
            Some(tx) => tx.send(cmd).await.is_ok(),
            None => false,
        }
    }

    /// Let the writer drain its queue and stop; its result.
    pub(super) async fn finish(mut self) -> Result<()> {
        self.tx = None;
        (&mut self.task).await.map_err(|e| Error::Join(e.to_string()))?
    }
}
