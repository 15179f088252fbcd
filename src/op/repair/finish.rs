//! `repair-finish` (CKE's `op/repair_finish.go`): finishes an entry. Succeeded: the operation's
//! `success_command` (if any) runs first, within `success_command_timeout` (default 30 s, 0: no
//! limit), and its failure makes the entry failed instead (not when the leader's lease deadline ended
//! it: the step fails, the entry is left as it is). Failed: the entry is marked so.

use chrono::Utc;

use super::*;
use crate::infra::host_command::{timeout_of, with_args};
use crate::model::repair::DEFAULT_REPAIR_SUCCESS_COMMAND_TIMEOUT_SECONDS;
use crate::model::RepairStatus;

/// The operator for entry `index` of the machine at `address`.
pub fn operator(index: i64, address: &str, succeeded: bool, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let Some(entry) = planned_entry(ctx, index) else {
        return not_probed("repair-finish", index, address);
    };
    // The operation may have left the declaration: a success without a command then.
    let success_command = match entry.operation(ctx.cluster) {
        Ok(op) if succeeded && !op.success_command.is_empty() => Some((
            with_args(&op.success_command, &[address]),
            timeout_of(
                op.success_command_timeout,
                DEFAULT_REPAIR_SUCCESS_COMMAND_TIMEOUT_SECONDS,
            ),
        )),
        _ => None,
    };
    single(
        "repair-finish",
        address,
        Finish {
            index,
            address: address.into(),
            succeeded,
            success_command,
        },
    )
}

/// Runs the success command, then marks the entry.
pub struct Finish {
    /// The entry's index.
    pub index: i64,
    /// The machine's address.
    pub address: String,
    /// The health check passed.
    pub succeeded: bool,
    /// The success command (address appended) and its timeout.
    pub success_command: Option<(Vec<String>, Option<std::time::Duration>)>,
}

#[async_trait::async_trait]
impl super::super::Commander for Finish {
    fn command(&self) -> RecordCommand {
        let detail = match (&self.success_command, self.succeeded) {
            (Some((argv, _)), _) => format!("repair entry {} succeeded; {}", self.index, argv.join(" ")),
            (None, true) => format!("repair entry {} succeeded", self.index),
            (None, false) => format!("repair entry {} failed", self.index),
        };
        record("repair-finish", &self.address, detail)
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let mut status = if self.succeeded {
            RepairStatus::Succeeded
        } else {
            RepairStatus::Failed
        };
        if let Some((argv, timeout)) = &self.success_command {
            match infra.commands.run(argv, *timeout).await {
                // The term is over: the entry is left as it is for the next leader.
                Err(e) if e.is_lease_expired() => return Err(CommandError::new(&self.command(), e)),
                Err(e) => {
                    // The repair is over either way; the entry says how it ended.
                    tracing::warn!(
                        index = self.index,
                        address = self.address,
                        error = crate::error::error_chain(&e),
                        "success command failed; the repair entry fails"
                    );
                    status = RepairStatus::Failed;
                }
                Ok(_) => {}
            }
        }
        let now = Utc::now();
        transition(infra, &self.command(), self.index, |e| {
            *e = e.transitioned(status, e.step_status, now);
        })
        .await?;
        tracing::info!(
            index = self.index,
            address = self.address,
            status = status.as_str(),
            "repair entry finished"
        );
        Ok(Outcome::Done)
    }
}
