//! `litecar replicate`: one replicator per database, an optional child process, and orderly shutdown. On SIGTERM
//! or SIGINT (or when the child exits) every replicator makes a final sync and uploads what it can before the
//! shutdown timeout; the process then exits 0, or with the child's exit code.

use std::net::SocketAddr;
use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result};
use litecar_replicate::follow::{FollowOptions, Follower};
use litecar_replicate::replicator::{DbOptions, DbReplicator, ReplicaOptions};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use crate::exec::split_words;
use crate::metrics::{DbHandle, Metrics};
use crate::services::{Phase, Services};

pub struct Plan {
    pub dbs: Vec<(DbOptions, Vec<ReplicaOptions>)>,
    /// Read replicas to keep up to date (`litecar follow`).
    pub follows: Vec<FollowOptions>,
    pub exec: Option<String>,
    pub shutdown_timeout: Duration,
    /// Where to serve /metrics, /healthz and /readyz (Litestream's `addr`).
    pub addr: Option<SocketAddr>,
    pub metrics: Metrics,
    pub rest: Option<crate::rest::RestPlan>,
    pub watchcache: Option<crate::watchcache::WatchPlan>,
}

/// Run until a signal, the child's exit, or a fatal service error; returns the process exit code.
pub async fn run(plan: Plan) -> Result<i32> {
    let mut services = Services::default();
    spawn_replication(&mut services, plan.dbs, plan.follows, &plan.metrics);
    let started = async {
        spawn_servers(&mut services, plan.watchcache, plan.rest, plan.addr, &plan.metrics).await?;
        plan.exec.as_deref().map(spawn_child).transpose()
    };
    let mut child = match started.await {
        Ok(child) => child,
        Err(e) => {
            // what did start still gets its orderly stop (the replicators' final sync)
            services.shutdown(plan.shutdown_timeout).await;
            return Err(e);
        }
    };
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;

    let mut code = 0;
    let mut fatal: Option<anyhow::Error> = None;
    tokio::select! {
        _ = sigterm.recv() => {
            tracing::info!("SIGTERM received, shutting down");
            if let Some(c) = child.as_mut() { code = forward_and_wait(c, nix::sys::signal::Signal::SIGTERM).await; }
        }
        _ = sigint.recv() => {
            tracing::info!("SIGINT received, shutting down");
            if let Some(c) = child.as_mut() { code = forward_and_wait(c, nix::sys::signal::Signal::SIGINT).await; }
        }
        status = wait_child(child.as_mut()) => {
            code = exit_code(status);
            tracing::info!(code, "child process exited, shutting down");
        }
        exit = services.first_exit() => {
            match exit.result {
                Ok(()) => tracing::warn!(service = %exit.name, "stopped on its own, shutting down"),
                Err(e) => fatal = Some(e),
            }
            if let Some(c) = child.as_mut() { code = forward_and_wait(c, nix::sys::signal::Signal::SIGTERM).await; }
        }
    }
    services.shutdown(plan.shutdown_timeout).await;
    match fatal {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

fn spawn_replication(
    services: &mut Services,
    dbs: Vec<(DbOptions, Vec<ReplicaOptions>)>,
    follows: Vec<FollowOptions>,
    metrics: &Metrics,
) {
    for (db, replicas) in dbs {
        let names: Vec<String> = replicas.iter().map(|r| r.replica.describe()).collect();
        tracing::info!(db = %db.path.display(), replicas = ?names, "replicating");
        let path = db.path.clone();
        let replicas = replicas
            .into_iter()
            .map(|mut r| {
                metrics.ops.init(r.replica.client.kind());
                r.replica = r.replica.with_observer(metrics.ops.clone());
                r
            })
            .collect();
        let replicator = DbReplicator::new(db, replicas);
        metrics.add_db(DbHandle { path: path.clone(), status: replicator.status() });
        services.spawn(format!("replicator {}", path.display()), Phase::Replication, |token| async move {
            replicator.run(token).await.with_context(|| format!("replicating {}", path.display()))
        });
    }
    for mut f in follows {
        tracing::info!(db = %f.path.display(), replica = %f.replica.describe(), "following");
        metrics.ops.init(f.replica.client.kind());
        f.replica = f.replica.with_observer(metrics.ops.clone());
        let path = f.path.clone();
        let follower = Follower::new(f);
        metrics.add_follower(path.clone(), follower.status());
        services.spawn(format!("follower {}", path.display()), Phase::Replication, |token| async move {
            follower.run(token).await.with_context(|| format!("replicating {}", path.display()))
        });
    }
}

/// The watch-cache's ingest, and the REST and metrics listeners (bound here, so that a taken port fails start-up).
async fn spawn_servers(
    services: &mut Services,
    watchcache: Option<crate::watchcache::WatchPlan>,
    rest: Option<crate::rest::RestPlan>,
    addr: Option<SocketAddr>,
    metrics: &Metrics,
) -> Result<()> {
    let mut k8s_routes = None;
    if let Some(wc) = watchcache {
        let running = crate::watchcache::start(wc, services.token(Phase::Front)).await?;
        let api = running.api.clone();
        metrics.add_readiness_check(std::sync::Arc::new(move || api.warming()));
        k8s_routes = Some(litecar_watchcache::router(running.api));
        services.spawn("watch-cache", Phase::Front, |_| running.ingest);
    }
    if let Some(rest) = rest {
        let (addr, tls) = (rest.addr, rest.tls.clone());
        let app = crate::rest::app(rest, k8s_routes, &metrics.registry)?;
        let listener = crate::http::bind(addr, tls.as_ref()).await.context("rest")?;
        tracing::info!(%addr, tls = tls.is_some(), "serving the REST table API");
        services.spawn("REST API", Phase::Front, |token| async move {
            crate::http::serve(listener, app, token).await.context("rest: serving")
        });
    }
    if let Some(addr) = addr {
        let listener = crate::http::bind(addr, None).await?;
        tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
        let app = crate::http::app(metrics.clone());
        services.spawn("metrics server", Phase::Observability, |token| crate::http::serve(listener, app, token));
    }
    Ok(())
}

fn spawn_child(cmd: &str) -> Result<Child> {
    let words = split_words(cmd)?;
    let child = Command::new(&words[0])
        .args(&words[1..])
        .kill_on_drop(false)
        .spawn()
        .with_context(|| format!("starting exec command {cmd:?}"))?;
    tracing::info!(command = cmd, pid = child.id(), "started child process");
    Ok(child)
}

async fn wait_child(child: Option<&mut Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

async fn forward_and_wait(child: &mut Child, sig: nix::sys::signal::Signal) -> i32 {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        if let Err(e) = nix::sys::signal::kill(pid, sig) {
            tracing::warn!(error = %e, "could not forward the signal to the child process");
        }
    }
    exit_code(child.wait().await)
}

fn exit_code(status: std::io::Result<ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s.code().unwrap_or_else(|| 128 + s.signal().unwrap_or(0)),
        Err(e) => {
            tracing::error!(error = %e, "waiting for the child process failed");
            1
        }
    }
}
