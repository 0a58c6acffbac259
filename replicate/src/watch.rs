//! When to sync: file-system events while the database is quiet, a short fixed cadence while it is busy.
//!
//! inotify reports every `write()` the application makes to its WAL, one per frame. While the application writes
//! continuously, reading those events costs the notify thread about a fifth of litecar's CPU, and each event would
//! ship a segment of its own. So once syncs keep finding new frames, the watch is removed and we sync every
//! [`BUSY_INTERVAL`] instead (batching the commits of that interval into one segment); the first sync that finds
//! nothing puts the watch back and syncs once more, so a commit made before the watch was back is not missed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::Notify;

/// Sync cadence while the application writes continuously: the lag it adds stays far below the 50 ms budget.
pub const BUSY_INTERVAL: Duration = Duration::from_millis(10);
/// Two syncs this close together that both found new frames mean the application is writing continuously.
const BUSY_THRESHOLD: Duration = Duration::from_millis(50);

pub struct WalWatch {
    dir: PathBuf,
    /// `None` where the file system offers no events: polling at `monitor-interval` only.
    watcher: Option<notify::RecommendedWatcher>,
    armed: bool,
    busy: bool,
    /// Syncs this close together that both found new frames mean the application writes continuously.
    busy_threshold: Duration,
    last_found: Option<Instant>,
}

impl WalWatch {
    /// Watch the database's directory, waking `wake` on writes to the database or its WAL. `sync_interval` is the
    /// shortest time the caller leaves between syncs.
    pub fn new(db: &Path, wake: Arc<Notify>, sync_interval: Duration) -> Self {
        let dir = db.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
        let watcher = db.file_name().and_then(|name| new_watcher(name.to_owned(), wake));
        let busy_threshold = BUSY_THRESHOLD + sync_interval;
        let mut watch = Self { dir, watcher, armed: false, busy: false, busy_threshold, last_found: None };
        watch.arm();
        watch
    }

    /// How long to wait for an event before syncing anyway.
    pub fn wait(&self, monitor_interval: Duration) -> Duration {
        if self.busy { BUSY_INTERVAL.min(monitor_interval) } else { monitor_interval }
    }

    /// Record what a sync found; `true` when the caller must sync once more right away (the watch was just put
    /// back, and a commit may have landed between that sync and the watch).
    pub fn after_sync(&mut self, found_frames: bool) -> bool {
        let now = Instant::now();
        let recently = self.last_found.is_some_and(|t| now.duration_since(t) < self.busy_threshold);
        if found_frames {
            self.last_found = Some(now);
        }
        match (self.busy, found_frames) {
            (false, true) if recently && self.watcher.is_some() => {
                self.busy = true;
                self.disarm();
                false
            }
            (true, false) => {
                self.busy = false;
                self.arm();
                true
            }
            _ => false,
        }
    }

    #[cfg(test)]
    fn is_busy(&self) -> bool {
        self.busy
    }

    fn arm(&mut self) {
        let Some(w) = &mut self.watcher else { return };
        match w.watch(&self.dir, RecursiveMode::NonRecursive) {
            Ok(()) => self.armed = true,
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "no file-system events; polling at monitor-interval");
                self.watcher = None;
            }
        }
    }

    fn disarm(&mut self) {
        if let Some(w) = &mut self.watcher
            && self.armed
        {
            let _ = w.unwatch(&self.dir);
            self.armed = false;
        }
    }
}

fn new_watcher(name: OsString, wake: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let mut wal_name = name.clone();
    wal_name.push("-wal");
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only writes matter. Opens and reads are reported too, including our own, and waking on those would make
        // every sync trigger the next one.
        if let Ok(event) = event
            && matches!(event.kind, EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_))
            && event.paths.iter().any(|p| p.file_name().is_some_and(|n| n == wal_name || n == name))
        {
            wake.notify_one();
        }
    });
    match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "no file-system events; polling at monitor-interval");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch() -> (tempfile::TempDir, WalWatch) {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = WalWatch::new(&dir.path().join("db"), Arc::new(Notify::new()), Duration::ZERO);
        (dir, w)
    }

    #[test]
    fn continuous_writes_switch_to_the_busy_cadence_and_back() {
        let (_dir, mut w) = watch();
        let idle = Duration::from_secs(1);
        assert_eq!(w.wait(idle), idle);
        assert!(!w.after_sync(true));
        assert!(!w.is_busy(), "one sync with frames is not yet a busy database");
        assert!(!w.after_sync(true));
        assert!(w.is_busy());
        assert_eq!(w.wait(idle), BUSY_INTERVAL);
        assert!(!w.after_sync(true));
        assert!(w.after_sync(false), "going quiet must ask for one more sync after re-arming");
        assert!(!w.is_busy());
        assert_eq!(w.wait(idle), idle);
    }

    #[test]
    fn occasional_commits_stay_event_driven() {
        let (_dir, mut w) = watch();
        w.after_sync(true);
        w.last_found = w.last_found.map(|t| t - BUSY_THRESHOLD * 2);
        assert!(!w.after_sync(true));
        assert!(!w.is_busy());
        assert!(!w.after_sync(false));
    }

    #[tokio::test]
    async fn events_wake_only_while_armed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("db");
        let wake = Arc::new(Notify::new());
        let mut w = WalWatch::new(&db, wake.clone(), Duration::ZERO);
        let woken = |wake: Arc<Notify>| async move {
            tokio::time::timeout(Duration::from_secs(2), wake.notified()).await.is_ok()
        };
        std::fs::write(dir.path().join("db-wal"), b"x").expect("write");
        assert!(woken(wake.clone()).await, "a write to the WAL wakes the syncer");
        w.after_sync(true);
        w.after_sync(true);
        assert!(w.is_busy());
        // Events queued before the watch went away may still arrive; let them, then drop their wake-up.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = tokio::time::timeout(Duration::from_millis(10), wake.notified()).await;
        std::fs::write(dir.path().join("db-wal"), b"y").expect("write");
        assert!(!woken(wake.clone()).await, "no events while busy");
        assert!(w.after_sync(false));
        std::fs::write(dir.path().join("db-wal"), b"z").expect("write");
        assert!(woken(wake).await, "events again once re-armed");
    }
}
