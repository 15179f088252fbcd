//! The reboot queue's entries, as CKE stores them (`reboot.go`): JSON under `reboots/data/`,
//! `{"index":"3","node":"10.0.0.1","status":"queued","last_transition_time":"...",
//! "drain_backoff_count":1,"drain_backoff_expire":"..."}`. Pure.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::queue::{go_time, index_string, QueueEntry};
use super::Cluster;

/// Where a reboot stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum RebootStatus {
    /// Waiting to be drained.
    Queued,
    /// Cordoned, its pods being evicted.
    Draining,
    /// The reboot command ran; waiting for the boot check.
    Rebooting,
    /// Cancelled (`ckecli reboot-queue cancel`); removed by the next pass.
    Cancelled,
}

impl RebootStatus {
    /// Every status, in CKE's order.
    pub const ALL: [RebootStatus; 4] = [
        RebootStatus::Queued,
        RebootStatus::Draining,
        RebootStatus::Rebooting,
        RebootStatus::Cancelled,
    ];

    /// CKE's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            RebootStatus::Queued => "queued",
            RebootStatus::Draining => "draining",
            RebootStatus::Rebooting => "rebooting",
            RebootStatus::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for RebootStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One node to reboot (CKE's `RebootQueueEntry`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RebootQueueEntry {
    /// Its index, given at enqueue time.
    #[serde(with = "index_string")]
    pub index: i64,
    /// The node's address (also taken as its Node's name in the API, as CKE does).
    pub node: String,
    /// Where it stands.
    pub status: RebootStatus,
    /// When the status last changed (`None`: never; Go's zero time).
    #[serde(with = "go_time", default)]
    pub last_transition_time: Option<DateTime<Utc>>,
    /// How many times its drain backed off.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub drain_backoff_count: u32,
    /// Its drain is not tried again before this time.
    #[serde(with = "go_time", default)]
    pub drain_backoff_expire: Option<DateTime<Utc>>,
}

impl RebootQueueEntry {
    /// A queued entry for the node at `address` (the index is given at enqueue time).
    pub fn new(address: &str) -> Self {
        RebootQueueEntry {
            index: 0,
            node: address.into(),
            status: RebootStatus::Queued,
            last_transition_time: None,
            drain_backoff_count: 0,
            drain_backoff_expire: None,
        }
    }

    /// The node is declared.
    pub fn cluster_member(&self, cluster: &Cluster) -> bool {
        cluster.node(&self.node).is_some()
    }

    /// Its drain backs off until after `now`.
    pub fn backing_off(&self, now: DateTime<Utc>) -> bool {
        self.drain_backoff_expire.is_some_and(|t| t > now)
    }
}

/// CKE's drain back-off: the first lasts 300 s, each next one twice as long, at most 1200 s, plus a
/// random 0 to 300 s.
pub const DRAIN_BACKOFF_BASE_SECONDS: i64 = 300;
/// The longest drain back-off before its random part.
pub const DRAIN_BACKOFF_MAX_SECONDS: i64 = 1200;

/// The back-off after the `count`th failed drain (1 for the first), before its random part:
/// `min(300 · 2^(count−1), 1200)` seconds.
pub fn drain_backoff_seconds(count: u32) -> i64 {
    let doubled = DRAIN_BACKOFF_BASE_SECONDS.saturating_mul(1i64 << count.saturating_sub(1).min(32));
    doubled.min(DRAIN_BACKOFF_MAX_SECONDS)
}

impl RebootQueueEntry {
    /// CKE's drainBackOff at `now`: back to `queued`, the back-off count up by one, and not drained
    /// again before `now + drain_backoff_seconds(count) + jitter_seconds` (the caller draws the
    /// jitter from [0, 300)). Times are kept to the second, as CKE keeps them.
    pub fn back_off(&mut self, now: DateTime<Utc>, jitter_seconds: i64) {
        let now = seconds(now);
        self.status = RebootStatus::Queued;
        self.last_transition_time = Some(now);
        self.drain_backoff_count += 1;
        let wait = drain_backoff_seconds(self.drain_backoff_count) + jitter_seconds;
        self.drain_backoff_expire = Some(now + chrono::Duration::seconds(wait));
    }

    /// Moves to `status` at `now` (to the second).
    pub fn transition(&mut self, status: RebootStatus, now: DateTime<Utc>) {
        self.status = status;
        self.last_transition_time = Some(seconds(now));
    }
}

/// `t` without its fraction of a second.
fn seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

impl QueueEntry for RebootQueueEntry {
    fn index(&self) -> i64 {
        self.index
    }

    fn set_index(&mut self, index: i64) {
        self.index = index;
    }
}

/// The first entry of each node, in queue order (CKE's `DedupRebootQueueEntries`).
pub fn dedup_reboot_entries(entries: &[RebootQueueEntry]) -> Vec<RebootQueueEntry> {
    let mut seen = std::collections::BTreeSet::new();
    entries
        .iter()
        .filter(|e| seen.insert(e.node.clone()))
        .cloned()
        .collect()
}
