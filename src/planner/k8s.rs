//! CKE's `k8s-start` and `stop-control-plane` rules (`server/strategy.go` apiserverOps, k8sOps,
//! cleanOps). Pure.
//!
//! 1. Stopped apiservers, and outdated apiservers that are also unhealthy, are (re)started together.
//! 2. Else, while a control plane is unreachable over SSH or an apiserver is unhealthy, no component
//!    is touched.
//! 3. Else outdated apiservers restart **one at a time**.
//! 4. Else, with every apiserver current and healthy (the version-skew rule), the other components:
//!    controller-managers and schedulers (all at once), then kubelets and kube-proxies in batches of
//!    `max_concurrent_updates`. An outdated kubelet is restarted only with
//!    `options.kubelet.in_place_update` (else at the node's next reboot: its pods would restart).
//!
//! Each case first brings the `default/kubernetes` Endpoints and EndpointSlice in line (CKE's
//! masterEndpointOps, [`super::k8s_maintain::master_endpoint_ops`]): an apiserver about to be
//! restarted is listed not ready before it goes down, so clients move to the others.

use crate::k8s::params::{self, ClusterInputs, Component};
use crate::k8s::{config, VersionSet};
use crate::model::{Node, OpKind, PlannedOp};

use super::k8s_maintain::master_endpoint_ops;
use super::{NodeFilter, REASON_EXAMPLES};

/// The `k8s-start` operations, or `Err(note)` when nothing may be done for a reason the operator
/// must see (e.g. an unusable Kubernetes image). `Ok(empty)`: nothing to do here.
pub(super) fn k8s_start_ops(nf: &NodeFilter) -> Result<Vec<PlannedOp>, String> {
    let version = nf.kube_version()?;
    let k = Kube { nf, version };

    // 1. Stopped apiservers, and outdated unhealthy ones, together.
    let mut targets = k.stopped(Component::ApiServer);
    for n in k.outdated(Component::ApiServer) {
        if !k.healthy(Component::ApiServer, &n) && !targets.contains(&n) {
            targets.push(n);
        }
    }
    if !targets.is_empty() {
        let reason = format!(
            "kube-apiserver is not running (or outdated and unhealthy) on {}",
            crate::model::few(&targets, REASON_EXAMPLES)
        );
        let mut ops = master_endpoint_ops(nf, &[]);
        ops.push(PlannedOp::new(OpKind::KubeApiserverRestart { nodes: targets }, reason));
        return Ok(ops);
    }

    // 2. Nothing but the endpoints while a control plane is unreachable or an apiserver unhealthy.
    if !nf.unreachable_control_planes().is_empty() || !k.unhealthy_apiservers().is_empty() {
        return Ok(master_endpoint_ops(nf, &[]));
    }

    // 3. Outdated apiservers, one at a time, each taken out of the endpoints first.
    if let Some(n) = k.outdated(Component::ApiServer).into_iter().next() {
        let reason = format!("kube-apiserver on {n} runs an outdated image or parameters");
        let mut ops = master_endpoint_ops(nf, std::slice::from_ref(&n));
        ops.push(PlannedOp::new(OpKind::KubeApiserverRestart { nodes: vec![n] }, reason));
        return Ok(ops);
    }

    // 4. Every apiserver is current and healthy: the endpoints (a control plane next to reboot not
    // ready), then the other components.
    let mut ops = master_endpoint_ops(nf, &super::reboot::not_ready_control_planes(nf));
    let mut push = |nodes: Vec<String>, kind: fn(Vec<String>) -> OpKind, why: &str| {
        if !nodes.is_empty() {
            let reason = format!("{why} on {}", crate::model::few(&nodes, REASON_EXAMPLES));
            ops.push(PlannedOp::new(kind(nodes), reason));
        }
    };
    let max = nf.max_concurrent_updates();
    let batch = |mut v: Vec<String>| {
        v.truncate(max);
        v
    };
    push(
        k.stopped(Component::ControllerManager),
        |nodes| OpKind::KubeControllerManagerBootstrap { nodes },
        "kube-controller-manager is not running",
    );
    push(
        k.outdated(Component::ControllerManager),
        |nodes| OpKind::KubeControllerManagerRestart { nodes },
        "kube-controller-manager is outdated",
    );
    push(
        k.stopped(Component::Scheduler),
        |nodes| OpKind::KubeSchedulerBootstrap { nodes },
        "kube-scheduler is not running",
    );
    push(
        k.outdated(Component::Scheduler),
        |nodes| OpKind::KubeSchedulerRestart { nodes },
        "kube-scheduler is outdated",
    );
    push(
        batch(k.unrecognized_kubelets()),
        |nodes| OpKind::KubeletRestart { nodes },
        "kubelet runs but its Node is not registered",
    );
    push(
        batch(k.stopped(Component::Kubelet)),
        |nodes| OpKind::KubeletBootstrap { nodes },
        "kubelet is not running",
    );
    if nf.cluster().options.kubelet.in_place_update {
        push(
            batch(k.outdated(Component::Kubelet)),
            |nodes| OpKind::KubeletRestart { nodes },
            "kubelet is outdated (in_place_update)",
        );
    }
    if nf.cluster().options.kube_proxy.disable {
        push(
            batch(k.running(Component::Proxy)),
            |nodes| OpKind::StopKubeProxy { nodes },
            "kube-proxy runs but options.kube-proxy.disable is set",
        );
    } else {
        push(
            batch(k.stopped(Component::Proxy)),
            |nodes| OpKind::KubeProxyBootstrap { nodes },
            "kube-proxy is not running",
        );
        push(
            batch(k.outdated(Component::Proxy)),
            |nodes| OpKind::KubeProxyRestart { nodes },
            "kube-proxy is outdated",
        );
    }
    Ok(ops)
}

/// `stop-control-plane`: control-plane containers still running on reachable nodes that are no
/// longer control planes. etcd is stopped only while the managed etcd is good (CKE's rule) and,
/// beyond CKE, only when the node is no longer a member: while etcd maintenance waits (for an
/// unreachable control plane, say), a former control plane may still hold a voting member, and
/// stopping it would cost the cluster a vote. (Its removal is etcd maintenance's.)
pub(super) fn stop_control_plane_ops(nf: &NodeFilter) -> Vec<PlannedOp> {
    let workers: Vec<&Node> = nf
        .cluster()
        .nodes
        .iter()
        .filter(|n| !n.control_plane && nf.reachable(n))
        .collect();
    let on = |f: &dyn Fn(&Node, &crate::model::NodeStatus) -> bool| -> Vec<String> {
        workers
            .iter()
            .filter(|n| f(n, nf.node_status(n)))
            .map(|n| n.address.clone())
            .collect()
    };
    let etcd_good = nf.etcd_is_good();
    let mut ops = Vec::new();
    let mut push = |nodes: Vec<String>, kind: fn(Vec<String>) -> OpKind, what: &str| {
        if !nodes.is_empty() {
            let reason = format!(
                "{what} runs on {}, which is no longer a control plane",
                crate::model::few(&nodes, REASON_EXAMPLES)
            );
            ops.push(PlannedOp::new(kind(nodes), reason));
        }
    };
    push(
        on(&|_, s| s.kube_apiserver.service.running),
        |nodes| OpKind::StopKubeApiserver { nodes },
        "kube-apiserver",
    );
    push(
        on(&|_, s| s.kube_controller_manager.service.running),
        |nodes| OpKind::StopKubeControllerManager { nodes },
        "kube-controller-manager",
    );
    push(
        on(&|_, s| s.kube_scheduler.service.running),
        |nodes| OpKind::StopKubeScheduler { nodes },
        "kube-scheduler",
    );
    push(
        on(&|n, s| etcd_good && s.etcd.service.running && !nf.etcd_is_member(&n.address)),
        |nodes| OpKind::StopEtcd { nodes },
        "etcd",
    );
    push(
        on(&|_, s| s.etcd_rivers.running),
        |nodes| OpKind::StopEtcdRivers { nodes },
        "etcd-rivers",
    );
    ops
}

/// The per-component questions of the rules above.
struct Kube<'a, 'b> {
    nf: &'b NodeFilter<'a>,
    version: &'static VersionSet,
}

impl Kube<'_, '_> {
    /// Reachable nodes that run `c` (control planes for control-plane components).
    fn nodes(&self, c: Component) -> Vec<&Node> {
        self.nf
            .cluster()
            .nodes
            .iter()
            .filter(|n| (!c.is_control_plane() || n.control_plane) && self.nf.reachable(n))
            .collect()
    }

    fn status<'s>(&'s self, c: Component, n: &Node) -> &'s crate::model::KubeComponentStatus {
        let st = self.nf.node_status(n);
        match c {
            Component::ApiServer => &st.kube_apiserver,
            Component::ControllerManager => &st.kube_controller_manager,
            Component::Scheduler => &st.kube_scheduler,
            Component::Kubelet => &st.kubelet,
            Component::Proxy => &st.kube_proxy,
        }
    }

    fn healthy(&self, c: Component, address: &str) -> bool {
        self.nf
            .cluster()
            .node(address)
            .is_some_and(|n| self.status(c, n).is_healthy)
    }

    fn stopped(&self, c: Component) -> Vec<String> {
        self.nodes(c)
            .into_iter()
            .filter(|n| !self.status(c, n).service.running)
            .map(|n| n.address.clone())
            .collect()
    }

    fn running(&self, c: Component) -> Vec<String> {
        self.nodes(c)
            .into_iter()
            .filter(|n| self.status(c, n).service.running)
            .map(|n| n.address.clone())
            .collect()
    }

    /// Every control plane whose apiserver is not healthy, reachable or not (CKE's
    /// APIServerUnhealthy over all control planes).
    fn unhealthy_apiservers(&self) -> Vec<String> {
        self.nf
            .cluster()
            .control_planes()
            .filter(|n| !self.status(Component::ApiServer, n).is_healthy)
            .map(|n| n.address.clone())
            .collect()
    }

    /// Kubelets that run on reachable nodes with no Node object of their name; only when the API
    /// was read (an unread API says nothing of registrations).
    fn unrecognized_kubelets(&self) -> Vec<String> {
        let k = &self.nf.status().kubernetes;
        if !k.api_read {
            return vec![];
        }
        self.nodes(Component::Kubelet)
            .into_iter()
            .filter(|n| self.status(Component::Kubelet, n).service.running)
            .filter(|n| !k.nodes.iter().any(|kn| kn.name == n.nodename()))
            .map(|n| n.address.clone())
            .collect()
    }

    /// Running with another image, other built-in or user parameters, or (scheduler, kubelet,
    /// kube-proxy) another configuration file than the declaration gives now.
    fn outdated(&self, c: Component) -> Vec<String> {
        let cluster = self.nf.cluster();
        let inputs = ClusterInputs {
            cluster,
            version: self.version,
            host: &self.nf.inputs().host,
        };
        let extra = params::extra(cluster, c);
        let image = &self.nf.inputs().images.kubernetes;
        self.nodes(c)
            .into_iter()
            .filter(|n| {
                let st = self.status(c, n);
                if !st.service.running {
                    return false;
                }
                let Some(label) = &st.service.params else {
                    return true;
                };
                let builtin = params::builtin(&inputs, c, n);
                if c == Component::Kubelet && runtime_endpoint(&label.builtin) != runtime_endpoint(&builtin) {
                    // CKE never changes a running kubelet's container runtime (warn only).
                    return false;
                }
                if st.service.image != *image || label.builtin != builtin || label.extra != extra {
                    return true;
                }
                let o = &cluster.options;
                let desired = match c {
                    Component::Scheduler => config::scheduler(self.version, &o.kube_scheduler),
                    Component::Proxy => config::proxy(self.version, &o.kube_proxy, n),
                    Component::Kubelet => config::kubelet(self.version, &o.kubelet, &n.address, st.config.as_ref()),
                    _ => return false,
                };
                match (desired, &st.config) {
                    // A declaration whose config cannot be generated is refused by validation; the
                    // operator would name the field. Nothing to compare against here.
                    (Err(_), _) => false,
                    (Ok(_), None) => true,
                    (Ok(d), Some(running)) => config::differs(&d, running),
                }
            })
            .map(|n| n.address.clone())
            .collect()
    }
}

fn runtime_endpoint(p: &crate::model::ServiceParams) -> Option<&str> {
    p.extra_args
        .iter()
        .find_map(|a| a.strip_prefix("--container-runtime-endpoint="))
}

/// `component` on `node` as the declaration wants it now: running the Kubernetes image with the
/// current params label and configuration file, healthy. What a converged node looks like; for
/// tests and for the fake world. `None` when the Kubernetes image or the declaration's component
/// configuration is unusable.
pub fn current_component(
    cluster: &crate::model::Cluster,
    inputs: &super::PlanInputs,
    component: Component,
    node: &Node,
) -> Option<crate::model::KubeComponentStatus> {
    let version = crate::k8s::VersionSet::for_image(&inputs.images.kubernetes).ok()?.set;
    let ci = ClusterInputs {
        cluster,
        version,
        host: &inputs.host,
    };
    let o = &cluster.options;
    let config = match component {
        Component::Scheduler => Some(config::scheduler(version, &o.kube_scheduler).ok()?),
        Component::Proxy => Some(config::proxy(version, &o.kube_proxy, node).ok()?),
        Component::Kubelet => Some(config::kubelet(version, &o.kubelet, &node.address, None).ok()?),
        _ => None,
    };
    Some(crate::model::KubeComponentStatus {
        service: crate::model::ServiceStatus {
            exists: true,
            running: true,
            image: inputs.images.kubernetes.clone(),
            params: Some(crate::model::ContainerParams {
                builtin: params::builtin(&ci, component, node),
                extra: params::extra(cluster, component),
            }),
        },
        is_healthy: true,
        config,
    })
}
