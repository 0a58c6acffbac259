use std::time::Duration;

use litecar_replicate::backend::Backend;

use super::*;

fn load(text: &str) -> Result<Loaded, ConfigError> {
    parse(Path::new("/etc/litestream.yml"), text, LoadOptions::default())
}

fn err(text: &str) -> String {
    load(text).expect_err("invalid config").to_string()
}

fn s3_of(l: &Loaded, db: usize, replica: usize) -> litecar_replicate::backend::S3Settings {
    match &l.settings.dbs[db].replicas[replica].backend {
        Backend::S3(s) => s.clone(),
        other => panic!("not s3: {other:?}"),
    }
}

#[test]
fn litestream_config_loads() {
    let text = "
addr: \":9090\"
dbs:
  - path: /data/app.db
    monitor-interval: 1s
    checkpoint-interval: 1m
    min-checkpoint-page-count: 1000
    max-checkpoint-page-count: 10000
    replicas:
      - url: file:///backup/app
        sync-interval: 0s
        retention: 24h
      - type: file
        name: second
        path: /backup/two
";
    let c = load(text).expect("valid config");
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let reps = &c.settings.dbs[0].replicas;
    assert_eq!(reps.len(), 2);
    assert_eq!(reps[0].retention, Some(Duration::from_secs(86400)));
    assert_eq!((reps[0].name.as_str(), reps[1].name.as_str()), ("file", "second"));
    assert_eq!(reps[0].backend, Backend::File { path: "/backup/app".into() });
}

#[test]
fn errors_name_key_and_line() {
    let e = err("dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///b\n        retention: 3 days\n");
    assert!(e.contains("/etc/litestream.yml") && e.contains("line 5") && e.contains("3 days"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replicas:\n      - name: x\n");
    assert!(e.contains("line 4: dbs[0].replicas[0]:") && e.contains("url"), "{e}");
    let e =
        err("dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/p\n        endpoint: <LITESTREAM_ENDPOINT>\n");
    assert!(e.contains("line 5: dbs[0].replicas[0].endpoint:") && e.contains("placeholder"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        bucket: <BUCKET>\n        path: db\n");
    assert!(e.contains("line 5: dbs[0].replicas[0].bucket:"), "{e}");
    let e = err("logging:\n  level: loud\n");
    assert!(e.contains("line 2: logging.level") && e.contains("loud"), "{e}");
    let e = err("rest:\n  db: /a.db\n  allowed-tables: [t]\n");
    assert!(e.contains("rest.auth") && e.contains("required"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replicas:\n      - url: ftp://h/r\n");
    assert!(e.contains("line 4: dbs[0].replicas[0].url") && e.contains("ftp"), "{e}");
    assert!(err("dbs:\n  - path: [unclosed\n").contains("line"));
}

#[test]
fn unknown_keys_warn_with_the_nearest_key_and_strict_refuses_them() {
    let text = "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/p\n        forcePathStyle: true\n        \
                access_key_id: x\nbogus-top: 1\n";
    let l = load(text).expect("accepted with warnings");
    let w = l.warnings.join("\n");
    assert!(
        w.contains("line 5: unknown key `forcePathStyle` in dbs[0].replicas[0]; did you mean `force-path-style`?"),
        "{w}"
    );
    assert!(w.contains("line 6: unknown key `access_key_id`") && w.contains("`access-key-id`"), "{w}");
    assert!(w.contains("line 7: unknown key `bogus-top`"), "{w}");
    let strict = parse(Path::new("c.yml"), text, LoadOptions { strict: true, ..Default::default() });
    let e = strict.expect_err("strict").to_string();
    assert!(e.contains("forcePathStyle") && e.contains("bogus-top") && e.contains("-strict"), "{e}");
    let e = err(&format!("strict: true\n{text}"));
    assert!(e.contains("forcePathStyle"), "{e}");
    let l = load("mcp-addr: \":3001\"\ndbs:\n  - path: /a.db\n    replica:\n      url: file:///r\n").expect("0.5 key");
    assert!(l.warnings.join("").contains("`mcp-addr` is ignored: Litestream 0.5's MCP server"), "{:?}", l.warnings);
}

#[test]
fn litestream_05_replica_and_snapshot() {
    let text = "snapshot:\n  interval: 6h\n  retention: 72h\ndbs:\n  - path: /a.db\n    replica:\n      url: s3://bkt/db\n      \
                region: eu-west-1\n  - path: /b.db\n    replica:\n      url: file:///r\n      retention: 1h\n";
    let l = load(text).expect("0.5 config");
    let a = &l.settings.dbs[0].replicas[0];
    assert_eq!(
        (a.snapshot_interval, a.retention),
        (Some(Duration::from_secs(6 * 3600)), Some(Duration::from_secs(72 * 3600)))
    );
    assert_eq!(l.settings.dbs[1].replicas[0].retention, Some(Duration::from_secs(3600)));
    let e = err("dbs:\n  - path: /a.db\n    replica: {url: file:///r}\n    replicas: [{url: file:///s}]\n");
    assert!(e.contains("dbs[0].replica:") && e.contains("not both"), "{e}");
}

#[test]
fn unnamed_replicas_of_one_type_and_no_databases() {
    let l =
        load("dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r1\n      - path: /r2\n").expect("accepted");
    let names: Vec<&str> = l.settings.dbs[0].replicas.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["file", "file-2"]);
    let e =
        err("dbs:\n  - path: /a.db\n    replicas:\n      - {url: file:///r1, name: x}\n      - {path: /r2, name: x}\n");
    assert!(e.contains("dbs[0].replicas[1].name") && e.contains("twice"), "{e}");
    let l = load("dbs: []\n").expect("no databases");
    assert!(l.settings.dbs.is_empty());
    assert!(l.warnings.join("").contains("no databases"), "{:?}", l.warnings);
    assert!(load("# only a comment\n").expect("empty").settings.dbs.is_empty());
}

#[test]
fn s3_hosts_endpoints_and_ports() {
    let text = "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt.s3.us-west-002.backblazeb2.com/db\n      \
                - {name: b, type: s3, bucket: bkt, path: db, endpoint: s3.us-west-002.backblazeb2.com}\n      \
                - {name: c, url: \"s3://bkt.localhost:9000/db\"}\n      - {name: d, url: \"s3://plain:9000/x\", region: r1}\n";
    let l = load(text).expect("accepted");
    let a = s3_of(&l, 0, 0);
    assert_eq!((a.bucket.as_str(), a.region.as_deref()), ("bkt", Some("us-west-002")));
    assert_eq!(a.endpoint.as_deref(), Some("https://s3.us-west-002.backblazeb2.com"));
    assert_eq!(s3_of(&l, 0, 1).endpoint.as_deref(), Some("https://s3.us-west-002.backblazeb2.com"));
    let c = s3_of(&l, 0, 2);
    assert_eq!((c.bucket.as_str(), c.endpoint.as_deref()), ("bkt", Some("http://localhost:9000")));
    let d = s3_of(&l, 0, 3);
    assert_eq!((d.bucket.as_str(), d.endpoint, d.path.as_str()), ("plain", None, "x"));
    // Every resolved replica can be connected to without the HTTP client refusing (or panicking on) its address.
    for r in &l.settings.dbs[0].replicas {
        litecar_replicate::backend::connect(&r.name, &r.backend).expect("connects");
    }
}

#[test]
fn home_directory_in_paths() {
    let Some(home) = std::env::var_os("HOME") else { return };
    let l = load("dbs:\n  - path: ~/app.db\n    replicas:\n      - path: ~/backup\n").expect("accepted");
    assert_eq!(l.settings.dbs[0].path, PathBuf::from(&home).join("app.db"));
    assert_eq!(l.settings.dbs[0].replicas[0].backend, Backend::File { path: PathBuf::from(&home).join("backup") });
}

#[test]
fn age_keys_and_unsupported_features() {
    let e = err(
        "dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        age:\n          recipients: [age1abc]\n",
    );
    assert!(e.contains("line 5: dbs[0].replicas[0].age") && e.contains("recipients[0]"), "{e}");
    let e = err(
        "dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        age:\n          identities: [AGE-SECRET-KEY-1NOPE]\n",
    );
    assert!(e.contains("identities[0]") && !e.contains("NOPE"), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replicas:\n      - url: sftp://h/p\n");
    assert!(e.contains("line 4: dbs[0].replicas[0].url") && e.contains("type sftp needs a user"), "{e}");
    let l = load("dbs:\n  - path: /a.db\n    replicas:\n      - url: file:///r\n        validation-interval: 1h\n")
        .expect("ok");
    assert!(!l.warnings.join("").contains("validation-interval"), "{:?}", l.warnings);
    assert_eq!(l.settings.dbs[0].replicas[0].validation_interval, Some(Duration::from_secs(3600)));
}

/// Each credential key, next to each kind of problem the loader reports, never shows its value.
#[test]
fn credentials_never_appear_in_errors_or_warnings() {
    let secret = "Sup3rS3cretValue";
    let age_secret = "AGE-SECRET-KEY-1QYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQSZQGPQYQS";
    let problems = [
        ("bad value", "        retention: 3 days\n"),
        ("yaml syntax", "        path: [unclosed\n"),
        ("resolve check", "        endpoint: <PLACEHOLDER>\n"),
        ("unknown key", "        forcePathStyle: true\n"),
        ("wrong type", "        force-path-style: maybe\n"),
    ];
    for key in redact::CREDENTIAL_KEYS {
        for (value, shown) in [(secret, secret), (age_secret, "1QYQSZQGPQ")] {
            for (what, line) in problems {
                for before in [true, false] {
                    let cred = format!("        {key}: {value}\n");
                    let (first, second) = if before { (cred.as_str(), line) } else { (line, cred.as_str()) };
                    let text =
                        format!("dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/p\n{first}{second}");
                    for strict in [false, true] {
                        let out = match parse(Path::new("c.yml"), &text, LoadOptions { strict, expand_env: false }) {
                            Ok(l) => l.warnings.join("\n"),
                            Err(e) => e.to_string(),
                        };
                        assert!(!out.contains(shown), "{key} with {what} (strict {strict}) shows its value:\n{out}");
                    }
                }
            }
        }
    }
    // A value on the line at fault itself (a credential given a list) and one quoted by a check message.
    let e = err(
        "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://bkt/p\n        secret-access-key: {a: Sup3rS3cretValue}\n",
    );
    assert!(!e.contains(secret), "{e}");
    let e = err("dbs:\n  - path: /a.db\n    replicas:\n      - url: \"sftp://me:Sup3rS3cretValue@host:99999/p\"\n");
    assert!(e.contains("sftp URL") && !e.contains(secret), "{e}");
}

#[test]
fn rest_tls_needs_both_files_and_its_keys_are_known() {
    let base = "rest:\n  db: /a.db\n  addr: 127.0.0.1:8443\n  auth: none\n";
    let l = load(&format!("{base}  tls:\n    cert-file: /tls/tls.crt\n    key-file: /tls/tls.key\n")).expect("tls");
    let tls = l.settings.rest.expect("rest").tls.expect("tls");
    assert_eq!(tls, RestTls { cert_file: "/tls/tls.crt".into(), key_file: "/tls/tls.key".into() });
    assert!(l.warnings.is_empty(), "{:?}", l.warnings);
    let e = err(&format!("{base}  tls:\n    cert-file: /tls/tls.crt\n"));
    assert!(e.contains("rest.tls.key-file") && e.contains("required"), "{e}");
    let e = err(&format!("{base}  tls:\n    key-file: /tls/tls.key\n"));
    assert!(e.contains("rest.tls.cert-file") && e.contains("required"), "{e}");
    let l = load(&format!("{base}  tls:\n    cert-file: /c\n    key-file: /k\n    certFile: /x\n")).expect("typo");
    assert!(l.warnings.join("").contains("unknown key `certFile` in rest.tls"), "{:?}", l.warnings);
}
