//! HTTP routes (phase 5).
