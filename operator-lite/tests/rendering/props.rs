//! Property tests: any valid SqliteDatabase renders, its litecar config loads with the daemon's loader, and every
//! rendered object validates against the Kubernetes 1.33 schemas (scripts/k8s-validate.py, kubernetes-validate
//! in strict mode).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use litecar_operator::config::litecar_config;
use litecar_operator::render::render;
use litecar_operator::types::*;
use litecar_operator::{RenderOptions, SqliteDatabase, sidecar};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

fn replica() -> impl Strategy<Value = ReplicaSpec> {
    (
        prop_oneof![Just(ReplicaType::S3), Just(ReplicaType::Azure), Just(ReplicaType::Gcs), Just(ReplicaType::Local)],
        "[a-z][a-z0-9-]{2,12}",
        proptest::option::of("[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}"),
        proptest::option::of(prop_oneof![Just("us-east-1".to_owned()), Just("eu-west-1".to_owned())]),
        proptest::option::of(Just("https://minio.example.com:9000".to_owned())),
        proptest::option::of(("[a-z][a-z0-9-]{1,10}", proptest::option::of("[a-z-]{1,10}"))),
        proptest::option::of(prop_oneof![Just("24h".to_owned()), Just("1h30m".to_owned()), Just("720h".to_owned())]),
        proptest::option::of(Just("15m".to_owned())),
    )
        .prop_map(|(kind, bucket, path, region, endpoint, creds, retention, check)| ReplicaSpec {
            kind,
            bucket,
            region,
            endpoint,
            path,
            credentials: creds.map(|(secret_name, key)| CredentialsSpec {
                secret_name,
                access_key_field: key.clone(),
                secret_key_field: key.map(|k| format!("{k}-secret")),
            }),
            retention,
            retention_check_interval: check,
        })
}

fn database() -> impl Strategy<Value = SqliteDatabase> {
    let rest = (any::<bool>(), 1024..30000i32, proptest::collection::vec("[a-z_]{1,10}", 0..3), any::<Option<bool>>())
        .prop_map(|(enabled, port, allowed_tables, metrics)| SqliteRestSpec {
            enabled,
            port,
            auth_secret: Some("jwt".into()),
            allowed_tables,
            metrics: metrics.map(|enabled| MetricsSpec { enabled, port: port + 1 }),
        });
    (
        "[a-z][a-z0-9-]{0,20}[a-z0-9]",
        "[a-z][a-z0-9_]{0,10}\\.db",
        prop_oneof![Just("1Gi"), Just("500Mi"), Just("10G"), Just("2.5Gi")],
        proptest::option::of("[a-z-]{3,10}"),
        prop_oneof![Just(AccessMode::ReadWriteOnce), Just(AccessMode::ReadWriteMany), Just(AccessMode::ReadOnlyMany)],
        proptest::option::of("[a-z-]{3,10}"),
        proptest::option::of((any::<bool>(), proptest::collection::vec(replica(), 0..4))),
        proptest::option::of(rest),
        proptest::option::of((any::<bool>(), any::<Option<bool>>())),
        proptest::option::of((any::<bool>(), any::<bool>())),
    )
        .prop_map(|(name, file, size, class, access_mode, init, litestream, rest, ingress, litecar)| {
            let rest_on = rest.as_ref().is_some_and(|r| r.enabled);
            let mut spec = SqliteDatabaseSpec {
                database: DatabaseSpec {
                    name: file,
                    init_script: init,
                    storage: StorageSpec { size: size.into(), storage_class: class, access_mode },
                },
                litestream: litestream.map(|(enabled, mut replicas)| {
                    // One pod has one GOOGLE_APPLICATION_CREDENTIALS: GCS replicas share their secret.
                    let gcs = replicas.iter().find(|r| r.kind == ReplicaType::Gcs).and_then(|r| r.credentials.clone());
                    for r in replicas.iter_mut().filter(|r| r.kind == ReplicaType::Gcs) {
                        r.credentials = gcs.clone();
                    }
                    LitestreamSpec { enabled, replicas }
                }),
                sqlite_rest: rest,
                // The Ingress routes to the REST API, so it needs it.
                ingress: ingress.filter(|_| rest_on).map(|(tls, _)| IngressSpec {
                    enabled: true,
                    host: Some("db.example.com".into()),
                    tls: tls.then(|| TlsSpec { enabled: true, secret_name: Some("tls".into()) }),
                }),
                resources: None,
                litecar: litecar.map(|(sidecar, delete_storage)| LitecarSpec { image: None, sidecar, delete_storage }),
            };
            if spec.litecar.is_none() && spec.ingress.is_none() {
                spec.resources = serde_json::from_value(serde_json::json!({"requests": {"cpu": "50m"}})).ok();
            }
            let mut db = SqliteDatabase::new(&name, spec);
            db.metadata.namespace = Some("apps".into());
            db.metadata.uid = Some("6a1e4b0c-0000-4000-8000-000000000001".into());
            db
        })
}

fn app_deployment(db: &SqliteDatabase) -> k8s_openapi::api::apps::v1::Deployment {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "apps", "annotations": {sidecar::ANNOTATION: db.metadata.name}},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}},
        },
    }))
    .expect("deployment")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn any_valid_spec_renders_and_its_config_loads(db in database()) {
        let r = render(&db, &RenderOptions::default()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        if let Some(cm) = &r.config_map {
            let text = cm.data.as_ref().and_then(|d| d.get("litecar.yml")).expect("litecar.yml");
            let loaded = litecar::config::parse(Path::new("litecar.yml"), text, litecar::config::LoadOptions { expand_env: false, strict: true }).map(|l| l.config)
                .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            prop_assert_eq!(loaded, litecar_config(&db).config);
        }
        let sidecar = db.spec.litecar.as_ref().is_some_and(|l| l.sidecar);
        prop_assert_eq!(r.deployment.is_some(), !sidecar && litecar_operator::config::command(&db).is_some());
        let injected = sidecar::inject(&db, &app_deployment(&db), &RenderOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let again = sidecar::inject(&db, &injected, &RenderOptions::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(injected, again);
    }
}

/// One validator process for a batch of generated resources (it loads the schemas once).
#[test]
fn rendered_objects_of_generated_specs_validate_against_kubernetes_schemas() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut runner = TestRunner::deterministic();
    let strategy = database();
    let mut lines = String::new();
    for _ in 0..60 {
        let db = strategy.new_tree(&mut runner).expect("value").current();
        let opts = RenderOptions::default();
        for o in render(&db, &opts).expect("renders").objects() {
            lines.push_str(&o.to_string());
            lines.push('\n');
        }
        let injected = sidecar::inject(&db, &app_deployment(&db), &opts).expect("injects");
        lines.push_str(&serde_json::to_string(&injected).expect("json"));
        lines.push('\n');
    }
    let mut child = Command::new("python3")
        .arg(root.join("scripts/k8s-validate.py"))
        .args(["--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/test installs kubernetes-validate)");
    child.stdin.take().expect("stdin").write_all(lines.as_bytes()).expect("write objects");
    let out = child.wait_with_output().expect("validator");
    assert!(
        out.status.success(),
        "rendered objects do not validate:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
