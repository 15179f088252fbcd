//! `ckecli constraints set|show`.

use clap::Subcommand;

use super::{print_json, CliError, Ctx};
use crate::storage::Storage;

/// `ckecli constraints ...`
#[derive(Debug, Subcommand)]
pub enum ConstraintsCommand {
    /// Set constraint NAME to VALUE (an integer).
    #[command(
        after_help = "Names: control-plane-count, minimum-workers-rate, maximum-unreachable-nodes-for-reboot, \
                            maximum-repair-queue-entries, wait-seconds-to-repair-rebooting"
    )]
    Set {
        /// Constraint name.
        name: String,
        /// Integer value.
        value: String,
    },
    /// Print the constraints (defaults for unset ones) as JSON.
    Show,
}

/// Runs a `constraints` command.
pub async fn run(ctx: &Ctx, cmd: ConstraintsCommand) -> Result<(), CliError> {
    let storage = ctx.storage().await?;
    match cmd {
        ConstraintsCommand::Set { name, value } => {
            let current = storage.get_constraints().await?;
            let next = current.with(&name, &value).map_err(|e| CliError::Invalid {
                what: "constraints".into(),
                problems: e,
            })?;
            storage.put_constraints(&next).await?;
            Ok(())
        }
        ConstraintsCommand::Show => print_json(&storage.get_constraints().await?),
    }
}
