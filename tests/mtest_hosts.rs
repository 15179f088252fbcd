//! The mtest node hosts: SSH to each node, isolation between nodes, a real etcd container from the
//! local image, stop/start, partition/heal, and a clean teardown.

use std::process::Command;
use std::time::{Duration, Instant};

use cke_testkit::{require_root, Mtest};

fn ssh(m: &Mtest, i: usize, cmd: &str) -> std::process::Output {
    Command::new("ssh")
        .arg("-i")
        .arg(m.ssh_key())
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ])
        .args(["-o", "ConnectTimeout=3", "-o", "BatchMode=yes"])
        .arg(format!("root@{}", m.node(i)))
        .arg(cmd)
        .output()
        .unwrap()
}

#[test]
fn three_isolated_nodes_with_containers_stop_start_partition_and_teardown() {
    require_root("mtest");
    let t0 = Instant::now();
    let m = Mtest::up(3, &["--no-vault"]);
    println!("FIGURE mtest up --nodes 3: {:?}", t0.elapsed());

    for i in 1..=3 {
        let o = ssh(&m, i, "ip -4 -o addr show eth0");
        assert!(
            o.status.success(),
            "ssh node{i}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stdout).contains(&m.node(i)));
    }
    // Isolation: a file under a node path and a container exist only on their node.
    assert!(ssh(&m, 1, "echo one > /etc/kubernetes/marker").status.success());
    assert!(!ssh(&m, 2, "test -e /etc/kubernetes/marker").status.success());
    let run = format!(
        "podman run -d --name etcd --network host localhost/cke-etcd:latest /usr/bin/etcd \
         --data-dir /var/lib/etcd/d --listen-client-urls http://{a}:2379 --advertise-client-urls http://{a}:2379 \
         --listen-peer-urls http://{a}:2380 --initial-advertise-peer-urls http://{a}:2380 --initial-cluster default=http://{a}:2380",
        a = m.node(1)
    );
    let o = ssh(&m, 1, &run);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let health = || {
        Command::new("etcdctl")
            .args([
                "--endpoints",
                &format!("http://{}:2379", m.node(1)),
                "endpoint",
                "health",
            ])
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap()
            .status
            .success()
    };
    let start = Instant::now();
    while !health() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "etcd in a container on node1 never became healthy"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        String::from_utf8_lossy(&ssh(&m, 2, "podman ps -a --format '{{.Names}}'").stdout)
            .trim()
            .is_empty()
    );

    // Stop: SSH fails fast; start: SSH and the data come back.
    assert!(m.run(&["node-stop", "2"]).status.success());
    let t = Instant::now();
    assert!(!ssh(&m, 2, "true").status.success());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "a stopped node must refuse at once"
    );
    assert!(m.run(&["node-start", "2"]).status.success());
    assert!(ssh(&m, 2, "true").status.success());
    assert!(ssh(&m, 1, "cat /etc/kubernetes/marker").status.success());

    // Partition: SSH times out; heal: back.
    assert!(m.run(&["partition", "3"]).status.success());
    assert!(!ssh(&m, 3, "true").status.success());
    assert!(m.run(&["heal", "3"]).status.success());
    let start = Instant::now();
    while !ssh(&m, 3, "true").status.success() {
        assert!(start.elapsed() < Duration::from_secs(20));
    }

    // Teardown leaves nothing behind.
    let prefix = m.prefix.clone();
    let t = Instant::now();
    drop(m);
    println!("FIGURE mtest down: {:?}", t.elapsed());
    let netns =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).into_owned();
    assert!(!netns.contains(&format!("{prefix}-node")), "{netns}");
    let links = String::from_utf8_lossy(&Command::new("ip").args(["-o", "link"]).output().unwrap().stdout).into_owned();
    assert!(
        !links.contains(&format!(" {prefix}br0")) && !links.contains(&format!(" {prefix}v1")),
        "{links}"
    );
}
