//! Certificate issuance from the PKI mounts. Keys are P-256, made here, PKCS#8 PEM; Vault signs a
//! request with the role's rules (`<mount>/sign/<role>`) and never sees a private key. System
//! certificates use the role's long TTL, user certificates a short one (2 h by default, as CKE).

use std::time::Duration;

use serde::Serialize;
use vaultrs::api::pki::requests::{SetRoleRequest, SignCertificateRequest, TidyRequest};

use super::{ca_mount, requests, VaultClient, VaultError};

/// A request to a PKI mount.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssueRequest {
    /// CA name (`server`, `etcd-peer`, ...).
    pub ca: String,
    /// Common name.
    pub common_name: String,
    /// DNS subject alternative names.
    pub alt_names: Vec<String>,
    /// IP subject alternative names.
    pub ip_sans: Vec<String>,
    /// TTL; the role's default when `None`.
    pub ttl: Option<Duration>,
    /// Organizations (Kubernetes groups); needs a role per group, created on demand. Ignored when
    /// `role` is set (the role carries its organization).
    pub organization: Option<String>,
    /// The Vault role to sign with, one of [`requests::ROLES`] for this CA (created when missing);
    /// `None` picks `system`, `admin` (a TTL on `kubernetes`/`etcd-client`) or a group role.
    pub role: Option<String>,
}

/// An issued certificate. Its `Debug` leaves the private key out, so that no log or error message
/// made with `{:?}` can carry it.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct IssuedCert {
    /// PEM certificate.
    pub certificate: String,
    /// PEM PKCS#8 private key.
    pub private_key: String,
    /// PEM certificate of the issuing CA.
    pub ca_certificate: String,
    /// Serial number.
    pub serial_number: String,
    /// Expiry, unix seconds.
    pub expiration: i64,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial_number", &self.serial_number)
            .field("expiration", &self.expiration)
            .field("private_key", &"(hidden)")
            .finish_non_exhaustive()
    }
}

/// Issues certificates for cke's components and users.
#[derive(Debug, Clone)]
pub struct Issuer {
    client: VaultClient,
}

/// The TTL of user certificates (admin kubeconfigs, etcd root).
pub const USER_CERT_TTL: Duration = Duration::from_secs(2 * 3600);

fn group_role(group: &str) -> String {
    let hex: String = group.bytes().map(|b| format!("{b:02x}")).collect();
    format!("group-{hex}")
}

/// A new P-256 key (PKCS#8 PEM) and a certificate request for `req`'s common name and SANs.
fn make_csr(req: &IssueRequest) -> Result<(String, String), String> {
    use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| format!("generating a key: {e}"))?;
    let sans: Vec<String> = req.alt_names.iter().chain(&req.ip_sans).cloned().collect();
    let mut params = CertificateParams::new(sans).map_err(|e| format!("subject alternative names: {e}"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, req.common_name.as_str());
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(|e| format!("making the certificate request: {e}"))?;
    Ok((key.serialize_pem(), csr))
}

impl Issuer {
    /// An issuer over a logged-in client.
    pub fn new(client: VaultClient) -> Self {
        Issuer { client }
    }

    /// The Vault client it issues through.
    pub fn client(&self) -> &VaultClient {
        &self.client
    }

    /// Creates role `role` on `mount` with `set` unless it exists (as CKE's `addRole`).
    async fn ensure_role(&self, mount: &str, role: &str, set: impl Fn() -> SetRoleRequest) -> Result<(), VaultError> {
        if !super::init::pki_roles(&self.client, mount)
            .await?
            .iter()
            .any(|r| r == role)
        {
            self.client.empty(set).await?;
        }
        Ok(())
    }

    /// Issues from `ca` with the `system` role (or a group role when `organization` is set).
    pub async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, VaultError> {
        let mount = ca_mount(&req.ca);
        let role = match (&req.role, &req.organization) {
            (Some(role), _) => {
                let Some(spec) = requests::role_spec(&req.ca, role) else {
                    return Err(self.client.unexpected_for(
                        &SetRoleRequest::builder()
                            .mount(mount.as_str())
                            .name(role.as_str())
                            .build()
                            .expect("mount and name are set"),
                        &format!("cke defines no role {role:?} for CA {:?}", req.ca),
                    ));
                };
                self.ensure_role(&mount, role, || spec.set_role_request(&mount)).await?;
                role.clone()
            }
            (None, None) if req.ttl.is_some() && matches!(req.ca.as_str(), "kubernetes" | "etcd-client") => {
                "admin".to_string()
            }
            (None, None) => "system".to_string(),
            (None, Some(group)) => {
                let role = group_role(group);
                self.ensure_role(&mount, &role, || {
                    SetRoleRequest::builder()
                        .mount(mount.as_str())
                        .name(role.as_str())
                        .ttl("2h")
                        .max_ttl("87600h")
                        .organization(vec![group.clone()])
                        .allow_any_name(true)
                        .enforce_hostnames(false)
                        .allow_ip_sans(true)
                        .allow_localhost(true)
                        .server_flag(true)
                        .client_flag(true)
                        .key_type("ec")
                        .key_bits(256u64)
                        .build()
                        .expect("mount and name are set")
                })
                .await?;
                role
            }
        };
        // The key pair is made here and never leaves this process but for the node it is for: Vault
        // signs a request (CSR) with the role's rules and TTL, and never sees the private key.
        let sign = |csr: &str| {
            let mut b = SignCertificateRequest::builder();
            b.mount(mount.as_str())
                .role(role.as_str())
                .csr(csr)
                .common_name(req.common_name.as_str())
                .exclude_cn_from_sans(true)
                .format("pem");
            // vaultrs types alt_names and ip_sans as Vault's comma-separated strings.
            if !req.alt_names.is_empty() {
                b.alt_names(req.alt_names.join(","));
            }
            if !req.ip_sans.is_empty() {
                b.ip_sans(req.ip_sans.join(","));
            }
            if let Some(ttl) = req.ttl {
                b.ttl(format!("{}s", ttl.as_secs()));
            }
            b.build().expect("mount and role are set")
        };
        let (key_pem, csr_pem) = make_csr(req).map_err(|reason| self.client.unexpected_for(&sign(""), &reason))?;
        let signed = self.client.result(|| sign(&csr_pem)).await?;
        for (field, value) in [("certificate", &signed.certificate), ("issuing_ca", &signed.issuing_ca)] {
            if value.trim().is_empty() {
                return Err(self.client.unexpected_for(&sign(&csr_pem), &format!("no {field}")));
            }
        }
        Ok(IssuedCert {
            certificate: signed.certificate,
            private_key: key_pem,
            ca_certificate: signed.issuing_ca,
            serial_number: signed.serial_number,
            expiration: i64::try_from(signed.expiration).unwrap_or(i64::MAX),
        })
    }

    /// The managed etcd's server certificate for a node (CA `server`).
    pub async fn issue_etcd_server(&self, address: &str, hostname: &str) -> Result<IssuedCert, VaultError> {
        self.issue(&requests::etcd_server(address, hostname)).await
    }

    /// The managed etcd's peer certificate for a node (CA `etcd-peer`).
    pub async fn issue_etcd_peer(&self, address: &str, hostname: &str) -> Result<IssuedCert, VaultError> {
        self.issue(&requests::etcd_peer(address, hostname)).await
    }

    /// A client certificate of the managed etcd for `user` (see [`requests::etcd_client`]).
    pub async fn issue_etcd_client(&self, user: &str, ttl: Option<Duration>) -> Result<IssuedCert, VaultError> {
        self.issue(&requests::etcd_client(user, ttl)).await
    }

    /// kube-apiserver's serving certificate (see [`requests::kube_apiserver`]).
    pub async fn issue_kube_apiserver(
        &self,
        address: &str,
        service_ip: &str,
        cluster_domain: &str,
    ) -> Result<IssuedCert, VaultError> {
        self.issue(&requests::kube_apiserver(address, service_ip, cluster_domain))
            .await
    }

    /// A kubelet's certificate (see [`requests::kubelet`]).
    pub async fn issue_kubelet(&self, address: &str, nodename: &str) -> Result<IssuedCert, VaultError> {
        self.issue(&requests::kubelet(address, nodename)).await
    }

    /// A user's Kubernetes client certificate (see [`requests::kube_user`]).
    pub async fn issue_kube_user(&self, user: &str, group: &str, ttl: Duration) -> Result<IssuedCert, VaultError> {
        self.issue(&requests::kube_user(user, group, ttl)).await
    }

    /// Removes expired certificates from every PKI mount (`tidy_cert_store`, `tidy_revoked_certs`).
    pub async fn tidy(&self) -> Result<(), VaultError> {
        for name in super::CA_MOUNTS {
            let mount = ca_mount(name);
            self.client
                .empty(|| {
                    TidyRequest::builder()
                        .mount(mount.as_str())
                        .tidy_cert_store(true)
                        .tidy_revoked_certs(true)
                        .safety_buffer("72h")
                        .build()
                        .expect("mount is set")
                })
                .await?;
        }
        Ok(())
    }

    /// Tidies every `interval` (the daemon's `--certs-gc-interval`). Runs until aborted.
    pub fn spawn_tidy(&self, interval: Duration) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                if let Err(e) = me.tidy().await {
                    tracing::warn!(error = %e, "tidying expired certificates failed");
                }
            }
        })
    }
}

#[cfg(test)]
mod secret_tests {
    use super::IssuedCert;

    #[test]
    fn debug_output_leaves_the_private_key_out() {
        let c = IssuedCert {
            certificate: "CERT".into(),
            private_key: "-----BEGIN PRIVATE KEY-----\nSECRETBODY".into(),
            ca_certificate: "CA".into(),
            serial_number: "01:02".into(),
            expiration: 1,
        };
        let text = format!("{c:?}");
        assert!(!text.contains("SECRETBODY") && text.contains("01:02"), "{text}");
    }
}
