//! age-encrypted replicas with the real Litestream 0.3.11, on a file replica and on S3 (moto): each restores what
//! the other encrypted; objects are never plaintext; a missing or wrong identity fails clearly and leaves no file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{Proc, digest, emulators, eventually, litecar, litecar_bin, litestream_bin, restore_args, stderr};

use age::secrecy::ExposeSecret;

/// A fresh key pair: (identity, recipient).
fn key_pair() -> (String, String) {
    let id = age::x25519::Identity::generate();
    (id.to_string().expose_secret().to_owned(), id.to_public().to_string())
}

enum Store {
    File(PathBuf),
    S3(String),
}

impl Store {
    fn replica_yaml(&self, identities: &[&str], recipients: &[String]) -> String {
        let location = match self {
            Store::File(p) => format!("url: file://{}", p.display()),
            Store::S3(bucket) => format!(
                "url: s3://{bucket}/db\n        endpoint: {}\n        region: us-east-1\n        force-path-style: true\n        \
                 access-key-id: t\n        secret-access-key: t",
                emulators::s3_endpoint()
            ),
        };
        let ids = identities.join(", ");
        let rcpts = recipients.join(", ");
        format!("{location}\n        age:\n          identities: [{ids}]\n          recipients: [{rcpts}]\n")
    }
}

fn write_config(dir: &Path, name: &str, db: &Path, replica: &str) -> PathBuf {
    let cfg = dir.join(name);
    std::fs::write(&cfg, format!("dbs:\n  - path: {}\n    replicas:\n      - {replica}", db.display()))
        .expect("config");
    cfg
}

fn stores(dir: &Path) -> Vec<Store> {
    let bucket = format!("age-{:08x}", rand::random::<u32>());
    emulators::create_s3_bucket(&bucket);
    vec![Store::File(dir.join("replica")), Store::S3(bucket)]
}

fn run_litecar(dir: &Path, cfg: &Path, db: &Path) {
    let mut lc =
        Proc::spawn(&litecar_bin(), &["replicate", "-config", cfg.to_str().expect("utf8")], dir, &dir.join("lc.log"));
    let w = Workload::start(db, Options::default());
    std::thread::sleep(Duration::from_secs(3));
    w.stop();
    assert!(lc.terminate().success(), "{}", lc.log_text());
}

fn run_litestream(dir: &Path, cfg: &Path, db: &Path, replica_exists: impl Fn() -> bool) {
    let mut ls = Proc::spawn(
        &litestream_bin(),
        &["replicate", "-config", cfg.to_str().expect("utf8")],
        dir,
        &dir.join("ls.log"),
    );
    eventually(Duration::from_secs(15), "litestream's first snapshot", &replica_exists);
    let w = Workload::start(db, Options { app_truncate_every: None, ..Default::default() });
    std::thread::sleep(Duration::from_secs(3));
    w.stop();
    std::thread::sleep(Duration::from_millis(2500));
    assert!(ls.terminate().success(), "{}", ls.log_text());
}

#[test]
fn encrypted_replicas_round_trip_with_litestream_both_ways() {
    let (identity, recipient) = key_pair();
    let (other_identity, other_recipient) = key_pair();
    let root = tempfile::tempdir().expect("tempdir");
    for (n, store) in stores(root.path()).into_iter().enumerate() {
        let dir = root.path().join(format!("case{n}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let replica = store.replica_yaml(&[identity.as_str()], std::slice::from_ref(&recipient));

        // litecar writes, Litestream restores.
        let db = dir.join("a.db");
        workload::create(&db);
        let cfg = write_config(&dir, "a.yml", &db, &replica);
        run_litecar(&dir, &cfg, &db);
        if let Store::File(p) = &store {
            for entry in walk(p) {
                let bytes = std::fs::read(&entry).expect("read object");
                assert!(bytes.starts_with(b"age-encryption.org/v1"), "{} is not encrypted", entry.display());
            }
        }
        let out = dir.join("by-litestream.db");
        let o = std::process::Command::new(litestream_bin())
            .args(restore_args(&cfg, &out, &db))
            .output()
            .expect("litestream");
        assert!(o.status.success(), "litestream restore: {}", stderr(&o));
        assert_eq!(digest(&out), digest(&db));

        // Litestream writes (to a fresh location), litecar restores.
        let store2 = match &store {
            Store::File(p) => Store::File(p.with_extension("ls")),
            Store::S3(b) => {
                let b2 = format!("{b}-ls");
                emulators::create_s3_bucket(&b2);
                Store::S3(b2)
            }
        };
        let db2 = dir.join("b.db");
        workload::create(&db2);
        let cfg2 = write_config(
            &dir,
            "b.yml",
            &db2,
            &store2.replica_yaml(&[identity.as_str()], std::slice::from_ref(&recipient)),
        );
        let cfg2_text = cfg2.clone();
        run_litestream(&dir, &cfg2, &db2, || match &store2 {
            Store::File(p) => p.join("generations").exists(),
            Store::S3(_) => {
                let o = litecar(
                    &["snapshots", "-config", cfg2_text.to_str().expect("utf8"), db2.to_str().expect("utf8")],
                    &dir,
                );
                String::from_utf8_lossy(&o.stdout).lines().count() > 1
            }
        });
        let out2 = dir.join("by-litecar.db");
        let o = litecar(&restore_args(&cfg2, &out2, &db2), &dir);
        assert!(o.status.success(), "litecar restore: {}", stderr(&o));
        assert_eq!(digest(&out2), digest(&db2));

        // A wrong identity, or none: a clear error naming what is expected, and no output file.
        let cases =
            [(vec![other_identity.as_str()], "no configured identity matches"), (vec![], "no identity is configured")];
        for (ids, needle) in cases {
            let bad = write_config(&dir, "bad.yml", &db2, &store2.replica_yaml(&ids, &[]));
            let out3 = dir.join("never.db");
            let o = litecar(&restore_args(&bad, &out3, &db2), &dir);
            assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
            assert!(stderr(&o).contains(needle) && stderr(&o).contains("age-encrypted"), "{}", stderr(&o));
            if !ids.is_empty() {
                assert!(stderr(&o).contains(&other_recipient), "{}", stderr(&o));
            }
            assert!(!out3.exists(), "a failed restore left {}", out3.display());
            let leftovers: Vec<_> = std::fs::read_dir(&dir)
                .expect("dir")
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("never.db"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
