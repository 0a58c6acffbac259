//! A Litestream user changes nothing but the image: the config file Litestream reads, the Kubernetes guide's
//! arguments, the config values Litestream accepts (and made litecar panic), bucket regions looked up, no databases.

use std::path::Path;
use std::time::Duration;

use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{
    Proc, digest, emulators, eventually, litecar_bin, litecar_with_env, litestream_bin, restore_args, stderr,
};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The Kubernetes guide's pod: the config at the path `$LITESTREAM_CONFIG` names (the guide mounts it at
/// /etc/litestream.yml, which the same lookup reads when no variable is set), `replicate` with no arguments, and
/// the init container's `restore -if-db-not-exists -if-replica-exists DB`.
#[test]
fn the_kubernetes_guide_pod_runs_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, replica) = (dir.path().join("db"), dir.path().join("replica"));
    let cfg = dir.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    replicas:\n      - url: file://{}\n", db.display(), replica.display()),
    )
    .expect("config");
    let vars = env(&[("LITESTREAM_CONFIG", cfg.to_str().expect("utf8")), ("LITECAR_CONFIG", "")]);
    let restore = |out: &Path| {
        litecar_with_env(
            &["restore", "-if-db-not-exists", "-if-replica-exists", out.to_str().expect("utf8")],
            dir.path(),
            &vars,
        )
    };
    // First start: no backup yet, nothing to do.
    let o = restore(&db);
    assert!(o.status.success() && !db.exists(), "{}", stderr(&o));
    assert!(stderr(&o).contains("LITESTREAM_CONFIG"), "the config file used is not named: {}", stderr(&o));

    workload::create(&db);
    let mut lc = Proc::spawn_with_env(&litecar_bin(), &["replicate"], dir.path(), &dir.path().join("lc.log"), &vars);
    let w = Workload::start(&db, Options::default());
    std::thread::sleep(Duration::from_secs(3));
    w.stop();
    assert!(lc.terminate().success(), "{}", lc.log_text());
    assert!(lc.log_text().contains(cfg.to_str().expect("utf8")), "{}", lc.log_text());

    // A restarted pod keeps its database; a new pod restores it.
    let o = restore(&db);
    assert!(o.status.success() && stderr(&o).contains("already exists"), "{}", stderr(&o));
    let restored = dir.path().join("restored");
    std::fs::create_dir(&restored).expect("dir");
    let moved = restored.join("db");
    std::fs::rename(&db, &moved).expect("move the original away");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::rename(format!("{}{suffix}", db.display()), format!("{}{suffix}", moved.display()));
    }
    let o = restore(&db);
    assert!(o.status.success() && db.exists(), "{}", stderr(&o));
    assert_eq!(digest(&db), digest(&moved));
}

/// `dbs: []` runs idle with a warning, as Litestream does, and stops cleanly; `-trace PATH` gets the debug log.
#[test]
fn no_databases_runs_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cfg, trace) = (dir.path().join("c.yml"), dir.path().join("trace.log"));
    std::fs::write(&cfg, "dbs: []\n").expect("config");
    let args = ["replicate", "-config", cfg.to_str().expect("utf8"), "-trace", trace.to_str().expect("utf8")];
    let mut lc = Proc::spawn(&litecar_bin(), &args, dir.path(), &dir.path().join("lc.log"));
    std::thread::sleep(Duration::from_secs(2));
    assert!(lc.terminate().success(), "{}", lc.log_text());
    assert!(lc.log_text().contains("no databases"), "{}", lc.log_text());
    let traced = std::fs::read_to_string(&trace).expect("trace file");
    assert!(traced.contains("no databases") && traced.contains("using config file"), "{traced}");
}

/// Values Litestream accepts and that used to make litecar panic inside its HTTP client: an endpoint without a
/// scheme, a host with a port in the URL. They are used as Litestream uses them; a request that fails is an error
/// naming the replica (exit 1), never a panic (exit 101).
#[test]
fn addresses_litestream_accepts_never_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        "type: s3\n        bucket: bkt\n        path: db\n        endpoint: 127.0.0.1:1\n        region: us-east-1",
        "url: s3://bkt.localhost:1/db",
        "url: s3://bkt:1/db\n        region: us-east-1\n        endpoint: http://127.0.0.1:1",
    ];
    for (i, replica) in cases.iter().enumerate() {
        let cfg = dir.path().join(format!("c{i}.yml"));
        std::fs::write(&cfg, format!("dbs:\n  - path: /a.db\n    replicas:\n      - {replica}\n        access-key-id: a\n        secret-access-key: b\n"))
            .expect("config");
        let o = litecar_with_env(&["snapshots", "-config", cfg.to_str().expect("utf8"), "/a.db"], dir.path(), &[]);
        assert_eq!(o.status.code(), Some(1), "case {i}: {}", stderr(&o));
        assert!(stderr(&o).contains("s3://bkt"), "case {i}: {}", stderr(&o));
    }
    // A placeholder left in is refused before anything is sent, naming the key and line.
    let cfg = dir.path().join("placeholder.yml");
    std::fs::write(
        &cfg,
        "dbs:\n  - path: /a.db\n    replicas:\n      - type: s3\n        bucket: b\n        endpoint: <ENDPOINT>\n",
    )
    .expect("config");
    let o = litecar_with_env(&["replicate", "-config", cfg.to_str().expect("utf8")], dir.path(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("line 6: dbs[0].replicas[0].endpoint"), "{}", stderr(&o));
}

fn create_bucket_in(bucket: &str, region: &str) {
    let script = "import boto3, sys\n\
                  s = boto3.client('s3', endpoint_url=sys.argv[1], region_name=sys.argv[3], aws_access_key_id='t', aws_secret_access_key='t')\n\
                  s.create_bucket(Bucket=sys.argv[2], CreateBucketConfiguration={'LocationConstraint': sys.argv[3]})\n";
    let o = std::process::Command::new("python3")
        .args(["-c", script, emulators::s3_endpoint(), bucket, region])
        .output()
        .expect("python3");
    assert!(o.status.success(), "creating {bucket} in {region}: {}", stderr(&o));
}

/// With neither `region` nor `endpoint`, the bucket's region is asked of S3 (HEAD bucket), as Litestream does; here
/// S3 is moto, named the way the AWS tools take it from the environment.
#[test]
fn bucket_region_is_looked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bucket = format!("region-{:08x}", rand::random::<u32>());
    create_bucket_in(&bucket, "eu-west-2");
    let (db, cfg) = (dir.path().join("app.db"), dir.path().join("c.yml"));
    workload::create(&db);
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    replicas:\n      - url: s3://{bucket}/app\n        force-path-style: true\n        \
             access-key-id: t\n        secret-access-key: t\n",
            db.display()
        ),
    )
    .expect("config");
    let vars = env(&[("AWS_ENDPOINT_URL", emulators::s3_endpoint()), ("AWS_REGION", ""), ("AWS_DEFAULT_REGION", "")]);
    let mut lc = Proc::spawn_with_env(
        &litecar_bin(),
        &["replicate", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("lc.log"),
        &vars,
    );
    let out = dir.path().join("restored.db");
    eventually(Duration::from_secs(30), &format!("a snapshot in the bucket; log:\n{}", lc.log_text()), || {
        let o = litecar_with_env(
            &["snapshots", "-config", cfg.to_str().expect("utf8"), db.to_str().expect("utf8")],
            dir.path(),
            &vars,
        );
        o.status.success() && String::from_utf8_lossy(&o.stdout).lines().count() > 1
    });
    assert!(lc.terminate().success(), "{}", lc.log_text());
    assert!(lc.log_text().contains("eu-west-2"), "{}", lc.log_text());
    let o = litecar_with_env(&restore_args(&cfg, &out, &db), dir.path(), &vars);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(digest(&out), digest(&db));

    // A bucket that does not exist is a clear error naming it.
    let missing = dir.path().join("missing.yml");
    std::fs::write(&missing, "dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://no-such-bucket-here/app\n")
        .expect("config");
    let o = litecar_with_env(&["snapshots", "-config", missing.to_str().expect("utf8"), "/a.db"], dir.path(), &vars);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no-such-bucket-here") && stderr(&o).contains("region"), "{}", stderr(&o));
}

/// Every corpus config Litestream 0.3.11 itself loads (`litestream databases`), so litecar's acceptance is compared
/// with the real thing; the differences are the ones the README lists (placeholders and an empty path are refused
/// at start-up instead of failing later).
#[test]
fn litestream_loads_the_corpus_too() {
    let dir = emulators::workspace_root().join("tests/corpus/litestream");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read");
        // Every variable set, so that the bucket Litestream checks for is there.
        let vars: Vec<String> = text
            .split('$')
            .skip(1)
            .filter_map(|s| {
                let s = s.strip_prefix('{').unwrap_or(s);
                let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
                (end > 0).then(|| s[..end].to_owned())
            })
            .collect();
        let mut cmd = std::process::Command::new(litestream_bin());
        cmd.args(["databases", "-config", path.to_str().expect("utf8")]);
        for v in vars {
            let value = if v == "REPLICA_URL" {
                "s3://bkt/db".into()
            } else if v.contains("RETENTION") {
                "72h".into()
            } else {
                format!("x{}", v.len())
            };
            cmd.env(v, value);
        }
        let o = cmd.output().expect("litestream");
        assert!(o.status.success(), "litestream refuses {}: {}", path.display(), stderr(&o));
        checked += 1;
    }
    assert!(checked >= 15);
}

/// `generations` prints `lag` as Litestream does: a Go duration, the database's last write minus the replica's.
#[test]
fn generations_lag_is_a_go_duration_from_the_database_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, replica) = (dir.path().join("app.db"), dir.path().join("replica"));
    workload::create(&db);
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    replicas:\n      - url: file://{}\n", db.display(), replica.display()),
    )
    .expect("config");
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("lc.log"),
    );
    eventually(Duration::from_secs(15), "a snapshot", || replica.join("generations").exists());
    std::thread::sleep(Duration::from_secs(1));
    assert!(lc.terminate().success(), "{}", lc.log_text());
    // The database was last written 1h2m5s after the replica.
    let later = std::time::SystemTime::now() + Duration::from_secs(3725);
    for suffix in ["", "-wal"] {
        if let Ok(f) = std::fs::File::options().append(true).open(format!("{}{suffix}", db.display())) {
            f.set_modified(later).expect("set mtime");
        }
    }
    let o = litecar_with_env(
        &["generations", "-config", cfg.to_str().expect("utf8"), db.to_str().expect("utf8")],
        dir.path(),
        &[],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    let lag = out.lines().nth(1).and_then(|l| l.split_whitespace().nth(2)).expect("a generation row");
    assert!(lag.starts_with("1h2m") && lag.ends_with('s'), "lag {lag:?} in:\n{out}");
}
