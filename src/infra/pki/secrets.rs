//! Secrets in the KV v1 mount `cke/secrets` (CKE's layout): secret `ssh` holds one SSH private key
//! per node address, the empty field `""` being the default; secret `k8s` holds the Kubernetes
//! Secret-encryption keys.

use std::collections::BTreeMap;

use vaultrs::api::kv1::requests::{GetSecretRequest, SetSecretRequest};

use super::{VaultClient, VaultError, SECRETS_MOUNT};

/// Path of the SSH keys.
pub const SSH_PATH: &str = "cke/secrets/ssh";
/// Path of the Kubernetes encryption keys.
pub const K8S_PATH: &str = "cke/secrets/k8s";

/// The secret's name within [`SECRETS_MOUNT`] (`cke/secrets/ssh` → `ssh`).
fn secret_name(path: &str) -> &str {
    path.strip_prefix(SECRETS_MOUNT)
        .map_or(path, |p| p.trim_start_matches('/'))
}

fn get_request(path: &str) -> GetSecretRequest {
    GetSecretRequest::builder()
        .mount(SECRETS_MOUNT)
        .path(secret_name(path))
        .build()
        .expect("every field is set")
}

async fn read_map(client: &VaultClient, path: &str) -> Result<BTreeMap<String, String>, VaultError> {
    let Some(secret) = client.whole_opt(|| get_request(path)).await? else {
        return Ok(BTreeMap::new());
    };
    // A secret that exists but reads as something else than a map is an error: taken for an empty
    // map, the next write would drop every stored key.
    let Some(data) = secret.data.as_object() else {
        return Err(client.unexpected_for(&get_request(path), "the secret has no data map"));
    };
    Ok(data
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect())
}

/// Replaces the secret at `path` with `fields` (KV v1 has no partial update).
async fn write_map(client: &VaultClient, path: &str, fields: &BTreeMap<String, String>) -> Result<(), VaultError> {
    let body = serde_json::to_vec(fields).expect("a map of strings serializes");
    client
        .empty(|| {
            SetSecretRequest::builder()
                .mount(SECRETS_MOUNT)
                .path(secret_name(path))
                .data(body.clone())
                .build()
                .expect("every field is set")
        })
        .await
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
    write_map(client, SSH_PATH, &keys).await
}

pub use crate::k8s::encryption::EncryptionKey;

/// The encryption keys, newest (the one used to encrypt) first. Reads CKE's `AESConfiguration`
/// JSON and the bare key list earlier cke-rs versions wrote.
pub async fn k8s_encryption_keys(client: &VaultClient) -> Result<Vec<EncryptionKey>, VaultError> {
    let m = read_map(client, K8S_PATH).await?;
    match m.get("aescbc") {
        None => Ok(vec![]),
        Some(text) => crate::k8s::encryption::parse_keys(text)
            .map_err(|e| client.unexpected_for(&get_request(K8S_PATH), &e.to_string())),
    }
}

/// Generates a new key named `now` (RFC 3339 UTC), makes it current and keeps the previous current
/// key for decryption (older ones are dropped), as CKE's `ckecli vault enckey`. Other fields of the
/// secret are kept. Returns the new list.
pub async fn rotate_k8s_encryption_key(
    client: &VaultClient,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<EncryptionKey>, VaultError> {
    let mut fields = read_map(client, K8S_PATH).await?;
    let keys = match fields.get("aescbc") {
        None => vec![],
        Some(text) => crate::k8s::encryption::parse_keys(text)
            .map_err(|e| client.unexpected_for(&get_request(K8S_PATH), &e.to_string()))?,
    };
    let mut random = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut random);
    let keys = crate::k8s::encryption::rotate(&keys, now, random);
    fields.insert("aescbc".into(), crate::k8s::encryption::keys_json(&keys));
    write_map(client, K8S_PATH, &fields).await?;
    Ok(keys)
}

/// The KV mount, for messages.
pub fn mount() -> &'static str {
    SECRETS_MOUNT
}
