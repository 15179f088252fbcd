//! CKE's queues in the management etcd, one pattern for the reboot queue and the repair queue
//! (`storage.go`): entries under `<queue>/data/<index as 16 hex digits>`, the next index under
//! `<queue>/write-index` (a decimal string), and `<queue>/disabled` (`"true"` stops processing).
//!
//! - [`enqueue`] takes the write index and writes the entries and the next index in one
//!   transaction conditioned on the index's mod revision, again on a conflict (CKE enqueues one
//!   entry per transaction; these are all or nothing).
//! - [`update`] is a compare-and-swap loop on the entry's mod revision: the change is applied to the
//!   entry as read, so a concurrent writer (`ckecli ... cancel` against the leader) is never
//!   overwritten with stale data. The leader passes its fence, `ckecli` none.
//! - [`dequeue`] deletes an entry only while the leader's fence holds.

use super::{decode, Condition, Fence, Storage, StorageError, Write};
use crate::model::queue::QueueEntry;

/// The keys of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueKeys {
    /// The queue's name in messages (`reboot queue`).
    pub name: &'static str,
    /// Prefix of the entries (`reboots/data/`).
    pub data: &'static str,
    /// The next index (`reboots/write-index`).
    pub write_index: &'static str,
    /// `"true"` when processing is disabled (`reboots/disabled`).
    pub disabled: &'static str,
}

/// The reboot queue (CKE's keys).
pub const REBOOT_QUEUE: QueueKeys = QueueKeys {
    name: "reboot queue",
    data: "reboots/data/",
    write_index: "reboots/write-index",
    disabled: "reboots/disabled",
};

/// The repair queue (CKE's keys).
pub const REPAIR_QUEUE: QueueKeys = QueueKeys {
    name: "repair queue",
    data: "repairs/data/",
    write_index: "repairs/write-index",
    disabled: "repairs/disabled",
};

/// `"true"` while the leader processes the reboot queue (enabled and not empty; CKE writes it each
/// pass, for monitoring).
pub const KEY_REBOOTS_RUNNING: &str = "reboots/running";

/// How many times a compare-and-swap is tried before giving up with [`StorageError::Conflict`].
pub const CAS_ATTEMPTS: usize = 100;

impl QueueKeys {
    /// The key of the entry with `index`.
    pub fn entry_key(&self, index: i64) -> String {
        format!("{}{index:016x}", self.data)
    }
}

/// Whether processing is enabled (`<queue>/disabled` is not `"true"`).
pub async fn is_enabled(s: &dyn Storage, q: &QueueKeys) -> Result<bool, StorageError> {
    Ok(s.get_raw(q.disabled).await?.is_none_or(|kv| kv.value != b"true"))
}

/// Enables or disables processing (CKE writes `"false"` or `"true"` to `<queue>/disabled`).
pub async fn set_enabled(s: &dyn Storage, q: &QueueKeys, enabled: bool) -> Result<(), StorageError> {
    s.put_raw(q.disabled, if enabled { b"false".to_vec() } else { b"true".to_vec() })
        .await
}

/// Sets `"true"` or `"false"` at `key` with the leader's fence.
pub async fn put_flag_fenced(s: &dyn Storage, fence: &Fence, key: &str, value: bool) -> Result<(), StorageError> {
    s.put_fenced(fence, vec![Write::Put(key.into(), value.to_string().into_bytes())])
        .await
}

/// Appends `entries` at the end of the queue, giving each its index; all or nothing.
pub async fn enqueue<T: QueueEntry>(s: &dyn Storage, q: &QueueKeys, entries: &mut [T]) -> Result<(), StorageError> {
    for _ in 0..CAS_ATTEMPTS {
        let (next, rev) = match s.get_raw(q.write_index).await? {
            None => (0, 0),
            Some(kv) => {
                let text = String::from_utf8_lossy(&kv.value);
                let next = text.trim().parse::<i64>().map_err(|_| StorageError::Corrupt {
                    key: s.full_key(q.write_index),
                    reason: format!("{text:?} is not a number"),
                })?;
                (next, kv.mod_revision)
            }
        };
        let mut writes = Vec::new();
        for (i, e) in entries.iter_mut().enumerate() {
            e.set_index(next + i as i64);
            writes.push(Write::Put(q.entry_key(e.index()), super::encode(e)));
        }
        let after = next + entries.len() as i64;
        writes.push(Write::Put(q.write_index.into(), after.to_string().into_bytes()));
        if s.txn(vec![Condition::ModRevision(q.write_index.into(), rev)], writes)
            .await?
        {
            return Ok(());
        }
    }
    Err(StorageError::Conflict {
        key: s.full_key(q.write_index),
    })
}

/// Every entry, in queue order (by index).
pub async fn entries<T: QueueEntry>(s: &dyn Storage, q: &QueueKeys) -> Result<Vec<T>, StorageError> {
    s.list_raw(q.data, 0, false)
        .await?
        .into_iter()
        .map(|kv| decode(&s.full_key(&kv.key), &kv.value))
        .collect()
}

/// The entry with `index`, if it is in the queue.
pub async fn entry<T: QueueEntry>(s: &dyn Storage, q: &QueueKeys, index: i64) -> Result<Option<T>, StorageError> {
    let key = q.entry_key(index);
    match s.get_raw(&key).await? {
        None => Ok(None),
        Some(kv) => decode(&s.full_key(&key), &kv.value).map(Some),
    }
}

/// Changes the entry with `index` by `change`, which returns false when there is nothing to change
/// (nothing is written then), in a compare-and-swap loop; with `fence`, only while it holds
/// ([`StorageError::LostLeadership`] otherwise). The entry as written (or as read, when unchanged);
/// `None` when it is not in the queue.
pub async fn update<T: QueueEntry>(
    s: &dyn Storage,
    q: &QueueKeys,
    index: i64,
    fence: Option<&Fence>,
    mut change: impl FnMut(&mut T) -> bool + Send,
) -> Result<Option<T>, StorageError> {
    let key = q.entry_key(index);
    for _ in 0..CAS_ATTEMPTS {
        let Some(kv) = s.get_raw(&key).await? else {
            return Ok(None);
        };
        let mut e: T = decode(&s.full_key(&key), &kv.value)?;
        if !change(&mut e) {
            return Ok(Some(e));
        }
        let mut conditions = vec![Condition::ModRevision(key.clone(), kv.mod_revision)];
        conditions.extend(fence.cloned().map(Condition::Fence));
        if s.txn(conditions, vec![Write::Put(key.clone(), super::encode(&e))])
            .await?
        {
            return Ok(Some(e));
        }
        if let Some(f) = fence {
            if !s.txn(vec![Condition::Fence(f.clone())], vec![]).await? {
                return Err(StorageError::LostLeadership {
                    key: f.key.clone(),
                    create_revision: f.create_revision,
                });
            }
        }
    }
    Err(StorageError::Conflict { key: s.full_key(&key) })
}

/// Removes the entry with `index`, only while the leader's fence holds.
pub async fn dequeue(s: &dyn Storage, q: &QueueKeys, fence: &Fence, index: i64) -> Result<(), StorageError> {
    s.put_fenced(fence, vec![Write::Delete(q.entry_key(index))]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RebootQueueEntry, RebootStatus};
    use crate::storage::MemStorage;

    #[test]
    fn keys_are_cke_s() {
        assert_eq!(REBOOT_QUEUE.entry_key(0), "reboots/data/0000000000000000");
        assert_eq!(REBOOT_QUEUE.entry_key(255), "reboots/data/00000000000000ff");
        assert_eq!(REPAIR_QUEUE.entry_key(16), "repairs/data/0000000000000010");
    }

    #[tokio::test]
    async fn enqueue_list_update_dequeue() {
        let s = MemStorage::new("/cke/");
        let q = &REBOOT_QUEUE;
        assert!(is_enabled(&s, q).await.unwrap());
        set_enabled(&s, q, false).await.unwrap();
        assert_eq!(s.get_raw("reboots/disabled").await.unwrap().unwrap().value, b"true");
        assert!(!is_enabled(&s, q).await.unwrap());
        set_enabled(&s, q, true).await.unwrap();
        assert!(is_enabled(&s, q).await.unwrap());

        let mut batch = vec![RebootQueueEntry::new("10.0.0.1"), RebootQueueEntry::new("10.0.0.2")];
        enqueue(&s, q, &mut batch).await.unwrap();
        enqueue(&s, q, std::slice::from_mut(&mut RebootQueueEntry::new("10.0.0.3")))
            .await
            .unwrap();
        assert_eq!(s.get_raw("reboots/write-index").await.unwrap().unwrap().value, b"3");
        let all: Vec<RebootQueueEntry> = entries(&s, q).await.unwrap();
        let got: Vec<(i64, &str)> = all.iter().map(|e| (e.index, e.node.as_str())).collect();
        assert_eq!(got, [(0, "10.0.0.1"), (1, "10.0.0.2"), (2, "10.0.0.3")]);
        let raw = s.get_raw("reboots/data/0000000000000001").await.unwrap().unwrap();
        assert_eq!(
            String::from_utf8(raw.value).unwrap(),
            r#"{"index":"1","node":"10.0.0.2","status":"queued","last_transition_time":"0001-01-01T00:00:00Z","drain_backoff_expire":"0001-01-01T00:00:00Z"}"#
        );

        let e = update(&s, q, 1, None, |e: &mut RebootQueueEntry| {
            e.status = RebootStatus::Cancelled;
            true
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(e.status, RebootStatus::Cancelled);
        let rev = s.get_raw(&q.entry_key(1)).await.unwrap().unwrap().mod_revision;
        // Nothing to change: nothing written.
        update(&s, q, 1, None, |_: &mut RebootQueueEntry| false).await.unwrap();
        assert_eq!(s.get_raw(&q.entry_key(1)).await.unwrap().unwrap().mod_revision, rev);
        assert!(update(&s, q, 9, None, |_: &mut RebootQueueEntry| true)
            .await
            .unwrap()
            .is_none());

        // Fenced: a fence that does not hold changes nothing.
        let lost = Fence {
            key: "/cke/leader/gone".into(),
            create_revision: 5,
        };
        let e = update(&s, q, 0, Some(&lost), |e: &mut RebootQueueEntry| {
            e.status = RebootStatus::Draining;
            true
        })
        .await
        .unwrap_err();
        assert!(matches!(e, StorageError::LostLeadership { .. }), "{e:?}");
        assert!(matches!(
            dequeue(&s, q, &lost, 0).await,
            Err(StorageError::LostLeadership { .. })
        ));
        assert_eq!(entries::<RebootQueueEntry>(&s, q).await.unwrap().len(), 3);
        s.put_raw("leader/me", b"me".to_vec()).await.unwrap();
        let fence = Fence {
            key: "/cke/leader/me".into(),
            create_revision: s.get_raw("leader/me").await.unwrap().unwrap().create_revision,
        };
        dequeue(&s, q, &fence, 0).await.unwrap();
        let left: Vec<i64> = entries::<RebootQueueEntry>(&s, q)
            .await
            .unwrap()
            .iter()
            .map(|e| e.index)
            .collect();
        assert_eq!(left, [1, 2]);
        // The index keeps growing after a dequeue.
        let mut e = [RebootQueueEntry::new("10.0.0.1")];
        enqueue(&s, q, &mut e).await.unwrap();
        assert_eq!(e[0].index, 3);
    }

    #[tokio::test]
    async fn concurrent_writers_neither_lose_entries_nor_overwrite_changes() {
        let s = std::sync::Arc::new(MemStorage::new("/cke/"));
        let q = REBOOT_QUEUE;
        let mut tasks = Vec::new();
        for i in 0..20 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                let mut e = [RebootQueueEntry::new(&format!("10.0.0.{i}"))];
                enqueue(&*s, &q, &mut e).await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let all: Vec<RebootQueueEntry> = entries(&*s, &q).await.unwrap();
        let mut idx: Vec<i64> = all.iter().map(|e| e.index).collect();
        idx.sort();
        assert_eq!(idx, (0..20).collect::<Vec<_>>());
        // Counting updates of one entry from many tasks: every increment lands.
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                update(&*s, &q, 0, None, |e: &mut RebootQueueEntry| {
                    e.drain_backoff_count += 1;
                    true
                })
                .await
                .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let e: RebootQueueEntry = entry(&*s, &q, 0).await.unwrap().unwrap();
        assert_eq!(e.drain_backoff_count, 20);
    }

    #[tokio::test]
    async fn a_corrupt_write_index_is_named() {
        let s = MemStorage::new("/cke/");
        s.put_raw("reboots/write-index", b"x".to_vec()).await.unwrap();
        let e = enqueue(&s, &REBOOT_QUEUE, &mut [RebootQueueEntry::new("10.0.0.1")])
            .await
            .unwrap_err();
        assert!(e.to_string().contains("/cke/reboots/write-index"), "{e}");
    }
}
