//! Render tests: the examples' objects against golden files (reviewed by hand; `UPDATE_GOLDEN=1` rewrites them),
//! the generated litecar config loaded back by the daemon's own loader, rejected specs, and sidecar injection.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use litecar_operator::config::litecar_config;
use litecar_operator::manifest::{self, ManifestError};
use litecar_operator::render::{RenderError, render, to_yaml_stream};
use litecar_operator::sidecar;
use litecar_operator::{RenderOptions, SqliteDatabase, crd_yaml};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn opts() -> RenderOptions {
    RenderOptions { image: "litecar:test".into() }
}

fn example_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("examples/sqlitedatabase"))
        .expect("examples/sqlitedatabase")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "expected the SqliteDatabase examples, found {files:?}");
    files
}

fn db_from(yaml: &str) -> SqliteDatabase {
    let m = manifest::parse(Path::new("test.yaml"), yaml).expect("manifest parses");
    m.databases.into_iter().next().expect("one SqliteDatabase")
}

#[test]
fn examples_render_as_their_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    for file in example_files() {
        let m = manifest::read(&file).expect("example parses");
        let objects = manifest::render_all(&m, &opts()).expect("example renders");
        let got = to_yaml_stream(&objects).expect("yaml");
        let golden =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file.file_name().expect("file name"));
        if update {
            std::fs::create_dir_all(golden.parent().expect("dir")).expect("golden dir");
            std::fs::write(&golden, &got).expect("write golden");
            continue;
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 and review the diff)", golden.display()));
        assert_eq!(got, want, "{} renders differently from {}", file.display(), golden.display());
    }
}

#[test]
fn rendered_configs_load_with_the_daemons_loader() {
    for file in example_files() {
        let m = manifest::read(&file).expect("example parses");
        for db in &m.databases {
            let Some(cm) = render(db, &opts()).expect("renders").config_map else { continue };
            let text = cm.data.as_ref().and_then(|d| d.get("litecar.yml")).expect("litecar.yml");
            let loaded = litecar::config::parse(
                Path::new("litecar.yml"),
                text,
                litecar::config::LoadOptions { expand_env: false, strict: true },
            )
            .map(|l| l.config)
            .unwrap_or_else(|e| panic!("{}: rendered config rejected by litecar: {e}\n{text}", file.display()));
            assert_eq!(loaded, litecar_config(db).config, "{}: config changed in the round trip", file.display());
        }
    }
}

#[test]
fn credentials_are_secret_references_never_values() {
    let db =
        db_from(&std::fs::read_to_string(root().join("examples/sqlitedatabase/s3-rest-ingress.yaml")).expect("read"));
    let r = render(&db, &opts()).expect("renders");
    let text = r.config_map.as_ref().and_then(|c| c.data.as_ref()).and_then(|d| d.get("litecar.yml")).cloned();
    let text = text.expect("config");
    assert!(text.contains("access-key-id: ${LITECAR_REPLICA_0_ACCESS_KEY_ID}"), "{text}");
    assert!(text.contains("secret-access-key: ${LITECAR_REPLICA_0_SECRET_ACCESS_KEY}"), "{text}");
    assert!(text.contains("jwt-secret-file: /etc/auth/token"), "{text}");
    let loaded = litecar::config::parse(
        Path::new("litecar.yml"),
        &text,
        litecar::config::LoadOptions { expand_env: false, strict: true },
    )
    .map(|l| l.config)
    .expect("loads");
    match loaded.rest.and_then(|r| r.auth) {
        // No roles: every valid token may read and write the allowed tables, as with sqlite-rest.
        Some(litecar::config::AuthSetting::Jwt(j)) => assert!(j.roles.is_empty(), "{text}"),
        other => panic!("expected a JWT auth section, got {other:?}"),
    }
    let d = serde_json::to_value(r.deployment.expect("deployment")).expect("json");
    let litecar = &d["spec"]["template"]["spec"]["containers"][0];
    let env = litecar["env"].as_array().expect("env");
    for (var, key) in
        [("LITECAR_REPLICA_0_ACCESS_KEY_ID", "access-key"), ("LITECAR_REPLICA_0_SECRET_ACCESS_KEY", "secret-key")]
    {
        let e = env.iter().find(|e| e["name"] == var).unwrap_or_else(|| panic!("{var} missing: {env:?}"));
        assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], "s3-credentials");
        assert_eq!(e["valueFrom"]["secretKeyRef"]["key"], key);
    }
    let restore = &d["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(restore["env"], litecar["env"], "the restore container reads the same replica");
}

#[test]
fn every_container_is_hardened() {
    for file in example_files() {
        let m = manifest::read(&file).expect("example parses");
        for o in manifest::render_all(&m, &opts()).expect("renders") {
            if o["kind"] != "Deployment" {
                continue;
            }
            let spec = &o["spec"]["template"]["spec"];
            let ours = spec["initContainers"].as_array().into_iter().flatten().chain(
                spec["containers"].as_array().into_iter().flatten().filter(|c| c["name"].as_str() == Some("litecar")),
            );
            for c in ours.filter(|c| c["name"].as_str().is_some_and(|n| n.starts_with("litecar"))) {
                let sc = &c["securityContext"];
                let at = format!("{}: {}", file.display(), c["name"]);
                assert_eq!(sc["runAsNonRoot"], true, "{at}");
                assert_eq!(sc["readOnlyRootFilesystem"], true, "{at}");
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{at}");
                assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{at}");
                assert!(c["resources"]["requests"].is_object(), "{at}: resource requests");
                if c["name"] == "litecar" {
                    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz", "{at}");
                    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz", "{at}");
                }
            }
        }
    }
}

#[test]
fn owned_objects_carry_an_owner_reference_and_the_claim_is_kept_by_default() {
    let mut db =
        db_from(&std::fs::read_to_string(root().join("examples/sqlitedatabase/s3-rest-ingress.yaml")).expect("read"));
    db.metadata.uid = Some("1234".into());
    let r = render(&db, &opts()).expect("renders");
    for o in r.objects() {
        let refs = &o["metadata"]["ownerReferences"];
        if o["kind"] == "PersistentVolumeClaim" {
            assert!(refs.is_null(), "the claim outlives the resource unless deleteStorage: {o}");
            continue;
        }
        assert_eq!(refs[0]["uid"], "1234", "{o}");
        assert_eq!(refs[0]["kind"], "SqliteDatabase");
        assert_eq!(refs[0]["controller"], true);
    }
    db.spec.litecar = Some(litecar_operator::types::LitecarSpec { delete_storage: true, ..Default::default() });
    let pvc = serde_json::to_value(render(&db, &opts()).expect("renders").pvc).expect("json");
    assert_eq!(pvc["metadata"]["ownerReferences"][0]["uid"], "1234");
}

fn render_error(yaml: &str) -> String {
    match manifest::parse(Path::new("bad.yaml"), yaml) {
        Err(e) => e.to_string(),
        Ok(m) => match render(&m.databases[0], &opts()) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("accepted:\n{yaml}"),
        },
    }
}

#[test]
fn bad_specs_are_rejected_naming_the_field() {
    let head = "apiVersion: database.sqlite.io/v1alpha1\nkind: SqliteDatabase\nmetadata: {name: db}\nspec:\n";
    let cases = [
        ("  sqliteRest: {enabled: true}\n", "spec.sqliteRest.authSecret"),
        ("  litestream: {replicas: [{type: ftp, bucket: b}]}\n", "spec.litestream.replicas[0].type"),
        ("  litestream: {replicas: [{type: s3}]}\n", "spec.litestream.replicas[0].bucket"),
        (
            "  litestream: {replicas: [{type: s3, bucket: b, retention: 3 days}]}\n",
            "spec.litestream.replicas[0].retention",
        ),
        ("  ingress: {enabled: true}\n", "spec.ingress.host"),
        ("  ingress: {enabled: true, host: a.example}\n", "spec.ingress.enabled"),
        ("  database: {name: ../x.db}\n", "spec.database.name"),
        ("  database: {storage: {size: lots}}\n", "spec.database.storage.size"),
        (
            "  sqliteRest: {enabled: true, authSecret: j}\n  ingress: {enabled: true, host: h, tls: {enabled: true}}\n",
            "spec.ingress.tls.secretName",
        ),
    ];
    for (spec, field) in cases {
        let msg = render_error(&format!("{head}{spec}"));
        assert!(msg.contains(field), "error for\n{spec}should name {field}: {msg}");
        assert!(msg.contains("db"), "error should name the resource: {msg}");
    }
    let e = manifest::parse(Path::new("bad.yaml"), &format!("{head}  litestream: {{replicas: [{{type: ftp}}]}}\n"));
    assert!(matches!(&e, Err(ManifestError::Invalid(d)) if d.doc == 1), "{e:?}");
}

#[test]
fn sidecar_injection_keeps_the_application_and_is_idempotent() {
    let text = std::fs::read_to_string(root().join("examples/sqlitedatabase/sidecar-mode.yaml")).expect("read");
    let m = manifest::parse(Path::new("sidecar-mode.yaml"), &text).expect("parses");
    let (db, app) = (&m.databases[0], &m.deployments[0]);
    let rendered = render(db, &opts()).expect("renders");
    assert!(rendered.deployment.is_none(), "sidecar mode runs no Deployment of its own");
    assert!(rendered.config_map.is_some());
    let once = sidecar::inject(db, app, &opts()).expect("injects");
    let twice = sidecar::inject(db, &once, &opts()).expect("injects again");
    assert_eq!(once, twice, "injecting twice changes nothing");
    let pod = once.spec.template.spec.as_ref().expect("pod spec");
    assert_eq!(pod.containers, app.spec.template.spec.as_ref().expect("app").containers);
    let init: Vec<&str> = pod.init_containers.iter().flatten().map(|c| c.name.as_str()).collect();
    assert_eq!(init, ["litecar-restore", "litecar"]);
    let sidecar_container = &pod.init_containers.as_ref().expect("init")[1];
    assert_eq!(sidecar_container.restart_policy.as_deref(), Some("Always"), "a native sidecar");
    // The application mounts the claim already: litecar shares that volume instead of adding a second one.
    let mounts: Vec<&str> = sidecar_container.volume_mounts.iter().flatten().map(|m| m.name.as_str()).collect();
    assert!(mounts.contains(&"db"), "{mounts:?}");
    let claims = pod.volumes.iter().flatten().filter(|v| v.persistent_volume_claim.is_some()).count();
    assert_eq!(claims, 1);
    let labels = once.spec.template.metadata.as_ref().and_then(|m| m.labels.clone());
    assert_eq!(labels.expect("labels").get("database.sqlite.io/instance").map(String::as_str), Some("todo"));
}

#[test]
fn a_deployment_asking_for_an_unknown_database_is_an_error() {
    let text = std::fs::read_to_string(root().join("examples/sqlitedatabase/sidecar-mode.yaml")).expect("read");
    let mut m = manifest::parse(Path::new("sidecar-mode.yaml"), &text).expect("parses");
    m.databases[0].metadata.name = Some("other".into());
    match manifest::render_all(&m, &opts()) {
        Err(RenderError::MissingDatabase { database, .. }) => assert_eq!(database, "todo"),
        other => panic!("expected MissingDatabase, got {other:?}"),
    }
    let _: Option<&Deployment> = m.deployments.first();
}

#[test]
fn the_charts_crd_is_the_generated_one() {
    let generated = crd_yaml().expect("crd");
    let chart = std::fs::read_to_string(root().join("charts/litecar/crds/sqlitedatabases.yaml"))
        .expect("charts/litecar/crds/sqlitedatabases.yaml");
    assert_eq!(
        chart, generated,
        "charts/litecar/crds/sqlitedatabases.yaml is stale: litecar-operator crd > charts/litecar/crds/sqlitedatabases.yaml"
    );
    let crd: Value = serde_saphyr::from_str(&generated).expect("yaml");
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    let types = &spec["litestream"]["properties"]["replicas"]["items"]["properties"]["type"]["enum"];
    assert_eq!(types, &serde_json::json!(["s3", "azure", "gcs", "local"]));
    let rules = spec["sqliteRest"]["x-kubernetes-validations"].to_string();
    assert!(rules.contains("has(self.authSecret)"), "{rules}");
}
