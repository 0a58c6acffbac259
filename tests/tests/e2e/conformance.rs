//! One conformance suite, run against every replica backend: file, S3 (moto), Azure Blob (Azurite) and GCS (the
//! project's fake). Each scenario drives the real `litecar` binary with a concurrent workload.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use litecar_e2e::emulators;
use litecar_e2e::workload::{self, Options, Workload};
use litecar_e2e::{Proc, digest, eventually, litecar_bin, litecar_with_env, row_count, stderr};

#[derive(Clone, Copy, Debug)]
enum Kind {
    File,
    S3,
    Abs,
    Gcs,
}

struct Ctx {
    dir: tempfile::TempDir,
    envs: Vec<(String, String)>,
    config: PathBuf,
}

impl Ctx {
    /// A database with one replica of `kind`; `replica_extra` and `db_extra` are more YAML lines for each entry.
    fn new(kind: Kind, db_extra: &str, replica_extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let name = format!("t{:08x}", rand::random::<u32>());
        let mut envs = vec![];
        let replica = match kind {
            Kind::File => format!("url: file://{}", dir.path().join("replica").display()),
            Kind::S3 => {
                emulators::create_s3_bucket(&name);
                format!(
                    "url: s3://{name}/app\n        endpoint: {}\n        region: us-east-1\n        \
                     access-key-id: test\n        secret-access-key: test",
                    emulators::s3_endpoint()
                )
            }
            Kind::Abs => {
                emulators::create_azure_container(&name);
                format!(
                    "url: abs://{}@{name}/app\n        endpoint: {}\n        account-key: {}",
                    emulators::AZURITE_ACCOUNT,
                    emulators::azure_endpoint(),
                    emulators::AZURITE_KEY
                )
            }
            Kind::Gcs => {
                let sa = emulators::gcs_service_account(dir.path());
                envs.push(("GOOGLE_APPLICATION_CREDENTIALS".to_owned(), sa.display().to_string()));
                format!("url: gcs://{name}/app")
            }
        };
        let db = dir.path().join("app.db");
        let config = dir.path().join("litecar.yml");
        let text =
            format!("dbs:\n  - path: {}\n{db_extra}    replicas:\n      - {replica}\n{replica_extra}", db.display());
        std::fs::write(&config, text).expect("config");
        workload::create(&db);
        Self { dir, envs, config }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("app.db")
    }

    fn start(&self) -> Proc {
        Proc::spawn_with_env(
            &litecar_bin(),
            &["replicate", "-config", self.config.to_str().expect("utf8")],
            self.dir.path(),
            &self.dir.path().join("litecar.log"),
            &self.envs,
        )
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec![args[0], "-config", self.config.to_str().expect("utf8")];
        all.extend_from_slice(&args[1..]);
        litecar_with_env(&all, self.dir.path(), &self.envs)
    }

    /// Restore through the config (`litecar restore -config C -o OUT DB`); `None` if the restore failed.
    fn try_restore(&self, out: &str, extra: &[&str]) -> Option<PathBuf> {
        let out = self.dir.path().join(out);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", out.display()));
        }
        let db = self.db();
        let mut args = vec!["restore", "-o", out.to_str().expect("utf8")];
        args.extend_from_slice(extra);
        args.push(db.to_str().expect("utf8"));
        let o = self.run(&args);
        o.status.success().then_some(out)
    }

    fn restore(&self, out: &str, extra: &[&str]) -> PathBuf {
        self.try_restore(out, extra).unwrap_or_else(|| {
            let db = self.db();
            let o = self.run(&["restore", "-o", "/dev/null/x", db.to_str().expect("utf8")]);
            panic!("restore failed; a second attempt says: {}", stderr(&o))
        })
    }

    /// Lines of `litecar generations|snapshots|wal` output, without the header.
    fn listing(&self, verb: &str) -> Vec<Vec<String>> {
        let db = self.db();
        let o = self.run(&[verb, db.to_str().expect("utf8")]);
        assert!(o.status.success(), "litecar {verb}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .collect()
    }

    fn write_for(&self, d: Duration) {
        let w = Workload::start(&self.db(), Options { app_truncate_every: None, ..Default::default() });
        std::thread::sleep(d);
        w.stop();
    }
}

fn stop(lc: &mut Proc) {
    let status = lc.terminate();
    assert!(status.success(), "litecar exited {status:?}; log:\n{}", lc.log_text());
}

fn replicate_and_restore(kind: Kind) {
    let ctx = Ctx::new(kind, "    min-checkpoint-page-count: 100\n", "");
    let mut lc = ctx.start();
    ctx.write_for(Duration::from_secs(3));
    stop(&mut lc);
    let restored = ctx.restore("restored.db", &["-parallelism", "4"]);
    assert_eq!(digest(&restored), digest(&ctx.db()), "log:\n{}", lc.log_text());
    assert_eq!(ctx.listing("generations").len(), 1);
    assert!(ctx.listing("wal").len() > 1);
}

fn point_in_time(kind: Kind) {
    let ctx = Ctx::new(kind, "", "");
    let mut lc = ctx.start();
    let insert = |from: i64| {
        let mut c = litecar_e2e::app_connection(&ctx.db());
        let tx = c.transaction().expect("begin");
        for i in from..from + 10 {
            tx.execute("INSERT INTO events (writer, seq, payload) VALUES (1, ?1, x'01')", [i]).expect("insert");
        }
        tx.commit().expect("commit");
    };
    let count = || ctx.try_restore("probe.db", &[]).map_or(-1, |p| row_count(&p, "events"));
    insert(0);
    eventually(Duration::from_secs(20), "batch A in the replica", || count() == 10);
    // Object stores time objects to the second: keep a clear margin on both sides.
    std::thread::sleep(Duration::from_millis(1500));
    let t = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    std::thread::sleep(Duration::from_millis(1500));
    insert(10);
    eventually(Duration::from_secs(20), "batch B in the replica", || count() == 20);
    stop(&mut lc);
    assert_eq!(row_count(&ctx.restore("at-t.db", &["-timestamp", &t]), "events"), 10);
    assert_eq!(row_count(&ctx.restore("latest.db", &[]), "events"), 20);
}

fn retention(kind: Kind) {
    let ctx = Ctx::new(
        kind,
        "    min-checkpoint-page-count: 20\n",
        "        snapshot-interval: 1s\n        retention: 2s\n        retention-check-interval: 1s\n",
    );
    let mut lc = ctx.start();
    ctx.write_for(Duration::from_secs(6));
    // Snapshots and retention run on their own schedule; on a loaded machine they lag the writes, so wait for the
    // first snapshot to go rather than for a fixed time.
    let min_index = || ctx.listing("snapshots").iter().filter_map(|r| r[2].parse::<u32>().ok()).min();
    eventually(Duration::from_secs(30), "snapshot 0 to fall out of the 2s retention", || min_index() > Some(0));
    // A pass removes the snapshots first and then the WAL behind the oldest one left, so the WAL is checked while
    // litecar runs: a shutdown may cut a pass short between the two (the next start finishes it).
    let wal_behind = || {
        let oldest = min_index().unwrap_or(0);
        ctx.listing("wal").iter().any(|r| r[2].parse::<u32>().is_ok_and(|i| i < oldest))
    };
    eventually(Duration::from_secs(30), "the WAL segments older than the oldest snapshot to go", || !wal_behind());
    stop(&mut lc);
    let snapshots = ctx.listing("snapshots");
    let indexes: Vec<u32> = snapshots.iter().map(|r| r[2].parse().expect("index")).collect();
    let Some(&min_snapshot) = indexes.iter().min() else {
        panic!("no snapshot left; the newest is always kept. wal: {:?}\nlog:\n{}", ctx.listing("wal"), lc.log_text())
    };
    assert!(min_snapshot > 0, "snapshot 0 outlived a 2s retention: {snapshots:?}; log:\n{}", lc.log_text());
    let wal = ctx.listing("wal");
    let restored = ctx.restore("restored.db", &[]);
    assert_eq!(digest(&restored), digest(&ctx.db()), "snapshots: {snapshots:?}\nwal: {wal:?}\nlog:\n{}", lc.log_text());
}

fn restart_and_continue(kind: Kind) {
    let ctx = Ctx::new(kind, "", "");
    for _ in 0..2 {
        let mut lc = ctx.start();
        ctx.write_for(Duration::from_secs(2));
        stop(&mut lc);
    }
    assert_eq!(ctx.listing("generations").len(), 1, "a restart must continue the generation");
    assert_eq!(digest(&ctx.restore("restored.db", &[])), digest(&ctx.db()));
}

fn new_generation(kind: Kind) {
    let ctx = Ctx::new(kind, "", "");
    let mut lc = ctx.start();
    ctx.write_for(Duration::from_secs(2));
    stop(&mut lc);
    // Losing the local position (a new pod with a fresh volume, say) starts a new generation.
    std::fs::remove_dir_all(ctx.dir.path().join(".app.db-litecar")).expect("remove state");
    let mut lc = ctx.start();
    ctx.write_for(Duration::from_secs(2));
    stop(&mut lc);
    assert_eq!(ctx.listing("generations").len(), 2);
    assert_eq!(digest(&ctx.restore("restored.db", &[])), digest(&ctx.db()));
}

macro_rules! suite {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;
            #[test] fn replicate_and_restore() { super::replicate_and_restore($kind) }
            #[test] fn point_in_time() { super::point_in_time($kind) }
            #[test] fn retention() { super::retention($kind) }
            #[test] fn restart_and_continue() { super::restart_and_continue($kind) }
            #[test] fn new_generation() { super::new_generation($kind) }
        }
    )*};
}

suite!(file => Kind::File, s3 => Kind::S3, abs => Kind::Abs, gcs => Kind::Gcs);
