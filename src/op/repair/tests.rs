//! The repair operators against the fake infrastructure, with the queue in a memory storage: the
//! entry each leaves, the host commands with their timeouts, the evictions, back-offs and fencing,
//! and what the probe and the planner make of the world afterwards.

use std::time::Duration;

use chrono::Utc;

use super::super::tests::{Env, CP, WORKER};
use super::super::{operator_for, CommandError};
use crate::model::{
    ClusterStatus, Constraints, OpKind, Repair, RepairEntry, RepairOperation, RepairProcedure, RepairStatus,
    RepairStep, RepairStepStatus,
};
use crate::planner::{decide_ops, PlanInputs, PlannedOp};
use crate::storage::{repairs, Fence, LeaseDeadline};

/// Two steps of `op1` for `type1`; the first drains.
fn repair_section() -> Repair {
    Repair {
        repair_procedures: vec![RepairProcedure {
            machine_types: vec!["type1".into()],
            repair_operations: vec![RepairOperation {
                operation: "op1".into(),
                repair_steps: vec![
                    RepairStep {
                        repair_command: vec!["repair0".into(), "--hard".into()],
                        command_retries: Some(2),
                        need_drain: true,
                        watch_seconds: Some(60),
                        ..Default::default()
                    },
                    RepairStep {
                        repair_command: vec!["repair1".into()],
                        command_timeout_seconds: Some(0),
                        ..Default::default()
                    },
                ],
                health_check_command: vec!["check".into()],
                success_command: vec!["notify".into()],
                success_command_timeout: Some(7),
                ..Default::default()
            }],
        }],
        ..Default::default()
    }
}

/// A fake cluster brought up to `completed`, with the repair section declared.
async fn env() -> Env {
    let mut env = Env::new().await;
    env.converge(200).await;
    env.cluster.repair = Some(repair_section());
    env.fake.take_log();
    env
}

/// The next plan, from the status with the queue.
async fn plan(env: &Env) -> crate::planner::Plan {
    let inputs = PlanInputs {
        images: env.images.clone(),
        etcd_bootstrapped_before: true,
        ..Default::default()
    };
    decide_ops(&env.cluster, &status(env).await, &constraints(env), &inputs, Utc::now())
}

/// Queues an entry for `address` and returns its index.
async fn queue(env: &Env, address: &str) -> i64 {
    repairs::enqueue(&*env.storage, RepairEntry::new("op1", "type1", address, ""))
        .await
        .unwrap()
        .index
}

async fn stored(env: &Env, index: i64) -> Option<RepairEntry> {
    repairs::entries(&*env.storage)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.index == index)
}

/// The fake's status with the queue as the probe reads it.
async fn status(env: &Env) -> ClusterStatus {
    let mut st = env.status();
    st.repair_queue = crate::probe::repair_queue::repair_queue_status(
        &*env.storage,
        &env.fake,
        &env.fake,
        &env.cluster,
        Some(CP[0]),
        4,
    )
    .await
    .unwrap();
    st
}

/// A fence that holds: the leader's key in the storage.
async fn fence(env: &Env) -> Fence {
    env.storage.put_raw("leader/me", b"me".to_vec()).await.unwrap();
    Fence {
        key: "/cke/leader/me".into(),
        create_revision: env.storage.get_raw("leader/me").await.unwrap().unwrap().create_revision,
    }
}

/// Runs the operator of `kind`, planned from `status`, with `fence`; the recorded commands and the
/// first error.
async fn run(env: &Env, kind: OpKind, status: &ClusterStatus, fence: Option<Fence>) -> Result<(), CommandError> {
    let planned = PlannedOp::new(kind, "test");
    let mut op = operator_for(&planned, env.ctx(status));
    assert_eq!((op.name(), op.targets()), (planned.name(), planned.targets()));
    let mut infra = env.infra();
    infra.fence = fence;
    while let Some(cmd) = op.next_command() {
        op.command_done(cmd.run(&infra).await?);
    }
    Ok(())
}

fn host_commands(env: &Env) -> Vec<(String, Option<Duration>)> {
    env.fake.with(|w| std::mem::take(&mut w.host_timeouts))
}

fn execute(index: i64, step: usize) -> OpKind {
    OpKind::RepairExecute {
        index,
        address: WORKER.into(),
        step,
    }
}

#[tokio::test]
async fn execute_marks_watching_then_runs_the_step_command_with_its_timeout() {
    let env = env().await;
    let i = queue(&env, WORKER).await;
    let st = status(&env).await;
    host_commands(&env);
    let before = Utc::now() - chrono::Duration::seconds(1);
    run(&env, execute(i, 1), &st, None).await.unwrap();
    let e = stored(&env, i).await.unwrap();
    assert_eq!(
        (e.status, e.step, e.step_status),
        (RepairStatus::Processing, 1, RepairStepStatus::Watching)
    );
    assert_eq!(e.nodename, WORKER, "stored with the Node name");
    assert!(e.last_transition_time.unwrap() >= before);
    assert_eq!(
        e.last_transition_time.unwrap().timestamp_subsec_nanos(),
        0,
        "truncated to the second"
    );
    // command_timeout_seconds 0: no limit.
    assert_eq!(host_commands(&env), [(format!("repair1 {WORKER}"), None)]);
}

#[tokio::test]
async fn every_attempt_failing_fails_the_entry() {
    let env = env().await;
    let i = queue(&env, WORKER).await;
    let st = status(&env).await;
    host_commands(&env);
    env.fake.on_host_command("repair0", Err("BMC unreachable"));
    run(&env, execute(i, 0), &st, None).await.unwrap();
    let e = stored(&env, i).await.unwrap();
    assert_eq!(
        (e.status, e.step_status),
        (RepairStatus::Failed, RepairStepStatus::Watching)
    );
    // command_retries 2: three attempts, each with the default 30 s.
    let cmd = format!("repair0 --hard {WORKER}");
    assert_eq!(host_commands(&env), vec![(cmd, Some(Duration::from_secs(30))); 3]);
}

#[tokio::test]
async fn a_transition_keeps_what_ckecli_changed_meanwhile() {
    let env = env().await;
    let i = queue(&env, WORKER).await;
    let st = status(&env).await;
    // `ckecli repair-queue delete` after the plan, before the operator writes.
    repairs::update(&*env.storage, i, None, |e| {
        e.deleted = true;
        true
    })
    .await
    .unwrap();
    run(&env, execute(i, 0), &st, None).await.unwrap();
    let e = stored(&env, i).await.unwrap();
    assert!(e.deleted, "the deletion is kept");
    assert_eq!(e.step_status, RepairStepStatus::Watching);
}

#[tokio::test]
async fn a_dequeued_entry_fails_the_command_and_a_lost_fence_writes_nothing() {
    let env = env().await;
    let i = queue(&env, WORKER).await;
    let st = status(&env).await;
    host_commands(&env);
    let f = fence(&env).await;
    let lost = Fence {
        key: "/cke/leader/gone".into(),
        create_revision: 3,
    };
    let err = run(&env, execute(i, 0), &st, Some(lost)).await.unwrap_err();
    assert!(crate::error::error_chain(&err).contains("leadership lost"), "{err:?}");
    assert_eq!(stored(&env, i).await.unwrap().status, RepairStatus::Queued);
    assert!(host_commands(&env).is_empty(), "no command ran");
    repairs::dequeue(&*env.storage, &f, i).await.unwrap();
    let err = run(&env, execute(i, 0), &st, Some(f)).await.unwrap_err();
    assert!(
        crate::error::error_chain(&err).contains("no longer in the queue"),
        "{err:?}"
    );
}

#[tokio::test]
async fn finish_runs_the_success_command_whose_failure_fails_the_entry() {
    let env = env().await;
    let ok = queue(&env, WORKER).await;
    let bad = queue(&env, CP[1]).await;
    let never = queue(&env, CP[2]).await;
    let st = status(&env).await;
    host_commands(&env);
    let finish = |index, address: &str, succeeded| OpKind::RepairFinish {
        index,
        address: address.into(),
        succeeded,
    };
    run(&env, finish(ok, WORKER, true), &st, None).await.unwrap();
    assert_eq!(stored(&env, ok).await.unwrap().status, RepairStatus::Succeeded);
    assert_eq!(
        host_commands(&env),
        [(format!("notify {WORKER}"), Some(Duration::from_secs(7)))]
    );
    env.fake.on_host_command("notify", Err("no such ticket"));
    run(&env, finish(bad, CP[1], true), &st, None).await.unwrap();
    assert_eq!(stored(&env, bad).await.unwrap().status, RepairStatus::Failed);
    host_commands(&env);
    run(&env, finish(never, CP[2], false), &st, None).await.unwrap();
    let e = stored(&env, never).await.unwrap();
    assert_eq!(e.status, RepairStatus::Failed);
    assert!(e.last_transition_time.is_some());
    assert!(host_commands(&env).is_empty(), "no success command for a failure");
}

#[tokio::test(start_paused = true)]
async fn a_command_outliving_the_lease_deadline_fails_the_step_and_leaves_the_entry() {
    let mut env = env().await;
    let i = queue(&env, WORKER).await;
    let finished = queue(&env, CP[1]).await;
    let st = status(&env).await;
    host_commands(&env);
    // Each of its three attempts would time out at 30 s and the entry fail; the lease deadline
    // passes during the first.
    env.fake.on_host_command("repair0", Err("BMC unreachable"));
    env.fake.host_command_takes("repair0", Duration::from_secs(60));
    env.deadline = LeaseDeadline::until(tokio::time::Instant::now() + Duration::from_secs(10));
    let t0 = tokio::time::Instant::now();
    let err = run(&env, execute(i, 0), &st, None).await.unwrap_err();
    assert_eq!(t0.elapsed(), Duration::from_secs(10), "ended at the deadline");
    let cmd = format!("repair0 --hard {WORKER}");
    let text = crate::error::error_chain(&err);
    assert!(
        text.contains(&format!(
            "{cmd}: killed with its process group, the leadership lease was lost"
        )),
        "{text}"
    );
    let e = stored(&env, i).await.unwrap();
    assert_eq!(
        (e.status, e.step_status),
        (RepairStatus::Processing, RepairStepStatus::Watching),
        "marked before the command, not failed after it"
    );
    assert_eq!(
        host_commands(&env),
        [(cmd, Some(Duration::from_secs(30)))],
        "not retried"
    );
    // A success command likewise: the entry is neither succeeded nor failed.
    env.fake.host_command_takes("notify", Duration::from_secs(60));
    env.deadline = LeaseDeadline::until(tokio::time::Instant::now() + Duration::from_secs(3));
    let finish = OpKind::RepairFinish {
        index: finished,
        address: CP[1].into(),
        succeeded: true,
    };
    let err = run(&env, finish, &st, None).await.unwrap_err();
    assert!(crate::error::error_chain(&err).contains("lease was lost"), "{err:?}");
    assert_eq!(stored(&env, finished).await.unwrap().status, RepairStatus::Queued);
    // Once past the deadline nothing starts.
    let err = run(&env, execute(i, 1), &st, None).await.unwrap_err();
    assert!(
        crate::error::error_chain(&err).contains(&format!("repair1 {WORKER}: not started")),
        "{err:?}"
    );
    assert_eq!(
        host_commands(&env).len(),
        1,
        "only the success command ran: {:?}",
        host_commands(&env)
    );
}

fn drain_start(index: i64) -> OpKind {
    OpKind::RepairDrainStart {
        apiserver: CP[0].into(),
        index,
        address: WORKER.into(),
        nodename: WORKER.into(),
        step: 0,
    }
}

#[tokio::test]
async fn drain_start_cordons_and_evicts_after_a_dry_run() {
    let env = env().await;
    let i = queue(&env, WORKER).await;
    env.fake.add_pod("app", "web", WORKER, "ReplicaSet", "Running", &[]);
    env.fake
        .add_pod("kube-system", "ds", WORKER, "DaemonSet", "Running", &[]);
    let st = status(&env).await;
    env.fake.take_log();
    run(&env, drain_start(i), &st, None).await.unwrap();
    let e = stored(&env, i).await.unwrap();
    assert_eq!(
        (e.status, e.step_status),
        (RepairStatus::Processing, RepairStepStatus::Draining)
    );
    let log = env.fake.take_log();
    let pos = |needle: &str| {
        log.iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} not in {log:#?}"))
    };
    let dry = pos("(dry run)");
    let evict = log
        .iter()
        .position(|l| l.contains("evict app/web") && !l.contains("dry run"))
        .expect("the eviction");
    assert!(log[dry].contains("evict app/web"));
    assert!(dry < pos(&format!("cordon {WORKER}")) && pos(&format!("cordon {WORKER}")) < evict);
    env.fake.with(|w| {
        let n = &w.kube_nodes[WORKER];
        assert!(n.unschedulable);
        assert_eq!(
            n.annotations.get("cke.cybozu.com/reboot").map(String::as_str),
            Some("true")
        );
        assert!(!w.pods.contains_key(&("app".into(), "web".into())), "evicted");
        assert!(
            w.pods.contains_key(&("kube-system".into(), "ds".into())),
            "DaemonSet pods stay"
        );
    });
    // The probe sees the drain complete, and the planner runs the step's command.
    let st = status(&env).await;
    assert!(st.repair_queue.drain_completed.contains(WORKER));
    let plan = decide_ops(
        &env.cluster,
        &st,
        &constraints(&env),
        &PlanInputs::default(),
        Utc::now(),
    );
    let ops: Vec<&OpKind> = plan.ops.iter().map(|p| &p.kind).collect();
    assert!(ops.contains(&&execute(i, 0)), "{plan:#?}");
}

fn constraints(env: &Env) -> Constraints {
    Constraints {
        control_plane_count: env.cluster.control_planes().count() as i64,
        ..Default::default()
    }
}

#[tokio::test]
async fn a_refused_dry_run_backs_off_without_cordoning() {
    let env = env().await;
    let i = queue(&env, WORKER).await;
    env.fake.add_pod("db", "primary", WORKER, "StatefulSet", "Running", &[]);
    env.fake
        .with(|w| w.eviction_refusals.insert(("db".into(), "primary".into()), 1));
    let st = status(&env).await;
    let before = Utc::now() - chrono::Duration::seconds(1);
    run(&env, drain_start(i), &st, None).await.unwrap();
    let e = stored(&env, i).await.unwrap();
    assert_eq!(
        (e.status, e.step_status),
        (RepairStatus::Processing, RepairStepStatus::Waiting)
    );
    assert_eq!(e.drain_backoff_count, 1);
    let (ltt, expire) = (e.last_transition_time.unwrap(), e.drain_backoff_expire.unwrap());
    assert!(ltt >= before);
    let wait = (expire - ltt).num_seconds();
    assert!((300..600).contains(&wait), "300 + rand[0, 300): {wait}");
    let cordoned = env.fake.take_log().iter().any(|l| l.contains("kube cordon"));
    assert!(!cordoned, "no cordon after a failed dry run");
    assert!(env.fake.with(|w| w.pods.contains_key(&("db".into(), "primary".into()))));
    // The next pass skips it while it backs off.
    let p = plan(&env).await;
    assert!(p.ops.is_empty(), "{p:#?}");
}

#[tokio::test]
async fn a_protected_job_pod_backs_off_and_a_timeout_backs_off_again() {
    let env = env().await;
    let i = queue(&env, WORKER).await;
    env.fake
        .add_pod("batch", "nightly", WORKER, "Job", "Running", &[("team", "data")]);
    let st = status(&env).await;
    run(&env, drain_start(i), &st, None).await.unwrap();
    assert_eq!(stored(&env, i).await.unwrap().drain_backoff_count, 1);
    // repair-drain-timeout counts on from the stored count: 300 + rand[0, 600).
    run(
        &env,
        OpKind::RepairDrainTimeout {
            index: i,
            address: WORKER.into(),
        },
        &st,
        None,
    )
    .await
    .unwrap();
    let e = stored(&env, i).await.unwrap();
    assert_eq!(e.drain_backoff_count, 2);
    let wait = (e.drain_backoff_expire.unwrap() - e.last_transition_time.unwrap()).num_seconds();
    assert!((300..900).contains(&wait), "{wait}");
}

#[tokio::test]
async fn dequeue_needs_the_fence() {
    let env = env().await;
    let i = queue(&env, WORKER).await;
    let st = status(&env).await;
    let dequeue = OpKind::RepairDequeue {
        index: i,
        address: WORKER.into(),
    };
    let err = run(&env, dequeue.clone(), &st, None).await.unwrap_err();
    assert!(crate::error::error_chain(&err).contains("fence"), "{err:?}");
    let lost = Fence {
        key: "/cke/leader/gone".into(),
        create_revision: 3,
    };
    assert!(run(&env, dequeue.clone(), &st, Some(lost)).await.is_err());
    assert!(stored(&env, i).await.is_some());
    let f = fence(&env).await;
    run(&env, dequeue, &st, Some(f)).await.unwrap();
    assert!(stored(&env, i).await.is_none());
}

#[tokio::test]
async fn the_probe_runs_health_checks_and_refreshes_nodenames() {
    let mut env = env().await;
    let i = queue(&env, WORKER).await;
    let j = queue(&env, "10.9.9.9").await;
    repairs::update(&*env.storage, j, None, |e| {
        e.nodename = "stale".into();
        e.status = RepairStatus::Succeeded;
        true
    })
    .await
    .unwrap();
    host_commands(&env);
    env.fake.on_host_command(&format!("check {WORKER}"), Ok(" true\n"));
    let st = status(&env).await;
    let q = &st.repair_queue;
    assert!(q.enabled);
    assert_eq!(q.entries[0].nodename, WORKER);
    assert_eq!(q.entries[1].nodename, "", "not a node of the cluster");
    assert_eq!(q.repair_completed.iter().collect::<Vec<_>>(), [WORKER]);
    // Only the unfinished entry is checked, with the default 30 s.
    assert_eq!(
        host_commands(&env),
        [(format!("check {WORKER}"), Some(Duration::from_secs(30)))]
    );
    let p = plan(&env).await;
    assert_eq!(
        p.ops.iter().map(|p| p.kind.clone()).collect::<Vec<_>>(),
        [OpKind::RepairFinish {
            index: i,
            address: WORKER.into(),
            succeeded: true
        }]
    );
    // A failing or silent check is "not healthy"; a disabled queue still reads its entries.
    env.fake.on_host_command(&format!("check {WORKER}"), Err("timeout"));
    repairs::set_enabled(&*env.storage, false).await.unwrap();
    let st = status(&env).await;
    assert!(!st.repair_queue.enabled);
    assert!(st.repair_queue.repair_completed.is_empty());
    assert_eq!(st.repair_queue.entries.len(), 2);
    // No health check declared: not healthy, nothing run.
    env.cluster.repair.as_mut().unwrap().repair_procedures[0].repair_operations[0]
        .health_check_command
        .clear();
    host_commands(&env);
    assert!(status(&env).await.repair_queue.repair_completed.is_empty());
    assert!(host_commands(&env).is_empty());
}
