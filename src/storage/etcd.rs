//! [`Storage`] over a real etcd (the management etcd).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, SortOrder, SortTarget, TlsOptions,
    Txn, TxnOp,
};

use super::{Fence, KeyValue, Storage, StorageError, Write};
use crate::config::Config;

/// Storage backed by the management etcd.
#[derive(Clone)]
pub struct EtcdStorage {
    client: Client,
    prefix: String,
    endpoints: String,
    timeout: Duration,
}

impl std::fmt::Debug for EtcdStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStorage")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish()
    }
}

/// Connect options (auth, TLS) for a config; shared with the leader election's own client.
pub fn connect_options(config: &Config) -> ConnectOptions {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(config.timeout.max(Duration::from_secs(1)))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    if let Some((u, p)) = &config.auth {
        opts = opts.with_user(u.clone(), p.clone());
    }
    if let Some(tls) = &config.tls {
        let mut t = TlsOptions::new();
        if let Some(ca) = &tls.ca {
            t = t.ca_certificate(Certificate::from_pem(ca.clone()));
        }
        if let Some((c, k)) = &tls.identity {
            t = t.identity(Identity::from_pem(c.clone(), k.clone()));
        }
        opts = opts.with_tls(t);
    }
    opts
}

impl EtcdStorage {
    /// Builds a client for `config`. Connecting is lazy: an unreachable etcd shows up as an error
    /// (naming the endpoints) on the first request.
    pub async fn connect(config: &Config) -> Result<Self, StorageError> {
        let endpoints = config.endpoints.join(",");
        let client = Client::connect(config.endpoints.clone(), Some(connect_options(config)))
            .await
            .map_err(|e| StorageError::Etcd {
                endpoints: endpoints.clone(),
                source: e,
            })?;
        Ok(EtcdStorage {
            client,
            prefix: config.prefix.clone(),
            endpoints,
            timeout: config.timeout,
        })
    }

    /// The underlying client (for elections, leases and watches).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The endpoints, comma-separated, for messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Runs one request with the configured timeout, mapping errors to [`StorageError`].
    pub async fn request<T, F>(&self, f: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Err(_) => Err(StorageError::Timeout {
                endpoints: self.endpoints.clone(),
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(StorageError::Etcd {
                endpoints: self.endpoints.clone(),
                source: e,
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    fn convert(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        let key = String::from_utf8_lossy(kv.key());
        KeyValue {
            key: key.strip_prefix(self.prefix.as_str()).unwrap_or(&key).to_string(),
            value: kv.value().to_vec(),
            create_revision: kv.create_revision(),
            mod_revision: kv.mod_revision(),
        }
    }
}

#[async_trait]
impl Storage for EtcdStorage {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn get_raw(&self, key: &str) -> Result<Option<KeyValue>, StorageError> {
        let mut c = self.client.clone();
        let resp = self.request(c.get(self.full_key(key), None)).await?;
        Ok(resp.kvs().first().map(|kv| self.convert(kv)))
    }

    async fn list_raw(&self, key_prefix: &str, limit: i64, descending: bool) -> Result<Vec<KeyValue>, StorageError> {
        let mut c = self.client.clone();
        let order = if descending {
            SortOrder::Descend
        } else {
            SortOrder::Ascend
        };
        let opts = GetOptions::new()
            .with_prefix()
            .with_limit(limit.max(0))
            .with_sort(SortTarget::Key, order);
        let resp = self.request(c.get(self.full_key(key_prefix), Some(opts))).await?;
        Ok(resp.kvs().iter().map(|kv| self.convert(kv)).collect())
    }

    async fn put_raw(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        let mut c = self.client.clone();
        self.request(c.put(self.full_key(key), value, None)).await?;
        Ok(())
    }

    async fn delete_raw(&self, key: &str) -> Result<bool, StorageError> {
        let mut c = self.client.clone();
        let resp = self.request(c.delete(self.full_key(key), None)).await?;
        Ok(resp.deleted() > 0)
    }

    async fn put_fenced(&self, fence: &Fence, writes: Vec<Write>) -> Result<(), StorageError> {
        let ops: Vec<TxnOp> = writes
            .into_iter()
            .map(|w| match w {
                Write::Put(k, v) => TxnOp::put(self.full_key(&k), v, None),
                Write::Delete(k) => TxnOp::delete(self.full_key(&k), None),
            })
            .collect();
        let txn = Txn::new()
            .when(vec![Compare::create_revision(
                fence.key.clone(),
                CompareOp::Equal,
                fence.create_revision,
            )])
            .and_then(ops);
        let mut c = self.client.clone();
        let resp = self.request(c.txn(txn)).await?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StorageError::LostLeadership {
                key: fence.key.clone(),
                create_revision: fence.create_revision,
            })
        }
    }
}
