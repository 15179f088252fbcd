//! The pure planner: from the declaration, the constraints and what the probe saw, decide the next
//! operations and the phase. No I/O, no clock reads, no clients: `now` is an argument, the result is
//! data ([`Plan`]) that the controller turns into operators, `/status` publishes and `ckecli plan`
//! prints.
//!
//! Phase order (CKE's): upgrade (an older `config-version`) → rivers → etcd bootstrap → start stopped
//! members → wait for etcd health → (Kubernetes components) → etcd maintenance → Kubernetes objects
//! (Node attributes) → control-plane containers on demoted nodes → uncordon nodes → repair queue →
//! reboot queue → completed. Safety rules (DESIGN.md §4):
//! bootstrap and maintenance only when every control-plane node is reachable over SSH; at most one
//! membership change per plan; members join as learners and are promoted once in sync; an outdated
//! member is restarted only when the others keep quorum.

mod k8s;
mod k8s_maintain;

pub use k8s_maintain::{all_resources, as_kept, static_definitions};
mod node_filter;
pub mod params;
mod reboot;
mod repair;

#[cfg(test)]
mod k8s_maintain_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use k8s::current_component;
pub use node_filter::NodeFilter;
use params::*;

use crate::model::{Cluster, ClusterStatus, Constraints};

pub use crate::model::plan::{OpKind, Phase, PlannedOp};

/// The planner's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The phase.
    pub phase: Phase,
    /// What to do next, in order; empty when nothing (or nothing safe) can be done.
    pub ops: Vec<PlannedOp>,
    /// Why nothing is done when the phase blocks progress (e.g. unreachable nodes), else empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// When the plan was made.
    pub planned_at: DateTime<Utc>,
}

/// Inputs besides the declaration and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanInputs {
    /// The images to run.
    pub images: Images,
    /// The management etcd records that this managed etcd was seen running before (key
    /// `etcd-bootstrapped`): no new, empty cluster is bootstrapped then.
    pub etcd_bootstrapped_before: bool,
    /// What the node hosts need of the Kubernetes containers (`cke --node-profile`).
    pub host: crate::k8s::params::HostSettings,
    /// Nodes changed per operation of rivers, etcd-rivers, kubelets and kube-proxies
    /// (`cke --max-concurrent-updates`, CKE's 10).
    pub max_concurrent_updates: usize,
    /// Plan the Kubernetes components (always, but for the managed-etcd suites, which run
    /// `cke --test-without-kubernetes` from a `test-hooks` build on node hosts without Kubernetes).
    pub manage_kubernetes: bool,
    /// The user resources (`resource/*`, `ckecli resource set`), each with its revision.
    pub resources: Vec<crate::model::ResourceDefinition>,
    /// The management etcd's `config-version` (CKE: "1" when the key is absent).
    pub config_version: String,
}

/// How many nodes a reason names before it counts the rest (reasons stay short at 1000 nodes).
pub const REASON_EXAMPLES: usize = 5;

/// CKE's `--max-concurrent-updates` default.
pub const DEFAULT_MAX_CONCURRENT_UPDATES: usize = 10;

/// The `config-version` this cke writes and understands (CKE's `cke.ConfigVersion`): "2" = members
/// carry the added-member marker.
pub const CONFIG_VERSION: &str = "2";

/// The `config-version` of a management etcd without the key (CKE's rule).
pub const CONFIG_VERSION_ABSENT: &str = "1";

impl Default for PlanInputs {
    fn default() -> Self {
        PlanInputs {
            images: Images::default(),
            etcd_bootstrapped_before: false,
            host: Default::default(),
            max_concurrent_updates: DEFAULT_MAX_CONCURRENT_UPDATES,
            manage_kubernetes: true,
            resources: vec![],
            config_version: CONFIG_VERSION.into(),
        }
    }
}

/// Decides the next operations. Pure: the same inputs always give the same plan.
pub fn decide_ops(
    cluster: &Cluster,
    status: &ClusterStatus,
    constraints: &Constraints,
    inputs: &PlanInputs,
    now: DateTime<Utc>,
) -> Plan {
    let plan = |phase, ops, note: String| Plan {
        phase,
        ops,
        note,
        planned_at: now,
    };
    if let Err(e) = constraints.check(cluster) {
        return plan(Phase::ConstraintsViolated, vec![], e.to_string());
    }
    let nf = NodeFilter::new(cluster, status, inputs).at(now);

    // 0. CKE's upgrade of the on-node state of an older config-version.
    if inputs.config_version != CONFIG_VERSION {
        return match upgrade_op(&nf, &inputs.config_version) {
            Ok(op) => plan(Phase::Upgrade, vec![op], String::new()),
            Err(note) => plan(Phase::UpgradeAborted, vec![], note),
        };
    }

    // 1. rivers everywhere, etcd-rivers on control-plane nodes.
    let ops = rivers_ops(&nf);
    if !ops.is_empty() {
        return plan(Phase::Rivers, ops, String::new());
    }

    // 2. Bootstrap the managed etcd when no control-plane node holds data.
    let unreachable_cps = nf.unreachable_control_planes();
    if !nf.etcd_bootstrapped() {
        if inputs.etcd_bootstrapped_before {
            return plan(
                Phase::EtcdBootAborted,
                vec![],
                "the managed etcd ran before, but no declared node holds its data and no member answers; \
                 refusing to bootstrap a new, empty cluster (declare the nodes that hold the members, or \
                 delete the key etcd-bootstrapped to start anew: docs/etcd.md)"
                    .into(),
            );
        }
        if !unreachable_cps.is_empty() {
            return plan(
                Phase::EtcdBootAborted,
                vec![],
                format!(
                    "etcd bootstrap needs every control-plane node; unreachable: {}",
                    unreachable_cps.join(", ")
                ),
            );
        }
        let nodes = nf.control_plane_addresses();
        return plan(
            Phase::EtcdBoot,
            vec![PlannedOp::new(
                OpKind::EtcdBootstrap { nodes },
                "no control-plane node holds etcd data",
            )],
            String::new(),
        );
    }

    // 3. Start members that are stopped but hold data and were fully added.
    let stopped = nf.etcd_stopped_members();
    if !stopped.is_empty() {
        let reason = format!(
            "etcd is not running on {}",
            crate::model::few(&stopped, REASON_EXAMPLES)
        );
        return plan(
            Phase::EtcdStart,
            vec![PlannedOp::new(OpKind::EtcdStart { nodes: stopped }, reason)],
            String::new(),
        );
    }

    // 4. Wait for health.
    if !status.etcd.is_healthy {
        let nodes = nf.control_plane_addresses();
        return plan(
            Phase::EtcdWait,
            vec![PlannedOp::new(
                OpKind::EtcdWaitCluster { nodes },
                "the managed etcd is not healthy",
            )],
            String::new(),
        );
    }

    // 5. Kubernetes components (CKE's k8s-start).
    if inputs.manage_kubernetes {
        match k8s::k8s_start_ops(&nf) {
            Ok(ops) if !ops.is_empty() => return plan(Phase::K8sStart, ops, String::new()),
            Ok(_) => {}
            Err(note) => return plan(Phase::K8sStart, vec![], note),
        }
    }

    // 6. Maintenance, only when every control-plane node is reachable.
    let mut etcd_waits = None;
    if unreachable_cps.is_empty() {
        if let Some(op) = etcd_maintenance(&nf) {
            return plan(Phase::EtcdMaintain, vec![op], String::new());
        }
        if nf.etcd_maintenance_wanted() && !nf.etcd_is_good() {
            etcd_waits = Some("etcd maintenance waits for every member to be in sync".to_string());
        }
    } else if nf.etcd_maintenance_wanted() {
        etcd_waits = Some(format!(
            "etcd maintenance waits for unreachable control-plane nodes: {}",
            unreachable_cps.join(", ")
        ));
    }
    // 7. Kubernetes objects through the API (CKE's k8s-maintain), also while etcd maintenance
    // waits (CKE proceeds to it when etcdMaintOp has nothing to do).
    if inputs.manage_kubernetes {
        let ops = k8s_maintain::k8s_maintain_ops(&nf);
        if !ops.is_empty() {
            return plan(Phase::K8sMaintain, ops, String::new());
        }
    }
    // 8. Control-plane containers on nodes that are no longer control planes, also while etcd
    // maintenance waits (CKE's cleanOps; etcd itself only while etcd is good).
    let ops = k8s::stop_control_plane_ops(&nf);
    if !ops.is_empty() {
        return plan(Phase::StopControlPlane, ops, String::new());
    }
    // 9-11. The queues, also while etcd maintenance waits (CKE goes on to them then too).
    let note = match queue_phases(&nf, inputs, constraints) {
        Ok((phase, ops, note)) => return plan(phase, ops, note),
        Err(note) => note,
    };
    if let Some(note) = etcd_waits {
        return plan(Phase::Completed, vec![], note);
    }
    let starting = nf.etcd_starting_learners();
    if !starting.is_empty() {
        return plan(
            Phase::Completed,
            vec![],
            format!(
                "learners on {} have not started yet although their etcd containers run (catching up?); \
                 nothing changes in the managed etcd until they have",
                starting.join(", ")
            ),
        );
    }
    let no_volume = nf.etcd_running_without_volume();
    if !no_volume.is_empty() {
        return plan(
            Phase::Completed,
            vec![],
            format!(
                "etcd on {} runs without the data volume {} (was options.etcd.volume_name changed?); \
                 it is not restarted, as it could not start on an empty volume",
                crate::model::few(&no_volume, REASON_EXAMPLES),
                cluster.options.etcd.volume()
            ),
        );
    }
    plan(Phase::Completed, vec![], note)
}

/// The queue phases, in CKE's order: `uncordon-nodes`; `repair-machines`, which holds back the
/// reboot queue while an entry is being repaired, even without operations; `reboot-nodes`.
/// `Err(note)` when no queue has anything to do (the note says why one waits, if one does).
fn queue_phases(
    nf: &NodeFilter,
    inputs: &PlanInputs,
    constraints: &Constraints,
) -> Result<(Phase, Vec<PlannedOp>, String), String> {
    // 9. Uncordon the nodes cordoned for a reboot or repair that is no longer in progress.
    let apiserver = k8s_maintain::healthy_apiserver(nf);
    if inputs.manage_kubernetes {
        let ops = reboot::uncordon_ops(nf, apiserver.as_deref());
        if !ops.is_empty() {
            return Ok((Phase::UncordonNodes, ops, String::new()));
        }
    }
    // 10. The repair queue, never while etcd is not good enough to repair a control plane.
    let rebooting: BTreeSet<String> = nf
        .cluster()
        .control_planes()
        .filter(|n| reboot::reboot_processing(nf, &n.address))
        .map(|n| n.address.clone())
        .collect();
    let r = repair::repair_ops(nf, &rebooting);
    if r.active {
        if !nf.etcd_is_good_for_repair(constraints.control_plane_count) {
            let note = "no machine is repaired: the managed etcd is not healthy, a member is out of sync \
                        without its control plane being down, or more than one control plane is degraded"
                .to_string();
            return Ok((Phase::RepairMachines, vec![], note));
        }
        let note = if r.ops.is_empty() {
            r.waits.join("; ")
        } else {
            String::new()
        };
        return Ok((Phase::RepairMachines, r.ops, note));
    }
    // 11. The reboot queue, never while etcd is not good.
    let (ops, note) = reboot::reboot_ops(nf, constraints, apiserver.as_deref());
    if !ops.is_empty() {
        if !nf.etcd_is_good() {
            let note = "the reboot queue waits: the managed etcd is not healthy or a member is not in sync";
            return Ok((Phase::RebootNodes, vec![], note.into()));
        }
        return Ok((Phase::RebootNodes, ops, note));
    }
    Err(note)
}

/// CKE's `upgrade` (phase 0): only "1" (or an absent key) is known; it needs the control-plane
/// nodes with a started member reachable, to mark those that lack the marker. `Err(note)`: aborted.
fn upgrade_op(nf: &NodeFilter, from: &str) -> Result<PlannedOp, String> {
    if from != CONFIG_VERSION_ABSENT {
        return Err(format!(
            "config-version {from:?} is not one this cke knows (it writes {CONFIG_VERSION:?} and upgrades \
             from {CONFIG_VERSION_ABSENT:?}); a newer CKE may have written it, so nothing is done"
        ));
    }
    let (nodes, unreachable) = nf.etcd_upgrade_marks();
    if !unreachable.is_empty() {
        return Err(format!(
            "the upgrade from config-version {from} needs the control-plane nodes with a member; \
             unreachable: {}",
            unreachable.join(", ")
        ));
    }
    let reason = if nodes.is_empty() {
        format!("config-version {from}: record config-version {CONFIG_VERSION}")
    } else {
        format!(
            "config-version {from}: mark the members on {} (added-member marker), then record \
             config-version {CONFIG_VERSION}",
            nodes.join(", ")
        )
    };
    Ok(PlannedOp::new(
        OpKind::Upgrade {
            from: from.into(),
            nodes,
        },
        reason,
    ))
}

/// rivers and etcd-rivers, each list capped at `--max-concurrent-updates` nodes (CKE's riversOps):
/// the next pass takes the next batch.
fn rivers_ops(nf: &NodeFilter) -> Vec<PlannedOp> {
    let mut ops = Vec::new();
    let max = nf.max_concurrent_updates();
    let mut push = |mut nodes: Vec<String>, kind: fn(Vec<String>) -> OpKind, what: &str| {
        nodes.truncate(max);
        if !nodes.is_empty() {
            let reason = format!("{what} on {}", crate::model::few(&nodes, REASON_EXAMPLES));
            ops.push(PlannedOp::new(kind(nodes), reason));
        }
    };
    push(
        nf.rivers_stopped(false),
        |nodes| OpKind::RiversBootstrap { nodes },
        "rivers is not running",
    );
    push(
        nf.rivers_outdated(false),
        |nodes| OpKind::RiversRestart { nodes },
        "rivers is outdated",
    );
    push(
        nf.rivers_stopped(true),
        |nodes| OpKind::EtcdRiversBootstrap { nodes },
        "etcd-rivers is not running",
    );
    push(
        nf.rivers_outdated(true),
        |nodes| OpKind::EtcdRiversRestart { nodes },
        "etcd-rivers is outdated",
    );
    ops
}

/// CKE's etcd maintenance order, one membership change at a time, learners first.
fn etcd_maintenance(nf: &NodeFilter) -> Option<PlannedOp> {
    // Before the health gate: clean up what is not in sync, re-add half-added members, mark members.
    if let Some((node, id)) = nf.etcd_non_cluster_members(false).into_iter().next() {
        let reason = format!("member {id:x} on {node} is not declared and not in sync");
        return Some(PlannedOp::new(OpKind::EtcdRemoveMember { node, id }, reason));
    }
    if let Some((node, id)) = nf.etcd_non_cp_members(false).into_iter().next() {
        return Some(destroy_member(
            nf,
            node,
            id,
            "is no longer control plane and not in sync",
        ));
    }
    if let Some(node) = nf.etcd_leftovers().into_iter().next() {
        let reason = format!(
            "{node} is no longer control plane and not a member, but holds etcd data or the \
             added-member marker (a member removed while the node was unreachable, or a wipe cut \
             short): wipe it"
        );
        return Some(PlannedOp::new(OpKind::EtcdDestroyMember { node, id: None }, reason));
    }
    if let Some((node, id, reason)) = nf.etcd_half_added_members().into_iter().next() {
        return Some(PlannedOp::new(
            OpKind::EtcdAddMember {
                node,
                replace: Some(id),
            },
            reason,
        ));
    }
    let unmarked = nf.etcd_unmarked_members();
    if !unmarked.is_empty() {
        let reason = format!(
            "in-sync members without the added-member marker: {}",
            crate::model::few(&unmarked, REASON_EXAMPLES)
        );
        return Some(PlannedOp::new(OpKind::EtcdMarkMember { nodes: unmarked }, reason));
    }

    if !nf.etcd_is_good() {
        return None;
    }

    // After the gate: finish joins, then add, remove, destroy, restart.
    if let Some((node, id)) = nf.etcd_promotable_learners().into_iter().next() {
        let reason = format!("learner {id:x} on {node} is in sync");
        return Some(PlannedOp::new(OpKind::EtcdPromoteMember { node, id }, reason));
    }
    if let Some(node) = nf.etcd_new_members().into_iter().next() {
        let reason = format!("control-plane node {node} is not an etcd member");
        return Some(PlannedOp::new(OpKind::EtcdAddMember { node, replace: None }, reason));
    }
    if let Some((node, id)) = nf.etcd_non_cluster_members(true).into_iter().next() {
        let reason = format!("member {id:x} on {node} is not declared");
        return Some(PlannedOp::new(OpKind::EtcdRemoveMember { node, id }, reason));
    }
    if let Some((node, id)) = nf.etcd_non_cp_members(true).into_iter().next() {
        return Some(destroy_member(nf, node, id, "is no longer control plane"));
    }
    for node in nf.etcd_outdated_members() {
        if nf.etcd_restart_keeps_quorum(&node) {
            let reason = format!("etcd on {node} runs an outdated image or parameters");
            return Some(PlannedOp::new(OpKind::EtcdRestart { node }, reason));
        }
    }
    None
}

/// The member `id` of `node`, which is no longer a control plane: removed and its node wiped; when
/// the node is unreachable, only removed (CKE removes it then too), and the node is wiped once it is
/// reachable again ([`NodeFilter::etcd_leftovers`]): no operation waits on an unreachable node.
fn destroy_member(nf: &NodeFilter, node: String, id: u64, why: &str) -> PlannedOp {
    let reachable = nf.cluster().node(&node).is_some_and(|n| nf.reachable(n));
    if reachable {
        let reason = format!("member {id:x} on {node} {why}");
        PlannedOp::new(OpKind::EtcdDestroyMember { node, id: Some(id) }, reason)
    } else {
        let reason = format!(
            "member {id:x} on {node} {why}; {node} is unreachable: the member is removed now, its \
             container, data and certificates are wiped once it is reachable again"
        );
        PlannedOp::new(OpKind::EtcdRemoveMember { node, id }, reason)
    }
}
