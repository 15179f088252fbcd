//! CKE's `repair-machines` rules (`server/strategy.go` repairOps). Pure: the queue, the drain and
//! health results come from the probe ([`crate::model::RepairQueueStatus`]), the time is an input.
//!
//! - A deleted entry is dequeued; a finished one is left alone; one whose health check passed is
//!   finished as succeeded.
//! - The others are taken in this order: processing control planes, other processing machines,
//!   queued control planes, other queued machines (index order within each); an entry waiting in a
//!   drain back-off that has not expired is skipped.
//! - At most `max_concurrent_repairs` entries take a slot, at most one of them a control plane, and
//!   a control plane not while two control planes reboot or another one does. An entry whose
//!   procedure or operation is not declared takes its slot and does nothing (CKE's). Unlike CKE,
//!   which states the rule but does not apply it, one machine is repaired by one entry at a time.
//! - The step machine: **waiting** → drain (a step with `need_drain`, on a node of the cluster) or
//!   run the repair command; **draining** → run the command once the drain completed, back off when
//!   it ran out of `eviction_timeout_seconds` (or the queue was disabled); **watching** → the next
//!   step once `watch_seconds` passed (at once without it), and past the last step the entry fails.
//!   A disabled queue starts nothing: waiting entries wait, draining ones back off.
//! - The phase is `repair-machines` as soon as one entry takes a slot with a declared step, even when
//!   nothing is done: the reboot queue then waits (CKE's). The caller applies the etcd gate
//!   ([`super::NodeFilter::etcd_is_good_for_repair`]).

use std::collections::BTreeSet;

use chrono::Duration;

use crate::model::repair::RepairLookupError;
use crate::model::{OpKind, PlannedOp, Repair, RepairEntry, RepairStatus, RepairStepStatus};

use super::NodeFilter;

/// What the repair rules decided.
#[derive(Debug, Default)]
pub(super) struct RepairPlan {
    /// The operations, in the order the entries were considered.
    pub ops: Vec<PlannedOp>,
    /// Some entry is being repaired (the phase is `repair-machines`, even without operations).
    pub active: bool,
    /// Why entries that hold a slot do nothing, for the plan's note.
    pub waits: Vec<String>,
}

/// The repair queue's operations at the filter's time. `rebooting` holds the control planes whose
/// reboot is in progress (draining or rebooting in an enabled reboot queue).
pub(super) fn repair_ops(nf: &NodeFilter, rebooting: &BTreeSet<String>) -> RepairPlan {
    let now = nf.now();
    let cluster = nf.cluster();
    let queue = &nf.status().repair_queue;
    let default = Repair::default();
    let config = cluster.repair.as_ref().unwrap_or(&default);
    let is_cp = |address: &str| cluster.node(address).is_some_and(|n| n.control_plane);
    let mut plan = RepairPlan::default();

    let (mut processing_cp, mut processing, mut queued_cp, mut queued) = (vec![], vec![], vec![], vec![]);
    for entry in &queue.entries {
        if entry.deleted {
            plan.ops.push(PlannedOp::new(
                OpKind::RepairDequeue {
                    index: entry.index,
                    address: entry.address.clone(),
                },
                format!("repair entry {} for {} is deleted", entry.index, entry.address),
            ));
            continue;
        }
        if entry.has_finished() {
            continue;
        }
        if queue.repair_completed.contains(&entry.address) {
            plan.ops.push(finish(entry, true, "its health check passed".into()));
            continue;
        }
        let cp = is_cp(&entry.address);
        match entry.status {
            RepairStatus::Queued if cp => queued_cp.push(entry),
            RepairStatus::Queued => queued.push(entry),
            RepairStatus::Processing if entry.backing_off(now) => {}
            RepairStatus::Processing if cp => processing_cp.push(entry),
            RepairStatus::Processing => processing.push(entry),
            RepairStatus::Succeeded | RepairStatus::Failed => {}
        }
    }

    let max = config.max_concurrent();
    let (mut slots, mut cp_slots) = (0i64, 0);
    let mut taken: BTreeSet<&str> = BTreeSet::new();
    let eviction_limit = now - Duration::seconds(config.eviction_timeout());
    let apiserver = super::k8s_maintain::healthy_apiserver(nf);
    for entry in processing_cp
        .into_iter()
        .chain(processing)
        .chain(queued_cp)
        .chain(queued)
    {
        if slots >= max {
            break;
        }
        if taken.contains(entry.address.as_str()) {
            continue;
        }
        if is_cp(&entry.address) {
            let another_rebooting = rebooting.len() == 1 && !rebooting.contains(&entry.address);
            if cp_slots >= 1 || rebooting.len() >= 2 || another_rebooting {
                continue;
            }
            cp_slots += 1;
        }
        slots += 1;
        taken.insert(&entry.address);

        // The step machine; a watch that is over moves to the next step within this pass.
        let (mut step_index, mut step_status) = (entry.step, entry.step_status);
        loop {
            let at = RepairEntry {
                step: step_index,
                ..entry.clone()
            };
            let step = match at.current_step(cluster) {
                Ok(step) => step,
                Err(RepairLookupError::StepOutOfRange { .. }) => {
                    let why = format!("step {step_index} is past the last step and the machine is not healthy");
                    plan.ops.push(finish(entry, false, why));
                    break;
                }
                Err(e) => {
                    // It keeps its slot (CKE's); `ckecli repair-queue delete` removes it.
                    plan.waits.push(format!("repair entry {}: {e}", entry.index));
                    break;
                }
            };
            plan.active = true;
            let target = || (entry.index, entry.address.clone());
            match step_status {
                RepairStepStatus::Waiting => {
                    if !queue.enabled {
                        plan.waits
                            .push(format!("repair entry {} waits: the queue is disabled", entry.index));
                    } else if step.need_drain && entry.is_in_cluster() {
                        match &apiserver {
                            Some(apiserver) => {
                                let (index, address) = target();
                                plan.ops.push(PlannedOp::new(
                                    OpKind::RepairDrainStart {
                                        apiserver: apiserver.clone(),
                                        index,
                                        address,
                                        nodename: entry.nodename.clone(),
                                        step: step_index,
                                    },
                                    format!("step {step_index} of repair entry {} needs a drain", entry.index),
                                ));
                            }
                            None => plan.waits.push(format!(
                                "repair entry {} waits to drain {}: no apiserver is healthy",
                                entry.index, entry.nodename
                            )),
                        }
                    } else {
                        plan.ops.push(execute(entry, step_index, "runs its repair command"));
                    }
                }
                RepairStepStatus::Draining => {
                    if !queue.enabled {
                        plan.ops
                            .push(drain_timeout(entry, "the queue is disabled while it drains"));
                    } else if queue.drain_completed.contains(&entry.address) {
                        plan.ops.push(execute(entry, step_index, "is drained"));
                    } else if entry.last_transition_time.is_none_or(|t| t < eviction_limit) {
                        let why = format!("its drain took over {} seconds", config.eviction_timeout());
                        plan.ops.push(drain_timeout(entry, &why));
                    }
                }
                RepairStepStatus::Watching => {
                    let over = match step.watch_seconds {
                        None => true,
                        Some(s) => entry
                            .last_transition_time
                            .is_none_or(|t| t + Duration::seconds(s) < now),
                    };
                    if over {
                        step_index += 1;
                        step_status = RepairStepStatus::Waiting;
                        continue;
                    }
                }
            }
            break;
        }
    }
    if !plan.ops.is_empty() {
        plan.active = true;
    }
    plan
}

fn finish(entry: &RepairEntry, succeeded: bool, why: String) -> PlannedOp {
    PlannedOp::new(
        OpKind::RepairFinish {
            index: entry.index,
            address: entry.address.clone(),
            succeeded,
        },
        format!("repair entry {} for {}: {why}", entry.index, entry.address),
    )
}

fn execute(entry: &RepairEntry, step: usize, why: &str) -> PlannedOp {
    PlannedOp::new(
        OpKind::RepairExecute {
            index: entry.index,
            address: entry.address.clone(),
            step,
        },
        format!("repair entry {} for {} {why} (step {step})", entry.index, entry.address),
    )
}

fn drain_timeout(entry: &RepairEntry, why: &str) -> PlannedOp {
    PlannedOp::new(
        OpKind::RepairDrainTimeout {
            index: entry.index,
            address: entry.address.clone(),
        },
        format!("repair entry {} for {}: {why}", entry.index, entry.address),
    )
}

#[cfg(test)]
mod tests {
    //! Properties of the rules over random queues: the limits hold whatever the entries.
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};
    use proptest::prelude::*;

    use super::*;
    use crate::model::{
        Cluster, ClusterStatus, KubeComponentStatus, Node, NodeStatus, Repair, RepairOperation, RepairProcedure,
        RepairStep,
    };
    use crate::planner::PlanInputs;

    const ADDRESSES: [&str; 6] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.99"];

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap()
    }

    fn cluster(max: i64, need_drain: bool) -> Cluster {
        let nodes = (0..5).map(|i| Node::new(ADDRESSES[i], "u", i < 3)).collect();
        let mut c = Cluster::new("c", "10.96.0.0/16", nodes);
        let step = |cmd: &str| RepairStep {
            repair_command: vec![cmd.into()],
            need_drain,
            watch_seconds: Some(60),
            ..Default::default()
        };
        c.repair = Some(Repair {
            max_concurrent_repairs: Some(max),
            repair_procedures: vec![RepairProcedure {
                machine_types: vec!["t".into()],
                repair_operations: vec![RepairOperation {
                    operation: "op".into(),
                    repair_steps: vec![step("a"), step("b")],
                    health_check_command: vec!["check".into()],
                    ..Default::default()
                }],
            }],
            ..Default::default()
        });
        c
    }

    fn entry() -> impl Strategy<Value = RepairEntry> {
        (
            0..ADDRESSES.len(),
            prop_oneof![Just("op"), Just("other")],
            0..4usize,
            0..3usize,
            0..3usize,
            any::<bool>(),
            prop_oneof![Just(None), (-200i64..200).prop_map(Some)],
            prop_oneof![Just(None), (-200i64..200).prop_map(Some)],
        )
            .prop_map(|(a, op, status, step, step_status, deleted, ltt, expire)| {
                let mut e = RepairEntry::new(op, "t", ADDRESSES[a], "");
                e.status = RepairStatus::ALL[status];
                e.step = step;
                e.step_status = [
                    RepairStepStatus::Waiting,
                    RepairStepStatus::Draining,
                    RepairStepStatus::Watching,
                ][step_status];
                e.deleted = deleted;
                e.last_transition_time = ltt.map(|s| now() + Duration::seconds(s));
                e.drain_backoff_expire = expire.map(|s| now() + Duration::seconds(s));
                e
            })
    }

    /// The operations that work on a machine (each takes one of its entry's slots).
    fn working(ops: &[PlannedOp]) -> Vec<&str> {
        ops.iter()
            .filter_map(|p| match &p.kind {
                OpKind::RepairDrainStart { address, .. }
                | OpKind::RepairExecute { address, .. }
                | OpKind::RepairDrainTimeout { address, .. }
                | OpKind::RepairFinish {
                    address,
                    succeeded: false,
                    ..
                } => Some(address.as_str()),
                _ => None,
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

        #[test]
        fn limits_hold_for_any_queue(
            entries in prop::collection::vec(entry(), 0..8),
            max in 1i64..4,
            need_drain in any::<bool>(),
            enabled in any::<bool>(),
            rebooting_cps in prop::collection::btree_set(0..3usize, 0..3),
            completed in prop::collection::btree_set(0..ADDRESSES.len(), 0..3),
        ) {
            let cluster = cluster(max, need_drain);
            let mut status = ClusterStatus::default();
            status.kubernetes.api_read = true;
            let healthy = NodeStatus {
                ssh_connected: true,
                kube_apiserver: KubeComponentStatus { is_healthy: true, ..Default::default() },
                ..Default::default()
            };
            status.nodes = ADDRESSES[..5].iter().map(|a| (a.to_string(), healthy.clone())).collect::<BTreeMap<_, _>>();
            let mut entries = entries;
            for (i, e) in entries.iter_mut().enumerate() {
                e.index = i as i64;
                e.fill_nodename(&cluster);
            }
            status.repair_queue.enabled = enabled;
            status.repair_queue.repair_completed = completed.iter().map(|i| ADDRESSES[*i].to_string()).collect();
            status.repair_queue.entries = entries.clone();
            let inputs = PlanInputs::default();
            let nf = NodeFilter::new(&cluster, &status, &inputs).at(now());
            let rebooting: BTreeSet<String> = rebooting_cps.iter().map(|i| ADDRESSES[*i].to_string()).collect();
            let plan = repair_ops(&nf, &rebooting);

            let working = working(&plan.ops);
            // At most max_concurrent_repairs machines worked on, each by one entry.
            prop_assert!(working.len() as i64 <= max, "{:?}", plan.ops);
            let distinct: BTreeSet<&str> = working.iter().copied().collect();
            prop_assert_eq!(distinct.len(), working.len(), "one entry per machine: {:?}", plan.ops);
            // At most one control plane, none while two reboot or another one does.
            let cps: Vec<&str> = working.iter().copied().filter(|a| ADDRESSES[..3].contains(a)).collect();
            prop_assert!(cps.len() <= 1, "{:?}", plan.ops);
            for cp in &cps {
                prop_assert!(
                    rebooting.is_empty() || (rebooting.len() == 1 && rebooting.contains(*cp)),
                    "control plane {} repaired while {:?} reboot", cp, rebooting
                );
            }
            // A disabled queue starts nothing.
            if !enabled {
                prop_assert!(
                    !plan.ops.iter().any(|p| matches!(p.kind, OpKind::RepairDrainStart { .. } | OpKind::RepairExecute { .. })),
                    "{:?}", plan.ops
                );
            }
            // Finished entries are never touched but to be dequeued; every deleted one is dequeued.
            for e in &entries {
                let touched: Vec<&PlannedOp> = plan.ops.iter().filter(|p| match &p.kind {
                    OpKind::RepairDrainStart { index, .. }
                    | OpKind::RepairExecute { index, .. }
                    | OpKind::RepairFinish { index, .. }
                    | OpKind::RepairDequeue { index, .. }
                    | OpKind::RepairDrainTimeout { index, .. } => *index == e.index,
                    _ => false,
                }).collect();
                if e.deleted {
                    let dequeued = matches!(touched.as_slice(), [p] if matches!(p.kind, OpKind::RepairDequeue { .. }));
                    prop_assert!(dequeued, "a deleted entry is dequeued, nothing else: {:?}", touched);
                } else if e.has_finished() {
                    prop_assert!(touched.is_empty(), "{:?}", touched);
                } else if e.status == RepairStatus::Processing && e.backing_off(now()) {
                    // (CKE skips processing entries in back-off only: a queued one has none.)
                    let finished_ok = touched.iter().all(|p| matches!(p.kind, OpKind::RepairFinish { succeeded: true, .. }));
                    prop_assert!(finished_ok, "a backing-off entry is only finished by its health check: {:?}", touched);
                }
                // A drain only of a node of the cluster.
                for p in &touched {
                    if let OpKind::RepairDrainStart { nodename, .. } = &p.kind {
                        prop_assert!(!nodename.is_empty());
                    }
                }
            }
            if !plan.ops.is_empty() {
                prop_assert!(plan.active);
            }
        }
    }
}
