//! PASSIVE checkpoints on a thread of their own. Copying frames into the database file, with its fsyncs, can take
//! tens of milliseconds on a busy disk; on the shipping thread that time would be added to the replication lag of
//! every commit made meanwhile. A PASSIVE checkpoint never blocks the application and only copies frames up to our
//! read lock, which are already shipped, so it can run beside shipping.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;

pub struct Checkpointer {
    requests: Option<mpsc::Sender<()>>,
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    pub fn start(conn: Connection, db: PathBuf) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<()>();
        let running = Arc::new(AtomicBool::new(false));
        let flag = running.clone();
        let name = format!("litecar-ckpt-{}", db.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        // The database's span is the caller's (the shipper thread's): its events need no `db` field of their own.
        let span = tracing::Span::current();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let _span = span.entered();
            while rx.recv().is_ok() {
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "background checkpoint failed");
                }
                flag.store(false, Ordering::Release);
            }
            if let Err((_, e)) = conn.close() {
                tracing::warn!(error = %e, "closing the checkpoint connection failed");
            }
        })?;
        Ok(Self { requests: Some(tx), running, thread: Some(thread) })
    }

    /// Start a checkpoint unless one is running.
    pub fn request(&self) {
        if let Some(tx) = &self.requests
            && !self.running.swap(true, Ordering::AcqRel)
            && tx.send(()).is_err()
        {
            self.running.store(false, Ordering::Release);
        }
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Wait for a running checkpoint and close the connection.
    pub fn stop(&mut self) {
        self.requests = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}
