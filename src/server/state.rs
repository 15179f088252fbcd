//! State shared by the controller, the election loop and the HTTP server: what `/status` shows,
//! the metrics, and the freshness marks `/health` checks. Plain data behind locks; no I/O.

use std::sync::{Mutex, RwLock};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::metrics::Metrics;
use crate::model::{Phase, PlannedOp, Record};

/// What `/status` shows; updated by the controller and the election loop.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonStatus {
    /// This instance's name.
    pub name: String,
    /// Whether this instance leads.
    pub is_leader: bool,
    /// The current leader's name, as last seen.
    pub leader: Option<String>,
    /// The phase of the leader's last pass.
    pub phase: Option<Phase>,
    /// When that phase was entered.
    pub phase_timestamp: Option<DateTime<Utc>>,
    /// Why the last pass did nothing, if it says.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The last operation this instance ran.
    pub last_operation: Option<Record>,
    /// What the leader plans to do next (empty on followers).
    pub planned_operations: Vec<PlannedOp>,
    /// Plans are made and published but never executed.
    pub dry_run: bool,
    /// The images this instance runs.
    pub images: Option<crate::topology::Images>,
    /// The Kubernetes version of its Kubernetes image, e.g. `1.20.2`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
    /// What the sabakan integration did last (empty when it is not configured).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sabakan: String,
}

/// State shared by the controller, the election loop and the HTTP server.
#[derive(Debug, Default)]
pub struct Shared {
    /// The status shown at `/status`.
    pub status: RwLock<DaemonStatus>,
    /// The metrics shown at `/metrics`.
    pub metrics: Metrics,
    /// When the management etcd last answered.
    pub etcd_ok_at: Mutex<Option<Instant>>,
    /// When the main loop last made progress (campaigning or a pass).
    pub loop_alive_at: Mutex<Option<Instant>>,
    /// What is wrong with the dependencies the leader uses, by source (`vault`, `node <address>`,
    /// `last pass`), shown by `/health`. Cleared when the term ends.
    pub problems: Mutex<std::collections::BTreeMap<String, String>>,
}

impl Shared {
    /// Notes that the main loop is alive.
    pub fn alive(&self) {
        *self.loop_alive_at.lock().unwrap() = Some(Instant::now());
    }

    /// Notes that etcd answered.
    pub fn etcd_ok(&self) {
        *self.etcd_ok_at.lock().unwrap() = Some(Instant::now());
    }

    /// Notes what is wrong with `source`, or that nothing is (`None`).
    pub fn set_problem(&self, source: &str, problem: Option<String>) {
        let mut p = self.problems.lock().unwrap();
        match problem {
            Some(text) => {
                p.insert(source.to_string(), text);
            }
            None => {
                p.remove(source);
            }
        }
    }

    /// Replaces every problem whose source starts with `prefix` with `problems`.
    pub fn replace_problems(&self, prefix: &str, problems: impl IntoIterator<Item = (String, String)>) {
        let mut p = self.problems.lock().unwrap();
        p.retain(|k, _| !k.starts_with(prefix));
        p.extend(problems);
    }

    /// Forgets every problem (the term ended: a follower uses no dependency but etcd).
    pub fn clear_problems(&self) {
        self.problems.lock().unwrap().clear();
    }
}
