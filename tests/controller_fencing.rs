//! The controller with the in-memory storage double: records every operation and command, and
//! stops writing the moment its fence breaks (another instance took the election key).

use std::sync::Arc;
use std::time::Duration;

use cke::controller::{Controller, ControllerConfig, NoAgentProber, OperatorFactory, Shared, TermEnd};
use cke::model::{parse_cluster, Constraints, RecordStatus};
use cke::op::test_ops::TestOperatorSpec;
use cke::storage::{Fence, MemStorage, Storage};
use tokio::sync::{mpsc, watch};

fn controller(storage: Arc<MemStorage>, spec: TestOperatorSpec) -> (Controller, Arc<Shared>) {
    let shared = Arc::new(Shared::default());
    let ops: OperatorFactory = Arc::new(|_, _| None);
    let cfg = ControllerConfig {
        name: "me".into(),
        interval: Duration::from_millis(50),
        dry_run: false,
        shutdown_grace: Duration::from_millis(100),
        test_operator: Some(spec),
        images: Default::default(),
    };
    (
        Controller::new(storage, Arc::new(NoAgentProber), ops, shared.clone(), cfg),
        shared,
    )
}

async fn setup() -> (Arc<MemStorage>, Fence) {
    let s = Arc::new(MemStorage::default());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cluster.yml")).unwrap();
    s.put_cluster(&parse_cluster(&text).unwrap()).await.unwrap();
    s.put_constraints(&Constraints::default().with("control-plane-count", "3").unwrap())
        .await
        .unwrap();
    s.put_raw("leader/1", b"me".to_vec()).await.unwrap();
    let kv = s.get_raw("leader/1").await.unwrap().unwrap();
    (
        s.clone(),
        Fence {
            key: s.full_key("leader/1"),
            create_revision: kv.create_revision,
        },
    )
}

#[tokio::test]
async fn records_each_operation_and_stops_when_the_fence_breaks() {
    let (storage, fence) = setup().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let (ctl, shared) = controller(storage.clone(), TestOperatorSpec::Write(out.display().to_string()));
    let (_lost_tx, lost) = watch::channel(false);
    let (_sd_tx, sd) = watch::channel(false);
    let (_tx, mut rx) = mpsc::channel(1);
    let s2 = storage.clone();
    let breaker = tokio::spawn(async move {
        // Let a few passes run, then another instance "takes" the election key.
        while s2.get_records(0).await.unwrap().len() < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        s2.delete_raw("leader/1").await.unwrap();
        s2.put_raw("leader/1", b"other".to_vec()).await.unwrap();
    });
    let end = tokio::time::timeout(Duration::from_secs(20), ctl.run_term(&fence, lost, sd, &mut rx))
        .await
        .unwrap();
    breaker.await.unwrap();
    assert_eq!(end, TermEnd::Lost);
    let records = storage.get_records(0).await.unwrap();
    let completed = records.iter().filter(|r| r.status == RecordStatus::Completed).count();
    assert!(completed >= 2, "{records:?}");
    // Each completed operation ran its three commands, and the file shows exactly those.
    let lines = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(lines >= completed * 3);
    // After the fence broke nothing more is written, even if the controller keeps its handle.
    let before = storage.get_records(0).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(storage.get_records(0).await.unwrap(), before);
    // Ids are contiguous and the next id is kept under `records`.
    let ids: Vec<i64> = before.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "{ids:?}");
    assert!(shared
        .metrics
        .render()
        .contains("cke_operations_total{operation=\"test-write\",result=\"completed\"}"));
}

#[tokio::test]
async fn a_failing_command_cancels_its_operation_and_a_new_term_cancels_leftovers() {
    let (storage, fence) = setup().await;
    let (ctl, _) = controller(storage.clone(), TestOperatorSpec::Fail);
    let (lost_tx, lost) = watch::channel(false);
    let (_sd_tx, sd) = watch::channel(false);
    let (_tx, mut rx) = mpsc::channel(1);
    let handle = {
        let fence = fence.clone();
        tokio::spawn(async move { ctl.run_term(&fence, lost, sd, &mut rx).await })
    };
    let storage2 = storage.clone();
    let rec = loop {
        if let Some(r) = storage2.get_records(1).await.unwrap().pop() {
            if r.status == RecordStatus::Cancelled {
                break r;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(rec.error.contains("always fails"), "{}", rec.error);
    assert_eq!(rec.command.name, "fail");
    lost_tx.send(true).unwrap();
    assert_eq!(handle.await.unwrap(), TermEnd::Lost);

    // A record left running by a crashed leader is cancelled by the next term.
    let mut left = storage.get_records(1).await.unwrap().pop().unwrap();
    left.id += 100;
    left.status = RecordStatus::Running;
    left.leader = "crashed".into();
    storage
        .put_raw(
            &format!("records/{}", cke::model::Record::key_suffix(left.id)),
            cke::storage::encode(&left),
        )
        .await
        .unwrap();
    let (ctl, _) = controller(storage.clone(), TestOperatorSpec::Block(Duration::from_secs(60)));
    let (_l, lost) = watch::channel(false);
    let (sd_tx, sd) = watch::channel(false);
    let (_tx, mut rx) = mpsc::channel(1);
    let h = tokio::spawn(async move { ctl.run_term(&fence, lost, sd, &mut rx).await });
    loop {
        let r = storage.get_record(left.id).await.unwrap().unwrap();
        if r.status == RecordStatus::Cancelled {
            assert!(r.error.contains("crashed") && r.error.contains("me"), "{}", r.error);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Shutdown abandons the blocking command after the grace period and records it cancelled.
    tokio::time::sleep(Duration::from_millis(100)).await;
    sd_tx.send(true).unwrap();
    assert_eq!(h.await.unwrap(), TermEnd::Shutdown);
    let last = storage.get_records(1).await.unwrap().pop().unwrap();
    assert_eq!(last.operation, "test-block");
    assert_eq!(last.status, RecordStatus::Cancelled);
    assert!(last.error.contains("shutting down"));
}

/// Every node reachable with nothing running: the planner always has the same work (rivers first).
/// Counts its probes, one per pass.
#[derive(Default)]
struct ReachableProber(std::sync::atomic::AtomicUsize);

#[async_trait::async_trait]
impl cke::controller::Prober for ReachableProber {
    async fn probe(&self, cluster: &cke::model::Cluster) -> cke::model::ClusterStatus {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut st = cke::model::ClusterStatus::default();
        for n in &cluster.nodes {
            st.nodes.insert(
                n.address.clone(),
                cke::model::NodeStatus {
                    ssh_connected: true,
                    ..Default::default()
                },
            );
        }
        st
    }
}

#[tokio::test]
async fn completed_operations_chain_passes_but_a_repeat_waits_for_the_interval() {
    // With a one-hour interval: after the first pass's operations complete, the second pass follows
    // at once; it plans and completes the very same operations (the probe never changes), which
    // changed nothing, so the third pass waits for the interval. A pass whose plan has no operator
    // waits the whole interval too.
    for (with_operators, want_passes) in [(true, 2usize), (false, 1)] {
        let (storage, fence) = setup().await;
        let ops: OperatorFactory = if with_operators {
            Arc::new(|p, _| Some(cke::op::SeqOperator::boxed(p.name(), p.targets(), vec![])))
        } else {
            Arc::new(|_, _| None)
        };
        let shared = Arc::new(Shared::default());
        let cfg = ControllerConfig {
            name: "me".into(),
            interval: Duration::from_secs(3600),
            dry_run: false,
            shutdown_grace: Duration::from_millis(100),
            test_operator: None,
            images: Default::default(),
        };
        let prober = Arc::new(ReachableProber::default());
        let ctl = Controller::new(storage.clone(), prober.clone(), ops, shared, cfg);
        let (_lost_tx, lost) = watch::channel(false);
        let (sd_tx, sd) = watch::channel(false);
        let (_tx, mut rx) = mpsc::channel(1);
        let h = tokio::spawn(async move { ctl.run_term(&fence, lost, sd, &mut rx).await });
        let passes = || prober.0.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..300 {
            if passes() >= want_passes {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(passes(), want_passes);
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(passes(), want_passes, "with operators: {with_operators}");
        let records = storage.get_records(0).await.unwrap();
        if with_operators {
            assert!(!records.is_empty() && records.len() % 2 == 0, "{records:?}");
        } else {
            assert!(records.is_empty());
            let status = storage
                .get_raw("status")
                .await
                .unwrap()
                .expect("the pass published its plan");
            assert!(String::from_utf8_lossy(&status.value).contains("rivers"));
        }
        sd_tx.send(true).unwrap();
        assert_eq!(h.await.unwrap(), TermEnd::Shutdown);
    }
}
