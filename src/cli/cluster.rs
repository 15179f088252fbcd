//! `ckecli cluster set|get|validate`.

use clap::{Subcommand, ValueEnum};

use super::{display_input, print_json, read_yaml_input, CliError, Ctx};
use crate::model::{read_cluster, Cluster, FieldError, Mode, ValidationError};
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
        /// Treat warnings (unknown fields, values CKE accepts but cke-rs doubts) as errors.
        #[arg(long)]
        strict: bool,
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
        /// Treat warnings (unknown fields, values CKE accepts but cke-rs doubts) as errors.
        #[arg(long)]
        strict: bool,
        /// Judge FILE as a sabakan template (nodes without addresses).
        #[arg(long)]
        template: bool,
    },
}

/// Runs a `cluster` command.
pub async fn run(ctx: &Ctx, cmd: ClusterCommand) -> Result<(), CliError> {
    match cmd {
        ClusterCommand::Set { file, strict } => {
            let cluster = read_checked(&file, strict, Mode::Declaration)?;
            let storage = ctx.storage().await?;
            // As CKE's `cluster set`: the stored constraints (or the defaults) must hold.
            let constraints = storage.get_constraints().await?;
            constraints.check(&cluster).map_err(|problems| CliError::Invalid {
                what: display_input(&file),
                problems,
            })?;
            storage.put_cluster(&cluster).await?;
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
                    print!("{}", crate::model::cluster_yaml(&cluster));
                    Ok(())
                }
            }
        }
        ClusterCommand::Validate { file, strict, template } => {
            let mode = if template { Mode::Template } else { Mode::Declaration };
            let cluster = read_checked(&file, strict, mode)?;
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

/// Reads the declaration in `file` (`-` for standard input) and judges it as CKE does; warnings go
/// to standard error, and are errors too with `strict`.
fn read_checked(file: &str, strict: bool, mode: Mode) -> Result<Cluster, CliError> {
    let what = display_input(file);
    let text = read_yaml_input(file)?;
    let (result, warnings) = match read_cluster(&text, mode) {
        Ok(d) => (Ok(d.cluster), d.warnings),
        Err(r) => (Err(r.errors), r.warnings),
    };
    if !strict {
        for w in &warnings {
            eprintln!("warning: {what}: {w}");
        }
    }
    let mut errors = match result {
        Ok(cluster) if !strict || warnings.is_empty() => return Ok(cluster),
        Ok(_) => vec![],
        Err(e) => e.errors,
    };
    if strict {
        errors.extend(
            warnings
                .into_iter()
                .map(|w| FieldError::new(w.path, format!("{} (a warning, an error under --strict)", w.reason))),
        );
    }
    Err(CliError::Invalid {
        what,
        problems: ValidationError { errors },
    })
}
