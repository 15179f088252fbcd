//! The cluster declaration: CKE's `Cluster`, `Node`, `Taint`, `Reboot`, `Repair` and `Options`.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

/// Default name of the docker volume holding the managed etcd's data.
pub const DEFAULT_ETCD_VOLUME_NAME: &str = "etcd-cke";
/// Default CRI endpoint of the kubelet.
pub const DEFAULT_CRI_ENDPOINT: &str = "/run/containerd/containerd.sock";

fn is_false(b: &bool) -> bool {
    !*b
}

/// Reads `null` as the empty value. CKE writes its declaration from Go structs, where an empty list,
/// map or section comes out as `null` (`"labels": null`); a YAML key with no value is `null` too.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A Kubernetes cluster and the etcd cluster that serves it, as declared by the operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The Kubernetes cluster name.
    #[serde(default)]
    pub name: String,
    /// All nodes, control plane and workers.
    #[serde(default, deserialize_with = "null_default")]
    pub nodes: Vec<Node>,
    /// Taint control-plane nodes with `cke.cybozu.com/master`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub taint_control_plane: bool,
    /// Taint keys tolerated by control-plane selection (sabakan integration).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub control_plane_tolerations: Vec<String>,
    /// CIDR of Kubernetes Services.
    #[serde(default)]
    pub service_subnet: String,
    /// Upstream DNS server IP addresses.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub dns_servers: Vec<String>,
    /// Upstream DNS service as `namespace/name`.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub dns_service: String,
    /// Reboot queue settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot: Option<Reboot>,
    /// Repair queue settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
    /// Sabakan integration settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sabakan: Option<SabakanSettings>,
    /// REST mappings for custom resources whose CRDs may not be discoverable yet.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub trusted_rest_mappings: Vec<TrustedRestMapping>,
    /// Per-component options (always written: CKE reads `options.kubelet.cri_endpoint` and
    /// `options.etcd.volume_name` from the stored declaration without applying defaults).
    #[serde(default, deserialize_with = "null_default")]
    pub options: Options,
}

impl Cluster {
    /// A cluster with these nodes and defaults for everything else.
    pub fn new(name: &str, service_subnet: &str, nodes: Vec<Node>) -> Cluster {
        Cluster {
            name: name.into(),
            nodes,
            taint_control_plane: false,
            control_plane_tolerations: vec![],
            service_subnet: service_subnet.into(),
            dns_servers: vec![],
            dns_service: String::new(),
            reboot: None,
            repair: None,
            sabakan: None,
            trusted_rest_mappings: vec![],
            options: Options::default(),
        }
    }

    /// The control-plane nodes, in declaration order.
    pub fn control_planes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.control_plane)
    }

    /// The worker nodes, in declaration order.
    pub fn workers(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| !n.control_plane)
    }

    /// The node with this address, if declared.
    pub fn node(&self, address: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.address == address)
    }
}

/// A machine in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// IP address of the node; cke reaches it over SSH at this address.
    #[serde(default)]
    pub address: String,
    /// Overrides the node's name in Kubernetes (defaults to the address).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub hostname: String,
    /// SSH user name.
    #[serde(default)]
    pub user: String,
    /// Runs the control plane and a managed etcd member.
    #[serde(default, skip_serializing_if = "is_false")]
    pub control_plane: bool,
    /// Node annotations (added or updated, never removed).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, String>,
    /// Node labels (added or updated, never removed).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// Node taints (added or updated, never removed).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
}

impl Node {
    /// A node with no host name, labels, annotations or taints.
    pub fn new(address: &str, user: &str, control_plane: bool) -> Node {
        Node {
            address: address.into(),
            hostname: String::new(),
            user: user.into(),
            control_plane,
            annotations: Default::default(),
            labels: Default::default(),
            taints: vec![],
        }
    }

    /// The node's name in Kubernetes: `hostname` when set, the address otherwise.
    pub fn nodename(&self) -> &str {
        if self.hostname.is_empty() {
            &self.address
        } else {
            &self.hostname
        }
    }
}

/// A Kubernetes node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Taint {
    /// Taint key (a qualified name).
    #[serde(default)]
    pub key: String,
    /// Taint value (a label value).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`.
    #[serde(default)]
    pub effect: String,
}

/// The taint effects Kubernetes accepts.
pub const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// A Kubernetes label selector (`matchLabels`, `matchExpressions`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels that must match exactly.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub match_labels: BTreeMap<String, String>,
    /// Set-based requirements.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

impl LabelSelector {
    /// Whether an object with `labels` is selected, as Kubernetes decides (`In`: the label is
    /// present with one of the values; `NotIn`: absent or none of them; `Exists`; `DoesNotExist`).
    /// The empty selector selects everything. An unknown operator selects nothing (validation
    /// refuses it first).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| {
                let value = labels.get(&r.key);
                match r.operator.as_str() {
                    "In" => value.is_some_and(|v| r.values.contains(v)),
                    "NotIn" => value.is_none_or(|v| !r.values.contains(v)),
                    "Exists" => value.is_some(),
                    "DoesNotExist" => value.is_none(),
                    _ => false,
                }
            })
    }

    /// The selector in the syntax of the API's `labelSelector` query parameter (`a=b,c in (d,e),!f`),
    /// requirements sorted by key as Kubernetes renders them; empty for the empty selector (which
    /// selects everything).
    pub fn to_query(&self) -> String {
        let mut reqs: Vec<(String, String)> = self
            .match_labels
            .iter()
            .map(|(k, v)| (k.clone(), format!("{k}={v}")))
            .collect();
        for r in &self.match_expressions {
            let mut values = r.values.clone();
            values.sort();
            let text = match r.operator.as_str() {
                "In" => format!("{} in ({})", r.key, values.join(",")),
                "NotIn" => format!("{} notin ({})", r.key, values.join(",")),
                "Exists" => r.key.clone(),
                "DoesNotExist" => format!("!{}", r.key),
                other => format!("{} {other} ({})", r.key, values.join(",")),
            };
            reqs.push((r.key.clone(), text));
        }
        reqs.sort();
        reqs.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(",")
    }

    /// CKE's reading of an optional selector for `protected_namespaces` and `protected_job_pods`:
    /// unset selects everything, like the empty selector.
    pub fn or_everything(selector: &Option<LabelSelector>) -> LabelSelector {
        selector.clone().unwrap_or_default()
    }
}

/// One set-based requirement of a [`LabelSelector`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` and `NotIn`; empty for the others.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Reboot queue settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reboot {
    /// Command (and arguments) that starts a reboot; the node is appended.
    #[serde(default, deserialize_with = "null_default")]
    pub reboot_command: Vec<String>,
    /// Command that prints `true` once the node has booted.
    #[serde(default, deserialize_with = "null_default")]
    pub boot_check_command: Vec<String>,
    /// Deadline for eviction in seconds (positive; default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_timeout_seconds: Option<i64>,
    /// Deadline of the reboot command in seconds (0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout_seconds: Option<i64>,
    /// Retries of the reboot command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_retries: Option<i64>,
    /// Seconds between reboot command retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_interval: Option<i64>,
    /// Retries of eviction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict_retries: Option<i64>,
    /// Seconds between eviction retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict_interval: Option<i64>,
    /// Nodes rebooted at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_reboots: Option<i64>,
    /// Namespaces whose pods must be evicted gracefully (all when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_namespaces: Option<LabelSelector>,
    /// Running Job pods that must not be deleted: while one is on a node, the node is not drained
    /// (all Job pods when unset or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_job_pods: Option<LabelSelector>,
}

/// Repair queue settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repair {
    /// Procedures by machine type.
    #[serde(default, deserialize_with = "null_default")]
    pub repair_procedures: Vec<RepairProcedure>,
    /// Machines repaired at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_repairs: Option<i64>,
    /// Namespaces whose pods must be evicted gracefully (all when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_namespaces: Option<LabelSelector>,
    /// Retries of eviction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict_retries: Option<i64>,
    /// Seconds between eviction retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evict_interval: Option<i64>,
    /// Deadline for eviction in seconds (positive; default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eviction_timeout_seconds: Option<i64>,
    /// Running Job pods that must not be deleted: while one is on a node, the node is not drained
    /// (all Job pods when unset or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_job_pods: Option<LabelSelector>,
}

/// How to repair machines of some types.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairProcedure {
    /// Machine type names this procedure applies to.
    #[serde(default, deserialize_with = "null_default")]
    pub machine_types: Vec<String>,
    /// Operations by name.
    #[serde(default, deserialize_with = "null_default")]
    pub repair_operations: Vec<RepairOperation>,
}

/// One named repair operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairOperation {
    /// Operation name.
    #[serde(default, deserialize_with = "null_default")]
    pub operation: String,
    /// Steps run in order.
    #[serde(default, deserialize_with = "null_default")]
    pub repair_steps: Vec<RepairStep>,
    /// Command that checks the machine's health.
    #[serde(default, deserialize_with = "null_default")]
    pub health_check_command: Vec<String>,
    /// Deadline of the health check in seconds (0 = none; default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout_seconds: Option<i64>,
    /// Command run when the repair succeeded.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
    pub success_command: Vec<String>,
    /// Deadline of the success command in seconds (0 = none; default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_command_timeout: Option<i64>,
}

/// One step of a repair operation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairStep {
    /// Command and arguments that repair the machine.
    #[serde(default, deserialize_with = "null_default")]
    pub repair_command: Vec<String>,
    /// Deadline in seconds (0 = none; default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_timeout_seconds: Option<i64>,
    /// Retries of the command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_retries: Option<i64>,
    /// Seconds between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_interval: Option<i64>,
    /// Drain the node's pods before running the command.
    #[serde(default, skip_serializing_if = "is_false")]
    pub need_drain: bool,
    /// Seconds to watch for the machine to become healthy afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watch_seconds: Option<i64>,
}

/// Sabakan integration settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SabakanSettings {
    /// Taint key that marks spare machines.
    #[serde(default, deserialize_with = "null_default")]
    pub spare_node_taint_key: String,
}

/// A pre-registered REST mapping for a custom resource.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedRestMapping {
    /// API group.
    #[serde(default, deserialize_with = "null_default")]
    pub group: String,
    /// API version.
    #[serde(default, deserialize_with = "null_default")]
    pub version: String,
    /// Kind.
    #[serde(default, deserialize_with = "null_default")]
    pub kind: String,
    /// Plural resource name.
    #[serde(default, deserialize_with = "null_default")]
    pub resource: String,
    /// Namespace-scoped resource.
    #[serde(default, skip_serializing_if = "is_false")]
    pub namespaced: bool,
}

/// Per-component options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// The managed etcd.
    #[serde(default, deserialize_with = "null_default")]
    pub etcd: EtcdParams,
    /// The rivers in front of etcd on control-plane nodes.
    #[serde(
        default,
        deserialize_with = "null_default",
        rename = "etcd-rivers",
        skip_serializing_if = "ServiceParams::is_empty"
    )]
    pub etcd_rivers: ServiceParams,
    /// The rivers in front of the API servers on every node.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "ServiceParams::is_empty"
    )]
    pub rivers: ServiceParams,
    /// kube-apiserver.
    #[serde(
        default,
        deserialize_with = "null_default",
        rename = "kube-api",
        skip_serializing_if = "ApiServerParams::is_empty"
    )]
    pub kube_api: ApiServerParams,
    /// kube-controller-manager.
    #[serde(
        default,
        deserialize_with = "null_default",
        rename = "kube-controller-manager",
        skip_serializing_if = "ServiceParams::is_empty"
    )]
    pub kube_controller_manager: ServiceParams,
    /// kube-scheduler.
    #[serde(
        default,
        deserialize_with = "null_default",
        rename = "kube-scheduler",
        skip_serializing_if = "SchedulerParams::is_empty"
    )]
    pub kube_scheduler: SchedulerParams,
    /// kube-proxy.
    #[serde(
        default,
        deserialize_with = "null_default",
        rename = "kube-proxy",
        skip_serializing_if = "ProxyParams::is_empty"
    )]
    pub kube_proxy: ProxyParams,
    /// kubelet.
    #[serde(default, deserialize_with = "null_default")]
    pub kubelet: KubeletParams,
}

/// A bind mount into a component's container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Absolute path on the host.
    #[serde(default, deserialize_with = "null_default")]
    pub source: String,
    /// Absolute path in the container.
    #[serde(default, deserialize_with = "null_default")]
    pub destination: String,
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
    /// Mount propagation (`private`, `rprivate`, `shared`, `rshared`, `slave`, `rslave`).
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub propagation: String,
    /// SELinux relabelling: `z` or `Z`.
    #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
    pub selinux_label: String,
}

macro_rules! service_fields {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty = $d:expr,)* }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$fm])* pub $f: $t,)*
            /// Extra command-line arguments.
            #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
            pub extra_args: Vec<String>,
            /// Extra bind mounts.
            #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
            pub extra_binds: Vec<Mount>,
            /// Extra environment variables.
            #[serde(default, deserialize_with = "null_default", skip_serializing_if = "BTreeMap::is_empty")]
            pub extra_env: BTreeMap<String, String>,
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    $($f: $d,)*
                    extra_args: Vec::new(),
                    extra_binds: Vec::new(),
                    extra_env: BTreeMap::new(),
                }
            }
        }

        impl $name {
            /// True when nothing is set (all defaults).
            pub fn is_empty(&self) -> bool {
                *self == Self::default()
            }

            /// The generic part of these parameters.
            pub fn service_params(&self) -> ServiceParams {
                ServiceParams {
                    extra_args: self.extra_args.clone(),
                    extra_binds: self.extra_binds.clone(),
                    extra_env: self.extra_env.clone(),
                }
            }
        }
    };
}

service_fields! {
    /// Parameters common to every component.
    pub struct ServiceParams {}
}

fn default_volume_name() -> String {
    DEFAULT_ETCD_VOLUME_NAME.into()
}

fn default_cri_endpoint() -> String {
    DEFAULT_CRI_ENDPOINT.into()
}

/// Go leaves a string alone on `null`: the default stays.
fn null_as_volume_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(default_volume_name))
}

fn null_as_cri_endpoint<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_else(default_cri_endpoint))
}

service_fields! {
    /// Parameters of the managed etcd.
    pub struct EtcdParams {
        /// Volume holding etcd's data: `etcd-cke` when the key is absent (CKE's `NewCluster`).
        #[serde(default = "default_volume_name", deserialize_with = "null_as_volume_name")]
        pub volume_name: String = default_volume_name(),
    }
}

impl EtcdParams {
    /// The data volume's name, with the default applied.
    pub fn volume(&self) -> &str {
        if self.volume_name.is_empty() {
            DEFAULT_ETCD_VOLUME_NAME
        } else {
            &self.volume_name
        }
    }
}

service_fields! {
    /// Parameters of kube-apiserver.
    pub struct ApiServerParams {
        /// Write an audit log.
        #[serde(default, skip_serializing_if = "is_false")]
        pub audit_log_enabled: bool = false,
        /// Audit policy in YAML.
        #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
        pub audit_log_policy: String = String::new(),
        /// Audit log path (standard output when empty).
        #[serde(default, deserialize_with = "null_default", skip_serializing_if = "String::is_empty")]
        pub audit_log_path: String = String::new(),
    }
}

service_fields! {
    /// Parameters of kube-scheduler.
    pub struct SchedulerParams {
        /// A partial `KubeSchedulerConfiguration`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub config: Option<serde_json::Value> = None,
    }
}

service_fields! {
    /// Parameters of kube-proxy.
    pub struct ProxyParams {
        /// A partial `KubeProxyConfiguration`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub config: Option<serde_json::Value> = None,
        /// Do not run kube-proxy.
        #[serde(default, skip_serializing_if = "is_false")]
        pub disable: bool = false,
    }
}

service_fields! {
    /// Parameters of kubelet.
    pub struct KubeletParams {
        /// Taints added when the node registers or kubelet boots.
        #[serde(default, deserialize_with = "null_default", skip_serializing_if = "Vec::is_empty")]
        pub boot_taints: Vec<Taint> = Vec::new(),
        /// CNI configuration file written to `/etc/cni/net.d`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub cni_conf_file: Option<CniConfFile> = None,
        /// A partial `KubeletConfiguration`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub config: Option<serde_json::Value> = None,
        /// Path of the CRI socket: `/run/containerd/containerd.sock` when the key is absent (CKE's
        /// `NewCluster`); an explicit empty value is invalid, as in CKE.
        #[serde(default = "default_cri_endpoint", deserialize_with = "null_as_cri_endpoint")]
        pub cri_endpoint: String = default_cri_endpoint(),
        /// Update an outdated kubelet in place.
        #[serde(default, skip_serializing_if = "is_false")]
        pub in_place_update: bool = false,
    }
}

impl KubeletParams {
    /// The CRI endpoint, with the default applied.
    pub fn cri(&self) -> &str {
        if self.cri_endpoint.is_empty() {
            DEFAULT_CRI_ENDPOINT
        } else {
            &self.cri_endpoint
        }
    }
}

/// A CNI configuration file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CniConfFile {
    /// File name, ending in `.conf` or `.conflist`.
    #[serde(default, deserialize_with = "null_default")]
    pub name: String,
    /// JSON content.
    #[serde(default, deserialize_with = "null_default")]
    pub content: String,
}
