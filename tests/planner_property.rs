//! Planner property test: over random declarations and random node/etcd states, apply each planned
//! operation's effect to a simulated cluster (sometimes crashing half-way through a join) and check
//! that the plan converges to the declaration and that no step leaves fewer than a quorum of voting
//! members running. The states include members that never joined (added as voters or learners,
//! never started, their container stopped, running with flags that never join, or still catching
//! up), an older `config-version`, and a node that is away (unreachable) for a while: no operation
//! but a membership removal may target it, and once it is back nothing of etcd is left on it unless
//! it is a control plane.

use std::collections::{BTreeMap, BTreeSet};

use cke::model::*;
use cke::planner::params::*;
use cke::planner::*;
use proptest::prelude::*;

const POOL: usize = 7;

fn addr(i: usize) -> String {
    format!("10.0.0.{}", i + 1)
}

fn node(i: usize, cp: bool) -> Node {
    Node::new(&addr(i), "core", cp)
}

#[derive(Debug, Clone)]
struct Member {
    id: u64,
    started: bool,
    learner: bool,
}

/// The simulated world: per-node containers and volumes, and the etcd membership.
#[derive(Debug, Clone)]
struct World {
    reachable: BTreeSet<usize>,
    running: BTreeSet<usize>,
    has_data: BTreeSet<usize>,
    marked: BTreeSet<usize>,
    outdated: BTreeSet<usize>,
    rivers_current: bool,
    /// Nodes where stop-control-plane stopped etcd-rivers.
    etcd_rivers_stopped: BTreeSet<usize>,
    members: BTreeMap<usize, Member>,
    next_id: u64,
    /// Members that run but lag behind (slow disk) until `lag_steps` plans have passed.
    lagging: BTreeSet<usize>,
    lag_steps: usize,
    /// Learners (by id) whose container runs while they catch up: they get their name (start)
    /// once `lag_steps` plans have passed.
    catching_up: BTreeSet<u64>,
    /// Nodes unreachable until `away_steps` plans have passed (their members are not in sync).
    away: BTreeSet<usize>,
    away_steps: usize,
    /// The management etcd's `config-version`.
    config_version: String,
}

impl World {
    fn voting(&self) -> usize {
        self.members.values().filter(|m| !m.learner).count()
    }

    fn in_sync(&self, i: &usize) -> bool {
        self.members.get(i).is_some_and(|m| m.started)
            && self.running.contains(i)
            && !self.lagging.contains(i)
            && self.reachable.contains(i)
    }

    /// Voting members that run and are in sync: the "healthy endpoints" quorum is counted on.
    fn running_voting(&self) -> usize {
        self.members
            .iter()
            .filter(|(i, m)| !m.learner && self.in_sync(i))
            .count()
    }

    fn tick(&mut self) {
        if self.lag_steps == 0 {
            self.lagging.clear();
            let catching_up = std::mem::take(&mut self.catching_up);
            for (i, m) in self.members.iter_mut() {
                if catching_up.contains(&m.id) && self.running.contains(i) {
                    m.started = true;
                }
            }
        } else {
            self.lag_steps -= 1;
        }
        if self.away_steps == 0 {
            self.reachable.extend(std::mem::take(&mut self.away));
        } else {
            self.away_steps -= 1;
        }
    }

    fn healthy(&self) -> bool {
        self.voting() > 0 && self.running_voting() > self.voting() / 2
    }

    fn status(&self, cluster: &Cluster, images: &Images) -> ClusterStatus {
        let cps: Vec<&Node> = cluster.control_planes().collect();
        let rivers = rivers_builtin_params(&cps, API_SERVER_PORT, RIVERS_LISTEN_PORT);
        let etcd_rivers = rivers_builtin_params(&cps, ETCD_CLIENT_PORT, ETCD_RIVERS_LISTEN_PORT);
        let svc = |builtin: ServiceParams, extra: ServiceParams, image: &str| ServiceStatus {
            exists: true,
            running: true,
            image: image.into(),
            params: Some(ContainerParams { builtin, extra }),
        };
        let mut st = ClusterStatus::default();
        for i in 0..POOL {
            let n = cluster.node(&addr(i)).cloned().unwrap_or_else(|| node(i, true));
            if !self.reachable.contains(&i) {
                // The probe reports nothing else of a node it cannot reach.
                st.nodes.insert(
                    addr(i),
                    NodeStatus {
                        ssh_connected: false,
                        ssh_error: "unreachable (simulated)".into(),
                        ..Default::default()
                    },
                );
                continue;
            }
            let mut ns = NodeStatus {
                ssh_connected: true,
                ..Default::default()
            };
            // Kubernetes is as declared (this simulation is about the managed etcd): every component
            // of the node's declared role runs current and healthy.
            let inputs = PlanInputs::default();
            let kube = |c: cke::k8s::params::Component| {
                if cluster
                    .node(&addr(i))
                    .is_some_and(|d| d.control_plane || !c.is_control_plane())
                {
                    current_component(cluster, &inputs, c, &n).unwrap()
                } else {
                    Default::default()
                }
            };
            use cke::k8s::params::Component as K;
            ns.kube_apiserver = kube(K::ApiServer);
            ns.kube_controller_manager = kube(K::ControllerManager);
            ns.kube_scheduler = kube(K::Scheduler);
            ns.kubelet = kube(K::Kubelet);
            ns.kube_proxy = kube(K::Proxy);
            if self.rivers_current {
                ns.rivers = svc(rivers.clone(), cluster.options.rivers.clone(), &images.tools);
                if !self.etcd_rivers_stopped.contains(&i) {
                    ns.etcd_rivers = svc(etcd_rivers.clone(), cluster.options.etcd_rivers.clone(), &images.tools);
                }
            }
            let mut extra = cluster.options.etcd.service_params();
            if self.outdated.contains(&i) {
                extra.extra_args.push("--old-flag".into());
            }
            ns.etcd = EtcdNodeStatus {
                service: ServiceStatus {
                    exists: self.has_data.contains(&i),
                    running: self.running.contains(&i),
                    image: images.etcd.clone(),
                    params: Some(ContainerParams {
                        builtin: etcd_builtin_params(&n, cluster.options.etcd.volume(), None),
                        extra,
                    }),
                },
                has_data: self.has_data.contains(&i),
                is_added_member: self.marked.contains(&i),
            };
            st.nodes.insert(addr(i), ns);
        }
        st.etcd.is_healthy = self.healthy();
        for (i, m) in &self.members {
            let name = if m.started { addr(*i) } else { String::new() };
            st.etcd.members.insert(
                addr(*i),
                EtcdMember {
                    id: m.id,
                    name,
                    is_learner: m.learner,
                },
            );
            if st.etcd.is_healthy && self.in_sync(i) {
                st.etcd.in_sync_members.insert(addr(*i));
            }
        }
        st
    }

    fn index(a: &str) -> usize {
        a.trim_start_matches("10.0.0.").parse::<usize>().unwrap() - 1
    }

    /// A planned removal: only on a healthy cluster, only of the member the plan names.
    fn remove_member(&mut self, op: &PlannedOp, node: &str, id: u64) -> usize {
        assert!(
            self.healthy(),
            "membership change planned on an unhealthy cluster: {op:?}"
        );
        let i = Self::index(node);
        assert_eq!(self.members.get(&i).map(|m| m.id), Some(id));
        self.members.remove(&i);
        i
    }

    /// The node loses its etcd container, data and marker; it must be reachable.
    fn wipe(&mut self, i: usize) {
        assert!(self.reachable.contains(&i), "{} wiped while unreachable", addr(i));
        self.running.remove(&i);
        self.has_data.remove(&i);
        self.marked.remove(&i);
    }

    /// Applies an operation; `crash_at` stops an add-member join after that many steps (1-3).
    fn apply(&mut self, op: &PlannedOp, crash_at: Option<u8>) {
        // Only a membership removal goes through the other members; everything else needs SSH.
        if !matches!(
            op.kind,
            OpKind::EtcdRemoveMember { .. } | OpKind::EtcdWaitCluster { .. }
        ) {
            for t in op.targets() {
                assert!(
                    self.reachable.contains(&Self::index(&t)),
                    "{op:?} targets the unreachable {t}"
                );
            }
        }
        match &op.kind {
            OpKind::Upgrade { nodes, .. } => {
                for a in nodes {
                    let i = Self::index(a);
                    assert!(
                        self.has_data.contains(&i) && self.members.get(&i).is_some_and(|m| m.started),
                        "upgrade marks {a}, which holds no started member's data"
                    );
                    self.marked.insert(i);
                }
                self.config_version = CONFIG_VERSION.into();
            }
            OpKind::RiversBootstrap { .. }
            | OpKind::RiversRestart { .. }
            | OpKind::EtcdRiversBootstrap { .. }
            | OpKind::EtcdRiversRestart { .. } => self.rivers_current = true,
            // Kubernetes components: the status reports them as declared already.
            OpKind::KubeApiserverRestart { .. }
            | OpKind::KubeControllerManagerBootstrap { .. }
            | OpKind::KubeControllerManagerRestart { .. }
            | OpKind::KubeSchedulerBootstrap { .. }
            | OpKind::KubeSchedulerRestart { .. }
            | OpKind::KubeletBootstrap { .. }
            | OpKind::KubeletRestart { .. }
            | OpKind::KubeProxyBootstrap { .. }
            | OpKind::KubeProxyRestart { .. }
            | OpKind::StopKubeProxy { .. }
            | OpKind::StopKubeApiserver { .. }
            | OpKind::StopKubeControllerManager { .. }
            | OpKind::StopKubeScheduler { .. }
            | OpKind::UpdateNode { .. }
            | OpKind::WaitKubernetes { .. }
            | OpKind::KubeObject { .. }
            | OpKind::RemoveNode { .. }
            | OpKind::ResourceApply { .. } => {}
            // The simulated reboot queue stays empty.
            OpKind::RebootDrainStart { .. }
            | OpKind::RebootDrainTimeout { .. }
            | OpKind::RebootDeleteDaemonsetPod { .. }
            | OpKind::RebootReboot { .. }
            | OpKind::RebootDequeue { .. }
            | OpKind::RebootCancel { .. }
            | OpKind::RebootUncordon { .. } => unreachable!("no reboot queue entry in this simulation"),
            // The simulated repair queue stays empty.
            OpKind::RepairDrainStart { .. }
            | OpKind::RepairExecute { .. }
            | OpKind::RepairFinish { .. }
            | OpKind::RepairDequeue { .. }
            | OpKind::RepairDrainTimeout { .. } => unreachable!("no repair queue entry in this simulation"),
            OpKind::StopEtcdRivers { nodes } => {
                for a in nodes {
                    self.etcd_rivers_stopped.insert(Self::index(a));
                }
            }
            OpKind::StopEtcd { nodes } => {
                for a in nodes {
                    self.running.remove(&Self::index(a));
                }
            }
            OpKind::EtcdBootstrap { nodes } => {
                for a in nodes {
                    let i = Self::index(a);
                    self.has_data.insert(i);
                    self.running.insert(i);
                    self.marked.insert(i);
                    self.next_id += 1;
                    self.members.insert(
                        i,
                        Member {
                            id: self.next_id,
                            started: true,
                            learner: false,
                        },
                    );
                }
            }
            OpKind::EtcdStart { nodes } => {
                for a in nodes {
                    self.running.insert(Self::index(a));
                }
            }
            OpKind::EtcdWaitCluster { .. } => {}
            OpKind::EtcdRemoveMember { node, id } => {
                self.remove_member(op, node, *id);
            }
            OpKind::EtcdDestroyMember { node, id: Some(id) } => {
                let i = self.remove_member(op, node, *id);
                self.wipe(i);
            }
            OpKind::EtcdDestroyMember { node, id: None } => {
                let i = Self::index(node);
                assert!(!self.members.contains_key(&i), "{node} wiped while a member: {op:?}");
                self.wipe(i);
            }
            OpKind::EtcdAddMember { node, replace } => {
                let i = match replace {
                    Some(id) => self.remove_member(op, node, *id),
                    None => {
                        assert!(
                            self.healthy(),
                            "membership change planned on an unhealthy cluster: {op:?}"
                        );
                        Self::index(node)
                    }
                };
                // As the operator does: stale etcd state on the node goes before the join.
                self.wipe(i);
                self.next_id += 1;
                self.members.insert(
                    i,
                    Member {
                        id: self.next_id,
                        started: false,
                        learner: true,
                    },
                );
                if crash_at == Some(1) {
                    return;
                }
                self.has_data.insert(i);
                self.running.insert(i);
                self.members.get_mut(&i).unwrap().started = true;
                if crash_at == Some(2) {
                    return;
                }
                self.members.get_mut(&i).unwrap().learner = false;
                if crash_at == Some(3) {
                    return;
                }
                self.marked.insert(i);
            }
            OpKind::EtcdPromoteMember { node, .. } => {
                assert!(self.healthy());
                self.members.get_mut(&Self::index(node)).unwrap().learner = false;
            }
            OpKind::EtcdMarkMember { nodes } => {
                for a in nodes {
                    self.marked.insert(Self::index(a));
                }
            }
            OpKind::EtcdRestart { node } => {
                let i = Self::index(node);
                // While it restarts the member is down: the rest must hold quorum.
                self.running.remove(&i);
                // Clusters of one or two voting members cannot keep quorum through any restart.
                let tolerant = self.voting() >= 3;
                assert!(self.healthy() || !tolerant, "restart of {node} would lose quorum");
                self.running.insert(i);
                self.outdated.remove(&i);
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    declared_cp: BTreeSet<usize>,
    declared_workers: BTreeSet<usize>,
    world: World,
    crashes: Vec<Option<u8>>,
}

/// A join interrupted before this leader took over (a member that never joined, or not fully).
#[derive(Debug, Clone, Copy)]
enum Half {
    /// A learner that started (its container runs) but was never promoted.
    StartedLearner,
    /// A learner registered, its container never started (a crash right after the add).
    UnstartedLearner,
    /// A learner whose container runs while it catches up: it starts after the lag.
    CatchingUpLearner,
    /// A voter registered (CKE adds voters), its container never started.
    UnstartedVoter,
    /// A voter registered whose container runs with flags that never join it (CKE's add started
    /// it with a wrong initial cluster, say): it never starts.
    WrongFlagsVoter,
}

fn half() -> impl Strategy<Value = Half> {
    prop_oneof![
        Just(Half::StartedLearner),
        Just(Half::UnstartedLearner),
        Just(Half::CatchingUpLearner),
        Just(Half::UnstartedVoter),
        Just(Half::WrongFlagsVoter),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            prop::collection::btree_set(0..POOL, 1..=5),
            prop::collection::btree_set(0..POOL, 0..=3),
            prop::option::of(prop::collection::btree_set(0..POOL, 1..=5)),
        ),
        prop::collection::btree_set(0..POOL, 0..=2),
        prop::collection::btree_set(0..POOL, 0..=2),
        any::<bool>(),
        prop::collection::vec(prop::option::of(1u8..=3), 40),
        prop::option::of((0..POOL, half())),
        (prop::collection::btree_set(0..POOL, 0..=1), 0usize..12),
        (prop::option::of((0..POOL, 1usize..8)), any::<bool>(), any::<bool>()),
    )
        .prop_map(
            |(
                (cp, workers, previous),
                stop,
                outdated,
                rivers_current,
                crashes,
                half,
                (lagging, lag_steps),
                (away, old_config, unmarked),
            )| {
                let declared_workers: BTreeSet<usize> = workers.difference(&cp).copied().collect();
                let mut world = World {
                    reachable: (0..POOL).collect(),
                    running: BTreeSet::new(),
                    has_data: BTreeSet::new(),
                    marked: BTreeSet::new(),
                    outdated: BTreeSet::new(),
                    rivers_current,
                    etcd_rivers_stopped: BTreeSet::new(),
                    members: BTreeMap::new(),
                    next_id: 100,
                    lagging: BTreeSet::new(),
                    lag_steps,
                    catching_up: BTreeSet::new(),
                    away: BTreeSet::new(),
                    away_steps: 0,
                    // An older config-version: CKE's "1" (no key), from before the markers.
                    config_version: if old_config { "1".into() } else { CONFIG_VERSION.into() },
                };
                if let Some(prev) = previous {
                    // A running cluster from an earlier declaration; without markers when it
                    // predates them (CKE's config-version "1").
                    for i in &prev {
                        world.has_data.insert(*i);
                        world.running.insert(*i);
                        if !(old_config && unmarked) {
                            world.marked.insert(*i);
                        }
                        world.next_id += 1;
                        world.members.insert(
                            *i,
                            Member {
                                id: world.next_id,
                                started: true,
                                learner: false,
                            },
                        );
                    }
                    // Stop some members, but never so many that quorum is lost (that needs a human).
                    for i in stop {
                        if world.running.remove(&i) && !world.healthy() {
                            world.running.insert(i);
                        }
                    }
                    world.outdated = outdated.intersection(&prev).copied().collect();
                    if let Some((i, kind)) = half {
                        world.half_join(i, kind);
                    }
                }
                // Lag and absence are transient and set last, so that the stops above never cost
                // quorum for good.
                world.lagging = lagging;
                if let Some((i, steps)) = away {
                    world.reachable.remove(&i);
                    world.away.insert(i);
                    world.away_steps = steps;
                }
                Case {
                    declared_cp: cp,
                    declared_workers,
                    world,
                    crashes,
                }
            },
        )
}

impl World {
    /// Leaves a join of node `i` interrupted as `kind` says, unless that would cost quorum (an
    /// unstarted voter counts towards it) or `i` is a member already.
    fn half_join(&mut self, i: usize, kind: Half) {
        if self.members.contains_key(&i) || !self.healthy() {
            return;
        }
        let before = self.clone();
        self.next_id += 1;
        let (started, learner, running) = match kind {
            Half::StartedLearner => (true, true, true),
            Half::UnstartedLearner => (false, true, false),
            Half::CatchingUpLearner => (false, true, true),
            Half::UnstartedVoter => (false, false, false),
            Half::WrongFlagsVoter => (false, false, true),
        };
        self.members.insert(
            i,
            Member {
                id: self.next_id,
                started,
                learner,
            },
        );
        if running {
            self.has_data.insert(i);
            self.running.insert(i);
        }
        if matches!(kind, Half::CatchingUpLearner) {
            self.catching_up.insert(self.next_id);
        }
        if !self.healthy() {
            *self = before;
        }
    }
}

fn cluster_of(case: &Case) -> Cluster {
    let mut nodes: Vec<Node> = case.declared_cp.iter().map(|i| node(*i, true)).collect();
    nodes.extend(case.declared_workers.iter().map(|i| node(*i, false)));
    Cluster::new("p", "10.96.0.0/16", nodes)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn plans_converge_without_losing_quorum(case in case()) {
        let cluster = cluster_of(&case);
        let constraints = Constraints { control_plane_count: case.declared_cp.len() as i64, ..Default::default() };
        let mut world = case.world.clone();
        let mut steps = 0;
        loop {
            let inputs = PlanInputs { config_version: world.config_version.clone(), ..Default::default() };
            let status = world.status(&cluster, &inputs.images);
            let plan = decide_ops(&cluster, &status, &constraints, &inputs, chrono::DateTime::UNIX_EPOCH);
            prop_assert!(plan.ops.iter().filter(|o| o.changes_membership()).count() <= 1, "{plan:?}");
            // Waiting is right while something transient lasts (a lagging member, a learner catching
            // up, a node away); once it is over, an empty plan must be the end.
            let transient = !(world.lagging.is_empty() && world.away.is_empty() && world.catching_up.is_empty());
            if plan.ops.is_empty() && !transient {
                prop_assert_eq!(plan.phase, Phase::Completed, "stuck: {:?}\nworld: {:?}", plan, world);
                break;
            }
            let quorum_before = world.healthy() && world.voting() >= 3;
            for op in &plan.ops {
                world.apply(op, case.crashes[steps % case.crashes.len()]);
            }
            world.tick();
            if quorum_before {
                prop_assert!(world.healthy(), "quorum lost by {:?}\nworld: {:?}", plan, world);
            }
            steps += 1;
            prop_assert!(steps < 60, "no convergence after 60 plans; last {:?}\nworld: {:?}", plan, world);
        }
        // Converged: the members are exactly the declared control planes, voting, running, marked;
        // the config-version is current; no declared worker keeps anything of etcd.
        let members: BTreeSet<usize> = world.members.keys().copied().collect();
        prop_assert_eq!(&members, &case.declared_cp, "world: {:?}", world);
        for i in &case.declared_cp {
            prop_assert!(!world.members[i].learner && world.members[i].started);
            prop_assert!(world.running.contains(i) && world.marked.contains(i));
            prop_assert!(!world.outdated.contains(i));
        }
        for i in &case.declared_workers {
            prop_assert!(
                !world.running.contains(i) && !world.has_data.contains(i) && !world.marked.contains(i),
                "etcd left on worker {}: {:?}", addr(*i), world
            );
            prop_assert!(world.etcd_rivers_stopped.contains(i), "etcd-rivers left on worker {}", addr(*i));
        }
        prop_assert_eq!(world.config_version.as_str(), CONFIG_VERSION);
        prop_assert!(world.rivers_current);
    }

    #[test]
    fn an_unreachable_control_plane_blocks_every_membership_change(case in case(), down in 0..POOL) {
        let cluster = cluster_of(&case);
        let constraints = Constraints { control_plane_count: case.declared_cp.len() as i64, ..Default::default() };
        let mut world = case.world.clone();
        // Only `down` is away, for good.
        world.reachable.extend(std::mem::take(&mut world.away));
        world.reachable.remove(&down);
        let down_is_cp = case.declared_cp.contains(&down);
        for step in 0..30 {
            let inputs = PlanInputs { config_version: world.config_version.clone(), ..Default::default() };
            let status = world.status(&cluster, &inputs.images);
            let plan = decide_ops(&cluster, &status, &constraints, &inputs, chrono::DateTime::UNIX_EPOCH);
            if down_is_cp {
                prop_assert!(!plan.ops.iter().any(|o| o.changes_membership() || matches!(o.kind, OpKind::EtcdBootstrap { .. })),
                    "membership change with {} unreachable: {:?}", addr(down), plan);
            }
            prop_assert!(!plan.ops.iter().any(|o| o.targets().contains(&addr(down)) && !o.changes_membership()
                && !matches!(o.kind, OpKind::EtcdWaitCluster { .. })),
                "an operation targets unreachable {}: {:?}", addr(down), plan);
            if plan.ops.is_empty() { break; }
            for op in &plan.ops {
                world.apply(op, case.crashes[step % case.crashes.len()]);
            }
            world.tick();
        }
    }
}
