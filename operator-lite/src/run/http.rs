//! The operator's own metrics and health endpoints.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use axum::http::StatusCode;
use axum::routing::get;
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub reconciles: IntCounterVec,
    pub duration: HistogramVec,
    /// True once the process serves (leading or standing by).
    pub ready: Arc<AtomicBool>,
}

impl Metrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounterVec::new(
            Opts::new("litecar_operator_reconcile_total", "SqliteDatabase reconciles by result (ok, degraded, error)"),
            &["result"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("litecar_operator_reconcile_duration_seconds", "Time of one reconcile, by result")
                .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["result"],
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { registry, reconciles, duration, ready: Arc::default() })
    }

    pub fn observe(&self, result: &str, seconds: f64) {
        self.reconciles.with_label_values(&[result]).inc();
        self.duration.with_label_values(&[result]).observe(seconds);
    }

    fn text(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }
}

pub async fn serve(addr: String, metrics: Metrics, cancel: CancellationToken) -> Result<()> {
    let bind = if addr.starts_with(':') { format!("0.0.0.0{addr}") } else { addr.clone() };
    let m = metrics.clone();
    let app = axum::Router::new()
        .route("/metrics", get(move || futures::future::ready(m.text())))
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = metrics.ready.load(Ordering::Relaxed);
                async move { if ready { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting") } }
            }),
        );
    let listener = tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("--metrics-addr {addr}"))?;
    axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned()).await?;
    Ok(())
}
