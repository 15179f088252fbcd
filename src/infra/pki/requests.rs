//! The certificates cke issues, as pure [`IssueRequest`]s with CKE's names (CN, organization,
//! SANs). Operators hand them to a [`crate::infra::CertIssuer`]; unit tests check them directly.

use std::time::Duration;

use vaultrs::api::pki::requests::SetRoleRequest;

use super::IssueRequest;

/// The SANs of a node certificate: `localhost` and the host name (when it differs from the
/// address); the address and `127.0.0.1`.
pub fn node_sans(address: &str, hostname: &str) -> (Vec<String>, Vec<String>) {
    let mut alt = vec!["localhost".to_string()];
    if !hostname.is_empty() && hostname != address {
        alt.push(hostname.to_string());
    }
    (alt, vec![address.to_string(), "127.0.0.1".to_string()])
}

/// A node certificate from `ca` (CN = host name, else address).
fn node(ca: &str, address: &str, hostname: &str) -> IssueRequest {
    let (alt_names, ip_sans) = node_sans(address, hostname);
    let cn = if hostname.is_empty() { address } else { hostname };
    IssueRequest {
        ca: ca.into(),
        common_name: cn.into(),
        alt_names,
        ip_sans,
        ..Default::default()
    }
}

/// The managed etcd's server certificate for a node (CA `server`).
pub fn etcd_server(address: &str, hostname: &str) -> IssueRequest {
    node("server", address, hostname)
}

/// The managed etcd's peer certificate for a node (CA `etcd-peer`).
pub fn etcd_peer(address: &str, hostname: &str) -> IssueRequest {
    node("etcd-peer", address, hostname)
}

/// A client certificate of the managed etcd for `user` (CN = user, CA `etcd-client`); `ttl` `None`
/// gives a long-lived system certificate.
pub fn etcd_client(user: &str, ttl: Option<Duration>) -> IssueRequest {
    IssueRequest {
        ca: "etcd-client".into(),
        common_name: user.into(),
        ttl,
        ..Default::default()
    }
}

/// TTL of component certificates (the roles' TTL; 10 years, as CKE).
pub const SYSTEM_CERT_TTL: Duration = Duration::from_secs(87600 * 3600);

/// A Vault PKI role cke uses: CKE creates each on first issue with these options (`pki.go`
/// `issueCertificate` → `addRole`); `vault init` creates them all up front, and the issuer creates
/// a missing one the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleSpec {
    /// CA name (mount `cke/ca-<ca>`).
    pub ca: &'static str,
    /// Role name.
    pub role: &'static str,
    /// Default TTL.
    pub ttl: &'static str,
    /// Maximum TTL.
    pub max_ttl: &'static str,
    /// Organization (Kubernetes group) of every certificate of the role.
    pub organization: Option<&'static str>,
    /// Certificates may serve TLS.
    pub server_flag: bool,
    /// Certificates may authenticate TLS clients.
    pub client_flag: bool,
    /// Key usages, when not Vault's default.
    pub key_usage: Option<&'static str>,
    /// Vault keeps no copy of the issued certificates.
    pub no_store: bool,
}

impl RoleSpec {
    /// The request that creates the role on `mount`. Beyond CKE's options: keys are P-256 (cke
    /// signs requests made from EC keys) and any name, IP and localhost SAN is allowed.
    pub fn set_role_request(&self, mount: &str) -> SetRoleRequest {
        let mut b = SetRoleRequest::builder();
        b.mount(mount)
            .name(self.role)
            .ttl(self.ttl)
            .max_ttl(self.max_ttl)
            .allow_any_name(true)
            .enforce_hostnames(false)
            .allow_ip_sans(true)
            .allow_localhost(true)
            .allow_bare_domains(true)
            .allow_subdomains(true)
            .server_flag(self.server_flag)
            .client_flag(self.client_flag)
            .key_type("ec")
            .key_bits(256u64);
        if let Some(o) = self.organization {
            b.organization(vec![o.to_string()]);
        }
        if let Some(u) = self.key_usage {
            b.key_usage(u.split(',').map(str::to_string).collect::<Vec<_>>());
        }
        if self.no_store {
            b.no_store(true);
        }
        b.build().expect("mount and name are set")
    }
}

const fn role(ca: &'static str, role: &'static str, ttl: &'static str, max_ttl: &'static str) -> RoleSpec {
    RoleSpec {
        ca,
        role,
        ttl,
        max_ttl,
        organization: None,
        server_flag: true,
        client_flag: true,
        key_usage: None,
        no_store: false,
    }
}

const fn group_role(name: &'static str, organization: &'static str) -> RoleSpec {
    RoleSpec {
        organization: Some(organization),
        ..role("kubernetes", name, "87600h", "87600h")
    }
}

/// Every role cke uses, by CA (CKE `pki.go`). The `admin` roles (short-lived user certificates)
/// keep cke-rs's TTLs (2h, max 8760h; CKE: etcd 24h, Kubernetes a one-time role per group), and
/// user groups get a role each, made on demand (see [`super::Issuer::issue`]).
pub const ROLES: &[RoleSpec] = &[
    RoleSpec {
        client_flag: false,
        ..role("server", "system", "87600h", "87600h")
    },
    role("etcd-peer", "system", "87600h", "87600h"),
    RoleSpec {
        server_flag: false,
        ..role("etcd-client", "system", "87600h", "87600h")
    },
    RoleSpec {
        server_flag: false,
        ..role("etcd-client", "admin", "2h", "8760h")
    },
    role("kubernetes", "system", "87600h", "87600h"),
    role("kubernetes", "admin", "2h", "8760h"),
    group_role("kube-controller-manager", "system:kube-controller-manager"),
    group_role("kube-scheduler", "system:kube-scheduler"),
    group_role("kubelet", "system:nodes"),
    group_role("kube-proxy", "system:node-proxier"),
    RoleSpec {
        server_flag: false,
        client_flag: false,
        key_usage: Some("DigitalSignature,CertSign"),
        no_store: true,
        ..role("kubernetes", "service-account", "87600h", "87600h")
    },
    RoleSpec {
        server_flag: false,
        ..role("kubernetes-aggregation", "system", "87600h", "87600h")
    },
    RoleSpec {
        client_flag: false,
        ..role("kubernetes-webhook", "system", "175200h", "175200h")
    },
];

/// The role `role` of CA `ca`, if cke uses it.
pub fn role_spec(ca: &str, role: &str) -> Option<&'static RoleSpec> {
    ROLES.iter().find(|r| r.ca == ca && r.role == role)
}

fn with_role(ca: &str, role: &str, common_name: &str) -> IssueRequest {
    debug_assert!(role_spec(ca, role).is_some(), "{ca}/{role}");
    IssueRequest {
        ca: ca.into(),
        common_name: common_name.into(),
        role: Some(role.into()),
        ..Default::default()
    }
}

/// kube-apiserver's serving certificate, also its client certificate towards kubelets and the
/// serving certificate of the controller-manager's and scheduler's health ports (CA `kubernetes`,
/// role `system`, CN `kubernetes`): DNS `localhost` and the `kubernetes` Service's names, IP
/// `127.0.0.1`, the node and `service_ip` (the Service's ClusterIP, see
/// [`crate::k8s::params::kubernetes_service_ip`]).
pub fn kube_apiserver(address: &str, service_ip: &str, cluster_domain: &str) -> IssueRequest {
    IssueRequest {
        alt_names: vec![
            "localhost".into(),
            "kubernetes".into(),
            "kubernetes.default".into(),
            "kubernetes.default.svc".into(),
            format!("kubernetes.default.svc.{cluster_domain}"),
        ],
        ip_sans: vec!["127.0.0.1".into(), address.into(), service_ip.into()],
        ..with_role("kubernetes", "system", "kubernetes")
    }
}

/// kube-apiserver's client certificate of the managed etcd (CA `etcd-client`, CN `kube-apiserver`).
pub fn kube_apiserver_etcd_client() -> IssueRequest {
    with_role("etcd-client", "system", "kube-apiserver")
}

/// kube-apiserver's client certificate towards aggregated API servers (CA `kubernetes-aggregation`,
/// CN `front-proxy-client`).
pub fn aggregation_client() -> IssueRequest {
    with_role(
        "kubernetes-aggregation",
        "system",
        crate::topology::AGGREGATION_CLIENT_CN,
    )
}

/// kube-controller-manager's client certificate (role `kube-controller-manager`: CN and O
/// `system:kube-controller-manager`).
pub fn kube_controller_manager() -> IssueRequest {
    with_role(
        "kubernetes",
        "kube-controller-manager",
        "system:kube-controller-manager",
    )
}

/// kube-scheduler's client certificate (role `kube-scheduler`: CN and O `system:kube-scheduler`).
pub fn kube_scheduler() -> IssueRequest {
    with_role("kubernetes", "kube-scheduler", "system:kube-scheduler")
}

/// kube-proxy's client certificate (role `kube-proxy`: CN `system:kube-proxy`, O
/// `system:node-proxier`).
pub fn kube_proxy() -> IssueRequest {
    with_role("kubernetes", "kube-proxy", "system:kube-proxy")
}

/// A kubelet's certificate (role `kubelet`: CN `system:node:<nodename>`, O `system:nodes`): DNS
/// `localhost` and the node name when it is not the address, IP `127.0.0.1` and the address.
pub fn kubelet(address: &str, nodename: &str) -> IssueRequest {
    let mut alt_names = vec!["localhost".to_string()];
    if nodename != address {
        alt_names.push(nodename.into());
    }
    IssueRequest {
        alt_names,
        ip_sans: vec!["127.0.0.1".into(), address.into()],
        ..with_role("kubernetes", "kubelet", &format!("system:node:{nodename}"))
    }
}

/// The service-account token signing pair (role `service-account`: CN `service-account`, no
/// server or client use, key usage DigitalSignature and CertSign, not stored in Vault). Issued
/// once and kept in the management etcd.
pub fn service_account() -> IssueRequest {
    with_role("kubernetes", "service-account", "service-account")
}

/// The serving certificate of the admission webhook Service `namespace/name` (CA
/// `kubernetes-webhook`, CN `<namespace>/<name>`, DNS `name`, `name.namespace`,
/// `name.namespace.svc`; 20 years, server only).
pub fn webhook(namespace: &str, name: &str) -> IssueRequest {
    IssueRequest {
        alt_names: vec![
            name.into(),
            format!("{name}.{namespace}"),
            format!("{name}.{namespace}.svc"),
        ],
        ..with_role("kubernetes-webhook", "system", &format!("{namespace}/{name}"))
    }
}

/// A user's Kubernetes client certificate (CA `kubernetes`), e.g. the admin kubeconfig.
pub fn kube_user(user: &str, group: &str, ttl: Duration) -> IssueRequest {
    IssueRequest {
        ca: "kubernetes".into(),
        common_name: user.into(),
        ttl: Some(ttl),
        organization: (!group.is_empty()).then(|| group.to_string()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_name_the_node() {
        let r = etcd_server("10.0.0.1", "node1");
        assert_eq!(r.ca, "server");
        assert_eq!(r.common_name, "node1");
        assert_eq!(r.alt_names, ["localhost", "node1"]);
        assert_eq!(r.ip_sans, ["10.0.0.1", "127.0.0.1"]);
        let r = etcd_peer("10.0.0.2", "");
        assert_eq!((r.ca.as_str(), r.common_name.as_str()), ("etcd-peer", "10.0.0.2"));
        assert_eq!(r.alt_names, ["localhost"]);
        assert_eq!(kube_user("u", "", Duration::from_secs(1)).organization, None);
    }

    fn role_of(r: &IssueRequest) -> &'static RoleSpec {
        role_spec(&r.ca, r.role.as_deref().unwrap()).unwrap()
    }

    // Expected values from CKE pki.go (cybozu-go/cke @ d66a146).
    #[test]
    fn kubernetes_certificates_are_ckes() {
        let r = kube_apiserver("10.0.0.1", "10.68.0.1", "cluster.local");
        assert_eq!(
            (r.ca.as_str(), r.role.as_deref(), r.common_name.as_str()),
            ("kubernetes", Some("system"), "kubernetes")
        );
        assert_eq!(
            r.alt_names,
            [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"
            ]
        );
        assert_eq!(r.ip_sans, ["127.0.0.1", "10.0.0.1", "10.68.0.1"]);
        assert_eq!(r.ttl, None);

        let r = kube_apiserver_etcd_client();
        assert_eq!(
            (r.ca.as_str(), r.common_name.as_str()),
            ("etcd-client", "kube-apiserver")
        );
        assert!(!role_of(&r).server_flag && role_of(&r).client_flag);

        let r = aggregation_client();
        assert_eq!(
            (r.ca.as_str(), r.common_name.as_str()),
            ("kubernetes-aggregation", "front-proxy-client")
        );
        assert!(!role_of(&r).server_flag);

        for (r, cn, o) in [
            (
                kube_controller_manager(),
                "system:kube-controller-manager",
                "system:kube-controller-manager",
            ),
            (kube_scheduler(), "system:kube-scheduler", "system:kube-scheduler"),
            (kube_proxy(), "system:kube-proxy", "system:node-proxier"),
            (kubelet("10.0.0.3", "node3"), "system:node:node3", "system:nodes"),
        ] {
            assert_eq!(r.ca, "kubernetes");
            assert_eq!(r.common_name, cn);
            assert_eq!(role_of(&r).organization, Some(o), "{cn}");
            assert_eq!(role_of(&r).ttl, "87600h");
        }
        let r = kubelet("10.0.0.3", "node3");
        assert_eq!(r.alt_names, ["localhost", "node3"]);
        assert_eq!(r.ip_sans, ["127.0.0.1", "10.0.0.3"]);
        assert_eq!(kubelet("10.0.0.3", "10.0.0.3").alt_names, ["localhost"]);

        let r = service_account();
        let spec = role_of(&r);
        assert_eq!(r.common_name, "service-account");
        assert!(!spec.server_flag && !spec.client_flag && spec.no_store);
        assert_eq!(spec.key_usage, Some("DigitalSignature,CertSign"));
        assert_eq!(
            spec.set_role_request("m").key_usage,
            Some(vec!["DigitalSignature".to_string(), "CertSign".to_string()])
        );

        let r = webhook("default", "webhook-service");
        assert_eq!(
            (r.ca.as_str(), r.common_name.as_str()),
            ("kubernetes-webhook", "default/webhook-service")
        );
        assert_eq!(
            r.alt_names,
            [
                "webhook-service",
                "webhook-service.default",
                "webhook-service.default.svc"
            ]
        );
        let spec = role_of(&r);
        assert!(spec.server_flag && !spec.client_flag);
        assert_eq!((spec.ttl, spec.max_ttl), ("175200h", "175200h"));
    }

    #[test]
    fn every_ca_has_a_system_role_and_roles_are_unique() {
        for ca in crate::storage::CA_NAMES {
            assert!(role_spec(ca, "system").is_some(), "{ca}");
        }
        for (i, a) in ROLES.iter().enumerate() {
            assert!(crate::storage::CA_NAMES.contains(&a.ca), "{}", a.ca);
            assert!(
                ROLES[i + 1..].iter().all(|b| (a.ca, a.role) != (b.ca, b.role)),
                "{}/{}",
                a.ca,
                a.role
            );
        }
        let v = role_spec("kubernetes", "kubelet")
            .unwrap()
            .set_role_request("cke/ca-kubernetes");
        assert_eq!((v.mount.as_str(), v.name.as_str()), ("cke/ca-kubernetes", "kubelet"));
        assert_eq!(v.organization, Some(vec!["system:nodes".to_string()]));
        assert_eq!(v.key_type.as_deref(), Some("ec"));
        assert_eq!(
            role_spec("server", "system")
                .unwrap()
                .set_role_request("cke/ca-server")
                .client_flag,
            Some(false)
        );
    }
}
