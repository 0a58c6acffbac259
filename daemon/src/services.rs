//! The daemon's long-running parts as one list of named services, each stopped in its shutdown phase: whatever
//! stops first (a failure, or a service that ends on its own) is reported under its own name, and shutdown cancels
//! one phase at a time, waiting for it within that phase's limit before the next.

use std::collections::HashMap;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use anyhow::Result;
use tokio::task::{Id, JoinSet};
use tokio_util::sync::CancellationToken;

/// When a service is stopped, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Serving and ingesting (the REST API, the watch-cache): stopped first, draining requests, so that their last
    /// writes are in the final sync.
    Front,
    /// Replicators and followers: a final sync and upload, each bounded by the shutdown timeout.
    Replication,
    /// The metrics listener: up through the final sync, so that a last scrape can see it.
    Observability,
}

const PHASES: [Phase; 3] = [Phase::Front, Phase::Replication, Phase::Observability];

impl Phase {
    fn index(self) -> usize {
        self as usize
    }

    /// How long shutdown waits for this phase. Each replicator bounds its own drain by the shutdown timeout; the
    /// margin covers the final sync itself. The metrics listener stops at once when asked.
    fn limit(self, shutdown_timeout: Duration) -> Option<Duration> {
        match self {
            Phase::Front => Some(shutdown_timeout),
            Phase::Replication => Some(shutdown_timeout + Duration::from_secs(5)),
            Phase::Observability => None,
        }
    }
}

/// A service that ended before shutdown.
#[derive(Debug)]
pub struct Exit {
    pub name: String,
    /// `Ok` when the service returned on its own; a panic is an error naming the service.
    pub result: Result<()>,
}

/// The running services: one cancellation token and one task set per phase.
pub struct Services {
    phases: [(CancellationToken, JoinSet<Result<()>>); 3],
    names: HashMap<Id, String>,
}

impl Default for Services {
    fn default() -> Self {
        Self { phases: PHASES.map(|_| (CancellationToken::new(), JoinSet::new())), names: HashMap::new() }
    }
}

impl Services {
    /// The token a service of `phase` stops on; for parts that must be set up before they are spawned.
    pub fn token(&self, phase: Phase) -> CancellationToken {
        self.phases[phase.index()].0.clone()
    }

    /// Run `start(token)` as the service `name`, cancelled with its phase.
    pub fn spawn<F>(&mut self, name: impl Into<String>, phase: Phase, start: impl FnOnce(CancellationToken) -> F)
    where
        F: Future<Output = Result<()>> + Send + 'static,
    {
        let (token, set) = &mut self.phases[phase.index()];
        let handle = set.spawn(start(token.clone()));
        self.names.insert(handle.id(), name.into());
    }

    /// The first service to end, whatever its phase; never resolves while there are none.
    pub async fn first_exit(&mut self) -> Exit {
        let joined = std::future::poll_fn(|cx| {
            for (_, set) in &mut self.phases {
                if let Poll::Ready(Some(joined)) = set.poll_join_next_with_id(cx) {
                    return Poll::Ready(joined);
                }
            }
            Poll::Pending
        })
        .await;
        self.exit(joined)
    }

    fn exit(&mut self, joined: Result<(Id, Result<()>), tokio::task::JoinError>) -> Exit {
        let id = match &joined {
            Ok((id, _)) => *id,
            Err(e) => e.id(),
        };
        let name = self.names.remove(&id).unwrap_or_else(|| "a service".to_owned());
        let result = match joined {
            Ok((_, r)) => r,
            Err(e) => Err(anyhow::Error::new(e).context(format!("{name} task failed"))),
        };
        Exit { name, result }
    }

    /// Cancel the phases in order, waiting for each within its limit; failures on the way out are logged under the
    /// service's name. Services still running past their limit are dropped (aborted) at the end.
    pub async fn shutdown(mut self, shutdown_timeout: Duration) {
        for phase in PHASES {
            let (token, _) = &self.phases[phase.index()];
            token.cancel();
            let drain = async {
                while let Some(joined) = self.phases[phase.index()].1.join_next_with_id().await {
                    let exit = self.exit(joined);
                    if let Err(e) = exit.result {
                        tracing::error!(service = %exit.name, error = %format!("{e:#}"), "failed during shutdown");
                    }
                }
            };
            let Some(limit) = phase.limit(shutdown_timeout) else {
                drain.await;
                continue;
            };
            if tokio::time::timeout(limit, drain).await.is_err() && phase == Phase::Replication {
                tracing::warn!(
                    "shutdown timeout reached; exiting with work pending (the spool keeps it for the next start)"
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use litecar_rest::sync::lock;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn the_first_exit_names_its_service() {
        let mut s = Services::default();
        s.spawn("idle", Phase::Front, |t| async move {
            t.cancelled().await;
            Ok(())
        });
        s.spawn("broken", Phase::Replication, |_| async { anyhow::bail!("disk on fire") });
        let exit = s.first_exit().await;
        assert_eq!(exit.name, "broken");
        assert_eq!(exit.result.expect_err("failed").to_string(), "disk on fire");
    }

    #[tokio::test]
    async fn a_panic_is_an_error_naming_the_service() {
        let mut s = Services::default();
        s.spawn("watch-cache", Phase::Front, |_| async { panic!("boom") });
        let exit = s.first_exit().await;
        assert_eq!(exit.name, "watch-cache");
        assert_eq!(exit.result.expect_err("panicked").to_string(), "watch-cache task failed");
    }

    #[tokio::test]
    async fn shutdown_stops_phase_after_phase() {
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut s = Services::default();
        // spawned out of order: the phase decides, not the spawn order
        for (name, phase) in [("metrics", Phase::Observability), ("db", Phase::Replication), ("rest", Phase::Front)] {
            let order = order.clone();
            s.spawn(name, phase, move |t| async move {
                t.cancelled().await;
                // a later phase must not be cancelled while an earlier one is still draining
                tokio::time::sleep(Duration::from_millis(20)).await;
                lock(&order).push(name);
                Ok(())
            });
        }
        s.shutdown(Duration::from_secs(5)).await;
        assert_eq!(*lock(&order), ["rest", "db", "metrics"]);
    }

    #[tokio::test]
    async fn a_phase_past_its_limit_does_not_hold_up_the_next() {
        let stopped = Arc::new(Mutex::new(false));
        let mut s = Services::default();
        s.spawn("stuck", Phase::Front, |_| std::future::pending());
        let flag = stopped.clone();
        s.spawn("metrics", Phase::Observability, move |t| async move {
            t.cancelled().await;
            *lock(&flag) = true;
            Ok(())
        });
        s.shutdown(Duration::from_millis(50)).await;
        assert!(*lock(&stopped));
    }
}
