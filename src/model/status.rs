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

impl ServiceStatus {
    /// The container exists and was started from `image` (which is then on the node).
    pub fn has_image(&self, image: &str) -> bool {
        self.exists && self.image == image
    }
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
    /// `spec.unschedulable`: the Node is cordoned.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unschedulable: bool,
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
    /// The ServiceAccount `kube-system/default` exists: the control plane is ready (CKE's
    /// `IsControlPlaneReady`).
    #[serde(default)]
    pub control_plane_ready: bool,
    /// The `spec.clusterIP` of the Service named by `dns_service` (`namespace/name`), when the
    /// declaration names one and it exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_service_ip: Option<String>,
    /// The `data` of ConfigMap `kube-system/cluster-dns`; `None` when there is no such ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_dns_config: Option<BTreeMap<String, String>>,
    /// The `spec.clusterIP` of Service `kube-system/cluster-dns` (empty when absent or without one).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cluster_dns_ip: String,
    /// The `data` of ConfigMap `kube-system/node-dns`; `None` when there is no such ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_dns_config: Option<BTreeMap<String, String>>,
    /// Endpoints `default/kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_endpoints: Option<EndpointsView>,
    /// EndpointSlice `default/kubernetes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_endpoint_slice: Option<EndpointSliceView>,
    /// Service `kube-system/cke-etcd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_service: Option<ServiceView>,
    /// Endpoints `kube-system/cke-etcd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_endpoints: Option<EndpointsView>,
    /// EndpointSlice `kube-system/cke-etcd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etcd_endpoint_slice: Option<EndpointSliceView>,
    /// The static and user resources that exist, by key (`Kind/name`, `Kind/namespace/name`);
    /// absent keys do not exist (or their kind is not served yet).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub resources: BTreeMap<String, super::ResourceStatus>,
}

impl KubernetesStatus {
    /// More than half of the declared nodes have a Ready `Node` (CKE's `IsReady`): Deployments
    /// are applied only then.
    pub fn is_ready(&self, cluster: &super::Cluster) -> bool {
        let ready = cluster
            .nodes
            .iter()
            .filter(|n| self.nodes.iter().any(|k| k.name == n.nodename() && k.ready))
            .count();
        ready * 2 > cluster.nodes.len()
    }
}

/// What cke reads of an `Endpoints` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointsView {
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `subsets`.
    #[serde(default)]
    pub subsets: Vec<EndpointSubsetView>,
}

/// One subset of an `Endpoints` object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSubsetView {
    /// The IPs of `addresses`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// The IPs of `notReadyAddresses`.
    #[serde(default)]
    pub not_ready_addresses: Vec<String>,
    /// `ports`.
    #[serde(default)]
    pub ports: Vec<PortView>,
}

/// A port of an Endpoints subset, an EndpointSlice or a Service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortView {
    /// `name` (empty when unset).
    #[serde(default)]
    pub name: String,
    /// `port` (0 when unset).
    #[serde(default)]
    pub port: i32,
}

/// What cke reads of an `EndpointSlice` (the same fields in `discovery.k8s.io/v1beta1` and `v1`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointSliceView {
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `addressType`.
    #[serde(default)]
    pub address_type: String,
    /// `endpoints`, in the object's order.
    #[serde(default)]
    pub endpoints: Vec<SliceEndpointView>,
    /// `ports`.
    #[serde(default)]
    pub ports: Vec<PortView>,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceEndpointView {
    /// `addresses`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `conditions.ready` (`None` when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// What cke reads of a `Service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceView {
    /// `spec.type`.
    #[serde(default)]
    pub service_type: String,
    /// `spec.clusterIP`.
    #[serde(default)]
    pub cluster_ip: String,
    /// `spec.ports`.
    #[serde(default)]
    pub ports: Vec<PortView>,
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
    /// The repair queue (read with the Kubernetes API's view, as CKE reads it).
    #[serde(default)]
    pub repair_queue: super::RepairQueueStatus,
    /// The reboot queue (read only when the Kubernetes API was read, as CKE does).
    #[serde(default)]
    pub reboot_queue: RebootQueueStatus,
}

/// The reboot queue as read this pass, with what needs I/O to know (CKE's `RebootQueueStatus`
/// without what the planner derives from it and the time: candidates, timeouts, dequeues).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootQueueStatus {
    /// Processing is enabled (`reboots/disabled` is not `true`).
    #[serde(default)]
    pub enabled: bool,
    /// The entries, the first of each node, in queue order.
    #[serde(default)]
    pub entries: Vec<super::RebootQueueEntry>,
    /// Nodes of `draining` entries whose drain is complete: no pod that draining removes is left
    /// and no volume is in use.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub drain_completed: BTreeSet<String>,
    /// Nodes of `rebooting` entries whose `boot_check_command` printed `true`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub boot_checked: BTreeSet<String>,
}
