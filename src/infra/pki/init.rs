//! `ckecli vault init`: creates, idempotently, everything cke needs in Vault (the six PKI mounts
//! with their root CAs and every role of [`super::requests::ROLES`]) and records the CA
//! certificates and the AppRole credentials in the management etcd. It also makes the first
//! Kubernetes Secret-encryption key when `cke/secrets/k8s` has none (as CKE).

use serde_json::{json, Value};

use super::{ca_mount, VaultClient, VaultError};
use crate::storage::{Storage, StorageError, VaultConfig, CA_NAMES};

/// The PKI mounts (`cke/ca-<name>`), one per CA name.
pub const CA_MOUNTS: [&str; 6] = CA_NAMES;
/// The KV v1 mount for secrets.
pub const SECRETS_MOUNT: &str = "cke/secrets";
/// The policy granted to the AppRole.
pub const POLICY: &str = r#"path "cke/*" {
  capabilities = ["create", "read", "update", "delete", "list", "sudo"]
}
"#;

/// Errors of `vault init`.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Vault failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The management etcd failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What `vault init` changed (empty on a second run).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitReport {
    /// One line per change.
    pub changes: Vec<String>,
}

fn ca_common_name(name: &str) -> String {
    format!("cke {name} CA")
}

fn data(v: &Value) -> &Value {
    v.get("data").unwrap_or(v)
}

/// Creates the PKI mounts with root CAs and roles, the KV mount, the policy and the AppRole, then
/// stores the CA certificates (`ca/<name>`) and the Vault connection (`vault`) in etcd. `root` must
/// carry a token allowed to do all of that. A second run changes nothing.
pub async fn vault_init(root: &VaultClient, storage: &dyn Storage, ca_cert: &str) -> Result<InitReport, InitError> {
    let mut report = InitReport::default();
    let mounts = root.read("sys/mounts").await?.unwrap_or(Value::Null);
    let mounted = |path: &str| {
        let key = format!("{path}/");
        mounts.get(&key).is_some() || mounts.get("data").and_then(|d| d.get(&key)).is_some()
    };

    for name in CA_MOUNTS {
        let mount = ca_mount(name);
        if !mounted(&mount) {
            root.write(
                &format!("sys/mounts/{mount}"),
                &json!({"type": "pki", "config": {"max_lease_ttl": "876000h"}}),
            )
            .await?;
            report.changes.push(format!("mounted PKI at {mount}"));
        }
        // A mount without a root CA answers 400 ("no default issuer") or an empty certificate.
        let existing = match root.read(&format!("{mount}/cert/ca")).await {
            Err(e) if e.status() == Some(400) => None,
            other => other?,
        };
        let mut pem = existing
            .as_ref()
            .and_then(|v| data(v)["certificate"].as_str())
            .unwrap_or_default()
            .to_string();
        if pem.trim().is_empty() {
            let v = root
                .write(
                    &format!("{mount}/root/generate/internal"),
                    &json!({"common_name": ca_common_name(name), "ttl": "876000h", "key_type": "ec", "key_bits": 256}),
                )
                .await?;
            pem = data(&v)["certificate"].as_str().unwrap_or_default().to_string();
            if pem.is_empty() {
                return Err(VaultError::Unexpected {
                    endpoint: root.endpoint().into(),
                    path: format!("{mount}/root/generate/internal"),
                    reason: "no certificate".into(),
                }
                .into());
            }
            report.changes.push(format!("generated the root CA of {mount}"));
        }
        for spec in super::requests::ROLES.iter().filter(|r| r.ca == name) {
            let role = spec.role;
            let path = format!("{mount}/roles/{role}");
            if root.read(&path).await?.is_none() {
                root.write(&path, &spec.vault_options()).await?;
                report.changes.push(format!("created role {role} on {mount}"));
            }
        }
        if storage.get_ca(name).await?.as_deref() != Some(pem.as_str()) {
            storage.put_ca(name, &pem).await?;
            report.changes.push(format!("stored CA certificate ca/{name} in etcd"));
        }
    }

    if !mounted(SECRETS_MOUNT) {
        root.write(
            &format!("sys/mounts/{SECRETS_MOUNT}"),
            &json!({"type": "kv", "options": {"version": "1"}}),
        )
        .await?;
        report.changes.push(format!("mounted KV v1 at {SECRETS_MOUNT}"));
    }
    // As CKE: the first Secret-encryption key, when there is none yet.
    if super::secrets::k8s_encryption_keys(root).await?.is_empty() {
        let keys = super::secrets::rotate_k8s_encryption_key(root, chrono::Utc::now()).await?;
        report.changes.push(format!(
            "created the Kubernetes encryption key {} in {}",
            keys[0].name,
            super::secrets::K8S_PATH
        ));
    }

    let policy = root.read("sys/policies/acl/cke").await?;
    let current = policy
        .as_ref()
        .and_then(|v| data(v)["policy"].as_str())
        .unwrap_or_default()
        .to_string();
    if current.trim() != POLICY.trim() {
        root.request(
            reqwest::Method::PUT,
            "sys/policies/acl/cke",
            Some(&json!({"policy": POLICY})),
        )
        .await?;
        report.changes.push("wrote policy cke".into());
    }

    let auths = root.read("sys/auth").await?.unwrap_or(Value::Null);
    if auths.get("approle/").is_none() && auths.get("data").and_then(|d| d.get("approle/")).is_none() {
        root.write("sys/auth/approle", &json!({"type": "approle"})).await?;
        report.changes.push("enabled the approle auth method".into());
    }
    if root.read("auth/approle/role/cke").await?.is_none() {
        root.write(
            "auth/approle/role/cke",
            &json!({"token_policies": ["cke"], "token_period": "1h", "secret_id_ttl": "0", "token_ttl": "0"}),
        )
        .await?;
        report
            .changes
            .push("created AppRole cke (periodic token, policy cke)".into());
    }
    let v = root.read("auth/approle/role/cke/role-id").await?.unwrap_or(Value::Null);
    let role_id = data(&v)["role_id"].as_str().unwrap_or_default().to_string();
    if role_id.is_empty() {
        return Err(VaultError::Unexpected {
            endpoint: root.endpoint().into(),
            path: "auth/approle/role/cke/role-id".into(),
            reason: "no role_id".into(),
        }
        .into());
    }

    // Reuse the stored secret id while it still logs in, so a second run changes nothing.
    let stored = storage.get_vault_config().await?;
    let reusable = match &stored {
        Some(c) if c.endpoint == root.endpoint() && c.role_id == role_id && c.ca_cert == ca_cert => {
            VaultClient::connect(c).await.is_ok()
        }
        _ => false,
    };
    if !reusable {
        let v = root.write("auth/approle/role/cke/secret-id", &json!({})).await?;
        let secret_id = data(&v)["secret_id"].as_str().unwrap_or_default().to_string();
        let config = VaultConfig {
            endpoint: root.endpoint().to_string(),
            ca_cert: ca_cert.to_string(),
            role_id,
            secret_id,
        };
        storage.put_vault_config(&config).await?;
        report
            .changes
            .push("stored the Vault connection (vault key) in etcd".into());
    }
    Ok(report)
}
