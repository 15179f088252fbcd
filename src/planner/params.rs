//! The container parameters cke computes for each component (the `builtin` half of the params label)
//! for the images it runs (names, ports and URLs are in [`crate::topology`]). Pure functions of the declaration, shared by the planner (to detect outdated
//! containers) and by the operators (to start them).

use crate::model::{Mount, Node, ServiceParams};

pub use crate::topology::*;

/// How a member starts: a new cluster, or joining an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialClusterState {
    /// `--initial-cluster-state=new` (bootstrap).
    New,
    /// `--initial-cluster-state=existing` (join).
    Existing,
}

/// etcd's built-in parameters for `node`. `initial` is the initial cluster (node addresses, this one
/// included) and its state; it is `None` to start an already-initialised member. Arguments starting
/// with `--initial-` are ignored when deciding whether a member is outdated.
pub fn etcd_builtin_params(
    node: &Node,
    volume: &str,
    initial: Option<(&[String], InitialClusterState)>,
) -> ServiceParams {
    let a = &node.address;
    let mut args = vec![
        format!("--name={a}"),
        format!("--data-dir={ETCD_DATA_DIR}"),
        format!("--listen-peer-urls=https://0.0.0.0:{ETCD_PEER_PORT}"),
        format!("--listen-client-urls=https://0.0.0.0:{ETCD_CLIENT_PORT}"),
        format!("--initial-advertise-peer-urls={}", etcd_peer_url(a)),
        format!("--advertise-client-urls={}", etcd_client_url(a)),
        format!("--cert-file={ETCD_PKI_DIR}/server.crt"),
        format!("--key-file={ETCD_PKI_DIR}/server.key"),
        format!("--client-cert-auth=true"),
        format!("--trusted-ca-file={ETCD_PKI_DIR}/ca-client.crt"),
        format!("--peer-cert-file={ETCD_PKI_DIR}/peer.crt"),
        format!("--peer-key-file={ETCD_PKI_DIR}/peer.key"),
        format!("--peer-client-cert-auth=true"),
        format!("--peer-trusted-ca-file={ETCD_PKI_DIR}/ca-peer.crt"),
        // The JSON gateway dials the server with the server certificate, which the client CA does not
        // sign: it never works here and logs a refused connection every few seconds.
        "--enable-grpc-gateway=false".into(),
        // etcd compacts its keyspace itself, every hour: the kube-apiserver user has no root role
        // (CKE grants it one so that kube-apiserver compacts), and compaction needs it.
        "--auto-compaction-mode=periodic".into(),
        "--auto-compaction-retention=1".into(),
    ];
    if let Some((members, state)) = initial {
        let cluster: Vec<String> = members.iter().map(|m| format!("{m}={}", etcd_peer_url(m))).collect();
        args.push(format!("--initial-cluster={}", cluster.join(",")));
        args.push(format!("--initial-cluster-token={ETCD_CLUSTER_TOKEN}"));
        args.push(format!(
            "--initial-cluster-state={}",
            match state {
                InitialClusterState::New => "new",
                InitialClusterState::Existing => "existing",
            }
        ));
    }
    ServiceParams {
        extra_args: args,
        extra_binds: vec![
            Mount {
                source: volume.into(),
                destination: ETCD_DATA_DIR.into(),
                ..Default::default()
            },
            Mount {
                source: ETCD_PKI_DIR.into(),
                destination: ETCD_PKI_DIR.into(),
                read_only: true,
                ..Default::default()
            },
        ],
        extra_env: Default::default(),
    }
}

/// Drops `--initial-*` arguments, which only matter the first time a member starts.
pub fn without_initial_args(p: &ServiceParams) -> ServiceParams {
    ServiceParams {
        extra_args: p
            .extra_args
            .iter()
            .filter(|a| !a.starts_with("--initial-"))
            .cloned()
            .collect(),
        ..p.clone()
    }
}

/// rivers' built-in parameters: listen locally, forward to every control-plane node's `port`.
pub fn rivers_builtin_params(control_planes: &[&Node], upstream_port: u16, listen_port: u16) -> ServiceParams {
    let upstreams: Vec<String> = control_planes
        .iter()
        .map(|n| format!("{}:{upstream_port}", host_port_part(&n.address)))
        .collect();
    ServiceParams {
        extra_args: vec![
            format!("--listen=127.0.0.1:{listen_port}"),
            format!("--upstreams={}", upstreams.join(",")),
            "--shutdown-timeout=10s".into(),
        ],
        extra_binds: vec![],
        extra_env: Default::default(),
    }
}
