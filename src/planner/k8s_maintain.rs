//! CKE's `k8s-maintain` phase (`server/strategy.go` k8sMaintOps): the Kubernetes objects cke keeps
//! right through the API once the components run, and the `kubernetes` endpoints that `k8s-start`
//! updates around apiserver restarts (masterEndpointOps). Pure.
//!
//! Nothing is planned unless the API was read this pass and some control plane's apiserver is
//! healthy: the first such control plane, in declaration order (CKE's `HealthyAPIServer`), is the
//! one every operation talks to. Then, in CKE's order:
//!
//! 0. `wait-kubernetes`, alone, until the ServiceAccount `kube-system/default` exists;
//! 1. the etcd Service, Endpoints and EndpointSlice `kube-system/cke-etcd` (every control plane);
//! 2. `update-node` for declared nodes whose `Node` (matched by name: the node's `hostname`, else its
//!    address) has outdated labels, annotations or taints by the rule of [`crate::k8s::node`];
//!    declared nodes without a Node are skipped (their kubelet registers them);
//! 3. `remove-node` for Nodes no declared node accounts for.

use crate::k8s::endpoints::{self, EndpointParams};
use crate::k8s::node::is_outdated;
use crate::model::{CkeObject, EndpointSliceView, EndpointsView, OpKind, PlannedOp};

use super::NodeFilter;

/// The `k8s-maintain` operations, in CKE's order; empty when there is nothing to do.
pub(super) fn k8s_maintain_ops(nf: &NodeFilter) -> Vec<PlannedOp> {
    let cluster = nf.cluster();
    let k = &nf.status().kubernetes;
    let Some(apiserver) = healthy_apiserver(nf) else {
        return vec![];
    };
    if !k.control_plane_ready {
        return vec![PlannedOp::new(
            OpKind::WaitKubernetes { apiserver },
            "the control plane is not ready: ServiceAccount kube-system/default does not exist yet",
        )];
    }
    let mut ops = Vec::new();
    ops.extend(etcd_endpoint_ops(nf, &apiserver));
    let outdated: Vec<String> = cluster
        .nodes
        .iter()
        .filter(|n| {
            k.nodes
                .iter()
                .find(|kn| kn.name == n.nodename())
                .is_some_and(|kn| is_outdated(n, kn, cluster.taint_control_plane))
        })
        .map(|n| n.address.clone())
        .collect();
    if !outdated.is_empty() {
        let reason = format!(
            "the labels, annotations or taints of the Nodes of {} differ from the declaration",
            outdated.join(", ")
        );
        ops.push(PlannedOp::new(
            OpKind::UpdateNode {
                apiserver: apiserver.clone(),
                nodes: outdated,
            },
            reason,
        ));
    }
    let strays = non_cluster_nodes(nf);
    if !strays.is_empty() {
        let reason = format!("Nodes {} belong to no declared node", strays.join(", "));
        ops.push(PlannedOp::new(
            OpKind::RemoveNode {
                apiserver: apiserver.clone(),
                nodes: strays,
            },
            reason,
        ));
    }
    ops
}

/// The first control plane whose apiserver is healthy, when the API was read (CKE's
/// `HealthyAPIServer`).
fn healthy_apiserver(nf: &NodeFilter) -> Option<String> {
    if !nf.status().kubernetes.api_read {
        return None;
    }
    nf.cluster()
        .control_planes()
        .find(|n| nf.node_status(n).kube_apiserver.is_healthy)
        .map(|n| n.address.clone())
}

/// Names of `Node` objects that no declared node accounts for (CKE's NonClusterNodes: a name is a
/// declared node's `hostname`, or else taken as an address).
fn non_cluster_nodes(nf: &NodeFilter) -> Vec<String> {
    let cluster = nf.cluster();
    nf.status()
        .kubernetes
        .nodes
        .iter()
        .filter(|kn| {
            let address = cluster
                .nodes
                .iter()
                .find(|n| !n.hostname.is_empty() && n.hostname == kn.name)
                .map_or(kn.name.as_str(), |n| n.address.as_str());
            cluster.node(address).is_none()
        })
        .map(|kn| kn.name.clone())
        .collect()
}

/// The EndpointSlice API version of the declared Kubernetes (1.20: `discovery.k8s.io/v1beta1`).
fn slice_api(nf: &NodeFilter) -> &'static str {
    nf.kube_version()
        .map(|v| v.endpoint_slice_api)
        .unwrap_or(crate::k8s::VersionSet::latest().endpoint_slice_api)
}

/// The create or update operations that bring the Endpoints and EndpointSlice of `p` in line
/// (CKE's decideEpEpsOps), through `apiserver`.
fn endpoint_pair_ops(
    nf: &NodeFilter,
    apiserver: &str,
    p: &EndpointParams,
    objects: (CkeObject, CkeObject),
    actual: (Option<&EndpointsView>, Option<&EndpointSliceView>),
) -> Vec<PlannedOp> {
    let describe = || {
        format!(
            "ready {}; not ready {}",
            list_or_none(&p.ready),
            list_or_none(&p.not_ready)
        )
    };
    let mut ops = Vec::new();
    let ep = match actual.0 {
        None => Some(true),
        Some(a) => endpoints::endpoints_outdated(p, a).then_some(false),
    };
    if let Some(create) = ep {
        let what = if create { "is missing" } else { "differs" };
        ops.push(PlannedOp::new(
            OpKind::KubeObject {
                apiserver: apiserver.into(),
                object: objects.0,
                create,
                body: endpoints::endpoints_body(p),
            },
            format!("Endpoints {}/{} {what}: {}", p.namespace, p.name, describe()),
        ));
    }
    let eps = match actual.1 {
        None => Some(true),
        Some(a) => endpoints::endpoint_slice_outdated(p, a).then_some(false),
    };
    if let Some(create) = eps {
        let what = if create { "is missing" } else { "differs" };
        ops.push(PlannedOp::new(
            OpKind::KubeObject {
                apiserver: apiserver.into(),
                object: objects.1,
                create,
                body: endpoints::endpoint_slice_body(p, slice_api(nf)),
            },
            format!("EndpointSlice {}/{} {what}: {}", p.namespace, p.name, describe()),
        ));
    }
    ops
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// CKE's masterEndpointOps: the `default/kubernetes` Endpoints and EndpointSlice list the control
/// planes, those with a healthy apiserver ready unless in `not_ready` (about to be restarted), the
/// rest not ready. Empty when the API was not read or no apiserver is healthy.
pub(super) fn master_endpoint_ops(nf: &NodeFilter, not_ready: &[String]) -> Vec<PlannedOp> {
    let Some(apiserver) = healthy_apiserver(nf) else {
        return vec![];
    };
    let (mut ready, mut unready) = (Vec::new(), Vec::new());
    for n in nf.cluster().control_planes() {
        if nf.node_status(n).kube_apiserver.is_healthy && !not_ready.contains(&n.address) {
            ready.push(n.address.clone());
        } else {
            unready.push(n.address.clone());
        }
    }
    // CKE lists the healthy ones (ready or marked) first, then the unhealthy ones; the order of the
    // not-ready list does not matter to the comparison.
    let p = EndpointParams::kubernetes(ready, unready);
    let k = &nf.status().kubernetes;
    endpoint_pair_ops(
        nf,
        &apiserver,
        &p,
        (CkeObject::KubernetesEndpoints, CkeObject::KubernetesEndpointSlice),
        (k.master_endpoints.as_ref(), k.master_endpoint_slice.as_ref()),
    )
}

/// CKE's etcdEndpointOps: the headless Service `kube-system/cke-etcd` (an Endpoints without its
/// Service would be removed by Kubernetes), then its Endpoints and EndpointSlice listing every
/// control plane as ready (reboots, later, mark theirs not ready).
fn etcd_endpoint_ops(nf: &NodeFilter, apiserver: &str) -> Vec<PlannedOp> {
    let k = &nf.status().kubernetes;
    let mut ops = Vec::new();
    let svc = match &k.etcd_service {
        None => Some(true),
        Some(s) => endpoints::etcd_service_outdated(s).then_some(false),
    };
    if let Some(create) = svc {
        let what = if create { "is missing" } else { "differs" };
        ops.push(PlannedOp::new(
            OpKind::KubeObject {
                apiserver: apiserver.into(),
                object: CkeObject::EtcdService,
                create,
                body: endpoints::etcd_service_body(),
            },
            format!("Service kube-system/cke-etcd {what} (headless, port 2379)"),
        ));
    }
    let p = EndpointParams::etcd(nf.control_plane_addresses(), vec![]);
    ops.extend(endpoint_pair_ops(
        nf,
        apiserver,
        &p,
        (CkeObject::EtcdEndpoints, CkeObject::EtcdEndpointSlice),
        (k.etcd_endpoints.as_ref(), k.etcd_endpoint_slice.as_ref()),
    ));
    ops
}
