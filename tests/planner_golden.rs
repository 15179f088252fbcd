//! Golden planner cases as data: every `testdata/planner/*.yaml` holds a cluster declaration, the
//! constraints, the planner inputs, a probed status (written with shorthands) and the plan
//! `decide_ops` must return for them. One test runs them all and reports every failing case, with the
//! expected and the actual plan; the format is documented in `testdata/planner/README.md`.
//!
//! This file owns the case schema, the expansion of the shorthands into a `ClusterStatus` (container
//! params computed with `cke::planner::params`, as the operators compute them; Kubernetes components
//! from `cke::planner::current_component`, then changed as the shorthand says), and the comparison.
//! It must not encode planner rules itself: every expectation lives in the case files.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use serde_yaml::Value;

use cke::k8s::params::Component;
use cke::model::{
    parse_cluster, CkeObject, Cluster, ClusterStatus, Constraints, ContainerParams, EtcdClusterStatus, EtcdMember,
    EtcdNodeStatus, KubeComponentStatus, KubeNode, KubernetesStatus, Node, NodeStatus, RepairEntry, RepairQueueStatus,
    RepairStatus, RepairStepStatus, ServiceParams, ServiceStatus,
};
use cke::planner::params::*;
use cke::planner::{current_component, decide_ops, OpKind, Phase, Plan, PlanInputs};

/// The image an `outdated-image` container runs.
const OUTDATED_IMAGE: &str = "localhost/cke-outdated:golden";
/// The argument an `outdated-params` (builtin) or `outdated-extra` label carries beyond the current one.
const OUTDATED_ARG: &str = "--outdated-by-golden-case=true";
/// The `--container-runtime-endpoint` an `outdated-runtime-endpoint` kubelet label carries.
const OLD_RUNTIME_ENDPOINT: &str = "--container-runtime-endpoint=unix:///run/golden-old-runtime.sock";
/// The field an `outdated-config` configuration file carries beyond the desired one.
const OUTDATED_CONFIG_FIELD: &str = "outdatedByGoldenCase";
/// CKE's images (`images.go` at the CKE commit cke-reference.md names), for `cke` containers.
const CKE_ETCD_IMAGE: &str = "ghcr.io/cybozu/etcd:3.6.11.1";
const CKE_TOOLS_IMAGE: &str = "ghcr.io/cybozu-go/cke-tools:1.35.0";
/// Phases the planner cannot return today, so that no case can show them, with the reason.
const NOT_EMITTED: &[(Phase, &str)] = &[];

/// The `now` every case is planned at.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The case schema.

/// One case file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    /// What the case shows, and why the expectation is right.
    description: String,
    /// A cluster.yml declaration, parsed and validated as `ckecli cluster set` does.
    cluster: Value,
    /// CKE constraints (`control-plane-count`, ...); CKE's defaults when absent.
    #[serde(default)]
    constraints: Option<Constraints>,
    /// Planner inputs besides the declaration and the status.
    #[serde(default)]
    inputs: InputsSpec,
    /// What the probe saw.
    status: StatusSpec,
    /// The plan `decide_ops` must return.
    expect: Expect,
    /// CKE's plan for the same state, where cke-rs differs by design; documented, not compared.
    #[serde(default)]
    cke: Option<CkeExpect>,
}

/// What CKE's `DecideOps` returns for the case's state (as its `server/strategy_test.go` counts
/// operations: name and number of targets), and why cke-rs decides otherwise.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CkeExpect {
    phase: Phase,
    /// Each `{operation: NAME, targets: N}`.
    operations: Vec<CkeOp>,
    /// Why cke-rs differs (the rule of docs/etcd.md).
    why: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CkeOp {
    operation: String,
    targets: usize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputsSpec {
    /// `PlanInputs::etcd_bootstrapped_before`.
    #[serde(default)]
    etcd_bootstrapped_before: bool,
    /// `PlanInputs::images.etcd` (default: `Images::default()`).
    #[serde(default)]
    etcd_image: Option<String>,
    /// `PlanInputs::images.tools` (default: `Images::default()`).
    #[serde(default)]
    tools_image: Option<String>,
    /// `PlanInputs::images.kubernetes` (default: `Images::default()`).
    #[serde(default)]
    kubernetes_image: Option<String>,
    /// `PlanInputs::max_concurrent_updates` (default: CKE's 10); at least 1.
    #[serde(default)]
    max_concurrent_updates: Option<usize>,
    /// `PlanInputs::config_version` (default: the current one, "2").
    #[serde(default)]
    config_version: Option<String>,
    /// `PlanInputs::manage_kubernetes` (default true; false: `cke --test-without-kubernetes`).
    #[serde(default)]
    manage_kubernetes: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusSpec {
    /// Every declared node, by address: `unreachable` or a map of [`NodeSpec`] fields.
    nodes: BTreeMap<String, Value>,
    /// The managed etcd as a whole; absent: no member answers.
    #[serde(default)]
    etcd: Option<EtcdSpec>,
    /// What was read through the Kubernetes API; absent: read, every declared node registered.
    #[serde(default)]
    kubernetes: Option<KubernetesSpec>,
    /// The repair queue; absent: enabled and empty.
    #[serde(default)]
    repair_queue: Option<RepairQueueSpec>,
    /// The reboot queue; absent: enabled and empty.
    #[serde(default)]
    reboot_queue: Option<RebootQueueSpec>,
}

/// The reboot queue as read (`cke::model::RebootQueueStatus`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootQueueSpec {
    /// `reboots/disabled` is not `true`; default true.
    #[serde(default = "yes")]
    enabled: bool,
    /// The entries, in queue order, as CKE stores them (`index` may be a number; times RFC 3339).
    #[serde(default)]
    entries: Vec<Value>,
    /// Nodes of `draining` entries whose drain is complete.
    #[serde(default)]
    drain_completed: BTreeSet<String>,
    /// Nodes of `rebooting` entries whose boot check printed `true`.
    #[serde(default)]
    boot_checked: BTreeSet<String>,
}

/// The repair queue as the probe read it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepairQueueSpec {
    /// Processing is enabled; default true.
    #[serde(default = "yes")]
    enabled: bool,
    /// The entries, in queue order.
    #[serde(default)]
    entries: Vec<RepairEntrySpec>,
    /// Addresses whose health check printed `true`.
    #[serde(default)]
    repair_completed: BTreeSet<String>,
    /// Addresses whose drain completed.
    #[serde(default)]
    drain_completed: BTreeSet<String>,
}

/// One repair entry; what is left out takes the value of a fresh entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepairEntrySpec {
    /// Default: the entry's position in `entries`.
    #[serde(default)]
    index: Option<i64>,
    address: String,
    /// Default: as the probe fills it, the Node name of the declared node with this address, else
    /// empty.
    #[serde(default)]
    nodename: Option<String>,
    machine_type: String,
    operation: String,
    #[serde(default = "queued")]
    status: RepairStatus,
    #[serde(default)]
    step: usize,
    #[serde(default = "waiting")]
    step_status: RepairStepStatus,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    last_transition_time: Option<DateTime<Utc>>,
    #[serde(default)]
    drain_backoff_count: i64,
    #[serde(default)]
    drain_backoff_expire: Option<DateTime<Utc>>,
}

fn queued() -> RepairStatus {
    RepairStatus::Queued
}

fn waiting() -> RepairStepStatus {
    RepairStepStatus::Waiting
}

fn repair_queue(cluster: &Cluster, spec: Option<&RepairQueueSpec>) -> Result<RepairQueueStatus, String> {
    let Some(spec) = spec else {
        return Ok(RepairQueueStatus {
            enabled: true,
            ..Default::default()
        });
    };
    let entries = spec
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut entry = RepairEntry::new(&e.operation, &e.machine_type, &e.address, "");
            entry.index = e.index.unwrap_or(i as i64);
            match &e.nodename {
                Some(n) => entry.nodename = n.clone(),
                None => entry.fill_nodename(cluster),
            }
            entry.status = e.status;
            entry.step = e.step;
            entry.step_status = e.step_status;
            entry.deleted = e.deleted;
            entry.last_transition_time = e.last_transition_time;
            entry.drain_backoff_count = e.drain_backoff_count;
            entry.drain_backoff_expire = e.drain_backoff_expire;
            entry
        })
        .collect();
    for (field, set) in [
        ("repair_completed", &spec.repair_completed),
        ("drain_completed", &spec.drain_completed),
    ] {
        if let Some(a) = set.iter().find(|a| !spec.entries.iter().any(|e| &e.address == *a)) {
            return Err(format!(
                "status.repair_queue.{field}: {a} has no entry (the probe checks only the entries' machines)"
            ));
        }
    }
    Ok(RepairQueueStatus {
        enabled: spec.enabled,
        entries,
        repair_completed: spec.repair_completed.clone(),
        drain_completed: spec.drain_completed.clone(),
    })
}

/// The Kubernetes API as the probe read it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesSpec {
    /// The API was read (some apiserver answered); default true.
    #[serde(default = "yes")]
    api_read: bool,
    /// The registered `Node` objects, each a name (the Node with the attributes cke keeps for the
    /// declared node of that name: `cke::k8s::node::as_kept`) or a [`KubeNodeSpec`] map; default:
    /// every declared node by name (none when `api_read` is false).
    #[serde(default)]
    nodes: Option<Vec<Value>>,
    /// The ServiceAccount `kube-system/default` exists; default true.
    #[serde(default = "yes")]
    control_plane_ready: bool,
    /// Objects cke keeps that do not exist (`kubernetes-endpoints`, `kubernetes-endpoint-slice`,
    /// `etcd-service`, `etcd-endpoints`, `etcd-endpoint-slice`); the others are as cke last wrote
    /// them for this status (the kubernetes endpoints: control planes with a healthy apiserver ready,
    /// the rest not ready; the etcd endpoints: every control plane ready).
    #[serde(default)]
    missing: Vec<CkeObject>,
    /// Objects cke keeps that exist but are empty (no labels, subsets, endpoints or ports; no
    /// data).
    #[serde(default)]
    stale: Vec<CkeObject>,
    /// Control planes the kept `kubernetes` and `cke-etcd` endpoints list not ready besides those
    /// with an unhealthy apiserver (cke wrote them so for a reboot).
    #[serde(default)]
    not_ready: Vec<String>,
    /// Keys of static resources that do not exist (the others exist at their revision).
    #[serde(default)]
    missing_resources: Vec<String>,
    /// The ClusterIP of the Service `dns_service` names; default none (absent).
    #[serde(default)]
    dns_service_ip: Option<String>,
    /// The ClusterIP of Service `kube-system/cluster-dns`; default empty (absent: no node-dns
    /// ConfigMap is wanted or shown).
    #[serde(default)]
    cluster_dns_ip: String,
}

/// A `Node` object given exactly: what is left out is empty.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeNodeSpec {
    name: String,
    #[serde(default = "yes")]
    ready: bool,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    taints: Vec<cke::model::Taint>,
    #[serde(default)]
    unschedulable: bool,
}

/// A reachable node.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeSpec {
    /// Default `current`.
    #[serde(default)]
    rivers: Option<Svc>,
    /// Default `current` on control-plane nodes, `absent` on others.
    #[serde(default)]
    etcd_rivers: Option<Svc>,
    /// Default `absent`.
    #[serde(default)]
    etcd: Option<Svc>,
    /// The data volume exists; default: the etcd container exists.
    #[serde(default)]
    etcd_data: Option<bool>,
    /// The added-member marker exists; default: `etcd_data`.
    #[serde(default)]
    etcd_marker: Option<bool>,
    /// The Kubernetes components, each a [`KubeSvc`] word or a map of [`KubeSpec`] fields.
    /// Default: `current` for the node's role (control-plane components on control planes only,
    /// kube-proxy unless disabled), `absent` otherwise and when the Kubernetes image is unusable.
    #[serde(default)]
    kube_apiserver: Option<Value>,
    #[serde(default)]
    kube_controller_manager: Option<Value>,
    #[serde(default)]
    kube_scheduler: Option<Value>,
    #[serde(default)]
    kubelet: Option<Value>,
    #[serde(default)]
    kube_proxy: Option<Value>,
}

/// A Kubernetes component, in one word: the [`Svc`] words, plus health and configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum KubeSvc {
    /// Running the inputs' Kubernetes image with current params and configuration file; healthy.
    Current,
    /// As `current`, but its health check fails.
    Unhealthy,
    /// The container exists but has exited; not healthy.
    Stopped,
    /// No such container; not healthy.
    Absent,
    /// Running another image.
    OutdatedImage,
    /// The builtin params carry one more argument.
    OutdatedParams,
    /// The extra params carry one more argument.
    OutdatedExtra,
    /// Without a readable params label.
    NoParams,
    /// Scheduler, kubelet, kube-proxy: the running configuration file has one more field.
    OutdatedConfig,
    /// kubelet: the label's `--container-runtime-endpoint` is another one.
    OutdatedRuntimeEndpoint,
}

impl KubeSvc {
    fn running(self) -> bool {
        !matches!(self, KubeSvc::Stopped | KubeSvc::Absent)
    }
}

/// A Kubernetes component as a map, to give the health separately.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeSpec {
    state: KubeSvc,
    /// Default: running and not `unhealthy`.
    #[serde(default)]
    healthy: Option<bool>,
}

/// A container, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Svc {
    /// Running with the current image and the params the planner computes for this node.
    Current,
    /// etcd only: current, and the label also holds the `--initial-*` arguments of a bootstrap.
    CurrentWithInitialArgs,
    /// The container exists but has exited (current image and params).
    Stopped,
    /// No such container.
    Absent,
    /// Running with current params but another image.
    OutdatedImage,
    /// Running with the current image, but the builtin params carry one more argument.
    OutdatedParams,
    /// Running with the current image, but the extra params carry one more argument.
    OutdatedExtra,
    /// Running with the current image, without a readable params label.
    NoParams,
    /// etcd, rivers, etcd-rivers: as CKE runs it: CKE's image, CKE's built-in params in the label
    /// (for etcd with the `--initial-*` arguments of CKE's bootstrap), the declaration's extra.
    Cke,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EtcdSpec {
    /// A lease grant succeeded (required, so that no case is healthy or not by accident).
    healthy: bool,
    /// Members by node address: an id, or a map of [`MemberSpec`] fields.
    #[serde(default)]
    members: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberSpec {
    id: u64,
    /// A learner (non-voting).
    #[serde(default)]
    learner: bool,
    /// The member has started (its name, the address, is set); default true.
    #[serde(default = "yes")]
    started: bool,
    /// Its own read caught up with the health check's revision; default: healthy and started.
    #[serde(default)]
    in_sync: Option<bool>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    phase: Phase,
    /// In order; each an `OpKind` as `PlannedOp` serialises it (`operation` + its fields), plus an
    /// optional `reason` (exact) or `reason_contains`. A `kube-object` may leave out its `body` and
    /// give `ready` / `not_ready` instead: the IPs the Endpoints or EndpointSlice body lists so.
    operations: Vec<Value>,
    /// The note must contain this; absent: the note must be empty.
    #[serde(default)]
    note_contains: Option<String>,
}

/// An expected operation after checking.
#[derive(Debug)]
struct ExpectedOp {
    kind: OpKind,
    reason: Option<String>,
    reason_contains: Option<String>,
    /// The body was left out: not compared, but for these endpoint lists (ready, not ready).
    endpoints: Option<Listed>,
}

/// The ready and the not-ready IPs an expected endpoints operation lists, each optional.
type Listed = (Option<Vec<String>>, Option<Vec<String>>);

/// The ready and not-ready IPs of an Endpoints or EndpointSlice body (sorted).
fn listed(body: &serde_json::Value) -> (Vec<String>, Vec<String>) {
    let ips = |v: &serde_json::Value, key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["ip"].as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let (mut ready, mut not_ready) = (vec![], vec![]);
    if let Some(subset) = body["subsets"].get(0) {
        ready = ips(subset, "addresses");
        not_ready = ips(subset, "notReadyAddresses");
    }
    for e in body["endpoints"].as_array().into_iter().flatten() {
        let ip = e["addresses"][0].as_str().unwrap_or_default().to_string();
        if e["conditions"]["ready"].as_bool() == Some(true) {
            ready.push(ip);
        } else {
            not_ready.push(ip);
        }
    }
    ready.sort();
    not_ready.sort();
    (ready, not_ready)
}

// ---------------------------------------------------------------------------------------------
// Building the planner's inputs.

/// A case ready to plan.
struct Loaded {
    description: String,
    cluster: Cluster,
    constraints: Constraints,
    inputs: PlanInputs,
    status: ClusterStatus,
    phase: Phase,
    ops: Vec<ExpectedOp>,
    note_contains: Option<String>,
    /// The `expect` section as written, for the failure message.
    expect_text: String,
    /// CKE's plan, where cke-rs differs by design.
    cke: Option<CkeExpect>,
}

fn load_case(text: &str) -> Result<Loaded, String> {
    let case: Case = serde_yaml::from_str(text).map_err(|e| format!("does not parse: {e}"))?;
    let expect_text = {
        let v: Value = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        serde_yaml::to_string(&v["expect"]).map_err(|e| e.to_string())?
    };
    if case.description.trim().is_empty() {
        return Err("description: must say what the case shows".into());
    }
    let cluster_text = serde_yaml::to_string(&case.cluster).map_err(|e| format!("cluster: {e}"))?;
    let cluster = parse_cluster(&cluster_text).map_err(|e| format!("cluster: {e}"))?;
    let constraints = case.constraints.unwrap_or_default();
    constraints.validate().map_err(|e| format!("constraints: {e}"))?;

    let mut inputs = PlanInputs {
        images: Images::default(),
        etcd_bootstrapped_before: case.inputs.etcd_bootstrapped_before,
        ..Default::default()
    };
    if let Some(i) = case.inputs.etcd_image {
        inputs.images.etcd = i;
    }
    if let Some(i) = case.inputs.tools_image {
        inputs.images.tools = i;
    }
    if let Some(i) = case.inputs.kubernetes_image {
        inputs.images.kubernetes = i;
    }
    if let Some(v) = case.inputs.config_version {
        inputs.config_version = v;
    }
    if let Some(m) = case.inputs.manage_kubernetes {
        inputs.manage_kubernetes = m;
    }
    if let Some(c) = &case.cke {
        if c.why.trim().is_empty() {
            return Err("cke.why: must say why cke-rs differs from CKE here".into());
        }
    }
    if let Some(m) = case.inputs.max_concurrent_updates {
        if m == 0 {
            return Err("inputs.max_concurrent_updates: must be at least 1 (nodes changed per pass)".into());
        }
        inputs.max_concurrent_updates = m;
    }

    let status = build_status(&cluster, &inputs, &case.status)?;
    let ops = case
        .expect
        .operations
        .iter()
        .enumerate()
        .map(|(i, v)| expected_op(v).map_err(|e| format!("expect.operations[{i}]: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Loaded {
        description: case.description,
        cluster,
        constraints,
        inputs,
        status,
        phase: case.expect.phase,
        ops,
        note_contains: case.expect.note_contains,
        expect_text,
        cke: case.cke,
    })
}

fn build_status(cluster: &Cluster, inputs: &PlanInputs, spec: &StatusSpec) -> Result<ClusterStatus, String> {
    let mut status = ClusterStatus::default();
    for n in &cluster.nodes {
        if !spec.nodes.contains_key(&n.address) {
            return Err(format!(
                "status.nodes: declared node {} is missing (write `{}: unreachable` for a node the probe \
                 could not reach)",
                n.address, n.address
            ));
        }
    }
    for (address, v) in &spec.nodes {
        let path = format!("status.nodes.{address}");
        let node = cluster
            .node(address)
            .ok_or_else(|| format!("{path}: not a declared node (the probe only probes declared nodes)"))?;
        let st = match v {
            Value::String(s) if s == "unreachable" => NodeStatus {
                ssh_connected: false,
                ssh_error: "unreachable (golden case)".into(),
                ..Default::default()
            },
            Value::String(s) => {
                return Err(format!(
                    "{path}: {s:?} is not a node shorthand (write `unreachable`, or a map of rivers, \
                     etcd_rivers, etcd, etcd_data, etcd_marker, kube_apiserver, kube_controller_manager, \
                     kube_scheduler, kubelet, kube_proxy)"
                ))
            }
            Value::Null => node_status(cluster, inputs, node, &NodeSpec::default(), &path)?,
            other => {
                let ns: NodeSpec = serde_yaml::from_value(other.clone()).map_err(|e| format!("{path}: {e}"))?;
                node_status(cluster, inputs, node, &ns, &path)?
            }
        };
        status.nodes.insert(address.clone(), st);
    }
    if let Some(e) = &spec.etcd {
        status.etcd = etcd_status(e)?;
    }
    status.kubernetes = kubernetes_status(cluster, spec.kubernetes.as_ref())?;
    status.repair_queue = repair_queue(cluster, spec.repair_queue.as_ref())?;
    status.reboot_queue = reboot_queue_status(spec.reboot_queue.as_ref())?;
    if status.kubernetes.api_read {
        kept_objects(cluster, inputs, &mut status, spec.kubernetes.as_ref())?;
    }
    Ok(status)
}

/// The reboot queue of the spec; default enabled and empty.
fn reboot_queue_status(spec: Option<&RebootQueueSpec>) -> Result<cke::model::RebootQueueStatus, String> {
    let Some(q) = spec else {
        return Ok(cke::model::RebootQueueStatus {
            enabled: true,
            ..Default::default()
        });
    };
    let entries = q
        .entries
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let json = serde_json::to_value(v).map_err(|e| format!("status.reboot_queue.entries[{i}]: {e}"))?;
            serde_json::from_value(json).map_err(|e| format!("status.reboot_queue.entries[{i}]: {e}"))
        })
        .collect::<Result<Vec<cke::model::RebootQueueEntry>, String>>()?;
    Ok(cke::model::RebootQueueStatus {
        enabled: q.enabled,
        entries,
        drain_completed: q.drain_completed.clone(),
        boot_checked: q.boot_checked.clone(),
    })
}

/// Default: the API was read and every declared node is registered (ready), with the attributes
/// cke keeps on it.
fn kubernetes_status(cluster: &Cluster, spec: Option<&KubernetesSpec>) -> Result<KubernetesStatus, String> {
    let api_read = spec.is_none_or(|k| k.api_read);
    let kept = |name: &str| match cluster.nodes.iter().find(|n| n.nodename() == name) {
        Some(n) => cke::k8s::node::as_kept(n, cluster.taint_control_plane),
        None => KubeNode {
            name: name.into(),
            ready: true,
            ..Default::default()
        },
    };
    let nodes: Vec<KubeNode> = match spec.and_then(|k| k.nodes.clone()) {
        Some(v) if !api_read && !v.is_empty() => {
            return Err(
                "status.kubernetes.nodes: with api_read: false nothing is known of registered nodes (leave nodes out)"
                    .into(),
            )
        }
        Some(v) => v
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(name) => Ok(kept(name)),
                Value::Mapping(_) => {
                    let k: KubeNodeSpec = serde_yaml::from_value(item.clone())
                        .map_err(|e| format!("status.kubernetes.nodes[{i}]: {e}"))?;
                    Ok(KubeNode {
                        name: k.name,
                        ready: k.ready,
                        labels: k.labels,
                        annotations: k.annotations,
                        taints: k.taints,
                        unschedulable: k.unschedulable,
                    })
                }
                other => Err(format!(
                    "status.kubernetes.nodes[{i}]: a Node name or a map (name, ready, labels, annotations, taints, unschedulable), not {other:?}"
                )),
            })
            .collect::<Result<_, String>>()?,
        None if api_read => cluster.nodes.iter().map(|n| kept(n.nodename())).collect(),
        None => vec![],
    };
    let mut seen = BTreeSet::new();
    for n in &nodes {
        if !seen.insert(n.name.clone()) {
            return Err(format!("status.kubernetes.nodes: {} is listed twice", n.name));
        }
    }
    Ok(KubernetesStatus {
        api_read,
        nodes,
        ..Default::default()
    })
}

/// The objects cke keeps, as it last wrote them for this status, but those the spec says are
/// missing or stale.
fn kept_objects(
    cluster: &Cluster,
    inputs: &PlanInputs,
    status: &mut ClusterStatus,
    spec: Option<&KubernetesSpec>,
) -> Result<(), String> {
    use cke::k8s::endpoints::*;
    let (missing, stale) = spec.map_or((&[][..], &[][..]), |k| (&k.missing[..], &k.stale[..]));
    if let Some(o) = missing.iter().find(|o| stale.contains(o)) {
        return Err(format!("status.kubernetes: {o:?} is both missing and stale"));
    }
    let slice_api = cke::k8s::VersionSet::for_image(&inputs.images.kubernetes)
        .map(|r| r.set.endpoint_slice_api)
        .unwrap_or("discovery.k8s.io/v1");
    let marked = spec.map(|k| k.not_ready.clone()).unwrap_or_default();
    if let Some(a) = marked
        .iter()
        .find(|a| !cluster.control_planes().any(|n| &n.address == *a))
    {
        return Err(format!("status.kubernetes.not_ready: {a} is no control plane"));
    }
    let (mut ready, mut not_ready) = (vec![], vec![]);
    for n in cluster.control_planes() {
        if status.nodes[&n.address].kube_apiserver.is_healthy && !marked.contains(&n.address) {
            ready.push(n.address.clone());
        } else {
            not_ready.push(n.address.clone());
        }
    }
    let master = EndpointParams::kubernetes(ready, not_ready);
    let (etcd_not_ready, etcd_ready) = cluster
        .control_planes()
        .map(|n| n.address.clone())
        .partition(|a| marked.contains(a));
    let etcd = EndpointParams::etcd(etcd_ready, etcd_not_ready);
    let domain = cke::k8s::dns::cluster_domain(cluster);
    let dns_service_ip = spec.and_then(|k| k.dns_service_ip.clone());
    let upstreams = cke::k8s::dns::dns_upstreams(cluster, dns_service_ip.as_deref());
    let cluster_dns_ip = spec.map(|k| k.cluster_dns_ip.clone()).unwrap_or_default();
    let statics = cke::planner::static_definitions(inputs);
    let k = &mut status.kubernetes;
    // The static resources as cke applied them (revision and image annotations), but those the
    // spec names as missing.
    let missing_resources = spec.map(|k| k.missing_resources.clone()).unwrap_or_default();
    for key in &missing_resources {
        if !statics.iter().any(|d| &d.key == key) {
            return Err(format!(
                "status.kubernetes.missing_resources: {key} is no static resource"
            ));
        }
    }
    k.resources = statics
        .iter()
        .filter(|d| !missing_resources.contains(&d.key))
        .map(|d| {
            let mut annotations = BTreeMap::new();
            annotations.insert("cke.cybozu.com/revision".to_string(), d.revision.to_string());
            if let Some(image) = &d.image {
                annotations.insert("cke.cybozu.com/image".to_string(), image.clone());
            }
            (
                d.key.clone(),
                cke::model::ResourceStatus {
                    annotations,
                    has_been_ssa: true,
                },
            )
        })
        .collect();
    k.control_plane_ready = spec.is_none_or(|s| s.control_plane_ready);
    k.dns_service_ip = dns_service_ip;
    k.cluster_dns_ip = cluster_dns_ip.clone();
    k.cluster_dns_config = object(CkeObject::ClusterDnsConfigMap, missing, stale, || {
        let corefile = cke::k8s::dns::cluster_dns_corefile(&domain, &upstreams);
        [(cke::k8s::dns::COREFILE_KEY.to_string(), corefile)].into()
    });
    k.node_dns_config = if cluster_dns_ip.is_empty() {
        None
    } else {
        object(CkeObject::NodeDnsConfigMap, missing, stale, || {
            let conf = cke::k8s::dns::node_dns_unbound_conf(&domain, &cluster_dns_ip, &upstreams);
            [(cke::k8s::dns::UNBOUND_CONF_KEY.to_string(), conf)].into()
        })
    };
    // An object as cke wrote it, empty when stale, absent when missing.
    fn object<T: Default>(
        o: CkeObject,
        missing: &[CkeObject],
        stale: &[CkeObject],
        make: impl FnOnce() -> T,
    ) -> Option<T> {
        if missing.contains(&o) {
            None
        } else if stale.contains(&o) {
            Some(T::default())
        } else {
            Some(make())
        }
    }
    k.master_endpoints = object(CkeObject::KubernetesEndpoints, missing, stale, || {
        endpoints_view(&endpoints_body(&master))
    });
    k.master_endpoint_slice = object(CkeObject::KubernetesEndpointSlice, missing, stale, || {
        endpoint_slice_view(&endpoint_slice_body(&master, slice_api))
    });
    k.etcd_service = object(CkeObject::EtcdService, missing, stale, || {
        service_view(&etcd_service_body())
    });
    k.etcd_endpoints = object(CkeObject::EtcdEndpoints, missing, stale, || {
        endpoints_view(&endpoints_body(&etcd))
    });
    k.etcd_endpoint_slice = object(CkeObject::EtcdEndpointSlice, missing, stale, || {
        endpoint_slice_view(&endpoint_slice_body(&etcd, slice_api))
    });
    Ok(())
}

fn kube_spec(v: &Value, path: &str) -> Result<(KubeSvc, bool), String> {
    let (state, healthy) = match v {
        Value::String(_) => (
            serde_yaml::from_value::<KubeSvc>(v.clone()).map_err(|e| format!("{path}: {e}"))?,
            None,
        ),
        Value::Mapping(_) => {
            let s: KubeSpec = serde_yaml::from_value(v.clone()).map_err(|e| format!("{path}: {e}"))?;
            (s.state, s.healthy)
        }
        other => {
            return Err(format!(
                "{path}: a component is a word (current, stopped, ...) or a map {{state, healthy}}, not {other:?}"
            ))
        }
    };
    let default = state.running() && state != KubeSvc::Unhealthy;
    match healthy {
        Some(true) if !state.running() => Err(format!(
            "{path}: healthy: true needs a running container, not {state:?} (nothing answers a health check)"
        )),
        Some(true) if state == KubeSvc::Unhealthy => Err(format!(
            "{path}: state unhealthy with healthy: true contradicts itself (write state: current)"
        )),
        h => Ok((state, h.unwrap_or(default))),
    }
}

/// Expands a Kubernetes component's shorthand on `node`; `spec` absent gives the default.
fn kube_component(
    cluster: &Cluster,
    inputs: &PlanInputs,
    node: &Node,
    c: Component,
    spec: Option<&Value>,
    path: &str,
) -> Result<KubeComponentStatus, String> {
    let current = current_component(cluster, inputs, c, node);
    let (state, healthy) = match spec {
        Some(v) => kube_spec(v, path)?,
        None => {
            let wanted = (!c.is_control_plane() || node.control_plane)
                && !(c == Component::Proxy && cluster.options.kube_proxy.disable);
            if wanted && current.is_some() {
                (KubeSvc::Current, true)
            } else {
                (KubeSvc::Absent, false)
            }
        }
    };
    if state == KubeSvc::Absent {
        return Ok(KubeComponentStatus::default());
    }
    let mut st = current.ok_or_else(|| {
        format!(
            "{path}: {state:?} needs a usable Kubernetes image (inputs.kubernetes_image {:?}) and component \
             configuration; only absent can be written",
            inputs.images.kubernetes
        )
    })?;
    let params = st
        .service
        .params
        .as_mut()
        .expect("current_component gives a params label");
    match state {
        KubeSvc::Current | KubeSvc::Unhealthy | KubeSvc::Absent => {}
        KubeSvc::Stopped => st.service.running = false,
        KubeSvc::OutdatedImage => st.service.image = OUTDATED_IMAGE.into(),
        KubeSvc::OutdatedParams => params.builtin.extra_args.push(OUTDATED_ARG.into()),
        KubeSvc::OutdatedExtra => params.extra.extra_args.push(OUTDATED_ARG.into()),
        KubeSvc::NoParams => st.service.params = None,
        KubeSvc::OutdatedConfig => {
            let Some(serde_json::Value::Object(config)) = st.config.as_mut() else {
                return Err(format!(
                    "{path}: outdated-config is for the components with a configuration file (kube_scheduler, \
                     kubelet, kube_proxy)"
                ));
            };
            config.insert(OUTDATED_CONFIG_FIELD.into(), serde_json::Value::Bool(true));
        }
        KubeSvc::OutdatedRuntimeEndpoint => {
            let arg = (c == Component::Kubelet)
                .then(|| {
                    params
                        .builtin
                        .extra_args
                        .iter_mut()
                        .find(|a| a.starts_with("--container-runtime-endpoint="))
                })
                .flatten()
                .ok_or_else(|| format!("{path}: outdated-runtime-endpoint is for the kubelet only"))?;
            *arg = OLD_RUNTIME_ENDPOINT.into();
        }
    }
    st.is_healthy = healthy;
    Ok(st)
}

fn node_status(
    cluster: &Cluster,
    inputs: &PlanInputs,
    node: &Node,
    spec: &NodeSpec,
    path: &str,
) -> Result<NodeStatus, String> {
    let cps: Vec<&Node> = cluster.control_planes().collect();
    let cp_addresses: Vec<String> = cps.iter().map(|n| n.address.clone()).collect();
    let rivers = service(
        spec.rivers.unwrap_or(Svc::Current),
        &inputs.images.tools,
        rivers_builtin_params(&cps, API_SERVER_PORT, RIVERS_LISTEN_PORT),
        None,
        cluster.options.rivers.clone(),
        (
            CKE_TOOLS_IMAGE,
            cke_rivers_params(&cp_addresses, API_SERVER_PORT, RIVERS_LISTEN_PORT),
        ),
    )
    .map_err(|e| format!("{path}.rivers: {e}"))?;
    let etcd_rivers = service(
        spec.etcd_rivers
            .unwrap_or(if node.control_plane { Svc::Current } else { Svc::Absent }),
        &inputs.images.tools,
        rivers_builtin_params(&cps, ETCD_CLIENT_PORT, ETCD_RIVERS_LISTEN_PORT),
        None,
        cluster.options.etcd_rivers.clone(),
        (
            CKE_TOOLS_IMAGE,
            cke_rivers_params(&cp_addresses, ETCD_CLIENT_PORT, ETCD_RIVERS_LISTEN_PORT),
        ),
    )
    .map_err(|e| format!("{path}.etcd_rivers: {e}"))?;
    let volume = cluster.options.etcd.volume();
    let etcd = service(
        spec.etcd.unwrap_or(Svc::Absent),
        &inputs.images.etcd,
        etcd_builtin_params(node, volume, None),
        Some(etcd_builtin_params(
            node,
            volume,
            Some((&cp_addresses, InitialClusterState::New)),
        )),
        cluster.options.etcd.service_params(),
        (CKE_ETCD_IMAGE, cke_etcd_params(&node.address, &cp_addresses)),
    )
    .map_err(|e| format!("{path}.etcd: {e}"))?;
    let has_data = spec.etcd_data.unwrap_or(etcd.exists);
    let is_added_member = spec.etcd_marker.unwrap_or(has_data);
    let kube = |c: Component| -> Result<KubeComponentStatus, String> {
        let (field, spec) = match c {
            Component::ApiServer => ("kube_apiserver", &spec.kube_apiserver),
            Component::ControllerManager => ("kube_controller_manager", &spec.kube_controller_manager),
            Component::Scheduler => ("kube_scheduler", &spec.kube_scheduler),
            Component::Kubelet => ("kubelet", &spec.kubelet),
            Component::Proxy => ("kube_proxy", &spec.kube_proxy),
        };
        kube_component(cluster, inputs, node, c, spec.as_ref(), &format!("{path}.{field}"))
    };
    Ok(NodeStatus {
        ssh_connected: true,
        ssh_error: String::new(),
        etcd: EtcdNodeStatus {
            service: etcd,
            has_data,
            is_added_member,
        },
        rivers,
        etcd_rivers,
        kube_apiserver: kube(Component::ApiServer)?,
        kube_controller_manager: kube(Component::ControllerManager)?,
        kube_scheduler: kube(Component::Scheduler)?,
        kubelet: kube(Component::Kubelet)?,
        kube_proxy: kube(Component::Proxy)?,
    })
}

/// CKE's built-in params of etcd (`op/etcd/common.go` BuiltInParams) as its bootstrap starts a
/// member of the control planes `cps`: the label keeps the `--initial-*` arguments. The data volume
/// is a `--mount` option, not a bind in the params.
fn cke_etcd_params(address: &str, cps: &[String]) -> ServiceParams {
    let pki = |f: &str| format!("/etc/etcd/pki/{f}");
    let initial: Vec<String> = cps.iter().map(|a| format!("{a}=https://{a}:2380")).collect();
    let args = vec![
        format!("--name={address}"),
        "--listen-peer-urls=https://0.0.0.0:2380".into(),
        "--listen-client-urls=https://0.0.0.0:2379".into(),
        format!("--advertise-client-urls=https://{address}:2379"),
        format!("--cert-file={}", pki("server.crt")),
        format!("--key-file={}", pki("server.key")),
        "--client-cert-auth=true".into(),
        format!("--trusted-ca-file={}", pki("ca-client.crt")),
        format!("--peer-cert-file={}", pki("peer.crt")),
        format!("--peer-key-file={}", pki("peer.key")),
        "--peer-client-cert-auth=true".into(),
        format!("--peer-trusted-ca-file={}", pki("ca-peer.crt")),
        "--enable-pprof=true".into(),
        "--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true".into(),
        "--corrupt-check-time=3h".into(),
        format!("--initial-advertise-peer-urls=https://{address}:2380"),
        format!("--initial-cluster={}", initial.join(",")),
        "--initial-cluster-token=cke".into(),
        "--initial-cluster-state=new".into(),
    ];
    ServiceParams {
        extra_args: args,
        extra_binds: vec![cke::model::Mount {
            source: "/etc/etcd/pki".into(),
            destination: "/etc/etcd/pki".into(),
            read_only: true,
            selinux_label: "Z".into(),
            ..Default::default()
        }],
        extra_env: Default::default(),
    }
}

/// CKE's built-in params of rivers and etcd-rivers (`op/rivers_boot.go` RiversParams).
fn cke_rivers_params(cps: &[String], upstream_port: u16, listen_port: u16) -> ServiceParams {
    let ups: Vec<String> = cps.iter().map(|a| format!("{a}:{upstream_port}")).collect();
    ServiceParams {
        extra_args: vec![
            "rivers".into(),
            format!("--upstreams={}", ups.join(",")),
            format!("--listen=127.0.0.1:{listen_port}"),
        ],
        ..Default::default()
    }
}

/// Expands a shorthand. `with_initial` is the builtin params with `--initial-*` arguments, for the
/// services that have them (etcd); `cke` the image and built-in params CKE runs it with.
fn service(
    svc: Svc,
    image: &str,
    builtin: ServiceParams,
    with_initial: Option<ServiceParams>,
    extra: ServiceParams,
    cke: (&str, ServiceParams),
) -> Result<ServiceStatus, String> {
    let running = |image: &str, builtin: ServiceParams, extra: ServiceParams| ServiceStatus {
        exists: true,
        running: true,
        image: image.into(),
        params: Some(ContainerParams { builtin, extra }),
    };
    let more = |mut p: ServiceParams| {
        p.extra_args.push(OUTDATED_ARG.into());
        p
    };
    Ok(match svc {
        Svc::Current => running(image, builtin, extra),
        Svc::CurrentWithInitialArgs => {
            let b = with_initial.ok_or("current-with-initial-args is only for etcd (no other container has them)")?;
            running(image, b, extra)
        }
        Svc::Stopped => ServiceStatus {
            running: false,
            ..running(image, builtin, extra)
        },
        Svc::Absent => ServiceStatus::default(),
        Svc::OutdatedImage => running(OUTDATED_IMAGE, builtin, extra),
        Svc::OutdatedParams => running(image, more(builtin), extra),
        Svc::OutdatedExtra => running(image, builtin, more(extra)),
        Svc::NoParams => ServiceStatus {
            params: None,
            ..running(image, builtin, extra)
        },
        Svc::Cke => running(cke.0, cke.1, extra),
    })
}

fn etcd_status(spec: &EtcdSpec) -> Result<EtcdClusterStatus, String> {
    let mut st = EtcdClusterStatus {
        is_healthy: spec.healthy,
        members: BTreeMap::new(),
        in_sync_members: BTreeSet::new(),
    };
    for (address, v) in &spec.members {
        let path = format!("status.etcd.members.{address}");
        let m: MemberSpec = match v {
            Value::Number(n) => MemberSpec {
                id: n
                    .as_u64()
                    .ok_or_else(|| format!("{path}: a member id is a non-negative integer, not {n}"))?,
                learner: false,
                started: true,
                in_sync: None,
            },
            other => serde_yaml::from_value(other.clone()).map_err(|e| format!("{path}: {e}"))?,
        };
        let in_sync = m.in_sync.unwrap_or(spec.healthy && m.started);
        // What the probe can report (managed_etcd::cluster_status): in-sync checks run only after a
        // successful health check, and only against started members (those with a client URL).
        if in_sync && !spec.healthy {
            return Err(format!(
                "{path}: in_sync needs healthy: true (no revision to compare with)"
            ));
        }
        if in_sync && !m.started {
            return Err(format!(
                "{path}: in_sync needs a started member (an unstarted one has no endpoint)"
            ));
        }
        st.members.insert(
            address.clone(),
            EtcdMember {
                id: m.id,
                name: if m.started { address.clone() } else { String::new() },
                is_learner: m.learner,
            },
        );
        if in_sync {
            st.in_sync_members.insert(address.clone());
        }
    }
    Ok(st)
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Mapping(m) => Value::Mapping(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

fn expected_op(v: &Value) -> Result<ExpectedOp, String> {
    let Value::Mapping(m) = v else {
        return Err("an operation is a map: {operation: NAME, ...fields}".into());
    };
    let mut m = m.clone();
    let text = |m: &mut serde_yaml::Mapping, key: &str| -> Result<Option<String>, String> {
        match m.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!("{key}: a string, not {other:?}")),
        }
    };
    let reason = text(&mut m, "reason")?;
    let reason_contains = text(&mut m, "reason_contains")?;
    if reason.is_some() && reason_contains.is_some() {
        return Err("give reason or reason_contains, not both".into());
    }
    let list = |m: &mut serde_yaml::Mapping, key: &str| -> Result<Option<Vec<String>>, String> {
        m.remove(key)
            .map(|v| {
                let mut l: Vec<String> = serde_yaml::from_value(v).map_err(|e| format!("{key}: {e}"))?;
                l.sort();
                Ok(l)
            })
            .transpose()
    };
    let mut endpoints = None;
    if m.get("operation").and_then(Value::as_str) == Some("kube-object") && !m.contains_key("body") {
        endpoints = Some((list(&mut m, "ready")?, list(&mut m, "not_ready")?));
        m.insert("body".into(), Value::Mapping(Default::default()));
    }
    let written = strip_nulls(Value::Mapping(m));
    let kind: OpKind = serde_yaml::from_value(written.clone()).map_err(|e| e.to_string())?;
    // OpKind ignores unknown fields: a field that does not come back is a typo.
    let back = strip_nulls(serde_yaml::to_value(&kind).map_err(|e| e.to_string())?);
    if let (Value::Mapping(w), Value::Mapping(b)) = (&written, &back) {
        for k in w.keys() {
            if !b.contains_key(k) {
                return Err(format!(
                    "unknown field {} for operation {}",
                    serde_yaml::to_string(k).unwrap_or_default().trim(),
                    serde_yaml::to_string(&b["operation"]).unwrap_or_default().trim()
                ));
            }
        }
    }
    Ok(ExpectedOp {
        kind,
        reason,
        reason_contains,
        endpoints,
    })
}

// ---------------------------------------------------------------------------------------------
// Running.

/// Compares the plan with the expectation; `Err` lists every difference.
fn check(l: &Loaded, plan: &Plan) -> Result<(), Vec<String>> {
    let mut diffs = Vec::new();
    if plan.phase != l.phase {
        diffs.push(format!("phase: expected {}, got {}", l.phase, plan.phase));
    }
    if plan.ops.len() != l.ops.len() {
        diffs.push(format!("operations: expected {}, got {}", l.ops.len(), plan.ops.len()));
    }
    for (i, (want, got)) in l.ops.iter().zip(&plan.ops).enumerate() {
        let mut got_kind = got.kind.clone();
        if let (Some((ready, not_ready)), OpKind::KubeObject { body, .. }) = (&want.endpoints, &mut got_kind) {
            let (r, n) = listed(body);
            if ready.as_ref().is_some_and(|w| *w != r) || not_ready.as_ref().is_some_and(|w| *w != n) {
                diffs.push(format!(
                    "operations[{i}]: expected ready {ready:?}, not ready {not_ready:?}; the body lists ready {r:?}, not ready {n:?}"
                ));
            }
            *body = serde_json::json!({});
        }
        if want.kind != got_kind {
            diffs.push(format!("operations[{i}]: expected {:?}, got {:?}", want.kind, got_kind));
        }
        if let Some(r) = &want.reason {
            if *r != got.reason {
                diffs.push(format!("operations[{i}].reason: expected {r:?}, got {:?}", got.reason));
            }
        }
        if let Some(r) = &want.reason_contains {
            if !got.reason.contains(r.as_str()) {
                diffs.push(format!(
                    "operations[{i}].reason: {:?} does not contain {r:?}",
                    got.reason
                ));
            }
        }
    }
    match &l.note_contains {
        None if !plan.note.is_empty() => diffs.push(format!("note: expected none, got {:?}", plan.note)),
        Some(n) if !plan.note.contains(n.as_str()) => {
            diffs.push(format!("note: {:?} does not contain {n:?}", plan.note))
        }
        _ => {}
    }
    // A case that shows CKE's plan beside cke-rs's must show a difference: phase, or operations
    // by name and number of targets (what CKE's strategy_test.go compares).
    if let Some(c) = &l.cke {
        let ours: Vec<(&str, usize)> = plan.ops.iter().map(|o| (o.name(), o.targets().len())).collect();
        let theirs: Vec<(&str, usize)> = c.operations.iter().map(|o| (o.operation.as_str(), o.targets)).collect();
        if c.phase == plan.phase && ours == theirs {
            diffs.push(format!(
                "cke: CKE's plan ({} {theirs:?}) is cke-rs's too; a cke section shows a difference by design",
                c.phase
            ));
        }
    }
    if plan.planned_at != now() {
        diffs.push(format!("planned_at: expected {}, got {}", now(), plan.planned_at));
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs)
    }
}

/// The outcome of one directory.
struct Report {
    /// Case file → the phase it expects, for the cases that loaded.
    phases: BTreeMap<PathBuf, Phase>,
    /// One message per failing case (unparsable, or a plan that differs).
    failures: Vec<String>,
}

/// Runs every case in `dir`. `Err` when the directory cannot be read, holds no case, or holds a file
/// that is neither a case (`*.yaml`) nor the README.
fn run_dir(dir: &Path) -> Result<Report, String> {
    let mut files = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", dir.display()))?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if name.ends_with(".yaml") {
            files.push(path);
        } else if name != "README.md" {
            return Err(format!(
                "{}: not a case file (cases end in .yaml; nothing else belongs in {})",
                path.display(),
                dir.display()
            ));
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no case files (*.yaml)", dir.display()));
    }
    let mut report = Report {
        phases: BTreeMap::new(),
        failures: Vec::new(),
    };
    for path in files {
        let shown = path
            .strip_prefix(env!("CARGO_MANIFEST_DIR"))
            .unwrap_or(&path)
            .display()
            .to_string();
        let loaded = std::fs::read_to_string(&path)
            .map_err(|e| e.to_string())
            .and_then(|t| load_case(&t));
        let l = match loaded {
            Ok(l) => l,
            Err(e) => {
                report.failures.push(format!("{shown}: {e}"));
                continue;
            }
        };
        report.phases.insert(path.clone(), l.phase);
        let plan = decide_ops(&l.cluster, &l.status, &l.constraints, &l.inputs, now());
        if let Err(diffs) = check(&l, &plan) {
            let mut msg = format!("{shown}: {}\n", l.description.trim());
            for d in diffs {
                let _ = writeln!(msg, "  - {d}");
            }
            let _ = write!(
                msg,
                "  expected:\n{}  actual:\n{}",
                indent(&l.expect_text),
                indent(&serde_yaml::to_string(&plan).unwrap_or_else(|e| e.to_string()))
            );
            report.failures.push(msg);
        }
    }
    Ok(report)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn fail_message(report: &Report) -> String {
    format!(
        "{} golden planner case(s) failed:\n\n{}",
        report.failures.len(),
        report.failures.join("\n")
    )
}

#[test]
fn golden_planner_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/planner");
    let report = run_dir(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.failures.is_empty(), "{}", fail_message(&report));

    // Every phase the planner can return has a case; a phase listed as not emitted has none.
    let seen: BTreeSet<&str> = report.phases.values().map(|p| p.as_str()).collect();
    let mut problems = Vec::new();
    for phase in Phase::ALL {
        let exempt = NOT_EMITTED.iter().find(|(p, _)| *p == phase);
        match (seen.contains(phase.as_str()), exempt) {
            (false, None) => problems.push(format!("no case expects phase {phase}")),
            (true, Some((_, why))) => problems.push(format!(
                "a case expects phase {phase}, listed as never returned ({why}): update NOT_EMITTED"
            )),
            _ => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(report.phases.len() >= 20, "only {} cases", report.phases.len());
}

// ---------------------------------------------------------------------------------------------
// The runner itself: it must fail when it should.

const FRESH_CASE: &str = r#"
description: a fresh cluster bootstraps etcd on its only control plane
cluster:
  name: t
  service_subnet: 10.96.0.0/16
  nodes:
    - {address: 10.0.0.1, user: cybozu, control_plane: true}
status:
  nodes:
    10.0.0.1: {}
expect:
  phase: etcd-boot
  operations:
    - {operation: etcd-bootstrap, nodes: [10.0.0.1]}
"#;

fn temp_dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

#[test]
fn runner_passes_a_right_case() {
    let dir = temp_dir_with(&[("fresh.yaml", FRESH_CASE)]);
    let report = run_dir(dir.path()).unwrap();
    assert!(report.failures.is_empty(), "{}", fail_message(&report));
}

#[test]
fn runner_fails_on_an_empty_directory_and_on_stray_files() {
    let dir = temp_dir_with(&[]);
    let e = run_dir(dir.path()).err().expect("an empty directory must fail");
    assert!(e.contains("no case files"), "{e}");
    let dir = temp_dir_with(&[("README.md", "# cases\n")]);
    assert!(run_dir(dir.path()).is_err(), "a README alone is no case");
    let dir = temp_dir_with(&[("fresh.yaml", FRESH_CASE), ("typo.yml", FRESH_CASE)]);
    let e = run_dir(dir.path())
        .err()
        .expect("a .yml file must fail, not be skipped");
    assert!(e.contains("typo.yml") && e.contains("not a case file"), "{e}");
}

#[test]
fn runner_fails_on_unknown_fields_and_bad_shorthands() {
    let bad = [
        (
            "top.yaml",
            FRESH_CASE.replace("expect:", "expected:"),
            "unknown field `expected`",
        ),
        (
            "node.yaml",
            FRESH_CASE.replace("10.0.0.1: {}", "10.0.0.1: {etcd_dat: true}"),
            "unknown field `etcd_dat`",
        ),
        (
            "svc.yaml",
            FRESH_CASE.replace("10.0.0.1: {}", "10.0.0.1: {rivers: runing}"),
            "unknown variant `runing`",
        ),
        (
            "op.yaml",
            FRESH_CASE.replace("nodes: [10.0.0.1]}", "nodes: [10.0.0.1], node: 10.0.0.1}"),
            "unknown field node for operation etcd-bootstrap",
        ),
        (
            "opname.yaml",
            FRESH_CASE.replace("etcd-bootstrap,", "etcd-bootstrapp,"),
            "etcd-bootstrapp",
        ),
        (
            "cluster.yaml",
            FRESH_CASE.replace("service_subnet:", "service_subnett:"),
            "cluster:",
        ),
        (
            "missing.yaml",
            FRESH_CASE.replace(
                "control_plane: true}",
                "control_plane: true}\n    - {address: 10.0.0.2, user: cybozu}",
            ),
            "declared node 10.0.0.2 is missing",
        ),
        (
            "kubeword.yaml",
            FRESH_CASE.replace("10.0.0.1: {}", "10.0.0.1: {kubelet: runing}"),
            "unknown variant `runing`",
        ),
        (
            "kubefield.yaml",
            FRESH_CASE.replace("10.0.0.1: {}", "10.0.0.1: {kubelet: {state: current, healty: true}}"),
            "unknown field `healty`",
        ),
        (
            "kubehealthy.yaml",
            FRESH_CASE.replace(
                "10.0.0.1: {}",
                "10.0.0.1: {kube_apiserver: {state: stopped, healthy: true}}",
            ),
            "healthy: true needs a running container",
        ),
        (
            "kubeconfig.yaml",
            FRESH_CASE.replace("10.0.0.1: {}", "10.0.0.1: {kube_apiserver: outdated-config}"),
            "status.nodes.10.0.0.1.kube_apiserver: outdated-config is for the components with a configuration",
        ),
        (
            "runtime.yaml",
            FRESH_CASE.replace("10.0.0.1: {}", "10.0.0.1: {kube_proxy: outdated-runtime-endpoint}"),
            "outdated-runtime-endpoint is for the kubelet only",
        ),
        (
            "kubeapi.yaml",
            FRESH_CASE.replace(
                "    10.0.0.1: {}\n",
                "    10.0.0.1: {}\n  kubernetes: {api_read: false, nodes: [10.0.0.1]}\n",
            ),
            "with api_read: false nothing is known",
        ),
        (
            "kubespec.yaml",
            FRESH_CASE.replace(
                "    10.0.0.1: {}\n",
                "    10.0.0.1: {}\n  kubernetes: {apiread: true}\n",
            ),
            "unknown field `apiread`",
        ),
        (
            "maxzero.yaml",
            FRESH_CASE.replace("status:", "inputs: {max_concurrent_updates: 0}\nstatus:"),
            "inputs.max_concurrent_updates: must be at least 1",
        ),
        (
            "badimage.yaml",
            FRESH_CASE
                .replace("status:", "inputs: {kubernetes_image: \"localhost/k:latest\"}\nstatus:")
                .replace("10.0.0.1: {}", "10.0.0.1: {kubelet: stopped}"),
            "kubelet: Stopped needs a usable Kubernetes image",
        ),
        (
            "ckesame.yaml",
            format!(
                "{FRESH_CASE}cke:\n  phase: etcd-boot\n  operations: [{{operation: etcd-bootstrap, targets: 1}}]\n  why: none\n"
            ),
            "a cke section shows a difference by design",
        ),
        (
            "ckewhy.yaml",
            format!("{FRESH_CASE}cke:\n  phase: completed\n  operations: []\n  why: \" \"\n"),
            "cke.why: must say why",
        ),
        (
            "insync.yaml",
            FRESH_CASE.replace(
                "    10.0.0.1: {}\n",
                "    10.0.0.1: {}\n  etcd:\n    healthy: false\n    members:\n      10.0.0.1: {id: 1, in_sync: true}\n",
            ),
            "in_sync needs healthy: true",
        ),
    ];
    for (name, text, want) in &bad {
        let dir = temp_dir_with(&[(name, text)]);
        let report = run_dir(dir.path()).unwrap();
        assert_eq!(report.failures.len(), 1, "{name} must fail");
        assert!(
            report.failures[0].contains(name) && report.failures[0].contains(want),
            "{name}: expected an error containing {want:?}, got: {}",
            report.failures[0]
        );
    }
}

#[test]
fn runner_reports_every_wrong_expectation_with_both_plans() {
    let wrong_phase = FRESH_CASE.replace("phase: etcd-boot", "phase: etcd-start");
    let wrong_nodes = FRESH_CASE.replace("nodes: [10.0.0.1]", "nodes: [10.0.0.2]");
    let unexpected_note = FRESH_CASE.replace("operations:", "note_contains: never\n  operations:");
    let dir = temp_dir_with(&[
        ("a.yaml", &wrong_phase),
        ("b.yaml", FRESH_CASE),
        ("c.yaml", &wrong_nodes),
        ("d.yaml", &unexpected_note),
    ]);
    let report = run_dir(dir.path()).unwrap();
    let msg = fail_message(&report);
    assert_eq!(report.failures.len(), 3, "{msg}");
    assert!(
        msg.contains("a.yaml") && msg.contains("phase: expected etcd-start, got etcd-boot"),
        "{msg}"
    );
    assert!(
        msg.contains("c.yaml") && msg.contains("10.0.0.2") && msg.contains("operations[0]"),
        "{msg}"
    );
    assert!(
        msg.contains("d.yaml") && msg.contains("does not contain \"never\""),
        "{msg}"
    );
    assert!(!msg.contains("b.yaml"), "{msg}");
    // Both plans are shown: the expectation as written and the actual plan with its reasons.
    assert!(
        msg.contains("expected:") && msg.contains("actual:") && msg.contains("reason:"),
        "{msg}"
    );
}
