//! The controller with the in-memory storage double, under paused tokio time: it records every
//! operation and command, stops writing the moment its fence breaks, cancels what an earlier leader
//! left running, chains passes after completed operations, and backs off after failures (1 s
//! doubling up to the interval for transient ones; the interval for those only a change can lift).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::*;
use crate::error::Retry;
use crate::model::{parse_cluster, Cluster, ClusterStatus, Constraints, NodeStatus, RecordCommand, RecordStatus};
use crate::op::{CommandError, Commander, Infra, Operator, Outcome, SeqOperator};
use crate::storage::{Fence, MemStorage, Storage};

/// Every node reachable with nothing running: the planner always plans the same work (rivers
/// first). Notes the (paused) time of each probe, one per pass.
#[derive(Default)]
struct ReachableProber(Mutex<Vec<Instant>>);

impl ReachableProber {
    fn passes(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Seconds between consecutive passes.
    fn gaps(&self) -> Vec<u64> {
        let t = self.0.lock().unwrap();
        t.windows(2).map(|w| (w[1] - w[0]).as_secs()).collect()
    }
}

#[async_trait]
impl Prober for ReachableProber {
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus {
        self.0.lock().unwrap().push(Instant::now());
        let mut st = ClusterStatus::default();
        for n in &cluster.nodes {
            let ns = NodeStatus {
                ssh_connected: true,
                ..Default::default()
            };
            st.nodes.insert(n.address.clone(), ns);
        }
        st
    }
}

/// What a scripted command does.
#[derive(Clone)]
enum Act {
    /// Appends its step to the shared log.
    Log(Arc<Mutex<Vec<String>>>),
    /// Fails with this retry class.
    Fail(Retry),
    /// Fails while the counter is above zero (counting down), then succeeds.
    FailTimes(Arc<AtomicUsize>),
    /// Sleeps.
    Sleep(Duration),
    /// Appends its step to the shared log, then sleeps.
    LogThenSleep(Arc<Mutex<Vec<String>>>, Duration),
    /// Fails at this instant.
    FailAt(Instant),
}

struct Scripted {
    act: Act,
    step: usize,
}

#[async_trait]
impl Commander for Scripted {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "scripted".into(),
            target: String::new(),
            detail: format!("step {}", self.step),
        }
    }

    async fn run(&self, _infra: &Infra) -> Result<Outcome, CommandError> {
        match &self.act {
            Act::Log(log) => log.lock().unwrap().push(format!("step {}", self.step)),
            Act::Fail(retry) => {
                return Err(CommandError::with_retry(
                    &self.command(),
                    *retry,
                    crate::op::Refusal("scripted failure".into()),
                ))
            }
            Act::FailTimes(n) => {
                if n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
                    .is_ok()
                {
                    return Err(CommandError::soon(&self.command(), "scripted transient failure"));
                }
            }
            Act::Sleep(d) => tokio::time::sleep(*d).await,
            Act::LogThenSleep(log, d) => {
                log.lock().unwrap().push(format!("step {}", self.step));
                tokio::time::sleep(*d).await
            }
            Act::FailAt(at) => {
                tokio::time::sleep_until(*at).await;
                return Err(CommandError::soon(&self.command(), "scripted failure at the deadline"));
            }
        }
        Ok(Outcome::Done)
    }
}

/// Every planned operation becomes `steps` scripted commands.
fn scripted(act: Act, steps: usize) -> OperatorFactory {
    Arc::new(move |p, _| {
        let cmds: Vec<Box<dyn Commander>> = (1..=steps)
            .map(|step| Box::new(Scripted { act: act.clone(), step }) as Box<dyn Commander>)
            .collect();
        SeqOperator::boxed(p.name(), p.targets(), cmds)
    })
}

async fn setup() -> (Arc<MemStorage>, Fence) {
    let s = Arc::new(MemStorage::default());
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cluster.yml")).unwrap();
    s.put_cluster(&parse_cluster(&text).unwrap()).await.unwrap();
    s.put_constraints(&Constraints::default().with("control-plane-count", "3").unwrap())
        .await
        .unwrap();
    s.put_raw(crate::storage::KEY_CONFIG_VERSION, b"2".to_vec())
        .await
        .unwrap();
    s.put_raw("leader/1", b"me".to_vec()).await.unwrap();
    let kv = s.get_raw("leader/1").await.unwrap().unwrap();
    let fence = Fence {
        key: s.full_key("leader/1"),
        create_revision: kv.create_revision,
    };
    (s, fence)
}

fn config(interval: Duration) -> ControllerConfig {
    ControllerConfig {
        name: "me".into(),
        interval,
        dry_run: false,
        shutdown_grace: Duration::from_millis(100),
        #[cfg(feature = "test-hooks")]
        test_operator: None,
        #[cfg(feature = "test-hooks")]
        without_kubernetes: false,
        images: Default::default(),
        host: Default::default(),
        max_concurrent_updates: crate::planner::DEFAULT_MAX_CONCURRENT_UPDATES,
    }
}

struct Term {
    prober: Arc<ReachableProber>,
    shared: Arc<Shared>,
    lost: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    trigger: mpsc::Sender<()>,
    handle: tokio::task::JoinHandle<TermEnd>,
}

fn start(storage: &Arc<MemStorage>, fence: &Fence, ops: OperatorFactory, interval: Duration) -> Term {
    start_until(storage, fence, ops, interval, LeaseDeadline::unlimited())
}

fn start_until(
    storage: &Arc<MemStorage>,
    fence: &Fence,
    ops: OperatorFactory,
    interval: Duration,
    deadline: LeaseDeadline,
) -> Term {
    let prober = Arc::new(ReachableProber::default());
    let shared = Arc::new(Shared::default());
    let ctl = Controller::new(storage.clone(), prober.clone(), shared.clone(), config(interval)).with_operators(ops);
    let Running {
        lost,
        shutdown,
        trigger,
        handle,
    } = spawn_term(ctl, fence, deadline);
    Term {
        prober,
        shared,
        lost,
        shutdown,
        trigger,
        handle,
    }
}

/// A controller's term running in its own task, and the senders that end or wake it.
struct Running {
    lost: watch::Sender<bool>,
    shutdown: watch::Sender<bool>,
    trigger: mpsc::Sender<()>,
    handle: tokio::task::JoinHandle<TermEnd>,
}

/// Runs `ctl`'s term under `fence` until `deadline` in a task.
fn spawn_term(ctl: Controller, fence: &Fence, deadline: LeaseDeadline) -> Running {
    let (lost, lost_rx) = watch::channel(false);
    let (shutdown, sd_rx) = watch::channel(false);
    let (trigger, mut rx) = mpsc::channel(1);
    let fence = fence.clone();
    let handle = tokio::spawn(async move { ctl.run_term(&fence, deadline, lost_rx, sd_rx, &mut rx).await });
    Running {
        lost,
        shutdown,
        trigger,
        handle,
    }
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..100_000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(start_paused = true)]
async fn records_each_operation_and_stops_when_the_fence_breaks() {
    let (storage, fence) = setup().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let t = start(
        &storage,
        &fence,
        scripted(Act::Log(log.clone()), 3),
        Duration::from_millis(50),
    );
    // Let a few operations complete, then another instance "takes" the election key.
    loop {
        let done = storage.get_records(0).await.unwrap();
        if done.iter().filter(|r| r.status == RecordStatus::Completed).count() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    storage.delete_raw("leader/1").await.unwrap();
    storage.put_raw("leader/1", b"other".to_vec()).await.unwrap();
    assert_eq!(t.handle.await.unwrap(), TermEnd::Lost);
    let records = storage.get_records(0).await.unwrap();
    let completed = records.iter().filter(|r| r.status == RecordStatus::Completed).count();
    assert!(completed >= 3, "{records:?}");
    // Each completed operation ran its three commands, in order.
    let lines = log.lock().unwrap().clone();
    assert!(lines.len() >= completed * 3, "{lines:?}");
    assert_eq!(lines[..3], ["step 1", "step 2", "step 3"]);
    // After the fence broke nothing more is written.
    let before = storage.get_records(0).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(storage.get_records(0).await.unwrap(), before);
    // Ids are contiguous, newest first.
    let ids: Vec<i64> = before.iter().map(|r| r.id).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "{ids:?}");
    assert!(t
        .shared
        .metrics
        .render()
        .contains("cke_operations_total{operation=\"rivers-bootstrap\",result=\"completed\"}"));
}

#[tokio::test(start_paused = true)]
async fn no_command_starts_once_the_lease_deadline_has_passed() {
    // A command outlives the lease (as in a process paused past its TTL): its fence still holds in
    // the store, but the local deadline has passed, so the command is abandoned at the deadline and
    // the operation's next command never starts.
    let (storage, fence) = setup().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let deadline = LeaseDeadline::until(Instant::now() + Duration::from_secs(5));
    let t = start_until(
        &storage,
        &fence,
        scripted(Act::LogThenSleep(log.clone(), Duration::from_secs(10)), 3),
        Duration::from_secs(60),
        deadline,
    );
    let t0 = Instant::now();
    assert_eq!(t.handle.await.unwrap(), TermEnd::Lost);
    assert!(
        t0.elapsed() < Duration::from_secs(6),
        "abandoned at the deadline: {:?}",
        t0.elapsed()
    );
    assert_eq!(*log.lock().unwrap(), ["step 1"]);
    let r = storage.get_records(1).await.unwrap().pop().unwrap();
    assert_eq!((r.status, r.command.detail.as_str()), (RecordStatus::Running, "step 1"));
}

#[tokio::test(start_paused = true)]
async fn a_command_ending_as_the_lease_deadline_passes_is_not_acted_upon() {
    // As a host command ended by the deadline (or one found done by a process woken past it): its
    // failure arrives between two of the controller's lease checks and is not even recorded.
    let (storage, fence) = setup().await;
    let at = Instant::now() + Duration::from_millis(5100);
    let t = start_until(
        &storage,
        &fence,
        scripted(Act::FailAt(at), 2),
        Duration::from_secs(60),
        LeaseDeadline::until(at),
    );
    assert_eq!(t.handle.await.unwrap(), TermEnd::Lost);
    assert_eq!(Instant::now(), at, "the term ended with the command");
    let r = storage.get_records(1).await.unwrap().pop().unwrap();
    assert_eq!(
        (r.status, r.command.detail.as_str(), r.error.as_str()),
        (RecordStatus::Running, "step 1", ""),
        "left for the next leader to close"
    );
    let metrics = t.shared.metrics.render();
    assert!(!metrics.contains("result=\"failed\""), "{metrics}");
}

#[tokio::test(start_paused = true)]
async fn a_failing_command_cancels_its_operation_with_its_cause() {
    let (storage, fence) = setup().await;
    let t = start(
        &storage,
        &fence,
        scripted(Act::Fail(Retry::Soon), 1),
        Duration::from_secs(60),
    );
    let s = storage.clone();
    let mut rec = None;
    for _ in 0..1000 {
        if let Some(r) = s.get_records(1).await.unwrap().pop() {
            if r.status == RecordStatus::Cancelled {
                rec = Some(r);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rec = rec.expect("a cancelled record");
    assert_eq!(rec.error, "scripted on : scripted failure");
    assert_eq!(rec.command.name, "scripted");
    assert_eq!(rec.operation, "rivers-bootstrap");
    assert!(t
        .shared
        .metrics
        .render()
        .contains("cke_controller_pass_failures_total 1"));
    t.lost.send(true).unwrap();
    assert_eq!(t.handle.await.unwrap(), TermEnd::Lost);
}

#[tokio::test(start_paused = true)]
async fn a_new_term_cancels_leftovers_and_shutdown_abandons_a_long_command() {
    let (storage, fence) = setup().await;
    // A record left running by a crashed leader is cancelled by the next term.
    let left = crate::model::Record {
        id: 7,
        status: RecordStatus::Running,
        operation: "etcd-add-member".into(),
        targets: vec!["10.0.0.4".into()],
        command: RecordCommand::default(),
        error: String::new(),
        leader: "crashed".into(),
        start_at: chrono::Utc::now(),
        end_at: None,
        results: None,
    };
    storage
        .put_raw(
            &format!("records/{}", crate::model::Record::key_suffix(left.id)),
            crate::storage::encode(&left),
        )
        .await
        .unwrap();
    let t = start(
        &storage,
        &fence,
        scripted(Act::Sleep(Duration::from_secs(3600)), 1),
        Duration::from_secs(60),
    );
    loop {
        let r = storage.get_record(left.id).await.unwrap().unwrap();
        if r.status == RecordStatus::Cancelled {
            assert!(r.error.contains("crashed") && r.error.contains("me"), "{}", r.error);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The next record is the long command, running; shutdown abandons it after the grace period
    // and records it cancelled.
    wait_for("the long command", || t.prober.passes() == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let running = storage.get_records(1).await.unwrap().pop().unwrap();
    assert_eq!((running.id, running.status), (8, RecordStatus::Running));
    let at = Instant::now();
    t.shutdown.send(true).unwrap();
    assert_eq!(t.handle.await.unwrap(), TermEnd::Shutdown);
    assert_eq!(at.elapsed(), Duration::from_millis(100), "the grace period, no more");
    let last = storage.get_records(1).await.unwrap().pop().unwrap();
    assert_eq!(last.status, RecordStatus::Cancelled);
    assert!(last.error.contains("shutting down"), "{}", last.error);
}

#[tokio::test(start_paused = true)]
async fn completed_operations_chain_passes_but_a_repeat_waits_for_the_interval() {
    // With a one-hour interval: after the first pass's operations complete, the second pass follows
    // after the short pause; it completes the very same operations (the probe never changes), which
    // changed nothing, so the third pass waits for the interval.
    let (storage, fence) = setup().await;
    let t = start(
        &storage,
        &fence,
        scripted(Act::FailTimes(Arc::default()), 1),
        Duration::from_secs(3600),
    );
    tokio::time::sleep(Duration::from_secs(3599)).await;
    assert_eq!(t.prober.passes(), 2);
    assert_eq!(t.prober.gaps(), [1]);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(t.prober.passes(), 3);
    assert_eq!(t.prober.gaps(), [1, 3600]);
    // A declaration change wakes a pass at once.
    t.trigger.send(()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(t.prober.passes(), 4);
    t.shutdown.send(true).unwrap();
    assert_eq!(t.handle.await.unwrap(), TermEnd::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn transient_failures_back_off_exponentially_up_to_the_interval_then_reset() {
    // Seven transient failures, then success: waits 1, 2, 4, 8, 10, 10, 10 s (interval 10 s); the
    // pass after the failures succeeds; its repeat follows after the short pause, then the
    // interval.
    let (storage, fence) = setup().await;
    let failures = Arc::new(AtomicUsize::new(7));
    let t = start(
        &storage,
        &fence,
        scripted(Act::FailTimes(failures.clone()), 1),
        Duration::from_secs(10),
    );
    wait_for("ten passes", || t.prober.passes() >= 10).await;
    assert_eq!(t.prober.gaps()[..9], [1, 2, 4, 8, 10, 10, 10, 1, 10]);
    // Failing again after a success starts from 1 s.
    failures.store(2, Ordering::SeqCst);
    let n = t.prober.passes();
    wait_for("three more passes", || t.prober.passes() >= n + 3).await;
    let gaps = t.prober.gaps();
    assert_eq!(gaps[n - 1..n + 2], [10, 1, 2], "{gaps:?}");
    t.shutdown.send(true).unwrap();
    assert_eq!(t.handle.await.unwrap(), TermEnd::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn a_failure_only_a_change_can_lift_waits_for_the_interval_or_a_trigger() {
    let (storage, fence) = setup().await;
    let t = start(
        &storage,
        &fence,
        scripted(Act::Fail(Retry::AfterChange), 1),
        Duration::from_secs(60),
    );
    wait_for("three passes", || t.prober.passes() >= 3).await;
    assert_eq!(t.prober.gaps()[..2], [60, 60], "no back-off loop");
    let n = t.prober.passes();
    tokio::time::sleep(Duration::from_secs(5)).await;
    t.trigger.send(()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(t.prober.passes(), n + 1, "a trigger wakes the pass");
    t.shutdown.send(true).unwrap();
    assert_eq!(t.handle.await.unwrap(), TermEnd::Shutdown);
}

/// The real operators run through the controller against the fake infrastructure: the plan the
/// probe of the fake world gives converges to rivers and a bootstrapped etcd. The management etcd
/// starts without `config-version` (CKE: "1"): the first operation records "2", fenced, with its
/// record.
#[tokio::test(start_paused = true)]
async fn operators_for_planned_operations_run_against_the_infrastructure() {
    let (storage, fence) = setup().await;
    storage.delete_raw(crate::storage::KEY_CONFIG_VERSION).await.unwrap();
    let cluster = storage.get_cluster().await.unwrap().unwrap();
    let fake = crate::infra::fake::Fake::new();
    for ca in crate::storage::CA_NAMES {
        storage.put_ca(ca, "CA").await.unwrap();
    }
    assert!(storage.get_service_account().await.unwrap().is_none());
    let prober = Arc::new(FakeProber(fake.clone()));
    let shared = Arc::new(Shared::default());
    let f2 = fake.clone();
    let ctl = Controller::new(storage.clone(), prober, shared, config(Duration::from_secs(60)))
        .with_infra(Arc::new(move |s, c| f2.infra(&c, s)));
    let term = spawn_term(ctl, &fence, LeaseDeadline::unlimited());
    let constraints = storage.get_constraints().await.unwrap();
    let plan = |s: ClusterStatus| {
        crate::planner::decide_ops(&cluster, &s, &constraints, &Default::default(), chrono::Utc::now())
    };
    for _ in 0..1000 {
        if plan(fake.status(&cluster)).phase == crate::model::Phase::Completed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = plan(fake.status(&cluster));
    assert_eq!(
        p.phase,
        crate::model::Phase::Completed,
        "{p:?}\nrecords: {:#?}",
        storage.get_records(5).await.unwrap()
    );
    let cps: Vec<String> = cluster.control_planes().map(|n| n.address.clone()).collect();
    fake.with(|w| {
        assert_eq!(w.etcd.members.len(), cps.len());
        assert!(w.etcd.auth);
    });
    term.shutdown.send(true).unwrap();
    assert_eq!(term.handle.await.unwrap(), TermEnd::Shutdown);
    let records = storage.get_records(0).await.unwrap();
    assert!(
        records.iter().all(|r| r.status == RecordStatus::Completed),
        "{records:?}"
    );
    let mut ops: Vec<&str> = records.iter().rev().map(|r| r.operation.as_str()).collect();
    ops.dedup();
    let mut want = vec!["upgrade"];
    want.extend(crate::op::tests::BOOTSTRAP);
    want.dedup();
    assert_eq!(ops, want);
    let upgrade = records.iter().find(|r| r.operation == "upgrade").unwrap();
    assert_eq!(upgrade.command.name, "upgrade-version-from-1-to-2");
    let version = storage.get_raw(crate::storage::KEY_CONFIG_VERSION).await.unwrap();
    assert_eq!(version.map(|kv| kv.value), Some(b"2".to_vec()));
    // The service-account pair was issued once, before the first apiserver, and every apiserver
    // got the same one.
    let (sa_cert, _) = storage.get_service_account().await.unwrap().expect("issued");
    fake.with(|w| {
        assert_eq!(
            w.issued.iter().filter(|r| r.common_name == "service-account").count(),
            1
        );
        for a in &cps {
            assert_eq!(
                w.nodes[a].files["/etc/kubernetes/pki/service-account.crt"].0,
                sa_cert.as_bytes()
            );
        }
    });
}

/// The whole reboot of a worker through the controller, against the fake and the in-memory
/// storage: the reboot queue is read each pass (drains through the fake API, boot checks through the
/// fake host commands), the worker is drained, rebooted, dequeued once its boot check says so, and
/// uncordoned; `reboots/running` follows. The worker's Node is named after its hostname.
#[tokio::test(start_paused = true)]
async fn a_queued_worker_is_drained_rebooted_dequeued_and_uncordoned() {
    use crate::model::{Node, Reboot, RebootQueueEntry};
    use crate::storage::queue::{self, KEY_REBOOTS_RUNNING, REBOOT_QUEUE};
    let (storage, fence) = setup().await;
    let mut cluster = storage.get_cluster().await.unwrap().unwrap();
    let mut worker = Node::new("10.66.0.14", "root", false);
    worker.hostname = "worker4".into();
    cluster.nodes.push(worker);
    cluster.reboot = Some(Reboot {
        reboot_command: vec!["reboot-node".into()],
        boot_check_command: vec!["boot-check".into()],
        ..Default::default()
    });
    storage.put_cluster(&cluster).await.unwrap();
    for ca in crate::storage::CA_NAMES {
        storage.put_ca(ca, "CA").await.unwrap();
    }
    let fake = crate::infra::fake::Fake::new();
    fake.on_host_command("boot-check", Ok("false"));
    let shared = Arc::new(Shared::default());
    let f2 = fake.clone();
    let ctl = Controller::new(
        storage.clone(),
        Arc::new(FakeProber(fake.clone())),
        shared,
        config(Duration::from_secs(5)),
    )
    .with_infra(Arc::new(move |s, c| f2.infra(&c, s)));
    let term = spawn_term(ctl, &fence, LeaseDeadline::unlimited());
    let ops_seen = || async {
        let mut ops: Vec<String> = storage
            .get_records(0)
            .await
            .unwrap()
            .into_iter()
            .rev()
            .map(|r| r.operation)
            .collect();
        ops.dedup();
        ops
    };
    // The cluster comes up and the worker's Node registers.
    for _ in 0..2000 {
        if fake.with(|w| w.kube_nodes.contains_key("worker4"))
            && ops_seen().await.last().map(String::as_str) != Some("kubelet-bootstrap")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fake.add_pod("dev", "web", "worker4", "ReplicaSet", "Running", &[]);
    queue::enqueue(&*storage, &REBOOT_QUEUE, &mut [RebootQueueEntry::new("10.66.0.14")])
        .await
        .unwrap();
    let running = || async {
        storage
            .get_raw(KEY_REBOOTS_RUNNING)
            .await
            .unwrap()
            .map(|kv| String::from_utf8(kv.value).unwrap())
    };
    let mut saw_running = false;
    for _ in 0..2000 {
        saw_running |= running().await.as_deref() == Some("true");
        let ops = ops_seen().await;
        if ops.iter().any(|o| o == "reboot-reboot") {
            fake.on_host_command("boot-check", Ok("true\n"));
        }
        if ops.last().map(String::as_str) == Some("reboot-uncordon") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    term.shutdown.send(true).unwrap();
    assert_eq!(term.handle.await.unwrap(), TermEnd::Shutdown);
    let ops = ops_seen().await;
    let from = ops
        .iter()
        .position(|o| o == "reboot-drain-start")
        .expect("a drain started");
    assert_eq!(
        ops[from..],
        [
            "reboot-drain-start",
            "reboot-delete-daemonset-pod",
            "reboot-reboot",
            "reboot-dequeue",
            "reboot-uncordon"
        ]
    );
    assert!(queue::entries::<RebootQueueEntry>(&*storage, &REBOOT_QUEUE)
        .await
        .unwrap()
        .is_empty());
    assert!(saw_running, "reboots/running was true while the entry was queued");
    assert_eq!(running().await.as_deref(), Some("false"));
    fake.with(|w| {
        assert!(w.pods.is_empty(), "the pod was evicted");
        let n = &w.kube_nodes["worker4"];
        assert!(!n.unschedulable && !n.annotations.contains_key("cke.cybozu.com/reboot"));
    });
    let log = fake.take_log();
    assert!(log.iter().any(|l| l == "host: reboot-node 10.66.0.14"), "{log:?}");
    assert!(log.iter().any(|l| l == "10.66.0.14: release connection"));
    // The boot check got the address and the time of the transition to rebooting.
    assert!(log
        .iter()
        .any(|l| l.starts_with("host: boot-check 10.66.0.14 ") && !l.ends_with(" 0")));
}

struct FakeProber(crate::infra::fake::Fake);

#[async_trait]
impl Prober for FakeProber {
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus {
        self.0.status(cluster)
    }
}

#[allow(dead_code)]
fn _assert_operator_is_object_safe(_: &dyn Operator) {}

/// Polls the storage (paused time) until `f` holds for its declaration.
async fn wait_for_cluster(storage: &MemStorage, what: &str, f: impl Fn(&Cluster) -> bool) -> Cluster {
    for _ in 0..10_000 {
        if let Some(c) = storage.get_cluster().await.unwrap() {
            if f(&c) {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// CKE's points of the loop: with no declaration the integrator generates one; while operations
/// are planned it does not run; with nothing planned (here: the declaration violates a raised
/// control-plane-count) it updates the declaration.
#[tokio::test(start_paused = true)]
async fn the_sabakan_integration_runs_at_ckes_points_of_the_loop() {
    use crate::sabakan::fake::{machine, FakeSabakan};
    use crate::sabakan::{parse_template, Integrator, MachineState};
    use crate::storage::SabakanStorage;

    let (storage, fence) = setup().await;
    storage.delete_raw("cluster").await.unwrap();
    storage.put_constraints(&Constraints::default()).await.unwrap();
    storage
        .put_sabakan_template(
            &parse_template(
                "name: t\nservice_subnet: 10.68.0.0/16\nnodes:\n- {user: cybozu, control_plane: true}\n- {user: cybozu}\n",
            )
            .unwrap(),
        )
        .await
        .unwrap();
    storage.put_sabakan_url("http://sabakan/graphql").await.unwrap();
    let healthy = |s: MachineState| {
        vec![
            machine("10.0.0.1", 0, MachineState::Healthy),
            machine("10.0.0.2", 1, MachineState::Healthy),
            machine("10.0.0.3", 2, s),
        ]
    };
    let sabakan = Arc::new(FakeSabakan::new(healthy(MachineState::Healthy)));

    let prober = Arc::new(ReachableProber::default());
    let shared = Arc::new(Shared::default());
    let ctl = Controller::new(
        storage.clone(),
        prober.clone(),
        shared.clone(),
        config(Duration::from_millis(50)),
    )
    .with_operators(scripted(Act::Sleep(Duration::from_millis(1)), 1))
    .with_integrator(Arc::new(Integrator::new(storage.clone(), sabakan.clone())));
    let term = spawn_term(ctl, &fence, LeaseDeadline::unlimited());

    let c = wait_for_cluster(&storage, "a generated declaration", |_| true).await;
    assert_eq!((c.control_planes().count(), c.workers().count()), (1, 2));
    assert!(
        shared
            .status
            .read()
            .unwrap()
            .sabakan
            .contains("generated the cluster (new)"),
        "{}",
        shared.status.read().unwrap().sabakan
    );

    // Operations are planned in every pass (nothing ever runs on these nodes): a machine turning
    // unreachable changes nothing.
    let queries = sabakan.sent.lock().unwrap().len();
    sabakan.set(healthy(MachineState::Unreachable));
    let passes = prober.passes();
    wait_for("five more passes", || prober.passes() >= passes + 5).await;
    assert_eq!(storage.get_cluster().await.unwrap(), Some(c));
    assert_eq!(
        sabakan.sent.lock().unwrap().len(),
        queries,
        "no query while operations are planned"
    );

    // A raised control-plane-count: the declaration violates it, nothing is planned, and the
    // integrator adds a control plane (and taints the unreachable machine while at it).
    storage
        .put_constraints(&Constraints::default().with("control-plane-count", "2").unwrap())
        .await
        .unwrap();
    let c = wait_for_cluster(&storage, "a second control plane", |c| c.control_planes().count() == 2).await;
    let n = c.node("10.0.0.3").unwrap();
    assert!(n
        .taints
        .iter()
        .any(|t| t.key == "cke.cybozu.com/state" && t.value == "unreachable"));

    term.shutdown.send(true).unwrap();
    assert_eq!(term.handle.await.unwrap(), TermEnd::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn an_invalid_stored_declaration_is_not_acted_on() {
    let (storage, fence) = setup().await;
    // Written by something other than `ckecli cluster set`, which would have refused it.
    let mut cluster = storage.get_cluster().await.unwrap().unwrap();
    cluster.service_subnet = "10.0.0.0/33".into();
    storage.put_cluster(&cluster).await.unwrap();
    let t = start(
        &storage,
        &fence,
        scripted(Act::Fail(Retry::Soon), 1),
        Duration::from_secs(1),
    );
    wait_for("the note naming the invalid field", || {
        t.shared.status.read().unwrap().note.contains("service_subnet")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let note = t.shared.status.read().unwrap().note.clone();
    assert!(note.contains("stored cluster declaration is invalid"), "{note}");
    // `/health` lists it among its problems.
    let problem = t.shared.problems.lock().unwrap().get("declaration").cloned();
    assert!(problem.is_some_and(|p| p.contains("service_subnet")), "{note}");
    assert_eq!(t.prober.passes(), 0, "the nodes were probed");
    assert!(storage.get_records(0).await.unwrap().is_empty(), "an operation ran");
    t.lost.send(true).unwrap();
    assert_eq!(t.handle.await.unwrap(), TermEnd::Lost);
}

#[test]
fn health_lists_a_few_unreachable_nodes_and_counts_the_rest() {
    let status = |down: usize, up: usize| {
        let mut st = ClusterStatus::default();
        for i in 0..down + up {
            let node = NodeStatus {
                ssh_connected: i >= down,
                ssh_error: if i < down {
                    format!("timed out {i}")
                } else {
                    String::new()
                },
                ..NodeStatus::default()
            };
            st.nodes.insert(format!("10.0.{}.{}", i / 250, i % 250), node);
        }
        st
    };

    // A few: each one, with its reason.
    let few = unreachable_problems(&status(UNREACHABLE_LISTED, 3));
    assert_eq!(few.len(), UNREACHABLE_LISTED);
    assert_eq!(
        few[0],
        ("node 10.0.0.0".to_string(), "unreachable: timed out 0".to_string())
    );

    // A thousand: the first few, then a count.
    let many = unreachable_problems(&status(1000, 20));
    assert_eq!(many.len(), UNREACHABLE_LISTED + 1, "{many:?}");
    assert!(many[..UNREACHABLE_LISTED]
        .iter()
        .all(|(k, v)| k.starts_with("node 10.0.") && v.starts_with("unreachable: ")));
    let (source, text) = &many[UNREACHABLE_LISTED];
    assert_eq!(source, "nodes");
    assert!(text.starts_with("1000 unreachable in all, 995 more"), "{text}");

    // Replacing with prefix "node" drops the earlier summary once the nodes are back.
    let shared = Shared::default();
    shared.replace_problems("node", many);
    shared.set_problem("vault", Some("sealed".into()));
    shared.replace_problems("node", unreachable_problems(&status(0, 5)));
    let left: Vec<String> = shared.problems.lock().unwrap().keys().cloned().collect();
    assert_eq!(left, vec!["vault".to_string()]);
}

/// A [`Storage`] that counts the requests made through it (each call of a raw operation is one
/// request to etcd).
struct CountingStorage {
    inner: MemStorage,
    requests: AtomicUsize,
}

impl CountingStorage {
    fn count(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn one(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Storage for CountingStorage {
    fn prefix(&self) -> &str {
        self.inner.prefix()
    }
    async fn get_raw(&self, key: &str) -> Result<Option<crate::storage::KeyValue>, StorageError> {
        self.one();
        self.inner.get_raw(key).await
    }
    async fn list_raw_with_revision(
        &self,
        key_prefix: &str,
        limit: i64,
        descending: bool,
    ) -> Result<crate::storage::Listing, StorageError> {
        self.one();
        self.inner.list_raw_with_revision(key_prefix, limit, descending).await
    }
    async fn read_many(&self, reads: &[crate::storage::Read]) -> Result<crate::storage::Snapshot, StorageError> {
        self.one();
        self.inner.read_many(reads).await
    }
    async fn put_raw(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.one();
        self.inner.put_raw(key, value).await
    }
    async fn create_if_absent(&self, key: &str, value: Vec<u8>) -> Result<bool, StorageError> {
        self.one();
        self.inner.create_if_absent(key, value).await
    }
    async fn watch(&self, key_prefix: &str, start_revision: i64) -> Result<crate::storage::WatchStream, StorageError> {
        self.one();
        self.inner.watch(key_prefix, start_revision).await
    }
    async fn delete_raw(&self, key: &str) -> Result<bool, StorageError> {
        self.one();
        self.inner.delete_raw(key).await
    }
    async fn txn(&self, conditions: Vec<crate::storage::Condition>, writes: Vec<Write>) -> Result<bool, StorageError> {
        self.one();
        self.inner.txn(conditions, writes).await
    }
}

/// Every node unreachable: nothing can be planned, the steady state of a cluster whose nodes are
/// down. Notes the storage's request count at each probe (one per pass).
struct UnreachableProber {
    storage: Arc<CountingStorage>,
    at_probe: Mutex<Vec<usize>>,
}

#[async_trait]
impl Prober for UnreachableProber {
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus {
        self.at_probe.lock().unwrap().push(self.storage.count());
        let mut st = ClusterStatus::default();
        for n in &cluster.nodes {
            st.nodes.insert(n.address.clone(), NodeStatus::default());
        }
        st
    }
}

/// The management etcd requests of a steady pass (nothing planned, nothing changed, the sabakan
/// integration present but not configured, as on most sites): a fixed number, whatever the node
/// count. The probe's own reads (the Kubernetes CA, host-key pins) are the prober's, not counted
/// here.
#[tokio::test(start_paused = true)]
async fn a_steady_pass_makes_a_fixed_small_number_of_etcd_requests() {
    use crate::sabakan::fake::FakeSabakan;
    use crate::sabakan::Integrator;

    let (mem, fence) = setup().await;
    let storage = Arc::new(CountingStorage {
        inner: Arc::try_unwrap(mem).unwrap(),
        requests: AtomicUsize::new(0),
    });
    let prober = Arc::new(UnreachableProber {
        storage: storage.clone(),
        at_probe: Mutex::new(Vec::new()),
    });
    let shared = Arc::new(Shared::default());
    let ctl = Controller::new(
        storage.clone(),
        prober.clone(),
        shared.clone(),
        config(Duration::from_secs(1)),
    )
    .with_operators(scripted(Act::Fail(Retry::Soon), 1))
    .with_integrator(Arc::new(Integrator::new(
        storage.clone(),
        Arc::new(FakeSabakan::new(vec![])),
    )));
    let term = spawn_term(ctl, &fence, LeaseDeadline::unlimited());
    wait_for("six passes", || prober.at_probe.lock().unwrap().len() >= 6).await;
    term.shutdown.send(true).unwrap();
    assert_eq!(term.handle.await.unwrap(), TermEnd::Shutdown);
    assert!(
        shared.status.read().unwrap().planned_operations.is_empty(),
        "a steady pass plans nothing: {:?}",
        shared.status.read().unwrap().planned_operations
    );
    let at = prober.at_probe.lock().unwrap().clone();
    // From the third pass on, nothing changes: the status is not written again.
    let per_pass: Vec<usize> = at.windows(2).skip(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        per_pass, [STEADY_PASS_REQUESTS; 3],
        "requests per steady pass (probes at {at:?})"
    );
}

/// The pass's inputs (one transaction), and the sabakan integration's reads.
const STEADY_PASS_REQUESTS: usize = 2;
