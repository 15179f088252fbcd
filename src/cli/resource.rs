//! `ckecli resource set|list|get|delete`: the user-defined resources kept at `resource/<key>`
//! (CKE's `pkg/ckecli/cmd/resource_*.go`). cke applies them; these commands only change the
//! management etcd. Every document of a file is checked before anything is written or deleted.

use std::collections::BTreeSet;

use clap::Subcommand;

use super::{display_input, read_yaml_input, CliError, Ctx};
use crate::model::resource::{parse_documents, parse_resource_key, ParsedDocument};
use crate::storage::Storage;

/// `ckecli resource ...`
#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Register the resources of FILE (YAML documents separated by `---`, or JSON objects; `-` for
    /// standard input). A bad document stores nothing.
    Set {
        /// The file, or `-`.
        file: String,
    },
    /// Print the keys of the registered resources, one per line (`Kind/name`, `Kind/namespace/name`).
    List,
    /// Print a registered resource as it was given.
    Get {
        /// Its key, e.g. `Namespace/foo` or `ConfigMap/foo/bar`.
        key: String,
    },
    /// Unregister the resources of FILE (`-` for standard input); their objects stay in Kubernetes.
    Delete {
        /// The file, or `-`.
        file: String,
    },
}

/// Runs a `resource` command.
pub async fn run(ctx: &Ctx, cmd: ResourceCommand) -> Result<(), CliError> {
    match cmd {
        ResourceCommand::Set { file } => {
            let docs = read_documents(&file)?;
            let storage = ctx.storage().await?;
            for doc in last_of_each_key(docs, &file) {
                storage.put_resource(&doc.key, doc.definition).await?;
            }
            Ok(())
        }
        ResourceCommand::List => {
            for key in ctx.storage().await?.list_resource_keys().await? {
                println!("{key}");
            }
            Ok(())
        }
        ResourceCommand::Get { key } => {
            parse_resource_key(&key).map_err(|error| CliError::Resources {
                what: "KEY".into(),
                error,
            })?;
            match ctx.storage().await?.get_resource(&key).await? {
                Some((definition, _)) => {
                    // As CKE's `resource get`: the document without surrounding blank space.
                    println!("{}", String::from_utf8_lossy(&definition).trim());
                    Ok(())
                }
                None => Err(CliError::NotFound(format!("resource {key} is not registered"))),
            }
        }
        ResourceCommand::Delete { file } => {
            let docs = read_documents(&file)?;
            let storage = ctx.storage().await?;
            let keys: BTreeSet<String> = docs.into_iter().map(|d| d.key).collect();
            for key in keys {
                if !storage.delete_resource(&key).await? {
                    eprintln!("ckecli: {key} was not registered");
                }
            }
            Ok(())
        }
    }
}

/// Reads FILE and parses every document; any bad one is invalid input naming its number and field.
fn read_documents(file: &str) -> Result<Vec<ParsedDocument>, CliError> {
    let text = read_yaml_input(file)?;
    let docs = parse_documents(text.as_bytes()).map_err(|error| CliError::Resources {
        what: display_input(file),
        error,
    })?;
    if docs.is_empty() {
        return Err(CliError::EmptyInput(display_input(file)));
    }
    Ok(docs)
}

/// The documents to store: when a key appears twice, the later document wins (as CKE's one put
/// after another), with a warning.
fn last_of_each_key(docs: Vec<ParsedDocument>, file: &str) -> Vec<ParsedDocument> {
    let mut kept: Vec<ParsedDocument> = Vec::with_capacity(docs.len());
    for doc in docs {
        if let Some(i) = kept.iter().position(|d| d.key == doc.key) {
            let earlier = kept.remove(i);
            eprintln!(
                "ckecli: {}: document {} replaces document {} ({})",
                display_input(file),
                doc.number,
                earlier.number,
                doc.key
            );
        }
        kept.push(doc);
    }
    kept
}
