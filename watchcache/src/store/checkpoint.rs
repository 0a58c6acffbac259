//! WAL checkpoints off the commit path.
//!
//! SQLite's automatic checkpoint runs inside the commit that takes the WAL past its threshold: that write (and
//! the watch event it logged) waits for the WAL to be copied into the database file and synced before the store
//! can announce it (up to 131 ms in a fan-out run at 5,000 pods, where a write commits in about 1 ms). Here the
//! writer connection only notes the WAL's size after each commit, and a thread of the database runs the
//! checkpoint on a connection of its own (a PASSIVE checkpoint goes on beside the writer and the readers) while
//! the writer carries on.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;

use crate::Result;
use crate::error::SqlContext;
use crate::sync::lock;

/// WAL pages between checkpoints outside relists (SQLite's default).
const PAGES: i64 = 1000;
/// Times [`PAGES`] past which the committing writer checkpoints itself.
const BACKSTOP: i64 = 4;
/// Cache of the checkpoint connection: it only copies pages.
const CACHE_KIB: i64 = 1024;

/// The checkpoints of one file database.
pub(crate) struct Checkpointer {
    /// WAL pages after which a commit asks for a checkpoint; 0 while a relist lets the WAL grow.
    limit: Arc<AtomicI64>,
    kick: SyncSender<()>,
}

impl Checkpointer {
    /// Replace the automatic checkpoint of `writer` (in WAL mode) with one on a thread of its own, which ends
    /// when the writer connection and this are dropped.
    pub(super) fn start(path: &Path, shown: &str, writer: &mut Connection) -> Result<Self> {
        let conn = super::open_conn(path, shown, CACHE_KIB)?;
        let limit = Arc::new(AtomicI64::new(PAGES));
        // one pending request is enough: the checkpoint it starts covers every commit before it
        let (kick, rx) = sync_channel(1);
        // held while a checkpoint of ours runs: SQLite refuses a second one at once, without waiting
        let running = Arc::new(Mutex::new(()));
        let (hook_limit, hook_kick, hook_running) = (limit.clone(), kick.clone(), running.clone());
        // a WAL hook replaces SQLite's automatic checkpoint (itself a WAL hook) on this connection
        writer
            .wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: std::ffi::c_int| {
                let (limit, pages) = (hook_limit.load(Ordering::Relaxed), i64::from(pages));
                if limit > 0 && pages >= BACKSTOP * limit {
                    // A writer that never pauses can keep the thread's checkpoints from ever catching up with
                    // the WAL's end, and only a caught-up WAL starts over: this commit waits for the thread's
                    // checkpoint and completes it, as SQLite's own would have. Another process's checkpoint
                    // (busy) is no failure of this commit.
                    let _running = lock(&hook_running);
                    let _ = wal.checkpoint();
                } else if limit > 0 && pages >= limit {
                    ask(&hook_kick);
                }
                Ok(())
            }))
            .ctx(|| format!("WAL hook on {shown}"))?;
        let name = shown.to_owned();
        std::thread::Builder::new()
            .name("watchcache-checkpoint".into())
            .spawn(move || run(conn, rx, &running, &name))
            .map_err(|e| crate::Error::Join(format!("starting the checkpoint thread of {shown}: {e}")))?;
        Ok(Self { limit, kick })
    }

    /// Let the WAL grow until [`Checkpointer::resume`]: a relist writes its pages once, instead of having them
    /// copied into the database file every thousand pages while the list still arrives.
    pub(super) fn pause(&self) {
        self.limit.store(0, Ordering::Relaxed);
    }

    /// Checkpoint every thousand pages again, starting with what has grown meanwhile.
    pub(super) fn resume(&self) {
        self.limit.store(PAGES, Ordering::Relaxed);
        ask(&self.kick);
    }
}

fn ask(kick: &SyncSender<()>) {
    // full: a checkpoint is asked for already; disconnected: the thread ended with its database
    let _ = kick.try_send(());
}

fn run(conn: Connection, rx: Receiver<()>, running: &Mutex<()>, name: &str) {
    while rx.recv().is_ok() {
        let _running = lock(running);
        // PASSIVE: readers still on an older snapshot are not waited for; what they pin is copied next time
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(database = %name, error = %e, "watch-cache checkpoint failed; the next commit retries");
        }
    }
}
