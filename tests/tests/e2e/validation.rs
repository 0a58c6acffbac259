//! `validation-interval`: a good replica validates, and one corrupted behind litecar's back is reported, in the
//! log and in `litecar_replica_validation_total` / `litestream_replica_validation_total`.

use std::path::Path;
use std::time::Duration;

use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{Proc, eventually, free_port, http_get, litecar_bin};

/// The value of the series `name{labels}` in a Prometheus text page.
fn value(page: &str, name: &str, labels: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && labels.split(',').all(|p| l.contains(p)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn corrupt_snapshots(replica: &Path) {
    let gens = replica.join("generations");
    for g in std::fs::read_dir(&gens).expect("generations").flatten() {
        for s in std::fs::read_dir(g.path().join("snapshots")).expect("snapshots").flatten() {
            let mut data = std::fs::read(s.path()).expect("read");
            let (mid, len) = (data.len() / 2, data.len());
            for b in &mut data[mid..(mid + 64).min(len)] {
                *b ^= 0x5a;
            }
            // A new file renamed over the old one: file replicas share their objects' inodes with the spool and
            // with each other (hard links), and only this replica is to go bad.
            let tmp = s.path().with_extension("corrupt");
            std::fs::write(&tmp, data).expect("write");
            std::fs::rename(&tmp, s.path()).expect("rename");
        }
    }
}

#[test]
fn a_good_replica_validates_and_a_corrupted_one_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("app.db");
    workload::create(&db);
    let port = free_port();
    let (good, bad) = (dir.path().join("good"), dir.path().join("bad"));
    let cfg = dir.path().join("litecar.yml");
    std::fs::write(
        &cfg,
        format!(
            "addr: 127.0.0.1:{port}\ndbs:\n  - path: {}\n    replicas:\n      - url: file://{}\n        name: good\n        \
             validation-interval: 5s\n      - url: file://{}\n        name: bad\n        validation-interval: 5s\n",
            db.display(),
            good.display(),
            bad.display()
        ),
    )
    .expect("config");
    let mut lc = Proc::spawn(
        &litecar_bin(),
        &["replicate", "-config", cfg.to_str().expect("utf8")],
        dir.path(),
        &dir.path().join("litecar.log"),
    );
    let w = Workload::start(&db, Options { app_truncate_every: None, ..Default::default() });
    std::thread::sleep(Duration::from_secs(2));
    w.stop();
    eventually(Duration::from_secs(20), "the bad replica's first snapshot", || bad.join("generations").exists());
    // Before the first validation (5 s after the start).
    corrupt_snapshots(&bad);

    let series =
        |name: &str, status: &str| {
            let (_, page) = http_get(port, "/metrics");
            value(&page, "litecar_replica_validation_total", &format!("name=\"{name}\",status=\"{status}\"")).zip(
                value(&page, "litestream_replica_validation_total", &format!("name=\"{name}\",status=\"{status}\"")),
            )
        };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !(series("good", "ok").is_some_and(|(a, _)| a >= 1.0)
        && series("bad", "error").is_some_and(|(a, _)| a >= 1.0))
    {
        assert!(std::time::Instant::now() < deadline, "no validation results in 60s; log:\n{}", lc.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(series("good", "error"), Some((0.0, 0.0)), "log:\n{}", lc.log_text());
    assert_eq!(series("bad", "ok"), Some((0.0, 0.0)), "log:\n{}", lc.log_text());
    let (ok, alias) = series("good", "ok").expect("series");
    assert!(alias >= 1.0 && ok >= 1.0);
    assert!(lc.terminate().success(), "log:\n{}", lc.log_text());
    let log = lc.log_text();
    assert!(log.contains("replica validation failed") && log.contains(&bad.display().to_string()), "{log}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("validate") || n.contains("litecar-restore"))
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
}
