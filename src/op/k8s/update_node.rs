//! `update-node` (CKE's `op/kube_node_update.go`): brings the labels, annotations and taints of
//! Node objects in line with the declaration, one command per Node (all at once), through the healthy apiserver
//! the planner chose. Each command reads the Node afresh, merges by CKE's rule
//! ([`crate::k8s::node::desired`]) and replaces it with the `resourceVersion` it read, retrying on
//! a conflict, so a change made by someone else in between (a kubelet's status, another label) is
//! kept. A Node that is already current is not written; a Node that is gone is left to its kubelet
//! to register again.

use super::*;
use crate::infra::NodeUpdate;
use crate::op::{Operator, SeqOperator};

/// The operator for the nodes at `nodes` (addresses), through the apiserver on `apiserver`.
pub fn operator(apiserver: &str, nodes: &[String], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let updates = nodes
        .iter()
        .map(|address| {
            Box::new(UpdateNode {
                apiserver: apiserver.into(),
                declared: node(ctx, address).clone(),
                taint_control_plane: ctx.cluster.taint_control_plane,
            }) as Box<dyn Commander>
        })
        .collect();
    SeqOperator::boxed("update-node", nodes.to_vec(), steps(vec![updates]))
}

/// `update-node` of one Node.
pub struct UpdateNode {
    /// The control plane whose apiserver is asked.
    pub apiserver: String,
    /// The declared node (its Node is named `nodename()`).
    pub declared: Node,
    /// The cluster's `taint_control_plane`.
    pub taint_control_plane: bool,
}

#[async_trait::async_trait]
impl Commander for UpdateNode {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "update-node".into(),
            target: self.declared.address.clone(),
            detail: format!("Node {} through {}", self.declared.nodename(), self.apiserver),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let result = infra
            .kube
            .update_node(&self.apiserver, &self.declared, self.taint_control_plane)
            .await
            .map_err(|e| CommandError::with_retry(&self.command(), crate::error::Retry::Soon, e))?;
        match result {
            NodeUpdate::Updated | NodeUpdate::Current => {}
            NodeUpdate::Missing => tracing::warn!(
                node = self.declared.nodename(),
                "Node is gone; its kubelet registers it again"
            ),
        }
        Ok(Outcome::Done)
    }
}
