//! Every operator against the fake infrastructure ([`crate::infra::fake`]): the commands it records
//! and the side effects it causes, in order; what happens when a command fails halfway (the error
//! names the command, the node and the cause, nothing after it runs); and what the planner plans
//! next from the world that failure left.

use std::sync::Arc;

use super::*;
use crate::infra::fake::Fake;
use crate::model::{Cluster, ClusterStatus, Node, Phase};
use crate::planner::{decide_ops, PlanInputs, PlannedOp};
use crate::storage::Storage;

pub(super) const CP: [&str; 3] = ["10.0.0.1", "10.0.0.2", "10.0.0.3"];
pub(super) const WORKER: &str = "10.0.0.4";

pub(super) fn cluster() -> Cluster {
    let mut nodes: Vec<Node> = CP.iter().map(|a| Node::new(a, "core", true)).collect();
    nodes[0].hostname = "node1".into();
    nodes.push(Node::new(WORKER, "core", false));
    Cluster::new("t", "10.96.0.0/16", nodes)
}

pub(super) fn cps() -> Vec<String> {
    CP.iter().map(|s| s.to_string()).collect()
}

pub(super) struct Env {
    pub(super) fake: Fake,
    pub(super) cluster: Cluster,
    pub(super) images: Images,
    pub(super) storage: Arc<dyn Storage>,
    pub(super) host: crate::k8s::params::HostSettings,
    /// User resources (`ckecli resource set`) the plans see.
    pub(super) user_resources: Vec<crate::model::ResourceDefinition>,
    /// The static and user resources, as the controller passes them to the operators.
    pub(super) resources: Vec<crate::model::ResourceDefinition>,
    /// The leader's fence the operators get (none by default).
    pub(super) fence: Option<crate::storage::Fence>,
    /// The leader's lease deadline, guarding host commands as in the daemon (none by default).
    pub(super) deadline: crate::storage::LeaseDeadline,
}

impl Env {
    pub(super) async fn new() -> Env {
        Env {
            fake: Fake::new(),
            cluster: cluster(),
            images: Images::default(),
            storage: Fake::storage().await,
            host: Default::default(),
            user_resources: vec![],
            resources: crate::planner::all_resources(&PlanInputs::default()),
            fence: None,
            deadline: crate::storage::LeaseDeadline::unlimited(),
        }
    }

    /// Sets the user resources (and so the resources the operators see).
    pub(super) fn set_user_resources(&mut self, user: Vec<crate::model::ResourceDefinition>) {
        self.user_resources = user;
        self.resources = crate::planner::all_resources(&self.inputs());
    }

    pub(super) fn inputs(&self) -> PlanInputs {
        PlanInputs {
            images: self.images.clone(),
            etcd_bootstrapped_before: self.fake.with(|w| !w.etcd.members.is_empty()),
            resources: self.user_resources.clone(),
            ..Default::default()
        }
    }

    pub(super) fn ctx<'a>(&'a self, status: &'a ClusterStatus) -> OpContext<'a> {
        OpContext {
            cluster: &self.cluster,
            images: &self.images,
            status,
            host: &self.host,
            resources: &self.resources,
        }
    }

    pub(super) fn infra(&self) -> Infra {
        let mut infra = self.fake.infra(&self.cluster, self.storage.clone());
        infra.fence = self.fence.clone();
        infra.commands = Arc::new(crate::infra::term_guard::GuardedCommands::new(
            infra.commands,
            self.deadline.clone(),
        ));
        infra
    }

    /// Runs `kind`'s operator as the controller does; returns the recorded commands
    /// (`name target`) and the first error.
    pub(super) async fn run(&self, kind: OpKind) -> (Vec<String>, Result<(), CommandError>) {
        let planned = PlannedOp::new(kind, "test");
        let status = self.status();
        let mut op = operator_for(&planned, self.ctx(&status));
        assert_eq!(op.name(), planned.name());
        assert_eq!(op.targets(), planned.targets());
        let infra = self.infra();
        let mut recorded = Vec::new();
        while let Some(cmd) = op.next_command() {
            // A step over several nodes is recorded node by node, in the order of its parts.
            recorded.extend(cmd.parts().iter().map(|r| format!("{} {}", r.name, r.target)));
            match cmd.run(&infra).await {
                Ok(outcome) => op.command_done(outcome),
                Err(e) => return (recorded, Err(e)),
            }
        }
        (recorded, Ok(()))
    }

    pub(super) async fn run_ok(&self, kind: OpKind) -> Vec<String> {
        let (cmds, r) = self.run(kind).await;
        if let Err(e) = r {
            panic!("{}\ncommands: {cmds:#?}", crate::error::error_chain(&e));
        }
        cmds
    }

    pub(super) fn status(&self) -> ClusterStatus {
        self.fake.status(&self.cluster)
    }

    /// The plan the next pass makes from the fake world.
    pub(super) fn next_plan(&self) -> crate::planner::Plan {
        let constraints = crate::model::Constraints {
            control_plane_count: self.cluster.control_planes().count() as i64,
            ..Default::default()
        };
        decide_ops(
            &self.cluster,
            &self.status(),
            &constraints,
            &self.inputs(),
            chrono::Utc::now(),
        )
    }

    /// Runs plans until the next one's first operation is `name` (rivers restarts after a change
    /// of the control plane, say); returns that operation, not run.
    pub(super) async fn run_until(&self, name: &str) -> PlannedOp {
        for _ in 0..6 {
            let plan = self.next_plan();
            match plan.ops.first() {
                Some(p) if p.name() == name => return p.clone(),
                Some(_) => {
                    for p in plan.ops {
                        self.run_ok(p.kind).await;
                    }
                }
                None => panic!("no {name} planned: {plan:?}"),
            }
        }
        panic!("no {name} planned after six passes");
    }

    /// Runs plans until the phase is `completed` (at most `limit` operations).
    pub(super) async fn converge(&self, limit: usize) -> Vec<&'static str> {
        let mut names = Vec::new();
        for _ in 0..limit {
            let plan = self.next_plan();
            if plan.phase == Phase::Completed {
                return names;
            }
            assert!(!plan.ops.is_empty(), "stuck in {} ({})", plan.phase, plan.note);
            for p in plan.ops {
                names.push(p.name());
                self.run_ok(p.kind).await;
            }
        }
        panic!("no convergence after {limit} operations: {names:?}");
    }
}

pub(super) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

pub(super) fn nodes(v: &[&str]) -> Vec<String> {
    strings(v)
}

#[tokio::test]
async fn rivers_start_on_each_node_in_turn_with_the_computed_params() {
    let env = Env::new().await;
    let all = nodes(&[CP[0], CP[1], CP[2], WORKER]);
    let cmds = env.run_ok(OpKind::RiversBootstrap { nodes: all.clone() }).await;
    let want: Vec<String> = all.iter().map(|a| format!("run-container {a}")).collect();
    assert_eq!(cmds, want);
    let log = env.fake.take_log();
    assert_eq!(log, all.iter().map(|a| format!("{a}: run rivers")).collect::<Vec<_>>());
    // The planner sees them current: etcd-rivers is next.
    let plan = env.next_plan();
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    assert_eq!(plan.ops[0].name(), "etcd-rivers-bootstrap");
    let spec = env.fake.with(|w| w.nodes[WORKER].containers["rivers"].0.clone());
    assert_eq!(spec.image, env.images.tools);
    assert!(
        spec.command.contains(&"--listen=127.0.0.1:16443".to_string()),
        "{:?}",
        spec.command
    );
    assert!(spec
        .command
        .contains(&"--upstreams=10.0.0.1:6443,10.0.0.2:6443,10.0.0.3:6443".to_string()));
    // Replaced as CKE's restart does it: killed, not drained with its port closed.
    assert_eq!(spec.replace, crate::infra::agent::container::Replace::Kill);
    // Nothing ran the image before: the run checks it (and pulls it when missing).
    assert!(!spec.image_present);
}

#[tokio::test]
async fn a_restart_over_a_container_of_the_same_image_skips_the_image_check() {
    let mut env = Env::new().await;
    with_rivers(&env).await;
    // The worker's rivers runs another image (the declaration's changed under it).
    env.fake.with(|w| {
        let c = w.nodes.get_mut(WORKER).unwrap().containers.get_mut("rivers").unwrap();
        c.0.image = "localhost/cke-tools:old".into();
    });
    env.cluster.options.rivers.extra_args = vec!["--dial-timeout=5s".into()];
    let all = nodes(&[CP[0], CP[1], CP[2], WORKER]);
    env.run_ok(OpKind::RiversRestart { nodes: all }).await;
    let present = |a: &str| env.fake.with(|w| w.nodes[a].containers["rivers"].0.image_present);
    assert!(present(CP[0]) && present(CP[2]));
    assert!(!present(WORKER), "a container of another image proves nothing");
    env.run_ok(OpKind::EtcdRiversRestart { nodes: cps() }).await;
    assert!(env
        .fake
        .with(|w| w.nodes[CP[1]].containers["etcd-rivers"].0.image_present));
}

#[tokio::test]
async fn rivers_failing_on_one_node_leave_the_rest_to_the_next_pass() {
    let env = Env::new().await;
    env.fake.fail_once("10.0.0.2: run rivers");
    let all = nodes(&[CP[0], CP[1], CP[2], WORKER]);
    let (cmds, r) = env.run(OpKind::RiversBootstrap { nodes: all }).await;
    // One step on every node: the failure of one fails the step, with every node's result.
    assert_eq!(
        cmds,
        strings(&[
            "run-container 10.0.0.1",
            "run-container 10.0.0.2",
            "run-container 10.0.0.3",
            "run-container 10.0.0.4"
        ])
    );
    let e = r.unwrap_err();
    assert_eq!(
        (e.command.as_str(), e.target.as_str()),
        ("run-container", "10.0.0.1, 10.0.0.2, 10.0.0.3 and 1 more")
    );
    assert_eq!(e.retry, crate::error::Retry::Soon);
    assert!(crate::error::error_chain(&e).contains("injected failure"), "{e:?}");
    let results = crate::op::common::step_results(&e).expect("every node's result");
    assert_eq!(results.succeeded, [CP[0], CP[2], WORKER]);
    assert_eq!(results.failed.keys().collect::<Vec<_>>(), [CP[1]]);
    // The next pass starts rivers where it is missing, and only there.
    let plan = env.next_plan();
    assert_eq!(plan.phase, Phase::Rivers);
    assert_eq!(plan.ops[0].kind, OpKind::RiversBootstrap { nodes: nodes(&[CP[1]]) });
}

pub(super) async fn with_rivers(env: &Env) {
    let all = nodes(&[CP[0], CP[1], CP[2], WORKER]);
    env.run_ok(OpKind::RiversBootstrap { nodes: all }).await;
    env.run_ok(OpKind::EtcdRiversBootstrap { nodes: cps() }).await;
    env.fake.take_log();
}

#[tokio::test]
async fn etcd_bootstrap_prepares_every_node_before_starting_any_member() {
    let env = Env::new().await;
    with_rivers(&env).await;
    let cmds = env.run_ok(OpKind::EtcdBootstrap { nodes: cps() }).await;
    let mut want = Vec::new();
    for c in ["write-certificates", "create-volume", "run-container"] {
        for a in CP {
            want.push(format!("{c} {a}"));
        }
    }
    want.push(format!("wait-etcd {}", CP.join(",")));
    want.push(format!("setup-etcd-auth {}", CP.join(",")));
    for a in CP {
        want.push(format!("mark-member {a}"));
    }
    assert_eq!(cmds, want);
    env.fake.with(|w| {
        // Certificates as CKE names them, keys private.
        let f = &w.nodes["10.0.0.1"].files;
        assert_eq!(f["/etc/etcd/pki/server.crt"], (b"CERT server node1".to_vec(), 0o644));
        assert_eq!(f["/etc/etcd/pki/server.key"].1, 0o600);
        assert_eq!(f["/etc/etcd/pki/peer.key"].1, 0o600);
        assert_eq!(f["/etc/etcd/pki/ca-client.crt"].0, b"CA etcd-client".to_vec());
        assert_eq!(f["/etc/etcd/pki/ca-peer.crt"].0, b"CA etcd-peer".to_vec());
        let r = &w.issued[0];
        assert_eq!((r.ca.as_str(), r.common_name.as_str()), ("server", "node1"));
        assert_eq!(r.ip_sans, ["10.0.0.1", "127.0.0.1"]);
        assert_eq!(w.etcd.members.len(), 3);
        assert!(w.etcd.auth);
        let spec = &w.nodes["10.0.0.2"].containers["etcd"].0;
        assert_eq!(spec.replace, crate::infra::agent::container::Replace::Stop, "the member hands over");
        assert!(spec.command.contains(&"--initial-cluster-state=new".to_string()));
        assert!(spec.command.contains(
            &"--initial-cluster=10.0.0.1=https://10.0.0.1:2380,10.0.0.2=https://10.0.0.2:2380,10.0.0.3=https://10.0.0.3:2380"
                .to_string()
        ));
    });
    // Kubernetes starts next (CKE's order: k8s-start before etcd maintenance).
    let plan = env.next_plan();
    assert_eq!(plan.phase, Phase::K8sStart, "{plan:?}");
    assert_eq!(plan.ops[0].name(), "kube-apiserver-restart");
}

#[tokio::test]
async fn an_etcd_bootstrap_cut_short_is_run_again_over_the_same_nodes() {
    let env = Env::new().await;
    with_rivers(&env).await;
    env.fake.fail_once("10.0.0.3: run etcd");
    let (cmds, r) = env.run(OpKind::EtcdBootstrap { nodes: cps() }).await;
    assert_eq!(cmds.last().unwrap(), "run-container 10.0.0.3");
    let e = r.unwrap_err();
    let results = crate::op::common::step_results(&e).expect("every node's result");
    assert_eq!(results.failed.keys().collect::<Vec<_>>(), ["10.0.0.3"]);
    // Two of the three members run, the third never started; nothing was marked. The two form a
    // healthy cluster: the planner marks them and joins the third, never bootstrapping anew.
    let plan = env.next_plan();
    assert_ne!(plan.phase, Phase::EtcdBoot, "{plan:?}");
    let names = env.converge(20).await;
    assert!(!names.contains(&"etcd-bootstrap"), "{names:?}");
    env.fake.with(|w| {
        assert_eq!(w.etcd.members.len(), 3, "{:?}", w.etcd.members);
        assert!(w.etcd.members.iter().all(|m| !m.is_learner && !m.name.is_empty()));
    });
}

/// rivers, the managed etcd, and Kubernetes on top, converged.
async fn with_etcd(env: &Env) {
    with_rivers(env).await;
    env.run_ok(OpKind::EtcdBootstrap { nodes: cps() }).await;
    env.converge(10).await;
    env.fake.take_log();
}

#[tokio::test]
async fn etcd_start_restarts_stopped_members_with_their_data() {
    let env = Env::new().await;
    with_etcd(&env).await;
    env.fake.crash("10.0.0.2", "etcd");
    let plan = env.next_plan();
    assert_eq!(
        plan.ops[0].kind,
        OpKind::EtcdStart {
            nodes: nodes(&["10.0.0.2"])
        }
    );
    let cmds = env.run_ok(plan.ops[0].kind.clone()).await;
    assert_eq!(
        cmds,
        strings(&["write-certificates 10.0.0.2", "run-container 10.0.0.2"])
    );
    let spec = env.fake.with(|w| w.nodes["10.0.0.2"].containers["etcd"].0.clone());
    assert!(
        !spec.command.iter().any(|a| a.starts_with("--initial-cluster")),
        "a started member has its data: {:?}",
        spec.command
    );
    assert_eq!(env.next_plan().phase, Phase::Completed);
}

#[tokio::test]
async fn etcd_wait_fails_soon_while_the_cluster_has_no_quorum() {
    let env = Env::new().await;
    with_etcd(&env).await;
    env.fake.crash("10.0.0.1", "etcd");
    env.fake.crash("10.0.0.2", "etcd");
    tokio::time::pause();
    let (cmds, r) = env.run(OpKind::EtcdWaitCluster { nodes: cps() }).await;
    assert_eq!(cmds, strings(&["wait-etcd 10.0.0.1,10.0.0.2,10.0.0.3"]));
    let e = r.unwrap_err();
    assert_eq!(e.retry, crate::error::Retry::Soon);
    assert!(crate::error::error_chain(&e).contains("not healthy after 60s"), "{e:?}");
}

#[tokio::test]
async fn a_join_adds_a_learner_starts_it_with_the_members_then_promotes_and_marks_it() {
    let env = Env::new().await;
    with_etcd(&env).await;
    // Declare the worker a control plane: the planner joins it.
    let mut env = env;
    env.cluster.nodes[3].control_plane = true;
    let join = env.run_until("etcd-add-member").await;
    assert_eq!(
        join.kind,
        OpKind::EtcdAddMember {
            node: WORKER.into(),
            replace: None
        }
    );
    env.fake.take_log();
    let cmds = env.run_ok(join.kind).await;
    assert_eq!(
        cmds,
        strings(&[
            "destroy-etcd 10.0.0.4",
            "write-certificates 10.0.0.4",
            "create-volume 10.0.0.4",
            "add-learner 10.0.0.4",
            "run-container 10.0.0.4",
            "promote-member 10.0.0.4",
            "mark-member 10.0.0.4",
        ])
    );
    env.fake.with(|w| {
        let m = w.etcd.members.iter().find(|m| m.name == WORKER).expect("joined");
        assert!(!m.is_learner, "promoted");
        let spec = &w.nodes[WORKER].containers["etcd"].0;
        assert!(spec.command.contains(&"--initial-cluster-state=existing".to_string()));
        let initial = spec
            .command
            .iter()
            .find(|a| a.starts_with("--initial-cluster="))
            .unwrap();
        for a in CP.iter().chain([&WORKER]) {
            assert!(initial.contains(&format!("{a}=https://{a}:2380")), "{initial}");
        }
        assert!(w.log.iter().any(|l| l.starts_with("etcd promote ")));
    });
    // The new control plane (its apiserver started on the way) joins the cke-etcd endpoints and
    // its Node gets the master label; nothing else is left.
    let names = env.converge(8).await;
    assert_eq!(
        names,
        [
            "update-cke-etcd-endpoints",
            "update-cke-etcd-endpointslice",
            "update-node"
        ],
        "{names:?}"
    );
}

#[tokio::test]
async fn a_join_cut_short_after_the_learner_was_added_is_finished_by_the_next_passes() {
    let env = Env::new().await;
    with_etcd(&env).await;
    let mut env = env;
    env.cluster.nodes[3].control_plane = true;
    env.run_until("etcd-add-member").await;
    env.fake.fail_once("10.0.0.4: run etcd");
    let (cmds, r) = env
        .run(OpKind::EtcdAddMember {
            node: WORKER.into(),
            replace: None,
        })
        .await;
    assert_eq!(cmds.last().unwrap(), "run-container 10.0.0.4");
    assert_eq!(r.unwrap_err().target, WORKER);
    // An unstarted learner is registered: quorum is untouched (3 voters of 3 running).
    env.fake.with(|w| {
        assert!(w.etcd_healthy());
        assert!(w.etcd.members.iter().any(|m| m.is_learner && m.name.is_empty()));
    });
    let names = env.converge(6).await;
    assert!(names.contains(&"etcd-add-member"), "{names:?}");
    env.fake.with(|w| {
        assert_eq!(w.etcd.members.len(), 4, "{:?}", w.etcd.members);
        assert!(w.etcd.members.iter().all(|m| !m.is_learner && !m.name.is_empty()));
    });
}

#[tokio::test]
async fn a_join_never_wipes_a_started_member() {
    let env = Env::new().await;
    with_etcd(&env).await;
    let (cmds, r) = env
        .run(OpKind::EtcdAddMember {
            node: "10.0.0.2".into(),
            replace: None,
        })
        .await;
    assert_eq!(cmds, strings(&["destroy-etcd 10.0.0.2"]));
    let e = r.unwrap_err();
    assert_eq!(e.retry, crate::error::Retry::AfterChange);
    assert!(e.source.to_string().contains("refusing to wipe"), "{e:?}");
    env.fake.with(|w| {
        assert!(w.nodes["10.0.0.2"].containers.contains_key("etcd"));
        assert!(!w.log.iter().any(|l| l.contains("10.0.0.2: remove")));
    });
}

#[tokio::test]
async fn removing_and_destroying_members() {
    let env = Env::new().await;
    with_etcd(&env).await;
    let id = env.fake.with(|w| w.etcd.members[2].id);
    let cmds = env
        .run_ok(OpKind::EtcdRemoveMember {
            node: "10.0.0.3".into(),
            id,
        })
        .await;
    assert_eq!(cmds, strings(&["remove-member 10.0.0.3"]));
    env.fake.with(|w| assert_eq!(w.etcd.members.len(), 2));

    let env = Env::new().await;
    with_etcd(&env).await;
    let id = env.fake.with(|w| w.etcd.members[2].id);
    let cmds = env
        .run_ok(OpKind::EtcdDestroyMember {
            node: "10.0.0.3".into(),
            id: Some(id),
        })
        .await;
    assert_eq!(cmds, strings(&["remove-member 10.0.0.3", "destroy-etcd 10.0.0.3"]));
    env.fake.with(|w| {
        let n = &w.nodes["10.0.0.3"];
        assert!(!n.containers.contains_key("etcd"));
        assert!(n.volumes.is_empty(), "{:?}", n.volumes);
        assert!(
            n.files.keys().all(|p| !p.starts_with("/etc/etcd/pki")),
            "{:?}",
            n.files.keys()
        );
        assert_eq!(w.etcd.members.len(), 2);
    });
}

#[tokio::test]
async fn a_destroy_cut_short_after_the_removal_leaves_the_wipe_to_the_next_pass() {
    let env = Env::new().await;
    with_etcd(&env).await;
    let mut env = env;
    env.cluster.nodes[2].control_plane = false;
    let destroy = env.run_until("etcd-destroy-member").await;
    let id = env.fake.with(|w| w.etcd.members[2].id);
    assert_eq!(
        destroy.kind,
        OpKind::EtcdDestroyMember {
            node: "10.0.0.3".into(),
            id: Some(id)
        }
    );
    env.fake.fail_once("10.0.0.3: remove etcd");
    let (cmds, r) = env
        .run(OpKind::EtcdDestroyMember {
            node: "10.0.0.3".into(),
            id: Some(id),
        })
        .await;
    assert_eq!(cmds, strings(&["remove-member 10.0.0.3", "destroy-etcd 10.0.0.3"]));
    assert!(r.is_err());
    // The member is gone from the cluster but its container and data stay on the node: the
    // planner must not count it, and the cluster is good with two members.
    env.fake.with(|w| assert_eq!(w.etcd.members.len(), 2));
    let plan = env.next_plan();
    assert!(
        plan.ops
            .iter()
            .all(|p| !p.changes_membership() || p.targets() != ["10.0.0.3"]),
        "{plan:?}"
    );
    // What the removal left on the node is wiped by the next pass, without a membership change.
    let wipe = env.run_until("etcd-destroy-member").await;
    assert_eq!(
        wipe.kind,
        OpKind::EtcdDestroyMember {
            node: "10.0.0.3".into(),
            id: None
        }
    );
    assert!(!wipe.changes_membership());
    let cmds = env.run_ok(wipe.kind).await;
    assert_eq!(cmds, strings(&["destroy-etcd 10.0.0.3"]));
    env.fake.with(|w| {
        let n = &w.nodes["10.0.0.3"];
        assert!(!n.containers.contains_key("etcd"));
        assert!(n.volumes.is_empty(), "{:?}", n.volumes);
        assert_eq!(w.etcd.members.len(), 2);
    });
    let plan = env.next_plan();
    assert!(
        plan.ops
            .iter()
            .all(|p| !p.name().starts_with("etcd") || !p.targets().contains(&"10.0.0.3".to_string())),
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_wipe_without_a_member_id_never_wipes_a_member() {
    let env = Env::new().await;
    with_etcd(&env).await;
    let (cmds, r) = env
        .run(OpKind::EtcdDestroyMember {
            node: "10.0.0.3".into(),
            id: None,
        })
        .await;
    assert_eq!(cmds, strings(&["destroy-etcd 10.0.0.3"]));
    let e = r.unwrap_err();
    assert_eq!(e.retry, crate::error::Retry::AfterChange);
    assert!(e.source.to_string().contains("refusing to wipe"), "{e:?}");
    env.fake.with(|w| {
        let n = &w.nodes["10.0.0.3"];
        assert!(n.containers.contains_key("etcd"));
        assert!(n.volumes.contains(crate::topology::ETCD_ADDED_MEMBER_VOLUME));
        assert_eq!(w.etcd.members.len(), 3);
    });
}

#[tokio::test]
async fn upgrade_marks_the_named_nodes_then_hands_the_config_version_to_the_fenced_write() {
    let env = Env::new().await;
    with_etcd(&env).await;
    let marker = crate::topology::ETCD_ADDED_MEMBER_VOLUME;
    env.fake.with(|w| {
        for a in &CP[..2] {
            w.nodes.get_mut(*a).unwrap().volumes.remove(marker);
        }
    });
    // The planner, with CKE's "1", names the two members' nodes that lack the marker.
    let constraints = crate::model::Constraints {
        control_plane_count: 3,
        ..Default::default()
    };
    let inputs = PlanInputs {
        config_version: "1".into(),
        ..env.inputs()
    };
    let plan = decide_ops(&env.cluster, &env.status(), &constraints, &inputs, chrono::Utc::now());
    assert_eq!(plan.phase, Phase::Upgrade);
    assert_eq!(
        plan.ops[0].kind,
        OpKind::Upgrade {
            from: "1".into(),
            nodes: nodes(&CP[..2])
        }
    );
    let status = env.status();
    let mut op = operator_for(&plan.ops[0], env.ctx(&status));
    let infra = env.infra();
    let (mut recorded, mut last) = (vec![], None);
    while let Some(cmd) = op.next_command() {
        let r = cmd.command();
        recorded.push(format!("{} {}", r.name, r.target));
        let outcome = cmd.run(&infra).await.unwrap();
        last = Some(outcome.clone());
        op.command_done(outcome);
    }
    assert_eq!(
        recorded,
        strings(&[
            "mark-member 10.0.0.1",
            "mark-member 10.0.0.2",
            "upgrade-version-from-1-to-2 config-version"
        ])
    );
    // The command writes nothing itself: the controller makes the write, fenced, with its record.
    assert_eq!(
        last,
        Some(Outcome::Fenced(vec![crate::storage::Write::Put(
            crate::storage::KEY_CONFIG_VERSION.into(),
            b"2".to_vec()
        )]))
    );
    assert!(env
        .storage
        .get_raw(crate::storage::KEY_CONFIG_VERSION)
        .await
        .unwrap()
        .is_none());
    env.fake
        .with(|w| assert!(CP.iter().all(|a| w.nodes[*a].volumes.contains(marker))));
}

#[tokio::test]
async fn promote_and_mark() {
    let env = Env::new().await;
    with_etcd(&env).await;
    let id = env.fake.with(|w| {
        let m = &mut w.etcd.members[1];
        m.is_learner = true;
        m.id
    });
    let cmds = env
        .run_ok(OpKind::EtcdPromoteMember {
            node: "10.0.0.2".into(),
            id,
        })
        .await;
    assert_eq!(cmds, strings(&["promote-member 10.0.0.2", "mark-member 10.0.0.2"]));
    env.fake.with(|w| assert!(!w.etcd.members[1].is_learner));

    env.fake.with(|w| {
        w.nodes.get_mut("10.0.0.1").unwrap().volumes.remove("etcd-added-member");
        w.etcd.auth = false;
    });
    let cmds = env
        .run_ok(OpKind::EtcdMarkMember {
            nodes: nodes(&["10.0.0.1"]),
        })
        .await;
    assert_eq!(cmds, strings(&["setup-etcd-auth 10.0.0.1", "mark-member 10.0.0.1"]));
    env.fake.with(|w| {
        assert!(w.etcd.auth, "marking completes an interrupted bootstrap's auth set-up");
        assert!(w.nodes["10.0.0.1"].volumes.contains("etcd-added-member"));
    });
}

#[tokio::test]
async fn restart_runs_the_new_params_and_waits_until_in_sync() {
    let env = Env::new().await;
    with_etcd(&env).await;
    let mut env = env;
    env.cluster
        .options
        .etcd
        .extra_args
        .push("--quota-backend-bytes=8589934592".into());
    let plan = env.next_plan();
    assert_eq!(plan.phase, Phase::EtcdMaintain);
    assert_eq!(plan.ops.len(), 1, "one member at a time: {plan:?}");
    let OpKind::EtcdRestart { node } = plan.ops[0].kind.clone() else {
        panic!("{plan:?}")
    };
    let cmds = env.run_ok(plan.ops[0].kind.clone()).await;
    assert_eq!(
        cmds,
        [
            format!("write-certificates {node}"),
            format!("run-container {node}"),
            format!("wait-in-sync {node}"),
        ]
    );
    let spec = env.fake.with(|w| w.nodes[&node].containers["etcd"].0.clone());
    assert!(spec.command.contains(&"--quota-backend-bytes=8589934592".to_string()));
    // The others follow, one per pass.
    let names = env.converge(5).await;
    assert_eq!(names, ["etcd-restart", "etcd-restart"]);
}

#[tokio::test]
async fn a_vault_that_is_not_set_up_is_a_refusal_not_a_transient_failure() {
    let env = Env::new().await;
    let mut infra = env.infra();
    infra.issuer = Arc::new(crate::infra::NoIssuer);
    let status = env.status();
    let mut op = operator_for(
        &PlannedOp::new(OpKind::EtcdStart { nodes: cps() }, "t"),
        env.ctx(&status),
    );
    let cmd = op.next_command().unwrap();
    let e = cmd.run(&infra).await.unwrap_err();
    assert_eq!(e.retry, crate::error::Retry::AfterChange);
    assert!(
        crate::error::error_chain(&e).contains("Vault is not configured"),
        "{e:?}"
    );
    assert!(env.fake.take_log().is_empty(), "nothing was written");
}

/// The operations that bring a declared cluster up from nothing, in order.
pub(crate) const BOOTSTRAP: [&str; 24] = [
    "rivers-bootstrap",
    "etcd-rivers-bootstrap",
    "etcd-bootstrap",
    // Every apiserver together, then (all healthy) the other components in one pass.
    "kube-apiserver-restart",
    // The kubernetes endpoints list them before anything else (CKE's masterEndpointOps).
    "create-kubernetes-endpoints",
    "create-kubernetes-endpointslice",
    "kube-controller-manager-bootstrap",
    "kube-scheduler-bootstrap",
    "kubelet-bootstrap",
    "kube-proxy-bootstrap",
    // With the controller-manager's ServiceAccount there, the objects of k8s-maintain: cke's nine
    // static resources, the cluster DNS configuration (the node DNS one waits for the cluster-dns
    // Service's ClusterIP, which the fake does not allocate), the etcd endpoints, and the
    // registered Nodes' attributes (the control planes' master label).
    "resource-apply",
    "resource-apply",
    "resource-apply",
    "resource-apply",
    "resource-apply",
    "resource-apply",
    "resource-apply",
    "resource-apply",
    "resource-apply",
    "create-cluster-dns-configmap",
    "create-etcd-service",
    "create-cke-etcd-endpoints",
    "create-cke-etcd-endpointslice",
    "update-node",
];

#[tokio::test]
async fn from_nothing_to_a_running_cluster() {
    let env = Env::new().await;
    let names = env.converge(10).await;
    assert_eq!(names, BOOTSTRAP);
}
