//! `upgrade` (CKE's `op/upgrade.go`): bring on-node state written under an older `config-version`
//! up to date. From "1" (or no key) to "2": mark the members the planner names with the
//! added-member marker, then record `config-version` "2". The record is a write the controller
//! makes fenced on the leadership, in the same transaction as the command's record
//! ([`Outcome::Fenced`]).

use async_trait::async_trait;

use super::mark;
use crate::model::RecordCommand;
use crate::op::{CommandError, Commander, Infra, Operator, Outcome, SeqOperator};
use crate::planner::CONFIG_VERSION;
use crate::storage::{Write, KEY_CONFIG_VERSION};

/// The operator.
pub fn operator(from: &str, nodes: &[String]) -> Box<dyn Operator> {
    let mut steps: Vec<Box<dyn Commander>> = nodes.iter().map(|a| mark(a)).collect();
    steps.push(Box::new(PutConfigVersion { from: from.into() }));
    SeqOperator::boxed("upgrade", nodes.to_vec(), steps)
}

/// Records the current `config-version`.
pub struct PutConfigVersion {
    /// The version found.
    pub from: String,
}

#[async_trait]
impl Commander for PutConfigVersion {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            // CKE's command name for this step.
            name: format!("upgrade-version-from-{}-to-{CONFIG_VERSION}", self.from),
            target: KEY_CONFIG_VERSION.into(),
            detail: CONFIG_VERSION.into(),
        }
    }

    async fn run(&self, _infra: &Infra) -> Result<Outcome, CommandError> {
        Ok(Outcome::Fenced(vec![Write::Put(
            KEY_CONFIG_VERSION.into(),
            CONFIG_VERSION.as_bytes().to_vec(),
        )]))
    }
}
