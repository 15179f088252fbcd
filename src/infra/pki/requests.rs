//! The certificates cke issues, as pure [`IssueRequest`]s with CKE's names (CN, organization,
//! SANs). Operators hand them to a [`crate::infra::CertIssuer`]; unit tests check them directly.

use std::time::Duration;

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

/// kube-apiserver's serving certificate (CA `server`), valid for the node, localhost and the
/// in-cluster names of the `kubernetes` Service.
pub fn kube_apiserver(address: &str, hostname: &str, service_ip: &str, cluster_domain: &str) -> IssueRequest {
    let (mut alt_names, mut ip_sans) = node_sans(address, hostname);
    for n in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        alt_names.push(n.into());
    }
    alt_names.push(format!("kubernetes.default.svc.{cluster_domain}"));
    if !service_ip.is_empty() {
        ip_sans.push(service_ip.into());
    }
    IssueRequest {
        ca: "server".into(),
        common_name: "kubernetes".into(),
        alt_names,
        ip_sans,
        ..Default::default()
    }
}

/// A kubelet's certificate: CN `system:node:<name>`, group `system:nodes` (CA `kubernetes`).
pub fn kubelet(address: &str, nodename: &str) -> IssueRequest {
    let (alt_names, ip_sans) = node_sans(address, nodename);
    IssueRequest {
        ca: "kubernetes".into(),
        common_name: format!("system:node:{nodename}"),
        alt_names,
        ip_sans,
        organization: Some("system:nodes".into()),
        ..Default::default()
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
        let r = kubelet("10.0.0.3", "10.0.0.3");
        assert_eq!(r.common_name, "system:node:10.0.0.3");
        assert_eq!(r.organization.as_deref(), Some("system:nodes"));
        let r = kube_apiserver("10.0.0.1", "", "10.68.0.1", "cluster.local");
        assert!(r
            .alt_names
            .contains(&"kubernetes.default.svc.cluster.local".to_string()));
        assert!(r.ip_sans.contains(&"10.68.0.1".to_string()));
        assert_eq!(kube_user("u", "", Duration::from_secs(1)).organization, None);
    }
}
