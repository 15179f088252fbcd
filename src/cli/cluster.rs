//! `ckecli cluster set|get|validate`.

use clap::{Subcommand, ValueEnum};

use super::{display_input, print_json, read_yaml_input, CliError, Ctx};
use crate::model::{parse_cluster, Cluster};
use crate::storage::Storage;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// YAML (the default).
    Yaml,
    /// JSON.
    Json,
}

/// `ckecli cluster ...`
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Validate FILE (`-` = stdin) and store it as the cluster declaration; invalid input stores nothing.
    Set {
        /// YAML or JSON file, or `-` for standard input.
        file: String,
    },
    /// Print the stored cluster declaration.
    Get {
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Output::Yaml)]
        output: Output,
    },
    /// Validate FILE (`-` = stdin) without storing it; needs no etcd.
    Validate {
        /// YAML or JSON file, or `-` for standard input.
        file: String,
    },
}

/// Runs a `cluster` command.
pub async fn run(ctx: &Ctx, cmd: ClusterCommand) -> Result<(), CliError> {
    match cmd {
        ClusterCommand::Set { file } => {
            let cluster = read_cluster(&file)?;
            ctx.storage().await?.put_cluster(&cluster).await?;
            Ok(())
        }
        ClusterCommand::Get { output } => {
            let Some(cluster) = ctx.storage().await?.get_cluster().await? else {
                return Err(CliError::NotFound(
                    "no cluster has been set (use ckecli cluster set FILE)".into(),
                ));
            };
            match output {
                Output::Json => print_json(&cluster),
                Output::Yaml => {
                    print!("{}", serde_yaml::to_string(&cluster).map_err(anyhow::Error::from)?);
                    Ok(())
                }
            }
        }
        ClusterCommand::Validate { file } => {
            let cluster = read_cluster(&file)?;
            let cp = cluster.control_planes().count();
            println!(
                "{}: valid: cluster {:?}, {} nodes ({} control plane)",
                display_input(&file),
                cluster.name,
                cluster.nodes.len(),
                cp
            );
            Ok(())
        }
    }
}

/// Reads and validates the declaration in `file` (`-` for standard input).
fn read_cluster(file: &str) -> Result<Cluster, CliError> {
    parse_cluster(&read_yaml_input(file)?).map_err(|e| CliError::Invalid {
        what: display_input(file),
        problems: e,
    })
}
