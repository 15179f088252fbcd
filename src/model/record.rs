//! Operation records (`<prefix>records/<16 hex digits>`) and the server status (`<prefix>status`),
//! in CKE's JSON layout.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Phase, PlannedOp};

/// The state of an operation record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Recorded, not started.
    New,
    /// Running its commands.
    Running,
    /// Stopped before completion (a command failed, or its leader went away).
    Cancelled,
    /// All commands succeeded.
    Completed,
}

/// The command an operation is running (or last ran).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordCommand {
    /// Command name, e.g. `run-container`.
    #[serde(default)]
    pub name: String,
    /// What it acts on, e.g. a node address.
    #[serde(default)]
    pub target: String,
    /// Free-form detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One operation run by the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Monotonic id; serialized as a string as in CKE.
    #[serde(with = "id_string")]
    pub id: i64,
    /// Current state.
    pub status: RecordStatus,
    /// Operation name, e.g. `etcd-bootstrap`.
    pub operation: String,
    /// Targets (node addresses or object names).
    #[serde(default)]
    pub targets: Vec<String>,
    /// Current or last command.
    #[serde(default)]
    pub command: RecordCommand,
    /// Error that ended the operation, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
    /// Name of the cke instance that ran it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub leader: String,
    /// When it started.
    #[serde(rename = "start-at")]
    pub start_at: DateTime<Utc>,
    /// When it ended (unset while running).
    #[serde(rename = "end-at", default, skip_serializing_if = "Option::is_none")]
    pub end_at: Option<DateTime<Utc>>,
    /// What each target of the step that failed came to, when that step acted on several nodes (a
    /// cke-rs addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results: Option<StepResults>,
}

/// What each target of a step over several nodes came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepResults {
    /// Targets where the command succeeded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub succeeded: Vec<String>,
    /// Targets where it failed, with the error.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub failed: std::collections::BTreeMap<String, String>,
    /// Targets where it had not ended when the operation was stopped (cke shutting down).
    #[serde(rename = "not-finished", default, skip_serializing_if = "Vec::is_empty")]
    pub not_finished: Vec<String>,
}

/// `items` for a message: all of them when there are at most `examples`, else the first `examples`
/// and how many more (`a, b, c and 997 more`), so that a message stays short at any scale.
pub fn few<S: AsRef<str>>(items: &[S], examples: usize) -> String {
    let first: Vec<&str> = items.iter().take(examples).map(AsRef::as_ref).collect();
    if items.len() <= examples {
        first.join(", ")
    } else {
        format!("{} and {} more", first.join(", "), items.len() - examples)
    }
}

impl Record {
    /// The storage key suffix of record `id`: 16 hex digits, so keys sort by id.
    pub fn key_suffix(id: i64) -> String {
        format!("{id:016x}")
    }
}

mod id_string {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Id {
            S(String),
            N(i64),
        }
        match Id::deserialize(d)? {
            Id::S(s) => s.parse().map_err(D::Error::custom),
            Id::N(n) => Ok(n),
        }
    }
}

/// The leader's published status (`<prefix>status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerStatus {
    /// The phase of the last pass, e.g. `completed`.
    pub phase: Phase,
    /// When that phase was entered.
    pub timestamp: DateTime<Utc>,
    /// Why the pass did nothing, when it says (a cke-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The operations the leader plans next, each with `operation`, its targets and `reason` (a
    /// cke-rs addition; `ckecli plan` prints them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub operations: Vec<PlannedOp>,
    /// The images the leader runs (a cke-rs addition; `ckecli images` prints them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images: Option<crate::topology::Images>,
    /// The Kubernetes version of the Kubernetes image, e.g. `1.20.2` (a cke-rs addition).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kubernetes_version: String,
}
