//! `repair-execute` (CKE's `op/repair_execute.go`): marks the entry `processing`/`watching` at the
//! planned step, then runs that step's `repair_command` (the address appended) up to
//! `command_retries + 1` times, `command_interval` seconds apart, each within
//! `command_timeout_seconds` (default 30 s, 0: no limit; at the limit its process group is killed).
//! When every attempt fails the entry fails: a failed repair command is the repair's outcome, not an
//! error of cke. A command ended by the leader's lease deadline fails the step and leaves the entry
//! as it is.

use std::time::Duration;

use chrono::Utc;

use super::*;
use crate::infra::host_command::{run_with_retries, timeout_of, with_args};
use crate::model::repair::DEFAULT_REPAIR_COMMAND_TIMEOUT_SECONDS;
use crate::model::{RepairStatus, RepairStepStatus};

/// The operator for step `step` of entry `index` of the machine at `address`.
pub fn operator(index: i64, address: &str, step: usize, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let Some(entry) = planned_entry(ctx, index) else {
        return not_probed("repair-execute", index, address);
    };
    let at = RepairEntry { step, ..entry };
    let step_config = match at.current_step(ctx.cluster) {
        Ok(s) => s.clone(),
        Err(e) => return missing("repair-execute", address, format!("repair entry {index}: {e}")),
    };
    single(
        "repair-execute",
        address,
        Execute {
            index,
            address: address.into(),
            step,
            argv: with_args(&step_config.repair_command, &[address]),
            timeout: timeout_of(
                step_config.command_timeout_seconds,
                DEFAULT_REPAIR_COMMAND_TIMEOUT_SECONDS,
            ),
            retries: step_config.command_retries.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
            interval: Duration::from_secs(step_config.command_interval.unwrap_or(0).max(0) as u64),
        },
    )
}

/// Marks the entry watching and runs the repair command.
pub struct Execute {
    /// The entry's index.
    pub index: i64,
    /// The machine's address.
    pub address: String,
    /// The step.
    pub step: usize,
    /// The repair command, the address appended.
    pub argv: Vec<String>,
    /// Each attempt's limit (`None`: none).
    pub timeout: Option<Duration>,
    /// Attempts after the first.
    pub retries: u32,
    /// Pause after a failed attempt.
    pub interval: Duration,
}

#[async_trait::async_trait]
impl super::super::Commander for Execute {
    fn command(&self) -> RecordCommand {
        record(
            "repair-execute",
            &self.address,
            format!(
                "repair entry {} step {}: {}",
                self.index,
                self.step,
                self.argv.join(" ")
            ),
        )
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        start_step(infra, &cmd, self.index, self.step, RepairStepStatus::Watching).await?;
        match run_with_retries(&*infra.commands, &self.argv, self.timeout, self.retries, self.interval).await {
            Ok(_) => {
                tracing::info!(
                    index = self.index,
                    address = self.address,
                    step = self.step,
                    "repair command succeeded"
                );
            }
            // The term is over: the entry is left as it is for the next leader.
            Err(e) if e.is_lease_expired() => return Err(CommandError::new(&cmd, e)),
            Err(e) => {
                tracing::warn!(
                    index = self.index,
                    address = self.address,
                    step = self.step,
                    error = crate::error::error_chain(&e),
                    "repair command failed on every attempt; the repair entry fails"
                );
                let now = Utc::now();
                transition(infra, &cmd, self.index, |e| {
                    *e = e.transitioned(RepairStatus::Failed, e.step_status, now);
                })
                .await?;
            }
        }
        Ok(Outcome::Done)
    }
}
