//! The `litecar` daemon: configuration, CLI commands and the process supervisor.

pub mod cli;
pub mod commands;
pub mod config;
pub mod exec;
pub mod follow;
pub mod follow_metrics;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod replicas;
pub mod rest;
pub mod services;
pub mod supervisor;
pub mod tls;
pub mod validate;
pub mod watchcache;
