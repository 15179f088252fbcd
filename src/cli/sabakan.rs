//! `ckecli sabakan ...` and `ckecli auto-repair ...`: the sabakan integration's settings (CKE's
//! commands and keys). Every input is checked before anything is stored: the URL must be an absolute
//! http(s) URL (`/graphql` is appended to its path unless it ends so, as CKE does), the template a
//! valid cluster template, the variables valid `MachineParams`.

use std::io::Write;

use clap::Subcommand;

use super::{display_input, read_input, read_yaml_input, CliError, Ctx};
use crate::model::ValidationError;
use crate::sabakan::{parse_template, QueryVariables};
use crate::storage::SabakanStorage;

/// `ckecli sabakan ...`
#[derive(Debug, Subcommand)]
pub enum SabakanCommand {
    /// Enable the sabakan integration.
    Enable,
    /// Disable the sabakan integration (the declaration is kept as it is).
    Disable,
    /// Print `true` when the integration is enabled, `false` otherwise.
    IsEnabled,
    /// Set the URL of sabakan's GraphQL endpoint (`/graphql` is appended unless the path ends so).
    SetUrl {
        /// An absolute http or https URL, e.g. `http://sabakan:10080`.
        url: String,
    },
    /// Print the URL of sabakan's GraphQL endpoint.
    GetUrl,
    /// Validate FILE (`-` = stdin) as a cluster template and store it.
    #[command(long_about = "Validate FILE (`-` = stdin) as a cluster template and store it.\n\n\
                      A template is a cluster declaration whose nodes have no address: exactly one \
                      control-plane node template and one or more worker templates; with two or more, \
                      each names the machine role it is for in the label cke.cybozu.com/role.")]
    SetTemplate {
        /// YAML or JSON file, or `-` for standard input.
        file: String,
    },
    /// Print the cluster template (YAML).
    GetTemplate,
    /// Validate FILE (`-` = stdin) as the query variables for available machines and store it.
    #[command(
        long_about = "Validate FILE (`-` = stdin) as the query variables for available machines and \
                            store it as given.\n\nFILE holds a JSON object like\n\n  {\"having\": {\"labels\": \
                            [{\"name\": \"foo\", \"value\": \"bar\"}], \"racks\": [0, 1], \"roles\": \
                            [\"cs\"], \"states\": [\"HEALTHY\"], \"minDaysBeforeRetire\": 90},\n   \
                            \"notHaving\": {\"roles\": [\"boot\"], \"states\": [\"RETIRED\"]}}"
    )]
    SetVariables {
        /// JSON file, or `-` for standard input.
        file: String,
    },
    /// Print the stored query variables for available machines.
    GetVariables,
}

/// `ckecli auto-repair ...`
#[derive(Debug, Subcommand)]
pub enum AutoRepairCommand {
    /// Enable sabakan-triggered automatic repair.
    Enable,
    /// Disable sabakan-triggered automatic repair.
    Disable,
    /// Print `true` when automatic repair is enabled, `false` otherwise.
    IsEnabled,
    /// Validate FILE (`-` = stdin) as the query variables for machines to repair and store it.
    #[command(
        long_about = "Validate FILE (`-` = stdin) as the query variables for machines to repair and \
                            store it as given.\n\nWithout it, CKE's default is used:\n\n  {\"having\": \
                            {\"states\": [\"UNHEALTHY\", \"UNREACHABLE\"]}, \"notHaving\": {\"roles\": \
                            [\"boot\"]}}"
    )]
    SetVariables {
        /// JSON file, or `-` for standard input.
        file: String,
    },
    /// Print the stored query variables for machines to repair.
    GetVariables,
}

/// The GraphQL endpoint for a URL given on the command line: absolute, http or https, and its path
/// ending in `/graphql` (appended otherwise, as CKE does).
pub fn graphql_url(url: &str) -> Result<String, ValidationError> {
    let invalid = |reason: String| ValidationError::single("URL", reason);
    let mut u = reqwest::Url::parse(url).map_err(|e| invalid(format!("{url:?} is not an absolute URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(invalid(format!("{url:?}: the scheme must be http or https")));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(invalid(format!("{url:?} has no host")));
    }
    if !u.path().ends_with("/graphql") {
        let path = format!("{}/graphql", u.path().trim_end_matches('/'));
        u.set_path(&path);
    }
    Ok(u.to_string())
}

fn read_variables(file: &str) -> Result<String, CliError> {
    let text = read_input(file)?;
    QueryVariables::parse(&text).map_err(|e| CliError::Invalid {
        what: display_input(file),
        problems: e,
    })?;
    Ok(text)
}

fn print_raw(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout();
    out.write_all(bytes)
        .and_then(|_| {
            if bytes.ends_with(b"\n") {
                Ok(())
            } else {
                out.write_all(b"\n")
            }
        })
        .map_err(|error| CliError::Io {
            what: "standard output".into(),
            error,
        })
}

/// Runs a `sabakan` command.
pub async fn run(ctx: &Ctx, cmd: SabakanCommand) -> Result<(), CliError> {
    match cmd {
        SabakanCommand::Enable => Ok(ctx.storage().await?.enable_sabakan(true).await?),
        SabakanCommand::Disable => Ok(ctx.storage().await?.enable_sabakan(false).await?),
        SabakanCommand::IsEnabled => {
            println!("{}", !ctx.storage().await?.is_sabakan_disabled().await?);
            Ok(())
        }
        SabakanCommand::SetUrl { url } => {
            let url = graphql_url(&url).map_err(|e| CliError::Invalid {
                what: "ckecli sabakan set-url".into(),
                problems: e,
            })?;
            Ok(ctx.storage().await?.put_sabakan_url(&url).await?)
        }
        SabakanCommand::GetUrl => match ctx.storage().await?.get_sabakan_url().await? {
            Some(u) => {
                println!("{u}");
                Ok(())
            }
            None => Err(CliError::NotFound(
                "no sabakan URL has been set (ckecli sabakan set-url URL)".into(),
            )),
        },
        SabakanCommand::SetTemplate { file } => {
            let template = parse_template(&read_yaml_input(&file)?).map_err(|e| CliError::Invalid {
                what: display_input(&file),
                problems: e,
            })?;
            Ok(ctx.storage().await?.put_sabakan_template(&template).await?)
        }
        SabakanCommand::GetTemplate => match ctx.storage().await?.get_sabakan_template().await? {
            Some((t, _)) => {
                print!("{}", serde_yaml::to_string(&t).map_err(anyhow::Error::from)?);
                Ok(())
            }
            None => Err(CliError::NotFound(
                "no cluster template has been set (ckecli sabakan set-template FILE)".into(),
            )),
        },
        SabakanCommand::SetVariables { file } => {
            let text = read_variables(&file)?;
            Ok(ctx
                .storage()
                .await?
                .put_sabakan_query_variables(text.as_bytes())
                .await?)
        }
        SabakanCommand::GetVariables => match ctx.storage().await?.get_sabakan_query_variables().await? {
            Some(v) => print_raw(&v),
            None => Err(CliError::NotFound(
                "no query variables have been set (the query's defaults apply)".into(),
            )),
        },
    }
}

/// Runs an `auto-repair` command.
pub async fn run_auto_repair(ctx: &Ctx, cmd: AutoRepairCommand) -> Result<(), CliError> {
    match cmd {
        AutoRepairCommand::Enable => Ok(ctx.storage().await?.enable_auto_repair(true).await?),
        AutoRepairCommand::Disable => Ok(ctx.storage().await?.enable_auto_repair(false).await?),
        AutoRepairCommand::IsEnabled => {
            println!("{}", !ctx.storage().await?.is_auto_repair_disabled().await?);
            Ok(())
        }
        AutoRepairCommand::SetVariables { file } => {
            let text = read_variables(&file)?;
            Ok(ctx
                .storage()
                .await?
                .put_auto_repair_query_variables(text.as_bytes())
                .await?)
        }
        AutoRepairCommand::GetVariables => match ctx.storage().await?.get_auto_repair_query_variables().await? {
            Some(v) => print_raw(&v),
            None => Err(CliError::NotFound(
                "no auto-repair query variables have been set (CKE's defaults apply)".into(),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_end_in_graphql() {
        for (given, want) in [
            ("http://sabakan:10080", "http://sabakan:10080/graphql"),
            ("http://sabakan:10080/", "http://sabakan:10080/graphql"),
            ("https://10.0.0.1/api", "https://10.0.0.1/api/graphql"),
            ("http://127.0.0.1:10080/graphql", "http://127.0.0.1:10080/graphql"),
        ] {
            assert_eq!(graphql_url(given).unwrap(), want);
        }
        for bad in ["sabakan:10080", "/graphql", "ftp://sabakan/", "http://", ""] {
            let e = graphql_url(bad).expect_err(bad);
            assert!(e.has_path("URL"), "{bad}: {e}");
        }
    }
}
