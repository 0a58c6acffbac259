//! The resource's status: phase, the Ready / Replicating / Degraded conditions and observedGeneration, written to
//! the status subresource. A condition keeps its lastTransitionTime until its status changes.

use k8s_openapi::jiff::Timestamp;
use litecar_operator::types::{Condition, EndpointsStatus, SqliteDatabaseStatus};
use litecar_operator::{SqliteDatabase, config, names};

/// What a reconcile found.
pub struct Outcome {
    pub phase: &'static str,
    pub ready: (bool, &'static str, String),
    pub replicating: (bool, &'static str, String),
    pub degraded: Option<(&'static str, String)>,
}

fn condition(
    kind: &str,
    on: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    old: &[Condition],
) -> Condition {
    let status = if on { "True" } else { "False" };
    let since = old
        .iter()
        .find(|c| c.kind == kind && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| Timestamp::now().to_string());
    Condition {
        kind: kind.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: Some(since),
        observed_generation: generation,
    }
}

pub fn status(db: &SqliteDatabase, o: Outcome) -> SqliteDatabaseStatus {
    let generation = db.metadata.generation;
    let old = db.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let (deg_on, deg_reason, deg_message) = match o.degraded {
        Some((reason, message)) => (true, reason, message),
        None => (false, "AsExpected", String::new()),
    };
    let message = if deg_on { deg_message.clone() } else { o.ready.2.clone() };
    let name = names::name(db);
    let ns = names::namespace(db);
    let svc = format!("{}.{ns}.svc", names::Names::service(&name));
    let endpoints = EndpointsStatus {
        rest: db.spec.sqlite_rest.as_ref().filter(|r| r.enabled).map(|r| format!("http://{svc}:{}", r.port)),
        metrics: db
            .spec
            .sqlite_rest
            .as_ref()
            .and_then(|r| r.metrics.as_ref())
            .filter(|m| m.enabled)
            .map(|_| format!("http://{svc}:{}/metrics", config::metrics_port(db))),
    };
    SqliteDatabaseStatus {
        phase: Some(o.phase.into()),
        message: Some(message),
        conditions: vec![
            condition("Ready", o.ready.0, o.ready.1, o.ready.2, generation, old),
            condition("Replicating", o.replicating.0, o.replicating.1, o.replicating.2, generation, old),
            condition("Degraded", deg_on, deg_reason, deg_message, generation, old),
        ],
        observed_generation: generation,
        endpoints: (endpoints != EndpointsStatus::default()).then_some(endpoints),
    }
}
