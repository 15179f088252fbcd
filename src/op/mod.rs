//! Operators and commanders (CKE's model). An [`Operator`] is a step machine: each call to
//! [`Operator::next_command`] returns the next [`Commander`] or `None` when the operation is done.
//! Building an operator never connects anywhere; only commanders do I/O, against [`Infra`]. The
//! controller records every operation and every command before running it.

pub mod test_ops;

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::{Cluster, RecordCommand};
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
