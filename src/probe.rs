//! Probing the nodes over SSH: per node, whether SSH works (and why not), the state of each cke
//! container (running, image, params label) and the etcd volumes. Nodes are probed in parallel with
//! bounded concurrency; an unreachable node costs at most the dial timeout.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};

use crate::infra::agent::container::{ContainerEngine, ABSENT_MESSAGES};
use crate::infra::agent::ssh::SshPool;
use crate::infra::agent::{shell_quote, AgentError, Runner};

use crate::infra::EtcdConnector;
use crate::model::{Cluster, ClusterStatus, EtcdClusterStatus, EtcdNodeStatus, Node, NodeStatus};
use crate::topology::{
    etcd_client_url, ETCD_ADDED_MEMBER_VOLUME, ETCD_CONTAINER, ETCD_RIVERS_CONTAINER, RIVERS_CONTAINER,
};

/// Probes one node. Never fails: problems become `ssh_connected: false` with the reason. A node that
/// does not answer within twice the dial timeout (a partition with a pooled connection still open) is
/// reported unreachable and its connection dropped.
pub async fn probe_node(pool: &Arc<SshPool>, engine: &ContainerEngine, node: &Node, etcd_volume: &str) -> NodeStatus {
    let limit = pool.config().dial_timeout * 2;
    match tokio::time::timeout(limit, probe_node_inner(pool, engine, node, etcd_volume)).await {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => NodeStatus {
            ssh_connected: false,
            ssh_error: e.to_string(),
            ..Default::default()
        },
        Err(_) => {
            pool.forget(&node.address, &node.user).await;
            NodeStatus {
                ssh_connected: false,
                ssh_error: format!("no answer within {limit:?}"),
                ..Default::default()
            }
        }
    }
}

async fn probe_node_inner(
    pool: &Arc<SshPool>,
    engine: &ContainerEngine,
    node: &Node,
    etcd_volume: &str,
) -> Result<NodeStatus, AgentError> {
    let agent = pool.node(&node.address, &node.user);
    // One round trip per node: the containers' inspect output, a separator, then present volumes.
    for v in [etcd_volume, ETCD_ADDED_MEMBER_VOLUME] {
        if !v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) || v.is_empty() {
            return Err(AgentError::Invalid {
                what: "volume name".into(),
                reason: format!("{v:?}"),
            });
        }
    }
    let names = [ETCD_CONTAINER, RIVERS_CONTAINER, ETCD_RIVERS_CONTAINER];
    let cli = shell_quote(engine.cli());
    // "No such container/volume" means absent; any other failure of the engine (a busy lock, a
    // restarting daemon) makes the whole probe of this node fail, so that the planner never reads
    // a running member as stopped or a volume as missing. `$t` holds the engine's error output.
    let mut script: Vec<String> = vec![r#"t=$(mktemp) || exit 1; trap 'rm -f "$t"' EXIT"#.into()];
    script.extend(names.iter().map(|n| {
        engine_step(
            &format!("{cli} container inspect {n}"),
            r#"printf '%s\n' "$out""#,
            "echo '[]'",
        )
    }));
    script.push(format!("echo {SEPARATOR}"));
    for v in [etcd_volume, ETCD_ADDED_MEMBER_VOLUME] {
        let q = shell_quote(v);
        script.push(engine_step(
            &format!("{cli} volume inspect {q}"),
            &format!("echo {q}"),
            "true",
        ));
    }
    script.push("true".into());
    let out = agent
        .check(&script.join("; "), None, pool.config().dial_timeout * 2)
        .await?;
    let text = out.stdout_str();
    if let Some((_, msg)) = text.split_once(ENGINE_ERROR) {
        return Err(AgentError::Output {
            address: node.address.clone(),
            command: "probe".into(),
            reason: format!("the container engine failed: {}", msg.trim()),
        });
    }
    let (inspect, volumes) = text.split_once(SEPARATOR).ok_or_else(|| AgentError::Output {
        address: node.address.clone(),
        command: "probe".into(),
        reason: "no separator in the output".into(),
    })?;
    let mut containers = engine.parse_inspect(&node.address, inspect.as_bytes(), &names)?;
    let volumes: Vec<&str> = volumes.lines().map(str::trim).collect();
    Ok(NodeStatus {
        ssh_connected: true,
        ssh_error: String::new(),
        etcd: EtcdNodeStatus {
            service: containers.remove(ETCD_CONTAINER).unwrap_or_default(),
            has_data: volumes.contains(&etcd_volume),
            is_added_member: volumes.contains(&ETCD_ADDED_MEMBER_VOLUME),
        },
        rivers: containers.remove(RIVERS_CONTAINER).unwrap_or_default(),
        etcd_rivers: containers.remove(ETCD_RIVERS_CONTAINER).unwrap_or_default(),
        ..Default::default()
    })
}

const SEPARATOR: &str = "----cke-probe-volumes----";
const ENGINE_ERROR: &str = "----cke-probe-engine-error----";

/// A probe step: run `cmd` once (stdout in `$out`, stderr in the file `$t`); on success
/// `on_success`; when the engine says the object does not exist, `on_absent`; on any other failure,
/// print the error marker and the engine's message and stop.
fn engine_step(cmd: &str, on_success: &str, on_absent: &str) -> String {
    let absent: Vec<String> = ABSENT_MESSAGES.iter().map(|m| format!("*'{m}'*")).collect();
    format!(
        "if out=$({cmd} 2>\"$t\"); then {on_success}; else err=$(cat \"$t\"); case \"$err\" in \
         {absent}) {on_absent} ;; \
         *) echo {ENGINE_ERROR}; printf '%s\\n' \"$err\"; exit 0 ;; esac; fi",
        absent = absent.join("|")
    )
}

/// Probes every declared node, at most `concurrency` at once.
pub async fn probe_nodes(
    pool: &Arc<SshPool>,
    engine: &ContainerEngine,
    cluster: &Cluster,
    concurrency: usize,
) -> BTreeMap<String, NodeStatus> {
    let volume = cluster.options.etcd.volume().to_string();
    let mut futures = Vec::new();
    for n in cluster.nodes.iter().cloned() {
        let volume = volume.clone();
        futures.push(async move {
            let st = probe_node(pool, engine, &n, &volume).await;
            (n.address, st)
        });
    }
    stream::iter(futures)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// The real prober: the nodes over SSH, the managed etcd with its root credentials.
pub struct SshProber {
    pool: Arc<SshPool>,
    engine: ContainerEngine,
    etcd: Arc<dyn EtcdConnector>,
    concurrency: usize,
}

impl SshProber {
    /// A prober reaching the nodes through `pool` and the managed etcd through `etcd`.
    pub fn new(pool: Arc<SshPool>, engine: ContainerEngine, etcd: Arc<dyn EtcdConnector>, concurrency: usize) -> Self {
        SshProber {
            pool,
            engine,
            etcd,
            concurrency,
        }
    }

    /// The managed etcd through the control-plane nodes and any other node running etcd (a member
    /// on a node that is no longer control plane still answers for the cluster). Unknown (empty)
    /// when it cannot be reached; the planner then does nothing that needs it.
    async fn etcd_status(&self, cluster: &Cluster, nodes: &BTreeMap<String, NodeStatus>) -> EtcdClusterStatus {
        let endpoints: Vec<String> = cluster
            .nodes
            .iter()
            .filter(|n| n.control_plane || nodes.get(&n.address).is_some_and(|s| s.etcd.service.running))
            .map(|n| etcd_client_url(&n.address))
            .collect();
        let etcd = match self.etcd.connect(&endpoints, &[]).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = crate::error::error_chain(&e), "cannot reach the managed etcd");
                return Default::default();
            }
        };
        etcd.cluster_status().await.unwrap_or_default()
    }
}

#[async_trait]
impl Prober for SshProber {
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus {
        let nodes = probe_nodes(&self.pool, &self.engine, cluster, self.concurrency).await;
        let etcd = self.etcd_status(cluster, &nodes).await;
        ClusterStatus {
            nodes,
            etcd,
            ..Default::default()
        }
    }
}

/// Gathers the status the planner needs. The SSH-based implementation lives with the node agent.
#[async_trait]
pub trait Prober: Send + Sync {
    /// Probes every declared node and the managed etcd.
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus;
}

/// A prober for a daemon without a node agent: every node is reported unreachable, with the reason,
/// so the planner acts on nothing it cannot reach.
pub struct NoAgentProber;

#[async_trait]
impl Prober for NoAgentProber {
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus {
        let mut st = ClusterStatus::default();
        for n in &cluster.nodes {
            st.nodes.insert(
                n.address.clone(),
                crate::model::NodeStatus {
                    ssh_error: "no node agent is configured".into(),
                    ..Default::default()
                },
            );
        }
        st
    }
}
