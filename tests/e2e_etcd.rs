//! End to end on mtest node hosts: real `cke` processes, OpenBao, a management etcd, and etcd members
//! in podman containers on the nodes. Bootstrap of a 3-node managed etcd, RBAC, scaling to 5 and a
//! restart of stopped members, with a writer checking that no acknowledged write is lost.

mod e2e_common;

use std::time::{Duration, Instant};

use cke::infra::managed_etcd::{EtcdTls, ManagedEtcd};
use e2e_common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_rbac_scale_and_restart_without_losing_writes() {
    let (m, dir) = mtest_up(5);
    let log = dir.path().join("cke.log");
    prepare(&m, 3);
    declare(&m, &[1, 2, 3], &[]);
    let t0 = Instant::now();
    let _cke = start_cke(&m, "e2e", &log, &[]);

    // Bootstrap: three voting members, healthy, in sync.
    wait_members(&m, &[1, 2, 3], Duration::from_secs(240), &log).await;
    println!("FIGURE bootstrap (cke start -> 3 healthy members): {:?}", t0.elapsed());
    // The bootstrap operation finishes with the users, authentication and the markers.
    wait_completed(&m, "etcd-bootstrap", Duration::from_secs(60)).await;
    // The first pass, CKE's upgrade phase, recorded config-version "2" (no key: CKE's "1").
    assert_eq!(management_get(&m, "config-version").await.as_deref(), Some("2"));
    // RBAC: a certificate for an unknown user is refused.
    let o = ckecli(&m, &["etcd", "issue", "nobody"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nobody = ManagedEtcd::connect(
        vec![format!("https://{}:2379", m.node(1))],
        EtcdTls {
            ca: v["ca_certificate"].as_str().unwrap().into(),
            cert: v["certificate"].as_str().unwrap().into(),
            key: v["private_key"].as_str().unwrap().into(),
        },
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert!(
        nobody.client().get("/registry/", None).await.is_err(),
        "RBAC must refuse unknown users"
    );
    // rivers runs on every node, etcd-rivers on control planes.
    let ps = m.run(&["ssh", "1", "podman ps --format '{{.Names}}'"]);
    let names = String::from_utf8_lossy(&ps.stdout).into_owned();
    for n in ["etcd", "rivers", "etcd-rivers"] {
        assert!(names.lines().any(|l| l == n), "{n} not running on node1: {names}");
    }

    // A writer puts a key every 50 ms during the changes; every acknowledged write must survive.
    let writer = Writer::start(root_etcd(&m, &[1, 2, 3]).await, "/registry/writer/");

    // Scale 3 -> 5: learners joined one at a time.
    declare(&m, &[1, 2, 3, 4, 5], &[]);
    let took = wait_members(&m, &[1, 2, 3, 4, 5], Duration::from_secs(240), &log).await;
    println!("FIGURE scale 3 -> 5 (two learner joins): {took:?}");
    print_records(&m);

    // Demote 5 -> 3 (two members removed, one at a time) while the writer keeps writing.
    declare(&m, &[1, 2, 3], &[]);
    let took = wait_members(&m, &[1, 2, 3], Duration::from_secs(240), &log).await;
    println!("FIGURE demote 5 -> 3: {took:?}");

    let acked = writer.stop().await;
    println!(
        "FIGURE writes acknowledged: {}, longest write outage: {:?}",
        acked.writes.len(),
        acked.longest()
    );
    acked.assert_none_lost(&m, &[1, 2, 3], "/registry/writer/").await;
    assert!(acked.writes.len() > 50);

    // Stop etcd on 2 of 3 members (quorum lost): cke starts them again.
    for i in ["1", "2"] {
        assert!(m.run(&["ssh", i, "podman stop -t 1 etcd"]).status.success());
    }
    let took = wait_members(&m, &[1, 2, 3], Duration::from_secs(120), &log).await;
    println!("FIGURE restart of 2 of 3 stopped members: {took:?}");
    let check = root_etcd(&m, &[1, 2, 3]).await;

    // ckecli etcd user-add and local-backup through the managed etcd.
    ok(&m, &["etcd", "user-add", "backup", "/backup/"], None);
    let users = check.client().user_list().await.unwrap();
    assert!(users.users().iter().any(|u| u == "backup"));
    let backups = tempfile::tempdir().unwrap();
    let bdir = backups.path().to_str().unwrap();
    for _ in 0..3 {
        ok(&m, &["etcd", "local-backup", "--dir", bdir, "--max-backups", "2"], None);
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let snaps: Vec<_> = std::fs::read_dir(backups.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    for snap in snaps {
        let st = std::process::Command::new("etcdctl")
            .args(["snapshot", "status", "-w", "json"])
            .arg(&snap)
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    }

    // History shows the operations, all completed or cancelled-and-retried.
    let hist = String::from_utf8_lossy(&ckecli(&m, &["history"], None).stdout).into_owned();
    for op in [
        "etcd-bootstrap",
        "etcd-add-member",
        "etcd-remove-member",
        "rivers-bootstrap",
    ] {
        assert!(hist.contains(op), "{op} not in history");
    }
}
