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

use chrono::{DateTime, Duration, Utc};

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

/// The repair queue's operations at `now`. `rebooting` holds the control planes whose reboot is in
/// progress (draining or rebooting in an enabled reboot queue).
pub(super) fn repair_ops(nf: &NodeFilter, rebooting: &BTreeSet<String>, now: DateTime<Utc>) -> RepairPlan {
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
