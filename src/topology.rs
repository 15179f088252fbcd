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
}

impl Default for Images {
    fn default() -> Self {
        Images {
            etcd: "localhost/cke-etcd:latest".into(),
            tools: "localhost/cke-tools:latest".into(),
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
