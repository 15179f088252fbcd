//! Table tests of the planner with a builder fixture.

use super::*;
use crate::model::*;

pub(crate) struct Fixture {
    pub cluster: Cluster,
    pub status: ClusterStatus,
    pub constraints: Constraints,
    pub inputs: PlanInputs,
}

pub(crate) fn addr(i: usize) -> String {
    format!("10.0.0.{}", i + 1)
}

pub(crate) fn running(image: &str, builtin: ServiceParams, extra: ServiceParams) -> ServiceStatus {
    ServiceStatus {
        exists: true,
        running: true,
        image: image.into(),
        params: Some(ContainerParams { builtin, extra }),
    }
}

impl Fixture {
    /// `cps` control planes then `workers` workers; all reachable with current rivers, no etcd yet.
    pub fn new(cps: usize, workers: usize) -> Self {
        let nodes = (0..cps + workers)
            .map(|i| Node::new(&addr(i), "core", i < cps))
            .collect();
        let cluster = Cluster::new("t", "10.96.0.0/16", nodes);
        let constraints = Constraints {
            control_plane_count: cps as i64,
            ..Default::default()
        };
        let mut f = Fixture {
            cluster,
            status: ClusterStatus::default(),
            constraints,
            inputs: PlanInputs::default(),
        };
        for i in 0..cps + workers {
            f.status.nodes.insert(
                addr(i),
                NodeStatus {
                    ssh_connected: true,
                    ..Default::default()
                },
            );
        }
        f.refresh_rivers();
        f.refresh_kube();
        f
    }

    /// Makes every Kubernetes component current and healthy (kube-proxy only when enabled), and
    /// registers every node.
    pub fn refresh_kube(&mut self) {
        use crate::k8s::params::Component;
        for n in self.cluster.nodes.clone() {
            let st = self.status.nodes.entry(n.address.clone()).or_default();
            for c in Component::ALL {
                let want = (!c.is_control_plane() || n.control_plane)
                    && !(c == Component::Proxy && self.cluster.options.kube_proxy.disable);
                let v = if want {
                    current_component(&self.cluster, &self.inputs, c, &n).expect("a usable declaration")
                } else {
                    Default::default()
                };
                match c {
                    Component::ApiServer => st.kube_apiserver = v,
                    Component::ControllerManager => st.kube_controller_manager = v,
                    Component::Scheduler => st.kube_scheduler = v,
                    Component::Kubelet => st.kubelet = v,
                    Component::Proxy => st.kube_proxy = v,
                }
            }
        }
        self.status.kubernetes.api_read = true;
        self.status.kubernetes.nodes = self
            .cluster
            .nodes
            .iter()
            .map(|n| crate::k8s::node::as_kept(n, self.cluster.taint_control_plane))
            .collect();
        self.refresh_kube_objects();
    }

    /// Makes the objects cke keeps through the API as the current declaration wants them: the
    /// control plane ready, `default/kubernetes` listing every control plane ready, the etcd
    /// Service and endpoints.
    pub fn refresh_kube_objects(&mut self) {
        let mut status = std::mem::take(&mut self.status);
        crate::planner::as_kept(&self.cluster, &self.inputs, &mut status);
        // The fixture's apiservers are all healthy: every control plane ready.
        self.status = status;
    }

    /// Makes rivers and etcd-rivers current on every node.
    pub fn refresh_rivers(&mut self) {
        let cps: Vec<&Node> = self.cluster.control_planes().collect();
        let r = rivers_builtin_params(&cps, API_SERVER_PORT, RIVERS_LISTEN_PORT);
        let er = rivers_builtin_params(&cps, ETCD_CLIENT_PORT, ETCD_RIVERS_LISTEN_PORT);
        let tools = self.inputs.images.tools.clone();
        for n in &self.cluster.nodes {
            let st = self.status.nodes.entry(n.address.clone()).or_default();
            st.rivers = running(&tools, r.clone(), self.cluster.options.rivers.clone());
            if n.control_plane {
                st.etcd_rivers = running(&tools, er.clone(), self.cluster.options.etcd_rivers.clone());
            }
        }
    }

    /// A healthy, fully marked member on every control-plane node.
    pub fn with_healthy_etcd(mut self) -> Self {
        let cps: Vec<Node> = self.cluster.control_planes().cloned().collect();
        for (i, n) in cps.iter().enumerate() {
            self.set_member(&n.address, i as u64 + 1, false);
        }
        self.status.etcd.is_healthy = true;
        self
    }

    /// A running, marked, in-sync member on `address`.
    pub fn set_member(&mut self, address: &str, id: u64, learner: bool) {
        let node = self
            .cluster
            .node(address)
            .cloned()
            .unwrap_or(Node::new(address, "core", true));
        let st = self.status.nodes.entry(address.to_string()).or_insert(NodeStatus {
            ssh_connected: true,
            ..Default::default()
        });
        st.etcd = EtcdNodeStatus {
            service: running(
                &self.inputs.images.etcd,
                etcd_builtin_params(&node, self.cluster.options.etcd.volume(), None),
                self.cluster.options.etcd.service_params(),
            ),
            has_data: true,
            is_added_member: true,
        };
        self.status.etcd.members.insert(
            address.into(),
            EtcdMember {
                id,
                name: address.into(),
                is_learner: learner,
            },
        );
        self.status.etcd.in_sync_members.insert(address.into());
    }

    pub fn with_ssh_down(mut self, idx: &[usize]) -> Self {
        for i in idx {
            self.status.nodes.get_mut(&addr(*i)).unwrap().ssh_connected = false;
        }
        self
    }

    pub fn plan(&self) -> Plan {
        decide_ops(
            &self.cluster,
            &self.status,
            &self.constraints,
            &self.inputs,
            chrono::DateTime::UNIX_EPOCH,
        )
    }
}

fn kinds(p: &Plan) -> Vec<OpKind> {
    p.ops.iter().map(|o| o.kind.clone()).collect()
}

#[test]
fn fresh_cluster_boots_rivers_then_etcd() {
    let mut f = Fixture::new(3, 2);
    for st in f.status.nodes.values_mut() {
        st.rivers = ServiceStatus::default();
        st.etcd_rivers = ServiceStatus::default();
    }
    let p = f.plan();
    assert_eq!(p.phase, Phase::Rivers);
    assert_eq!(
        kinds(&p),
        vec![
            OpKind::RiversBootstrap {
                nodes: (0..5).map(addr).collect()
            },
            OpKind::EtcdRiversBootstrap {
                nodes: (0..3).map(addr).collect()
            },
        ]
    );
    f.refresh_rivers();
    let p = f.plan();
    assert_eq!(
        (p.phase, kinds(&p)),
        (
            Phase::EtcdBoot,
            vec![OpKind::EtcdBootstrap {
                nodes: (0..3).map(addr).collect()
            }]
        )
    );
}

#[test]
fn rivers_change_in_batches_of_max_concurrent_updates_one_pass_each() {
    let mut f = Fixture::new(3, 22).with_healthy_etcd();
    for st in f.status.nodes.values_mut() {
        st.rivers = ServiceStatus::default();
    }
    // Each pass starts the next ten (CKE's default), re-planning from what the probe then sees.
    let mut batches = vec![];
    loop {
        let p = f.plan();
        if p.phase != Phase::Rivers {
            break;
        }
        let [OpKind::RiversBootstrap { nodes }] = &kinds(&p)[..] else {
            panic!("{p:?}");
        };
        assert!(nodes.len() <= DEFAULT_MAX_CONCURRENT_UPDATES, "{nodes:?}");
        let cps: Vec<Node> = f.cluster.control_planes().cloned().collect();
        let cps: Vec<&Node> = cps.iter().collect();
        for a in nodes {
            let st = f.status.nodes.get_mut(a).unwrap();
            st.rivers = running(
                &f.inputs.images.tools,
                rivers_builtin_params(&cps, API_SERVER_PORT, RIVERS_LISTEN_PORT),
                Default::default(),
            );
        }
        batches.push(nodes.len());
    }
    assert_eq!(batches, [10, 10, 5]);
    assert_eq!(f.plan().phase, Phase::Completed);
}

#[test]
fn outdated_rivers_restart_when_control_planes_change() {
    let mut f = Fixture::new(3, 1).with_healthy_etcd();
    assert_eq!(f.plan().phase, Phase::Completed);
    f.cluster.options.rivers.extra_args = vec!["--dial-timeout=3s".into()];
    let p = f.plan();
    assert_eq!(
        kinds(&p),
        vec![OpKind::RiversRestart {
            nodes: (0..4).map(addr).collect()
        }]
    );
    f.refresh_rivers();
    f.status.nodes.get_mut(&addr(1)).unwrap().etcd_rivers.image = "old".into();
    assert_eq!(
        kinds(&f.plan()),
        vec![OpKind::EtcdRiversRestart { nodes: vec![addr(1)] }]
    );
}

#[test]
fn bootstrap_needs_every_control_plane() {
    let f = Fixture::new(3, 1).with_ssh_down(&[2]);
    let p = f.plan();
    assert_eq!(p.phase, Phase::EtcdBootAborted);
    assert!(p.ops.is_empty());
    assert!(p.note.contains(&addr(2)), "{}", p.note);
    // An unreachable worker does not block bootstrap.
    let p = Fixture::new(3, 1).with_ssh_down(&[3]).plan();
    assert_eq!(p.phase, Phase::EtcdBoot);
}

#[test]
fn constraint_violation_does_nothing() {
    let mut f = Fixture::new(3, 0);
    f.constraints.control_plane_count = 5;
    let p = f.plan();
    assert_eq!(p.phase, Phase::ConstraintsViolated);
    assert!(p.ops.is_empty());
    assert!(p.note.contains("control-plane-count"));
}

#[test]
fn stopped_members_start_then_wait_for_health() {
    let mut f = Fixture::new(3, 0).with_healthy_etcd();
    for i in [0, 1] {
        f.status.nodes.get_mut(&addr(i)).unwrap().etcd.service.running = false;
        f.status.etcd.in_sync_members.remove(&addr(i));
    }
    f.status.etcd.is_healthy = false;
    let p = f.plan();
    assert_eq!(
        (p.phase, kinds(&p)),
        (
            Phase::EtcdStart,
            vec![OpKind::EtcdStart {
                nodes: vec![addr(0), addr(1)]
            }]
        )
    );
    for i in [0, 1] {
        f.status.nodes.get_mut(&addr(i)).unwrap().etcd.service.running = true;
    }
    let p = f.plan();
    assert_eq!(p.phase, Phase::EtcdWait);
    assert_eq!(
        kinds(&p),
        vec![OpKind::EtcdWaitCluster {
            nodes: (0..3).map(addr).collect()
        }]
    );
}

#[test]
fn a_half_added_member_is_never_started_but_re_added() {
    let mut f = Fixture::new(3, 0).with_healthy_etcd();
    // Node 3 joined the member list but its container never ran and it was never marked.
    let st = f.status.nodes.get_mut(&addr(2)).unwrap();
    st.etcd.service.running = false;
    st.etcd.is_added_member = false;
    f.status.etcd.members.get_mut(&addr(2)).unwrap().name.clear();
    f.status.etcd.in_sync_members.remove(&addr(2));
    let p = f.plan();
    assert_eq!(p.phase, Phase::EtcdMaintain);
    assert_eq!(
        kinds(&p),
        vec![OpKind::EtcdAddMember {
            node: addr(2),
            replace: Some(3)
        }]
    );
}

#[test]
fn an_in_sync_member_is_never_half_added_whatever_its_node_reports() {
    // The node reports no container and no marker (say the engine answered wrongly), but the member
    // is in sync: nothing is removed or wiped.
    let mut f = Fixture::new(3, 0).with_healthy_etcd();
    let st = f.status.nodes.get_mut(&addr(2)).unwrap();
    st.etcd.service.running = false;
    st.etcd.is_added_member = false;
    let p = f.plan();
    assert!(
        p.ops.iter().all(|o| !o.changes_membership()),
        "an in-sync member must not be re-added: {:?}",
        kinds(&p)
    );
}

#[test]
fn scale_up_adds_one_learner_at_a_time_and_promotes() {
    let mut f = Fixture::new(5, 0);
    f.status.etcd.is_healthy = true;
    for i in 0..3 {
        f.set_member(&addr(i), i as u64 + 1, false);
    }
    let p = f.plan();
    assert_eq!(
        kinds(&p),
        vec![OpKind::EtcdAddMember {
            node: addr(3),
            replace: None
        }]
    );
    assert!(p.ops[0].changes_membership());
    // Crash after the learner started and caught up: the next plan promotes it before adding more.
    f.set_member(&addr(3), 4, true);
    f.status.nodes.get_mut(&addr(3)).unwrap().etcd.is_added_member = false;
    assert_eq!(
        kinds(&f.plan()),
        vec![OpKind::EtcdPromoteMember { node: addr(3), id: 4 }]
    );
    // A learner still catching up blocks further changes.
    f.status.etcd.in_sync_members.remove(&addr(3));
    assert!(f.plan().ops.is_empty());
    // Promoted but not marked: mark it.
    f.status.etcd.in_sync_members.insert(addr(3));
    f.status.etcd.members.get_mut(&addr(3)).unwrap().is_learner = false;
    assert_eq!(kinds(&f.plan()), vec![OpKind::EtcdMarkMember { nodes: vec![addr(3)] }]);
}

#[test]
fn removal_and_demotion_one_at_a_time() {
    let mut f = Fixture::new(3, 1).with_healthy_etcd();
    // An undeclared member (node left the declaration) and a member on a node demoted to worker.
    f.set_member("10.0.9.9", 9, false);
    f.set_member(&addr(3), 4, false);
    let p = f.plan();
    assert_eq!(
        kinds(&p),
        vec![OpKind::EtcdRemoveMember {
            node: "10.0.9.9".into(),
            id: 9
        }]
    );
    f.status.etcd.members.remove("10.0.9.9");
    f.status.etcd.in_sync_members.remove("10.0.9.9");
    assert_eq!(
        kinds(&f.plan()),
        vec![OpKind::EtcdDestroyMember {
            node: addr(3),
            id: Some(4)
        }]
    );
    // Dead undeclared members go first, even before the health gate.
    f.set_member("10.0.9.8", 8, false);
    f.status.etcd.in_sync_members.remove("10.0.9.8");
    assert_eq!(
        kinds(&f.plan()),
        vec![OpKind::EtcdRemoveMember {
            node: "10.0.9.8".into(),
            id: 8
        }]
    );
}

#[test]
fn outdated_members_restart_only_with_quorum() {
    let mut f = Fixture::new(3, 0).with_healthy_etcd();
    f.cluster.options.etcd.extra_args = vec!["--quota-backend-bytes=1000000".into()];
    assert_eq!(kinds(&f.plan()), vec![OpKind::EtcdRestart { node: addr(0) }]);
    // --initial-* arguments are ignored.
    let mut g = Fixture::new(3, 0).with_healthy_etcd();
    let st = g.status.nodes.get_mut(&addr(0)).unwrap();
    st.etcd
        .service
        .params
        .as_mut()
        .unwrap()
        .builtin
        .extra_args
        .push("--initial-cluster-state=new".into());
    assert_eq!(g.plan().phase, Phase::Completed);
    // A new image is outdated too.
    g.inputs.images.etcd = "localhost/cke-etcd:next".into();
    assert_eq!(kinds(&g.plan()), vec![OpKind::EtcdRestart { node: addr(0) }]);

    // With one of three members out of sync, etcd is not good: no restart.
    f.status.etcd.in_sync_members.remove(&addr(2));
    assert!(f.plan().ops.is_empty());
    let nf_status = f.status.clone();
    let nf = NodeFilter::new(&f.cluster, &nf_status, &f.inputs);
    assert!(!nf.etcd_restart_keeps_quorum(&addr(0)));
    assert!(nf.etcd_restart_keeps_quorum(&addr(2)));
}

#[test]
fn unreachable_control_plane_blocks_membership_changes() {
    // Four declared control planes, three members: node 4 should join, but node 2 is unreachable.
    let mut f = Fixture::new(4, 0);
    f.status.etcd.is_healthy = true;
    for i in 0..3 {
        f.set_member(&addr(i), i as u64 + 1, false);
    }
    let f = f.with_ssh_down(&[1]);
    let p = f.plan();
    assert!(p.ops.is_empty(), "{p:?}");
    assert!(p.note.contains(&addr(1)));

    // Once an unreachable node leaves the declaration, its member is removed.
    let mut g = Fixture::new(4, 0).with_healthy_etcd().with_ssh_down(&[1]);
    assert!(g.plan().ops.is_empty());
    g.cluster.nodes.retain(|n| n.address != addr(1));
    g.constraints.control_plane_count = 3;
    // rivers follows the new control-plane list first.
    assert_eq!(g.plan().phase, Phase::Rivers);
    g.refresh_rivers();
    // The kubernetes endpoints follow it too (k8s-start, before etcd maintenance).
    let p = g.plan();
    assert_eq!(p.phase, Phase::K8sStart);
    assert_eq!(
        p.ops.iter().map(|o| o.name()).collect::<Vec<_>>(),
        ["update-kubernetes-endpoints", "update-kubernetes-endpointslice"]
    );
    g.refresh_kube_objects();
    let p = g.plan();
    assert_eq!(kinds(&p), vec![OpKind::EtcdRemoveMember { node: addr(1), id: 2 }]);
}

#[test]
fn plans_serialise_for_status_and_preview() {
    let p = Fixture::new(3, 0).plan();
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["phase"], "etcd-boot");
    assert_eq!(v["ops"][0]["operation"], "etcd-bootstrap");
    assert_eq!(v["ops"][0]["nodes"][0], "10.0.0.1");
    assert!(v["ops"][0]["reason"].as_str().unwrap().contains("etcd data"));
    assert_eq!(p.ops[0].name(), "etcd-bootstrap");
}

#[test]
fn a_managed_etcd_seen_before_is_never_bootstrapped_anew() {
    // Every control-plane node is new and no member answers, but the management etcd says the
    // managed etcd ran: no bootstrap of an empty cluster.
    let mut f = Fixture::new(3, 0);
    f.inputs.etcd_bootstrapped_before = true;
    let p = f.plan();
    assert_eq!(p.phase, Phase::EtcdBootAborted);
    assert!(p.ops.is_empty());
    assert!(p.note.contains("etcd-bootstrapped"), "{}", p.note);
    // Without the record, the same state bootstraps.
    f.inputs.etcd_bootstrapped_before = false;
    assert_eq!(f.plan().phase, Phase::EtcdBoot);
}

#[test]
fn data_on_a_former_control_plane_node_prevents_a_new_bootstrap() {
    // The control plane moved from node 0 (now a worker, holding the data) to node 1.
    let mut f = Fixture::new(2, 0);
    f.cluster.nodes[0].control_plane = false;
    f.constraints.control_plane_count = 1;
    f.refresh_rivers();
    let st = f.status.nodes.get_mut(&addr(0)).unwrap();
    st.etcd.has_data = true;
    st.etcd.is_added_member = true;
    let p = f.plan();
    assert!(
        !kinds(&p).iter().any(|k| matches!(k, OpKind::EtcdBootstrap { .. })),
        "{:?}",
        kinds(&p)
    );
}

#[test]
fn a_changed_volume_name_never_restarts_members_onto_empty_volumes() {
    let mut f = Fixture::new(3, 0).with_healthy_etcd();
    assert_eq!(f.plan().phase, Phase::Completed);
    // The declaration names another volume: the probe finds none of that name on any node.
    f.cluster.options.etcd.volume_name = "etcd-other".into();
    for st in f.status.nodes.values_mut() {
        st.etcd.has_data = false;
    }
    let p = f.plan();
    assert!(p.ops.is_empty(), "{:?}", kinds(&p));
    assert!(p.note.contains("etcd-other"), "{}", p.note);
}

#[test]
fn a_bootstrap_interrupted_before_any_member_answered_runs_again() {
    // Data volumes were created, no member was marked or ever answered: bootstrap again (etcd keeps
    // whatever data directory it finds). With the record that the managed etcd ran, it does not.
    let mut f = Fixture::new(3, 0);
    for st in f.status.nodes.values_mut() {
        st.etcd.has_data = true;
    }
    assert_eq!(f.plan().phase, Phase::EtcdBoot);
    f.inputs.etcd_bootstrapped_before = true;
    assert_ne!(f.plan().phase, Phase::EtcdBoot);
    assert_ne!(f.plan().phase, Phase::EtcdBootAborted);
}

#[test]
fn an_interrupted_bootstrap_is_not_repeated_over_other_nodes() {
    // One member ran on node 0 (its container exists, its data is unmarked, no record), then the
    // declaration added nodes 1 and 2: bootstrapping those three could make nodes 1 and 2 a second,
    // empty cluster. It counts as bootstrapped instead.
    let mut f = Fixture::new(3, 0);
    let st = f.status.nodes.get_mut(&addr(0)).unwrap();
    st.etcd.has_data = true;
    st.etcd.service.exists = true;
    assert_ne!(f.plan().phase, Phase::EtcdBoot);
    // Volumes made but no container ever started: bootstrapping is harmless.
    f.status.nodes.get_mut(&addr(0)).unwrap().etcd.service.exists = false;
    assert_eq!(f.plan().phase, Phase::EtcdBoot);
}
