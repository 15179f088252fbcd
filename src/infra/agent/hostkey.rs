//! Pinned SSH host keys in the management etcd (`<prefix>ssh-hostkey/<address>`, value: the OpenSSH
//! public key line). CKE does not verify host keys; cke-rs does.

use std::sync::Arc;

use async_trait::async_trait;

use crate::storage::{Storage, StorageError, KEY_SSH_HOSTKEY_PREFIX};

/// How unknown host keys are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum HostKeyMode {
    /// Pin the first key seen for an address (trust on first use), then accept only that key.
    #[default]
    Tofu,
    /// Accept only keys pinned beforehand (`ckecli ssh-hostkey set|scan`).
    Strict,
}

/// Where pins live.
#[async_trait]
pub trait HostKeyStore: Send + Sync {
    /// The pinned key of `address`.
    async fn get(&self, address: &str) -> Result<Option<String>, StorageError>;
    /// Pins `key` for `address` (replacing any pin).
    async fn set(&self, address: &str, key: &str) -> Result<(), StorageError>;
    /// Pins `key` for `address` only if no key is pinned, atomically; false when one already is
    /// (another connection pinned first).
    async fn pin_first(&self, address: &str, key: &str) -> Result<bool, StorageError>;
    /// Removes the pin; returns whether one existed.
    async fn delete(&self, address: &str) -> Result<bool, StorageError>;
    /// Every pin, by address.
    async fn list(&self) -> Result<Vec<(String, String)>, StorageError>;
}

/// Pins in the management etcd.
pub struct StorageHostKeys(pub Arc<dyn Storage>);

#[async_trait]
impl HostKeyStore for StorageHostKeys {
    async fn get(&self, address: &str) -> Result<Option<String>, StorageError> {
        Ok(self
            .0
            .get_raw(&format!("{KEY_SSH_HOSTKEY_PREFIX}{address}"))
            .await?
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
    }

    async fn set(&self, address: &str, key: &str) -> Result<(), StorageError> {
        self.0
            .put_raw(&format!("{KEY_SSH_HOSTKEY_PREFIX}{address}"), key.as_bytes().to_vec())
            .await
    }

    async fn pin_first(&self, address: &str, key: &str) -> Result<bool, StorageError> {
        self.0
            .create_if_absent(&format!("{KEY_SSH_HOSTKEY_PREFIX}{address}"), key.as_bytes().to_vec())
            .await
    }

    async fn delete(&self, address: &str) -> Result<bool, StorageError> {
        self.0.delete_raw(&format!("{KEY_SSH_HOSTKEY_PREFIX}{address}")).await
    }

    async fn list(&self) -> Result<Vec<(String, String)>, StorageError> {
        Ok(self
            .0
            .list_raw(KEY_SSH_HOSTKEY_PREFIX, 0, false)
            .await?
            .into_iter()
            .map(|kv| {
                (
                    kv.key.trim_start_matches(KEY_SSH_HOSTKEY_PREFIX).to_string(),
                    String::from_utf8_lossy(&kv.value).into_owned(),
                )
            })
            .collect())
    }
}

/// Normalises an OpenSSH public key line to `ALGORITHM BASE64` (comment dropped), or explains why it
/// is not one.
pub fn normalise_public_key(line: &str) -> Result<String, String> {
    let mut parts = line.split_whitespace();
    let (Some(alg), Some(b64)) = (parts.next(), parts.next()) else {
        return Err("expected \"ALGORITHM BASE64 [COMMENT]\"".into());
    };
    let key = russh::keys::parse_public_key_base64(b64).map_err(|e| format!("not a public key: {e}"))?;
    if key.algorithm().as_str() != alg {
        return Err(format!(
            "algorithm {alg} does not match the key ({})",
            key.algorithm().as_str()
        ));
    }
    Ok(format!("{alg} {b64}"))
}
