//! The SSH agent, host-key pinning, the container engine and the probe against real mtest node hosts
//! (network namespaces with their own sshd and podman).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cke::infra::agent::container::{ContainerEngine, Replace, RunSpec};
use cke::infra::agent::hostkey::{HostKeyMode, HostKeyStore, StorageHostKeys};
use cke::infra::agent::ssh::{SshConfig, SshPool, StaticKey};
use cke::infra::agent::{AgentError, Runner};
use cke::model::{ContainerParams, Mount, Node, ServiceParams};
use cke::probe::probe_node;
use cke::storage::{MemStorage, Storage};
use cke_testkit::{require_root, Mtest};

fn pool(m: &Mtest, store: Arc<dyn HostKeyStore>, mode: HostKeyMode) -> Arc<SshPool> {
    let key = std::fs::read_to_string(m.ssh_key()).unwrap();
    let cfg = SshConfig {
        dial_timeout: Duration::from_secs(3),
        host_key_mode: mode,
        ..Default::default()
    };
    SshPool::new(Arc::new(StaticKey(key)), store, cfg)
}

fn node(m: &Mtest, i: usize) -> Node {
    Node::new(&m.node(i), "root", true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_files_host_keys_containers_and_probe() {
    require_root("mtest");
    let m = Mtest::up(2, &["--no-vault", "--no-etcd"]);
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::default());
    let pins: Arc<dyn HostKeyStore> = Arc::new(StorageHostKeys(storage.clone()));
    let p = pool(&m, pins.clone(), HostKeyMode::Tofu);
    let n1 = p.node(&m.node(1), "root");
    let t = Duration::from_secs(20);

    // Commands: stdout, stderr, exit status, stdin.
    let out = n1.run("echo out; echo err >&2; exit 3", None, t).await.unwrap();
    assert_eq!(
        (
            out.stdout_str(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status
        ),
        ("out\n".into(), "err\n".into(), 3)
    );
    let out = n1.run("wc -c", Some(&vec![b'x'; 100_000]), t).await.unwrap();
    assert_eq!(out.stdout_str().trim(), "100000");
    assert!(matches!(
        n1.check("false", None, t).await,
        Err(AgentError::Failed { status: 1, .. })
    ));
    // A command that outlives its timeout.
    let e = n1.run("sleep 10", None, Duration::from_millis(500)).await.unwrap_err();
    assert!(matches!(e, AgentError::Timeout { .. }), "{e}");
    // Files: atomically, with mode and owner.
    n1.write_file("/etc/kubernetes/pki/x.key", b"secret\n", 0o600, Some("root:root"))
        .await
        .unwrap();
    let out = n1
        .check(
            "stat -c '%a %U' /etc/kubernetes/pki/x.key; cat /etc/kubernetes/pki/x.key",
            None,
            t,
        )
        .await
        .unwrap();
    assert_eq!(out.stdout_str(), "600 root\nsecret\n");
    // Connections are reused: 20 commands in a row on one connection are quick and all succeed.
    let metrics = cke::metrics::process();
    let opened = metrics.ssh_connections_opened.get();
    assert!(metrics.ssh_connections_open() >= 1, "the pool holds a connection");
    for i in 0..20 {
        assert_eq!(
            n1.check(&format!("echo {i}"), None, t)
                .await
                .unwrap()
                .stdout_str()
                .trim(),
            i.to_string()
        );
    }
    assert_eq!(
        metrics.ssh_connections_opened.get(),
        opened,
        "no new connection for them"
    );
    // Reconnect after sshd restarts.
    assert!(m.run(&["node-stop", "1"]).status.success());
    assert!(m.run(&["node-start", "1"]).status.success());
    assert_eq!(n1.check("echo back", None, t).await.unwrap().stdout_str(), "back\n");

    // Host keys: TOFU pinned node1's key; a changed key is refused, counted, and the node looks down.
    let pinned = pins.get(&m.node(1)).await.unwrap().expect("pinned on first use");
    assert!(pinned.starts_with("ssh-ed25519 "));
    let before = cke::metrics::process().ssh_hostkey_mismatches.get();
    let failures = metrics.ssh_connect_failures.get();
    assert!(m.run(&["rekey", "1"]).status.success());
    let fresh = pool(&m, pins.clone(), HostKeyMode::Tofu);
    let e = fresh.node(&m.node(1), "root").run("true", None, t).await.unwrap_err();
    assert!(matches!(e, AgentError::HostKey { .. }), "{e}");
    assert!(e.to_string().contains("pinned"), "{e}");
    assert!(cke::metrics::process().ssh_hostkey_mismatches.get() > before);
    assert!(metrics.ssh_connect_failures.get() > failures);
    let st = probe_node(&fresh, &ContainerEngine::default(), &node(&m, 1), "etcd-cke").await;
    assert!(!st.ssh_connected && st.ssh_error.contains("host key"), "{st:?}");
    // Strict: refuses unpinned node2; pinning the scanned key lets it in.
    let strict = pool(&m, pins.clone(), HostKeyMode::Strict);
    let e = strict.node(&m.node(2), "root").run("true", None, t).await.unwrap_err();
    assert!(matches!(e, AgentError::HostKey { .. }), "{e}");
    let scanned = SshPool::scan(&m.node(2), 22, Duration::from_secs(3)).await.unwrap();
    pins.set(&m.node(2), &scanned).await.unwrap();
    assert!(strict.node(&m.node(2), "root").run("true", None, t).await.is_ok());
    // Re-pin node1 to its new key (what an operator does after verifying the change).
    pins.set(
        &m.node(1),
        &SshPool::scan(&m.node(1), 22, Duration::from_secs(3)).await.unwrap(),
    )
    .await
    .unwrap();

    // Container engine and probe.
    let p = pool(&m, pins.clone(), HostKeyMode::Strict);
    let engine = ContainerEngine::default();
    let n1 = p.node(&m.node(1), "root");
    engine.volume_create(&n1, "etcd-cke").await.unwrap();
    engine.volume_create(&n1, "etcd-cke").await.unwrap();
    assert!(engine.volume_exists(&n1, "etcd-cke").await.unwrap());
    assert!(engine.image_exists(&n1, "localhost/cke-etcd:latest").await.unwrap());
    let a = m.node(1);
    let params = ContainerParams {
        builtin: ServiceParams {
            extra_args: vec![format!("--name={a}")],
            ..Default::default()
        },
        extra: ServiceParams {
            extra_args: vec!["--log-level=info".into()],
            ..Default::default()
        },
    };
    let spec = RunSpec {
        name: "etcd".into(),
        image: "localhost/cke-etcd:latest".into(),
        command: vec![
            "/usr/bin/etcd".into(),
            format!("--name={a}"),
            "--data-dir=/var/lib/etcd".into(),
            format!("--listen-client-urls=http://{a}:2379"),
            format!("--advertise-client-urls=http://{a}:2379"),
            format!("--listen-peer-urls=http://{a}:2380"),
            format!("--initial-advertise-peer-urls=http://{a}:2380"),
            format!("--initial-cluster={a}=http://{a}:2380"),
        ],
        binds: vec![Mount {
            source: "etcd-cke".into(),
            destination: "/var/lib/etcd".into(),
            ..Default::default()
        }],
        env: Default::default(),
        params: params.clone(),
        options: vec![],
        replace: Replace::Stop,
        image_present: false,
    };
    engine.run(&n1, &spec).await.unwrap();
    let st = probe_node(&p, &engine, &node(&m, 1), "etcd-cke").await;
    assert!(st.ssh_connected, "{st:?}");
    assert!(
        st.etcd.service.running && st.etcd.has_data && !st.etcd.is_added_member,
        "{st:?}"
    );
    assert_eq!(st.etcd.service.image, "localhost/cke-etcd:latest");
    assert_eq!(st.etcd.service.params.as_ref(), Some(&params));
    // Replacements of the running container, killed first and stopped first, and one without the
    // image check: a new one runs.
    let id = || async {
        n1.check("podman inspect -f '{{.Id}}' etcd", None, t)
            .await
            .unwrap()
            .stdout_str()
    };
    for (replace, image_present) in [(Replace::Kill, false), (Replace::Stop, false), (Replace::Kill, true)] {
        let before = id().await;
        engine
            .run(
                &n1,
                &RunSpec {
                    replace,
                    image_present,
                    ..spec.clone()
                },
            )
            .await
            .unwrap();
        assert_ne!(id().await, before, "{replace:?}: a new container");
        let st = probe_node(&p, &engine, &node(&m, 1), "etcd-cke").await;
        assert!(st.etcd.service.running && st.etcd.has_data, "{replace:?}: {st:?}");
    }
    // A replacement whose image cannot be had fails before the running container is touched.
    let missing = RunSpec {
        image: "localhost/cke-missing:1".into(),
        ..spec.clone()
    };
    assert!(engine.run(&n1, &missing).await.is_err());
    let st = probe_node(&p, &engine, &node(&m, 1), "etcd-cke").await;
    assert!(st.etcd.service.running, "{st:?}");
    assert_eq!(st.etcd.service.image, "localhost/cke-etcd:latest");
    assert!(!st.rivers.exists);
    let out = engine
        .exec(
            &n1,
            "etcd",
            &[
                "/usr/bin/etcdctl",
                "--endpoints",
                &format!("http://{a}:2379"),
                "put",
                "k",
                "v",
            ],
        )
        .await
        .unwrap();
    assert!(out.stdout_str().contains("OK"));
    engine.stop(&n1, "etcd").await.unwrap();
    let st = probe_node(&p, &engine, &node(&m, 1), "etcd-cke").await;
    assert!(st.etcd.service.exists && !st.etcd.service.running);
    engine.remove(&n1, "etcd").await.unwrap();
    engine.remove(&n1, "etcd").await.unwrap();
    engine.volume_remove(&n1, "etcd-cke").await.unwrap();
    let st = probe_node(&p, &engine, &node(&m, 1), "etcd-cke").await;
    assert!(!st.etcd.service.exists && !st.etcd.has_data);
    // Node 2 saw none of it.
    let st2 = probe_node(&p, &engine, &node(&m, 2), "etcd-cke").await;
    assert!(st2.ssh_connected && !st2.etcd.service.exists);
    assert!(st2.kubelet.config.is_none() && st2.kube_scheduler.config.is_none());
    // The running Kubernetes config files are read back in the same round trip: a mapping is
    // parsed, anything else reads as none.
    let n2 = p.node(&m.node(2), "root");
    n2.write_file(
        "/etc/kubernetes/kubelet/config.yml",
        b"apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupRoot: /x",
        0o644,
        None,
    )
    .await
    .unwrap();
    n2.write_file("/etc/kubernetes/proxy/config.yml", b"- not a mapping\n", 0o644, None)
        .await
        .unwrap();
    let st2 = probe_node(&p, &engine, &node(&m, 2), "etcd-cke").await;
    assert_eq!(
        st2.kubelet.config.as_ref().map(|c| c["cgroupRoot"].clone()),
        Some(serde_json::json!("/x")),
        "{st2:?}"
    );
    assert!(st2.kube_proxy.config.is_none() && st2.kube_scheduler.config.is_none());
    assert!(!st2.kubelet.service.exists);
    n2.check("rm -rf /etc/kubernetes/kubelet /etc/kubernetes/proxy", None, t)
        .await
        .unwrap();

    // An engine that fails for another reason than "no such container/volume" (a lock, a daemon
    // restarting) fails the node's probe: nothing is read as stopped or missing.
    let broken = std::path::PathBuf::from(&m.env["MTEST_DIR"]).join("broken-engine");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'Error: acquiring lock: database is locked' >&2\nexit 125\n",
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&broken)
        .status()
        .unwrap();
    let broken = ContainerEngine::new(broken.to_str().unwrap(), vec![]);
    let st = probe_node(&p, &broken, &node(&m, 2), "etcd-cke").await;
    assert!(
        !st.ssh_connected && st.ssh_error.contains("database is locked"),
        "{st:?}"
    );

    // Unreachable nodes are reported within the dial timeout (3 s here), then come back.
    assert!(m.run(&["node-stop", "2"]).status.success());
    let t0 = Instant::now();
    let st = probe_node(&p, &engine, &node(&m, 2), "etcd-cke").await;
    assert!(!st.ssh_connected && !st.ssh_error.is_empty());
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stopped node took {:?}",
        t0.elapsed()
    );
    assert!(m.run(&["node-start", "2"]).status.success());
    assert!(m.run(&["partition", "1"]).status.success());
    let t0 = Instant::now();
    let st = probe_node(&p, &engine, &node(&m, 1), "etcd-cke").await;
    assert!(!st.ssh_connected);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "partitioned node took {:?}",
        t0.elapsed()
    );
    assert!(m.run(&["heal", "1"]).status.success());
    let st = probe_node(&p, &engine, &node(&m, 2), "etcd-cke").await;
    assert!(st.ssh_connected, "{st:?}");
    let start = Instant::now();
    loop {
        if probe_node(&p, &engine, &node(&m, 1), "etcd-cke").await.ssh_connected {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "node1 did not come back after heal"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_commands_stalled_handshakes_and_changed_pins() {
    require_root("mtest");
    let m = Mtest::up(2, &["--no-vault", "--no-etcd"]);
    let storage: Arc<dyn Storage> = Arc::new(MemStorage::default());
    let pins: Arc<dyn HostKeyStore> = Arc::new(StorageHostKeys(storage.clone()));
    let p = pool(&m, pins.clone(), HostKeyMode::Tofu);
    let (n1, n2) = (p.node(&m.node(1), "root"), p.node(&m.node(2), "root"));
    let t = Duration::from_secs(20);
    n1.check("true", None, t).await.unwrap();
    n2.check("true", None, t).await.unwrap();

    // A command that hangs is killed on the node at its deadline, not only abandoned here; one that
    // ignores SIGTERM gets SIGKILL five seconds later.
    let t0 = Instant::now();
    let e = n1.run("sleep 617", None, Duration::from_secs(1)).await.unwrap_err();
    assert!(matches!(e, AgentError::Timeout { .. }), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(4), "{:?}", t0.elapsed());
    cke_testkit::poll_until(
        "the hung command killed on the node",
        Duration::from_secs(3),
        Duration::from_millis(100),
        || async { (cke_testkit::count_processes("[s]leep 617") == 0).then_some(()) },
    )
    .await;
    let e = n1
        .run("trap '' TERM; sleep 618", None, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(matches!(e, AgentError::Timeout { .. }), "{e}");
    assert!(
        cke_testkit::count_processes("[s]leep 618") > 0,
        "SIGTERM is ignored until the kill"
    );
    cke_testkit::poll_until(
        "SIGKILL after the grace",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || async { (cke_testkit::count_processes("[s]leep 618") == 0).then_some(()) },
    )
    .await;
    assert_eq!(n1.check("echo ok", None, t).await.unwrap().stdout_str(), "ok\n");

    // A node that accepts TCP but never finishes the SSH handshake (its sshd frozen: the kernel still
    // accepts connections): a new connection fails at the dial timeout, while the other node answers
    // at once; once it thaws, it answers again on its own.
    let sshd = std::fs::read_to_string(format!("{}/nodes/node2/sshd.pid", m.env["MTEST_DIR"]))
        .unwrap()
        .trim()
        .to_string();
    p.forget(&m.node(2), "root").await;
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &sshd])
        .status()
        .unwrap()
        .success());
    let t0 = Instant::now();
    let (stalled, other) = tokio::join!(n2.run("true", None, t), async {
        let r = n1.check("echo fine", None, t).await;
        (r, t0.elapsed())
    });
    let stalled_after = t0.elapsed();
    let e = stalled.unwrap_err();
    assert!(matches!(e, AgentError::Connect { .. }), "{e}");
    assert!(e.to_string().contains("no answer within"), "{e}");
    assert!(
        stalled_after >= Duration::from_secs(3) && stalled_after < Duration::from_secs(6),
        "{stalled_after:?}"
    );
    assert_eq!(other.0.unwrap().stdout_str(), "fine\n");
    assert!(other.1 < Duration::from_secs(2), "the other node waited: {:?}", other.1);
    println!(
        "FIGURE stalled SSH handshake fails after {stalled_after:?}; other node answered in {:?}",
        other.1
    );
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &sshd])
        .status()
        .unwrap()
        .success());
    assert_eq!(n2.check("echo back", None, t).await.unwrap().stdout_str(), "back\n");

    // A pin that changes drops the pooled connections verified with another key: node 1 pinned to
    // node 2's key is refused at once, not served over the old connection.
    let key1 = pins.get(&m.node(1)).await.unwrap().unwrap();
    let key2 = pins.get(&m.node(2)).await.unwrap().unwrap();
    assert_ne!(key1, key2);
    assert_eq!(p.pin_changed(&m.node(1), Some(&key1)).await, 0, "the same pin keeps it");
    pins.set(&m.node(1), &key2).await.unwrap();
    assert_eq!(p.pin_changed(&m.node(1), Some(&key2)).await, 1);
    let e = n1.run("true", None, t).await.unwrap_err();
    assert!(matches!(e, AgentError::HostKey { .. }), "{e}");
    assert_eq!(
        n2.check("echo untouched", None, t).await.unwrap().stdout_str(),
        "untouched\n"
    );
    pins.set(&m.node(1), &key1).await.unwrap();
    assert_eq!(n1.check("echo again", None, t).await.unwrap().stdout_str(), "again\n");
    // A deleted pin drops them too (the next connection pins anew).
    assert_eq!(p.pin_changed(&m.node(1), None).await, 1);
}
