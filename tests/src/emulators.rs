//! Object-store emulators for the conformance suite, on 127.0.0.1 and random ports: moto (S3), Azurite (Azure
//! Blob) and the project's own GCS fake (`tests/fakes/fake_gcs.py`). `scripts/test` starts each once and exports
//! its endpoint (`LITECAR_TEST_S3_ENDPOINT`, `LITECAR_TEST_AZURE_ENDPOINT`, `LITECAR_TEST_GCS_ENDPOINT`); without
//! those, a test process starts its own, which dies with it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on 127.0.0.1:{port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Start `cmd` so that it is killed when this process exits: a shell watchdog polls our pid.
fn spawn_tied(cmd: &[&str], log: &str) -> std::process::Child {
    let script = r#"parent=$1; shift; "$@" & child=$!
trap 'kill $child 2>/dev/null' TERM INT
while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
kill "$child" 2>/dev/null; wait "$child""#;
    let log = std::fs::File::create(std::env::temp_dir().join(log)).expect("log");
    Command::new("sh")
        .args(["-c", script, "sh", &std::process::id().to_string()])
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"))
}

fn find_tool(env_var: &str, name: &str, local: &[&str]) -> String {
    if let Ok(p) = std::env::var(env_var) {
        return p;
    }
    for dir in local {
        let p = workspace_root().join(dir).join(name);
        if p.exists() {
            return p.display().to_string();
        }
    }
    name.to_owned()
}

/// S3 endpoint (moto).
pub fn s3_endpoint() -> &'static str {
    static EP: OnceLock<String> = OnceLock::new();
    EP.get_or_init(|| {
        if let Ok(e) = std::env::var("LITECAR_TEST_S3_ENDPOINT") {
            return e;
        }
        let port = free_port();
        let bin = find_tool("MOTO_SERVER", "moto_server", &[]);
        let child = spawn_tied(&[&bin, "-H", "127.0.0.1", "-p", &port.to_string()], &format!("moto-{port}.log"));
        std::mem::forget(child);
        wait_for_port(port, "moto_server (pip install 'moto[server]')");
        format!("http://127.0.0.1:{port}")
    })
}

/// Azure blob endpoint (Azurite), `http://127.0.0.1:PORT/devstoreaccount1`.
pub fn azure_endpoint() -> &'static str {
    static EP: OnceLock<String> = OnceLock::new();
    EP.get_or_init(|| {
        if let Ok(e) = std::env::var("LITECAR_TEST_AZURE_ENDPOINT") {
            return e;
        }
        let port = free_port();
        let bin = find_tool("AZURITE_BLOB", "azurite-blob", &["target/emulators/node_modules/.bin"]);
        let child = spawn_tied(
            &[
                &bin,
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &port.to_string(),
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--skipApiVersionCheck",
                "--silent",
            ],
            &format!("azurite-{port}.log"),
        );
        std::mem::forget(child);
        wait_for_port(port, "azurite-blob (npm install azurite@3.35.0)");
        format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}")
    })
}

/// GCS endpoint (the project's fake).
pub fn gcs_endpoint() -> &'static str {
    static EP: OnceLock<String> = OnceLock::new();
    EP.get_or_init(|| {
        if let Ok(e) = std::env::var("LITECAR_TEST_GCS_ENDPOINT") {
            return e;
        }
        let script = workspace_root().join("tests/fakes/fake_gcs.py");
        let mut child = spawn_tied(&["python3", script.to_str().expect("utf8"), "--port", "0"], "fake-gcs.log");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
        std::mem::forget(child);
        let url = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("fake GCS said {line:?}"));
        url.to_owned()
    })
}

/// A service-account file that points object_store at the GCS fake.
pub fn gcs_service_account(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("gcs-service-account.json");
    let json = format!(
        r#"{{"gcs_base_url": "{}", "disable_oauth": true, "client_email": "litecar-test@example.iam.gserviceaccount.com", "private_key": "", "private_key_id": ""}}"#,
        gcs_endpoint()
    );
    std::fs::write(&path, json).expect("service account file");
    path
}

/// A minimal HTTP/1.1 request; returns the status code.
pub fn http(endpoint: &str, method: &str, path: &str, headers: &[(&str, String)]) -> u16 {
    let hostport = endpoint.trim_start_matches("http://").split('/').next().expect("host");
    let mut s = TcpStream::connect(hostport).expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Length: 0\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

pub fn create_s3_bucket(bucket: &str) {
    let status = http(s3_endpoint(), "PUT", &format!("/{bucket}"), &[]);
    assert!(status == 200 || status == 409, "creating bucket {bucket}: HTTP {status}");
}

/// Create an Azurite container, signing the request with the well-known emulator key (SharedKey).
pub fn create_azure_container(container: &str) {
    let endpoint = azure_endpoint();
    let script = r#"
import base64, hashlib, hmac, sys, urllib.request, email.utils
endpoint, account, key, container = sys.argv[1:5]
date = email.utils.formatdate(usegmt=True)
version = "2021-08-06"
ctype = "application/octet-stream"
to_sign = "PUT\n" + "\n" * 4 + ctype + "\n" * 7 + f"x-ms-date:{date}\nx-ms-version:{version}\n/{account}/{account}/{container}\nrestype:container"
sig = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"{endpoint}/{container}?restype=container", method="PUT", data=b"",
    headers={"x-ms-date": date, "x-ms-version": version, "Content-Type": ctype,
             "Authorization": f"SharedKey {account}:{sig}"})
try:
    urllib.request.urlopen(req)
except urllib.error.HTTPError as e:
    if e.code != 409:
        sys.exit(f"HTTP {e.code}: {e.read()[:300]!r}")
"#;
    let out = Command::new("python3")
        .args(["-c", script, endpoint, AZURITE_ACCOUNT, AZURITE_KEY, container])
        .output()
        .expect("python3");
    assert!(out.status.success(), "creating container {container}: {}", String::from_utf8_lossy(&out.stderr));
}
