//! Sabakan-triggered repair (CKE's `sabakan/repairer.go`, `docs/sabakan-triggered-repair.md`): the
//! repair-queue entries to add for the machines sabakan reports broken. Pure: the caller queries,
//! reads the queues and enqueues.
//!
//! A machine gets an entry (operation = its state in lower case, machine type = its BMC type, address
//! = its first IPv4 address, serial) unless it has no address; or already has an entry, finished or
//! not (any operation); or the declaration's `repair` has no procedure for its type with that
//! operation (cke-rs: CKE queues it, and the entry then holds a repair slot doing nothing until
//! deleted); or is unreachable for less than `wait-seconds-to-repair-rebooting` and is being
//! rebooted by the reboot queue or is not in the cluster (a reboot, or a crash cke cannot tell from
//! one). When the entries there are plus the new ones would exceed `maximum-repair-queue-entries`,
//! none is added.

use std::collections::HashSet;

use super::machine::{Machine, MachineState};
use crate::model::repair::find_operation;
use crate::model::{dedup_reboot_entries, Cluster, Constraints, RebootQueueEntry, RebootStatus, RepairEntry};

/// Why a reported machine gets no entry (each is logged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// It has no IPv4 address.
    NoAddress(String),
    /// It has an entry already.
    Recent(String),
    /// No repair procedure of the declaration has its machine type and operation.
    Undeclared {
        /// The machine's address.
        address: String,
        /// Why (the lookup's error).
        reason: String,
    },
    /// Unreachable for a short while, and being rebooted.
    Rebooting(String),
    /// Unreachable for a short while, and not in the cluster.
    OutOfCluster(String),
    /// The queue would hold more than `maximum-repair-queue-entries`: nothing was added.
    TooMany {
        /// Entries already there.
        queued: usize,
        /// Machines that would be added.
        new: usize,
        /// The constraint.
        maximum: i64,
    },
}

/// The operation of a machine's entry: its state in lower case (CKE's).
fn operation(m: &Machine) -> String {
    m.status.state.as_str().to_lowercase()
}

/// The entries to add, and the machines skipped with why. `cluster` is the declaration: its nodes
/// are the cluster, its `repair` the procedures.
pub fn repair_entries(
    machines: &[Machine],
    repair_entries: &[RepairEntry],
    reboot_entries: &[RebootQueueEntry],
    cluster: &Cluster,
    constraints: &Constraints,
) -> (Vec<RepairEntry>, Vec<Skipped>) {
    // The operation does not matter: any entry of the machine counts.
    let recent: HashSet<&str> = repair_entries.iter().map(|e| e.address.as_str()).collect();
    let rebooting: HashSet<String> = dedup_reboot_entries(reboot_entries)
        .into_iter()
        .filter(|e| e.status == RebootStatus::Rebooting)
        .map(|e| e.node)
        .collect();
    let mut skipped = Vec::new();
    let mut new: Vec<&Machine> = Vec::new();
    for m in machines {
        let Some(address) = m.address() else {
            skipped.push(Skipped::NoAddress(m.spec.serial.clone()));
            continue;
        };
        if recent.contains(address) {
            skipped.push(Skipped::Recent(address.into()));
            continue;
        }
        if let Err(e) = find_operation(cluster, &m.spec.bmc.bmc_type, &operation(m)) {
            skipped.push(Skipped::Undeclared {
                address: address.into(),
                reason: e.to_string(),
            });
            continue;
        }
        let waiting = m.status.state == MachineState::Unreachable
            && m.status.duration < constraints.wait_seconds_to_repair_rebooting as f64;
        if waiting && rebooting.contains(address) {
            skipped.push(Skipped::Rebooting(address.into()));
            continue;
        }
        if waiting && cluster.node(address).is_none() {
            skipped.push(Skipped::OutOfCluster(address.into()));
            continue;
        }
        new.push(m);
    }
    if (repair_entries.len() + new.len()) as i64 > constraints.maximum_repair_queue_entries {
        if !new.is_empty() {
            skipped.push(Skipped::TooMany {
                queued: repair_entries.len(),
                new: new.len(),
                maximum: constraints.maximum_repair_queue_entries,
            });
        }
        return (vec![], skipped);
    }
    let entries = new
        .into_iter()
        .map(|m| {
            RepairEntry::new(
                &operation(m),
                &m.spec.bmc.bmc_type,
                m.address().unwrap_or_default(),
                &m.spec.serial,
            )
        })
        .collect();
    (entries, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, Repair, RepairOperation, RepairProcedure};
    use crate::sabakan::fake::machine;

    /// A machine of `bmc` type in `state`, `duration` seconds in it.
    fn broken(ip: &str, bmc: &str, state: MachineState, duration: f64) -> Machine {
        let mut m = machine(ip, 0, state);
        m.spec.bmc.bmc_type = bmc.into();
        m.status.duration = duration;
        m
    }

    /// Nodes 10.0.0.1-3; procedures for `ipmi` (unreachable, unhealthy).
    fn cluster() -> Cluster {
        let mut c = Cluster::new(
            "c",
            "10.68.0.0/16",
            (1..=3)
                .map(|i| Node::new(&format!("10.0.0.{i}"), "root", i == 1))
                .collect(),
        );
        let op = |name: &str| RepairOperation {
            operation: name.into(),
            ..Default::default()
        };
        c.repair = Some(Repair {
            repair_procedures: vec![RepairProcedure {
                machine_types: vec!["ipmi".into()],
                repair_operations: vec![op("unreachable"), op("unhealthy")],
            }],
            ..Default::default()
        });
        c
    }

    fn constraints(maximum: i64, wait: i64) -> Constraints {
        Constraints {
            maximum_repair_queue_entries: maximum,
            wait_seconds_to_repair_rebooting: wait,
            ..Constraints::default()
        }
    }

    #[test]
    fn each_skip_says_why() {
        let mut no_address = broken("10.0.0.9", "ipmi", MachineState::Unhealthy, 0.0);
        no_address.spec.ipv4.clear();
        let machines = [
            no_address,
            broken("10.0.0.1", "ipmi", MachineState::Unhealthy, 0.0),
            broken("10.0.0.2", "redfish", MachineState::Unhealthy, 0.0),
            broken("10.0.0.3", "ipmi", MachineState::Unreachable, 10.0),
            broken("10.0.0.4", "ipmi", MachineState::Unreachable, 10.0),
            broken("10.0.0.5", "ipmi", MachineState::Unreachable, 600.0),
        ];
        let queued = [RepairEntry::new("unhealthy", "ipmi", "10.0.0.1", "")];
        let reboots = [RebootQueueEntry {
            status: RebootStatus::Rebooting,
            ..RebootQueueEntry::new("10.0.0.3")
        }];
        let (entries, skipped) = repair_entries(&machines, &queued, &reboots, &cluster(), &constraints(5, 300));
        assert_eq!(
            skipped,
            [
                Skipped::NoAddress("s-10.0.0.9".into()),
                Skipped::Recent("10.0.0.1".into()),
                Skipped::Undeclared {
                    address: "10.0.0.2".into(),
                    reason: "no repair procedure for machine type \"redfish\"".into()
                },
                Skipped::Rebooting("10.0.0.3".into()),
                Skipped::OutOfCluster("10.0.0.4".into()),
            ]
        );
        // Unreachable for longer than the wait: queued though not a node.
        assert_eq!(
            entries,
            [RepairEntry::new("unreachable", "ipmi", "10.0.0.5", "s-10.0.0.5")]
        );
    }

    #[test]
    fn the_limit_counts_the_queue_and_the_new_entries() {
        let machines = [
            broken("10.0.0.2", "ipmi", MachineState::Unhealthy, 0.0),
            broken("10.0.0.3", "ipmi", MachineState::Unreachable, 0.0),
        ];
        let queued = [RepairEntry::new("unhealthy", "ipmi", "10.0.0.1", "")];
        for (maximum, want) in [(0, 0), (2, 0), (3, 2), (10, 2)] {
            let (entries, skipped) = repair_entries(&machines, &queued, &[], &cluster(), &constraints(maximum, 0));
            assert_eq!(entries.len(), want, "maximum {maximum}");
            let too_many = Skipped::TooMany {
                queued: 1,
                new: 2,
                maximum,
            };
            assert_eq!(skipped.contains(&too_many), want == 0, "maximum {maximum}: {skipped:?}");
        }
        // Nothing new: nothing to refuse, even over the limit.
        let (entries, skipped) = repair_entries(&[], &queued, &[], &cluster(), &constraints(0, 0));
        assert!(entries.is_empty() && skipped.is_empty());
    }

    #[test]
    fn no_repair_section_queues_nothing() {
        let mut c = cluster();
        c.repair = None;
        let machines = [broken("10.0.0.2", "ipmi", MachineState::Unhealthy, 0.0)];
        let (entries, skipped) = repair_entries(&machines, &[], &[], &c, &constraints(5, 0));
        assert!(entries.is_empty());
        assert!(matches!(&skipped[..], [Skipped::Undeclared { .. }]), "{skipped:?}");
    }
}
