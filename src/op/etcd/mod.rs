//! Operators of the managed etcd, one per file: bootstrap, start, wait, learner-first add (with
//! promotion and marking), remove, destroy, promote, mark, restart, and CKE's config upgrade. Each step is one recorded
//! command; a failed step cancels the operation and the next pass re-plans from what the probe then
//! sees. This module holds what they share: the container spec, the certificate files, the
//! endpoints for membership requests, and the etcd-specific commanders.

pub mod add_member;
pub mod bootstrap;
pub mod destroy_member;
pub mod mark_member;
pub mod promote_member;
pub mod remove_member;
pub mod restart;
pub mod start;
pub mod upgrade;
pub mod wait;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::common::{CertFiles, CreateVolume, FileContent, FileSpec, WriteFiles};
use super::{CommandError, Commander, Infra, OpContext, Outcome};
use crate::infra::agent::container::{Replace, RunSpec};
use crate::infra::pki::requests;
use crate::infra::EtcdAdmin;
use crate::model::{Cluster, ContainerParams, Node, RecordCommand};
use crate::planner::params::*;

/// The declared node, or a stand-in for one no longer declared.
fn node_of(cluster: &Cluster, address: &str) -> Node {
    cluster
        .node(address)
        .cloned()
        .unwrap_or(Node::new(address, "root", false))
}

/// The etcd container on `address`, with `--initial-*` flags when `initial` is given.
pub fn run_spec(ctx: OpContext<'_>, address: &str, initial: Option<(&[String], InitialClusterState)>) -> RunSpec {
    let node = node_of(ctx.cluster, address);
    let opts = &ctx.cluster.options.etcd;
    let builtin = etcd_builtin_params(&node, opts.volume(), initial);
    let extra = opts.service_params();
    let mut command = vec!["/usr/bin/etcd".to_string()];
    command.extend(builtin.extra_args.iter().cloned());
    command.extend(extra.extra_args.iter().cloned());
    let mut binds = builtin.extra_binds.clone();
    binds.extend(extra.extra_binds.iter().cloned());
    RunSpec {
        name: ETCD_CONTAINER.into(),
        image: ctx.images.etcd.clone(),
        command,
        binds,
        env: extra.extra_env.clone(),
        params: ContainerParams { builtin, extra },
        options: vec![],
        // Stopped, as CKE's restart does: the member hands its leadership over.
        replace: Replace::Stop,
        image_present: ctx
            .status
            .nodes
            .get(address)
            .is_some_and(|n| n.etcd.service.has_image(&ctx.images.etcd)),
    }
}

/// Writes the node's etcd server and peer certificates and the CAs it trusts to `/etc/etcd/pki`.
pub fn write_certs(ctx: OpContext<'_>, address: &str) -> Box<dyn Commander> {
    let node = node_of(ctx.cluster, address);
    let path = |f: &str| format!("{ETCD_PKI_DIR}/{f}");
    Box::new(WriteFiles {
        node: address.into(),
        name: "write-certificates",
        detail: "etcd server and peer".into(),
        certs: vec![
            CertFiles {
                request: requests::etcd_server(&node.address, &node.hostname),
                cert_path: path("server.crt"),
                key_path: path("server.key"),
            },
            CertFiles {
                request: requests::etcd_peer(&node.address, &node.hostname),
                cert_path: path("peer.crt"),
                key_path: path("peer.key"),
            },
        ],
        files: vec![
            FileSpec {
                path: path("ca-client.crt"),
                mode: 0o644,
                content: FileContent::Ca("etcd-client".into()),
            },
            FileSpec {
                path: path("ca-peer.crt"),
                mode: 0o644,
                content: FileContent::Ca("etcd-peer".into()),
            },
        ],
    })
}

/// Creates the added-member marker: this member was bootstrapped, or added and fully joined.
pub fn mark(address: &str) -> Box<dyn Commander> {
    CreateVolume::named("mark-member", address, ETCD_ADDED_MEMBER_VOLUME)
}

/// The control-plane nodes other than `except`: the endpoints for membership requests.
pub fn others(cluster: &Cluster, except: &str) -> Vec<String> {
    cluster
        .control_planes()
        .map(|n| n.address.clone())
        .filter(|a| a != except)
        .collect()
}

/// A root client of the managed etcd through `nodes`; when none of them answers (the control plane
/// moved to nodes that hold no member yet), through the other declared nodes that do.
pub async fn connect(infra: &Infra, cmd: &RecordCommand, nodes: &[String]) -> Result<Arc<dyn EtcdAdmin>, CommandError> {
    let preferred: Vec<String> = nodes.iter().map(|n| etcd_client_url(n)).collect();
    let fallback: Vec<String> = infra
        .cluster
        .nodes
        .iter()
        .filter(|n| !nodes.contains(&n.address))
        .map(|n| etcd_client_url(&n.address))
        .collect();
    infra
        .etcd
        .connect(&preferred, &fallback)
        .await
        .map_err(|e| CommandError::new(cmd, e))
}

fn record(name: &str, target: &str, detail: impl Into<String>) -> RecordCommand {
    RecordCommand {
        name: name.into(),
        target: target.into(),
        detail: detail.into(),
    }
}

/// Waits until a lease grant through `nodes` succeeds.
pub struct WaitHealthy {
    /// Endpoints (node addresses).
    pub nodes: Vec<String>,
    /// How long to wait.
    pub limit: Duration,
}

#[async_trait]
impl Commander for WaitHealthy {
    fn command(&self) -> RecordCommand {
        record("wait-etcd", &self.nodes.join(","), "healthy")
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        let etcd = connect(infra, &cmd, &self.nodes).await?;
        let start = tokio::time::Instant::now();
        loop {
            match etcd.health_revision().await {
                Ok(_) => return Ok(Outcome::Done),
                Err(e) if start.elapsed() >= self.limit => {
                    return Err(CommandError::with_retry(
                        &cmd,
                        crate::error::Retry::Soon,
                        WaitError {
                            what: "healthy",
                            limit: self.limit,
                            last: e,
                        },
                    ))
                }
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
}

/// A wait that ran out, with the last failure seen.
#[derive(Debug, thiserror::Error)]
#[error("not {what} after {limit:?}")]
pub struct WaitError {
    /// What was waited for.
    pub what: &'static str,
    /// How long.
    pub limit: Duration,
    /// The last failure.
    #[source]
    pub last: crate::infra::managed_etcd::ManagedEtcdError,
}

/// Waits until the member on `node` is in sync (its own read is as new as a health check's).
pub struct WaitInSync {
    /// The member's node.
    pub node: String,
    /// Endpoints for the health check (node addresses).
    pub nodes: Vec<String>,
    /// How long to wait.
    pub limit: Duration,
}

#[async_trait]
impl Commander for WaitInSync {
    fn command(&self) -> RecordCommand {
        record("wait-in-sync", &self.node, "")
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        let etcd = connect(infra, &cmd, &self.nodes).await?;
        let start = tokio::time::Instant::now();
        loop {
            if let Ok(st) = etcd.cluster_status().await {
                if st.in_sync_members.contains(&self.node) {
                    return Ok(Outcome::Done);
                }
            }
            if start.elapsed() >= self.limit {
                return Err(CommandError::soon(
                    &cmd,
                    format!("{} did not catch up within {:?}", self.node, self.limit),
                ));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// Removes member `id` of `node` through the other control planes.
pub fn remove_member(ctx: OpContext<'_>, node: &str, id: u64) -> Box<dyn Commander> {
    Box::new(RemoveMember {
        node: node.into(),
        peers: others(ctx.cluster, node),
        id,
        detail: format!("{id:x}"),
    })
}

/// Removes a member through the other control planes.
pub struct RemoveMember {
    /// The member's node.
    pub node: String,
    /// Endpoints (node addresses).
    pub peers: Vec<String>,
    /// Member id.
    pub id: u64,
    /// Shown in the record.
    pub detail: String,
}

#[async_trait]
impl Commander for RemoveMember {
    fn command(&self) -> RecordCommand {
        record("remove-member", &self.node, self.detail.clone())
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        connect(infra, &cmd, &self.peers)
            .await?
            .remove(self.id)
            .await
            .map_err(|e| CommandError::new(&cmd, e))?;
        Ok(Outcome::Done)
    }
}

/// Users `root` and `kube-apiserver`, auth on (idempotent).
pub struct SetupAuth {
    /// Shown as the target.
    pub target: String,
    /// Endpoints (node addresses).
    pub nodes: Vec<String>,
}

#[async_trait]
impl Commander for SetupAuth {
    fn command(&self) -> RecordCommand {
        record(
            "setup-etcd-auth",
            &self.target,
            "users root and kube-apiserver, auth on",
        )
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        connect(infra, &cmd, &self.nodes)
            .await?
            .setup_auth()
            .await
            .map_err(|e| CommandError::new(&cmd, e))?;
        Ok(Outcome::Done)
    }
}

/// Stops and removes the etcd container, its volumes (data and marker) and its certificates. With
/// `guard`, the member list is read first and a started or voting member on the node is never
/// wiped (the plan was made from a wrong view); an unstarted learner may be, as may the member
/// `guard.replace` that the same operation removed.
pub struct Wipe {
    /// The node.
    pub node: String,
    /// The data volume.
    pub volume: String,
    /// Shown in the record.
    pub detail: &'static str,
    /// Check the membership first through these peers.
    pub guard: Option<WipeGuard>,
}

/// See [`Wipe::guard`].
pub struct WipeGuard {
    /// Endpoints (node addresses).
    pub peers: Vec<String>,
    /// A member of this node that may be wiped (already removed by this operation).
    pub replace: Option<u64>,
}

#[async_trait]
impl Commander for Wipe {
    fn command(&self) -> RecordCommand {
        record("destroy-etcd", &self.node, self.detail)
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        if let Some(g) = &self.guard {
            let etcd = connect(infra, &cmd, &g.peers).await?;
            let url = etcd_peer_url(&self.node);
            let members = etcd.members().await.map_err(|e| CommandError::new(&cmd, e))?;
            if let Some(m) = members.iter().find(|m| {
                Some(m.id) != g.replace && m.peer_urls.contains(&url) && (!m.is_learner || !m.name.is_empty())
            }) {
                return Err(CommandError::refused(
                    &cmd,
                    format!(
                        "{} is a started member ({:x}) of the managed etcd; refusing to wipe it",
                        self.node, m.id
                    ),
                ));
            }
        }
        let node = infra.node(&self.node);
        let fail = |e| CommandError::new(&cmd, e);
        infra.engine.remove(node.as_ref(), ETCD_CONTAINER).await.map_err(fail)?;
        infra
            .engine
            .volume_remove(node.as_ref(), &self.volume)
            .await
            .map_err(fail)?;
        infra
            .engine
            .volume_remove(node.as_ref(), ETCD_ADDED_MEMBER_VOLUME)
            .await
            .map_err(fail)?;
        super::common::remove_dir(infra, &cmd, &self.node, ETCD_PKI_DIR).await?;
        Ok(Outcome::Done)
    }
}

/// Promotes a learner once it has caught up.
pub struct Promote {
    /// The member's node.
    pub node: String,
    /// Endpoints (node addresses).
    pub peers: Vec<String>,
    /// Member id.
    pub id: u64,
    /// How long to wait for it to catch up.
    pub limit: Duration,
}

#[async_trait]
impl Commander for Promote {
    fn command(&self) -> RecordCommand {
        record("promote-member", &self.node, format!("{:x}", self.id))
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        connect(infra, &cmd, &self.peers)
            .await?
            .promote_when_ready(self.id, self.limit)
            .await
            .map_err(|e| CommandError::new(&cmd, e))?;
        Ok(Outcome::Done)
    }
}
