//! The end-to-end suite, one test binary: each module drives the built `litecar` and `litecar-operator` binaries
//! against real files, processes and peers (object-store emulators, Litestream 0.3.11, sqlite3, kubectl, sshd).
//! One binary rather than one per file: the suite links once, and a clean machine needs a fraction of the disk.

mod age_interop;
mod app_cooperation;
mod client_contract;
mod conformance;
mod drop_in;
mod errors;
mod faults;
mod follow;
mod full_disk;
mod litestream;
mod observability;
mod operator;
mod operator_kubectl;
mod replication;
mod rest_api;
mod rest_clients;
mod rest_tls;
mod sftp;
mod validation;
mod watchcache_daemon;
mod watchcache_fakekube;
mod watchcache_ingest;
mod watchcache_kubeapi;
mod watchcache_kubectl;
mod watchcache_pyclient;
