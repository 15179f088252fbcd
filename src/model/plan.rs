//! The planner's vocabulary: phases and planned operations. Pure data, shared by the planner (which
//! makes them), the controller (which runs them), the published status and `ckecli plan`.

use serde::{Deserialize, Serialize};

/// The phase a pass ended in (CKE's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The declaration violates the constraints; nothing is done.
    ConstraintsViolated,
    /// Starting or restarting rivers.
    Rivers,
    /// Bootstrapping the managed etcd.
    EtcdBoot,
    /// Bootstrap needed but a control-plane node is unreachable.
    EtcdBootAborted,
    /// Starting stopped members.
    EtcdStart,
    /// Waiting for the managed etcd to become healthy.
    EtcdWait,
    /// Starting Kubernetes components.
    K8sStart,
    /// Membership changes and restarts of the managed etcd.
    EtcdMaintain,
    /// Nothing to do.
    Completed,
}

impl Phase {
    /// The phase's name as published (`etcd-boot`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::ConstraintsViolated => "constraints-violated",
            Phase::Rivers => "rivers",
            Phase::EtcdBoot => "etcd-boot",
            Phase::EtcdBootAborted => "etcd-boot-aborted",
            Phase::EtcdStart => "etcd-start",
            Phase::EtcdWait => "etcd-wait",
            Phase::K8sStart => "k8s-start",
            Phase::EtcdMaintain => "etcd-maintain",
            Phase::Completed => "completed",
        }
    }

    /// Every phase, for metrics.
    pub const ALL: [Phase; 9] = [
        Phase::ConstraintsViolated,
        Phase::Rivers,
        Phase::EtcdBoot,
        Phase::EtcdBootAborted,
        Phase::EtcdStart,
        Phase::EtcdWait,
        Phase::K8sStart,
        Phase::EtcdMaintain,
        Phase::Completed,
    ];
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One planned operation: what to do, to which nodes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", rename_all = "kebab-case")]
pub enum OpKind {
    /// Start rivers on nodes where it is not running.
    RiversBootstrap {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Restart rivers whose image or params are outdated.
    RiversRestart {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Start etcd-rivers on control-plane nodes where it is not running.
    EtcdRiversBootstrap {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Restart outdated etcd-rivers.
    EtcdRiversRestart {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Bootstrap the managed etcd on every control-plane node.
    EtcdBootstrap {
        /// Control-plane node addresses.
        nodes: Vec<String>,
    },
    /// Start stopped members that hold data.
    EtcdStart {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Wait for the managed etcd to become healthy.
    EtcdWaitCluster {
        /// Control-plane node addresses (the endpoints to try).
        nodes: Vec<String>,
    },
    /// Remove a member whose node is not declared.
    EtcdRemoveMember {
        /// The member's node address.
        node: String,
        /// The member id.
        id: u64,
    },
    /// Remove a member on a node that is no longer control plane, and destroy its container and data.
    EtcdDestroyMember {
        /// The node address.
        node: String,
        /// The member id.
        id: u64,
    },
    /// Add a control-plane node as a learner, start it, promote it once in sync, mark it.
    /// `replace` is the id of a half-added member on the same node to remove first.
    EtcdAddMember {
        /// The node address.
        node: String,
        /// Member id to remove first (a half-added member), if any.
        replace: Option<u64>,
    },
    /// Promote a started learner that is in sync.
    EtcdPromoteMember {
        /// The node address.
        node: String,
        /// The member id.
        id: u64,
    },
    /// Mark in-sync voting members that lack the added-member marker.
    EtcdMarkMember {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Restart an outdated member (new image or params).
    EtcdRestart {
        /// The node address.
        node: String,
    },
}

/// An operation with the reason it was planned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedOp {
    /// What to do.
    #[serde(flatten)]
    pub kind: OpKind,
    /// Why, in words an operator understands.
    pub reason: String,
}

impl PlannedOp {
    /// An operation planned for `reason`.
    pub fn new(kind: OpKind, reason: impl Into<String>) -> Self {
        PlannedOp {
            kind,
            reason: reason.into(),
        }
    }

    /// The operation's name as recorded (`etcd-add-member`, ...).
    pub fn name(&self) -> &'static str {
        match self.kind {
            OpKind::RiversBootstrap { .. } => "rivers-bootstrap",
            OpKind::RiversRestart { .. } => "rivers-restart",
            OpKind::EtcdRiversBootstrap { .. } => "etcd-rivers-bootstrap",
            OpKind::EtcdRiversRestart { .. } => "etcd-rivers-restart",
            OpKind::EtcdBootstrap { .. } => "etcd-bootstrap",
            OpKind::EtcdStart { .. } => "etcd-start",
            OpKind::EtcdWaitCluster { .. } => "etcd-wait-cluster",
            OpKind::EtcdRemoveMember { .. } => "etcd-remove-member",
            OpKind::EtcdDestroyMember { .. } => "etcd-destroy-member",
            OpKind::EtcdAddMember { .. } => "etcd-add-member",
            OpKind::EtcdPromoteMember { .. } => "etcd-promote-member",
            OpKind::EtcdMarkMember { .. } => "etcd-mark-member",
            OpKind::EtcdRestart { .. } => "etcd-restart",
        }
    }

    /// The node addresses it acts on.
    pub fn targets(&self) -> Vec<String> {
        match &self.kind {
            OpKind::RiversBootstrap { nodes }
            | OpKind::RiversRestart { nodes }
            | OpKind::EtcdRiversBootstrap { nodes }
            | OpKind::EtcdRiversRestart { nodes }
            | OpKind::EtcdBootstrap { nodes }
            | OpKind::EtcdStart { nodes }
            | OpKind::EtcdWaitCluster { nodes }
            | OpKind::EtcdMarkMember { nodes } => nodes.clone(),
            OpKind::EtcdRemoveMember { node, .. }
            | OpKind::EtcdDestroyMember { node, .. }
            | OpKind::EtcdAddMember { node, .. }
            | OpKind::EtcdPromoteMember { node, .. }
            | OpKind::EtcdRestart { node } => vec![node.clone()],
        }
    }

    /// True for operations that change the managed etcd's membership.
    pub fn changes_membership(&self) -> bool {
        matches!(
            self.kind,
            OpKind::EtcdRemoveMember { .. }
                | OpKind::EtcdDestroyMember { .. }
                | OpKind::EtcdAddMember { .. }
                | OpKind::EtcdPromoteMember { .. }
        )
    }
}
