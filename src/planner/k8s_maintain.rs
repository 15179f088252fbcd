//! CKE's `k8s-maintain` phase (`server/strategy.go` k8sMaintOps): the Kubernetes objects cke keeps
//! right through the API once the components run. Pure.
//!
//! So far: `update-node` (CKE's step 5), for every declared node whose `Node` object (matched by
//! name: the node's `hostname`, else its address) has outdated labels, annotations or taints by the
//! rule of [`crate::k8s::node`]. Declared nodes without a Node are skipped (their kubelet registers
//! them; `k8s-start` restarts a kubelet that runs unregistered). Nothing is planned unless the API
//! was read this pass and some control plane's apiserver is healthy: the first such control plane,
//! in declaration order (CKE's `HealthyAPIServer`), is the one the operation talks to.

use crate::k8s::node::is_outdated;
use crate::model::{OpKind, PlannedOp};

use super::NodeFilter;

/// The `k8s-maintain` operations, in CKE's order; empty when there is nothing to do.
pub(super) fn k8s_maintain_ops(nf: &NodeFilter) -> Vec<PlannedOp> {
    let cluster = nf.cluster();
    let k = &nf.status().kubernetes;
    if !k.api_read {
        return vec![];
    }
    let Some(apiserver) = cluster
        .control_planes()
        .find(|n| nf.node_status(n).kube_apiserver.is_healthy)
        .map(|n| n.address.clone())
    else {
        return vec![];
    };
    let mut ops = Vec::new();
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
                apiserver,
                nodes: outdated,
            },
            reason,
        ));
    }
    ops
}
