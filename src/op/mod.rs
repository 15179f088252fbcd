//! Operators and commanders (CKE's model). An [`Operator`] is a step machine: each call to
//! [`Operator::next_command`] returns the next [`Commander`], or `None` when the operation is done;
//! what a command produced comes back through [`Operator::command_done`], so state passes between
//! steps as typed fields of the operator. Building an operator never connects anywhere; only
//! commanders do I/O, and only through [`Infra`]. The controller records every operation and every
//! command before running it.
//!
//! One operator per file; reusable commanders (containers, volumes, files, images) in [`common`].
//! [`operator_for`] maps every planned operation to its operator, exhaustively.

pub mod common;
pub mod etcd;
pub mod k8s;
pub mod reboot;
pub mod repair;
pub mod rivers;
#[cfg(feature = "test-hooks")]
pub mod test_ops;

#[cfg(test)]
mod reboot_tests;
#[cfg(test)]
pub(crate) mod tests;

use async_trait::async_trait;

use crate::error::Retry;
pub use crate::infra::Infra;
use crate::k8s::params::Component;
use crate::model::{Cluster, ClusterStatus, RecordCommand};
use crate::planner::{OpKind, PlannedOp};
use crate::topology::Images;

/// Any error a command may fail with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A command failed: the operation is cancelled and the next pass re-plans. Carries what failed,
/// where, why (the source chain) and when to try again.
#[derive(Debug, thiserror::Error)]
#[error("{command} on {target}")]
pub struct CommandError {
    /// The command's name.
    pub command: String,
    /// What it acted on.
    pub target: String,
    /// When to try again.
    pub retry: Retry,
    /// The underlying failure.
    #[source]
    pub source: BoxError,
}

/// A reason given in words, as an error (a refusal, a missing precondition).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl CommandError {
    /// A failure of `cmd` caused by `source`, retried as `source` says.
    pub fn new<E: Classify + std::error::Error + Send + Sync + 'static>(cmd: &RecordCommand, source: E) -> Self {
        let retry = source.retry();
        CommandError::with_retry(cmd, retry, source)
    }

    /// A failure of `cmd` with an explicit retry class.
    pub fn with_retry(cmd: &RecordCommand, retry: Retry, source: impl Into<BoxError>) -> Self {
        CommandError {
            command: cmd.name.clone(),
            target: cmd.target.clone(),
            retry,
            source: source.into(),
        }
    }

    /// A transient failure described in words (a wait that ran out, say).
    pub fn soon(cmd: &RecordCommand, reason: impl Into<String>) -> Self {
        CommandError::with_retry(cmd, Retry::Soon, Refusal(reason.into()))
    }

    /// A refusal that only a change (of the declaration, of Vault, of a node) can lift.
    pub fn refused(cmd: &RecordCommand, reason: impl Into<String>) -> Self {
        CommandError::with_retry(cmd, Retry::AfterChange, Refusal(reason.into()))
    }
}

/// Errors that know whether retrying soon can help.
pub trait Classify {
    /// The retry class of this error.
    fn retry(&self) -> Retry;
}

impl Classify for crate::infra::agent::AgentError {
    fn retry(&self) -> Retry {
        use crate::infra::agent::AgentError::*;
        match self {
            HostKey { .. } | Auth { .. } | NoKey { .. } | Invalid { .. } => Retry::AfterChange,
            Connect { .. } | Timeout { .. } | Session { .. } | Failed { .. } | Output { .. } | LeaseExpired { .. } => {
                Retry::Soon
            }
        }
    }
}

impl Classify for crate::infra::IssueError {
    fn retry(&self) -> Retry {
        match self {
            crate::infra::IssueError::NotConfigured => Retry::AfterChange,
            crate::infra::IssueError::Vault(_) => Retry::Soon,
        }
    }
}

impl Classify for crate::infra::EtcdConnectError {
    fn retry(&self) -> Retry {
        use crate::infra::EtcdConnectError::*;
        match self {
            Credentials(e) => e.retry(),
            NoCa => Retry::AfterChange,
            Storage(_) | Etcd(_) => Retry::Soon,
        }
    }
}

impl Classify for crate::infra::managed_etcd::ManagedEtcdError {
    fn retry(&self) -> Retry {
        Retry::Soon
    }
}

impl Classify for crate::infra::KubeError {
    fn retry(&self) -> Retry {
        match self {
            crate::infra::KubeError::NotConfigured => Retry::AfterChange,
            crate::infra::KubeError::Api { .. } => Retry::Soon,
        }
    }
}

impl Classify for crate::storage::StorageError {
    fn retry(&self) -> Retry {
        Retry::Soon
    }
}

impl Classify for crate::infra::HostCommandError {
    fn retry(&self) -> Retry {
        use crate::infra::HostCommandError::*;
        match self {
            Empty | Spawn { .. } => Retry::AfterChange,
            Failed { .. } | TimedOut { .. } | LeaseExpired { .. } => Retry::Soon,
        }
    }
}

/// What a command produced for the steps after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to pass on.
    Done,
    /// A learner was registered: its id and the members' node addresses after the change.
    LearnerAdded {
        /// Member id.
        id: u64,
        /// Node addresses of every member, the learner included.
        members: Vec<String>,
    },
    /// Writes to the management etcd that the controller makes fenced on the leadership, in one
    /// transaction with the command's record (a command holds no fence of its own). The command
    /// counts as done only once they are written.
    Fenced(Vec<crate::storage::Write>),
}

/// One step of an operation.
#[async_trait]
pub trait Commander: Send + Sync {
    /// How the command is recorded (name, target, detail).
    fn command(&self) -> RecordCommand;

    /// How each node's part of the command is recorded: the command itself, or for a step over
    /// several nodes ([`common::fan_out`]) each node's command.
    fn parts(&self) -> Vec<RecordCommand> {
        vec![self.command()]
    }

    /// Runs the command. It must be safe to abandon at any await point (the controller drops it when
    /// leadership is lost or the daemon shuts down) and safe to run again in a later operation.
    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError>;
}

/// An operation as a step machine.
pub trait Operator: Send {
    /// The operation's name, e.g. `etcd-bootstrap`.
    fn name(&self) -> &'static str;

    /// Node addresses or object names it acts on.
    fn targets(&self) -> Vec<String>;

    /// The next command, or `None` when the operation is complete. Called only after the previous
    /// command succeeded (and its outcome was passed to [`Operator::command_done`]).
    fn next_command(&mut self) -> Option<Box<dyn Commander>>;

    /// Takes what the last command produced.
    fn command_done(&mut self, outcome: Outcome) {
        let _ = outcome;
    }
}

/// An operator that runs a fixed list of commands in order.
pub struct SeqOperator {
    name: &'static str,
    targets: Vec<String>,
    commands: std::collections::VecDeque<Box<dyn Commander>>,
}

impl SeqOperator {
    /// An operator.
    pub fn boxed(name: &'static str, targets: Vec<String>, commands: Vec<Box<dyn Commander>>) -> Box<dyn Operator> {
        Box::new(SeqOperator {
            name,
            targets,
            commands: commands.into(),
        })
    }
}

impl Operator for SeqOperator {
    fn name(&self) -> &'static str {
        self.name
    }

    fn targets(&self) -> Vec<String> {
        self.targets.clone()
    }

    fn next_command(&mut self) -> Option<Box<dyn Commander>> {
        self.commands.pop_front()
    }
}

/// What an operator is built from: the declaration it was planned from, the images to run, the
/// status the plan was made from (a kubelet keeps some of its running configuration), and what the
/// node hosts need.
#[derive(Debug, Clone, Copy)]
pub struct OpContext<'a> {
    /// The declaration.
    pub cluster: &'a Cluster,
    /// The images.
    pub images: &'a Images,
    /// The probed status of this pass.
    pub status: &'a ClusterStatus,
    /// The node hosts' settings for Kubernetes containers.
    pub host: &'a crate::k8s::params::HostSettings,
    /// The static and user resources of this pass ([`crate::planner::all_resources`]).
    pub resources: &'a [crate::model::ResourceDefinition],
}

/// The operator for a planned operation. Every operation the planner emits has one.
pub fn operator_for(planned: &PlannedOp, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let name = planned.name();
    match &planned.kind {
        OpKind::Upgrade { from, nodes } => etcd::upgrade::operator(from, nodes),
        OpKind::RiversBootstrap { nodes } | OpKind::RiversRestart { nodes } => {
            rivers::operator(name, nodes, ctx, rivers::Kind::Rivers)
        }
        OpKind::EtcdRiversBootstrap { nodes } | OpKind::EtcdRiversRestart { nodes } => {
            rivers::operator(name, nodes, ctx, rivers::Kind::EtcdRivers)
        }
        OpKind::EtcdBootstrap { nodes } => etcd::bootstrap::operator(nodes, ctx),
        OpKind::EtcdStart { nodes } => etcd::start::operator(nodes, ctx),
        OpKind::EtcdWaitCluster { nodes } => etcd::wait::operator(nodes),
        OpKind::EtcdRemoveMember { node, id } => etcd::remove_member::operator(node, *id, ctx),
        OpKind::EtcdDestroyMember { node, id } => etcd::destroy_member::operator(node, *id, ctx),
        OpKind::EtcdAddMember { node, replace } => etcd::add_member::operator(node, *replace, ctx),
        OpKind::EtcdPromoteMember { node, id } => etcd::promote_member::operator(node, *id, ctx),
        OpKind::EtcdMarkMember { nodes } => etcd::mark_member::operator(nodes, ctx),
        OpKind::EtcdRestart { node } => etcd::restart::operator(node, ctx),
        OpKind::KubeApiserverRestart { nodes } => k8s::apiserver::operator(nodes, ctx),
        OpKind::KubeControllerManagerBootstrap { nodes } => k8s::controller_manager::operator(nodes, ctx, true),
        OpKind::KubeControllerManagerRestart { nodes } => k8s::controller_manager::operator(nodes, ctx, false),
        OpKind::KubeSchedulerBootstrap { nodes } => k8s::scheduler::operator(nodes, ctx, true),
        OpKind::KubeSchedulerRestart { nodes } => k8s::scheduler::operator(nodes, ctx, false),
        OpKind::KubeletBootstrap { nodes } => k8s::kubelet::operator(nodes, ctx, true),
        OpKind::KubeletRestart { nodes } => k8s::kubelet::operator(nodes, ctx, false),
        OpKind::KubeProxyBootstrap { nodes } => k8s::proxy::operator(nodes, ctx, true),
        OpKind::KubeProxyRestart { nodes } => k8s::proxy::operator(nodes, ctx, false),
        OpKind::StopKubeProxy { nodes } => k8s::stop::component(name, Component::Proxy, nodes),
        OpKind::StopKubeApiserver { nodes } => k8s::stop::component(name, Component::ApiServer, nodes),
        OpKind::StopKubeControllerManager { nodes } => k8s::stop::component(name, Component::ControllerManager, nodes),
        OpKind::StopKubeScheduler { nodes } => k8s::stop::component(name, Component::Scheduler, nodes),
        OpKind::StopEtcd { nodes } => k8s::stop::operator(name, crate::topology::ETCD_CONTAINER, nodes),
        OpKind::StopEtcdRivers { nodes } => k8s::stop::operator(name, crate::topology::ETCD_RIVERS_CONTAINER, nodes),
        OpKind::UpdateNode { apiserver, nodes } => k8s::update_node::operator(apiserver, nodes, ctx),
        OpKind::WaitKubernetes { apiserver } => k8s::objects::wait_operator(apiserver),
        OpKind::KubeObject {
            apiserver,
            object,
            create,
            body,
        } => k8s::objects::object_operator(apiserver, *object, *create, body),
        OpKind::RemoveNode { apiserver, nodes } => k8s::objects::remove_node_operator(apiserver, nodes),
        OpKind::ResourceApply { apiserver, key, .. } => match ctx.resources.iter().find(|r| r.key == *key) {
            Some(def) => k8s::resource::operator(apiserver, def.clone(), ctx),
            None => k8s::resource::missing(key),
        },
        OpKind::RebootDrainStart { apiserver, entries } => reboot::drain_start(apiserver, entries, ctx),
        OpKind::RebootDrainTimeout { entries } => reboot::drain_timeout(entries),
        OpKind::RebootDeleteDaemonsetPod { apiserver, entries } => {
            reboot::delete_daemonset_pod(apiserver, entries, ctx)
        }
        OpKind::RebootReboot { entries } => reboot::reboot(entries, ctx),
        OpKind::RebootDequeue { entries } | OpKind::RebootCancel { entries } => reboot::dequeue(name, entries),
        OpKind::RebootUncordon { apiserver, nodes } => reboot::uncordon(apiserver, nodes),
        OpKind::RepairDrainStart {
            apiserver,
            index,
            address,
            nodename,
            step,
        } => repair::drain_start::operator(apiserver, *index, address, nodename, *step, ctx),
        OpKind::RepairExecute { index, address, step } => repair::execute::operator(*index, address, *step, ctx),
        OpKind::RepairFinish {
            index,
            address,
            succeeded,
        } => repair::finish::operator(*index, address, *succeeded, ctx),
        OpKind::RepairDequeue { index, address } => repair::dequeue::operator(*index, address),
        OpKind::RepairDrainTimeout { index, address } => repair::drain_timeout::operator(*index, address),
    }
}
