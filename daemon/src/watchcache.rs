//! The watch-cache as the daemon runs it: config -> resource specs, a Kubernetes client, the ingest task, and
//! the `/k8s` routes that the REST listener serves behind the same JWT layer as the table API.

use anyhow::{Context, Result};
use litecar_watchcache::{Database, K8sApi, ResourceSpec, ResourceType, StoreConfig};
use tokio_util::sync::CancellationToken;

use crate::config::WatchcacheConfig;

pub struct WatchPlan {
    pub db: String,
    pub kubeconfig: Option<String>,
    pub specs: Vec<ResourceSpec>,
}

pub fn plan(cfg: &WatchcacheConfig) -> WatchPlan {
    let specs = cfg
        .resources
        .iter()
        .map(|r| ResourceSpec {
            resource: ResourceType::new(r.group.as_deref().unwrap_or_default(), &r.version, &r.kind),
            plural: r.plural.clone(),
            namespace: r.namespace.clone(),
            label_selector: r.label_selector.clone(),
            field_selector: r.field_selector.clone(),
            fields: r.fields.clone(),
            keep_secret_data: r.keep_secret_data,
        })
        .collect();
    WatchPlan { db: cfg.db.clone(), kubeconfig: cfg.kubeconfig.clone(), specs }
}

/// A started watch-cache: the routes to serve and the ingest, for the supervisor to run.
pub struct Running {
    pub api: K8sApi,
    pub ingest: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>,
}

pub async fn start(plan: WatchPlan, cancel: CancellationToken) -> Result<Running> {
    let db_path = plan.db.clone();
    let db = tokio::task::spawn_blocking(move || Database::open(&db_path))
        .await
        .context("opening the watch-cache database")?
        .with_context(|| format!("watchcache.db {}", plan.db))?;
    let mut api = K8sApi::default();
    for spec in &plan.specs {
        let store =
            db.store(spec.resource.clone(), StoreConfig { fields: spec.fields.clone() }).with_context(|| {
                format!("watchcache: {}/{} {}", spec.resource.group, spec.resource.version, spec.resource.kind)
            })?;
        // until its first list is in, the store answers "warming up" (and /readyz says so)
        store.await_first_list();
        api = api.with(&spec.resource.group, &spec.resource.version, &spec.plural(), store);
    }
    let client = client(plan.kubeconfig.as_deref()).await?;
    tracing::info!(db = %plan.db, resources = plan.specs.len(), "watching the Kubernetes API");
    let ingest = Box::pin(async move {
        litecar_watchcache::ingest(client, plan.specs, db, cancel).await.context("watch-cache ingest")
    });
    Ok(Running { api, ingest })
}

async fn client(kubeconfig: Option<&str>) -> Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc =
                kube::config::Kubeconfig::read_from(path).with_context(|| format!("watchcache.kubeconfig {path}"))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("watchcache.kubeconfig {path}"))?
        }
        None => kube::Config::infer().await.context("finding Kubernetes credentials (in-cluster or kubeconfig)")?,
    };
    kube::Client::try_from(config).context("creating the Kubernetes client")
}
