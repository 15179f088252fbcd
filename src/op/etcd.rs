//! Operators of the managed etcd: bootstrap, start, wait, learner-first add (with promotion and
//! marking), remove, destroy, promote, mark and restart. Each step is one recorded command; a failed
//! step cancels the operation and the next pass re-plans from what the probe then sees.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{CommandError, Commander, FnCommand, Infra, Operator, SeqOperator};
use crate::agent::container::RunSpec;
use crate::agent::Runner;
use crate::model::{Cluster, ContainerParams, Node, RecordCommand};
use crate::planner::params::*;
use crate::planner::{OpKind, PlannedOp};

fn err(cmd: &RecordCommand, e: impl std::fmt::Display) -> CommandError {
    CommandError::new(cmd, e.to_string())
}

/// A failure of `cmd` caused by `e`, with `e`'s whole chain of causes.
fn cause(cmd: &RecordCommand, e: &dyn std::error::Error) -> CommandError {
    CommandError::new(cmd, crate::controller::error_chain(e))
}

fn node_of(cluster: &Cluster, address: &str) -> Node {
    cluster
        .node(address)
        .cloned()
        .unwrap_or(Node::new(address, "root", false))
}

/// Writes the node's etcd server and peer certificates and the CAs it trusts to `/etc/etcd/pki`.
async fn write_certs(infra: &Infra, cmd: &RecordCommand, address: &str) -> Result<(), CommandError> {
    let node = node_of(&infra.cluster, address);
    let agent = infra.node(address, cmd)?;
    let issuer = infra.issuer(cmd)?;
    let server = issuer
        .issue_etcd_server(&node.address, &node.hostname)
        .await
        .map_err(|e| cause(cmd, &e))?;
    let peer = issuer
        .issue_etcd_peer(&node.address, &node.hostname)
        .await
        .map_err(|e| cause(cmd, &e))?;
    let ca = |name: &'static str| async move {
        infra
            .storage
            .get_ca(name)
            .await
            .map_err(|e| cause(cmd, &e))?
            .ok_or_else(|| err(cmd, format!("CA {name} is not in etcd")))
    };
    let files: [(&str, String, u32); 6] = [
        ("server.crt", server.certificate, 0o644),
        ("server.key", server.private_key, 0o600),
        ("peer.crt", peer.certificate, 0o644),
        ("peer.key", peer.private_key, 0o600),
        ("ca-client.crt", ca("etcd-client").await?, 0o644),
        ("ca-peer.crt", ca("etcd-peer").await?, 0o644),
    ];
    for (name, content, mode) in files {
        agent
            .write_file(&format!("{ETCD_PKI_DIR}/{name}"), content.as_bytes(), mode, None)
            .await
            .map_err(|e| cause(cmd, &e))?;
    }
    Ok(())
}

/// Runs the etcd container on `address`, with `--initial-*` flags when `initial` is given.
async fn run_etcd(
    infra: &Infra,
    cmd: &RecordCommand,
    address: &str,
    initial: Option<(&[String], InitialClusterState)>,
) -> Result<(), CommandError> {
    let node = node_of(&infra.cluster, address);
    let agent = infra.node(address, cmd)?;
    let opts = &infra.cluster.options.etcd;
    let builtin = etcd_builtin_params(&node, opts.volume(), initial);
    let extra = opts.service_params();
    let mut command = vec!["/usr/bin/etcd".to_string()];
    command.extend(builtin.extra_args.iter().cloned());
    command.extend(extra.extra_args.iter().cloned());
    let mut binds = builtin.extra_binds.clone();
    binds.extend(extra.extra_binds.iter().cloned());
    let spec = RunSpec {
        name: ETCD_CONTAINER.into(),
        image: infra.images.etcd.clone(),
        command,
        binds,
        env: extra.extra_env.clone(),
        params: ContainerParams { builtin, extra },
    };
    infra.engine.run(&agent, &spec).await.map_err(|e| cause(cmd, &e))
}

async fn create_volume(infra: &Infra, cmd: &RecordCommand, address: &str, volume: &str) -> Result<(), CommandError> {
    let agent = infra.node(address, cmd)?;
    infra
        .engine
        .volume_create(&agent, volume)
        .await
        .map_err(|e| cause(cmd, &e))
}

/// Stops and removes the etcd container and its volumes (data and marker) on `address`.
async fn wipe(infra: &Infra, cmd: &RecordCommand, address: &str) -> Result<(), CommandError> {
    let agent = infra.node(address, cmd)?;
    infra
        .engine
        .remove(&agent, ETCD_CONTAINER)
        .await
        .map_err(|e| cause(cmd, &e))?;
    infra
        .engine
        .volume_remove(&agent, infra.cluster.options.etcd.volume())
        .await
        .map_err(|e| cause(cmd, &e))?;
    infra
        .engine
        .volume_remove(&agent, ETCD_ADDED_MEMBER_VOLUME)
        .await
        .map_err(|e| cause(cmd, &e))?;
    agent
        .check(&format!("rm -rf {ETCD_PKI_DIR}"), None, Duration::from_secs(30))
        .await
        .map_err(|e| cause(cmd, &e))?;
    Ok(())
}

/// The control-plane nodes other than `except`: the endpoints for membership requests (when none
/// answers, [`Infra::managed_etcd`] falls back to the other declared nodes).
fn others(cluster: &Cluster, except: &str) -> Vec<String> {
    cluster
        .control_planes()
        .map(|n| n.address.clone())
        .filter(|a| a != except)
        .collect()
}

async fn wait_healthy(
    infra: &Infra,
    cmd: &RecordCommand,
    nodes: &[String],
    limit: Duration,
) -> Result<(), CommandError> {
    let etcd = infra.managed_etcd(nodes, cmd).await?;
    let start = tokio::time::Instant::now();
    loop {
        match etcd.health_revision().await {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() >= limit => return Err(err(cmd, format!("not healthy after {limit:?}: {e}"))),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

async fn wait_in_sync(infra: &Infra, cmd: &RecordCommand, address: &str, limit: Duration) -> Result<(), CommandError> {
    let nodes: Vec<String> = infra.cluster.control_planes().map(|n| n.address.clone()).collect();
    let etcd = infra.managed_etcd(&nodes, cmd).await?;
    let start = tokio::time::Instant::now();
    loop {
        if let Ok(st) = etcd.cluster_status().await {
            if st.in_sync_members.contains(address) {
                return Ok(());
            }
        }
        if start.elapsed() >= limit {
            return Err(err(cmd, format!("{address} did not catch up within {limit:?}")));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Test hook: when `CKE_FAILPOINT` names this point, the process dies on the spot (as on a power
/// loss), so tests can check that another leader finishes the work. Never set it in production.
fn failpoint(name: &str) {
    if std::env::var("CKE_FAILPOINT").is_ok_and(|v| v == name) {
        tracing::error!(failpoint = name, "failpoint reached: aborting");
        std::process::abort();
    }
}

/// The id of the learner an add-member operation registered, and the member addresses after it.
type AddedMember = Arc<Mutex<Option<(u64, Vec<String>)>>>;

macro_rules! step {
    ($name:expr, $target:expr, $detail:expr, |$infra:ident, $cmd:ident| $body:block) => {{
        FnCommand::boxed($name, &$target, $detail, move |$infra, $cmd| Box::pin(async move $body))
    }};
}

fn remove_member_step(node: String, peers: Arc<Vec<String>>, id: u64, detail: &str) -> Box<dyn Commander> {
    step!("remove-member", node, detail, |infra, cmd| {
        infra
            .managed_etcd(&peers, cmd)
            .await?
            .remove(id)
            .await
            .map_err(|e| cause(cmd, &e))
    })
}

fn mark_step(node: String) -> Box<dyn Commander> {
    step!("mark-member", node, ETCD_ADDED_MEMBER_VOLUME, |infra, cmd| {
        create_volume(infra, cmd, &cmd.target, ETCD_ADDED_MEMBER_VOLUME).await
    })
}

/// Users `root` and `kube-apiserver`, auth on (idempotent), through `endpoints`.
fn auth_step(target: String, endpoints: Arc<Vec<String>>) -> Box<dyn Commander> {
    step!(
        "setup-etcd-auth",
        target,
        "users root and kube-apiserver, auth on",
        |infra, cmd| {
            infra
                .managed_etcd(&endpoints, cmd)
                .await?
                .setup_auth()
                .await
                .map_err(|e| cause(cmd, &e))
        }
    )
}

fn certs_step(node: String) -> Box<dyn Commander> {
    step!("write-certificates", node, "etcd server and peer", |infra, cmd| {
        write_certs(infra, cmd, &cmd.target).await
    })
}

/// The operator for a planned etcd operation.
pub fn operator(planned: &PlannedOp, cluster: &Cluster) -> Box<dyn Operator> {
    let name = planned.name();
    let targets = planned.targets();
    let volume = cluster.options.etcd.volume().to_string();
    let mut steps = Vec::new();
    match planned.kind.clone() {
        OpKind::EtcdBootstrap { nodes } => {
            let all = Arc::new(nodes.clone());
            for a in &nodes {
                let a1 = a.clone();
                steps.push(step!("write-certificates", a1, "etcd server and peer", |infra, cmd| {
                    write_certs(infra, cmd, &cmd.target).await
                }));
                let v = volume.clone();
                steps.push(step!("create-volume", a.clone(), &volume, |infra, cmd| {
                    create_volume(infra, cmd, &cmd.target, &v).await
                }));
            }
            for a in &nodes {
                let all = all.clone();
                steps.push(step!(
                    "run-container",
                    a.clone(),
                    "etcd --initial-cluster-state=new",
                    |infra, cmd| { run_etcd(infra, cmd, &cmd.target, Some((&all, InitialClusterState::New))).await }
                ));
            }
            let all2 = all.clone();
            steps.push(step!("wait-etcd", nodes.join(","), "healthy", |infra, cmd| {
                wait_healthy(infra, cmd, &all2, Duration::from_secs(120)).await
            }));
            steps.push(auth_step(nodes.join(","), all.clone()));
            for a in &nodes {
                steps.push(mark_step(a.clone()));
            }
        }
        OpKind::EtcdStart { nodes } => {
            for a in nodes {
                steps.push(certs_step(a.clone()));
                steps.push(step!("run-container", a, "etcd", |infra, cmd| {
                    run_etcd(infra, cmd, &cmd.target, None).await
                }));
            }
        }
        OpKind::EtcdWaitCluster { nodes } => {
            let all = Arc::new(nodes.clone());
            steps.push(step!("wait-etcd", nodes.join(","), "healthy", |infra, cmd| {
                wait_healthy(infra, cmd, &all, Duration::from_secs(60)).await
            }));
        }
        OpKind::EtcdRemoveMember { node, id } => {
            let peers = Arc::new(others(cluster, &node));
            steps.push(remove_member_step(node, peers, id, &format!("{id:x}")));
        }
        OpKind::EtcdDestroyMember { node, id } => {
            let peers = Arc::new(others(cluster, &node));
            steps.push(remove_member_step(node.clone(), peers.clone(), id, &format!("{id:x}")));
            steps.push(step!(
                "destroy-etcd",
                node,
                "container, volumes, certificates",
                |infra, cmd| { wipe(infra, cmd, &cmd.target).await }
            ));
        }
        OpKind::EtcdAddMember { node, replace } => {
            let peers = Arc::new(others(cluster, &node));
            if let Some(old) = replace {
                let p = peers.clone();
                steps.push(remove_member_step(
                    node.clone(),
                    p.clone(),
                    old,
                    &format!("{old:x} (half-added)"),
                ));
            }
            // The node is not a member: whatever etcd state it holds (an earlier membership, a
            // half-added start) must go, or the new member would start from stale data. The member
            // list is checked first: a started or voting member on this node is never wiped (the
            // plan was made from a wrong view); an unstarted learner is reused by add-learner.
            let p = peers.clone();
            steps.push(step!(
                "destroy-etcd",
                node.clone(),
                "stale container, volumes, certificates",
                |infra, cmd| {
                    let etcd = infra.managed_etcd(&p, cmd).await?;
                    let url = etcd_peer_url(&cmd.target);
                    let members = etcd.members().await.map_err(|e| cause(cmd, &e))?;
                    if let Some(m) = members.iter().find(|m| {
                        Some(m.id) != replace && m.peer_urls.contains(&url) && (!m.is_learner || !m.name.is_empty())
                    }) {
                        return Err(err(
                            cmd,
                            format!(
                                "{} is a started member ({:x}) of the managed etcd; refusing to wipe it",
                                cmd.target, m.id
                            ),
                        ));
                    }
                    wipe(infra, cmd, &cmd.target).await
                }
            ));
            steps.push(certs_step(node.clone()));
            let v = volume.clone();
            steps.push(step!("create-volume", node.clone(), &volume, |infra, cmd| {
                create_volume(infra, cmd, &cmd.target, &v).await
            }));
            let added: AddedMember = Arc::new(Mutex::new(None));
            let (p, a) = (peers.clone(), added.clone());
            steps.push(step!(
                "add-learner",
                node.clone(),
                "member add --learner",
                |infra, cmd| {
                    let etcd = infra.managed_etcd(&p, cmd).await?;
                    let (id, members) = etcd
                        .add_learner_when_ready(&etcd_peer_url(&cmd.target), Duration::from_secs(60))
                        .await
                        .map_err(|e| cause(cmd, &e))?;
                    let addresses: Vec<String> = members.iter().filter_map(|m| m.address()).collect();
                    *a.lock().unwrap() = Some((id, addresses));
                    failpoint("after-add-learner");
                    Ok(())
                }
            ));
            let a = added.clone();
            steps.push(step!(
                "run-container",
                node.clone(),
                "etcd --initial-cluster-state=existing",
                |infra, cmd| {
                    let members = a.lock().unwrap().as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
                    run_etcd(infra, cmd, &cmd.target, Some((&members, InitialClusterState::Existing))).await
                }
            ));
            let (p, a) = (peers.clone(), added.clone());
            steps.push(step!("promote-member", node.clone(), "when in sync", |infra, cmd| {
                let id = a
                    .lock()
                    .unwrap()
                    .as_ref()
                    .map(|(id, _)| *id)
                    .ok_or_else(|| err(cmd, "no member id"))?;
                let etcd = infra.managed_etcd(&p, cmd).await?;
                etcd.promote_when_ready(id, Duration::from_secs(120))
                    .await
                    .map_err(|e| cause(cmd, &e))
            }));
            steps.push(mark_step(node));
        }
        OpKind::EtcdPromoteMember { node, id } => {
            let peers = Arc::new(others(cluster, &node));
            steps.push(step!(
                "promote-member",
                node.clone(),
                &format!("{id:x}"),
                |infra, cmd| {
                    let etcd = infra.managed_etcd(&peers, cmd).await?;
                    etcd.promote_when_ready(id, Duration::from_secs(120))
                        .await
                        .map_err(|e| cause(cmd, &e))
                }
            ));
            steps.push(mark_step(node));
        }
        OpKind::EtcdMarkMember { nodes } => {
            // Marking follows a bootstrap or a join; a crash before a bootstrap's auth set-up
            // leaves a healthy cluster without users or auth, so the (idempotent) set-up runs here.
            let all = Arc::new(cluster.control_planes().map(|n| n.address.clone()).collect::<Vec<_>>());
            steps.push(auth_step(nodes.join(","), all));
            for a in nodes {
                steps.push(mark_step(a));
            }
        }
        OpKind::EtcdRestart { node } => {
            steps.push(certs_step(node.clone()));
            steps.push(step!(
                "run-container",
                node.clone(),
                "etcd (new parameters)",
                |infra, cmd| { run_etcd(infra, cmd, &cmd.target, None).await }
            ));
            steps.push(step!("wait-in-sync", node, "", |infra, cmd| {
                wait_in_sync(infra, cmd, &cmd.target, Duration::from_secs(120)).await
            }));
        }
        OpKind::RiversBootstrap { .. }
        | OpKind::RiversRestart { .. }
        | OpKind::EtcdRiversBootstrap { .. }
        | OpKind::EtcdRiversRestart { .. } => unreachable!("rivers operations are built by op::rivers"),
    }
    SeqOperator::boxed(name, targets, steps)
}
