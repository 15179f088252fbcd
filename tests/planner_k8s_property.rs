//! Planner property test for the Kubernetes rules (CKE's k8s-start and stop-control-plane): over
//! random declarations (3-5 control planes, 0-8 workers, perhaps a former control plane) and random
//! component states (stopped, absent, outdated in each way, unhealthy apiservers, unreachable nodes
//! that come back, unregistered kubelets, `in_place_update`, a disabled kube-proxy), plan pass after
//! pass, apply each plan's effect to a simulated cluster, and check:
//!
//! - a plan never restarts a *healthy* apiserver while another apiserver is down (unreachable, not
//!   running or unhealthy), and restarts at most one healthy apiserver; so once every apiserver was
//!   up, never two are down at once (a restarted apiserver is current but down until the pass after);
//! - no controller-manager, scheduler, kubelet or kube-proxy operation while an apiserver is down or
//!   outdated, or a control plane unreachable (the version-skew rule);
//! - kubelet and kube-proxy operations never exceed `max_concurrent_updates` nodes;
//! - no operation targets an unreachable node, and each one has something to do (no bootstrap of a
//!   running component, no restart of a current one);
//! - the simulation converges to `completed` with the declaration in place.
//!
//! The managed etcd stays healthy and in sync throughout (its rules have their own property test).

use std::collections::BTreeSet;

use cke::k8s::params::Component;
use cke::model::*;
use cke::planner::params::*;
use cke::planner::*;
use proptest::prelude::*;

const MAX_NODES: usize = 14;
const OUTDATED_IMAGE: &str = "localhost/cke-outdated:property";
const OUTDATED_ARG: &str = "--outdated-by-property=true";

fn addr(i: usize) -> String {
    format!("10.0.0.{}", i + 1)
}

fn index(a: &str) -> usize {
    a.trim_start_matches("10.0.0.").parse::<usize>().unwrap() - 1
}

/// How a running component differs from the declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stale {
    Image,
    Params,
    Extra,
    /// The running configuration file (scheduler, kubelet, kube-proxy; others get `Params`).
    Config,
    NoParams,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Absent,
    Stopped,
    Running,
}

/// One component on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Comp {
    run: Run,
    stale: Option<Stale>,
    healthy: bool,
    /// Unhealthy now, healthy after this many more passes (`None`: stays as it is).
    heal_in: Option<usize>,
}

impl Comp {
    const ABSENT: Comp = Comp {
        run: Run::Absent,
        stale: None,
        healthy: false,
        heal_in: None,
    };
    const CURRENT: Comp = Comp {
        run: Run::Running,
        stale: None,
        healthy: true,
        heal_in: None,
    };

    fn running(&self) -> bool {
        self.run == Run::Running
    }
}

fn slot(c: Component) -> usize {
    Component::ALL.iter().position(|x| *x == c).unwrap()
}

#[derive(Debug, Clone)]
struct World {
    n_cp: usize,
    n: usize,
    /// A worker that was a control plane and still runs its control-plane containers.
    former: Option<usize>,
    former_etcd: bool,
    former_etcd_rivers: bool,
    comps: Vec<[Comp; 5]>,
    /// Node → passes until SSH reaches it again.
    unreachable: Vec<(usize, usize)>,
    registered: BTreeSet<usize>,
    /// The status reports an unreachable control plane's apiserver health as the API answers
    /// (health is checked over HTTPS, not SSH); else, as CKE's probe, unhealthy.
    health_without_ssh: bool,
}

impl World {
    fn is_cp(&self, i: usize) -> bool {
        i < self.n_cp
    }

    fn reachable(&self, i: usize) -> bool {
        !self.unreachable.iter().any(|(u, _)| *u == i)
    }

    fn comp(&self, i: usize, c: Component) -> &Comp {
        &self.comps[i][slot(c)]
    }

    fn comp_mut(&mut self, i: usize, c: Component) -> &mut Comp {
        &mut self.comps[i][slot(c)]
    }

    /// A control plane whose apiserver serves nothing: unreachable (as far as cke knows), not
    /// running, or unhealthy (restarting).
    fn apiserver_down(&self, i: usize) -> bool {
        let a = self.comp(i, Component::ApiServer);
        !self.reachable(i) || !a.running() || !a.healthy
    }

    fn down_apiservers(&self) -> usize {
        (0..self.n_cp).filter(|i| self.apiserver_down(*i)).count()
    }

    /// Something is still to happen without the planner: an unreachable node comes back, an
    /// apiserver heals.
    fn pending(&self) -> bool {
        !self.unreachable.is_empty() || self.comps.iter().flatten().any(|c| c.heal_in.is_some())
    }

    /// One pass of time: unreachable nodes and unhealthy apiservers approach recovery.
    fn tick(&mut self) {
        for (_, left) in &mut self.unreachable {
            *left -= 1;
        }
        self.unreachable.retain(|(_, left)| *left > 0);
        for c in self.comps.iter_mut().flatten() {
            if let Some(left) = c.heal_in {
                if left <= 1 {
                    c.heal_in = None;
                    c.healthy = true;
                } else {
                    c.heal_in = Some(left - 1);
                }
            }
        }
    }

    fn cluster(&self, in_place_update: bool, proxy_disabled: bool) -> Cluster {
        let nodes = (0..self.n)
            .map(|i| Node::new(&addr(i), "core", self.is_cp(i)))
            .collect();
        let mut c = Cluster::new("p", "10.96.0.0/16", nodes);
        c.options.kubelet.in_place_update = in_place_update;
        c.options.kube_proxy.disable = proxy_disabled;
        c
    }

    fn kube_status(&self, cluster: &Cluster, inputs: &PlanInputs, node: &Node, c: Component) -> KubeComponentStatus {
        let comp = self.comp(index(&node.address), c);
        if comp.run == Run::Absent {
            return KubeComponentStatus::default();
        }
        let mut st = current_component(cluster, inputs, c, node).expect("a usable declaration");
        st.service.running = comp.running();
        st.is_healthy = comp.running() && comp.healthy;
        let p = st.service.params.as_mut().unwrap();
        match comp.stale {
            None => {}
            Some(Stale::Image) => st.service.image = OUTDATED_IMAGE.into(),
            Some(Stale::Params) => p.builtin.extra_args.push(OUTDATED_ARG.into()),
            Some(Stale::Extra) => p.extra.extra_args.push(OUTDATED_ARG.into()),
            Some(Stale::NoParams) => st.service.params = None,
            Some(Stale::Config) => {
                let serde_json::Value::Object(o) = st.config.as_mut().expect("a component with a config file") else {
                    panic!("a config is an object")
                };
                o.insert("outdatedByProperty".into(), serde_json::Value::Bool(true));
            }
        }
        st
    }

    fn status(&self, cluster: &Cluster, inputs: &PlanInputs) -> ClusterStatus {
        let cps: Vec<&Node> = cluster.control_planes().collect();
        let svc = |builtin: ServiceParams, extra: ServiceParams, image: &str| ServiceStatus {
            exists: true,
            running: true,
            image: image.into(),
            params: Some(ContainerParams { builtin, extra }),
        };
        let rivers = rivers_builtin_params(&cps, API_SERVER_PORT, RIVERS_LISTEN_PORT);
        let etcd_rivers = rivers_builtin_params(&cps, ETCD_CLIENT_PORT, ETCD_RIVERS_LISTEN_PORT);
        let images = &inputs.images;
        let mut st = ClusterStatus::default();
        for node in &cluster.nodes {
            let i = index(&node.address);
            if !self.reachable(i) {
                let a = self.comp(i, Component::ApiServer);
                let mut ns = NodeStatus {
                    ssh_error: "unreachable (simulated)".into(),
                    ..Default::default()
                };
                ns.kube_apiserver.is_healthy = self.health_without_ssh && a.running() && a.healthy;
                st.nodes.insert(node.address.clone(), ns);
                continue;
            }
            let mut ns = NodeStatus {
                ssh_connected: true,
                rivers: svc(rivers.clone(), cluster.options.rivers.clone(), &images.tools),
                ..Default::default()
            };
            if node.control_plane || (self.former == Some(i) && self.former_etcd_rivers) {
                ns.etcd_rivers = svc(etcd_rivers.clone(), cluster.options.etcd_rivers.clone(), &images.tools);
            }
            if node.control_plane || (self.former == Some(i) && self.former_etcd) {
                ns.etcd = EtcdNodeStatus {
                    service: svc(
                        etcd_builtin_params(node, cluster.options.etcd.volume(), None),
                        cluster.options.etcd.service_params(),
                        &images.etcd,
                    ),
                    has_data: true,
                    is_added_member: true,
                };
            }
            ns.kube_apiserver = self.kube_status(cluster, inputs, node, Component::ApiServer);
            ns.kube_controller_manager = self.kube_status(cluster, inputs, node, Component::ControllerManager);
            ns.kube_scheduler = self.kube_status(cluster, inputs, node, Component::Scheduler);
            ns.kubelet = self.kube_status(cluster, inputs, node, Component::Kubelet);
            ns.kube_proxy = self.kube_status(cluster, inputs, node, Component::Proxy);
            st.nodes.insert(node.address.clone(), ns);
        }
        st.etcd.is_healthy = true;
        for (k, n) in cps.iter().enumerate() {
            st.etcd.members.insert(
                n.address.clone(),
                EtcdMember {
                    id: k as u64 + 1,
                    name: n.address.clone(),
                    is_learner: false,
                },
            );
            st.etcd.in_sync_members.insert(n.address.clone());
        }
        // The probe reads the API through a reachable control plane whose apiserver answers.
        st.kubernetes.api_read = (0..self.n_cp).any(|i| {
            self.reachable(i)
                && self.comp(i, Component::ApiServer).running()
                && self.comp(i, Component::ApiServer).healthy
        });
        if st.kubernetes.api_read {
            st.kubernetes.nodes = self
                .registered
                .iter()
                // Registered Nodes carry the attributes cke keeps (this simulation is about the
                // components; update-node has its golden cases and operator tests).
                .map(|i| match cluster.node(&addr(*i)) {
                    Some(n) => cke::k8s::node::as_kept(n, cluster.taint_control_plane),
                    None => KubeNode {
                        name: addr(*i),
                        ready: true,
                        ..Default::default()
                    },
                })
                .collect();
            // The objects cke keeps are as it wrote them for this status (this simulation is about
            // the components; the objects have golden cases and operator tests).
            cke::planner::as_kept(cluster, &PlanInputs::default(), &mut st);
        }
        st
    }

    /// Applies one operation, checking that it had something to do in `seen`, the world the plan
    /// was made from (CKE restarts a kubelet that is both unregistered and outdated twice in one
    /// plan; the second restart is judged by what the planner saw).
    fn apply(&mut self, op: &PlannedOp, cluster: &Cluster, seen: &World) -> Result<(), TestCaseError> {
        let o = &cluster.options;
        for a in op.targets() {
            prop_assert!(self.reachable(index(&a)), "{op:?} targets unreachable {a}");
        }
        let kind = &op.kind;
        let start = |w: &mut World, c: Component, nodes: &[String], bootstrap: bool| -> Result<(), TestCaseError> {
            for a in nodes {
                let i = index(a);
                prop_assert!(!c.is_control_plane() || w.is_cp(i), "{kind:?}: {a} is no control plane");
                let before = *seen.comp(i, c);
                if bootstrap {
                    prop_assert!(!before.running(), "{kind:?}: {c:?} on {a} already runs: {before:?}");
                } else if c == Component::Kubelet {
                    prop_assert!(
                        before.running()
                            && (!w.registered.contains(&i) || (before.stale.is_some() && o.kubelet.in_place_update)),
                        "{kind:?}: kubelet on {a} is registered and not to be updated in place: {before:?}"
                    );
                } else if c != Component::ApiServer {
                    prop_assert!(
                        before.running() && before.stale.is_some(),
                        "{kind:?}: {c:?} on {a} is current: {before:?}"
                    );
                } else {
                    prop_assert!(
                        !before.running() || before.stale.is_some(),
                        "{kind:?}: apiserver on {a} runs current: {before:?}"
                    );
                }
                *w.comp_mut(i, c) = if c == Component::ApiServer {
                    // Current, but down until the pass after this one.
                    Comp {
                        healthy: false,
                        heal_in: Some(1),
                        ..Comp::CURRENT
                    }
                } else {
                    Comp::CURRENT
                };
                if c == Component::Kubelet {
                    w.registered.insert(i);
                }
            }
            Ok(())
        };
        let stop = |w: &mut World, c: Component, nodes: &[String]| -> Result<(), TestCaseError> {
            for a in nodes {
                let i = index(a);
                prop_assert!(seen.comp(i, c).running(), "{kind:?}: {c:?} on {a} does not run");
                if c == Component::Proxy {
                    prop_assert!(o.kube_proxy.disable, "{kind:?} with kube-proxy enabled");
                } else {
                    prop_assert!(!w.is_cp(i), "{kind:?}: {a} is a control plane");
                }
                *w.comp_mut(i, c) = Comp::ABSENT;
            }
            Ok(())
        };
        match kind {
            OpKind::KubeApiserverRestart { nodes } => start(self, Component::ApiServer, nodes, false)?,
            OpKind::KubeControllerManagerBootstrap { nodes } => start(self, Component::ControllerManager, nodes, true)?,
            OpKind::KubeControllerManagerRestart { nodes } => start(self, Component::ControllerManager, nodes, false)?,
            OpKind::KubeSchedulerBootstrap { nodes } => start(self, Component::Scheduler, nodes, true)?,
            OpKind::KubeSchedulerRestart { nodes } => start(self, Component::Scheduler, nodes, false)?,
            OpKind::KubeletBootstrap { nodes } => start(self, Component::Kubelet, nodes, true)?,
            OpKind::KubeletRestart { nodes } => start(self, Component::Kubelet, nodes, false)?,
            OpKind::KubeProxyBootstrap { nodes } => {
                prop_assert!(!o.kube_proxy.disable, "{kind:?} with kube-proxy disabled");
                start(self, Component::Proxy, nodes, true)?
            }
            OpKind::KubeProxyRestart { nodes } => {
                prop_assert!(!o.kube_proxy.disable, "{kind:?} with kube-proxy disabled");
                start(self, Component::Proxy, nodes, false)?
            }
            OpKind::StopKubeProxy { nodes } => stop(self, Component::Proxy, nodes)?,
            OpKind::StopKubeApiserver { nodes } => stop(self, Component::ApiServer, nodes)?,
            OpKind::StopKubeControllerManager { nodes } => stop(self, Component::ControllerManager, nodes)?,
            OpKind::StopKubeScheduler { nodes } => stop(self, Component::Scheduler, nodes)?,
            OpKind::StopEtcd { nodes } => {
                prop_assert!(
                    self.former.is_some_and(|f| nodes == &[addr(f)]) && self.former_etcd,
                    "{kind:?}"
                );
                self.former_etcd = false;
            }
            // The former control plane's etcd holds data and the marker, but no member: wiped
            // (container, volumes, certificates) before stop-control-plane would stop it.
            OpKind::EtcdDestroyMember { node, id: None } => {
                prop_assert!(
                    self.former.is_some_and(|f| *node == addr(f)) && self.former_etcd,
                    "{kind:?}"
                );
                self.former_etcd = false;
            }
            OpKind::StopEtcdRivers { nodes } => {
                prop_assert!(
                    self.former.is_some_and(|f| nodes == &[addr(f)]) && self.former_etcd_rivers,
                    "{kind:?}"
                );
                self.former_etcd_rivers = false;
            }
            // The kubernetes endpoints marking the apiserver about to restart not ready (rule 3);
            // the status shows them as kept.
            OpKind::KubeObject {
                object: CkeObject::KubernetesEndpoints | CkeObject::KubernetesEndpointSlice,
                ..
            } => {}
            other => prop_assert!(false, "unexpected operation {other:?} (rivers and etcd are current)"),
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct Case {
    world: World,
    in_place_update: bool,
    proxy_disabled: bool,
    max: usize,
}

/// A component's initial state from a number: mostly current.
fn initial(n: u8, c: Component, sick: Option<usize>) -> Comp {
    let stale = |s: Stale| {
        let s = if s == Stale::Config && matches!(c, Component::ApiServer | Component::ControllerManager) {
            Stale::Params
        } else {
            s
        };
        Comp {
            stale: Some(s),
            ..Comp::CURRENT
        }
    };
    let mut comp = match n {
        0..=4 => Comp::CURRENT,
        5 => Comp {
            run: Run::Stopped,
            healthy: false,
            ..Comp::CURRENT
        },
        6 => Comp::ABSENT,
        7 => stale(Stale::Image),
        8 => stale(Stale::Params),
        9 => stale(Stale::Extra),
        10 => stale(Stale::Config),
        _ => stale(Stale::NoParams),
    };
    // An unhealthy apiserver: a current one heals by itself after a while; an outdated one (a bad
    // configuration) only through a restart.
    if let (Component::ApiServer, Some(passes), Run::Running) = (c, sick, comp.run) {
        comp.healthy = false;
        comp.heal_in = comp.stale.is_none().then_some(passes);
    }
    comp
}

fn case() -> impl Strategy<Value = Case> {
    (
        3usize..=5,
        0usize..=8,
        any::<bool>(),
        prop::collection::vec((0u8..12, 0u8..12, 0u8..12, 0u8..12, 0u8..12), MAX_NODES),
        prop::collection::vec(prop::option::weighted(0.2, 1usize..=3), MAX_NODES),
        prop::collection::vec((0..MAX_NODES, 1usize..=4), 0..=2),
        prop::collection::btree_set(0..MAX_NODES, 0..=4),
        (any::<bool>(), prop::bool::weighted(0.2), 1usize..=4, any::<bool>()),
    )
        .prop_map(
            |(
                n_cp,
                n_w,
                former,
                states,
                sick,
                unreachable,
                unregistered,
                (in_place_update, proxy_disabled, max, health_without_ssh),
            )| {
                let n = n_cp + n_w;
                let former = (former && n_w > 0).then_some(n_cp);
                let comps = (0..n)
                    .map(|i| {
                        let (a, b, c, d, e) = states[i];
                        let mut comps = [a, b, c, d, e];
                        let mut out = [Comp::ABSENT; 5];
                        for (k, comp) in Component::ALL.iter().enumerate() {
                            if comp.is_control_plane() && i >= n_cp {
                                // Only the former control plane still runs them (current for it).
                                comps[k] = if former == Some(i) { 0 } else { 6 };
                            }
                            out[k] = initial(comps[k], *comp, sick[i]);
                        }
                        out
                    })
                    .collect();
                let mut down: Vec<(usize, usize)> = Vec::new();
                for (i, passes) in unreachable {
                    if !down.iter().any(|(u, _)| *u == i % n) {
                        down.push((i % n, passes));
                    }
                }
                let registered = (0..n).filter(|i| !unregistered.contains(i)).collect();
                Case {
                    world: World {
                        n_cp,
                        n,
                        former,
                        former_etcd: former.is_some(),
                        former_etcd_rivers: former.is_some(),
                        comps,
                        unreachable: down,
                        registered,
                        health_without_ssh,
                    },
                    in_place_update,
                    proxy_disabled,
                    max,
                }
            },
        )
}

fn component_op(kind: &OpKind) -> bool {
    matches!(
        kind,
        OpKind::KubeControllerManagerBootstrap { .. }
            | OpKind::KubeControllerManagerRestart { .. }
            | OpKind::KubeSchedulerBootstrap { .. }
            | OpKind::KubeSchedulerRestart { .. }
            | OpKind::KubeletBootstrap { .. }
            | OpKind::KubeletRestart { .. }
            | OpKind::KubeProxyBootstrap { .. }
            | OpKind::KubeProxyRestart { .. }
            | OpKind::StopKubeProxy { .. }
    )
}

fn batched_op(kind: &OpKind) -> Option<&Vec<String>> {
    match kind {
        OpKind::KubeletBootstrap { nodes }
        | OpKind::KubeletRestart { nodes }
        | OpKind::KubeProxyBootstrap { nodes }
        | OpKind::KubeProxyRestart { nodes }
        | OpKind::StopKubeProxy { nodes } => Some(nodes),
        _ => None,
    }
}

/// Runs the simulation; `Err` on the first broken property.
fn simulate(case: &Case) -> Result<World, TestCaseError> {
    let mut world = case.world.clone();
    let cluster = world.cluster(case.in_place_update, case.proxy_disabled);
    let constraints = Constraints {
        control_plane_count: world.n_cp as i64,
        ..Default::default()
    };
    let inputs = PlanInputs {
        max_concurrent_updates: case.max,
        ..Default::default()
    };
    let mut fully_up = false;
    for pass in 0..80 {
        let down = world.down_apiservers();
        fully_up |= down == 0;
        if fully_up {
            prop_assert!(
                down <= 1,
                "pass {pass}: {down} apiservers down after the cluster was up\n{world:?}"
            );
        }
        let status = world.status(&cluster, &inputs);
        let plan = decide_ops(&cluster, &status, &constraints, &inputs, chrono::DateTime::UNIX_EPOCH);
        let ctx = || format!("pass {pass}: {plan:?}\nworld: {world:?}");

        // Apiserver restarts: at most one healthy apiserver, and only while every other one is up.
        let restarted: Vec<usize> = plan
            .ops
            .iter()
            .filter_map(|o| match &o.kind {
                OpKind::KubeApiserverRestart { nodes } => Some(nodes.iter().map(|a| index(a))),
                _ => None,
            })
            .flatten()
            .collect();
        let healthy_restarted: Vec<usize> = restarted
            .iter()
            .copied()
            .filter(|i| !world.apiserver_down(*i))
            .collect();
        prop_assert!(
            healthy_restarted.len() <= 1,
            "two healthy apiservers restarted: {}",
            ctx()
        );
        if let Some(h) = healthy_restarted.first() {
            prop_assert!(
                (0..world.n_cp).all(|i| i == *h || !world.apiserver_down(i)),
                "healthy apiserver {} restarted while another is down: {}",
                addr(*h),
                ctx()
            );
        }
        // The version-skew rule.
        let any_outdated = (0..world.n_cp).any(|i| world.comp(i, Component::ApiServer).stale.is_some());
        if down > 0 || any_outdated {
            prop_assert!(
                !plan.ops.iter().any(|o| component_op(&o.kind)),
                "a component changed while an apiserver is down or outdated: {}",
                ctx()
            );
        }
        for o in &plan.ops {
            if let Some(nodes) = batched_op(&o.kind) {
                prop_assert!(nodes.len() <= case.max, "batch over {}: {}", case.max, ctx());
            }
        }
        if plan.ops.is_empty() {
            prop_assert_eq!(plan.phase, Phase::Completed, "stuck: {}", ctx());
            if !world.pending() {
                prop_assert!(plan.note.is_empty(), "{}", ctx());
                return Ok(world);
            }
        }

        let ctx = ctx();
        let seen = world.clone();
        world.tick();
        for op in &plan.ops {
            world.apply(op, &cluster, &seen)?;
        }
        if down == 0 {
            prop_assert!(world.down_apiservers() <= 1, "two apiservers down after {ctx}");
        }
    }
    Err(TestCaseError::fail(format!(
        "no convergence after 80 passes\nworld: {world:?}"
    )))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn planner_keeps_apiservers_up_and_converges_on_kubernetes(case in case()) {
        let world = simulate(&case)?;
        // Converged: the declaration is in place.
        for i in 0..world.n {
            for c in Component::ALL {
                let comp = world.comp(i, c);
                let wanted = world.is_cp(i) || !c.is_control_plane();
                if c == Component::Proxy && case.proxy_disabled || !wanted {
                    prop_assert!(!comp.running(), "{c:?} still runs on {}: {world:?}", addr(i));
                } else if c == Component::Kubelet && !case.in_place_update {
                    // An outdated kubelet waits for the node's reboot.
                    prop_assert!(comp.running(), "kubelet not running on {}: {world:?}", addr(i));
                } else {
                    prop_assert_eq!(*comp, Comp::CURRENT, "{:?} on {}: {:?}", c, addr(i), world);
                }
            }
            prop_assert!(world.registered.contains(&i), "{} not registered: {world:?}", addr(i));
        }
        prop_assert!(!world.former_etcd && !world.former_etcd_rivers, "{world:?}");
    }
}
