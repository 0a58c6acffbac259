//! Interoperability with the real Litestream 0.3.11: each restores the other's replica, equal to the source.

use std::path::Path;
use std::time::Duration;

use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{Proc, digest, eventually, litecar, litecar_bin, litestream_bin, stderr};

fn config(dir: &Path, db: &Path, replica: &Path) -> std::path::PathBuf {
    let cfg = dir.join("replicate.yml");
    std::fs::write(
        &cfg,
        format!(
            "dbs:\n  - path: {}\n    min-checkpoint-page-count: 200\n    replicas:\n      - url: file://{}\n",
            db.display(),
            replica.display()
        ),
    )
    .expect("config");
    cfg
}

#[test]
fn litestream_restores_a_litecar_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, replica) = (dir.path().join("app.db"), dir.path().join("replica"));
    workload::create(&db);
    let cfg = config(dir.path(), &db, &replica);
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("litecar.log"),
    );
    let w = Workload::start(&db, Options::default());
    std::thread::sleep(Duration::from_secs(4));
    w.stop();
    assert!(lc.terminate().success(), "log:\n{}", lc.log_text());

    let out = dir.path().join("by-litestream.db");
    let o = std::process::Command::new(litestream_bin())
        .args(["restore", "-o", out.to_str().expect("utf8"), &format!("file://{}", replica.display())])
        .output()
        .expect("run litestream");
    assert!(o.status.success(), "litestream restore failed: {}", stderr(&o));
    assert_eq!(digest(&out), digest(&db));
}

#[test]
fn litecar_restores_a_litestream_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (db, replica) = (dir.path().join("app.db"), dir.path().join("replica"));
    workload::create(&db);
    let cfg = config(dir.path(), &db, &replica);
    let mut ls = Proc::spawn(
        &litestream_bin(),
        &["replicate", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("litestream.log"),
    );
    eventually(Duration::from_secs(10), "litestream's first snapshot", || replica.join("generations").exists());
    // Litestream holds its read lock too; the application's own TRUNCATE checkpoints stay out of this workload.
    let w = Workload::start(&db, Options { app_truncate_every: None, ..Default::default() });
    std::thread::sleep(Duration::from_secs(4));
    w.stop();
    // Litestream polls once a second; give it two polls to copy the last commits before it shuts down.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(ls.terminate().success(), "log:\n{}", ls.log_text());

    let out = dir.path().join("by-litecar.db");
    let o =
        litecar(&["restore", "-o", out.to_str().expect("utf8"), &format!("file://{}", replica.display())], dir.path());
    assert!(o.status.success(), "litecar restore failed: {}", stderr(&o));
    assert_eq!(digest(&out), digest(&db), "litestream log:\n{}", ls.log_text());
}
