//! Vault (or OpenBao) for cke-rs through vaultrs: a thin client layer with AppRole login,
//! background token renewal and re-login when the token is revoked or expires; `vault init` (PKI
//! mounts, roles, KV, policy, AppRole); certificate issuance; and the secrets kept in KV v1
//! (`cke/secrets`: SSH keys, Kubernetes encryption keys). Layout compatible with CKE.
//!
//! It does not decide what to issue or when: operators do.

mod client;
mod init;
mod issue;
pub mod requests;
pub mod secrets;

pub use client::{VaultClient, VaultError};
pub use init::{vault_init, InitError, InitReport, CA_MOUNTS, SECRETS_MOUNT};
pub use issue::{IssueRequest, IssuedCert, Issuer, USER_CERT_TTL};

/// The PKI mount of a CA name (`server` → `cke/ca-server`).
pub fn ca_mount(name: &str) -> String {
    format!("cke/ca-{name}")
}
