//! End to end on mtest node hosts: a parameter change restarts members one at a time, a leader killed
//! right after adding a learner leaves work that the next leader finishes, an unreachable control-plane
//! node blocks membership changes until it returns, and a replaced node leaves the member list.

mod e2e_common;

use std::time::{Duration, Instant};

use cke::model::{Record, RecordStatus};
use cke_testkit::Mtest;
use e2e_common::*;

fn etcd_has_arg(m: &Mtest, i: usize, arg: &str) -> bool {
    inspect_etcd(m, i, "{{json .Config.Cmd}}").contains(arg)
}

fn records(m: &Mtest) -> Vec<Record> {
    let text = ok(m, &["history"], None);
    serde_json::Deserializer::from_str(&text)
        .into_iter::<Record>()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_crash_safety_unreachable_node_and_replacement() {
    let (m, dir) = mtest_up(4);
    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    prepare(&m, 3);
    declare(&m, &[1, 2, 3], &[]);
    // Instance a leads (it starts first) and dies at the failpoint; b is the standby.
    let a = start_cke(&m, "a", &log_a, &[("CKE_FAILPOINT", "after-add-learner")]);
    wait_members(&m, &[1, 2, 3], Duration::from_secs(240), &log_a).await;
    assert_eq!(ok(&m, &["leader"], None).trim(), "a");
    let _b = start_cke(&m, "b", &log_b, &[]);

    // 1. A parameter change restarts the members one at a time: never two down at once.
    declare(&m, &[1, 2, 3], &["--heartbeat-interval=150"]);
    let t0 = Instant::now();
    let mut max_down = 0;
    loop {
        let down = (1..=3).filter(|i| !running(&m, *i, "etcd")).count();
        max_down = max_down.max(down);
        if (1..=3).all(|i| etcd_has_arg(&m, i, "--heartbeat-interval=150")) && down == 0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(240),
            "rolling restart did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(max_down <= 1, "{max_down} members were down at once");
    wait_members(&m, &[1, 2, 3], Duration::from_secs(120), &log_a).await;
    println!(
        "FIGURE rolling restart of 3 members: {:?} (at most {max_down} down at a time)",
        t0.elapsed()
    );

    // 2. Crash safety: a adds node 4 as a learner and dies on the spot; b takes over, cancels a's
    //    record, re-adds the half-added member and completes the join.
    declare(&m, &[1, 2, 3, 4], &["--heartbeat-interval=150"]);
    let mut a = a;
    let t0 = Instant::now();
    loop {
        if a.0.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "instance a never reached the failpoint"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = wait_members(&m, &[1, 2, 3, 4], Duration::from_secs(240), &log_b).await;
    println!(
        "FIGURE join completed by the next leader after a crash: {:?} after the crash",
        took
    );
    // The member is voting and in sync; the operation still marks it before it completes.
    wait_completed(&m, "etcd-add-member", Duration::from_secs(60)).await;
    assert_eq!(ok(&m, &["leader"], None).trim(), "b");
    let recs = records(&m);
    let crashed = recs
        .iter()
        .find(|r| r.operation == "etcd-add-member" && r.leader == "a")
        .expect("a's add-member record");
    assert_eq!(crashed.status, RecordStatus::Cancelled, "{crashed:?}");
    assert_eq!(crashed.command.name, "add-learner");
    assert!(recs
        .iter()
        .any(|r| r.operation == "etcd-add-member" && r.leader == "b" && r.status == RecordStatus::Completed));

    // 3. Node 3 is replaced by node 4 while node 1 is unreachable: nothing changes until it returns.
    assert!(m.run(&["partition", "1"]).status.success());
    declare(&m, &[1, 2, 4], &["--heartbeat-interval=150"]);
    // The leader reaches the point where only etcd maintenance is left, and says it waits; the
    // membership must not change meanwhile (each pass spends the probe timeout on node 1).
    let t0 = Instant::now();
    let mut waiting_since: Option<Instant> = None;
    loop {
        if let Some(mm) = members(&m, &[2, 3, 4]).await {
            assert_eq!(
                mm.len(),
                4,
                "membership changed while a control-plane node was unreachable: {mm:?}"
            );
        }
        let plan = ok(&m, &["plan"], None);
        if plan.contains("unreachable") && plan.contains(&m.node(1)) {
            waiting_since.get_or_insert_with(Instant::now);
        }
        if waiting_since.is_some_and(|w| w.elapsed() > Duration::from_secs(10)) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(180),
            "the leader never reported waiting for node 1:\n{plan}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(m.run(&["heal", "1"]).status.success());
    let took = wait_members(&m, &[1, 2, 4], Duration::from_secs(240), &log_b).await;
    println!("FIGURE replacement after the node returned: {took:?}");
}
