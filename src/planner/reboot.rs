//! CKE's reboot queue rules (`server/strategy.go` rebootOps, rebootUncordonOp, rebootProcessing,
//! rebootNextCandidates; `op/reboot_decide.go` ChooseRebootCandidates and the drain timeout). Pure:
//! the time is [`NodeFilter::now`], what needs I/O (drains complete, boot checks) is in the status.
//!
//! - **uncordon-nodes**: Nodes cordoned and annotated `cke.cybozu.com/reboot: "true"` whose reboot
//!   is not in progress (no `draining` or `rebooting` entry while the queue is enabled) and whose
//!   repair is not either (no `processing` repair entry `draining` or `watching`) are uncordoned.
//! - **reboot-nodes**, in order: cancelled entries are removed, and entries whose node booted (the
//!   boot check printed `true`) or is no longer declared; when there are any, nothing else. Then,
//!   only while the queue is enabled and `reboot_command` and `boot_check_command` are declared:
//!   drained entries are rebooted (the pods of their `OnDelete` DaemonSets deleted first); the next
//!   candidates start draining unless more nodes than `maximum-unreachable-nodes-for-reboot`, not
//!   counting those being rebooted, are unreachable; drains that outlast
//!   `eviction_timeout_seconds` back off.
//! - **candidates**: among declared nodes, workers before control planes, and never both at once; one
//!   control plane at a time; a worker is added while fewer than `max_concurrent_reboots` workers
//!   are in progress (one per pass); an entry backing off waits.
//! - The control planes being rebooted, and the next candidate, are not ready in the `kubernetes`
//!   and `cke-etcd` endpoints ([`not_ready_control_planes`]) while the queue is enabled.
//!
//! The phase gate (nothing while etcd is not good) is in `decide_ops`.

use std::collections::BTreeSet;

use chrono::Duration;

use crate::model::{Constraints, OpKind, PlannedOp, QueueItem, RebootQueueEntry, RebootStatus};

use super::NodeFilter;

/// CKE's default `eviction_timeout_seconds`.
pub const DEFAULT_EVICTION_TIMEOUT_SECONDS: i64 = 600;
/// CKE's default `max_concurrent_reboots`.
pub const DEFAULT_MAX_CONCURRENT_REBOOTS: i64 = 1;

fn items<'a>(entries: impl IntoIterator<Item = &'a RebootQueueEntry>) -> Vec<QueueItem> {
    entries
        .into_iter()
        .map(|e| QueueItem {
            index: e.index,
            node: e.node.clone(),
        })
        .collect()
}

fn nodes_of(items: &[QueueItem]) -> String {
    items.iter().map(|i| i.node.as_str()).collect::<Vec<_>>().join(", ")
}

/// The node at `address` is being rebooted: its entry is `draining` or `rebooting` and the queue is
/// enabled (CKE's rebootProcessing).
pub(super) fn reboot_processing(nf: &NodeFilter, address: &str) -> bool {
    let q = &nf.status().reboot_queue;
    q.enabled
        && q.entries
            .iter()
            .find(|e| e.node == address)
            .is_some_and(|e| matches!(e.status, RebootStatus::Draining | RebootStatus::Rebooting))
}

/// The entries to drain next (CKE's ChooseRebootCandidates), empty while the queue is disabled.
pub(super) fn next_candidates<'a>(nf: &NodeFilter<'a>) -> Vec<&'a RebootQueueEntry> {
    let q = &nf.status().reboot_queue;
    if !q.enabled {
        return vec![];
    }
    let cluster = nf.cluster();
    let max = cluster
        .reboot
        .as_ref()
        .and_then(|r| r.max_concurrent_reboots)
        .unwrap_or(DEFAULT_MAX_CONCURRENT_REBOOTS)
        .max(1) as usize;
    let (mut cp_in_progress, mut cp_drainable) = (false, None);
    let (mut workers_in_progress, mut workers_drainable) = (0, vec![]);
    for e in &q.entries {
        let Some(node) = cluster.node(&e.node) else {
            continue;
        };
        match e.status {
            RebootStatus::Draining | RebootStatus::Rebooting if node.control_plane => cp_in_progress = true,
            RebootStatus::Draining | RebootStatus::Rebooting => workers_in_progress += 1,
            RebootStatus::Queued if e.backing_off(nf.now()) => {}
            RebootStatus::Queued if node.control_plane => {
                cp_drainable.get_or_insert(e);
            }
            RebootStatus::Queued => workers_drainable.push(e),
            RebootStatus::Cancelled => {}
        }
    }
    // Control planes one at a time, after the workers and never together with them.
    if cp_in_progress {
        return vec![];
    }
    if workers_in_progress == 0 && workers_drainable.is_empty() {
        return cp_drainable.into_iter().collect();
    }
    if workers_in_progress < max {
        workers_drainable.truncate(1);
        return workers_drainable;
    }
    vec![]
}

/// The control planes that the `kubernetes` and `cke-etcd` endpoints list not ready for a reboot:
/// those being rebooted and the next candidate (CKE's rebootProcessing and rebootNextCandidates).
pub(super) fn not_ready_control_planes(nf: &NodeFilter) -> Vec<String> {
    let candidates: BTreeSet<&str> = next_candidates(nf).iter().map(|e| e.node.as_str()).collect();
    nf.cluster()
        .control_planes()
        .filter(|n| reboot_processing(nf, &n.address) || candidates.contains(n.address.as_str()))
        .map(|n| n.address.clone())
        .collect()
}

/// `uncordon-nodes`: the Nodes cordoned for a reboot that is not in progress.
pub(super) fn uncordon_ops(nf: &NodeFilter, apiserver: Option<&str>) -> Vec<PlannedOp> {
    let k = &nf.status().kubernetes;
    let Some(apiserver) = apiserver else {
        return vec![];
    };
    let nodes: Vec<String> = k
        .nodes
        .iter()
        .filter(|kn| {
            kn.unschedulable
                && kn
                    .annotations
                    .get(crate::k8s::node::REBOOT_ANNOTATION)
                    .map(String::as_str)
                    == Some("true")
        })
        // A node being drained or watched for a repair stays cordoned (CKE's repairProcessing).
        .filter(|kn| !nf.status().repair_queue.processing(&kn.name))
        // The entries name addresses; a Node is named after its declared node's hostname, if any.
        .filter(|kn| {
            let address = nf
                .cluster()
                .nodes
                .iter()
                .find(|n| n.nodename() == kn.name)
                .map_or(kn.name.as_str(), |n| n.address.as_str());
            !reboot_processing(nf, address)
        })
        .map(|kn| kn.name.clone())
        .collect();
    if nodes.is_empty() {
        return vec![];
    }
    let reason = format!(
        "Nodes {} are cordoned for a reboot or repair that is not in progress",
        nodes.join(", ")
    );
    vec![PlannedOp::new(
        OpKind::RebootUncordon {
            apiserver: apiserver.into(),
            nodes,
        },
        reason,
    )]
}

/// `reboot-nodes`: the operations, and a note when something waits for a reason to show.
pub(super) fn reboot_ops(
    nf: &NodeFilter,
    constraints: &Constraints,
    apiserver: Option<&str>,
) -> (Vec<PlannedOp>, String) {
    let cluster = nf.cluster();
    let q = &nf.status().reboot_queue;
    let member = |e: &&RebootQueueEntry| cluster.node(&e.node).is_some();
    let mut ops = Vec::new();

    let cancelled = items(q.entries.iter().filter(|e| e.status == RebootStatus::Cancelled));
    if !cancelled.is_empty() {
        let reason = format!("the reboots of {} are cancelled", nodes_of(&cancelled));
        ops.push(PlannedOp::new(OpKind::RebootCancel { entries: cancelled }, reason));
    }
    let dequeued: Vec<&RebootQueueEntry> = q
        .entries
        .iter()
        .filter(|e| e.status != RebootStatus::Cancelled)
        .filter(|e| !member(e) || (e.status == RebootStatus::Rebooting && q.boot_checked.contains(&e.node)))
        .collect();
    if !dequeued.is_empty() {
        let (booted, gone): (Vec<&RebootQueueEntry>, Vec<&RebootQueueEntry>) = dequeued.into_iter().partition(member);
        let mut why = vec![];
        if !booted.is_empty() {
            why.push(format!("{} booted", nodes_of(&items(booted.iter().copied()))));
        }
        if !gone.is_empty() {
            why.push(format!("{} no longer declared", nodes_of(&items(gone.iter().copied()))));
        }
        let entries = items(booted.into_iter().chain(gone));
        ops.push(PlannedOp::new(OpKind::RebootDequeue { entries }, why.join("; ")));
    }
    if !ops.is_empty() {
        return (ops, String::new());
    }

    if !q.enabled || q.entries.is_empty() {
        return (ops, String::new());
    }
    let reboot = cluster.reboot.clone().unwrap_or_default();
    if reboot.reboot_command.is_empty() || reboot.boot_check_command.is_empty() {
        return (
            ops,
            "the reboot queue has entries, but reboot.reboot_command or reboot.boot_check_command is not \
             declared: nothing is rebooted"
                .into(),
        );
    }
    let Some(apiserver) = apiserver else {
        return (ops, "the reboot queue waits for a healthy apiserver".into());
    };
    let draining = |e: &&RebootQueueEntry| e.status == RebootStatus::Draining && member(e);
    let mut note = String::new();

    let drained = items(
        q.entries
            .iter()
            .filter(draining)
            .filter(|e| q.drain_completed.contains(&e.node)),
    );
    if !drained.is_empty() {
        let reason = format!("{} are drained", nodes_of(&drained));
        ops.push(PlannedOp::new(
            OpKind::RebootDeleteDaemonsetPod {
                apiserver: apiserver.into(),
                entries: drained.clone(),
            },
            reason.clone(),
        ));
        ops.push(PlannedOp::new(OpKind::RebootReboot { entries: drained }, reason));
    }

    let candidates = items(next_candidates(nf));
    if !candidates.is_empty() {
        let unreachable: Vec<String> = cluster
            .nodes
            .iter()
            .filter(|n| !nf.reachable(n) && !reboot_processing(nf, &n.address))
            .map(|n| n.address.clone())
            .collect();
        if unreachable.len() as i64 > constraints.maximum_unreachable_nodes_for_reboot {
            note = format!(
                "no reboot starts: {} unreachable (maximum-unreachable-nodes-for-reboot is {})",
                unreachable.join(", "),
                constraints.maximum_unreachable_nodes_for_reboot
            );
        } else {
            let reason = format!("{} are next in the reboot queue", nodes_of(&candidates));
            ops.push(PlannedOp::new(
                OpKind::RebootDrainStart {
                    apiserver: apiserver.into(),
                    entries: candidates,
                },
                reason,
            ));
        }
    }

    let timeout = reboot
        .eviction_timeout_seconds
        .unwrap_or(DEFAULT_EVICTION_TIMEOUT_SECONDS);
    let deadline = nf.now() - Duration::seconds(timeout);
    let timed_out = items(
        q.entries
            .iter()
            .filter(draining)
            .filter(|e| !q.drain_completed.contains(&e.node))
            .filter(|e| e.last_transition_time.is_none_or(|t| t < deadline)),
    );
    if !timed_out.is_empty() {
        let reason = format!(
            "the drains of {} did not complete within {timeout} s",
            nodes_of(&timed_out)
        );
        ops.push(PlannedOp::new(
            OpKind::RebootDrainTimeout { entries: timed_out },
            reason,
        ));
    }
    (ops, note)
}
