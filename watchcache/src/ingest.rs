//! Kubernetes -> store ingestion (phase 4).
