//! Prometheus metrics of the table API and of its authentication.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Counters and histograms shared by the router and the auth layer. Cloning is cheap (the collectors are
/// reference counted), so every component holds its own copy.
///
/// `sqlite_rest_requests_total` and the duration histogram are recorded by the router, so requests the auth
/// layer refuses in front of it appear in `sqlite_rest_auth_failures_total` only. The `table` label is an
/// allowed table, `openapi.json`, or `other`; `method` is a standard method or `OTHER`.
#[derive(Clone, Debug)]
pub struct RestMetrics {
    pub(crate) requests: IntCounterVec,
    pub(crate) duration: HistogramVec,
    pub(crate) auth_failures: IntCounterVec,
    pub(crate) access_denied: IntCounterVec,
}

impl RestMetrics {
    /// Creates the collectors and registers them; fails if `registry` already holds them.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new("sqlite_rest_requests_total", "Table API requests by method, table and status"),
            &["method", "table", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("sqlite_rest_request_duration_seconds", "Table API request duration"),
            &["method", "table"],
        )?;
        let auth_failures = IntCounterVec::new(
            Opts::new("sqlite_rest_auth_failures_total", "Requests refused by authentication, by reason"),
            &["reason"],
        )?;
        let access_denied = IntCounterVec::new(
            Opts::new("sqlite_rest_access_denied_total", "Requests refused by a role's table list, by table"),
            &["table"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(auth_failures.clone()))?;
        registry.register(Box::new(access_denied.clone()))?;
        Ok(RestMetrics { requests, duration, auth_failures, access_denied })
    }

    /// Metrics that are not exported anywhere, for callers that do not scrape.
    pub fn unregistered() -> Self {
        // Registering into a throw-away registry cannot collide with anything.
        match RestMetrics::new(&Registry::new()) {
            Ok(metrics) => metrics,
            Err(error) => unreachable!("fresh registry refused collectors: {error}"),
        }
    }
}
