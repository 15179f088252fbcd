//! `ckecli vault init`: creates, idempotently, everything cke needs in Vault (the six PKI mounts
//! with their root CAs and every role of [`super::requests::ROLES`]) and records the CA
//! certificates and the AppRole credentials in the management etcd. It also makes the first
//! Kubernetes Secret-encryption key when `cke/secrets/k8s` has none (as CKE).

use std::collections::HashMap;

use vaultrs::api::auth::approle::requests as approle;
use vaultrs::api::pki::requests as pki;
use vaultrs::api::sys::requests as sys;

use super::client::APPROLE_MOUNT;
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

/// The AppRole cke logs in with.
const APPROLE: &str = "cke";
/// The name of the policy ([`POLICY`]).
const POLICY_NAME: &str = "cke";

/// The PEM certificate of the root CA of `mount`, `None` when it has none yet. A mount without a
/// root CA answers 400 ("no default issuer"), 404, or an empty certificate.
async fn root_ca(root: &VaultClient, mount: &str) -> Result<Option<String>, VaultError> {
    let read = root
        .result(|| {
            pki::ReadCertificateRequest::builder()
                .mount(mount)
                .serial("ca")
                .build()
                .expect("every field is set")
        })
        .await;
    match read {
        Ok(c) if !c.certificate.trim().is_empty() => Ok(Some(c.certificate)),
        Ok(_) => Ok(None),
        Err(e) if matches!(e.status(), Some(400 | 404)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The roles of a PKI mount (LIST answers 404 when there is none). A list rather than vaultrs's
/// typed role read: one request answers for every role of the mount, and whether a role exists is
/// all cke asks (its options are cke's own, set when it is created).
pub(crate) async fn pki_roles(client: &VaultClient, mount: &str) -> Result<Vec<String>, VaultError> {
    Ok(client
        .result_opt(|| {
            pki::ListRolesRequest::builder()
                .mount(mount)
                .build()
                .expect("every field is set")
        })
        .await?
        .map(|r| r.keys)
        .unwrap_or_default())
}

/// Creates, idempotently, everything cke needs in Vault (see the module doc).
/// Creates the PKI mounts with root CAs and roles, the KV mount, the policy and the AppRole, then
/// stores the CA certificates (`ca/<name>`) and the Vault connection (`vault`) in etcd. `root` must
/// carry a token allowed to do all of that. A second run changes nothing.
pub async fn vault_init(root: &VaultClient, storage: &dyn Storage, ca_cert: &str) -> Result<InitReport, InitError> {
    let mut report = InitReport::default();
    let mounts = root
        .result(|| sys::ListMountsRequest::builder().build().expect("no field"))
        .await?;
    let mounted = |path: &str| mounts.contains_key(&format!("{path}/"));

    for name in CA_MOUNTS {
        let mount = ca_mount(name);
        if !mounted(&mount) {
            root.empty(|| {
                sys::EnableEngineRequest::builder()
                    .path(mount.as_str())
                    .engine_type("pki")
                    .config(
                        sys::EnableEngineDataConfigBuilder::default()
                            .max_lease_ttl("876000h")
                            .build()
                            .expect("every field is optional"),
                    )
                    .build()
                    .expect("every field is set")
            })
            .await?;
            report.changes.push(format!("mounted PKI at {mount}"));
        }
        let pem = match root_ca(root, &mount).await? {
            Some(pem) => pem,
            None => {
                let generate = || {
                    pki::GenerateRootRequest::builder()
                        .mount(mount.as_str())
                        .cert_type("internal")
                        .common_name(ca_common_name(name))
                        .ttl("876000h")
                        .key_type("ec")
                        .key_bits(256u64)
                        .build()
                        .expect("every field is set")
                };
                let generated = root.result(generate).await?;
                let pem = generated.map(|g| g.certificate).unwrap_or_default();
                if pem.trim().is_empty() {
                    return Err(root.unexpected_for(&generate(), "no certificate").into());
                }
                report.changes.push(format!("generated the root CA of {mount}"));
                pem
            }
        };
        let existing = pki_roles(root, &mount).await?;
        for spec in super::requests::ROLES.iter().filter(|r| r.ca == name) {
            let role = spec.role;
            if !existing.iter().any(|r| r == role) {
                root.empty(|| spec.set_role_request(&mount)).await?;
                report.changes.push(format!("created role {role} on {mount}"));
            }
        }
        if storage.get_ca(name).await?.as_deref() != Some(pem.as_str()) {
            storage.put_ca(name, &pem).await?;
            report.changes.push(format!("stored CA certificate ca/{name} in etcd"));
        }
    }

    if !mounted(SECRETS_MOUNT) {
        root.empty(|| {
            sys::EnableEngineRequest::builder()
                .path(SECRETS_MOUNT)
                .engine_type("kv")
                .options(HashMap::from([("version".to_string(), "1".to_string())]))
                .build()
                .expect("every field is set")
        })
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

    let current = root
        .result_opt(|| {
            sys::ReadPolicyRequest::builder()
                .name(POLICY_NAME)
                .build()
                .expect("every field is set")
        })
        .await?
        .map(|p| p.rules)
        .unwrap_or_default();
    if current.trim() != POLICY.trim() {
        root.empty(|| {
            sys::CreatePolicyRequest::builder()
                .name(POLICY_NAME)
                .policy(POLICY)
                .build()
                .expect("every field is set")
        })
        .await?;
        report.changes.push(format!("wrote policy {POLICY_NAME}"));
    }

    let auths = root
        .result(|| sys::ListAuthsRequest::builder().build().expect("no field"))
        .await?;
    if !auths.contains_key(&format!("{APPROLE_MOUNT}/")) {
        root.empty(|| {
            sys::EnableAuthRequest::builder()
                .path(APPROLE_MOUNT)
                .engine_type("approle")
                .build()
                .expect("every field is set")
        })
        .await?;
        report.changes.push("enabled the approle auth method".into());
    }
    // Listed, as the PKI roles: whether AppRole `cke` exists is all that is asked.
    let approles = root
        .result_opt(|| {
            approle::ListRolesRequest::builder()
                .mount(APPROLE_MOUNT)
                .build()
                .expect("every field is set")
        })
        .await?
        .map(|r| r.keys)
        .unwrap_or_default();
    if !approles.iter().any(|r| r == APPROLE) {
        root.empty(|| {
            approle::SetAppRoleRequest::builder()
                .mount(APPROLE_MOUNT)
                .role_name(APPROLE)
                .token_policies(vec![POLICY_NAME.to_string()])
                .token_period("1h")
                .secret_id_ttl("0")
                .token_ttl("0")
                .build()
                .expect("every field is set")
        })
        .await?;
        report
            .changes
            .push("created AppRole cke (periodic token, policy cke)".into());
    }
    let read_role_id = || {
        approle::ReadRoleIDRequest::builder()
            .mount(APPROLE_MOUNT)
            .role_name(APPROLE)
            .build()
            .expect("every field is set")
    };
    let role_id = root.result(read_role_id).await?.role_id;
    if role_id.is_empty() {
        return Err(root.unexpected_for(&read_role_id(), "no role_id").into());
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
        let secret_id = root
            .result(|| {
                approle::GenerateNewSecretIDRequest::builder()
                    .mount(APPROLE_MOUNT)
                    .role_name(APPROLE)
                    .build()
                    .expect("every field is set")
            })
            .await?
            .secret_id;
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
