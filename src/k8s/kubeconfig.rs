//! kubeconfig files as CKE writes them (`kubeconfig.go`, `op/k8s/config.go`): one cluster named after
//! the Kubernetes cluster, one user, context `default`. Components on a node reach the API servers
//! through rivers at `https://localhost:16443`; the kubelet's refers to files under
//! `/etc/kubernetes/pki`, the others embed the CA, certificate and key.

use base64::Engine;
use serde_json::{json, Value};

use crate::topology::{k8s_pki_path, LOCAL_API_SERVER_URL};

/// kube-controller-manager's user (its certificate's CN).
pub const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
/// kube-scheduler's user.
pub const SCHEDULER_USER: &str = "system:kube-scheduler";
/// kube-proxy's user.
pub const PROXY_USER: &str = "system:kube-proxy";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn render(cluster_name: &str, user: &str, cluster: Value, auth: Value) -> String {
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": cluster}],
        "users": [{"name": user, "user": auth}],
        "contexts": [{"name": "default", "context": {"cluster": cluster_name, "user": user}}],
        "current-context": "default",
        "preferences": {},
    });
    serde_yaml::to_string(&doc).expect("kubeconfig renders")
}

/// A kubeconfig with embedded PEM data for `user` against `server` (CKE `UserKubeconfig`; what
/// `ckecli kubernetes issue` prints).
pub fn embedded(cluster: &str, user: &str, ca_pem: &str, cert_pem: &str, key_pem: &str, server: &str) -> String {
    render(
        cluster,
        user,
        json!({"server": server, "certificate-authority-data": b64(ca_pem)}),
        json!({"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)}),
    )
}

/// A component's kubeconfig (controller-manager, scheduler, kube-proxy: CKE `Kubeconfig`): embedded
/// data, server `https://localhost:16443`.
pub fn component(cluster: &str, user: &str, ca_pem: &str, cert_pem: &str, key_pem: &str) -> String {
    embedded(cluster, user, ca_pem, cert_pem, key_pem, LOCAL_API_SERVER_URL)
}

/// The kubelet's kubeconfig (CKE `kubeletKubeconfig`): user `system:node:<nodename>`, files
/// `pki/ca.crt`, `pki/kubelet.crt`, `pki/kubelet.key`, server `https://localhost:16443`.
pub fn kubelet(cluster: &str, nodename: &str) -> String {
    render(
        cluster,
        &format!("system:node:{nodename}"),
        json!({"server": LOCAL_API_SERVER_URL, "certificate-authority": k8s_pki_path("ca.crt")}),
        json!({"client-certificate": k8s_pki_path("kubelet.crt"), "client-key": k8s_pki_path("kubelet.key")}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubelet_kubeconfig_refers_to_files() {
        assert_eq!(
            kubelet("mycluster", "node3"),
            "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority: /etc/kubernetes/pki/ca.crt\n    \
             server: https://localhost:16443\n  name: mycluster\ncontexts:\n- context:\n    cluster: mycluster\n    \
             user: system:node:node3\n  name: default\ncurrent-context: default\nkind: Config\npreferences: {}\n\
             users:\n- name: system:node:node3\n  user:\n    client-certificate: /etc/kubernetes/pki/kubelet.crt\n    \
             client-key: /etc/kubernetes/pki/kubelet.key\n"
        );
    }

    #[test]
    fn component_kubeconfig_embeds_data() {
        let text = component("mycluster", SCHEDULER_USER, "CA\n", "CERT\n", "KEY\n");
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(v["current-context"], "default");
        assert_eq!(v["contexts"][0]["context"]["user"], "system:kube-scheduler");
        assert_eq!(v["contexts"][0]["context"]["cluster"], "mycluster");
        assert_eq!(v["clusters"][0]["name"], "mycluster");
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://localhost:16443");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            b64("CA\n").as_str()
        );
        assert_eq!(v["users"][0]["name"], "system:kube-scheduler");
        assert_eq!(v["users"][0]["user"]["client-certificate-data"], "Q0VSVAo=");
        assert_eq!(v["users"][0]["user"]["client-key-data"], "S0VZCg==");
        let admin = embedded("c", "cke:user:admin", "A", "B", "C", "https://10.0.0.1:6443");
        assert!(admin.contains("server: https://10.0.0.1:6443\n"), "{admin}");
    }
}
