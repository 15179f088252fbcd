//! Where things are on a node and how they are reached: ports, container and volume names,
//! directories, URLs, and the images cke runs. Constants and pure functions only; every layer may
//! use them.

use serde::{Deserialize, Serialize};

/// Client port of the managed etcd.
pub const ETCD_CLIENT_PORT: u16 = 2379;
/// Peer port of the managed etcd.
pub const ETCD_PEER_PORT: u16 = 2380;
/// Port kube-apiserver listens on.
pub const API_SERVER_PORT: u16 = 6443;
/// Local port of `rivers` (in front of the API servers).
pub const RIVERS_LISTEN_PORT: u16 = 16443;
/// Local port of `etcd-rivers` (in front of the etcd members).
pub const ETCD_RIVERS_LISTEN_PORT: u16 = 12379;

/// Container name of the managed etcd.
pub const ETCD_CONTAINER: &str = "etcd";
/// Container name of rivers.
pub const RIVERS_CONTAINER: &str = "rivers";
/// Container name of etcd-rivers.
pub const ETCD_RIVERS_CONTAINER: &str = "etcd-rivers";
/// Volume whose existence marks a member as bootstrapped or fully joined (CKE's name).
pub const ETCD_ADDED_MEMBER_VOLUME: &str = "etcd-added-member";
/// Where etcd keeps its data inside the container.
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
/// Host directory holding the etcd server and peer certificates.
pub const ETCD_PKI_DIR: &str = "/etc/etcd/pki";
/// Initial cluster token of the managed etcd.
pub const ETCD_CLUSTER_TOKEN: &str = "cke";

/// The images cke runs. Defaults name locally built images; production sets real ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Images {
    /// The managed etcd.
    pub etcd: String,
    /// rivers (and other tools).
    pub tools: String,
    /// Kubernetes (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy);
    /// its tag gives the Kubernetes version, and so the version set (`model::kube_version`).
    #[serde(default = "default_kubernetes_image")]
    pub kubernetes: String,
    /// CoreDNS, the cluster DNS Deployment `kube-system/cluster-dns` (CKE `CoreDNSImage`).
    #[serde(default = "default_coredns_image")]
    pub coredns: String,
    /// unbound, the node DNS DaemonSet `kube-system/node-dns` and its reload sidecar (CKE
    /// `UnboundImage`).
    #[serde(default = "default_unbound_image")]
    pub unbound: String,
    /// unbound_exporter, the node DNS DaemonSet's metrics sidecar (CKE `UnboundExporterImage`).
    #[serde(default = "default_unbound_exporter_image")]
    pub unbound_exporter: String,
}

fn default_kubernetes_image() -> String {
    DEFAULT_KUBERNETES_IMAGE.into()
}

fn default_coredns_image() -> String {
    DEFAULT_COREDNS_IMAGE.into()
}

fn default_unbound_image() -> String {
    DEFAULT_UNBOUND_IMAGE.into()
}

fn default_unbound_exporter_image() -> String {
    DEFAULT_UNBOUND_EXPORTER_IMAGE.into()
}

/// The default CoreDNS image: CKE's (`images.go`). CoreDNS has no Debian package and no registry is
/// reachable from the test bed, so its pods do not run there; the objects are still CKE's.
pub const DEFAULT_COREDNS_IMAGE: &str = "ghcr.io/cybozu/coredns:1.14.2.1";
/// The default unbound image: the test bed's local image of Debian's unbound
/// (`scripts/build-k8s-images.sh`; the tag is the package's upstream version).
pub const DEFAULT_UNBOUND_IMAGE: &str = "localhost/cke-unbound:1.17.1";
/// The default unbound_exporter image: the test bed's stand-in (`scripts/build-k8s-images.sh`), which
/// serves `unbound_up` on the exporter's port; not the real exporter.
pub const DEFAULT_UNBOUND_EXPORTER_IMAGE: &str = "localhost/cke-unbound-exporter:standin";

/// The default Kubernetes image: the test bed's local build of 1.20.2 (`scripts/build-k8s.sh`).
pub const DEFAULT_KUBERNETES_IMAGE: &str = "localhost/cke-kubernetes:1.20.2";

impl Default for Images {
    fn default() -> Self {
        Images {
            etcd: "localhost/cke-etcd:latest".into(),
            tools: "localhost/cke-tools:latest".into(),
            kubernetes: DEFAULT_KUBERNETES_IMAGE.into(),
            coredns: DEFAULT_COREDNS_IMAGE.into(),
            unbound: DEFAULT_UNBOUND_IMAGE.into(),
            unbound_exporter: DEFAULT_UNBOUND_EXPORTER_IMAGE.into(),
        }
    }
}

/// The peer URL of a member on this node.
pub fn etcd_peer_url(address: &str) -> String {
    format!("https://{}:{ETCD_PEER_PORT}", host_port_part(address))
}

/// The client URL of a member on this node.
pub fn etcd_client_url(address: &str) -> String {
    format!("https://{}:{ETCD_CLIENT_PORT}", host_port_part(address))
}

/// An address as the host part of a URL or `host:port` (IPv6 in brackets).
pub fn host_port_part(address: &str) -> String {
    if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

/// Host directory of the Kubernetes certificates and keys (CKE `op/constants.go`).
pub const K8S_PKI_DIR: &str = "/etc/kubernetes/pki";
/// Host directory of every Kubernetes file cke writes (bound read-only into the components).
pub const K8S_CONFIG_DIR: &str = "/etc/kubernetes";
/// Container name of kube-apiserver.
pub const KUBE_APISERVER_CONTAINER: &str = "kube-apiserver";
/// Container name of kube-controller-manager.
pub const KUBE_CONTROLLER_MANAGER_CONTAINER: &str = "kube-controller-manager";
/// Container name of kube-scheduler.
pub const KUBE_SCHEDULER_CONTAINER: &str = "kube-scheduler";
/// Container name of kubelet.
pub const KUBELET_CONTAINER: &str = "kubelet";
/// Container name of kube-proxy.
pub const KUBE_PROXY_CONTAINER: &str = "kube-proxy";
/// kubelet's health port (`/healthz`, `healthzBindAddress` 0.0.0.0).
pub const KUBELET_HEALTHZ_PORT: u16 = 10248;
/// kube-proxy's metrics port; CKE probes its `/healthz` (`op/status.go`).
pub const KUBE_PROXY_METRICS_PORT: u16 = 10249;
/// kube-controller-manager's secure port (`/healthz`).
pub const KUBE_CONTROLLER_MANAGER_PORT: u16 = 10257;
/// kube-scheduler's secure port (`/healthz`).
pub const KUBE_SCHEDULER_PORT: u16 = 10259;
/// The API server URL local clients use: rivers on this node, in front of every API server.
pub const LOCAL_API_SERVER_URL: &str = "https://localhost:16443";
/// Directory of the apiserver's encryption config and audit policies (mode 700).
pub const APISERVER_CONFIG_DIR: &str = "/etc/kubernetes/apiserver";
/// The apiserver's `EncryptionConfiguration`.
pub const ENCRYPTION_CONFIG_PATH: &str = "/etc/kubernetes/apiserver/encryption.yml";
/// kube-controller-manager's kubeconfig.
pub const CONTROLLER_MANAGER_KUBECONFIG_PATH: &str = "/etc/kubernetes/controller-manager/kubeconfig";
/// kube-scheduler's kubeconfig.
pub const SCHEDULER_KUBECONFIG_PATH: &str = "/etc/kubernetes/scheduler/kubeconfig";
/// kube-scheduler's `KubeSchedulerConfiguration`.
pub const SCHEDULER_CONFIG_PATH: &str = "/etc/kubernetes/scheduler/config.yml";
/// kube-proxy's kubeconfig.
pub const PROXY_KUBECONFIG_PATH: &str = "/etc/kubernetes/proxy/kubeconfig";
/// kube-proxy's `KubeProxyConfiguration`.
pub const PROXY_CONFIG_PATH: &str = "/etc/kubernetes/proxy/config.yml";
/// kubelet's kubeconfig.
pub const KUBELET_KUBECONFIG_PATH: &str = "/etc/kubernetes/kubelet/kubeconfig";
/// kubelet's `KubeletConfiguration`.
pub const KUBELET_CONFIG_PATH: &str = "/etc/kubernetes/kubelet/config.yml";
/// CNI plugin binaries.
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
/// CNI configuration files.
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// CNI state.
pub const CNI_VAR_DIR: &str = "/var/lib/cni";
/// kubelet's flex volume plugin directory (`volumePluginDir`).
pub const VOLUME_PLUGIN_DIR: &str = "/opt/volume/bin";
/// The cluster domain when the kubelet config sets none.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// A file under [`K8S_PKI_DIR`] (`ca.crt` → `/etc/kubernetes/pki/ca.crt`).
pub fn k8s_pki_path(name: &str) -> String {
    format!("{K8S_PKI_DIR}/{name}")
}

/// The aggregation layer's proxy client certificate CN, which kube-apiserver's
/// `--requestheader-allowed-names` names.
pub const AGGREGATION_CLIENT_CN: &str = "front-proxy-client";

#[cfg(test)]
mod tests {
    use super::*;

    /// A status published before the DNS images existed still reads, with the defaults.
    #[test]
    fn images_without_the_dns_images_read_with_defaults() {
        let old = r#"{"etcd":"e:1","tools":"t:1","kubernetes":"k:1.20.2"}"#;
        let i: Images = serde_json::from_str(old).unwrap();
        assert_eq!(i.etcd, "e:1");
        assert_eq!(i.kubernetes, "k:1.20.2");
        assert_eq!(i.coredns, DEFAULT_COREDNS_IMAGE);
        assert_eq!(i.unbound, DEFAULT_UNBOUND_IMAGE);
        assert_eq!(i.unbound_exporter, DEFAULT_UNBOUND_EXPORTER_IMAGE);
        let back: Images = serde_json::from_str(&serde_json::to_string(&i).unwrap()).unwrap();
        assert_eq!(back, i);
    }
}
