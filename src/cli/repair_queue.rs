//! `ckecli repair-queue ...`: the repair queue at `repairs/` (CKE's
//! `pkg/ckecli/cmd/repair_queue_*.go`, docs/repair.md). These commands only change the management
//! etcd: the leading cke processes the entries. `add` checks its arguments against the stored
//! declaration before anything is written.

use std::net::IpAddr;
use std::time::Duration;

use clap::Subcommand;

use super::{CliError, Ctx};
use crate::model::repair::find_operation;
use crate::model::{RepairEntry, ValidationError};
use crate::storage::{repairs, Storage};

/// `ckecli repair-queue ...`
#[derive(Debug, Subcommand)]
pub enum RepairQueueCommand {
    /// Let cke process the repair queue.
    Enable,
    /// Stop processing the repair queue: no drain or repair command starts, a drain in progress is
    /// abandoned; health checks still finish entries and deleted entries are still removed.
    Disable,
    /// Print `true` when the repair queue is processed, `false` otherwise.
    IsEnabled,
    /// Append a repair request for the machine at ADDRESS of type MACHINE_TYPE, to be processed with
    /// OPERATION of the procedure for that type.
    Add {
        /// The operation (`repair_operations[].operation` of the type's procedure).
        operation: String,
        /// The machine type (listed in some `repair_procedures[].machine_types`).
        machine_type: String,
        /// The machine's IP address.
        address: String,
        /// The machine's serial number.
        serial: Option<String>,
    },
    /// Print the entries as a JSON array.
    List,
    /// Delete entry INDEX: a finished entry is cleared, an unfinished one cancelled (the leader
    /// removes it at its next pass).
    Delete {
        /// The entry's index.
        index: String,
    },
    /// Delete every succeeded or failed entry; prints their indexes, one per line.
    DeleteFinished,
    /// Delete every entry that is not finished; prints their indexes, one per line.
    DeleteUnfinished,
    /// Clear the drain back-off of every entry, so that their drains are tried again at once.
    ResetBackoff,
    /// Wait until the repair queue is empty (exit 1 when it is not after the timeout).
    Wait {
        /// Seconds to wait; 0 checks once.
        #[arg(long, default_value_t = 30, allow_negative_numbers = true)]
        timeout_seconds: i64,
        /// Seconds between checks (at least 1).
        #[arg(long, default_value_t = 1, allow_negative_numbers = true)]
        interval_seconds: i64,
    },
}

fn invalid(what: &str, field: &str, reason: String) -> CliError {
    CliError::Invalid {
        what: what.into(),
        problems: ValidationError::single(field, reason),
    }
}

/// Checks the arguments of `add` against the declaration; the new entry.
pub fn new_entry(
    cluster: &crate::model::Cluster,
    operation: &str,
    machine_type: &str,
    address: &str,
    serial: &str,
) -> Result<RepairEntry, CliError> {
    const WHAT: &str = "repair-queue add";
    if address.parse::<IpAddr>().is_err() {
        return Err(invalid(WHAT, "ADDRESS", format!("{address:?} is not an IP address")));
    }
    use crate::model::repair::RepairLookupError::*;
    match find_operation(cluster, machine_type, operation) {
        Ok(_) => Ok(RepairEntry::new(operation, machine_type, address, serial)),
        Err(ProcedureNotFound { .. }) => Err(invalid(
            WHAT,
            "MACHINE_TYPE",
            format!("no repair procedure of the cluster lists machine type {machine_type:?}"),
        )),
        Err(e) => Err(invalid(WHAT, "OPERATION", e.to_string())),
    }
}

fn parse_index(index: &str) -> Result<i64, CliError> {
    index.parse::<i64>().ok().filter(|i| *i >= 0).ok_or_else(|| {
        invalid(
            "repair-queue delete",
            "INDEX",
            format!("{index:?} is not an entry index"),
        )
    })
}

/// Runs a `repair-queue` command.
pub async fn run(ctx: &Ctx, cmd: RepairQueueCommand) -> Result<(), CliError> {
    match cmd {
        RepairQueueCommand::Enable => Ok(repairs::set_enabled(ctx.storage().await?, true).await?),
        RepairQueueCommand::Disable => Ok(repairs::set_enabled(ctx.storage().await?, false).await?),
        RepairQueueCommand::IsEnabled => {
            println!("{}", repairs::is_enabled(ctx.storage().await?).await?);
            Ok(())
        }
        RepairQueueCommand::Add {
            operation,
            machine_type,
            address,
            serial,
        } => {
            let storage = ctx.storage().await?;
            let Some(cluster) = storage.get_cluster().await? else {
                return Err(CliError::NotFound(
                    "no cluster is declared (ckecli cluster set FILE): its repair procedures are needed".into(),
                ));
            };
            let entry = new_entry(
                &cluster,
                &operation,
                &machine_type,
                &address,
                serial.as_deref().unwrap_or_default(),
            )?;
            repairs::enqueue(storage, entry).await?;
            Ok(())
        }
        RepairQueueCommand::List => {
            println!(
                "{}",
                super::reboot_queue::json_4_spaces(&repairs::entries(ctx.storage().await?).await?)
            );
            Ok(())
        }
        RepairQueueCommand::Delete { index } => {
            let index = parse_index(&index)?;
            let updated = repairs::update(ctx.storage().await?, index, None, |e| {
                !std::mem::replace(&mut e.deleted, true)
            })
            .await?;
            match updated {
                Some(_) => Ok(()),
                None => Err(CliError::NotFound(format!("repair queue entry {index} does not exist"))),
            }
        }
        RepairQueueCommand::DeleteFinished => delete_where(ctx, true).await,
        RepairQueueCommand::DeleteUnfinished => delete_where(ctx, false).await,
        RepairQueueCommand::ResetBackoff => {
            let storage = ctx.storage().await?;
            for entry in repairs::entries(storage).await? {
                // An entry dequeued meanwhile is gone: nothing to reset.
                repairs::update(storage, entry.index, None, |e| {
                    let had = e.drain_backoff_count != 0 || e.drain_backoff_expire.is_some();
                    e.drain_backoff_count = 0;
                    e.drain_backoff_expire = None;
                    had
                })
                .await?;
            }
            Ok(())
        }
        RepairQueueCommand::Wait {
            timeout_seconds,
            interval_seconds,
        } => {
            if timeout_seconds < 0 {
                return Err(invalid(
                    "repair-queue wait",
                    "--timeout-seconds",
                    "must not be negative".into(),
                ));
            }
            if interval_seconds <= 0 {
                return Err(invalid(
                    "repair-queue wait",
                    "--interval-seconds",
                    "must be greater than zero".into(),
                ));
            }
            wait_empty(
                ctx.storage().await?,
                Duration::from_secs(timeout_seconds as u64),
                Duration::from_secs(interval_seconds as u64),
            )
            .await
        }
    }
}

/// Marks deleted every entry that is (`finished`) or is not finished and not deleted yet, printing
/// their indexes.
async fn delete_where(ctx: &Ctx, finished: bool) -> Result<(), CliError> {
    let storage = ctx.storage().await?;
    for entry in repairs::entries(storage).await? {
        if entry.deleted || entry.has_finished() != finished {
            continue;
        }
        // Marked only if it is still as listed; one dequeued or changed meanwhile is skipped.
        let mut marked = false;
        repairs::update(storage, entry.index, None, |e| {
            marked = !e.deleted && e.has_finished() == finished;
            e.deleted |= marked;
            marked
        })
        .await?;
        if marked {
            println!("{}", entry.index);
        }
    }
    Ok(())
}

/// CKE's `repair-queue wait`: prints the number of entries at each check until there is none.
async fn wait_empty(storage: &dyn Storage, timeout: Duration, interval: Duration) -> Result<(), CliError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = repairs::entries(storage).await?.len();
        if n == 0 {
            println!("repair queue is empty");
            return Ok(());
        }
        if timeout.is_zero() {
            return Err(CliError::Other(anyhow::anyhow!("repair queue is not empty")));
        }
        println!("repair queue entries: {n}");
        if tokio::time::Instant::now() + interval > deadline {
            return Err(CliError::Other(anyhow::anyhow!(
                "timed out waiting for repair queue to become empty after {timeout:?}"
            )));
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cluster, Node, Repair, RepairOperation, RepairProcedure, RepairStep};

    fn cluster() -> Cluster {
        let mut c = Cluster::new("c", "10.96.0.0/16", vec![Node::new("10.0.0.1", "u", true)]);
        c.repair = Some(Repair {
            repair_procedures: vec![RepairProcedure {
                machine_types: vec!["type1".into()],
                repair_operations: vec![RepairOperation {
                    operation: "op1".into(),
                    repair_steps: vec![RepairStep {
                        repair_command: vec!["true".into()],
                        ..Default::default()
                    }],
                    health_check_command: vec!["true".into()],
                    ..Default::default()
                }],
            }],
            ..Default::default()
        });
        c
    }

    #[test]
    fn add_checks_each_argument() {
        let c = cluster();
        let e = new_entry(&c, "op1", "type1", "10.0.0.9", "S1").unwrap();
        assert_eq!(
            (
                e.operation.as_str(),
                e.machine_type.as_str(),
                e.address.as_str(),
                e.serial.as_str()
            ),
            ("op1", "type1", "10.0.0.9", "S1")
        );
        for (op, ty, addr, field, words) in [
            ("op1", "type2", "10.0.0.9", "MACHINE_TYPE", "type2"),
            ("op2", "type1", "10.0.0.9", "OPERATION", "op2"),
            ("op1", "type1", "node-9", "ADDRESS", "not an IP address"),
        ] {
            let err = new_entry(&c, op, ty, addr, "").unwrap_err();
            assert_eq!(err.exit_code(), crate::error::ExitCode::InvalidInput);
            let text = err.to_string();
            assert!(text.contains(field) && text.contains(words), "{text}");
        }
        let mut none = c.clone();
        none.repair = None;
        assert!(new_entry(&none, "op1", "type1", "10.0.0.9", "")
            .unwrap_err()
            .to_string()
            .contains("MACHINE_TYPE"));
    }

    #[test]
    fn index_must_be_a_number() {
        assert_eq!(parse_index("12").unwrap(), 12);
        for bad in ["x", "-1", ""] {
            let err = parse_index(bad).unwrap_err();
            assert_eq!(err.exit_code(), crate::error::ExitCode::InvalidInput);
            assert!(err.to_string().contains("INDEX"), "{err}");
        }
    }
}
