//! The replica-client contract (`litecar_e2e::contract::run`) against every backend: the file client, the
//! fault-injecting client with its faults off, S3 (moto), Azure Blob (Azurite), GCS (the project's fake) and SFTP (a
//! private OpenSSH server).

use std::sync::Arc;

use litecar_e2e::contract;
use litecar_e2e::emulators;
use litecar_e2e::sshd::Sshd;
use litecar_replicate::ObjectClient;
use litecar_replicate::backend::{self, AbsSettings, Backend, GcsSettings, S3Settings};
use litecar_replicate::sftp::{HostKeyCheck, SftpSettings};
use litecar_replicate::test_utils::{FaultConfig, FaultyClient};

fn unique(prefix: &str) -> String {
    format!("{prefix}{:08x}", rand::random::<u32>())
}

async fn check(backend: &Backend, scratch: &std::path::Path) {
    let replica = backend::connect("contract", backend).expect("connect");
    check_client(replica.client.as_ref(), scratch).await;
}

async fn check_client(client: &dyn ObjectClient, scratch: &std::path::Path) {
    if let Err(e) = contract::run(client, scratch).await {
        panic!("{e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn file_client_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    check(&Backend::File { path: dir.path().join("replica") }, dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fault_injecting_client_with_faults_off_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inner = backend::connect("inner", &Backend::File { path: dir.path().join("replica") }).expect("connect");
    let off = FaultConfig { fail_before: 0.0, fail_after: 0.0, delay: 0.0, truncate: 0.0, ..Default::default() };
    let faulty = FaultyClient::new(inner.client.clone(), off);
    check_client(&faulty, dir.path()).await;
    assert_eq!(faulty.injected.load(std::sync::atomic::Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_client_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = unique("contract");
    emulators::create_s3_bucket(&bucket);
    let s = S3Settings {
        bucket,
        path: "app".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(emulators::s3_endpoint().to_owned()),
        force_path_style: Some(true),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..Default::default()
    };
    check(&Backend::S3(s), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn azure_client_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let container = unique("contract");
    emulators::create_azure_container(&container);
    let a = AbsSettings {
        account: Some(emulators::AZURITE_ACCOUNT.to_owned()),
        container,
        path: "app".into(),
        account_key: Some(emulators::AZURITE_KEY.to_owned()),
        sas_token: None,
        endpoint: Some(emulators::azure_endpoint().to_owned()),
    };
    check(&Backend::Abs(a), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gcs_client_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("tempdir");
    let g = GcsSettings {
        bucket: unique("contract"),
        path: "app".into(),
        service_account_path: Some(emulators::gcs_service_account(dir.path()).display().to_string()),
    };
    check(&Backend::Gcs(g), dir.path()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_client_keeps_the_contract() {
    let sshd = Arc::new(tokio::task::spawn_blocking(Sshd::start).await.expect("sshd"));
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SftpSettings {
        host: sshd.host(),
        user: sshd.user.clone(),
        password: None,
        key_path: Some(sshd.client_key()),
        path: dir.path().join("on-server").display().to_string(),
        host_key: HostKeyCheck::AcceptAny,
    };
    check(&Backend::Sftp(s), dir.path()).await;
}
