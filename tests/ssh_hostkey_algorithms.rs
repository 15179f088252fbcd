//! A node whose sshd has several host keys, with its RSA (or ECDSA) key pinned — as `ckecli
//! ssh-hostkey set` from an `ssh-keyscan -t rsa` line does: cke must ask for that key's algorithm and
//! connect, and still refuse a wrong key of that algorithm.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cke::infra::agent::hostkey::{HostKeyMode, HostKeyStore, StorageHostKeys};
use cke::infra::agent::ssh::{SshConfig, SshPool, StaticKey};
use cke::infra::agent::Runner;
use cke::storage::MemStorage;
use cke_testkit::{free_port, require_root};

fn keygen(path: &std::path::Path, kind: &str) {
    assert!(Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", "", "-f"])
        .arg(path)
        .status()
        .unwrap()
        .success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pinned_key_algorithm_is_asked_for() {
    require_root("this test");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, kind) in [
        ("host_ed25519", "ed25519"),
        ("host_rsa", "rsa"),
        ("host_ecdsa", "ecdsa"),
        ("other_rsa", "rsa"),
        ("user", "ed25519"),
    ] {
        keygen(&d.join(name), kind);
    }
    std::fs::copy(d.join("user.pub"), d.join("authorized_keys")).unwrap();
    std::fs::write(d.join("bashrc"), "# test\n").unwrap();
    let port = free_port();
    let conf = format!(
        "ListenAddress 127.0.0.1:{port}\nHostKey {d}/host_ed25519\nHostKey {d}/host_ecdsa\nHostKey {d}/host_rsa\nPidFile {d}/sshd.pid\nAuthorizedKeysFile {d}/authorized_keys\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n",
        d = d.display()
    );
    std::fs::write(d.join("sshd_config"), conf).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    // As on the mtest nodes, the host's ~/.bashrc is not read by the sessions.
    let script = format!(
        "[ -f /root/.bashrc ] && mount --bind '{rc}' /root/.bashrc; exec /usr/sbin/sshd -D -f '{conf}'",
        rc = d.join("bashrc").display(),
        conf = d.join("sshd_config").display()
    );
    /// Kills sshd when the test ends, failed or not.
    struct Sshd(std::process::Child);
    impl Drop for Sshd {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _sshd = Sshd(
        Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let user_key = std::fs::read_to_string(d.join("user")).unwrap();
    let pub_line = |name: &str| std::fs::read_to_string(d.join(format!("{name}.pub"))).unwrap();

    for (pinned, should_connect) in [
        ("host_rsa", true),
        ("host_ecdsa", true),
        ("host_ed25519", true),
        ("other_rsa", false),
    ] {
        let store = Arc::new(StorageHostKeys(Arc::new(MemStorage::default())));
        let line = cke::infra::agent::hostkey::normalise_public_key(&pub_line(pinned)).unwrap();
        store.set("127.0.0.1", &line).await.unwrap();
        let pool = SshPool::new(
            Arc::new(StaticKey(user_key.clone())),
            store,
            SshConfig {
                port,
                host_key_mode: HostKeyMode::Strict,
                ..Default::default()
            },
        );
        let out = pool
            .node("127.0.0.1", "root")
            .run("echo ok", None, Duration::from_secs(20))
            .await;
        match (out, should_connect) {
            (Ok(o), true) => assert_eq!(o.stdout_str().trim(), "ok", "{pinned}"),
            (Err(e), false) => assert!(e.to_string().contains("host key refused"), "{pinned}: {e}"),
            (r, _) => panic!("{pinned}: unexpected {r:?}"),
        }
    }
}
