//! Benchmark (ignored by default; `make bench` runs it): probe 100 "nodes" — 100 loopback addresses
//! served by one sshd — and print how long a full probe takes, cold (new connections) and warm
//! (pooled connections). No assertion on speed.

use std::process::{Command, Stdio};

use futures::StreamExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cke::infra::agent::container::ContainerEngine;
use cke::infra::agent::hostkey::StorageHostKeys;
use cke::infra::agent::ssh::{SshConfig, SshPool, StaticKey};
use cke::model::{Cluster, Node};
use cke::probe::probe_nodes;
use cke::storage::MemStorage;
use cke_testkit::{free_port, require_root};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_probe_100_nodes() {
    require_root("this test");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, kind) in [("host", "ed25519"), ("user", "ed25519")] {
        assert!(Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", "", "-f"])
            .arg(d.join(name))
            .status()
            .unwrap()
            .success());
    }
    std::fs::copy(d.join("user.pub"), d.join("authorized_keys")).unwrap();
    let port = free_port();
    // sshd listens on at most 16 addresses; 0.0.0.0 with logins allowed from loopback only.
    let mut conf = format!("ListenAddress 0.0.0.0:{port}\nAllowUsers root@127.0.0.0/8\n");
    conf.push_str(&format!(
        "HostKey {h}\nPidFile {p}\nAuthorizedKeysFile {a}\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\nMaxStartups 200\nMaxSessions 100\n",
        h = d.join("host").display(),
        p = d.join("sshd.pid").display(),
        a = d.join("authorized_keys").display()
    ));
    std::fs::write(d.join("sshd_config"), conf).unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    // As on the mtest nodes, sessions do not read this host's ~/.bashrc (see docs/mtest.md): sshd runs
    // in a private mount namespace with a one-line file over /root/.bashrc.
    std::fs::write(d.join("bashrc"), "# bench\n").unwrap();
    let script = format!(
        "[ -f /root/.bashrc ] && mount --bind '{rc}' /root/.bashrc; exec /usr/sbin/sshd -D -f '{conf}'",
        rc = d.join("bashrc").display(),
        conf = d.join("sshd_config").display()
    );
    let mut sshd = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "sshd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    let nodes: Vec<Node> = (1..=100)
        .map(|i| Node::new(&format!("127.0.0.{i}"), "root", i <= 3))
        .collect();
    let cluster = Cluster::new("bench", "10.96.0.0/16", nodes);
    let key = std::fs::read_to_string(d.join("user")).unwrap();
    let pins = Arc::new(StorageHostKeys(Arc::new(MemStorage::default())));
    let pool = SshPool::new(
        Arc::new(StaticKey(key)),
        pins,
        SshConfig {
            port,
            ..Default::default()
        },
    );
    // On real nodes each node runs its own podman; here 100 "nodes" share two cores, so the SSH
    // fan-out is measured with a stand-in engine CLI that answers like podman with no containers.
    let fake = d.join("fake-engine");
    std::fs::write(
        &fake,
        "#!/bin/sh\ncase \"$1 $2\" in \"container inspect\") echo '[]';; *) echo \"Error: no such volume $3\" >&2; exit 1;; esac\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let engine = ContainerEngine::new(fake.to_str().unwrap(), vec![]);
    // Connection set-up (key exchange and authentication, 100 sshd forks on this machine) first.
    let t = Instant::now();
    let connects = futures::stream::iter(cluster.nodes.iter().map(|n| {
        let agent = pool.node(&n.address, "root");
        async move {
            cke::infra::agent::Runner::run(&agent, "true", None, Duration::from_secs(120))
                .await
                .is_ok()
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<bool>>()
    .await;
    println!(
        "FIGURE SSH connect to 100 nodes (16 at a time): {:?}, {} ok",
        t.elapsed(),
        connects.iter().filter(|b| **b).count()
    );
    for round in ["warm", "warm", "warm"] {
        let t = Instant::now();
        let st = probe_nodes(&pool, &engine, &cluster, 64).await;
        let reachable = st.values().filter(|s| s.ssh_connected).count();
        println!(
            "FIGURE probe of 100 nodes over SSH ({round} connections): {:?}, {reachable} reachable",
            t.elapsed()
        );
        if let Some(bad) = st.values().find(|s| !s.ssh_connected) {
            println!(
                "  (first failure: {})",
                bad.ssh_error.chars().take(120).collect::<String>()
            );
        }
    }
    let t = Instant::now();
    let st = probe_nodes(&pool, &ContainerEngine::default(), &cluster, 64).await;
    let reachable = st.values().filter(|s| s.ssh_connected).count();
    println!(
        "FIGURE probe of 100 nodes with real podman, all on this machine's 2 cores: {:?}, {reachable} answered within the per-node limit",
        t.elapsed()
    );
    let _ = sshd.kill();
    let _ = sshd.wait();
}
