//! SFTP replicas against a private OpenSSH server: round trip, the server killed and restarted while litecar
//! replicates, bad credentials, a missing directory, host-key checks, and interoperability both ways with the real
//! Litestream 0.3.11.

use std::path::{Path, PathBuf};
use std::time::Duration;

use litecar_e2e::sshd::{Sshd, keygen};
use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{Proc, digest, eventually, litecar, litecar_bin, litestream_bin, stderr};

struct Ctx {
    dir: tempfile::TempDir,
    db: PathBuf,
    replica: PathBuf,
}

impl Ctx {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("app.db");
        let replica = dir.path().join("on-server").join("app");
        workload::create(&db);
        Self { dir, db, replica }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A config with one SFTP replica on `sshd` and `extra` replica keys.
    fn config(&self, sshd: &Sshd, extra: &str) -> PathBuf {
        let cfg = self.path().join("litecar.yml");
        let text = format!(
            "dbs:\n  - path: {}\n    replicas:\n      - {}{extra}",
            self.db.display(),
            sshd.replica_yaml(&self.replica, 8)
        );
        std::fs::write(&cfg, text).expect("config");
        cfg
    }

    fn replicate(&self, cfg: &Path, log: &str) -> Proc {
        Proc::spawn(
            &litecar_bin(),
            &["replicate", "-config", cfg.to_str().expect("utf8")],
            self.path(),
            &self.path().join(log),
        )
    }

    /// litecar replicating three seconds of the default workload, stopped cleanly.
    fn replicate_a_workload(&self, cfg: &Path) -> Proc {
        let mut lc = self.replicate(cfg, "litecar.log");
        let w = Workload::start(&self.db, Options::default());
        std::thread::sleep(Duration::from_secs(3));
        w.stop();
        assert!(lc.terminate().success(), "log:\n{}", lc.log_text());
        lc
    }

    fn restore(&self, cfg: &Path, out: &str) -> (PathBuf, std::process::Output) {
        let out = self.path().join(out);
        let o = litecar(
            &["restore", "-config", cfg.to_str().expect("utf8"), "-o", out.to_str().expect("utf8"), self.db_str()],
            self.path(),
        );
        (out, o)
    }

    fn db_str(&self) -> &str {
        self.db.to_str().expect("utf8")
    }
}

/// Files under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
        }
    }
    out
}

#[test]
fn round_trip_through_sftp() {
    let sshd = Sshd::start();
    let ctx = Ctx::new();
    let cfg = ctx.config(&sshd, "");
    let lc = ctx.replicate_a_workload(&cfg);
    let log = lc.log_text();
    assert!(log.contains("SFTP host key not verified"), "no host-key warning:\n{log}");

    let written = files(&ctx.replica);
    assert!(written.iter().any(|p| p.to_string_lossy().ends_with(".snapshot.lz4")), "{written:?}");
    assert!(written.iter().any(|p| p.to_string_lossy().ends_with(".wal.lz4")), "{written:?}");
    assert!(!written.iter().any(|p| p.to_string_lossy().ends_with(".tmp")), "temporary files left: {written:?}");

    let (out, o) = ctx.restore(&cfg, "restored.db");
    assert!(o.status.success(), "restore failed: {}", stderr(&o));
    assert_eq!(digest(&out), digest(&ctx.db));
}

#[test]
fn replication_resumes_after_the_server_is_killed_and_restarted() {
    let mut sshd = Sshd::start();
    let ctx = Ctx::new();
    let cfg = ctx.config(&sshd, "        sync-interval: 200ms\n");
    let mut lc = ctx.replicate(&cfg, "litecar.log");
    let w = Workload::start(&ctx.db, Options { app_truncate_every: None, ..Default::default() });
    std::thread::sleep(Duration::from_secs(2));
    sshd.kill();
    // The application keeps writing while the server is down; the spool holds what cannot be uploaded.
    std::thread::sleep(Duration::from_secs(3));
    sshd.restart();
    std::thread::sleep(Duration::from_secs(2));
    let committed = w.stop();
    let last_file = || files(&ctx.replica).len();
    // Everything committed reaches the replica while litecar keeps running (not only at its shutdown).
    let mut seen = 0;
    eventually(Duration::from_secs(60), "uploads to resume after the restart", || {
        let (out, o) = ctx.restore(&cfg, &format!("probe-{seen}.db"));
        seen += 1;
        o.status.success() && workload::rows_in(&out) == *committed.lock().expect("lock")
    });
    assert!(last_file() > 0);
    let status = lc.terminate();
    let log = lc.log_text();
    assert!(status.success(), "litecar did not shut down cleanly; log:\n{log}");
    assert!(log.contains(&format!("sftp://{}@{}", sshd.user, sshd.host())), "errors name the replica:\n{log}");
    let (out, o) = ctx.restore(&cfg, "final.db");
    assert!(o.status.success(), "restore failed: {}", stderr(&o));
    assert_eq!(workload::rows_in(&out), *committed.lock().expect("lock"));
    assert_eq!(digest(&out), digest(&ctx.db));
}

#[test]
fn bad_credentials_name_the_replica() {
    let sshd = Sshd::start();
    let ctx = Ctx::new();
    let stranger = ctx.path().join("stranger_ed25519");
    keygen(&stranger);
    let url = format!("sftp://{}@{}{}", sshd.user, sshd.host(), ctx.replica.display());
    for (what, yaml) in [
        ("an unknown key", format!("key-path: {}", stranger.display())),
        ("a wrong password", "password: not-the-password".to_owned()),
    ] {
        let cfg = ctx.path().join("bad.yml");
        std::fs::write(
            &cfg,
            format!("dbs:\n  - path: {}\n    replicas:\n      - url: {url}\n        {yaml}\n", ctx.db_str()),
        )
        .expect("config");
        let o = litecar(&["generations", "-config", cfg.to_str().expect("utf8"), ctx.db_str()], ctx.path());
        let e = stderr(&o);
        assert!(!o.status.success(), "{what}: accepted");
        assert!(e.contains(&url) && e.contains("authentication failed"), "{what}: {e}");
        assert!(!e.contains("not-the-password"), "{what}: the password is in the message: {e}");
    }
}

#[test]
fn a_missing_directory_is_a_clear_error() {
    let sshd = Sshd::start();
    let ctx = Ctx::new();
    // Restoring from a directory that is not there says there are no backups there.
    let cfg = ctx.config(&sshd, "");
    let (out, o) = ctx.restore(&cfg, "nothing.db");
    assert!(!o.status.success() && !out.exists());
    let e = stderr(&o);
    assert!(e.contains("no backups found") && e.contains("sftp://"), "{e}");
    // A replica directory that cannot be created (a file is in the way) is reported with the replica and the path.
    std::fs::write(ctx.path().join("on-server"), b"a file").expect("blocker");
    let mut lc = ctx.replicate(&cfg, "blocked.log");
    let log_has = |lc: &Proc| lc.log_text().contains("is not a directory");
    eventually(Duration::from_secs(20), "the upload error", || log_has(&lc));
    let log = lc.log_text();
    let url = format!("sftp://{}@{}{}", sshd.user, sshd.host(), ctx.replica.display());
    assert!(log.contains(&url), "the error names the replica:\n{log}");
    assert!(lc.terminate().code().is_some(), "litecar hangs at shutdown");
}

#[test]
fn host_keys_are_checked_when_configured() {
    let sshd = Sshd::start();
    let ctx = Ctx::new();
    let other = ctx.path().join("other_host");
    keygen(&other);
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).expect("pub");
    let known = |name: &str, key: &str| {
        let p = ctx.path().join(name);
        std::fs::write(&p, format!("[127.0.0.1]:{} {key}\n", sshd.port)).expect("known_hosts");
        p
    };
    let good_known = known("known_good", &sshd.host_public_key());
    let bad_known = known("known_bad", other_pub.trim());
    let cases = [
        (format!("        host-key: {}\n", sshd.host_public_key()), true),
        (format!("        known-hosts-file: {}\n", good_known.display()), true),
        (format!("        host-key: {}\n", other_pub.trim()), false),
        (format!("        known-hosts-file: {}\n", bad_known.display()), false),
    ];
    for (extra, ok) in cases {
        let cfg = ctx.config(&sshd, &extra);
        let o = litecar(&["generations", "-config", cfg.to_str().expect("utf8"), ctx.db_str()], ctx.path());
        let e = stderr(&o);
        if ok {
            assert!(o.status.success(), "{extra}: {e}");
            assert!(!e.contains("not verified"), "{extra}: {e}");
        } else {
            assert!(!o.status.success(), "{extra}: a wrong host key was accepted");
            assert!(e.contains("host key mismatch") && e.contains("sftp://"), "{extra}: {e}");
        }
    }
}

/// A Litestream 0.3.11 config for the same replica (Litestream reads the same keys).
fn litestream_config(ctx: &Ctx, sshd: &Sshd) -> PathBuf {
    let cfg = ctx.path().join("litestream.yml");
    std::fs::write(
        &cfg,
        format!("dbs:\n  - path: {}\n    replicas:\n      - {}", ctx.db.display(), sshd.replica_yaml(&ctx.replica, 8)),
    )
    .expect("config");
    cfg
}

#[test]
fn litestream_restores_what_litecar_wrote_over_sftp() {
    let sshd = Sshd::start();
    let ctx = Ctx::new();
    let cfg = ctx.config(&sshd, "");
    ctx.replicate_a_workload(&cfg);

    let out = ctx.path().join("by-litestream.db");
    let ls_cfg = litestream_config(&ctx, &sshd);
    let o = std::process::Command::new(litestream_bin())
        .args(["restore", "-config", ls_cfg.to_str().expect("utf8"), "-o", out.to_str().expect("utf8"), ctx.db_str()])
        .output()
        .expect("run litestream");
    assert!(o.status.success(), "litestream restore failed: {}", stderr(&o));
    assert_eq!(digest(&out), digest(&ctx.db));
}

#[test]
fn litecar_restores_what_litestream_wrote_over_sftp() {
    let sshd = Sshd::start();
    let ctx = Ctx::new();
    let ls_cfg = litestream_config(&ctx, &sshd);
    let mut ls = Proc::spawn(
        &litestream_bin(),
        &["replicate", "-config", ls_cfg.to_str().expect("utf8")],
        ctx.path(),
        &ctx.path().join("litestream.log"),
    );
    eventually(Duration::from_secs(15), "litestream's first snapshot", || ctx.replica.join("generations").exists());
    let w = Workload::start(&ctx.db, Options { app_truncate_every: None, ..Default::default() });
    std::thread::sleep(Duration::from_secs(3));
    w.stop();
    // Litestream polls once a second; two polls copy the last commits before it shuts down.
    std::thread::sleep(Duration::from_millis(2500));
    ls.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = ls.wait_timeout(Duration::from_secs(20));

    let cfg = ctx.config(&sshd, "");
    let (out, o) = ctx.restore(&cfg, "by-litecar.db");
    assert!(o.status.success(), "litecar restore failed: {}", stderr(&o));
    assert_eq!(digest(&out), digest(&ctx.db), "litestream log:\n{}", ls.log_text());
}
