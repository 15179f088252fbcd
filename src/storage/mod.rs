//! The management etcd: CKE's key layout under a configurable prefix (default `/cke/`).
//!
//! [`Storage`] is the one trait every component uses. [`EtcdStorage`] talks to a real etcd;
//! [`MemStorage`] is an in-memory double for fast tests of pure logic. Typed accessors (cluster,
//! constraints, vault, CA, records, status, leader, user resources) are provided methods built on a
//! few raw operations, so both implementations share the key layout and the JSON encoding (user
//! resources are stored as given, YAML or JSON, as CKE stores them).
//!
//! Writes made by the leader go through [`Storage::put_fenced`], a transaction conditioned on the
//! leader's election key still existing with its create revision (see DESIGN.md §3).
//! [`Storage::create_if_absent`] is the atomic create (host-key pins), [`Storage::txn`] the
//! compare-and-swap (CKE's queues, [`queue`]), [`Storage::watch`] the change feed (the daemon's
//! triggers, `ckecli history -f`), [`Storage::read_many`] several reads in one request at one
//! revision (the leader's inputs of a pass), so no caller needs a raw etcd client for them.

mod etcd;
mod memory;
pub mod queue;
pub mod repairs;
mod sabakan;
mod watch;

use async_trait::async_trait;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::model::resource::parse_resource_key;
use crate::model::{parse_resource, sort_resources, Cluster, Constraints, Record, ResourceDefinition, ServerStatus};

pub use etcd::EtcdStorage;
pub use memory::MemStorage;
pub use sabakan::*;
pub use watch::{WatchEvent, WatchStream};

/// Key of the cluster declaration.
pub const KEY_CLUSTER: &str = "cluster";
/// Key of the constraints.
pub const KEY_CONSTRAINTS: &str = "constraints";
/// Key of the Vault connection settings.
pub const KEY_VAULT: &str = "vault";
/// Prefix of CA certificates (`ca/<name>`).
pub const KEY_CA_PREFIX: &str = "ca/";
/// Prefix of the leader election.
pub const KEY_LEADER_PREFIX: &str = "leader/";
/// Key holding the next record id.
pub const KEY_RECORD_ID: &str = "records";
/// Prefix of operation records.
pub const KEY_RECORDS_PREFIX: &str = "records/";
/// Key of the leader's status.
pub const KEY_STATUS: &str = "status";
/// Key of the configuration version.
pub const KEY_CONFIG_VERSION: &str = "config-version";
/// Key set once the managed etcd has been seen running (cke-rs only; CKE has no such key): with it
/// set, the planner never bootstraps a new, empty managed etcd.
pub const KEY_ETCD_BOOTSTRAPPED: &str = "etcd-bootstrapped";
/// Prefix of user-defined Kubernetes resources (`resource/<key>`, the document as given, CKE's layout).
pub const KEY_RESOURCE_PREFIX: &str = "resource/";
/// The service-account token signing certificate (PEM), issued once (CKE's key).
pub const KEY_SERVICE_ACCOUNT_CERT: &str = "service-account/certificate";
/// Its private key (PEM).
pub const KEY_SERVICE_ACCOUNT_KEY: &str = "service-account/key";
/// Prefix of pinned SSH host keys (`ssh-hostkey/<address>`), a cke-rs addition.
pub const KEY_SSH_HOSTKEY_PREFIX: &str = "ssh-hostkey/";

/// The CA names stored under `ca/` (CKE compatible).
pub const CA_NAMES: [&str; 6] = [
    "server",
    "etcd-peer",
    "etcd-client",
    "kubernetes",
    "kubernetes-aggregation",
    "kubernetes-webhook",
];

/// How Vault is reached (`<prefix>vault`, CKE's JSON layout). Its `Debug` leaves the secret id out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Vault URL, e.g. `https://vault.example:8200`.
    pub endpoint: String,
    /// PEM CA certificate that signs Vault's server certificate (empty: system roots).
    #[serde(rename = "ca-cert", default)]
    pub ca_cert: String,
    /// AppRole role id.
    #[serde(rename = "role-id")]
    pub role_id: String,
    /// AppRole secret id.
    #[serde(rename = "secret-id")]
    pub secret_id: String,
}

impl std::fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultConfig")
            .field("endpoint", &self.endpoint)
            .field("role_id", &self.role_id)
            .field("secret_id", &"(hidden)")
            .finish_non_exhaustive()
    }
}

/// The leader's fence: its election key and that key's create revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Full key (prefix included) the election created for this leader.
    pub key: String,
    /// Its create revision; the fence holds only while the key exists with this revision.
    pub create_revision: i64,
}

/// Until when the leader's lease surely lasts, by this process's monotonic clock. The election moves
/// it forward on every keep-alive answer (to when that keep-alive was sent, plus the TTL etcd
/// granted, less a margin); the controller and the node agents act on nothing once it has passed. A
/// process that was paused (SIGSTOP, a frozen VM) finds it passed the moment it wakes, before any
/// network round trip could tell it that it lost the lease. Clones share the deadline.
#[derive(Debug, Clone, Default)]
pub struct LeaseDeadline(std::sync::Arc<std::sync::Mutex<Option<tokio::time::Instant>>>);

impl LeaseDeadline {
    /// No deadline: never passes (tests of the framework, a single in-memory store).
    pub fn unlimited() -> Self {
        LeaseDeadline::default()
    }

    /// A deadline at `at`.
    pub fn until(at: tokio::time::Instant) -> Self {
        LeaseDeadline(std::sync::Arc::new(std::sync::Mutex::new(Some(at))))
    }

    /// Moves the deadline to `at` (never backwards).
    pub fn extend_to(&self, at: tokio::time::Instant) {
        let mut d = self.0.lock().unwrap();
        if d.is_none_or(|old| old < at) {
            *d = Some(at);
        }
    }

    /// The deadline, if any.
    pub fn at(&self) -> Option<tokio::time::Instant> {
        *self.0.lock().unwrap()
    }

    /// True once the deadline has passed: the lease may be gone, act on nothing.
    pub fn is_past(&self) -> bool {
        self.at().is_some_and(|at| tokio::time::Instant::now() >= at)
    }
}

/// One key-value pair as stored (key without prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// Key relative to the prefix.
    pub key: String,
    /// Raw value.
    pub value: Vec<u8>,
    /// etcd create revision.
    pub create_revision: i64,
    /// etcd mod revision.
    pub mod_revision: i64,
}

/// A listing together with the store revision it was read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// The key-value pairs, in the order asked for.
    pub kvs: Vec<KeyValue>,
    /// The store's revision when the listing was read: a watch from `revision + 1` sees exactly the
    /// changes made after it.
    pub revision: i64,
}

/// One read of [`Storage::read_many`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// One key (relative to the prefix).
    Key(String),
    /// Every key under this prefix, sorted by key.
    Prefix(String),
}

/// The answers of [`Storage::read_many`], all at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// For each read, in the order asked: what it found (a [`Read::Key`] finds at most one pair).
    pub answers: Vec<Vec<KeyValue>>,
    /// The store's revision the reads were made at.
    pub revision: i64,
}

impl Snapshot {
    /// The key-value pair read `i` (a [`Read::Key`]) found, if any.
    pub fn key(&self, i: usize) -> Option<&KeyValue> {
        self.answers.get(i).and_then(|kvs| kvs.first())
    }

    /// What read `i` found.
    pub fn all(&self, i: usize) -> &[KeyValue] {
        self.answers.get(i).map_or(&[], Vec::as_slice)
    }
}

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// etcd could not be reached or answered with an error.
    #[error("management etcd at {endpoints} failed")]
    Etcd {
        /// The endpoints tried.
        endpoints: String,
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },
    /// An operation did not finish in time.
    #[error("management etcd at {endpoints} did not answer within {timeout:?}")]
    Timeout {
        /// The endpoints tried.
        endpoints: String,
        /// The limit.
        timeout: std::time::Duration,
    },
    /// A stored value is not what the key should hold.
    #[error("value of key {key} is invalid: {reason}")]
    Corrupt {
        /// The key (with prefix).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The leader's fence no longer holds: it is not the leader any more.
    #[error("leadership lost: election key {key} no longer exists with create revision {create_revision}")]
    LostLeadership {
        /// The election key.
        key: String,
        /// Its expected create revision.
        create_revision: i64,
    },
    /// A compare-and-swap lost a race with another writer.
    #[error("key {key} was changed concurrently")]
    Conflict {
        /// The key.
        key: String,
    },
    /// A watch cannot deliver the changes asked for: the history before `compact_revision` has been
    /// compacted away. Read the current state again and watch from after that read.
    #[error(
        "watch on {prefix} from revision {start_revision} is impossible: the history before revision {compact_revision} is compacted"
    )]
    Compacted {
        /// The watched prefix (with the storage prefix).
        prefix: String,
        /// The revision the watch needed next: its start revision, or the one after the last change
        /// it delivered.
        start_revision: i64,
        /// The oldest revision still kept.
        compact_revision: i64,
    },
    /// A watch ended: its connection broke or the server cancelled it. Watching again from
    /// `next_revision` misses nothing and repeats nothing (unless that revision is compacted by then).
    #[error("watch on {prefix} ended ({reason}); it can resume from revision {next_revision}")]
    WatchBroken {
        /// The watched prefix (with the storage prefix).
        prefix: String,
        /// Why it ended.
        reason: String,
        /// The revision after the last change delivered (or the start revision if none was).
        next_revision: i64,
        /// The client error, when the connection failed.
        #[source]
        source: Option<etcd_client::Error>,
    },
    /// An argument is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The argument.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// TLS files of the configuration could not be read.
    #[error("cannot read {path}")]
    Tls {
        /// File path.
        path: String,
        /// I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// A conditional write for [`Storage::put_fenced`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Put a value.
    Put(String, Vec<u8>),
    /// Delete a key.
    Delete(String),
}

/// A condition of [`Storage::txn`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// The key (relative to the prefix) has this mod revision; 0 means it is absent.
    ModRevision(String, i64),
    /// The leader's fence holds (its election key exists with its create revision).
    Fence(Fence),
}

/// Access to the management etcd. Keys given to these methods are relative to the prefix.
#[async_trait]
pub trait Storage: Send + Sync {
    /// The key prefix, e.g. `/cke/`.
    fn prefix(&self) -> &str;

    /// Reads one key.
    async fn get_raw(&self, key: &str) -> Result<Option<KeyValue>, StorageError>;

    /// Reads every key under `key_prefix`, sorted by key, at most `limit` (0 = all); `descending`
    /// sorts the last key first. The listing carries the revision it was read at, in one read.
    async fn list_raw_with_revision(
        &self,
        key_prefix: &str,
        limit: i64,
        descending: bool,
    ) -> Result<Listing, StorageError>;

    /// Makes several reads in one request, all at one revision (etcd: one transaction of range
    /// reads), so the answers are consistent with each other. An empty list reads nothing and
    /// still answers the store's revision.
    async fn read_many(&self, reads: &[Read]) -> Result<Snapshot, StorageError>;

    /// Writes one key unconditionally (used by `ckecli`, never by the leader loop).
    async fn put_raw(&self, key: &str, value: Vec<u8>) -> Result<(), StorageError>;

    /// Creates `key` with `value` only if it does not exist, atomically: of concurrent calls on
    /// one key, exactly one returns true (created); the others return false and change nothing.
    async fn create_if_absent(&self, key: &str, value: Vec<u8>) -> Result<bool, StorageError>;

    /// Watches every key under `key_prefix` (`""`: the whole storage prefix), delivering the
    /// changes at revisions from `start_revision` on; 0 means the changes made after the watch is
    /// established, which it is when this returns. The stream keeps the contract in
    /// [`WatchStream`]: events in order, then at most one error item ([`StorageError::Compacted`],
    /// [`StorageError::WatchBroken`]), then the end. Dropping the stream cancels the watch.
    /// A negative `start_revision` is [`StorageError::Invalid`].
    async fn watch(&self, key_prefix: &str, start_revision: i64) -> Result<WatchStream, StorageError>;

    /// Deletes one key unconditionally; returns whether it existed.
    async fn delete_raw(&self, key: &str) -> Result<bool, StorageError>;

    /// Applies `writes` atomically (one revision) only if every condition holds: a compare-and-swap.
    /// Returns whether it applied (false: some condition did not hold; nothing changed).
    async fn txn(&self, conditions: Vec<Condition>, writes: Vec<Write>) -> Result<bool, StorageError>;

    /// Applies `writes` atomically (one revision) only if the fence holds;
    /// [`StorageError::LostLeadership`] otherwise. As in etcd, an absent key has create revision 0,
    /// so a fence on revision 0 holds while its key is absent.
    async fn put_fenced(&self, fence: &Fence, writes: Vec<Write>) -> Result<(), StorageError> {
        if self.txn(vec![Condition::Fence(fence.clone())], writes).await? {
            Ok(())
        } else {
            Err(StorageError::LostLeadership {
                key: fence.key.clone(),
                create_revision: fence.create_revision,
            })
        }
    }

    /// Reads every key under `key_prefix`, sorted by key, at most `limit` (0 = all); `descending`
    /// sorts the last key first.
    async fn list_raw(&self, key_prefix: &str, limit: i64, descending: bool) -> Result<Vec<KeyValue>, StorageError> {
        Ok(self.list_raw_with_revision(key_prefix, limit, descending).await?.kvs)
    }

    /// The oldest key under `leader/` (the leader), as (key, value = instance name).
    async fn leader_key(&self) -> Result<Option<KeyValue>, StorageError> {
        Ok(self.list_raw_by_create(KEY_LEADER_PREFIX).await?.into_iter().next())
    }

    /// Keys under `key_prefix` sorted by create revision, oldest first.
    async fn list_raw_by_create(&self, key_prefix: &str) -> Result<Vec<KeyValue>, StorageError> {
        let mut kvs = self.list_raw(key_prefix, 0, false).await?;
        kvs.sort_by_key(|kv| kv.create_revision);
        Ok(kvs)
    }

    /// The current leader's instance name, if any.
    async fn get_leader(&self) -> Result<Option<String>, StorageError> {
        Ok(self
            .leader_key()
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    /// The cluster declaration, if set, read as CKE reads it: keys cke-rs does not know (written by
    /// CKE or a newer version) are ignored with a warning, logged once per stored value.
    async fn get_cluster(&self) -> Result<Option<Cluster>, StorageError> {
        match self.get_raw(KEY_CLUSTER).await? {
            None => Ok(None),
            Some(kv) => decode_cluster(&self.full_key(KEY_CLUSTER), &kv.value).map(Some),
        }
    }

    /// Stores the cluster declaration (the caller validates it first).
    async fn put_cluster(&self, cluster: &Cluster) -> Result<(), StorageError> {
        put_json(self, KEY_CLUSTER, cluster).await
    }

    /// The constraints, defaults when unset.
    async fn get_constraints(&self) -> Result<Constraints, StorageError> {
        Ok(get_json(self, KEY_CONSTRAINTS).await?.unwrap_or_default())
    }

    /// Stores the constraints.
    async fn put_constraints(&self, c: &Constraints) -> Result<(), StorageError> {
        put_json(self, KEY_CONSTRAINTS, c).await
    }

    /// The Vault connection, if set.
    async fn get_vault_config(&self) -> Result<Option<VaultConfig>, StorageError> {
        get_json(self, KEY_VAULT).await
    }

    /// Stores the Vault connection.
    async fn put_vault_config(&self, c: &VaultConfig) -> Result<(), StorageError> {
        put_json(self, KEY_VAULT, c).await
    }

    /// A CA certificate (PEM) by name (see [`CA_NAMES`]).
    async fn get_ca(&self, name: &str) -> Result<Option<String>, StorageError> {
        let key = format!("{KEY_CA_PREFIX}{name}");
        match self.get_raw(&key).await? {
            None => Ok(None),
            Some(kv) => String::from_utf8(kv.value)
                .map(Some)
                .map_err(|_| StorageError::Corrupt {
                    key: self.full_key(&key),
                    reason: "not UTF-8".into(),
                }),
        }
    }

    /// Stores a CA certificate (PEM) by name.
    async fn put_ca(&self, name: &str, pem: &str) -> Result<(), StorageError> {
        self.put_raw(&format!("{KEY_CA_PREFIX}{name}"), pem.as_bytes().to_vec())
            .await
    }

    /// The service-account signing pair (certificate, key), once issued.
    async fn get_service_account(&self) -> Result<Option<(String, String)>, StorageError> {
        let text = |key: &str, kv: KeyValue| {
            String::from_utf8(kv.value).map_err(|_| StorageError::Corrupt {
                key: self.full_key(key),
                reason: "not UTF-8".into(),
            })
        };
        let cert = self.get_raw(KEY_SERVICE_ACCOUNT_CERT).await?;
        let key = self.get_raw(KEY_SERVICE_ACCOUNT_KEY).await?;
        match (cert, key) {
            (Some(c), Some(k)) => Ok(Some((
                text(KEY_SERVICE_ACCOUNT_CERT, c)?,
                text(KEY_SERVICE_ACCOUNT_KEY, k)?,
            ))),
            _ => Ok(None),
        }
    }

    /// The leader's last status, if any.
    async fn get_status(&self) -> Result<Option<ServerStatus>, StorageError> {
        get_json(self, KEY_STATUS).await
    }

    /// The newest `n` records (0 = all kept), newest first.
    async fn get_records(&self, n: i64) -> Result<Vec<Record>, StorageError> {
        Ok(self.get_records_with_revision(n).await?.0)
    }

    /// The newest `n` records (0 = all kept), newest first, and the revision they were read at
    /// (watch `records/` from the revision after it to follow them without a gap).
    async fn get_records_with_revision(&self, n: i64) -> Result<(Vec<Record>, i64), StorageError> {
        let listing = self.list_raw_with_revision(KEY_RECORDS_PREFIX, n, true).await?;
        let records = listing
            .kvs
            .into_iter()
            .map(|kv| decode(&self.full_key(&kv.key), &kv.value))
            .collect::<Result<_, _>>()?;
        Ok((records, listing.revision))
    }

    /// A record by id.
    async fn get_record(&self, id: i64) -> Result<Option<Record>, StorageError> {
        get_json(self, &format!("{KEY_RECORDS_PREFIX}{}", Record::key_suffix(id))).await
    }

    /// Every user resource (CKE's `GetAllResources`), in the order of application
    /// ([`sort_resources`]); each revision is its key's `ModRevision`. A stored document that is not
    /// a resource, or not the one its key names, is [`StorageError::Corrupt`].
    async fn list_resources(&self) -> Result<Vec<ResourceDefinition>, StorageError> {
        decode_resources(self.prefix(), &self.list_raw(KEY_RESOURCE_PREFIX, 0, false).await?)
    }

    /// The leader's inputs of a pass, read in one request at one revision ([`Storage::read_many`]).
    async fn get_pass_inputs(&self) -> Result<PassReads, StorageError> {
        let reads = [
            Read::Key(KEY_CLUSTER.into()),
            Read::Key(KEY_CONSTRAINTS.into()),
            Read::Key(KEY_ETCD_BOOTSTRAPPED.into()),
            Read::Key(KEY_CONFIG_VERSION.into()),
            Read::Prefix(KEY_RESOURCE_PREFIX.into()),
            Read::Key(queue::KEY_REBOOTS_RUNNING.into()),
        ];
        Ok(PassReads {
            prefix: self.prefix().to_string(),
            snapshot: self.read_many(&reads).await?,
        })
    }

    /// The keys of the user resources, sorted by key (CKE's `ListResources`); the documents are not
    /// parsed, so a corrupt one is still listed.
    async fn list_resource_keys(&self) -> Result<Vec<String>, StorageError> {
        Ok(self
            .list_raw(KEY_RESOURCE_PREFIX, 0, false)
            .await?
            .into_iter()
            .map(|kv| kv.key.strip_prefix(KEY_RESOURCE_PREFIX).unwrap_or(&kv.key).to_string())
            .collect())
    }

    /// A user resource's document, byte for byte, and its revision (CKE's `GetResource`).
    async fn get_resource(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, StorageError> {
        Ok(self
            .get_raw(&format!("{KEY_RESOURCE_PREFIX}{key}"))
            .await?
            .map(|kv| (kv.value, kv.mod_revision)))
    }

    /// Stores a user resource (CKE's `SetResource`): `definition` must be a resource document whose
    /// own key is `key` ([`StorageError::Invalid`] otherwise, and nothing is written).
    async fn put_resource(&self, key: &str, definition: Vec<u8>) -> Result<(), StorageError> {
        let invalid = |reason: String| StorageError::Invalid {
            field: "resource",
            reason,
        };
        parse_resource_key(key).map_err(|e| invalid(e.to_string()))?;
        let (own_key, _) = parse_resource(&definition).map_err(|e| invalid(format!("{key}: {e}")))?;
        if own_key != key {
            return Err(invalid(format!("the document for {key} is {own_key}")));
        }
        self.put_raw(&format!("{KEY_RESOURCE_PREFIX}{key}"), definition).await
    }

    /// Removes a user resource from the storage (CKE's `DeleteResource`; the object stays in
    /// Kubernetes); returns whether it was stored.
    async fn delete_resource(&self, key: &str) -> Result<bool, StorageError> {
        self.delete_raw(&format!("{KEY_RESOURCE_PREFIX}{key}")).await
    }

    /// The full key with prefix.
    fn full_key(&self, key: &str) -> String {
        format!("{}{}", self.prefix(), key)
    }
}

/// The leader's inputs of a pass ([`Storage::get_pass_inputs`]), all read at one revision; each
/// is decoded when asked for (a pass without a declaration decodes nothing else).
#[derive(Debug, Clone)]
pub struct PassReads {
    prefix: String,
    snapshot: Snapshot,
}

impl PassReads {
    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    /// The cluster declaration, if set ([`Storage::get_cluster`]).
    pub fn cluster(&self) -> Result<Option<Cluster>, StorageError> {
        self.snapshot
            .key(0)
            .map(|kv| decode_cluster(&self.full_key(KEY_CLUSTER), &kv.value))
            .transpose()
    }

    /// The constraints, defaults when unset ([`Storage::get_constraints`]).
    pub fn constraints(&self) -> Result<Constraints, StorageError> {
        Ok(self
            .snapshot
            .key(1)
            .map(|kv| decode(&self.full_key(KEY_CONSTRAINTS), &kv.value))
            .transpose()?
            .unwrap_or_default())
    }

    /// Whether `etcd-bootstrapped` is set.
    pub fn etcd_bootstrapped(&self) -> bool {
        self.snapshot.key(2).is_some()
    }

    /// The stored `config-version`, trimmed, if set.
    pub fn config_version(&self) -> Option<String> {
        self.snapshot
            .key(3)
            .map(|kv| String::from_utf8_lossy(&kv.value).trim().to_string())
    }

    /// The user resources ([`Storage::list_resources`]).
    pub fn resources(&self) -> Result<Vec<ResourceDefinition>, StorageError> {
        decode_resources(&self.prefix, self.snapshot.all(4))
    }

    /// The stored value of `reboots/running`, if set.
    pub fn reboots_running(&self) -> Option<&[u8]> {
        self.snapshot.key(5).map(|kv| kv.value.as_slice())
    }

    /// The revision of the reads.
    pub fn revision(&self) -> i64 {
        self.snapshot.revision
    }
}

/// Decodes the pairs under `resource/` (storage prefix `prefix`), sorted for application.
fn decode_resources(prefix: &str, kvs: &[KeyValue]) -> Result<Vec<ResourceDefinition>, StorageError> {
    let mut defs = kvs
        .iter()
        .map(|kv| {
            let key = kv.key.strip_prefix(KEY_RESOURCE_PREFIX).unwrap_or(&kv.key);
            ResourceDefinition::from_stored(key, kv.value.clone(), kv.mod_revision).map_err(|e| StorageError::Corrupt {
                key: format!("{prefix}{}", kv.key),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    sort_resources(&mut defs);
    Ok(defs)
}

/// Encodes a value as stored (JSON).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("model types always serialize")
}

/// Decodes a stored JSON value, naming the key on failure.
pub fn decode<T: DeserializeOwned>(key: &str, value: &[u8]) -> Result<T, StorageError> {
    serde_json::from_slice(value).map_err(|e| StorageError::Corrupt {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Decodes a stored declaration ([`crate::model::decode_cluster`]); its warnings are logged when
/// this value was not seen before, so a leader reading it every pass logs them once.
pub fn decode_cluster(key: &str, value: &[u8]) -> Result<Cluster, StorageError> {
    static WARNED: std::sync::Mutex<Option<u64>> = std::sync::Mutex::new(None);
    let corrupt = |reason: String| StorageError::Corrupt {
        key: key.to_string(),
        reason,
    };
    let text = std::str::from_utf8(value).map_err(|e| corrupt(e.to_string()))?;
    let d = crate::model::decode_cluster(text).map_err(|r| corrupt(r.errors.to_string()))?;
    if !d.warnings.is_empty() && first_sighting(&WARNED, value) {
        for w in &d.warnings {
            tracing::warn!(key, "stored cluster declaration: {w}");
        }
    }
    Ok(d.cluster)
}

/// True when `value` differs from the value last seen in `slot` (which then holds it): a leader
/// reading the same declaration every pass warns about it once, and again after it changes.
fn first_sighting(slot: &std::sync::Mutex<Option<u64>>, value: &[u8]) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    let hash = h.finish();
    let mut seen = slot.lock().unwrap_or_else(|p| p.into_inner());
    if *seen == Some(hash) {
        return false;
    }
    *seen = Some(hash);
    true
}

/// Reads and decodes a JSON value.
pub async fn get_json<T: DeserializeOwned, S: Storage + ?Sized>(s: &S, key: &str) -> Result<Option<T>, StorageError> {
    match s.get_raw(key).await? {
        None => Ok(None),
        Some(kv) => decode(&s.full_key(key), &kv.value).map(Some),
    }
}

/// Encodes and writes a JSON value.
pub async fn put_json<T: Serialize + ?Sized, S: Storage + ?Sized>(
    s: &S,
    key: &str,
    value: &T,
) -> Result<(), StorageError> {
    s.put_raw(key, encode(value)).await
}

/// Rejects a negative watch start revision (0 = from now).
fn check_start_revision(start_revision: i64) -> Result<(), StorageError> {
    if start_revision < 0 {
        return Err(StorageError::Invalid {
            field: "start_revision",
            reason: format!("{start_revision} is negative (0 watches from now, N > 0 from revision N)"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::VaultConfig;

    #[test]
    fn a_declaration_is_warned_about_once_until_it_changes() {
        let slot = std::sync::Mutex::new(None);
        assert!(super::first_sighting(&slot, b"a"));
        assert!(!super::first_sighting(&slot, b"a"));
        assert!(!super::first_sighting(&slot, b"a"));
        assert!(super::first_sighting(&slot, b"b"));
        assert!(super::first_sighting(&slot, b"a"));
    }

    #[test]
    fn debug_output_leaves_the_secret_id_out() {
        let c = VaultConfig {
            endpoint: "https://vault:8200".into(),
            ca_cert: String::new(),
            role_id: "role".into(),
            secret_id: "s3cr3t-id".into(),
        };
        let text = format!("{c:?}");
        assert!(
            !text.contains("s3cr3t-id") && text.contains("https://vault:8200"),
            "{text}"
        );
    }
}
