//! `ckecli constraints set|show`.

use clap::Subcommand;

use super::{print_json, CliError, Ctx};
use crate::model::Constraints;
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
        /// Integer value (a negative one is refused with the constraint's name, not as a flag).
        #[arg(allow_negative_numbers = true)]
        value: String,
    },
    /// Print the constraints (defaults for unset ones) as JSON.
    Show,
}

/// Runs a `constraints` command.
pub async fn run(ctx: &Ctx, cmd: ConstraintsCommand) -> Result<(), CliError> {
    match cmd {
        ConstraintsCommand::Set { name, value } => {
            let invalid = |e| CliError::Invalid {
                what: "constraints".into(),
                problems: e,
            };
            // The name and the value are checked on their own first, so that invalid input is
            // refused (exit 2) without contacting etcd.
            Constraints::default().with(&name, &value).map_err(invalid)?;
            let storage = ctx.storage().await?;
            let next = storage.get_constraints().await?.with(&name, &value).map_err(invalid)?;
            storage.put_constraints(&next).await?;
            Ok(())
        }
        ConstraintsCommand::Show => print_json(&ctx.storage().await?.get_constraints().await?),
    }
}
