//! `litecar replicate`: one replicator per database, an optional child process, and orderly shutdown. On SIGTERM
//! or SIGINT (or when the child exits) every replicator makes a final sync and uploads what it can before the
//! shutdown timeout; the process then exits 0, or with the child's exit code.

use std::process::ExitStatus;
use std::time::Duration;

use anyhow::{Context, Result};
use litecar_replicate::replicator::{DbOptions, DbReplicator, ReplicaOptions};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::exec::split_words;
use crate::metrics::{DbHandle, Metrics};

pub struct Plan {
    pub dbs: Vec<(DbOptions, Vec<ReplicaOptions>)>,
    /// Read replicas to keep up to date (`litecar follow`).
    pub follows: Vec<litecar_replicate::follow::FollowOptions>,
    pub exec: Option<String>,
    pub shutdown_timeout: Duration,
    /// Where to serve /metrics, /healthz and /readyz (Litestream's `addr`).
    pub addr: Option<std::net::SocketAddr>,
    pub metrics: Metrics,
    pub rest: Option<crate::rest::RestPlan>,
    pub watchcache: Option<crate::watchcache::WatchPlan>,
}

/// Run until a signal, the child's exit, or a fatal replicator error; returns the process exit code.
pub async fn run(plan: Plan) -> Result<i32> {
    let cancel = CancellationToken::new();
    let mut replicators = tokio::task::JoinSet::new();
    for (db, replicas) in plan.dbs {
        let names: Vec<String> = replicas.iter().map(|r| r.replica.describe()).collect();
        tracing::info!(db = %db.path.display(), replicas = ?names, "replicating");
        let path = db.path.clone();
        let token = cancel.clone();
        let replicas = replicas
            .into_iter()
            .map(|mut r| {
                plan.metrics.ops.init(r.replica.client.kind());
                r.replica = r.replica.with_observer(plan.metrics.ops.clone());
                r
            })
            .collect();
        let replicator = DbReplicator::new(db, replicas);
        plan.metrics.add_db(DbHandle { path: path.clone(), status: replicator.status() });
        replicators.spawn(async move { (path, replicator.run(token).await) });
    }
    for mut f in plan.follows {
        tracing::info!(db = %f.path.display(), replica = %f.replica.describe(), "following");
        plan.metrics.ops.init(f.replica.client.kind());
        f.replica = f.replica.with_observer(plan.metrics.ops.clone());
        let path = f.path.clone();
        let follower = litecar_replicate::follow::Follower::new(f);
        plan.metrics.add_follower(path.clone(), follower.status());
        let token = cancel.clone();
        replicators.spawn(async move { (path, follower.run(token).await) });
    }
    let server_stop = CancellationToken::new();
    let rest_stop = CancellationToken::new();
    let mut rest = tokio::task::JoinSet::new();
    let ingest_stop = CancellationToken::new();
    let mut k8s_routes = None;
    if let Some(wc) = plan.watchcache {
        let running = crate::watchcache::start(wc, ingest_stop.clone()).await?;
        let api = running.api.clone();
        plan.metrics.add_readiness_check(std::sync::Arc::new(move || api.warming()));
        k8s_routes = Some(litecar_watchcache::router(running.api));
        rest.spawn(async move { running.task.await.context("watch-cache task")? });
    }
    if let Some(rest_plan) = plan.rest {
        let (registry, stop) = (plan.metrics.registry.clone(), rest_stop.clone());
        rest.spawn(async move { crate::rest::run(rest_plan, k8s_routes, &registry, stop).await });
    }
    let server = match plan.addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("listening on {addr}"))?;
            tracing::info!(%addr, "serving /metrics, /healthz and /readyz");
            Some(tokio::spawn(crate::http::serve(
                listener,
                crate::http::app(plan.metrics.clone()),
                server_stop.clone(),
            )))
        }
        None => None,
    };

    let mut child = match &plan.exec {
        Some(cmd) => Some(spawn_child(cmd)?),
        None => None,
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
        Some(joined) = rest.join_next() => {
            match joined {
                Ok(Err(e)) => fatal = Some(e),
                Ok(Ok(())) => tracing::warn!("REST API or watch-cache stopped"),
                Err(e) => fatal = Some(anyhow::Error::new(e).context("REST API task failed")),
            }
            if let Some(c) = child.as_mut() { code = forward_and_wait(c, nix::sys::signal::Signal::SIGTERM).await; }
        }
        Some(joined) = replicators.join_next() => {
            match joined {
                Ok((path, Err(e))) => fatal = Some(anyhow::Error::new(e).context(format!("replicating {}", path.display()))),
                Ok((path, Ok(()))) => tracing::warn!(db = %path.display(), "replicator stopped"),
                Err(e) => fatal = Some(anyhow::Error::new(e).context("replicator task failed")),
            }
            if let Some(c) = child.as_mut() { code = forward_and_wait(c, nix::sys::signal::Signal::SIGTERM).await; }
        }
    }

    // Stop the REST API and the ingester first (draining requests), so that their last writes are in the final sync.
    rest_stop.cancel();
    ingest_stop.cancel();
    let _ = tokio::time::timeout(plan.shutdown_timeout, async { while rest.join_next().await.is_some() {} }).await;
    cancel.cancel();
    // Each replicator bounds its own drain by the shutdown timeout; the margin covers the final sync itself.
    let drained = tokio::time::timeout(plan.shutdown_timeout + Duration::from_secs(5), async {
        while let Some(joined) = replicators.join_next().await {
            if let Ok((path, Err(e))) = joined {
                tracing::error!(db = %path.display(), error = %e, "replicator failed during shutdown");
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!("shutdown timeout reached; exiting with work pending (the spool keeps it for the next start)");
    }
    // Metrics stay up through the final sync, so a last scrape can see it.
    server_stop.cancel();
    if let Some(server) = server
        && let Ok(Err(e)) = server.await
    {
        tracing::warn!(error = %e, "metrics server");
    }
    match fatal {
        Some(e) => Err(e),
        None => Ok(code),
    }
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
