//! An in-memory [`Storage`] double for fast unit tests. It keeps etcd's revision semantics (create
//! and mod revisions, one revision per transaction, fenced and create-if-absent transactions) and
//! the watch contract of [`WatchStream`] (a retained history of every change, compaction, a feed of
//! each write to the watches it concerns), but none of etcd's durability. Test hooks stand in for
//! what only a real server does: [`MemStorage::compact`], [`MemStorage::break_watches`],
//! [`MemStorage::watcher_count`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::{
    check_start_revision, Condition, KeyValue, Listing, Read, Snapshot, Storage, StorageError, WatchEvent, WatchStream,
    Write,
};

/// In-memory storage; keys are stored with the prefix, as etcd would.
#[derive(Debug)]
pub struct MemStorage {
    prefix: String,
    inner: Mutex<Inner>,
}

type WatchItem = Result<WatchEvent, StorageError>;

#[derive(Debug, Default)]
struct Inner {
    revision: i64,
    kvs: BTreeMap<String, KeyValue>,
    /// Every change from revision `compacted` on, oldest first.
    history: Vec<WatchEvent>,
    /// Revisions before this one are compacted away (0: none).
    compacted: i64,
    watchers: Vec<Watcher>,
}

/// One open watch: where its events go.
#[derive(Debug)]
struct Watcher {
    /// Watched prefix, relative to the storage prefix.
    key_prefix: String,
    /// The same, with the storage prefix (for messages).
    full_prefix: String,
    /// Changes before this revision are not for this watch.
    start_revision: i64,
    /// The revision after the last event sent (or the start revision).
    next_revision: i64,
    tx: mpsc::UnboundedSender<WatchItem>,
}

impl Inner {
    /// Every pair under the full prefix `full`, sorted by key.
    fn under(&self, full: &str) -> Vec<KeyValue> {
        self.kvs
            .range(full.to_string()..)
            .take_while(|(k, _)| k.starts_with(full))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Applies `writes` as one transaction: one new revision if anything changed, as in etcd.
    fn apply(&mut self, prefix: &str, writes: Vec<Write>) {
        let rev = self.revision + 1;
        let mut events = Vec::new();
        for w in writes {
            match w {
                Write::Put(key, value) => {
                    let full = format!("{prefix}{key}");
                    let create = self.kvs.get(&full).map_or(rev, |kv| kv.create_revision);
                    self.kvs.insert(
                        full,
                        KeyValue {
                            key: key.clone(),
                            value: value.clone(),
                            create_revision: create,
                            mod_revision: rev,
                        },
                    );
                    events.push(WatchEvent::Put {
                        key,
                        value,
                        create_revision: create,
                        revision: rev,
                    });
                }
                Write::Delete(key) => {
                    if self.kvs.remove(&format!("{prefix}{key}")).is_some() {
                        events.push(WatchEvent::Delete { key, revision: rev });
                    }
                }
            }
        }
        if events.is_empty() {
            return;
        }
        self.revision = rev;
        for ev in events {
            self.publish(ev);
        }
    }

    /// Keeps `ev` in the history and sends it to the watches it concerns; forgets dropped watches.
    fn publish(&mut self, ev: WatchEvent) {
        self.watchers.retain_mut(|w| {
            if !ev.key().starts_with(&w.key_prefix) || ev.revision() < w.start_revision {
                return !w.tx.is_closed();
            }
            w.next_revision = ev.revision() + 1;
            w.tx.send(Ok(ev.clone())).is_ok()
        });
        self.history.push(ev);
    }
}

impl MemStorage {
    /// Empty storage with this prefix.
    pub fn new(prefix: &str) -> Self {
        MemStorage {
            prefix: prefix.to_string(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Test hook, as etcd's compaction: forgets the history before `revision` and the deletions at
    /// it (etcd keeps no tombstone at the compaction revision), so a watch from an earlier revision
    /// gets [`StorageError::Compacted`]. A revision at or before the last compaction changes nothing.
    ///
    /// # Panics
    /// If `revision` is ahead of the store's revision (etcd refuses that too).
    pub fn compact(&self, revision: i64) {
        let mut inner = self.inner.lock().unwrap();
        assert!(
            revision <= inner.revision,
            "cannot compact at revision {revision}: the store is at {}",
            inner.revision
        );
        if revision > inner.compacted {
            inner.compacted = revision;
            inner.history.retain(|ev| match ev {
                WatchEvent::Put { revision: r, .. } => *r >= revision,
                WatchEvent::Delete { revision: r, .. } => *r > revision,
            });
        }
    }

    /// Test hook, as a broken connection: every open watch gets [`StorageError::WatchBroken`] as
    /// its last item and ends.
    pub fn break_watches(&self) {
        let mut inner = self.inner.lock().unwrap();
        for w in inner.watchers.drain(..) {
            let _ = w.tx.send(Err(StorageError::WatchBroken {
                prefix: w.full_prefix,
                reason: "broken by MemStorage::break_watches".into(),
                next_revision: w.next_revision,
                source: None,
            }));
        }
    }

    /// Test hook: how many watches are open (a dropped stream no longer counts).
    pub fn watcher_count(&self) -> usize {
        let mut inner = self.inner.lock().unwrap();
        inner.watchers.retain(|w| !w.tx.is_closed());
        inner.watchers.len()
    }
}

impl Default for MemStorage {
    fn default() -> Self {
        Self::new(crate::config::DEFAULT_PREFIX)
    }
}

#[async_trait]
impl Storage for MemStorage {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn get_raw(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        Ok(self.inner.lock().unwrap().kvs.get(&self.full_key(key)).cloned())
    }

    async fn list_raw_with_revision(
        &self,
        key_prefix: &str,
        limit: i64,
        descending: bool,
    ) -> Result<Listing, StorageError> {
        let inner = self.inner.lock().unwrap();
        let mut kvs = inner.under(&self.full_key(key_prefix));
        if descending {
            kvs.reverse();
        }
        if limit > 0 {
            kvs.truncate(limit as usize);
        }
        Ok(Listing {
            kvs,
            revision: inner.revision,
        })
    }

    async fn read_many(&self, reads: &[Read]) -> Result<Snapshot, StorageError> {
        let inner = self.inner.lock().unwrap();
        let answers = reads
            .iter()
            .map(|r| match r {
                Read::Key(k) => inner.kvs.get(&self.full_key(k)).cloned().into_iter().collect(),
                Read::Prefix(p) => inner.under(&self.full_key(p)),
            })
            .collect();
        Ok(Snapshot {
            answers,
            revision: inner.revision,
        })
    }

    async fn put_raw(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.inner
            .lock()
            .unwrap()
            .apply(&self.prefix, vec![Write::Put(key.to_string(), value)]);
        Ok(())
    }

    async fn delete_raw(&self, key: &str) -> Result<bool, StorageError> {
        let mut inner = self.inner.lock().unwrap();
        let existed = inner.kvs.contains_key(&self.full_key(key));
        inner.apply(&self.prefix, vec![Write::Delete(key.to_string())]);
        Ok(existed)
    }

    async fn create_if_absent(&self, key: &str, value: Vec<u8>) -> Result<bool, StorageError> {
        let mut inner = self.inner.lock().unwrap();
        if inner.kvs.contains_key(&self.full_key(key)) {
            return Ok(false);
        }
        inner.apply(&self.prefix, vec![Write::Put(key.to_string(), value)]);
        Ok(true)
    }

    async fn watch(&self, key_prefix: &str, start_revision: i64) -> Result<WatchStream, StorageError> {
        check_start_revision(start_revision)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let full_prefix = self.full_key(key_prefix);
        let mut inner = self.inner.lock().unwrap();
        if start_revision > 0 && start_revision < inner.compacted {
            // As etcd: the watch is made, then ends at once saying why.
            let _ = tx.send(Err(StorageError::Compacted {
                prefix: full_prefix,
                start_revision,
                compact_revision: inner.compacted,
            }));
        } else {
            let mut next_revision = if start_revision == 0 {
                inner.revision + 1
            } else {
                start_revision
            };
            let start = next_revision;
            for ev in &inner.history {
                if ev.revision() >= start && ev.key().starts_with(key_prefix) {
                    next_revision = ev.revision() + 1;
                    let _ = tx.send(Ok(ev.clone()));
                }
            }
            inner.watchers.push(Watcher {
                key_prefix: key_prefix.to_string(),
                full_prefix,
                start_revision: start,
                next_revision,
                tx,
            });
        }
        Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed())
    }

    async fn txn(&self, conditions: Vec<Condition>, writes: Vec<Write>) -> Result<bool, StorageError> {
        let mut inner = self.inner.lock().unwrap();
        let holds = conditions.iter().all(|c| match c {
            Condition::ModRevision(key, rev) => {
                inner.kvs.get(&self.full_key(key)).map_or(0, |kv| kv.mod_revision) == *rev
            }
            // As in etcd, an absent key has create revision 0: a fence on revision 0 means "absent".
            Condition::Fence(f) => inner.kvs.get(&f.key).map_or(0, |kv| kv.create_revision) == f.create_revision,
        });
        if holds {
            inner.apply(&self.prefix, writes);
        }
        Ok(holds)
    }
}
