//! [`Storage`] over a real etcd (the management etcd): requests with a timeout, fenced and
//! create-if-absent transactions, and watches turned into [`WatchStream`]s that end with an error
//! item on compaction, server cancellation or a broken connection.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity, PutOptions, SortOrder,
    SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions, WatchResponse,
};
use futures::StreamExt;

use super::{
    check_start_revision, Condition, KeyValue, Listing, Read, Snapshot, Storage, StorageError, WatchEvent, WatchStream,
    Write,
};
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

    /// The underlying client (for elections and leases).
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

    /// Runs one request (`operation`: get, list, put, delete, txn, watch) with the configured
    /// timeout, mapping errors to [`StorageError`]; counted in the management-etcd metrics.
    pub async fn request<T, F>(&self, operation: &str, f: F) -> Result<T, StorageError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let metrics = crate::metrics::process();
        metrics.etcd_request(operation);
        match tokio::time::timeout(self.timeout, f).await {
            Err(_) => {
                metrics.etcd_request_error(operation, "timeout");
                Err(StorageError::Timeout {
                    endpoints: self.endpoints.clone(),
                    timeout: self.timeout,
                })
            }
            Ok(Err(e)) => {
                metrics.etcd_request_error(operation, "error");
                Err(StorageError::Etcd {
                    endpoints: self.endpoints.clone(),
                    source: e,
                })
            }
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
        let resp = self.request("get", c.get(self.full_key(key), None)).await?;
        Ok(resp.kvs().first().map(|kv| self.convert(kv)))
    }

    async fn list_raw_with_revision(
        &self,
        key_prefix: &str,
        limit: i64,
        descending: bool,
    ) -> Result<Listing, StorageError> {
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
        let resp = self
            .request("list", c.get(self.full_key(key_prefix), Some(opts)))
            .await?;
        Ok(Listing {
            kvs: resp.kvs().iter().map(|kv| self.convert(kv)).collect(),
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    async fn read_many(&self, reads: &[Read]) -> Result<Snapshot, StorageError> {
        let ops: Vec<TxnOp> = reads
            .iter()
            .map(|r| match r {
                Read::Key(k) => TxnOp::get(self.full_key(k), None),
                Read::Prefix(p) => TxnOp::get(
                    self.full_key(p),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_sort(SortTarget::Key, SortOrder::Ascend),
                    ),
                ),
            })
            .collect();
        let mut c = self.client.clone();
        // A transaction without conditions runs its operations (here, reads only) at one revision.
        let resp = self.request("txn", c.txn(Txn::new().and_then(ops))).await?;
        let answers = resp
            .op_responses()
            .into_iter()
            .map(|r| match r {
                TxnOpResponse::Get(g) => g.kvs().iter().map(|kv| self.convert(kv)).collect(),
                _ => Vec::new(),
            })
            .collect::<Vec<Vec<KeyValue>>>();
        if answers.len() != reads.len() {
            return Err(StorageError::Corrupt {
                key: self.prefix.clone(),
                reason: format!("{} reads answered with {} results", reads.len(), answers.len()),
            });
        }
        Ok(Snapshot {
            answers,
            revision: resp.header().map_or(0, |h| h.revision()),
        })
    }

    async fn create_if_absent(&self, key: &str, value: Vec<u8>) -> Result<bool, StorageError> {
        let full = self.full_key(key);
        // An absent key has create revision 0.
        let txn = Txn::new()
            .when(vec![Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then(vec![TxnOp::put(full, value, None::<PutOptions>)]);
        let mut c = self.client.clone();
        Ok(self.request("txn", c.txn(txn)).await?.succeeded())
    }

    async fn watch(&self, key_prefix: &str, start_revision: i64) -> Result<WatchStream, StorageError> {
        check_start_revision(start_revision)?;
        let prefix = self.full_key(key_prefix);
        let mut opts = WatchOptions::new().with_prefix();
        if start_revision > 0 {
            opts = opts.with_start_revision(start_revision);
        }
        let mut c = self.client.clone();
        // The watch is established once the server's first answer ("created") is in.
        let (inner, first) = self
            .request("watch", async {
                let mut s = c.watch(prefix.clone(), Some(opts)).await?;
                let first = s.message().await?;
                Ok((s, first))
            })
            .await?;
        let mut w = EtcdWatch {
            inner,
            pending: VecDeque::new(),
            end: End::Open,
            next_revision: start_revision,
            prefix: prefix.clone(),
            storage_prefix: self.prefix.clone(),
        };
        match first {
            None => {
                return Err(w.broken("the server closed the stream before confirming the watch".into(), None));
            }
            Some(resp) => {
                if start_revision == 0 {
                    // From now: the first change can only come after the revision at creation.
                    w.next_revision = resp.header().map_or(0, |h| h.revision()) + 1;
                }
                if resp.created() && resp.canceled() && resp.compact_revision() == 0 {
                    // Refused at creation (for example, permission denied).
                    return Err(w.broken(format!("refused by the server: {}", resp.cancel_reason()), None));
                }
                w.take(resp);
            }
        }
        Ok(futures::stream::unfold(w, |mut w| async move { w.next().await.map(|item| (item, w)) }).boxed())
    }

    async fn put_raw(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError> {
        let mut c = self.client.clone();
        self.request("put", c.put(self.full_key(key), value, None)).await?;
        Ok(())
    }

    async fn delete_raw(&self, key: &str) -> Result<bool, StorageError> {
        let mut c = self.client.clone();
        let resp = self.request("delete", c.delete(self.full_key(key), None)).await?;
        Ok(resp.deleted() > 0)
    }

    async fn txn(&self, conditions: Vec<Condition>, writes: Vec<Write>) -> Result<bool, StorageError> {
        let compares: Vec<Compare> = conditions
            .into_iter()
            .map(|c| match c {
                Condition::ModRevision(k, rev) => Compare::mod_revision(self.full_key(&k), CompareOp::Equal, rev),
                Condition::Fence(f) => Compare::create_revision(f.key, CompareOp::Equal, f.create_revision),
            })
            .collect();
        let ops: Vec<TxnOp> = writes
            .into_iter()
            .map(|w| match w {
                Write::Put(k, v) => TxnOp::put(self.full_key(&k), v, None),
                Write::Delete(k) => TxnOp::delete(self.full_key(&k), None),
            })
            .collect();
        let mut c = self.client.clone();
        Ok(self
            .request("txn", c.txn(Txn::new().when(compares).and_then(ops)))
            .await?
            .succeeded())
    }
}

/// The state of one etcd watch behind a [`WatchStream`]. Dropping it drops the gRPC stream, which
/// cancels the watch on the server.
struct EtcdWatch {
    inner: etcd_client::WatchStream,
    /// Events of the last response not yet handed out.
    pending: VecDeque<WatchEvent>,
    /// Why the watch ended, handed out after `pending`.
    end: End,
    /// The revision after the last event handed out.
    next_revision: i64,
    /// The watched prefix, with the storage prefix.
    prefix: String,
    storage_prefix: String,
}

/// Where an [`EtcdWatch`] is in its life.
enum End {
    /// Still delivering.
    Open,
    /// Ended; the reason is the stream's last item.
    Ending(EndReason),
    /// The last item has been handed out.
    Done,
}

enum EndReason {
    Compacted(i64),
    Cancelled(String),
    Closed,
    Failed(etcd_client::Error),
}

impl EtcdWatch {
    fn broken(&self, reason: String, source: Option<etcd_client::Error>) -> StorageError {
        StorageError::WatchBroken {
            prefix: self.prefix.clone(),
            reason,
            next_revision: self.next_revision,
            source,
        }
    }

    /// Queues the events of one response, and the end it announces if any.
    fn take(&mut self, resp: WatchResponse) {
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            let key = key
                .strip_prefix(self.storage_prefix.as_str())
                .unwrap_or(&key)
                .to_string();
            let revision = kv.mod_revision();
            self.pending.push_back(match ev.event_type() {
                EventType::Put => WatchEvent::Put {
                    key,
                    value: kv.value().to_vec(),
                    create_revision: kv.create_revision(),
                    revision,
                },
                EventType::Delete => WatchEvent::Delete { key, revision },
            });
        }
        if resp.compact_revision() > 0 {
            self.end = End::Ending(EndReason::Compacted(resp.compact_revision()));
        } else if resp.canceled() {
            self.end = End::Ending(EndReason::Cancelled(resp.cancel_reason().to_string()));
        }
    }

    /// The next item of the stream.
    async fn next(&mut self) -> Option<Result<WatchEvent, StorageError>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                self.next_revision = self.next_revision.max(ev.revision() + 1);
                return Some(Ok(ev));
            }
            match std::mem::replace(&mut self.end, End::Done) {
                End::Done => return None,
                End::Ending(reason) => {
                    return Some(Err(match reason {
                        EndReason::Compacted(compact_revision) => StorageError::Compacted {
                            prefix: self.prefix.clone(),
                            start_revision: self.next_revision,
                            compact_revision,
                        },
                        EndReason::Cancelled(r) if r.is_empty() => self.broken("cancelled by the server".into(), None),
                        EndReason::Cancelled(r) => self.broken(format!("cancelled by the server: {r}"), None),
                        EndReason::Closed => self.broken("the server closed the stream".into(), None),
                        EndReason::Failed(e) => self.broken("the connection failed".into(), Some(e)),
                    }))
                }
                End::Open => self.end = End::Open,
            }
            self.end = match self.inner.message().await {
                Ok(Some(resp)) => {
                    self.take(resp);
                    continue;
                }
                Ok(None) => End::Ending(EndReason::Closed),
                Err(e) => End::Ending(EndReason::Failed(e)),
            };
        }
    }
}
