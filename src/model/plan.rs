//! The planner's vocabulary: phases and planned operations. Pure data, shared by the planner (which
//! makes them), the controller (which runs them), the published status and `ckecli plan`.

use serde::{Deserialize, Serialize};

/// The phase a pass ended in (CKE's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// The declaration violates the constraints; nothing is done.
    ConstraintsViolated,
    /// Bringing on-node state written under an older `config-version` up to date (CKE's `upgrade`).
    Upgrade,
    /// An upgrade is needed but cannot be done now (a node to mark is unreachable, or the
    /// `config-version` is newer than this cke knows).
    UpgradeAborted,
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
    /// Kubernetes objects kept through the API (Node attributes, ...).
    K8sMaintain,
    /// Stopping control-plane containers on nodes that are no longer control planes.
    StopControlPlane,
    /// Uncordoning the nodes cke cordoned for a reboot that is over (or not processed).
    UncordonNodes,
    /// Processing the repair queue (also while its gate or its limits hold every entry back).
    RepairMachines,
    /// Processing the reboot queue.
    RebootNodes,
    /// Nothing to do.
    Completed,
}

impl Phase {
    /// The phase's name as published (`etcd-boot`, ...).
    pub fn as_str(&self) -> &'static str {
        match self {
            Phase::ConstraintsViolated => "constraints-violated",
            Phase::Upgrade => "upgrade",
            Phase::UpgradeAborted => "upgrade-aborted",
            Phase::Rivers => "rivers",
            Phase::EtcdBoot => "etcd-boot",
            Phase::EtcdBootAborted => "etcd-boot-aborted",
            Phase::EtcdStart => "etcd-start",
            Phase::EtcdWait => "etcd-wait",
            Phase::K8sStart => "k8s-start",
            Phase::EtcdMaintain => "etcd-maintain",
            Phase::K8sMaintain => "k8s-maintain",
            Phase::StopControlPlane => "stop-control-plane",
            Phase::UncordonNodes => "uncordon-nodes",
            Phase::RepairMachines => "repair-machines",
            Phase::RebootNodes => "reboot-nodes",
            Phase::Completed => "completed",
        }
    }

    /// Every phase, for metrics.
    pub const ALL: [Phase; 16] = [
        Phase::ConstraintsViolated,
        Phase::Upgrade,
        Phase::UpgradeAborted,
        Phase::Rivers,
        Phase::EtcdBoot,
        Phase::EtcdBootAborted,
        Phase::EtcdStart,
        Phase::EtcdWait,
        Phase::K8sStart,
        Phase::EtcdMaintain,
        Phase::K8sMaintain,
        Phase::StopControlPlane,
        Phase::UncordonNodes,
        Phase::RepairMachines,
        Phase::RebootNodes,
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
    /// CKE's `upgrade` from `config-version` `from` to the current one: mark the members of these
    /// control-plane nodes (the added-member marker), then record the new `config-version`.
    Upgrade {
        /// The `config-version` found (CKE: absent means "1").
        from: String,
        /// Control-plane nodes that hold a started member's data but no marker.
        nodes: Vec<String>,
    },
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
    /// Remove a member whose node is not declared, or that is no longer a control plane and is
    /// unreachable (its node is wiped once reachable again: [`OpKind::EtcdDestroyMember`] without
    /// an id).
    EtcdRemoveMember {
        /// The member's node address.
        node: String,
        /// The member id.
        id: u64,
    },
    /// Remove a member on a node that is no longer control plane, and destroy its container, data,
    /// marker and certificates there. Without `id` (the member was removed while the node was
    /// unreachable), only the node is wiped.
    EtcdDestroyMember {
        /// The node address.
        node: String,
        /// The member id; absent when only the node's leftovers are wiped.
        id: Option<u64>,
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
    /// Start stopped kube-apiservers, or restart outdated ones (files, certificates and container anew).
    KubeApiserverRestart {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Start kube-controller-manager where it is not running.
    KubeControllerManagerBootstrap {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Restart outdated kube-controller-managers.
    KubeControllerManagerRestart {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Start kube-scheduler where it is not running.
    KubeSchedulerBootstrap {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Restart outdated kube-schedulers.
    KubeSchedulerRestart {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Start kubelet where it is not running (boot taints re-applied first on registered nodes).
    KubeletBootstrap {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Restart kubelets that run without a Node object, or outdated ones (with `in_place_update`).
    KubeletRestart {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Start kube-proxy where it is not running.
    KubeProxyBootstrap {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Restart outdated kube-proxies.
    KubeProxyRestart {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Stop kube-proxy (`options.kube-proxy.disable`).
    StopKubeProxy {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Stop kube-apiserver on nodes that are no longer control planes.
    StopKubeApiserver {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Stop kube-controller-manager on nodes that are no longer control planes.
    StopKubeControllerManager {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Stop kube-scheduler on nodes that are no longer control planes.
    StopKubeScheduler {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Stop etcd on nodes that are no longer control planes (their members are gone).
    StopEtcd {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Stop etcd-rivers on nodes that are no longer control planes.
    StopEtcdRivers {
        /// Node addresses.
        nodes: Vec<String>,
    },
    /// Bring the labels, annotations and taints of these nodes' Node objects in line with the
    /// declaration (CKE's `update-node`), through the apiserver on `apiserver`.
    UpdateNode {
        /// The control-plane node whose healthy apiserver is used.
        apiserver: String,
        /// Addresses of the declared nodes whose Nodes are outdated.
        nodes: Vec<String>,
    },
    /// Wait until the control plane is ready: the ServiceAccount `kube-system/default` exists
    /// (CKE's `wait-kubernetes`).
    WaitKubernetes {
        /// The control-plane node whose healthy apiserver is asked.
        apiserver: String,
    },
    /// Create or replace an object cke keeps (CKE's `create-*` / `update-*` operations of
    /// endpoints, the etcd Service and the DNS ConfigMaps), with the body it gets.
    KubeObject {
        /// The control-plane node whose healthy apiserver is used.
        apiserver: String,
        /// Which object.
        object: CkeObject,
        /// Create it (it is absent) or replace it (it differs).
        create: bool,
        /// The object as it is sent.
        body: serde_json::Value,
    },
    /// Server-side apply of a static or user resource (CKE's `resource-apply`), at `revision`.
    ResourceApply {
        /// The control-plane node whose healthy apiserver is used.
        apiserver: String,
        /// The resource key (`Kind/name`, `Kind/namespace/name`).
        key: String,
        /// Its revision (the `resource/<key>` ModRevision; a static resource's own revision).
        revision: i64,
        /// One of cke's own static resources (else a user resource of `ckecli resource set`).
        #[serde(rename = "static")]
        builtin: bool,
    },
    /// Cordon and delete `Node` objects that no declared node accounts for (CKE's `remove-node`).
    RemoveNode {
        /// The control-plane node whose healthy apiserver is used.
        apiserver: String,
        /// The names of the Nodes.
        nodes: Vec<String>,
    },
    /// Mark repair entry `index` draining at step `step`, evict the pods of Node `nodename` (a dry
    /// run first), cordoning it; a failure backs the entry off (CKE's `repair-drain-start`).
    RepairDrainStart {
        /// The control-plane node whose healthy apiserver is used.
        apiserver: String,
        /// The entry's index.
        index: i64,
        /// The machine's address.
        address: String,
        /// Its Node name.
        nodename: String,
        /// The step whose drain starts.
        step: usize,
    },
    /// Mark repair entry `index` watching at step `step` and run that step's repair command (with
    /// its retries and timeout); when every attempt fails the entry fails (CKE's `repair-execute`).
    RepairExecute {
        /// The entry's index.
        index: i64,
        /// The machine's address.
        address: String,
        /// The step whose command runs.
        step: usize,
    },
    /// Finish repair entry `index`: succeeded (after the success command, whose failure fails it)
    /// or failed (CKE's `repair-finish`).
    RepairFinish {
        /// The entry's index.
        index: i64,
        /// The machine's address.
        address: String,
        /// The health check passed (else every step ran without it passing).
        succeeded: bool,
    },
    /// Remove repair entry `index`, marked deleted, from the queue (CKE's `repair-dequeue`).
    RepairDequeue {
        /// The entry's index.
        index: i64,
        /// The machine's address.
        address: String,
    },
    /// Back repair entry `index` off: its drain ran out of time, or the queue was disabled while it
    /// drained (CKE's `repair-drain-timeout`).
    RepairDrainTimeout {
        /// The entry's index.
        index: i64,
        /// The machine's address.
        address: String,
    },
    /// Start draining the next reboot candidates: each entry `draining`, its Node cordoned and
    /// annotated, an eviction dry run, then the evictions; a failure backs the entry off.
    RebootDrainStart {
        /// The control-plane node whose healthy apiserver is used.
        apiserver: String,
        /// The entries.
        entries: Vec<QueueItem>,
    },
    /// Back off entries whose drain did not complete within `eviction_timeout_seconds`.
    RebootDrainTimeout {
        /// The entries.
        entries: Vec<QueueItem>,
    },
    /// Delete the pods of `OnDelete` DaemonSets on drained nodes (before their reboot).
    RebootDeleteDaemonsetPod {
        /// The control-plane node whose healthy apiserver is used.
        apiserver: String,
        /// The entries.
        entries: Vec<QueueItem>,
    },
    /// Mark drained entries `rebooting` and run `reboot_command` for each node.
    RebootReboot {
        /// The entries.
        entries: Vec<QueueItem>,
    },
    /// Remove entries whose node booted (the boot check said `true`) or is no longer declared.
    RebootDequeue {
        /// The entries.
        entries: Vec<QueueItem>,
    },
    /// Remove cancelled entries.
    RebootCancel {
        /// The entries.
        entries: Vec<QueueItem>,
    },
    /// Uncordon Nodes that cke cordoned for a reboot no longer in progress.
    RebootUncordon {
        /// The control-plane node whose healthy apiserver is used.
        apiserver: String,
        /// The names of the Nodes.
        nodes: Vec<String>,
    },
}

/// A queue entry an operation acts on: its index and its node's address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueItem {
    /// The entry's index.
    pub index: i64,
    /// The node's address.
    pub node: String,
}

fn item_nodes(entries: &[QueueItem]) -> Vec<String> {
    entries.iter().map(|e| e.node.clone()).collect()
}

/// The objects cke creates and replaces whole ([`OpKind::KubeObject`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CkeObject {
    /// Endpoints `default/kubernetes`.
    KubernetesEndpoints,
    /// EndpointSlice `default/kubernetes`.
    KubernetesEndpointSlice,
    /// Service `kube-system/cke-etcd`.
    EtcdService,
    /// Endpoints `kube-system/cke-etcd`.
    EtcdEndpoints,
    /// EndpointSlice `kube-system/cke-etcd`.
    EtcdEndpointSlice,
    /// ConfigMap `kube-system/cluster-dns`.
    ClusterDnsConfigMap,
    /// ConfigMap `kube-system/node-dns`.
    NodeDnsConfigMap,
}

impl CkeObject {
    /// CKE's operation name for creating (`create`) or replacing the object.
    pub fn op_name(self, create: bool) -> &'static str {
        use CkeObject::*;
        match (self, create) {
            (KubernetesEndpoints, true) => "create-kubernetes-endpoints",
            (KubernetesEndpoints, false) => "update-kubernetes-endpoints",
            (KubernetesEndpointSlice, true) => "create-kubernetes-endpointslice",
            (KubernetesEndpointSlice, false) => "update-kubernetes-endpointslice",
            (EtcdService, true) => "create-etcd-service",
            (EtcdService, false) => "update-etcd-service",
            (EtcdEndpoints, true) => "create-cke-etcd-endpoints",
            (EtcdEndpoints, false) => "update-cke-etcd-endpoints",
            (EtcdEndpointSlice, true) => "create-cke-etcd-endpointslice",
            (EtcdEndpointSlice, false) => "update-cke-etcd-endpointslice",
            (ClusterDnsConfigMap, true) => "create-cluster-dns-configmap",
            (ClusterDnsConfigMap, false) => "update-cluster-dns-configmap",
            (NodeDnsConfigMap, true) => "create-node-dns-configmap",
            (NodeDnsConfigMap, false) => "update-node-dns-configmap",
        }
    }

    /// `namespace/name` of the object.
    pub fn object_key(self) -> &'static str {
        use CkeObject::*;
        match self {
            KubernetesEndpoints | KubernetesEndpointSlice => "default/kubernetes",
            EtcdService | EtcdEndpoints | EtcdEndpointSlice => "kube-system/cke-etcd",
            ClusterDnsConfigMap => "kube-system/cluster-dns",
            NodeDnsConfigMap => "kube-system/node-dns",
        }
    }
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
            OpKind::Upgrade { .. } => "upgrade",
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
            OpKind::KubeApiserverRestart { .. } => "kube-apiserver-restart",
            OpKind::KubeControllerManagerBootstrap { .. } => "kube-controller-manager-bootstrap",
            OpKind::KubeControllerManagerRestart { .. } => "kube-controller-manager-restart",
            OpKind::KubeSchedulerBootstrap { .. } => "kube-scheduler-bootstrap",
            OpKind::KubeSchedulerRestart { .. } => "kube-scheduler-restart",
            OpKind::KubeletBootstrap { .. } => "kubelet-bootstrap",
            OpKind::KubeletRestart { .. } => "kubelet-restart",
            OpKind::KubeProxyBootstrap { .. } => "kube-proxy-bootstrap",
            OpKind::KubeProxyRestart { .. } => "kube-proxy-restart",
            OpKind::StopKubeProxy { .. } => "stop-kube-proxy",
            OpKind::StopKubeApiserver { .. } => "stop-kube-apiserver",
            OpKind::StopKubeControllerManager { .. } => "stop-kube-controller-manager",
            OpKind::StopKubeScheduler { .. } => "stop-kube-scheduler",
            OpKind::StopEtcd { .. } => "stop-etcd",
            OpKind::StopEtcdRivers { .. } => "stop-etcd-rivers",
            OpKind::UpdateNode { .. } => "update-node",
            OpKind::WaitKubernetes { .. } => "wait-kubernetes",
            OpKind::KubeObject { object, create, .. } => object.op_name(create),
            OpKind::RemoveNode { .. } => "remove-node",
            OpKind::ResourceApply { .. } => "resource-apply",
            OpKind::RepairDrainStart { .. } => "repair-drain-start",
            OpKind::RepairExecute { .. } => "repair-execute",
            OpKind::RepairFinish { .. } => "repair-finish",
            OpKind::RepairDequeue { .. } => "repair-dequeue",
            OpKind::RepairDrainTimeout { .. } => "repair-drain-timeout",
            OpKind::RebootDrainStart { .. } => "reboot-drain-start",
            OpKind::RebootDrainTimeout { .. } => "reboot-drain-timeout",
            OpKind::RebootDeleteDaemonsetPod { .. } => "reboot-delete-daemonset-pod",
            OpKind::RebootReboot { .. } => "reboot-reboot",
            OpKind::RebootDequeue { .. } => "reboot-dequeue",
            OpKind::RebootCancel { .. } => "reboot-cancel",
            OpKind::RebootUncordon { .. } => "reboot-uncordon",
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
            | OpKind::EtcdMarkMember { nodes }
            | OpKind::Upgrade { nodes, .. }
            | OpKind::KubeApiserverRestart { nodes }
            | OpKind::KubeControllerManagerBootstrap { nodes }
            | OpKind::KubeControllerManagerRestart { nodes }
            | OpKind::KubeSchedulerBootstrap { nodes }
            | OpKind::KubeSchedulerRestart { nodes }
            | OpKind::KubeletBootstrap { nodes }
            | OpKind::KubeletRestart { nodes }
            | OpKind::KubeProxyBootstrap { nodes }
            | OpKind::KubeProxyRestart { nodes }
            | OpKind::StopKubeProxy { nodes }
            | OpKind::StopKubeApiserver { nodes }
            | OpKind::StopKubeControllerManager { nodes }
            | OpKind::StopKubeScheduler { nodes }
            | OpKind::StopEtcd { nodes }
            | OpKind::StopEtcdRivers { nodes }
            | OpKind::UpdateNode { nodes, .. }
            | OpKind::RemoveNode { nodes, .. }
            | OpKind::RebootUncordon { nodes, .. } => nodes.clone(),
            OpKind::RebootDrainStart { entries, .. }
            | OpKind::RebootDrainTimeout { entries }
            | OpKind::RebootDeleteDaemonsetPod { entries, .. }
            | OpKind::RebootReboot { entries }
            | OpKind::RebootDequeue { entries }
            | OpKind::RebootCancel { entries } => item_nodes(entries),
            OpKind::WaitKubernetes { apiserver } | OpKind::KubeObject { apiserver, .. } => vec![apiserver.clone()],
            OpKind::ResourceApply { key, .. } => vec![key.clone()],
            OpKind::EtcdRemoveMember { node, .. }
            | OpKind::EtcdDestroyMember { node, .. }
            | OpKind::EtcdAddMember { node, .. }
            | OpKind::EtcdPromoteMember { node, .. }
            | OpKind::EtcdRestart { node } => vec![node.clone()],
            OpKind::RepairDrainStart { address, .. }
            | OpKind::RepairExecute { address, .. }
            | OpKind::RepairFinish { address, .. }
            | OpKind::RepairDequeue { address, .. }
            | OpKind::RepairDrainTimeout { address, .. } => vec![address.clone()],
        }
    }

    /// True for operations that change the managed etcd's membership.
    pub fn changes_membership(&self) -> bool {
        matches!(
            self.kind,
            OpKind::EtcdRemoveMember { .. }
                | OpKind::EtcdDestroyMember { id: Some(_), .. }
                | OpKind::EtcdAddMember { .. }
                | OpKind::EtcdPromoteMember { .. }
        )
    }
}
