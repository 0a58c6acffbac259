//! `litecar-operator run`: the controller. It holds a Lease before it reconciles anything, so two replicas never
//! apply at the same time; it serves `/metrics`, `/healthz` and `/readyz` from the start.

mod http;
mod lease;
mod reconcile;
mod status;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};
use litecar_operator::RenderOptions;
use litecar_operator::SqliteDatabase;
use litecar_operator::sidecar;
use tokio_util::sync::CancellationToken;

pub use http::Metrics;

/// The field manager of every server-side apply.
pub const MANAGER: &str = "litecar-operator";
pub const FINALIZER: &str = "database.sqlite.io/finalizer";

#[derive(Debug, Clone)]
pub struct Options {
    pub render: RenderOptions,
    /// Only this namespace's resources; None: every namespace.
    pub namespace: Option<String>,
    pub metrics_addr: String,
    pub lease_namespace: String,
    pub lease_name: String,
    pub identity: String,
    pub lease_duration: Duration,
    /// How soon a resource waiting for a Secret is looked at again.
    pub recheck: Duration,
}

pub struct Ctx {
    pub client: Client,
    pub opts: Options,
    pub metrics: Metrics,
    pub recorder: kube::runtime::events::Recorder,
}

pub async fn run(opts: Options, cancel: CancellationToken) -> Result<()> {
    let client = Client::try_default().await.context("connecting to the Kubernetes API")?;
    let metrics = Metrics::new()?;
    let ready = metrics.ready.clone();
    let server = tokio::spawn(http::serve(opts.metrics_addr.clone(), metrics.clone(), cancel.clone()));
    let lease = lease::Lease::new(client.clone(), &opts);
    tracing::info!(identity = %opts.identity, lease = %opts.lease_name, "waiting for leadership");
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    if !lease.acquire(&cancel).await? {
        server.await.ok();
        return Ok(());
    }
    tracing::info!(identity = %opts.identity, "leading; reconciling SqliteDatabase resources");
    let leading = CancellationToken::new();
    let renew = tokio::spawn(lease.clone().hold(cancel.clone(), leading.clone()));
    let reporter =
        kube::runtime::events::Reporter { controller: MANAGER.into(), instance: Some(opts.identity.clone()) };
    let recorder = kube::runtime::events::Recorder::new(client.clone(), reporter);
    let ctx = Arc::new(Ctx { client: client.clone(), opts: opts.clone(), metrics, recorder });
    let (dbs, deployments, configmaps, services, secrets) = match &opts.namespace {
        Some(ns) => (
            Api::<SqliteDatabase>::namespaced(client.clone(), ns),
            Api::<Deployment>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<Secret>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    let managed = watcher::Config::default().labels("app.kubernetes.io/managed-by=litecar-operator");
    let stop = leading.clone();
    let controller = Controller::new(dbs, watcher::Config::default());
    let store = controller.store();
    controller
        .owns(configmaps, managed.clone())
        .owns(services, managed)
        // The operator's own Deployments (readiness) and the applications' that ask for a sidecar.
        .watches(deployments, watcher::Config::default(), |d| {
            let ns = d.metadata.namespace.clone().unwrap_or_default();
            let own = d
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.kind == "SqliteDatabase")
                .map(|o| o.name.clone());
            own.or_else(|| sidecar::requested_database(&d).map(str::to_owned))
                .map(|n| ObjectRef::<SqliteDatabase>::new(&n).within(&ns))
        })
        // A Secret created, fixed or broken is noticed at once by the resources that name it.
        .watches(secrets, watcher::Config::default(), move |s| {
            let (ns, secret) = (s.metadata.namespace.clone(), s.metadata.name.clone().unwrap_or_default());
            store
                .state()
                .into_iter()
                .filter(|db| db.metadata.namespace == ns && reconcile::secret_names(db).contains(&secret))
                .map(|db| ObjectRef::from_obj(&*db))
                .collect::<Vec<_>>()
        })
        .graceful_shutdown_on(async move { stop.cancelled().await })
        .run(reconcile::reconcile, reconcile::error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    leading.cancel();
    let lost = renew.await.unwrap_or(Ok(false))?;
    server.await.ok();
    if lost {
        anyhow::bail!("lost the lease {}/{} to another operator; exiting", opts.lease_namespace, opts.lease_name);
    }
    Ok(())
}
