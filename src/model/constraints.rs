//! Constraints: limits the cluster declaration must satisfy before cke acts on it (CKE compatible).

use serde::{Deserialize, Serialize};

use super::{Cluster, FieldError, ValidationError};

/// Constraints stored under `<prefix>constraints`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Constraints {
    /// The exact number of control-plane nodes the cluster must declare.
    #[serde(rename = "control-plane-count")]
    pub control_plane_count: i64,
    /// Percentage (0-100) of declared workers that must be healthy.
    #[serde(rename = "minimum-workers-rate")]
    pub minimum_workers_rate: i64,
    /// Unreachable nodes tolerated while the reboot queue runs.
    #[serde(rename = "maximum-unreachable-nodes-for-reboot")]
    pub maximum_unreachable_nodes_for_reboot: i64,
    /// Entries allowed in the repair queue.
    #[serde(rename = "maximum-repair-queue-entries")]
    pub maximum_repair_queue_entries: i64,
    /// Seconds to wait before repairing a machine that is being rebooted.
    #[serde(rename = "wait-seconds-to-repair-rebooting")]
    pub wait_seconds_to_repair_rebooting: i64,
}

impl Default for Constraints {
    fn default() -> Self {
        Constraints {
            control_plane_count: 1,
            minimum_workers_rate: 80,
            maximum_unreachable_nodes_for_reboot: 0,
            maximum_repair_queue_entries: 0,
            wait_seconds_to_repair_rebooting: 0,
        }
    }
}

/// The constraint names `ckecli constraints set` accepts.
pub const CONSTRAINT_NAMES: [&str; 5] = [
    "control-plane-count",
    "minimum-workers-rate",
    "maximum-unreachable-nodes-for-reboot",
    "maximum-repair-queue-entries",
    "wait-seconds-to-repair-rebooting",
];

impl Constraints {
    /// Checks the values themselves.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errs = Vec::new();
        if self.control_plane_count < 1 {
            errs.push(FieldError::new("control-plane-count", "must be at least 1"));
        }
        if !(0..=100).contains(&self.minimum_workers_rate) {
            errs.push(FieldError::new("minimum-workers-rate", "must be between 0 and 100"));
        }
        for (name, v) in [
            (
                "maximum-unreachable-nodes-for-reboot",
                self.maximum_unreachable_nodes_for_reboot,
            ),
            ("maximum-repair-queue-entries", self.maximum_repair_queue_entries),
            (
                "wait-seconds-to-repair-rebooting",
                self.wait_seconds_to_repair_rebooting,
            ),
        ] {
            if v < 0 {
                errs.push(FieldError::new(name, "must not be negative"));
            }
        }
        ValidationError::from_errors(errs)
    }

    /// Returns a copy with constraint `name` set to `value`, validated.
    pub fn with(&self, name: &str, value: &str) -> Result<Constraints, ValidationError> {
        let v: i64 = value
            .trim()
            .parse()
            .map_err(|_| ValidationError::single(name, format!("{value:?} is not an integer")))?;
        let mut c = *self;
        match name {
            "control-plane-count" => c.control_plane_count = v,
            "minimum-workers-rate" => c.minimum_workers_rate = v,
            "maximum-unreachable-nodes-for-reboot" => c.maximum_unreachable_nodes_for_reboot = v,
            "maximum-repair-queue-entries" => c.maximum_repair_queue_entries = v,
            "wait-seconds-to-repair-rebooting" => c.wait_seconds_to_repair_rebooting = v,
            _ => {
                return Err(ValidationError::single(
                    name,
                    format!("unknown constraint; known: {}", CONSTRAINT_NAMES.join(", ")),
                ))
            }
        }
        c.validate()?;
        Ok(c)
    }

    /// Checks a cluster declaration against these constraints. A cluster that fails is not acted on.
    pub fn check(&self, cluster: &Cluster) -> Result<(), ValidationError> {
        let cp = cluster.control_planes().count() as i64;
        if cp != self.control_plane_count {
            return Err(ValidationError::single(
                "nodes",
                format!(
                    "{cp} control-plane node(s) declared, but constraint control-plane-count is {}",
                    self.control_plane_count
                ),
            ));
        }
        Ok(())
    }
}
