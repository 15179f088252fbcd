//! The keys of the sabakan integration and of sabakan-triggered repair (CKE's layout):
//! `sabakan/url`, `sabakan/template` (its mod revision is the template revision),
//! `sabakan/query-variables`, `sabakan/disabled`, `cluster-revision` (the template revision the
//! current `cluster` was generated from), `auto-repair/disabled`, `auto-repair/query-variables`.
//! The query variables are stored as given (CKE stores the file's text); their type belongs to the
//! sabakan layer.

use async_trait::async_trait;

use super::{decode, decode_cluster, encode, KeyValue, Read, Snapshot, Storage, StorageError, Write, KEY_CLUSTER};
use crate::model::Cluster;

/// URL of sabakan's GraphQL endpoint.
pub const KEY_SABAKAN_URL: &str = "sabakan/url";
/// The cluster template (JSON).
pub const KEY_SABAKAN_TEMPLATE: &str = "sabakan/template";
/// Variables of the query for available machines (JSON).
pub const KEY_SABAKAN_QUERY_VARIABLES: &str = "sabakan/query-variables";
/// `true` when the integration is disabled.
pub const KEY_SABAKAN_DISABLED: &str = "sabakan/disabled";
/// The template revision the current declaration was generated from.
pub const KEY_CLUSTER_REVISION: &str = "cluster-revision";
/// `true` when sabakan-triggered repair is disabled.
pub const KEY_AUTO_REPAIR_DISABLED: &str = "auto-repair/disabled";
/// Variables of the query for machines to repair (JSON).
pub const KEY_AUTO_REPAIR_QUERY_VARIABLES: &str = "auto-repair/query-variables";

/// Typed access to the sabakan keys, for every [`Storage`].
#[async_trait]
pub trait SabakanStorage: Storage {
    /// Whether the integration is disabled (the key holds exactly `true`).
    async fn is_sabakan_disabled(&self) -> Result<bool, StorageError> {
        is_true(self, KEY_SABAKAN_DISABLED).await
    }

    /// Enables or disables the integration (CKE writes `false` or `true` to `sabakan/disabled`).
    async fn enable_sabakan(&self, enable: bool) -> Result<(), StorageError> {
        self.put_raw(KEY_SABAKAN_DISABLED, (!enable).to_string().into_bytes())
            .await
    }

    /// The GraphQL endpoint, if set.
    async fn get_sabakan_url(&self) -> Result<Option<String>, StorageError> {
        text(self, KEY_SABAKAN_URL).await
    }

    /// Sets the GraphQL endpoint (the caller validates it).
    async fn put_sabakan_url(&self, url: &str) -> Result<(), StorageError> {
        self.put_raw(KEY_SABAKAN_URL, url.as_bytes().to_vec()).await
    }

    /// The template and its revision (the key's mod revision), if set.
    async fn get_sabakan_template(&self) -> Result<Option<(Cluster, i64)>, StorageError> {
        match self.get_raw(KEY_SABAKAN_TEMPLATE).await? {
            None => Ok(None),
            Some(kv) => Ok(Some((
                decode(&self.full_key(KEY_SABAKAN_TEMPLATE), &kv.value)?,
                kv.mod_revision,
            ))),
        }
    }

    /// Stores the template (the caller validates it).
    async fn put_sabakan_template(&self, template: &Cluster) -> Result<(), StorageError> {
        self.put_raw(KEY_SABAKAN_TEMPLATE, encode(template)).await
    }

    /// The stored query variables, as stored.
    async fn get_sabakan_query_variables(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.get_raw(KEY_SABAKAN_QUERY_VARIABLES).await?.map(|kv| kv.value))
    }

    /// Stores the query variables as given (the caller validates them).
    async fn put_sabakan_query_variables(&self, vars: &[u8]) -> Result<(), StorageError> {
        self.put_raw(KEY_SABAKAN_QUERY_VARIABLES, vars.to_vec()).await
    }

    /// The declaration and the template revision it was generated from (0 when none was), read
    /// together in one read.
    async fn get_cluster_with_revision(&self) -> Result<Option<(Cluster, i64)>, StorageError> {
        // `cluster` and `cluster-revision` share the prefix `cluster`: one range read sees both.
        let kvs = self.list_raw(KEY_CLUSTER, 0, false).await?;
        let Some(c) = kvs.iter().find(|kv| kv.key == KEY_CLUSTER) else {
            return Ok(None);
        };
        let cluster: Cluster = decode(&self.full_key(KEY_CLUSTER), &c.value)?;
        let rev = match kvs.iter().find(|kv| kv.key == KEY_CLUSTER_REVISION) {
            None => 0,
            Some(kv) => String::from_utf8_lossy(&kv.value)
                .trim()
                .parse()
                .map_err(|_| StorageError::Corrupt {
                    key: self.full_key(KEY_CLUSTER_REVISION),
                    reason: "not an integer".into(),
                })?,
        };
        Ok(Some((cluster, rev)))
    }

    /// Whether sabakan-triggered repair is disabled (the key holds exactly `true`).
    async fn is_auto_repair_disabled(&self) -> Result<bool, StorageError> {
        is_true(self, KEY_AUTO_REPAIR_DISABLED).await
    }

    /// Enables or disables sabakan-triggered repair.
    async fn enable_auto_repair(&self, enable: bool) -> Result<(), StorageError> {
        self.put_raw(KEY_AUTO_REPAIR_DISABLED, (!enable).to_string().into_bytes())
            .await
    }

    /// The stored auto-repair query variables, as stored.
    async fn get_auto_repair_query_variables(&self) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.get_raw(KEY_AUTO_REPAIR_QUERY_VARIABLES).await?.map(|kv| kv.value))
    }

    /// Stores the auto-repair query variables as given (the caller validates them).
    async fn put_auto_repair_query_variables(&self, vars: &[u8]) -> Result<(), StorageError> {
        self.put_raw(KEY_AUTO_REPAIR_QUERY_VARIABLES, vars.to_vec()).await
    }
}

#[async_trait]
impl<S: Storage + ?Sized> SabakanStorage for S {}

/// The keys the integration reads on every run, in the order of [`SabakanSettings`]'s snapshot.
const SETTINGS_KEYS: [&str; 7] = [
    KEY_SABAKAN_DISABLED,
    KEY_SABAKAN_TEMPLATE,
    KEY_SABAKAN_URL,
    KEY_SABAKAN_QUERY_VARIABLES,
    KEY_AUTO_REPAIR_DISABLED,
    KEY_AUTO_REPAIR_QUERY_VARIABLES,
    KEY_CLUSTER,
];

/// The settings of the sabakan integration and of sabakan-triggered repair, and the declaration,
/// read in one request at one revision ([`SabakanSettings::read`]); the accessors answer as the
/// [`SabakanStorage`] methods of the same names, each value decoded when asked for.
#[derive(Debug, Clone)]
pub struct SabakanSettings {
    prefix: String,
    snapshot: Snapshot,
}

impl SabakanSettings {
    /// Reads them ([`Storage::read_many`]).
    pub async fn read<S: Storage + ?Sized>(s: &S) -> Result<Self, StorageError> {
        let reads: Vec<Read> = SETTINGS_KEYS.iter().map(|k| Read::Key((*k).into())).collect();
        Ok(SabakanSettings {
            prefix: s.prefix().to_string(),
            snapshot: s.read_many(&reads).await?,
        })
    }

    fn get(&self, key: &str) -> Option<&KeyValue> {
        let i = SETTINGS_KEYS.iter().position(|k| *k == key).expect("a settings key");
        self.snapshot.key(i)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn text(&self, key: &str) -> Result<Option<String>, StorageError> {
        self.get(key)
            .map(|kv| {
                String::from_utf8(kv.value.clone()).map_err(|_| StorageError::Corrupt {
                    key: self.full_key(key),
                    reason: "not UTF-8".into(),
                })
            })
            .transpose()
    }

    /// [`SabakanStorage::is_sabakan_disabled`].
    pub fn is_sabakan_disabled(&self) -> bool {
        self.get(KEY_SABAKAN_DISABLED).is_some_and(|kv| kv.value == b"true")
    }

    /// [`SabakanStorage::get_sabakan_template`].
    pub fn get_sabakan_template(&self) -> Result<Option<(Cluster, i64)>, StorageError> {
        self.get(KEY_SABAKAN_TEMPLATE)
            .map(|kv| {
                Ok((
                    decode(&self.full_key(KEY_SABAKAN_TEMPLATE), &kv.value)?,
                    kv.mod_revision,
                ))
            })
            .transpose()
    }

    /// [`SabakanStorage::get_sabakan_url`].
    pub fn get_sabakan_url(&self) -> Result<Option<String>, StorageError> {
        self.text(KEY_SABAKAN_URL)
    }

    /// [`SabakanStorage::get_sabakan_query_variables`].
    pub fn get_sabakan_query_variables(&self) -> Option<Vec<u8>> {
        self.get(KEY_SABAKAN_QUERY_VARIABLES).map(|kv| kv.value.clone())
    }

    /// [`SabakanStorage::is_auto_repair_disabled`].
    pub fn is_auto_repair_disabled(&self) -> bool {
        self.get(KEY_AUTO_REPAIR_DISABLED).is_some_and(|kv| kv.value == b"true")
    }

    /// [`SabakanStorage::get_auto_repair_query_variables`].
    pub fn get_auto_repair_query_variables(&self) -> Option<Vec<u8>> {
        self.get(KEY_AUTO_REPAIR_QUERY_VARIABLES).map(|kv| kv.value.clone())
    }

    /// The declaration, as [`Storage::get_cluster`] reads it.
    pub fn get_cluster(&self) -> Result<Option<Cluster>, StorageError> {
        self.get(KEY_CLUSTER)
            .map(|kv| decode_cluster(&self.full_key(KEY_CLUSTER), &kv.value))
            .transpose()
    }
}

/// The writes that store a generated declaration with its template revision; the leader applies
/// them in one fenced transaction (CKE's `PutClusterWithTemplateRevision`).
pub fn cluster_with_template_revision(cluster: &Cluster, revision: i64) -> Vec<Write> {
    vec![
        Write::Put(KEY_CLUSTER.into(), encode(cluster)),
        Write::Put(KEY_CLUSTER_REVISION.into(), revision.to_string().into_bytes()),
    ]
}

async fn is_true<S: Storage + ?Sized>(s: &S, key: &str) -> Result<bool, StorageError> {
    Ok(s.get_raw(key).await?.is_some_and(|kv| kv.value == b"true"))
}

async fn text<S: Storage + ?Sized>(s: &S, key: &str) -> Result<Option<String>, StorageError> {
    match s.get_raw(key).await? {
        None => Ok(None),
        Some(kv) => String::from_utf8(kv.value)
            .map(Some)
            .map_err(|_| StorageError::Corrupt {
                key: s.full_key(key),
                reason: "not UTF-8".into(),
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Fence, MemStorage};

    #[tokio::test]
    async fn keys_and_revisions_as_cke_lays_them_out() {
        let s = MemStorage::default();
        assert!(!s.is_sabakan_disabled().await.unwrap());
        s.enable_sabakan(false).await.unwrap();
        assert_eq!(s.get_raw(KEY_SABAKAN_DISABLED).await.unwrap().unwrap().value, b"true");
        assert!(s.is_sabakan_disabled().await.unwrap());
        s.enable_sabakan(true).await.unwrap();
        assert!(!s.is_sabakan_disabled().await.unwrap());

        assert_eq!(s.get_cluster_with_revision().await.unwrap(), None);
        let t = Cluster::new("t", "10.68.0.0/16", vec![]);
        s.put_sabakan_template(&t).await.unwrap();
        let (_, rev) = s.get_sabakan_template().await.unwrap().unwrap();
        let fence = Fence {
            key: "/nothing".into(),
            create_revision: 0,
        };
        s.put_fenced(&fence, cluster_with_template_revision(&t, rev))
            .await
            .unwrap();
        let (c, crev) = s.get_cluster_with_revision().await.unwrap().unwrap();
        assert_eq!((c, crev), (t.clone(), rev));
        // A declaration set by hand keeps the old revision (CKE's ckecli cluster set).
        s.put_cluster(&t).await.unwrap();
        assert_eq!(s.get_cluster_with_revision().await.unwrap().unwrap().1, rev);
    }
}
