//! The repair queue's operators (CKE's `op/repair_*.go`), one per file, each one command. The
//! planner names the entry (index, address) and the step; the operator takes the entry's machine
//! type, operation and Node name from the status the plan was made from, the commands from the
//! declaration. Every change of an entry is a transition applied to the entry as stored (a
//! compare-and-swap fenced on the leader's key, [`transition`]): a `ckecli repair-queue delete` or
//! `reset-backoff` made meanwhile is kept. The queue's commands run on cke's host through
//! [`crate::infra::HostCommands`], the address appended.

pub mod dequeue;
pub mod drain_start;
pub mod drain_timeout;
pub mod execute;
pub mod finish;

#[cfg(test)]
mod tests;

use chrono::Utc;
use rand::Rng;

use super::{CommandError, Operator, Outcome, Refusal, SeqOperator};
use crate::error::Retry;
use crate::model::repair::drain_backoff_jitter_bound;
use crate::model::{RecordCommand, RepairEntry, RepairStatus, RepairStepStatus};
use crate::op::{Infra, OpContext};
use crate::storage::repairs;

fn record(name: &str, address: &str, detail: impl Into<String>) -> RecordCommand {
    RecordCommand {
        name: name.into(),
        target: address.into(),
        detail: detail.into(),
    }
}

/// The entry `index` of the status the plan was made from.
fn planned_entry(ctx: OpContext<'_>, index: i64) -> Option<RepairEntry> {
    ctx.status
        .repair_queue
        .entries
        .iter()
        .find(|e| e.index == index)
        .cloned()
}

/// The operator `name` on the machine at `address`: one command.
fn single(name: &'static str, address: &str, command: impl super::Commander + 'static) -> Box<dyn Operator> {
    SeqOperator::boxed(name, vec![address.into()], vec![Box::new(command)])
}

/// An operator that fails at once, saying `why` (the planned entry or step cannot be found).
fn missing(name: &'static str, address: &str, why: String) -> Box<dyn Operator> {
    let address = address.to_string();
    single(name, &address.clone(), Missing { name, address, why })
}

/// The planned entry `index` is not in the status it was planned from.
fn not_probed(name: &'static str, index: i64, address: &str) -> Box<dyn Operator> {
    missing(
        name,
        address,
        format!("repair entry {index} is not in the probed queue"),
    )
}

struct Missing {
    name: &'static str,
    address: String,
    why: String,
}

#[async_trait::async_trait]
impl super::Commander for Missing {
    fn command(&self) -> RecordCommand {
        record(self.name, &self.address, self.why.clone())
    }

    async fn run(&self, _infra: &Infra) -> Result<Outcome, CommandError> {
        Err(CommandError::with_retry(
            &self.command(),
            Retry::Soon,
            Refusal(self.why.clone()),
        ))
    }
}

/// Applies `change` to the stored entry `index` (read, change, compare-and-swap on its revision,
/// fenced on the leader's key; again on a conflict), with `nodename` refreshed from the declaration. The entry as written. A missing entry (it was
/// dequeued) fails the command.
async fn transition(
    infra: &Infra,
    cmd: &RecordCommand,
    index: i64,
    mut change: impl FnMut(&mut RepairEntry) + Send,
) -> Result<RepairEntry, CommandError> {
    let updated = repairs::update(&*infra.storage, index, infra.fence.as_ref(), |e| {
        // Stored with the Node name of this pass, as CKE writes the entry it refreshed.
        e.fill_nodename(&infra.cluster);
        change(e);
        true
    })
    .await
    .map_err(|e| CommandError::new(cmd, e))?;
    updated.ok_or_else(|| {
        CommandError::with_retry(
            cmd,
            Retry::Soon,
            Refusal(format!("repair entry {index} is no longer in the queue")),
        )
    })
}

/// Starts step `step` of entry `index`: `processing` with `step_status` since now.
async fn start_step(
    infra: &Infra,
    cmd: &RecordCommand,
    index: i64,
    step: usize,
    step_status: RepairStepStatus,
) -> Result<RepairEntry, CommandError> {
    let now = Utc::now();
    transition(infra, cmd, index, |e| {
        *e = e.transitioned(RepairStatus::Processing, step_status, now);
        e.step = step;
    })
    .await
}

/// CKE's `repairDrainBackOff`: processing, waiting, one more back-off expiring `300 + rand[0, 300 ×
/// count)` seconds from now.
async fn back_off(infra: &Infra, cmd: &RecordCommand, index: i64, why: &str) -> Result<RepairEntry, CommandError> {
    let now = Utc::now();
    let e = transition(infra, cmd, index, |e| {
        let bound = drain_backoff_jitter_bound(e.drain_backoff_count + 1);
        let jitter = rand::rng().random_range(0..bound);
        *e = e.backed_off(now, jitter);
    })
    .await?;
    tracing::warn!(
        index,
        address = e.address,
        count = e.drain_backoff_count,
        expire = ?e.drain_backoff_expire,
        why,
        "repair drain backed off"
    );
    Ok(e)
}
