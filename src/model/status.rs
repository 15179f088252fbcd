//! What the probe observed: the input of the planner. Pure data, serialisable so that `/status`
//! and `ckecli plan` can show what a decision was based on.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ServiceParams;

/// The container params label stored on every container cke starts (`com.cybozu.cke`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerParams {
    /// Parameters cke computes itself.
    #[serde(default)]
    pub builtin: ServiceParams,
    /// Parameters from the cluster declaration's options.
    #[serde(default)]
    pub extra: ServiceParams,
}

/// One cke-managed container on a node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The container exists (running or not).
    pub exists: bool,
    /// The container is running.
    pub running: bool,
    /// Its image.
    #[serde(default)]
    pub image: String,
    /// Its params label; `None` when absent or unreadable (always treated as outdated).
    #[serde(default)]
    pub params: Option<ContainerParams>,
}

/// The managed etcd as seen on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EtcdNodeStatus {
    /// The etcd container.
    pub service: ServiceStatus,
    /// The data volume exists.
    pub has_data: bool,
    /// The added-member marker exists: this member was bootstrapped, or added and fully joined.
    pub is_added_member: bool,
}

/// One node as probed over SSH.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// SSH works.
    pub ssh_connected: bool,
    /// Why SSH does not work (dial timeout, host key mismatch, ...).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh_error: String,
    /// The managed etcd.
    pub etcd: EtcdNodeStatus,
    /// rivers in front of the API servers.
    pub rivers: ServiceStatus,
    /// rivers in front of etcd (control-plane nodes).
    pub etcd_rivers: ServiceStatus,
    /// kube-apiserver (control-plane nodes; healthy: the API answers with an admin certificate).
    #[serde(default)]
    pub kube_apiserver: KubeComponentStatus,
    /// kube-controller-manager (healthy: `/healthz` on 10257).
    #[serde(default)]
    pub kube_controller_manager: KubeComponentStatus,
    /// kube-scheduler (healthy: `/healthz` on 10259; config: the running `config.yml`).
    #[serde(default)]
    pub kube_scheduler: KubeComponentStatus,
    /// kubelet (healthy: `/healthz` on 10248; config: the running `config.yml`).
    #[serde(default)]
    pub kubelet: KubeComponentStatus,
    /// kube-proxy (healthy: `/healthz` on 10249; config: the running `config.yml`).
    #[serde(default)]
    pub kube_proxy: KubeComponentStatus,
}

/// A Kubernetes component on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KubeComponentStatus {
    /// Its container.
    #[serde(flatten)]
    pub service: ServiceStatus,
    /// Its health check answered `ok`.
    #[serde(default)]
    pub is_healthy: bool,
    /// The configuration file it runs with (scheduler, kubelet, kube-proxy), as read back from the
    /// node; `None` when absent or unreadable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<serde_json::Value>,
}

/// A `Node` object of the Kubernetes cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeNode {
    /// `metadata.name`.
    pub name: String,
    /// The `Ready` condition is `True`.
    #[serde(default)]
    pub ready: bool,
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `spec.taints` (key, value, effect; `timeAdded` is not kept), in the Node's order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<super::Taint>,
}

/// The Kubernetes cluster as seen through the API of one running apiserver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesStatus {
    /// The API was read (some control plane runs an apiserver that answered); when false, nothing
    /// below is known.
    #[serde(default)]
    pub api_read: bool,
    /// `Node` objects, by name.
    #[serde(default)]
    pub nodes: Vec<KubeNode>,
}

/// One member of the managed etcd, keyed by node address in [`EtcdClusterStatus::members`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EtcdMember {
    /// Member id.
    pub id: u64,
    /// Member name; empty until the member has started (joined).
    pub name: String,
    /// A learner: replicates but does not vote.
    pub is_learner: bool,
}

/// The managed etcd cluster as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EtcdClusterStatus {
    /// A lease grant through the members succeeded.
    pub is_healthy: bool,
    /// Members by node address (parsed from the peer URL).
    pub members: BTreeMap<String, EtcdMember>,
    /// Addresses of members whose own read returned a revision ≥ the health check's.
    pub in_sync_members: BTreeSet<String>,
}

/// Everything the planner needs to decide.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// Node statuses by address; a declared node missing here counts as unreachable.
    pub nodes: BTreeMap<String, NodeStatus>,
    /// The managed etcd.
    pub etcd: EtcdClusterStatus,
    /// Kubernetes through its API.
    #[serde(default)]
    pub kubernetes: KubernetesStatus,
}
