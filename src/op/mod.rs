//! Operators and commanders (CKE's model). An [`Operator`] is a step machine: each call to
//! [`Operator::next_command`] returns the next [`Commander`] or `None` when the operation is done.
//! Building an operator never connects anywhere; only commanders do I/O, against [`Infra`]. The
//! controller records every operation and every command before running it.

pub mod etcd;
pub mod rivers;
pub mod test_ops;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::agent::container::ContainerEngine;
use crate::agent::ssh::{NodeAgent, SshPool};
use crate::managed_etcd::{EtcdTls, ManagedEtcd};
use crate::model::{Cluster, RecordCommand};
use crate::pki::{Issuer, VaultClient};
use crate::planner::params::{etcd_client_url, Images};
use crate::planner::{OpKind, PlannedOp};
use crate::storage::Storage;

/// A command failed; the operation is cancelled and the next pass re-plans.
#[derive(Debug, thiserror::Error)]
#[error("{command} on {target}: {reason}")]
pub struct CommandError {
    /// The command's name.
    pub command: String,
    /// What it acted on.
    pub target: String,
    /// Why it failed, with the underlying error's text.
    pub reason: String,
}

impl CommandError {
    /// A failure of `cmd` for `reason`.
    pub fn new(cmd: &RecordCommand, reason: impl Into<String>) -> Self {
        CommandError {
            command: cmd.name.clone(),
            target: cmd.target.clone(),
            reason: reason.into(),
        }
    }
}

/// What commanders may use. Grows with the components cke drives (node agents, Vault, the managed
/// etcd); each is optional so that an operator that needs a missing one fails with a clear error.
#[derive(Clone)]
pub struct Infra {
    /// The management etcd.
    pub storage: Arc<dyn Storage>,
    /// The declaration the operation was planned from.
    pub cluster: Arc<Cluster>,
    /// SSH to the nodes.
    pub nodes: Option<Arc<SshPool>>,
    /// The container engine on the nodes.
    pub engine: ContainerEngine,
    /// Vault, for certificates.
    pub vault: Option<VaultClient>,
    /// The images to run.
    pub images: Images,
}

impl Infra {
    /// Infra that can only reach the management etcd (tests of the framework).
    pub fn minimal(storage: Arc<dyn Storage>, cluster: Arc<Cluster>) -> Self {
        Infra {
            storage,
            cluster,
            nodes: None,
            engine: ContainerEngine::default(),
            vault: None,
            images: Images::default(),
        }
    }

    /// The agent of a declared node.
    pub fn node(&self, address: &str, cmd: &RecordCommand) -> Result<NodeAgent, CommandError> {
        let pool = self
            .nodes
            .as_ref()
            .ok_or_else(|| CommandError::new(cmd, "no node agent is configured"))?;
        let user = self
            .cluster
            .node(address)
            .map(|n| n.user.clone())
            .unwrap_or_else(|| "root".into());
        Ok(pool.node(address, &user))
    }

    /// The certificate issuer.
    pub fn issuer(&self, cmd: &RecordCommand) -> Result<Issuer, CommandError> {
        self.vault
            .clone()
            .map(Issuer::new)
            .ok_or_else(|| CommandError::new(cmd, "Vault is not configured (ckecli vault init)"))
    }

    /// A root connection to the managed etcd through these nodes' client URLs. When none of them
    /// accepts connections (the control plane moved to nodes that hold no member yet), the other
    /// declared nodes that do are used: a member may still run on a former control-plane node.
    pub async fn managed_etcd(&self, nodes: &[String], cmd: &RecordCommand) -> Result<ManagedEtcd, CommandError> {
        let cert = self
            .issuer(cmd)?
            .issue_etcd_client("root", Some(Duration::from_secs(3600)))
            .await
            .map_err(|e| CommandError::new(cmd, crate::controller::error_chain(&e)))?;
        let ca = self
            .storage
            .get_ca("server")
            .await
            .map_err(|e| CommandError::new(cmd, crate::controller::error_chain(&e)))?
            .ok_or_else(|| CommandError::new(cmd, "CA server is not in etcd (ckecli vault init)"))?;
        let mut endpoints: Vec<String> = nodes.iter().map(|n| etcd_client_url(n)).collect();
        if crate::managed_etcd::live_endpoints(&endpoints).await.is_empty() {
            let rest: Vec<String> = self
                .cluster
                .nodes
                .iter()
                .filter(|n| !nodes.contains(&n.address))
                .map(|n| etcd_client_url(&n.address))
                .collect();
            let live = crate::managed_etcd::live_endpoints(&rest).await;
            if !live.is_empty() {
                endpoints = live;
            }
        }
        ManagedEtcd::connect(
            endpoints,
            EtcdTls {
                ca,
                cert: cert.certificate,
                key: cert.private_key,
            },
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| CommandError::new(cmd, crate::controller::error_chain(&e)))
    }
}

/// The boxed future a [`FnCommand`] runs.
pub type CommandFuture<'a> = Pin<Box<dyn Future<Output = Result<(), CommandError>> + Send + 'a>>;

/// A commander made of a record and an async function of the infra, run once.
pub struct FnCommand {
    record: RecordCommand,
    #[allow(clippy::type_complexity)]
    f: std::sync::Mutex<Option<Box<dyn for<'a> FnOnce(&'a Infra, &'a RecordCommand) -> CommandFuture<'a> + Send>>>,
}

impl FnCommand {
    /// A command named `name` acting on `target`.
    pub fn boxed<F>(name: &str, target: &str, detail: &str, f: F) -> Box<dyn Commander>
    where
        F: for<'a> FnOnce(&'a Infra, &'a RecordCommand) -> CommandFuture<'a> + Send + 'static,
    {
        Box::new(FnCommand {
            record: RecordCommand {
                name: name.into(),
                target: target.into(),
                detail: detail.into(),
            },
            f: std::sync::Mutex::new(Some(Box::new(f))),
        })
    }
}

#[async_trait]
impl Commander for FnCommand {
    fn command(&self) -> RecordCommand {
        self.record.clone()
    }

    async fn run(&self, infra: &Infra) -> Result<(), CommandError> {
        let f = self.f.lock().unwrap().take();
        match f {
            Some(f) => f(infra, &self.record).await,
            None => Err(CommandError::new(&self.record, "a command runs only once")),
        }
    }
}

/// An operator that runs a fixed list of commands in order.
pub struct SeqOperator {
    name: String,
    targets: Vec<String>,
    commands: std::collections::VecDeque<Box<dyn Commander>>,
}

impl SeqOperator {
    /// An operator.
    pub fn boxed(name: &str, targets: Vec<String>, commands: Vec<Box<dyn Commander>>) -> Box<dyn Operator> {
        Box::new(SeqOperator {
            name: name.into(),
            targets,
            commands: commands.into(),
        })
    }
}

impl Operator for SeqOperator {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn targets(&self) -> Vec<String> {
        self.targets.clone()
    }

    fn next_command(&mut self) -> Option<Box<dyn Commander>> {
        self.commands.pop_front()
    }
}

/// The operator for a planned operation (every operation the planner emits has one).
pub fn operator_for(planned: &PlannedOp, cluster: &Cluster) -> Box<dyn Operator> {
    match &planned.kind {
        OpKind::RiversBootstrap { nodes } | OpKind::RiversRestart { nodes } => {
            rivers::operator(planned.name(), nodes, cluster, false)
        }
        OpKind::EtcdRiversBootstrap { nodes } | OpKind::EtcdRiversRestart { nodes } => {
            rivers::operator(planned.name(), nodes, cluster, true)
        }
        _ => etcd::operator(planned, cluster),
    }
}

/// One step of an operation.
#[async_trait]
pub trait Commander: Send + Sync {
    /// How the command is recorded (name, target, detail).
    fn command(&self) -> RecordCommand;

    /// Runs the command. It must be safe to abandon at any await point (the controller drops it when
    /// leadership is lost or the daemon shuts down) and safe to run again in a later operation.
    async fn run(&self, infra: &Infra) -> Result<(), CommandError>;
}

/// An operation as a step machine.
pub trait Operator: Send {
    /// The operation's name, e.g. `etcd-bootstrap`.
    fn name(&self) -> String;

    /// Node addresses or object names it acts on.
    fn targets(&self) -> Vec<String>;

    /// The next command, or `None` when the operation is complete. Called only after the previous
    /// command succeeded.
    fn next_command(&mut self) -> Option<Box<dyn Commander>>;
}
