//! The repair queue's storage (CKE's `RegisterRepairsEntry`, `GetRepairsEntries`,
//! `UpdateRepairsEntry`, `DeleteRepairsEntry`, `IsRepairQueueDisabled`, `EnableRepairQueue`), typed
//! over the queue pattern of [`super::queue`] with CKE's keys `repairs/data/%016x`,
//! `repairs/write-index` and `repairs/disabled`. Used by `ckecli repair-queue`, the leader's probe
//! and operators, and sabakan's auto-repair. Checking a request against the declaration is the
//! caller's business ([`crate::model::repair::find_operation`]).

use super::queue::{self, REPAIR_QUEUE};
use super::{Fence, Storage, StorageError};
use crate::model::RepairEntry;

/// Appends `entry` to the repair queue (its index is the write index, taken in a transaction
/// conditioned on the index's revision); the entry as stored, with its index.
pub async fn enqueue(s: &dyn Storage, mut entry: RepairEntry) -> Result<RepairEntry, StorageError> {
    queue::enqueue(s, &REPAIR_QUEUE, std::slice::from_mut(&mut entry)).await?;
    Ok(entry)
}

/// Every entry, by index.
pub async fn entries(s: &dyn Storage) -> Result<Vec<RepairEntry>, StorageError> {
    queue::entries(s, &REPAIR_QUEUE).await
}

/// Processing is enabled (`repairs/disabled` is not `true`).
pub async fn is_enabled(s: &dyn Storage) -> Result<bool, StorageError> {
    queue::is_enabled(s, &REPAIR_QUEUE).await
}

/// Enables or disables processing.
pub async fn set_enabled(s: &dyn Storage, enabled: bool) -> Result<(), StorageError> {
    queue::set_enabled(s, &REPAIR_QUEUE, enabled).await
}

/// Applies `change` to entry `index` as stored, in a compare-and-swap loop (fenced with `fence`, the
/// leader's); `change` returns false when there is nothing to write. `None` when the entry is gone.
pub async fn update(
    s: &dyn Storage,
    index: i64,
    fence: Option<&Fence>,
    change: impl FnMut(&mut RepairEntry) -> bool + Send,
) -> Result<Option<RepairEntry>, StorageError> {
    queue::update(s, &REPAIR_QUEUE, index, fence, change).await
}

/// Removes entry `index`, only while the leader's fence holds.
pub async fn dequeue(s: &dyn Storage, fence: &Fence, index: i64) -> Result<(), StorageError> {
    queue::dequeue(s, &REPAIR_QUEUE, fence, index).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[tokio::test]
    async fn ckes_layout() {
        let s = MemStorage::new("/cke/");
        assert!(is_enabled(&s).await.unwrap());
        set_enabled(&s, false).await.unwrap();
        assert_eq!(s.get_raw("repairs/disabled").await.unwrap().unwrap().value, b"true");
        assert!(!is_enabled(&s).await.unwrap());
        let a = enqueue(&s, RepairEntry::new("op1", "type1", "10.0.0.1", ""))
            .await
            .unwrap();
        let b = enqueue(&s, RepairEntry::new("op1", "type1", "10.0.0.2", "S2"))
            .await
            .unwrap();
        assert_eq!((a.index, b.index), (0, 1));
        assert_eq!(s.get_raw("repairs/write-index").await.unwrap().unwrap().value, b"2");
        let raw = s.get_raw("repairs/data/0000000000000001").await.unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&raw.value).unwrap();
        assert_eq!((v["index"].as_str(), v["serial"].as_str()), (Some("1"), Some("S2")));
        let e = update(&s, 0, None, |e| {
            e.deleted = true;
            true
        })
        .await
        .unwrap()
        .unwrap();
        assert!(e.deleted);
        assert!(update(&s, 7, None, |_| true).await.unwrap().is_none());
        let all = entries(&s).await.unwrap();
        assert_eq!(all.iter().map(|e| e.index).collect::<Vec<_>>(), [0, 1]);
        assert!(all[0].deleted && !all[1].deleted);
    }
}
