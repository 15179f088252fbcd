//! The reboot queue's operators against the fake ([`crate::infra::fake`]) and the in-memory storage:
//! the commands they record, what they change in the queue and in the Kubernetes API, failures that
//! back an entry off, and the fence. (A worker's whole reboot, planned pass after pass by the
//! controller, is in the controller's tests.)

use chrono::{DateTime, Utc};

use super::tests::{strings, Env};
use crate::model::{Node, OpKind, QueueItem, Reboot, RebootQueueEntry, RebootStatus, DRAIN_BACKOFF_BASE_SECONDS};
use crate::storage::queue::{self, REBOOT_QUEUE};
use crate::storage::{Fence, LeaseDeadline};

const API: &str = "10.0.0.1";
const W4: &str = "10.0.0.4";
const W5: &str = "10.0.0.5";

/// The operators' environment: the test cluster with a second worker and a reboot section, the
/// Nodes registered in the fake, and the leader's fence held in the storage.
async fn env() -> Env {
    let mut env = Env::new().await;
    env.cluster.nodes.push(Node::new(W5, "core", false));
    env.cluster.reboot = Some(Reboot {
        reboot_command: strings(&["reboot-node"]),
        boot_check_command: strings(&["boot-check"]),
        command_retries: Some(2),
        protected_namespaces: Some(serde_yaml::from_str("matchLabels: {team: prod}").unwrap()),
        ..Default::default()
    });
    env.fake.with(|w| {
        for n in ["node1", "10.0.0.2", "10.0.0.3", W4, W5] {
            w.kube_nodes.insert(
                n.into(),
                crate::model::KubeNode {
                    name: n.into(),
                    ready: true,
                    ..Default::default()
                },
            );
        }
        w.namespaces
            .insert("prod".into(), [("team".to_string(), "prod".to_string())].into());
    });
    env.storage.put_raw("leader/me", b"me".to_vec()).await.unwrap();
    env.fence = Some(Fence {
        key: "/cke/leader/me".into(),
        create_revision: env.storage.get_raw("leader/me").await.unwrap().unwrap().create_revision,
    });
    env
}

/// Enqueues entries for `nodes`; their items.
async fn enqueue(env: &Env, nodes: &[&str]) -> Vec<QueueItem> {
    let mut entries: Vec<RebootQueueEntry> = nodes.iter().map(|n| RebootQueueEntry::new(n)).collect();
    queue::enqueue(&*env.storage, &REBOOT_QUEUE, &mut entries)
        .await
        .unwrap();
    entries
        .iter()
        .map(|e| QueueItem {
            index: e.index,
            node: e.node.clone(),
        })
        .collect()
}

async fn entry(env: &Env, index: i64) -> Option<RebootQueueEntry> {
    queue::entry(&*env.storage, &REBOOT_QUEUE, index).await.unwrap()
}

async fn set(env: &Env, index: i64, change: impl FnMut(&mut RebootQueueEntry) -> bool + Send) {
    queue::update(&*env.storage, &REBOOT_QUEUE, index, None, change)
        .await
        .unwrap()
        .unwrap();
}

fn kube_node(env: &Env, name: &str) -> crate::model::KubeNode {
    env.fake.with(|w| w.kube_nodes[name].clone())
}

fn cordoned(env: &Env, name: &str) -> bool {
    let n = kube_node(env, name);
    n.unschedulable && n.annotations.get("cke.cybozu.com/reboot").map(String::as_str) == Some("true")
}

fn pods(env: &Env) -> Vec<String> {
    env.fake
        .with(|w| w.pods.keys().map(|(ns, n)| format!("{ns}/{n}")).collect())
}

/// The Kubernetes calls and host commands logged since the last call.
fn actions(env: &Env) -> Vec<String> {
    env.fake
        .take_log()
        .into_iter()
        .filter(|l| !l.contains("kube list") && !l.contains("volumes in use"))
        .collect()
}

fn recent(t: Option<DateTime<Utc>>) -> bool {
    t.is_some_and(|t| (Utc::now() - t).num_seconds().abs() < 60)
}

/// The back-off after `count` failures was applied at about now.
fn backed_off(e: &RebootQueueEntry, count: u32) {
    assert_eq!(
        (e.status, e.drain_backoff_count),
        (RebootStatus::Queued, count),
        "{e:?}"
    );
    let ltt = e.last_transition_time.expect("a transition time");
    assert!(recent(Some(ltt)));
    let wait = (e.drain_backoff_expire.unwrap() - ltt).num_seconds();
    let base = crate::model::drain_backoff_seconds(count);
    assert!(
        (base..base + DRAIN_BACKOFF_BASE_SECONDS).contains(&wait),
        "back-off of {wait} s after failure {count}"
    );
}

#[tokio::test]
async fn drain_start_cordons_and_dry_runs_then_evicts() {
    let env = env().await;
    let items = enqueue(&env, &[W4]).await;
    env.fake.add_pod("dev", "web", W4, "ReplicaSet", "Running", &[]);
    env.fake.add_pod("prod", "db", W4, "StatefulSet", "Running", &[]);
    env.fake
        .add_pod("kube-system", "agent", W4, "DaemonSet", "Running", &[]);
    env.fake.add_pod("dev", "other", W5, "ReplicaSet", "Running", &[]);
    env.fake.take_log();
    let cmds = env
        .run_ok(OpKind::RebootDrainStart {
            apiserver: API.into(),
            entries: items.clone(),
        })
        .await;
    assert_eq!(cmds, ["reboot-drain-cordon 10.0.0.4", "reboot-drain-evict 10.0.0.4"]);
    assert_eq!(
        actions(&env),
        [
            "10.0.0.1: kube cordon 10.0.0.4",
            // Only the protected pod is asked in the dry run; 1.20 (the default image) evicts with
            // policy/v1beta1.
            "10.0.0.1: kube evict prod/db policy/v1beta1 (dry run)",
            "10.0.0.1: kube evict dev/web policy/v1beta1",
            "10.0.0.1: kube evict prod/db policy/v1beta1",
        ]
    );
    let e = entry(&env, items[0].index).await.unwrap();
    assert_eq!(e.status, RebootStatus::Draining);
    assert!(recent(e.last_transition_time));
    assert!(cordoned(&env, W4));
    assert_eq!(pods(&env), ["dev/other", "kube-system/agent"]);
}

#[tokio::test]
async fn one_pod_that_cannot_go_backs_its_node_off_and_keeps_all_its_pods() {
    let env = env().await;
    let items = enqueue(&env, &[W4, W5]).await;
    // On node 4, a protected pod that a budget keeps, and an unprotected one: the dry run fails, so
    // nothing of node 4 is evicted (CKE's mtest); node 5 drains.
    env.fake.add_pod("prod", "db", W4, "StatefulSet", "Running", &[]);
    env.fake.add_pod("dev", "web", W4, "ReplicaSet", "Running", &[]);
    env.fake.add_pod("dev", "api", W5, "ReplicaSet", "Running", &[]);
    env.fake
        .with(|w| w.eviction_refusals.insert(("prod".into(), "db".into()), u32::MAX));
    env.run_ok(OpKind::RebootDrainStart {
        apiserver: API.into(),
        entries: items.clone(),
    })
    .await;
    assert_eq!(pods(&env), ["dev/web", "prod/db"]);
    backed_off(&entry(&env, items[0].index).await.unwrap(), 1);
    assert_eq!(
        entry(&env, items[1].index).await.unwrap().status,
        RebootStatus::Draining
    );
    // The cordon stays: uncordon-nodes removes it.
    assert!(cordoned(&env, W4) && cordoned(&env, W5));
}

#[tokio::test]
async fn protected_job_pods_stop_the_drain_and_others_are_deleted() {
    let mut env = env().await;
    let items = enqueue(&env, &[W4]).await;
    env.fake.add_pod("dev", "batch", W4, "Job", "Running", &[]);
    env.fake.add_pod("dev", "done", W4, "Job", "Succeeded", &[]);
    env.run_ok(OpKind::RebootDrainStart {
        apiserver: API.into(),
        entries: items.clone(),
    })
    .await;
    // protected_job_pods unset: every running Job pod is protected.
    backed_off(&entry(&env, items[0].index).await.unwrap(), 1);
    assert_eq!(pods(&env), ["dev/batch", "dev/done"]);
    // Selected out by cke.cybozu.com/job-ok-to-delete: deleted (the finished one is left alone).
    env.cluster.reboot.as_mut().unwrap().protected_job_pods = Some(
        serde_yaml::from_str("matchExpressions: [{key: cke.cybozu.com/job-ok-to-delete, operator: DoesNotExist}]")
            .unwrap(),
    );
    env.fake.add_pod(
        "dev",
        "batch",
        W4,
        "Job",
        "Running",
        &[("cke.cybozu.com/job-ok-to-delete", "true")],
    );
    env.run_ok(OpKind::RebootDrainStart {
        apiserver: API.into(),
        entries: items.clone(),
    })
    .await;
    assert_eq!(pods(&env), ["dev/done"]);
    assert_eq!(
        entry(&env, items[0].index).await.unwrap().status,
        RebootStatus::Draining
    );
}

#[tokio::test]
async fn a_failed_eviction_or_cordon_backs_off_and_a_cancelled_entry_is_left() {
    let env = env().await;
    let items = enqueue(&env, &[W4, W5]).await;
    env.fake.add_pod("dev", "web", W4, "ReplicaSet", "Running", &[]);
    env.fake.fail_once("kube evict dev/web");
    env.fake.fail_once("kube cordon 10.0.0.5");
    env.run_ok(OpKind::RebootDrainStart {
        apiserver: API.into(),
        entries: items.clone(),
    })
    .await;
    backed_off(&entry(&env, items[0].index).await.unwrap(), 1);
    backed_off(&entry(&env, items[1].index).await.unwrap(), 1);

    // Cancelled (ckecli reboot-queue cancel): never drained, its status kept.
    set(&env, items[0].index, |e| {
        e.status = RebootStatus::Cancelled;
        true
    })
    .await;
    env.fake.take_log();
    env.run_ok(OpKind::RebootDrainStart {
        apiserver: API.into(),
        entries: items[..1].to_vec(),
    })
    .await;
    assert!(!actions(&env).iter().any(|l| l.contains("cordon")));
    assert_eq!(
        entry(&env, items[0].index).await.unwrap().status,
        RebootStatus::Cancelled
    );
    env.run_ok(OpKind::RebootDrainTimeout {
        entries: items[..1].to_vec(),
    })
    .await;
    assert_eq!(
        entry(&env, items[0].index).await.unwrap().status,
        RebootStatus::Cancelled
    );
}

#[tokio::test]
async fn drain_timeouts_back_off_longer_each_time() {
    let env = env().await;
    let items = enqueue(&env, &[W4]).await;
    for count in 1..=4 {
        set(&env, items[0].index, |e| {
            e.status = RebootStatus::Draining;
            true
        })
        .await;
        let cmds = env.run_ok(OpKind::RebootDrainTimeout { entries: items.clone() }).await;
        assert_eq!(cmds, ["reboot-drain-timeout 10.0.0.4"]);
        backed_off(&entry(&env, items[0].index).await.unwrap(), count);
    }
}

#[tokio::test]
async fn reboot_marks_rebooting_forgets_the_connection_and_runs_the_command() {
    let env = env().await;
    let items = enqueue(&env, &[W4, W5]).await;
    env.fake.on_host_command("reboot-node 10.0.0.5", Err("BMC unreachable"));
    env.fake.take_log();
    let cmds = env.run_ok(OpKind::RebootReboot { entries: items.clone() }).await;
    assert_eq!(cmds, ["reboot-reboot 10.0.0.4,10.0.0.5"]);
    let log = actions(&env);
    assert!(log.contains(&"10.0.0.4: release connection".to_string()), "{log:?}");
    assert_eq!(log.iter().filter(|l| *l == "host: reboot-node 10.0.0.4").count(), 1);
    // command_retries 2: three attempts, then given up; the entry stays rebooting.
    assert_eq!(log.iter().filter(|l| *l == "host: reboot-node 10.0.0.5").count(), 3);
    for i in &items {
        let e = entry(&env, i.index).await.unwrap();
        assert_eq!(e.status, RebootStatus::Rebooting);
        assert!(recent(e.last_transition_time));
    }
}

#[tokio::test(start_paused = true)]
async fn a_reboot_command_outliving_the_lease_deadline_fails_the_step() {
    let mut env = env().await;
    let items = enqueue(&env, &[W4, W5]).await;
    // No timeout declared: it would run its minute and succeed.
    env.fake
        .host_command_takes("reboot-node 10.0.0.5", std::time::Duration::from_secs(60));
    env.deadline = LeaseDeadline::until(tokio::time::Instant::now() + std::time::Duration::from_secs(5));
    env.fake.take_log();
    let (cmds, r) = env.run(OpKind::RebootReboot { entries: items.clone() }).await;
    assert_eq!(cmds, ["reboot-reboot 10.0.0.4,10.0.0.5"]);
    let text = crate::error::error_chain(&r.unwrap_err());
    assert!(
        text.contains("reboot-node 10.0.0.5: killed with its process group, the leadership lease was lost"),
        "{text}"
    );
    let log = actions(&env);
    assert_eq!(log.iter().filter(|l| l.starts_with("host: ")).count(), 2, "{log:?}");
    // Marked before the commands; what follows is the next leader's to decide.
    for i in &items {
        assert_eq!(entry(&env, i.index).await.unwrap().status, RebootStatus::Rebooting);
    }
}

#[tokio::test]
async fn on_delete_daemonset_pods_go_before_the_reboot() {
    let env = env().await;
    let items = enqueue(&env, &[W4]).await;
    env.fake
        .add_pod("kube-system", "node-dns", W4, "DaemonSet", "Running", &[]);
    env.fake
        .add_pod("kube-system", "agent", W4, "DaemonSet", "Running", &[]);
    env.fake
        .with(|w| w.on_delete_daemonsets.insert(("kube-system".into(), "node-dns".into())));
    env.fake.fail_once("kube list on-delete daemonset pods on 10.0.0.4");
    // A failure is only logged (CKE notes it).
    env.run_ok(OpKind::RebootDeleteDaemonsetPod {
        apiserver: API.into(),
        entries: items.clone(),
    })
    .await;
    assert_eq!(pods(&env).len(), 2);
    env.run_ok(OpKind::RebootDeleteDaemonsetPod {
        apiserver: API.into(),
        entries: items,
    })
    .await;
    assert_eq!(pods(&env), ["kube-system/agent"]);
}

#[tokio::test]
async fn dequeue_and_cancel_remove_entries_while_the_fence_holds() {
    let mut env = env().await;
    let items = enqueue(&env, &[W4, W5]).await;
    let (cmds, r) = env
        .run(OpKind::RebootDequeue {
            entries: items[..1].to_vec(),
        })
        .await;
    r.unwrap();
    assert_eq!(cmds, ["reboot-dequeue 10.0.0.4"]);
    assert!(entry(&env, items[0].index).await.is_none());
    // Another leader took over: nothing is removed.
    env.fence = Some(Fence {
        key: "/cke/leader/gone".into(),
        create_revision: 1,
    });
    let (_, r) = env
        .run(OpKind::RebootCancel {
            entries: items[1..].to_vec(),
        })
        .await;
    let e = r.unwrap_err();
    assert!(crate::error::error_chain(&e).contains("leadership lost"), "{e}");
    assert!(entry(&env, items[1].index).await.is_some());
}

#[tokio::test]
async fn uncordon_removes_the_cordon_and_the_annotation() {
    let env = env().await;
    for n in [W4, W5] {
        let done = crate::infra::KubeApi::set_reboot_cordon(&env.fake, API, n, true).await;
        assert_eq!(done.unwrap(), crate::infra::NodeUpdate::Updated);
    }
    let cmds = env
        .run_ok(OpKind::RebootUncordon {
            apiserver: API.into(),
            nodes: strings(&[W4, "gone"]),
        })
        .await;
    assert_eq!(cmds, ["reboot-uncordon 10.0.0.4,gone"]);
    assert!(!kube_node(&env, W4).unschedulable);
    assert!(kube_node(&env, W4).annotations.is_empty());
    assert!(cordoned(&env, W5));
    env.fake.fail_once("kube uncordon 10.0.0.5");
    let (_, r) = env
        .run(OpKind::RebootUncordon {
            apiserver: API.into(),
            nodes: strings(&[W5]),
        })
        .await;
    assert!(r.unwrap_err().to_string().contains("reboot-uncordon on 10.0.0.5"));
}
