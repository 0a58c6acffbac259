//! A private OpenSSH server for the SFTP replica tests: Debian's `/usr/sbin/sshd` on 127.0.0.1 and a random port,
//! with its own host key, config and authorized key in a temporary directory; no system service is touched. It logs
//! in the user the tests run as (root on CI), with the key only.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

pub struct Sshd {
    dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    child: Option<Child>,
}

/// Make an ed25519 key pair at `path` (and `path.pub`).
pub fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "litecar-test", "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .expect("run ssh-keygen");
    assert!(st.success(), "ssh-keygen failed");
}

impl Sshd {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        keygen(&d.join("host_ed25519"));
        keygen(&d.join("client_ed25519"));
        std::fs::copy(d.join("client_ed25519.pub"), d.join("authorized_keys")).expect("authorized_keys");
        let port = crate::free_port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication yes\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\n\
             LogLevel ERROR\nMaxStartups 100\n",
            d = d.display()
        );
        std::fs::write(d.join("sshd_config"), config).expect("sshd_config");
        // sshd's privilege separation directory; harmless when it exists.
        let _ = std::fs::create_dir_all("/run/sshd");
        let id = Command::new("id").arg("-un").output().expect("run id -un");
        let user = String::from_utf8_lossy(&id.stdout).trim().to_owned();
        assert!(!user.is_empty(), "no name for the current user");
        let mut s = Self { dir, port, user, child: None };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(d.join("sshd.log")).expect("log");
        // Its own process group: stopping the server also ends the per-connection children it forked.
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("start /usr/sbin/sshd (Debian openssh-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "sshd did not listen on {}; log:\n{}", self.port, self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kill the server and every connection it serves, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Start it again on the same port with the same keys.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The private key the server accepts.
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The server's public key line (`ssh-ed25519 AAAA... comment`).
    pub fn host_public_key(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("host_ed25519.pub")).expect("host key").trim().to_owned()
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The YAML keys (at replica-entry indentation `indent`) of an SFTP replica at `path` on this server.
    pub fn replica_yaml(&self, path: &Path, indent: usize) -> String {
        let pad = " ".repeat(indent);
        format!(
            "type: sftp\n{pad}host: {}\n{pad}user: {}\n{pad}key-path: {}\n{pad}path: {}\n",
            self.host(),
            self.user,
            self.client_key().display(),
            path.display()
        )
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}
