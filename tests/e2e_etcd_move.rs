//! End to end on mtest node hosts: the control plane moves to another node (the old one stays, as a
//! worker). The managed etcd must follow — the new node joins the running cluster, the old member
//! leaves — and keep its data; a new, empty cluster must never be bootstrapped; the old node keeps
//! no etcd and no etcd-rivers.

mod e2e_common;

use std::time::{Duration, Instant};

use cke_testkit::Mtest;
use e2e_common::*;

/// Node `cp` is the control plane, `worker` a worker.
fn declaration(m: &Mtest, cp: usize, worker: usize) -> String {
    format!(
        "name: e2e\nservice_subnet: 10.96.0.0/16\nnodes:\n  - {{address: {}, hostname: node{cp}, user: root, control_plane: true}}\n  - {{address: {}, hostname: node{worker}, user: root}}\n",
        m.node(cp),
        m.node(worker)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moving_the_control_plane_keeps_the_data() {
    let (m, dir) = mtest_up(2);
    let log = dir.path().join("cke.log");
    prepare(&m, 1);
    ok(&m, &["cluster", "set", "-"], Some(&declaration(&m, 1, 2)));
    let _cke = start_cke(&m, "e2e", &log, &[]);
    wait_members(&m, &[1], Duration::from_secs(240), &log).await;
    wait_completed(&m, "etcd-bootstrap", Duration::from_secs(60)).await;
    let mut kv = root_etcd(&m, &[1]).await.client();
    kv.put("/registry/kept", "yes", None).await.unwrap();

    // Node 2 becomes the control plane; node 1, still declared, becomes a worker.
    let t0 = Instant::now();
    ok(&m, &["cluster", "set", "-"], Some(&declaration(&m, 2, 1)));
    wait_members(&m, &[2], Duration::from_secs(240), &log).await;
    println!("FIGURE control plane moved to another node: {:?}", t0.elapsed());
    let mut kv = root_etcd(&m, &[2]).await.client();
    let got = kv.get("/registry/kept", None).await.unwrap();
    assert_eq!(
        got.kvs().first().map(|k| k.value()),
        Some(&b"yes"[..]),
        "the data did not follow the control plane\nlog: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // One bootstrap in all; the move was a join and a removal.
    let text = ok(&m, &["history"], None);
    let ops: Vec<String> = serde_json::Deserializer::from_str(&text)
        .into_iter::<cke::model::Record>()
        .map(|r| r.unwrap().operation)
        .collect();
    assert_eq!(ops.iter().filter(|o| *o == "etcd-bootstrap").count(), 1, "{ops:?}");
    assert!(ops.iter().any(|o| o == "etcd-add-member"), "{ops:?}");
    assert!(ops.iter().any(|o| o == "etcd-destroy-member"), "{ops:?}");
    // The former control plane keeps no etcd and no etcd-rivers (stop-control-plane, also without
    // Kubernetes).
    let t0 = Instant::now();
    loop {
        let o = m.run(&["exec", "1", "podman", "ps", "--format", "{{.Names}}"]);
        let names = String::from_utf8_lossy(&o.stdout).into_owned();
        if !names.lines().any(|l| l == "etcd" || l == "etcd-rivers") {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "node1 still runs {names}\nlog: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let text = ok(&m, &["history"], None);
    assert!(text.contains("stop-etcd-rivers"), "{text}");
}
