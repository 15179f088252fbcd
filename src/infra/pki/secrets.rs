//! Secrets in the KV v1 mount `cke/secrets` (CKE's layout): secret `ssh` holds one SSH private key
//! per node address, the empty field `""` being the default; secret `k8s` holds the Kubernetes
//! Secret-encryption keys.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{VaultClient, VaultError, SECRETS_MOUNT};

/// Path of the SSH keys.
pub const SSH_PATH: &str = "cke/secrets/ssh";
/// Path of the Kubernetes encryption keys.
pub const K8S_PATH: &str = "cke/secrets/k8s";

async fn read_map(client: &VaultClient, path: &str) -> Result<BTreeMap<String, String>, VaultError> {
    let Some(v) = client.read(path).await? else {
        return Ok(BTreeMap::new());
    };
    // A secret that exists but reads as something else than a map is an error: taken for an empty
    // map, the next write would drop every stored key.
    let Some(data) = v.get("data").and_then(Value::as_object) else {
        return Err(VaultError::Unexpected {
            endpoint: client.endpoint().into(),
            path: path.into(),
            reason: "the secret has no data map".into(),
        });
    };
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect())
}

/// All SSH keys by address (`""` = default).
pub async fn ssh_keys(client: &VaultClient) -> Result<BTreeMap<String, String>, VaultError> {
    read_map(client, SSH_PATH).await
}

/// The SSH private key for `address`: its own, or the default. `None` when neither exists.
pub async fn ssh_private_key(client: &VaultClient, address: &str) -> Result<Option<String>, VaultError> {
    let keys = ssh_keys(client).await?;
    Ok(keys
        .get(address)
        .or_else(|| keys.get(""))
        .filter(|k| !k.is_empty())
        .cloned())
}

/// Stores the SSH private key for `host` (`None` = the default), keeping the others.
pub async fn put_ssh_private_key(client: &VaultClient, host: Option<&str>, key: &str) -> Result<(), VaultError> {
    let mut keys = ssh_keys(client).await?;
    keys.insert(host.unwrap_or_default().to_string(), key.to_string());
    client.write(SSH_PATH, &json!(keys)).await?;
    Ok(())
}

/// One AES-CBC key for Kubernetes Secret encryption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionKey {
    /// Key name, e.g. `key-1700000000`.
    pub name: String,
    /// Base64 of 32 random bytes.
    pub secret: String,
}

/// The encryption keys, newest (the one used to encrypt) first.
pub async fn k8s_encryption_keys(client: &VaultClient) -> Result<Vec<EncryptionKey>, VaultError> {
    let m = read_map(client, K8S_PATH).await?;
    match m.get("aescbc") {
        None => Ok(vec![]),
        Some(text) => serde_json::from_str(text).map_err(|e| VaultError::Unexpected {
            endpoint: client.endpoint().into(),
            path: K8S_PATH.into(),
            reason: format!("aescbc is not a key list: {e}"),
        }),
    }
}

/// Generates a new key, makes it current and keeps the previous current key for decryption
/// (older ones are dropped). Returns the new list.
pub async fn rotate_k8s_encryption_key(client: &VaultClient, now_unix: i64) -> Result<Vec<EncryptionKey>, VaultError> {
    use base64::Engine;
    let mut keys = k8s_encryption_keys(client).await?;
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes);
    let new = EncryptionKey {
        name: format!("key-{now_unix}"),
        secret: base64::engine::general_purpose::STANDARD.encode(bytes),
    };
    keys.truncate(1);
    keys.insert(0, new);
    let text = serde_json::to_string(&keys).expect("keys serialize");
    client.write(K8S_PATH, &json!({ "aescbc": text })).await?;
    Ok(keys)
}

/// The KV mount, for messages.
pub fn mount() -> &'static str {
    SECRETS_MOUNT
}
