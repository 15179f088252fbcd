//! What connecting to the nodes needs, read in bulk: the SSH private keys (Vault `cke/secrets/ssh`,
//! one secret holding every node's key) and the pinned host keys (`<prefix>ssh-hostkey/`), each
//! loaded with one request and kept for the rest of the pass. [`PassCredentials::new_pass`] marks
//! both stale; the next connection that needs them loads them again, so a pass makes at most one
//! Vault read and one etcd listing for its connections, whatever the node count, and none when every
//! connection is pooled. Decoded private keys are kept by their text, so a key used by a thousand
//! nodes is parsed once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use russh::keys::PrivateKey;

use super::hostkey::HostKeyStore;
use super::ssh::KeyProvider;
use super::AgentError;
use crate::storage::StorageError;

/// Every SSH key by node address (`""`: the default key).
pub type KeyMap = std::collections::BTreeMap<String, String>;

/// Why the SSH keys could not be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum KeysError {
    /// There is nowhere to read them from (Vault not configured): nothing to retry until it is.
    #[error("{0}")]
    NotConfigured(String),
    /// Vault did not give them (down, sealed, refused): an outage, not a missing key.
    #[error("cannot read the SSH key from Vault: {0}")]
    Vault(String),
}

/// Loads every SSH key at once (`""`: the default key).
#[async_trait]
pub trait KeySource: Send + Sync {
    /// Every key by node address.
    async fn all_keys(&self) -> Result<KeyMap, KeysError>;
}

/// The keys in Vault.
pub struct VaultKeySource(pub crate::infra::pki::VaultClient);

#[async_trait]
impl KeySource for VaultKeySource {
    async fn all_keys(&self) -> Result<KeyMap, KeysError> {
        crate::infra::pki::secrets::ssh_keys(&self.0)
            .await
            .map_err(|e| KeysError::Vault(crate::error::error_chain(&e)))
    }
}

/// The per-pass caches of keys and pins.
pub struct PassCredentials {
    keys: Arc<BulkKeys>,
    pins: Arc<BulkPins>,
}

impl PassCredentials {
    /// Caches over `keys` and `pins`.
    pub fn new(keys: Arc<dyn KeySource>, pins: Arc<dyn HostKeyStore>) -> Self {
        PassCredentials {
            keys: Arc::new(BulkKeys {
                source: keys,
                loaded: tokio::sync::Mutex::new(None),
                decoded: Mutex::new(HashMap::new()),
            }),
            pins: Arc::new(BulkPins {
                store: pins,
                loaded: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// The key provider for the SSH pool.
    pub fn keys(&self) -> Arc<BulkKeys> {
        self.keys.clone()
    }

    /// The pin store for the SSH pool.
    pub fn pins(&self) -> Arc<BulkPins> {
        self.pins.clone()
    }

    /// A new pass begins: keys and pins are read again when next needed.
    pub async fn new_pass(&self) {
        self.keys.loaded.lock().await.take();
        self.pins.loaded.lock().await.take();
    }
}

/// SSH keys loaded in bulk; see the module.
pub struct BulkKeys {
    source: Arc<dyn KeySource>,
    /// The keys of this pass, or why they could not be read (not read again until the next pass).
    loaded: tokio::sync::Mutex<Option<Result<Arc<KeyMap>, KeysError>>>,
    /// Parsed keys by their text.
    decoded: Mutex<HashMap<String, Arc<PrivateKey>>>,
}

impl BulkKeys {
    async fn map(&self) -> Result<Arc<KeyMap>, KeysError> {
        let mut loaded = self.loaded.lock().await;
        if loaded.is_none() {
            *loaded = Some(self.source.all_keys().await.map(Arc::new));
        }
        loaded.clone().expect("just loaded")
    }
}

#[async_trait]
impl KeyProvider for BulkKeys {
    async fn private_key(&self, address: &str) -> Result<String, AgentError> {
        let keys = self.map().await.map_err(|e| match e {
            KeysError::NotConfigured(reason) => AgentError::NoKey {
                address: address.into(),
                reason,
            },
            // Vault down or sealed is an outage, not a missing key: retried soon.
            KeysError::Vault(_) => AgentError::Connect {
                address: address.into(),
                reason: e.to_string(),
            },
        })?;
        keys.get(address)
            .or_else(|| keys.get(""))
            .filter(|k| !k.is_empty())
            .cloned()
            .ok_or_else(|| AgentError::NoKey {
                address: address.into(),
                reason: "none in Vault (ckecli vault ssh-privkey)".into(),
            })
    }

    async fn decoded_key(&self, address: &str) -> Result<Arc<PrivateKey>, AgentError> {
        let text = self.private_key(address).await?;
        if let Some(k) = self.decoded.lock().unwrap().get(&text) {
            return Ok(k.clone());
        }
        let key = Arc::new(
            russh::keys::decode_secret_key(&text, None).map_err(|e| AgentError::NoKey {
                address: address.into(),
                reason: format!("unusable private key: {e}"),
            })?,
        );
        let mut decoded = self.decoded.lock().unwrap();
        // Keys removed from Vault are forgotten: the cache holds at most the keys in use.
        if decoded.len() > 64 {
            decoded.clear();
        }
        decoded.insert(text, key.clone());
        Ok(key)
    }
}

/// Pinned host keys loaded in bulk; see the module. Pins made or changed through it are kept in
/// the cache at once.
pub struct BulkPins {
    store: Arc<dyn HostKeyStore>,
    loaded: tokio::sync::Mutex<Option<HashMap<String, String>>>,
}

impl BulkPins {
    /// The pin of `address` changed elsewhere (`None`: deleted), as a watch of the pins reports:
    /// the pins of this pass take the change at once.
    pub async fn changed(&self, address: &str, pin: Option<&str>) {
        if let Some(m) = self.loaded.lock().await.as_mut() {
            match pin {
                Some(p) => m.insert(address.into(), p.into()),
                None => m.remove(address),
            };
        }
    }

    async fn with_map<T>(&self, f: impl FnOnce(&mut HashMap<String, String>) -> T) -> Result<T, StorageError> {
        let mut loaded = self.loaded.lock().await;
        if loaded.is_none() {
            *loaded = Some(self.store.list().await?.into_iter().collect());
        }
        Ok(f(loaded.as_mut().expect("just loaded")))
    }
}

#[async_trait]
impl HostKeyStore for BulkPins {
    async fn get(&self, address: &str) -> Result<Option<String>, StorageError> {
        self.with_map(|m| m.get(address).cloned()).await
    }

    async fn set(&self, address: &str, key: &str) -> Result<(), StorageError> {
        self.store.set(address, key).await?;
        self.with_map(|m| m.insert(address.into(), key.into())).await?;
        Ok(())
    }

    async fn pin_first(&self, address: &str, key: &str) -> Result<bool, StorageError> {
        let pinned = self.store.pin_first(address, key).await?;
        // Another connection (or instance) may have pinned since the pins were read: learn its pin.
        let now = if pinned {
            Some(key.to_string())
        } else {
            self.store.get(address).await?
        };
        self.with_map(|m| match now {
            Some(k) => m.insert(address.into(), k),
            None => m.remove(address),
        })
        .await?;
        Ok(pinned)
    }

    async fn delete(&self, address: &str) -> Result<bool, StorageError> {
        let existed = self.store.delete(address).await?;
        self.with_map(|m| m.remove(address)).await?;
        Ok(existed)
    }

    async fn list(&self) -> Result<Vec<(String, String)>, StorageError> {
        self.with_map(|m| m.iter().map(|(a, k)| (a.clone(), k.clone())).collect())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::agent::hostkey::StorageHostKeys;
    use crate::storage::{MemStorage, Storage};
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counted(AtomicUsize, KeyMap);

    #[async_trait]
    impl KeySource for Counted {
        async fn all_keys(&self) -> Result<KeyMap, KeysError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(self.1.clone())
        }
    }

    /// A fresh Ed25519 key in OpenSSH format.
    fn key() -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let st = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read_to_string(path).unwrap()
    }

    #[tokio::test]
    async fn keys_and_pins_are_read_once_per_pass_whatever_the_node_count() {
        let key = key();
        let source = Arc::new(Counted(
            AtomicUsize::new(0),
            [("".to_string(), key.clone()), ("10.0.0.2".into(), "own".into())].into(),
        ));
        let mem = Arc::new(MemStorage::default());
        mem.put_raw("ssh-hostkey/10.0.0.1", b"ssh-ed25519 AAAA".to_vec())
            .await
            .unwrap();
        let creds = PassCredentials::new(source.clone(), Arc::new(StorageHostKeys(mem.clone())));
        let (keys, pins) = (creds.keys(), creds.pins());
        for i in 0..1000 {
            let a = format!("10.1.{}.{}", i / 250, i % 250);
            assert_eq!(keys.private_key(&a).await.unwrap(), key);
            assert_eq!(pins.get(&a).await.unwrap(), None);
        }
        assert_eq!(
            keys.private_key("10.0.0.2").await.unwrap(),
            "own",
            "a node's own key first"
        );
        assert_eq!(pins.get("10.0.0.1").await.unwrap().as_deref(), Some("ssh-ed25519 AAAA"));
        let a = keys.decoded_key("10.0.0.1").await.unwrap();
        let b = keys.decoded_key("10.0.0.3").await.unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one key text is parsed once");
        assert_eq!(source.0.load(Ordering::SeqCst), 1, "one read of the keys");

        // A pin made through the cache is seen at once; one made elsewhere is learnt when pinning
        // fails.
        assert!(pins.pin_first("10.0.0.5", "ssh-ed25519 BBBB").await.unwrap());
        assert_eq!(pins.get("10.0.0.5").await.unwrap().as_deref(), Some("ssh-ed25519 BBBB"));
        mem.put_raw("ssh-hostkey/10.0.0.6", b"ssh-ed25519 CCCC".to_vec())
            .await
            .unwrap();
        assert!(!pins.pin_first("10.0.0.6", "ssh-ed25519 DDDD").await.unwrap());
        assert_eq!(pins.get("10.0.0.6").await.unwrap().as_deref(), Some("ssh-ed25519 CCCC"));

        // The next pass reads both again, once.
        creds.new_pass().await;
        keys.private_key("10.0.0.1").await.unwrap();
        keys.private_key("10.0.0.9").await.unwrap();
        assert_eq!(source.0.load(Ordering::SeqCst), 2);
        mem.delete_raw("ssh-hostkey/10.0.0.1").await.unwrap();
        assert_eq!(pins.get("10.0.0.1").await.unwrap(), None, "reloaded");
    }

    struct Failing(KeysError);

    #[async_trait]
    impl KeySource for Failing {
        async fn all_keys(&self) -> Result<KeyMap, KeysError> {
            Err(self.0.clone())
        }
    }

    #[tokio::test]
    async fn vault_down_is_an_outage_and_no_vault_a_missing_key() {
        let pins = Arc::new(StorageHostKeys(Arc::new(MemStorage::default())));
        let down = PassCredentials::new(Arc::new(Failing(KeysError::Vault("sealed".into()))), pins.clone());
        let e = down.keys().private_key("10.0.0.1").await.unwrap_err();
        assert!(
            matches!(&e, AgentError::Connect { .. })
                && e.to_string().contains("cannot read the SSH key from Vault: sealed"),
            "{e}"
        );
        let none = PassCredentials::new(Arc::new(Failing(KeysError::NotConfigured("no vault".into()))), pins);
        let e = none.keys().private_key("10.0.0.1").await.unwrap_err();
        assert!(matches!(&e, AgentError::NoKey { .. }), "{e}");
    }

    #[tokio::test]
    async fn a_pin_changed_elsewhere_is_taken_at_once() {
        let mem = Arc::new(MemStorage::default());
        mem.put_raw("ssh-hostkey/10.0.0.1", b"ssh-ed25519 AAAA".to_vec())
            .await
            .unwrap();
        let creds = PassCredentials::new(
            Arc::new(Failing(KeysError::Vault("unused".into()))),
            Arc::new(StorageHostKeys(mem.clone())),
        );
        let pins = creds.pins();
        // Before the pins are read, a change has nothing to update.
        pins.changed("10.0.0.9", Some("ssh-ed25519 ZZZZ")).await;
        assert_eq!(pins.get("10.0.0.9").await.unwrap(), None);
        assert_eq!(pins.get("10.0.0.1").await.unwrap().as_deref(), Some("ssh-ed25519 AAAA"));
        mem.put_raw("ssh-hostkey/10.0.0.1", b"ssh-ed25519 BBBB".to_vec())
            .await
            .unwrap();
        pins.changed("10.0.0.1", Some("ssh-ed25519 BBBB")).await;
        assert_eq!(pins.get("10.0.0.1").await.unwrap().as_deref(), Some("ssh-ed25519 BBBB"));
        pins.changed("10.0.0.1", None).await;
        assert_eq!(pins.get("10.0.0.1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_node_that_does_not_answer_costs_no_read_of_the_keys() {
        use crate::infra::agent::ssh::{SshConfig, SshPool};
        use crate::infra::agent::Runner;
        let source = Arc::new(Counted(AtomicUsize::new(0), KeyMap::new()));
        let creds = PassCredentials::new(
            source.clone(),
            Arc::new(StorageHostKeys(Arc::new(MemStorage::default()))),
        );
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pool = SshPool::new(
            creds.keys(),
            creds.pins(),
            SshConfig {
                port,
                ..Default::default()
            },
        );
        let e = pool
            .node("127.0.0.1", "root")
            .run("true", None, std::time::Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(e, AgentError::Connect { .. }), "{e}");
        assert_eq!(source.0.load(Ordering::SeqCst), 0, "no read of the keys");
    }
}
