//! One reconcile of a SqliteDatabase: finalizer, spec checks, Secrets, server-side apply of the rendered objects,
//! sidecar injection, clean-up of objects the spec no longer asks for, and status.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use litecar_operator::names::{Names, name, namespace};
use litecar_operator::render::render;
use litecar_operator::types::ReplicaType;
use litecar_operator::validate::validate;
use litecar_operator::{SqliteDatabase, config, sidecar};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::status::{Outcome, status};
use super::{Ctx, FINALIZER, MANAGER};

#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct Error(anyhow::Error);

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Self(e)
    }
}
impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Self(e.into())
    }
}

pub async fn reconcile(db: Arc<SqliteDatabase>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let start = Instant::now();
    let result = reconcile_inner(&db, &ctx).await;
    let label = match &result {
        Ok((_, true)) => "degraded",
        Ok(_) => "ok",
        Err(_) => "error",
    };
    ctx.metrics.observe(label, start.elapsed().as_secs_f64());
    result.map(|(action, _)| action)
}

pub fn error_policy(db: Arc<SqliteDatabase>, error: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(resource = %format!("{}/{}", namespace(&db), name(&db)), error = %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

async fn event(ctx: &Ctx, db: &SqliteDatabase, warning: bool, reason: &str, note: String) {
    let ev = Event {
        type_: if warning { EventType::Warning } else { EventType::Normal },
        reason: reason.into(),
        note: Some(note),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &db.object_ref(&())).await {
        tracing::warn!(error = %e, "could not record an event");
    }
}

/// The action, and whether the resource is Degraded.
async fn reconcile_inner(db: &SqliteDatabase, ctx: &Ctx) -> Result<(Action, bool), Error> {
    let ns = namespace(db);
    let n = name(db);
    let api: Api<SqliteDatabase> = Api::namespaced(ctx.client.clone(), &ns);
    let finalizers = db.finalizers().to_vec();
    if db.metadata.deletion_timestamp.is_some() {
        if finalizers.iter().any(|f| f == FINALIZER) {
            cleanup(db, ctx).await?;
            let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
            let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": db.resource_version()}});
            api.patch(&n, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        return Ok((Action::await_change(), false));
    }
    if !finalizers.iter().any(|f| f == FINALIZER) {
        let mut all = finalizers.clone();
        all.push(FINALIZER.into());
        let patch = json!({"metadata": {"finalizers": all, "resourceVersion": db.resource_version()}});
        api.patch(&n, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        // The change comes back through the watch and is reconciled then.
        return Ok((Action::await_change(), false));
    }
    if let Err(e) = validate(db) {
        let o = degraded("Failed", "InvalidSpec", e.to_string());
        write_status(&api, db, o).await?;
        if !already_reported(db, "InvalidSpec") {
            event(ctx, db, true, "InvalidSpec", e.to_string()).await;
        }
        return Ok((Action::await_change(), true));
    }
    if let Some(problem) = missing_secret(db, ctx).await? {
        write_status(&api, db, degraded("Pending", "SecretMissing", problem.clone())).await?;
        if !already_reported(db, "SecretMissing") {
            event(ctx, db, true, "SecretMissing", problem).await;
        }
        return Ok((Action::requeue(ctx.opts.recheck), true));
    }
    let rendered = render(db, &ctx.opts.render).map_err(anyhow::Error::from)?;
    let changed = db.status.as_ref().and_then(|s| s.observed_generation) != db.metadata.generation;
    apply(ctx, &ns, &rendered.pvc).await?;
    sync(ctx, &ns, &Names::config_map(&n), db, rendered.config_map.as_ref()).await?;
    sync(ctx, &ns, &Names::deployment(&n), db, rendered.deployment.as_ref()).await?;
    sync(ctx, &ns, &Names::service(&n), db, rendered.service.as_ref()).await?;
    sync(ctx, &ns, &Names::ingress(&n), db, rendered.ingress.as_ref()).await?;
    let mut injected = 0;
    if db.spec.litecar.as_ref().is_some_and(|l| l.sidecar) {
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        for d in deployments.list(&ListParams::default()).await? {
            if sidecar::requested_database(&d) != Some(n.as_str()) {
                continue;
            }
            let patch = sidecar::injection(db, &d, &ctx.opts.render).map_err(anyhow::Error::from)?;
            let params = PatchParams::apply(&format!("{MANAGER}-sidecar")).force();
            deployments.patch(&d.name_any(), &params, &Patch::Apply(&patch)).await?;
            injected += 1;
        }
    }
    let running = match &rendered.deployment {
        Some(_) => {
            let d = Api::<Deployment>::namespaced(ctx.client.clone(), &ns).get_opt(&Names::deployment(&n)).await?;
            d.and_then(|d| d.status).and_then(|s| s.ready_replicas).unwrap_or(0) >= 1
        }
        None => true,
    };
    let replicating = config::replicating(db);
    let o = Outcome {
        phase: if running { "Running" } else { "Pending" },
        ready: match (&rendered.deployment, running) {
            (Some(_), true) => (true, "Running", "the database pod is ready".into()),
            (Some(_), false) => (false, "Starting", "objects applied; waiting for the database pod".into()),
            (None, _) if injected > 0 => (true, "Injected", format!("litecar injected into {injected} Deployment(s)")),
            (None, _) => (true, "Applied", "objects applied".into()),
        },
        replicating: if !replicating {
            (false, "NoReplicas", "no replica is configured".into())
        } else if running {
            (true, "Replicating", "litecar is replicating".into())
        } else {
            (false, "Starting", "waiting for litecar to start".into())
        },
        degraded: None,
    };
    write_status(&api, db, o).await?;
    if changed {
        event(
            ctx,
            db,
            false,
            "Applied",
            format!("applied the objects of generation {}", db.metadata.generation.unwrap_or(0)),
        )
        .await;
    }
    Ok((Action::requeue(Duration::from_secs(300)), false))
}

fn degraded(phase: &'static str, reason: &'static str, message: String) -> Outcome {
    Outcome {
        phase,
        ready: (false, reason, message.clone()),
        replicating: (false, reason, message.clone()),
        degraded: Some((reason, message)),
    }
}

fn already_reported(db: &SqliteDatabase, reason: &str) -> bool {
    db.status.as_ref().is_some_and(|s| {
        s.observed_generation == db.metadata.generation
            && s.conditions.iter().any(|c| c.kind == "Degraded" && c.status == "True" && c.reason == reason)
    })
}

async fn write_status(api: &Api<SqliteDatabase>, db: &SqliteDatabase, o: Outcome) -> Result<(), Error> {
    let new = status(db, o);
    if db.status.as_ref() == Some(&new) {
        return Ok(());
    }
    api.patch_status(&name(db), &PatchParams::default(), &Patch::Merge(&json!({"status": new}))).await?;
    Ok(())
}

/// The Secrets a resource names.
pub fn secret_names(db: &SqliteDatabase) -> Vec<String> {
    let mut names: Vec<String> = db
        .spec
        .litestream
        .iter()
        .flat_map(|l| l.replicas.iter())
        .filter_map(|r| r.credentials.as_ref())
        .map(|c| c.secret_name.clone())
        .collect();
    names.extend(db.spec.sqlite_rest.as_ref().and_then(|r| r.auth_secret.clone()));
    names
}

/// The first Secret or key the spec names that does not exist, worded with the field that names it.
async fn missing_secret(db: &SqliteDatabase, ctx: &Ctx) -> Result<Option<String>, Error> {
    let ns = namespace(db);
    let mut wanted: Vec<(String, String, String)> = Vec::new();
    if config::replicating(db) {
        for (i, r) in db.spec.litestream.iter().flat_map(|l| l.replicas.iter()).enumerate() {
            let Some(c) = &r.credentials else { continue };
            let at = format!("spec.litestream.replicas[{i}].credentials");
            if r.kind != ReplicaType::Gcs {
                wanted.push((c.secret_name.clone(), c.access_key().into(), format!("{at}.accessKeyField")));
            }
            if r.kind != ReplicaType::Local {
                wanted.push((c.secret_name.clone(), c.secret_key().into(), format!("{at}.secretKeyField")));
            }
        }
    }
    if let Some(s) = db.spec.sqlite_rest.as_ref().filter(|r| r.enabled).and_then(|r| r.auth_secret.clone()) {
        wanted.push((s, config::AUTH_KEY.into(), "spec.sqliteRest.authSecret".into()));
    }
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    for (secret, key, field) in wanted {
        let Some(s) = secrets.get_opt(&secret).await? else {
            return Ok(Some(format!("Secret {ns}/{secret} not found ({field})")));
        };
        let has = s.data.as_ref().is_some_and(|d| d.contains_key(&key))
            || s.string_data.as_ref().is_some_and(|d| d.contains_key(&key));
        if !has {
            return Ok(Some(format!("Secret {ns}/{secret} has no key {key:?} ({field})")));
        }
    }
    Ok(None)
}

async fn apply<K>(ctx: &Ctx, ns: &str, obj: &K) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
{
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    api.patch(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(obj)).await?;
    Ok(())
}

/// Applies `want`, or deletes the object of that name when the spec no longer asks for it (only if it is ours).
async fn sync<K>(ctx: &Ctx, ns: &str, object: &str, db: &SqliteDatabase, want: Option<&K>) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Serialize + DeserializeOwned + Clone + Debug,
{
    if let Some(obj) = want {
        return apply(ctx, ns, obj).await;
    }
    let api: Api<K> = Api::namespaced(ctx.client.clone(), ns);
    let Some(existing) = api.get_opt(object).await? else { return Ok(()) };
    let ours = existing.owner_references().iter().any(|o| Some(&o.uid) == db.metadata.uid.as_ref());
    if ours {
        api.delete(object, &DeleteParams::default()).await?;
    }
    Ok(())
}

/// On deletion: the owned objects go with the resource (owner references); the claim is kept unless
/// spec.litecar.deleteStorage; an application that had litecar injected gets its own pod spec back.
async fn cleanup(db: &SqliteDatabase, ctx: &Ctx) -> Result<(), Error> {
    let ns = namespace(db);
    let n = name(db);
    if db.spec.litecar.as_ref().is_some_and(|l| l.sidecar) {
        let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
        for mut d in deployments.list(&ListParams::default()).await? {
            if sidecar::requested_database(&d) != Some(n.as_str()) {
                continue;
            }
            if let Some(pod) = d.spec.template.spec.as_mut() {
                let ours = |name: &str| name == "litecar" || name.starts_with(litecar_operator::pod::VOLUME_PREFIX);
                if let Some(init) = pod.init_containers.as_mut() {
                    init.retain(|c| !ours(&c.name));
                }
                if let Some(vols) = pod.volumes.as_mut() {
                    vols.retain(|v| !ours(&v.name));
                }
            }
            deployments.replace(&d.name_any(), &Default::default(), &d).await?;
        }
    }
    let kept = if db.spec.litecar.as_ref().is_some_and(|l| l.delete_storage) {
        "its claim goes with it"
    } else {
        "its claim is kept"
    };
    event(ctx, db, false, "Deleting", format!("{ns}/{n} deleted; {kept}")).await;
    Ok(())
}
