//! Leader election with a coordination.k8s.io Lease: the holder renews it every third of its duration; another
//! operator takes it over only once it has expired. Every write carries the resourceVersion it read, so two
//! operators racing for it cannot both win.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::coordination::v1::{Lease as LeaseObject, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

use super::Options;

#[derive(Clone)]
pub struct Lease {
    api: Api<LeaseObject>,
    name: String,
    identity: String,
    duration: Duration,
}

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

impl Lease {
    pub fn new(client: Client, opts: &Options) -> Self {
        Self {
            api: Api::namespaced(client, &opts.lease_namespace),
            name: opts.lease_name.clone(),
            identity: opts.identity.clone(),
            duration: opts.lease_duration,
        }
    }

    /// Waits until this process holds the lease (true), or until `cancel` (false).
    pub async fn acquire(&self, cancel: &CancellationToken) -> Result<bool> {
        loop {
            match self.try_take().await {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "lease: will retry"),
            }
            tokio::select! {
                () = cancel.cancelled() => return Ok(false),
                () = tokio::time::sleep(self.duration / 3) => {}
            }
        }
    }

    /// Renews the lease until `cancel` (then releases it and returns false) or until it is lost (true); either
    /// way `leading` is cancelled, which stops the controller.
    pub async fn hold(self, cancel: CancellationToken, leading: CancellationToken) -> Result<bool> {
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    leading.cancel();
                    if let Err(e) = self.release().await {
                        tracing::warn!(error = %format!("{e:#}"), "lease: could not release it");
                    }
                    return Ok(false);
                }
                () = leading.cancelled() => return Ok(false),
                () = tokio::time::sleep(self.duration / 3) => {}
            }
            match self.try_take().await {
                Ok(true) => renewed = Instant::now(),
                Ok(false) => {
                    leading.cancel();
                    return Ok(true);
                }
                Err(e) if renewed.elapsed() < self.duration => {
                    tracing::warn!(error = %format!("{e:#}"), "lease: renewal failed; retrying");
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "lease: not renewed within its duration");
                    leading.cancel();
                    return Ok(true);
                }
            }
        }
    }

    /// Takes or renews the lease; false when another live holder has it or won a race for it.
    async fn try_take(&self) -> Result<bool> {
        let now = Timestamp::now();
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX).max(1);
        let current = self.api.get_opt(&self.name).await.with_context(|| format!("reading lease {}", self.name))?;
        let Some(mut lease) = current else {
            let lease = LeaseObject {
                metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if conflict(&e) => Ok(false),
                Err(e) => Err(e).context("creating the lease"),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let mine = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty);
        let expired = spec.renew_time.as_ref().is_none_or(|t| {
            let held = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
            t.0.as_second() + held < now.as_second()
        });
        if !(mine || free || expired) {
            return Ok(false);
        }
        if !mine {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(MicroTime(now));
        match self.api.replace(&self.name, &PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(e) if conflict(&e) => Ok(false),
            Err(e) => Err(e).context("renewing the lease"),
        }
    }

    /// Lets a waiting operator take over at once instead of after the lease expires.
    async fn release(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.name).await? else { return Ok(()) };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        self.api.replace(&self.name, &PostParams::default(), &lease).await?;
        Ok(())
    }
}
