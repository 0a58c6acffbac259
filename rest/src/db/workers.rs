//! Threads that own the connections of a pool and run database jobs from a shared queue.
//!
//! Handing a request to another thread costs a wake-up and a context switch on each side, which on a small
//! machine is as much CPU as a point read itself; `spawn_blocking` pays it on every call because it wakes an
//! idle thread whenever it has one. Here a queued job wakes a sleeping thread only when no awake thread will
//! take it soon: one looking for work, or one whose current job started less than [`HANDOFF`] ago (each such
//! thread covers one queued job). Under load the threads that are awake therefore keep taking jobs without
//! sleeping, and more threads join only while the queue outgrows them. A job that turns out to be long
//! hands the jobs queued behind it to another thread when it passes [`HANDOFF`] (see [`Rescue`]), so a
//! slow query does not hold up the requests after it for longer than that.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::Access;

/// How long a busy thread's job may have run and still count on it to take the next queued job. Point reads
/// take tens of microseconds; a job older than this is long, or its thread was preempted, and the jobs
/// behind it are better served by another thread.
const HANDOFF: Duration = Duration::from_micros(300);

/// Database work for one request, run on a pool thread with that thread's connection.
pub(crate) type Job = Box<dyn FnOnce(&mut Session<'_>) + Send>;

/// How a pool opens its connections.
struct Opener {
    path: PathBuf,
    access: Access,
    busy_timeout: Duration,
}

impl Opener {
    /// The file is never created here: that is the application's job.
    fn open(&self) -> rusqlite::Result<Connection> {
        let flags = match self.access {
            Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY,
            Access::Write => OpenFlags::SQLITE_OPEN_READ_WRITE,
        } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(&self.path, flags)?;
        conn.busy_timeout(self.busy_timeout)?;
        if self.access == Access::Write {
            // Writes made through the API honour declared foreign keys (a violation answers 409).
            conn.pragma_update(None, "foreign_keys", true)?;
        }
        Ok(conn)
    }
}

/// What a job gets: its thread's connection (opened on first use, so the API can start before the
/// application creates the database) and the hook that hands queued jobs on if it runs long.
pub(crate) struct Session<'a> {
    conn: &'a mut Option<Connection>,
    opener: &'a Opener,
    rescue: Rescue,
}

impl Session<'_> {
    pub fn connection(&mut self) -> rusqlite::Result<&mut Connection> {
        match self.conn {
            Some(conn) => Ok(conn),
            None => Ok(self.conn.insert(self.opener.open()?)),
        }
    }

    /// Drops the connection (rolling back whatever it holds); the next job opens a fresh one.
    pub fn discard(&mut self) {
        *self.conn = None;
    }

    pub fn rescue(&self) -> Rescue {
        self.rescue.clone()
    }
}

/// Called from the running job's progress handler: once the job has run for [`HANDOFF`], jobs still queued
/// are no longer counted as covered by this thread, so another thread is woken (or started) for them.
/// It acts once per job: after that, the thread no longer counts as covering any job, so later arrivals
/// wake other threads by themselves.
#[derive(Clone)]
pub(crate) struct Rescue {
    shared: Arc<Shared>,
    started: Instant,
    done: bool,
}

impl Rescue {
    pub fn check(&mut self, now: Instant) {
        if self.done
            || self.shared.queued.load(Ordering::Relaxed) == 0
            || now.saturating_duration_since(self.started) < HANDOFF
        {
            return;
        }
        self.done = true;
        let state = self.shared.lock();
        Shared::dispatch(&self.shared, state);
    }
}

struct State {
    queue: VecDeque<Job>,
    /// Start of the job each thread is running, by thread index; `None` while it looks for work or sleeps.
    running: Vec<Option<Instant>>,
    /// Threads that are alive.
    threads: usize,
    /// Threads waiting on the condition variable, including those notified that have not woken yet.
    sleeping: usize,
    /// Notifications sent to sleeping threads that have not woken yet.
    wakeups: usize,
    closed: bool,
}

struct Shared {
    name: &'static str,
    size: usize,
    opener: Opener,
    state: Mutex<State>,
    wake: Condvar,
    /// The queue's length, readable without the lock by a progress handler.
    queued: AtomicUsize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// Makes sure every queued job has a thread that will take it soon: wakes a sleeping thread, or starts a
    /// new one while the pool is below its size. Called whenever the queue grows or a thread takes a job; it
    /// releases the lock, before the wake-up, so the woken thread does not run into the lock still held.
    fn dispatch(shared: &Arc<Shared>, mut state: MutexGuard<'_, State>) {
        if state.queue.is_empty() {
            return;
        }
        let now = Instant::now();
        let busy = state.running.iter().flatten().count();
        let young = state.running.iter().flatten().filter(|s| now.saturating_duration_since(**s) < HANDOFF).count();
        let searching = (state.threads + state.wakeups).saturating_sub(state.sleeping + busy);
        if state.queue.len() <= searching + young {
            return;
        }
        if state.sleeping > state.wakeups {
            // Counted under the lock, so the next dispatch sees this thread as coming.
            state.wakeups += 1;
            drop(state);
            shared.wake.notify_one();
        } else if state.threads < shared.size {
            // Threads only exit when the pool is dropped, so indexes are never reused.
            let index = state.running.len();
            state.running.push(None);
            let worker = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name(format!("litecar-rest-{}", shared.name))
                .spawn(move || run(&worker, index));
            match spawned {
                Ok(_) => state.threads += 1,
                Err(error) => {
                    state.running.pop();
                    tracing::warn!(%error, pool = shared.name, "cannot start a database thread");
                }
            }
        }
    }
}

/// A pool's threads, started on demand up to its size. Dropping it lets them finish the job they run and exit.
pub(crate) struct Workers {
    shared: Arc<Shared>,
}

impl Workers {
    pub fn new(name: &'static str, path: PathBuf, access: Access, size: usize, busy_timeout: Duration) -> Self {
        let state = State {
            queue: VecDeque::new(),
            running: Vec::with_capacity(size),
            threads: 0,
            sleeping: 0,
            wakeups: 0,
            closed: false,
        };
        Workers {
            shared: Arc::new(Shared {
                name,
                size: size.max(1),
                opener: Opener { path, access, busy_timeout },
                state: Mutex::new(state),
                wake: Condvar::new(),
                queued: AtomicUsize::new(0),
            }),
        }
    }

    /// Queues `job`; fails only when no thread can be started to run it.
    pub fn submit(&self, job: Job) -> Result<(), String> {
        let mut state = self.shared.lock();
        state.queue.push_back(job);
        self.shared.queued.store(state.queue.len(), Ordering::Relaxed);
        if state.threads == 0 {
            Shared::dispatch(&self.shared, state);
            state = self.shared.lock();
            if state.threads == 0 {
                state.queue.clear();
                self.shared.queued.store(0, Ordering::Relaxed);
                return Err(format!("no thread could be started for the {} pool", self.shared.name));
            }
            return Ok(());
        }
        Shared::dispatch(&self.shared, state);
        Ok(())
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

/// A pool thread: takes jobs until the pool is dropped. The connection lives here, so it is reused by the
/// thread's next job; a job that leaves it unusable discards it.
fn run(shared: &Arc<Shared>, index: usize) {
    let mut conn: Option<Connection> = None;
    let mut state = shared.lock();
    loop {
        if let Some(job) = state.queue.pop_front() {
            shared.queued.store(state.queue.len(), Ordering::Relaxed);
            let started = Instant::now();
            if let Some(slot) = state.running.get_mut(index) {
                *slot = Some(started);
            }
            // More queued jobs than takers: bring in another thread rather than leave them behind this job.
            Shared::dispatch(shared, state);
            let rescue = Rescue { shared: Arc::clone(shared), started, done: false };
            let mut session = Session { conn: &mut conn, opener: &shared.opener, rescue };
            // A panicking job has already dropped its reply channel (the request answers 500); the connection
            // may be mid-transaction, so it is not reused.
            if catch_unwind(AssertUnwindSafe(move || job(&mut session))).is_err() {
                conn = None;
            }
            state = shared.lock();
            if let Some(slot) = state.running.get_mut(index) {
                *slot = None;
            }
            continue;
        }
        if state.closed {
            break;
        }
        state.sleeping += 1;
        state = shared.wake.wait(state).unwrap_or_else(PoisonError::into_inner);
        state.sleeping -= 1;
        state.wakeups = state.wakeups.saturating_sub(1);
    }
    state.threads -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::mpsc;

    fn workers(size: usize) -> Workers {
        Workers::new("test", PathBuf::from("/nonexistent/never-opened.db"), Access::Read, size, Duration::ZERO)
    }

    #[test]
    fn runs_every_job_on_at_most_size_threads() {
        let pool = workers(2);
        let (done, results) = mpsc::channel();
        for i in 0..200 {
            let done = done.clone();
            pool.submit(Box::new(move |_| {
                let _ = done.send((i, std::thread::current().id()));
            }))
            .expect("submitted");
        }
        let got: Vec<_> = results.iter().take(200).collect();
        let ids: HashSet<_> = got.iter().map(|(i, _)| *i).collect();
        assert_eq!(ids.len(), 200, "every job ran once");
        let threads: HashSet<_> = got.iter().map(|(_, t)| *t).collect();
        assert!(threads.len() <= 2, "{} threads", threads.len());
    }

    #[test]
    fn a_long_job_does_not_hold_up_the_next_one() {
        let pool = workers(2);
        let (started_tx, started) = mpsc::channel();
        let (release_tx, release) = mpsc::channel::<()>();
        pool.submit(Box::new(move |_| {
            let _ = started_tx.send(());
            let _ = release.recv();
        }))
        .expect("submitted");
        started.recv().expect("first job started");
        // Past the handoff age the blocked thread no longer counts as about to take the next job.
        std::thread::sleep(HANDOFF * 2);
        let (done_tx, done) = mpsc::channel();
        pool.submit(Box::new(move |_| {
            let _ = done_tx.send(());
        }))
        .expect("submitted");
        done.recv().expect("the second job ran while the first was blocked");
        release_tx.send(()).expect("release the first job");
    }

    #[test]
    fn a_panicking_job_leaves_the_pool_working() {
        let pool = workers(1);
        pool.submit(Box::new(|_| panic!("job failure"))).expect("submitted");
        let (done_tx, done) = mpsc::channel();
        pool.submit(Box::new(move |_| {
            let _ = done_tx.send(());
        }))
        .expect("submitted");
        done.recv().expect("the next job ran on the same pool");
    }
}
