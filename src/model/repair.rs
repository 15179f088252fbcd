//! The repair queue's data (CKE's `RepairQueueEntry`, `repair.go`): entries as stored under
//! `repairs/data/<16 hex digits>`, their state machine's states, the lookups of an entry's procedure,
//! operation and step in the declaration's `repair` section, and what the probe saw of the queue.
//! Pure: no I/O, no clock (times are given).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::queue::{go_time, index_string, QueueEntry};
use super::{Cluster, Repair, RepairOperation, RepairStep};

/// Machines repaired at once when `repair.max_concurrent_repairs` is unset (CKE's).
pub const DEFAULT_MAX_CONCURRENT_REPAIRS: i64 = 1;
/// Seconds a drain may take when `repair.eviction_timeout_seconds` is unset (CKE's).
pub const DEFAULT_REPAIR_EVICTION_TIMEOUT_SECONDS: i64 = 600;
/// Seconds a health check may take when the operation's `command_timeout_seconds` is unset.
pub const DEFAULT_REPAIR_HEALTH_CHECK_TIMEOUT_SECONDS: i64 = 30;
/// Seconds a repair command may take when the step's `command_timeout_seconds` is unset.
pub const DEFAULT_REPAIR_COMMAND_TIMEOUT_SECONDS: i64 = 30;
/// Seconds the success command may take when `success_command_timeout` is unset.
pub const DEFAULT_REPAIR_SUCCESS_COMMAND_TIMEOUT_SECONDS: i64 = 30;
/// The base of the drain back-off in seconds (CKE's `drainBackOffBaseSeconds`).
pub const DRAIN_BACKOFF_BASE_SECONDS: i64 = 300;

/// Where an entry is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepairStatus {
    /// Waiting to be processed.
    Queued,
    /// Its steps are being run.
    Processing,
    /// The machine became healthy (and the success command, if any, succeeded).
    Succeeded,
    /// Every step ran without the machine becoming healthy, a repair command failed on every
    /// attempt, or the success command failed.
    Failed,
}

impl RepairStatus {
    /// Every status, in CKE's order (for counts).
    pub const ALL: [RepairStatus; 4] = [
        RepairStatus::Queued,
        RepairStatus::Processing,
        RepairStatus::Succeeded,
        RepairStatus::Failed,
    ];

    /// The name as stored (`queued`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RepairStatus::Queued => "queued",
            RepairStatus::Processing => "processing",
            RepairStatus::Succeeded => "succeeded",
            RepairStatus::Failed => "failed",
        }
    }
}

/// Where the current step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepairStepStatus {
    /// Not started (or backing off after a failed drain).
    Waiting,
    /// The node's pods are being evicted.
    Draining,
    /// The repair command ran; waiting for the health check to pass or `watch_seconds` to pass.
    Watching,
}

/// One repair request (CKE's `RepairQueueEntry`; the JSON is CKE's, field for field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairEntry {
    /// The queue index (its key's suffix); a string in JSON, as in CKE.
    #[serde(with = "index_string")]
    pub index: i64,
    /// The machine's IP address.
    pub address: String,
    /// Its Node name when it is a declared node ([`RepairEntry::fill_nodename`]), else empty.
    #[serde(default)]
    pub nodename: String,
    /// The machine's serial number, if given.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub serial: String,
    /// Selects the procedure (`repair_procedures[].machine_types`).
    pub machine_type: String,
    /// Selects the operation of that procedure (`repair_operations[].operation`).
    pub operation: String,
    /// Where the entry is in its life.
    pub status: RepairStatus,
    /// The current step (index into `repair_steps`).
    #[serde(default)]
    pub step: usize,
    /// Where the current step is.
    pub step_status: RepairStepStatus,
    /// Marked for removal (`ckecli repair-queue delete`); the leader removes it.
    #[serde(default)]
    pub deleted: bool,
    /// When `status` or `step_status` last changed; Go's zero time (`0001-01-01T00:00:00Z`) when never.
    #[serde(default, with = "go_time")]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// Drains that failed in a row.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drain_backoff_count: i64,
    /// No drain is tried before this time; Go's zero time when none is pending.
    #[serde(default, with = "go_time")]
    pub drain_backoff_expire: Option<DateTime<Utc>>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl QueueEntry for RepairEntry {
    fn index(&self) -> i64 {
        self.index
    }

    fn set_index(&mut self, index: i64) {
        self.index = index;
    }
}

/// Why an entry's operation or step cannot be found in the declaration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepairLookupError {
    /// No procedure lists the entry's machine type.
    #[error("no repair procedure for machine type {machine_type:?}")]
    ProcedureNotFound {
        /// The machine type asked for.
        machine_type: String,
    },
    /// The procedure of the machine type has no such operation.
    #[error("the repair procedure for machine type {machine_type:?} has no operation {operation:?}")]
    OperationNotFound {
        /// The machine type.
        machine_type: String,
        /// The operation asked for.
        operation: String,
    },
    /// The step index is past the operation's last step.
    #[error("step {step} is past the last step of operation {operation:?} ({steps} steps)")]
    StepOutOfRange {
        /// The operation.
        operation: String,
        /// The entry's step.
        step: usize,
        /// How many steps the operation has.
        steps: usize,
    },
}

impl RepairEntry {
    /// A new, queued entry (CKE's `NewRepairQueueEntry`); the index is given when it is stored.
    pub fn new(operation: &str, machine_type: &str, address: &str, serial: &str) -> Self {
        RepairEntry {
            index: 0,
            address: address.into(),
            nodename: String::new(),
            serial: serial.into(),
            machine_type: machine_type.into(),
            operation: operation.into(),
            status: RepairStatus::Queued,
            step: 0,
            step_status: RepairStepStatus::Waiting,
            deleted: false,
            last_transition_time: None,
            drain_backoff_count: 0,
            drain_backoff_expire: None,
        }
    }

    /// Sets `nodename` from the declaration: the Node name of the declared node with this address,
    /// empty when the machine is not declared (it may join or leave the cluster while queued).
    pub fn fill_nodename(&mut self, cluster: &Cluster) {
        self.nodename = cluster
            .node(&self.address)
            .map(|n| n.nodename().to_string())
            .unwrap_or_default();
    }

    /// The machine is a node of the cluster (as of the last [`RepairEntry::fill_nodename`]).
    pub fn is_in_cluster(&self) -> bool {
        !self.nodename.is_empty()
    }

    /// Succeeded or failed: the leader leaves it alone until it is deleted.
    pub fn has_finished(&self) -> bool {
        matches!(self.status, RepairStatus::Succeeded | RepairStatus::Failed)
    }

    /// The operation of the procedure for the entry's machine type.
    pub fn operation<'a>(&self, cluster: &'a Cluster) -> Result<&'a RepairOperation, RepairLookupError> {
        find_operation(cluster, &self.machine_type, &self.operation)
    }

    /// The entry's current step.
    pub fn current_step<'a>(&self, cluster: &'a Cluster) -> Result<&'a RepairStep, RepairLookupError> {
        let op = self.operation(cluster)?;
        op.repair_steps
            .get(self.step)
            .ok_or_else(|| RepairLookupError::StepOutOfRange {
                operation: self.operation.clone(),
                step: self.step,
                steps: op.repair_steps.len(),
            })
    }

    /// The drain is backing off at `now`: waiting, with a back-off expiring after `now`.
    pub fn backing_off(&self, now: DateTime<Utc>) -> bool {
        self.step_status == RepairStepStatus::Waiting && self.drain_backoff_expire.is_some_and(|t| t > now)
    }

    /// The entry after a failed or timed-out drain at `now` (CKE's `repairDrainBackOff`): processing,
    /// waiting, one more back-off, which expires `300 + jitter` seconds after `now`; `jitter` is
    /// drawn by the caller from `[0, 300 × count)` ([`drain_backoff_jitter_bound`] with the new count).
    pub fn backed_off(&self, now: DateTime<Utc>, jitter: i64) -> RepairEntry {
        let now = truncate_to_second(now);
        let mut e = self.clone();
        e.status = RepairStatus::Processing;
        e.step_status = RepairStepStatus::Waiting;
        e.last_transition_time = Some(now);
        e.drain_backoff_count += 1;
        e.drain_backoff_expire = Some(now + chrono::Duration::seconds(DRAIN_BACKOFF_BASE_SECONDS + jitter));
        e
    }

    /// The entry with status `status` and step status `step_status` since `now` (truncated to the
    /// second, as CKE stores it).
    pub fn transitioned(&self, status: RepairStatus, step_status: RepairStepStatus, now: DateTime<Utc>) -> RepairEntry {
        let mut e = self.clone();
        e.status = status;
        e.step_status = step_status;
        e.last_transition_time = Some(truncate_to_second(now));
        e
    }
}

/// The exclusive upper bound of the random part of the back-off after the `count`-th failed drain
/// in a row: `300 × count` seconds (CKE's `rand.Int63n(drainBackOffBaseSeconds * count)`).
pub fn drain_backoff_jitter_bound(count: i64) -> i64 {
    DRAIN_BACKOFF_BASE_SECONDS * count.max(1)
}

/// `t` without its fraction of a second (CKE stores transition times so).
pub fn truncate_to_second(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// The operation named `operation` of the procedure for `machine_type` (the first procedure that
/// lists the type, as CKE looks it up).
pub fn find_operation<'a>(
    cluster: &'a Cluster,
    machine_type: &str,
    operation: &str,
) -> Result<&'a RepairOperation, RepairLookupError> {
    let procedures = cluster.repair.as_ref().map_or(&[][..], |r| &r.repair_procedures[..]);
    let procedure = procedures
        .iter()
        .find(|p| p.machine_types.iter().any(|t| t == machine_type))
        .ok_or_else(|| RepairLookupError::ProcedureNotFound {
            machine_type: machine_type.into(),
        })?;
    procedure
        .repair_operations
        .iter()
        .find(|o| o.operation == operation)
        .ok_or_else(|| RepairLookupError::OperationNotFound {
            machine_type: machine_type.into(),
            operation: operation.into(),
        })
}

impl Repair {
    /// `max_concurrent_repairs` with CKE's default.
    pub fn max_concurrent(&self) -> i64 {
        self.max_concurrent_repairs.unwrap_or(DEFAULT_MAX_CONCURRENT_REPAIRS)
    }

    /// `eviction_timeout_seconds` with CKE's default.
    pub fn eviction_timeout(&self) -> i64 {
        self.eviction_timeout_seconds
            .unwrap_or(DEFAULT_REPAIR_EVICTION_TIMEOUT_SECONDS)
    }
}

/// The repair queue as the probe saw it (CKE's `RepairQueueStatus`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepairQueueStatus {
    /// Processing is enabled (`repairs/disabled` is not `true`).
    #[serde(default)]
    pub enabled: bool,
    /// Every entry, in index order, with `nodename` refreshed from the declaration.
    #[serde(default)]
    pub entries: Vec<RepairEntry>,
    /// Addresses whose health check printed `true` (checked for every unfinished entry).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub repair_completed: BTreeSet<String>,
    /// Addresses of draining entries whose drain is done: no pod left to evict, or the machine is
    /// no longer a node of the cluster.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub drain_completed: BTreeSet<String>,
}

impl RepairQueueStatus {
    /// The machine with Node name `nodename` is being repaired with its pods drained or being
    /// drained (CKE's `repairProcessing`): the `uncordon-nodes` phase leaves its cordon alone.
    pub fn processing(&self, nodename: &str) -> bool {
        self.entries.iter().any(|e| {
            e.is_in_cluster()
                && e.nodename == nodename
                && e.status == RepairStatus::Processing
                && matches!(e.step_status, RepairStepStatus::Draining | RepairStepStatus::Watching)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Node, RepairProcedure};

    fn cluster() -> Cluster {
        let mut c = Cluster::new(
            "c",
            "10.96.0.0/16",
            vec![Node::new("10.0.0.1", "u", true), {
                let mut n = Node::new("10.0.0.2", "u", false);
                n.hostname = "worker".into();
                n
            }],
        );
        c.repair = Some(Repair {
            repair_procedures: vec![RepairProcedure {
                machine_types: vec!["type1".into(), "type2".into()],
                repair_operations: vec![RepairOperation {
                    operation: "op1".into(),
                    repair_steps: vec![RepairStep {
                        repair_command: vec!["repair0".into()],
                        ..Default::default()
                    }],
                    health_check_command: vec!["check".into()],
                    ..Default::default()
                }],
            }],
            ..Default::default()
        });
        c
    }

    #[test]
    fn json_is_ckes() {
        // As CKE's Go encoder writes a fresh entry: index as a string, zero times, no serial, no count.
        let mut e = RepairEntry::new("op1", "type1", "10.0.0.2", "");
        e.index = 3;
        e.nodename = "worker".into();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"index":"3","address":"10.0.0.2","nodename":"worker","machine_type":"type1","operation":"op1","status":"queued","step":0,"step_status":"waiting","deleted":false,"last_transition_time":"0001-01-01T00:00:00Z","drain_backoff_expire":"0001-01-01T00:00:00Z"}"#
        );
        assert_eq!(serde_json::from_str::<RepairEntry>(&json).unwrap(), e);

        // A backing-off entry written by CKE reads back with its times and count.
        let go = r#"{"index":"12","address":"10.0.0.9","nodename":"","serial":"ABC","machine_type":"t","operation":"o","status":"processing","step":1,"step_status":"waiting","deleted":true,"last_transition_time":"2024-05-01T10:00:00Z","drain_backoff_count":2,"drain_backoff_expire":"2024-05-01T10:07:30.5+09:00"}"#;
        let e: RepairEntry = serde_json::from_str(go).unwrap();
        assert_eq!(e.index, 12);
        assert_eq!(e.serial, "ABC");
        assert_eq!(e.status, RepairStatus::Processing);
        assert_eq!(e.step, 1);
        assert!(e.deleted);
        assert_eq!(e.drain_backoff_count, 2);
        assert_eq!(
            e.drain_backoff_expire.unwrap().to_rfc3339(),
            "2024-05-01T01:07:30.500+00:00"
        );
        let back = serde_json::to_value(&e).unwrap();
        assert_eq!(back["last_transition_time"], "2024-05-01T10:00:00Z");
        assert_eq!(back["drain_backoff_expire"], "2024-05-01T01:07:30.500Z");
        assert_eq!(back["drain_backoff_count"], 2);
    }

    #[test]
    fn bad_json_names_the_field() {
        let err = serde_json::from_str::<RepairEntry>(
            r#"{"index":"1","address":"a","machine_type":"t","operation":"o","status":"broken","step_status":"waiting"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("broken"), "{err}");
        let err = serde_json::from_str::<RepairEntry>(
            r#"{"index":"1","address":"a","machine_type":"t","operation":"o","status":"queued","step_status":"waiting","last_transition_time":"yesterday"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("yesterday"), "{err}");
    }

    #[test]
    fn lookups() {
        let c = cluster();
        let mut e = RepairEntry::new("op1", "type2", "10.0.0.2", "");
        e.fill_nodename(&c);
        assert_eq!(e.nodename, "worker");
        assert!(e.is_in_cluster());
        assert_eq!(e.current_step(&c).unwrap().repair_command, ["repair0"]);
        e.step = 1;
        assert_eq!(
            e.current_step(&c).unwrap_err(),
            RepairLookupError::StepOutOfRange {
                operation: "op1".into(),
                step: 1,
                steps: 1
            }
        );
        let mut out = RepairEntry::new("op1", "type1", "10.9.9.9", "");
        out.nodename = "stale".into();
        out.fill_nodename(&c);
        assert!(!out.is_in_cluster());
        assert!(matches!(
            RepairEntry::new("op1", "type3", "a", "").operation(&c),
            Err(RepairLookupError::ProcedureNotFound { .. })
        ));
        assert!(matches!(
            RepairEntry::new("op2", "type1", "a", "").operation(&c),
            Err(RepairLookupError::OperationNotFound { .. })
        ));
        let mut none = c.clone();
        none.repair = None;
        assert!(matches!(
            RepairEntry::new("op1", "type1", "a", "").operation(&none),
            Err(RepairLookupError::ProcedureNotFound { .. })
        ));
    }

    #[test]
    fn defaults() {
        let r = Repair::default();
        assert_eq!(r.max_concurrent(), 1);
        assert_eq!(r.eviction_timeout(), 600);
    }

    #[test]
    fn backoff_follows_ckes_formula() {
        let now = DateTime::parse_from_rfc3339("2024-01-01T00:00:00.7Z")
            .unwrap()
            .with_timezone(&Utc);
        let e = RepairEntry::new("op1", "type1", "a", "");
        let once = e.backed_off(now, 299);
        assert_eq!(once.drain_backoff_count, 1);
        assert_eq!(once.status, RepairStatus::Processing);
        assert_eq!(once.step_status, RepairStepStatus::Waiting);
        assert_eq!(
            once.last_transition_time.unwrap().to_rfc3339(),
            "2024-01-01T00:00:00+00:00"
        );
        assert_eq!(
            once.drain_backoff_expire.unwrap().to_rfc3339(),
            "2024-01-01T00:09:59+00:00"
        );
        assert_eq!(drain_backoff_jitter_bound(1), 300);
        assert_eq!(drain_backoff_jitter_bound(3), 900);
        assert!(once.backing_off(now));
        assert!(!once.backing_off(now + chrono::Duration::seconds(600)));
        let twice = once.backed_off(now, 0);
        assert_eq!(twice.drain_backoff_count, 2);
    }

    #[test]
    fn processing_means_draining_or_watching_in_cluster() {
        let mut e = RepairEntry::new("op1", "type1", "10.0.0.2", "");
        e.nodename = "worker".into();
        let mut q = RepairQueueStatus {
            enabled: true,
            entries: vec![e.clone()],
            ..Default::default()
        };
        assert!(!q.processing("worker"));
        for (s, want) in [
            (RepairStepStatus::Waiting, false),
            (RepairStepStatus::Draining, true),
            (RepairStepStatus::Watching, true),
        ] {
            q.entries[0] = e.transitioned(RepairStatus::Processing, s, Utc::now());
            assert_eq!(q.processing("worker"), want, "{s:?}");
        }
        q.entries[0].nodename.clear();
        assert!(!q.processing(""));
    }
}
