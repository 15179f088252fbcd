//! An in-memory [`Storage`] double for fast unit tests. It keeps etcd's revision semantics
//! (create and mod revisions, fenced transactions) but none of its durability.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{Fence, KeyValue, Storage, StorageError, Write};

/// In-memory storage; keys are stored with the prefix, as etcd would.
#[derive(Debug)]
pub struct MemStorage {
    prefix: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    revision: i64,
    kvs: BTreeMap<String, KeyValue>,
}

impl Inner {
    fn put(&mut self, full: String, rel: &str, value: Vec<u8>) {
        self.revision += 1;
        let rev = self.revision;
        let create = self.kvs.get(&full).map_or(rev, |kv| kv.create_revision);
        self.kvs.insert(
            full,
            KeyValue {
                key: rel.to_string(),
                value,
                create_revision: create,
                mod_revision: rev,
            },
        );
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

    async fn list_raw(&self, key_prefix: &str, limit: i64, descending: bool) -> Result<Vec<KeyValue>, StorageError> {
        let full = self.full_key(key_prefix);
        let inner = self.inner.lock().unwrap();
        let it = inner
            .kvs
            .range(full.clone()..)
            .take_while(|(k, _)| k.starts_with(&full))
            .map(|(_, v)| v.clone());
        let mut v: Vec<KeyValue> = it.collect();
        if descending {
            v.reverse();
        }
        if limit > 0 {
            v.truncate(limit as usize);
        }
        Ok(v)
    }

    async fn put_raw(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        self.inner.lock().unwrap().put(self.full_key(key), key, value);
        Ok(())
    }

    async fn delete_raw(&self, key: &str) -> Result<bool, StorageError> {
        let mut inner = self.inner.lock().unwrap();
        let existed = inner.kvs.remove(&self.full_key(key)).is_some();
        if existed {
            inner.revision += 1;
        }
        Ok(existed)
    }

    async fn put_fenced(&self, fence: &Fence, writes: Vec<Write>) -> Result<(), StorageError> {
        let mut inner = self.inner.lock().unwrap();
        // As in etcd, an absent key has create revision 0: a fence on revision 0 means "absent".
        let holds = inner.kvs.get(&fence.key).map_or(0, |kv| kv.create_revision) == fence.create_revision;
        if !holds {
            return Err(StorageError::LostLeadership {
                key: fence.key.clone(),
                create_revision: fence.create_revision,
            });
        }
        for w in writes {
            match w {
                Write::Put(k, v) => {
                    let full = self.full_key(&k);
                    inner.put(full, &k, v)
                }
                Write::Delete(k) => {
                    inner.kvs.remove(&self.full_key(&k));
                }
            }
        }
        Ok(())
    }
}
