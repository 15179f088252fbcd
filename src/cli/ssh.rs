//! `ckecli ssh`, `ckecli scp` and `ckecli ssh-hostkey`: reach a node with the key from Vault and the
//! pinned host key (no trust-on-first-use from the CLI: an unpinned node is refused).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::{read_input, CliError, Ctx};
use crate::infra::agent::hostkey::{normalise_public_key, HostKeyStore, StorageHostKeys};
use crate::infra::agent::ssh::SshPool;
use crate::model::ValidationError;
use crate::storage::Storage;

/// Arguments of `ckecli ssh`.
#[derive(Debug, Args)]
pub struct SshArgs {
    /// Private key file to use instead of the key stored in Vault.
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// `[user@]NODE`: a node address or host name from the cluster declaration.
    pub node: String,
    /// Command to run (an interactive shell when omitted).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// Arguments of `ckecli scp`.
#[derive(Debug, Args)]
pub struct ScpArgs {
    /// Private key file to use instead of the key stored in Vault.
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// Copy directories recursively.
    #[arg(short = 'r')]
    pub recursive: bool,
    /// Source: a local path or `[user@]NODE:PATH`.
    pub source: String,
    /// Destination: a local path or `[user@]NODE:PATH`.
    pub destination: String,
}

/// `ckecli ssh-hostkey ...`
#[derive(Debug, Subcommand)]
pub enum HostKeyCommand {
    /// List pinned host keys.
    List,
    /// Pin KEY (an OpenSSH public key line, or `-` for stdin) for ADDR.
    Set {
        /// Node address.
        address: String,
        /// Public key line, or `-`.
        key: String,
    },
    /// Connect to each ADDR, read its host key and pin it (verify the fingerprints out of band).
    Scan {
        /// SSH port.
        #[arg(long, default_value_t = 22)]
        port: u16,
        /// Node addresses.
        #[arg(required = true)]
        addresses: Vec<String>,
    },
    /// Remove the pin of ADDR.
    Delete {
        /// Node address.
        address: String,
    },
}

fn invalid(field: &str, reason: String) -> CliError {
    CliError::Invalid {
        what: "arguments".into(),
        problems: ValidationError::single(field, reason),
    }
}

fn check_ip(a: &str) -> Result<(), CliError> {
    a.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| invalid("ADDR", format!("{a:?} is not an IP address")))
}

/// Resolves `[user@]NODE` against the declaration: (user, address).
async fn resolve(ctx: &Ctx, target: &str) -> Result<(String, String), CliError> {
    let (user, node) = match target.split_once('@') {
        Some((u, n)) => (Some(u.to_string()), n.to_string()),
        None => (None, target.to_string()),
    };
    let cluster = ctx.storage().await?.get_cluster().await?;
    let found = cluster
        .as_ref()
        .and_then(|c| c.nodes.iter().find(|n| n.address == node || n.hostname == node));
    let (user, address) = match (found, user) {
        (Some(n), u) => (u.unwrap_or_else(|| n.user.clone()), n.address.clone()),
        (None, Some(u)) if node.parse::<IpAddr>().is_ok() => (u, node),
        (None, _) => {
            return Err(CliError::NotFound(format!(
                "{node} is not a node of the cluster (give user@ADDRESS for others)"
            )))
        }
    };
    // Never let a user name reach ssh as an option.
    if !crate::model::USER_NAME.is_match(&user) {
        return Err(CliError::Usage(format!("{user:?} is not a user name")));
    }
    Ok((user, address))
}

struct Session {
    dir: tempfile::TempDir,
}

impl Session {
    /// Writes the private key and a known_hosts file with the pinned key of `address`.
    async fn prepare(ctx: &Ctx, address: &str, identity: &Option<PathBuf>) -> Result<Session, CliError> {
        let pins = StorageHostKeys(Arc::new(ctx.storage().await?.clone()));
        let Some(pinned) = pins.get(address).await? else {
            return Err(CliError::NotFound(format!(
                "no pinned SSH host key for {address}: run ckecli ssh-hostkey scan {address} (and check the fingerprint)"
            )));
        };
        let key = match identity {
            Some(p) => read_input(p.to_str().unwrap_or_default())?,
            None => {
                let vault = ctx.vault().await?;
                crate::infra::pki::secrets::ssh_private_key(&vault, address)
                    .await?
                    .ok_or_else(|| CliError::NotFound("no SSH key in Vault (ckecli vault ssh-privkey)".into()))?
            }
        };
        let dir = tempfile::tempdir().map_err(|e| CliError::Io {
            what: "temporary directory".into(),
            error: e,
        })?;
        let write = |name: &str, content: &str| {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let p = dir.path().join(name);
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&p)
                .and_then(|mut f| f.write_all(content.as_bytes()))
                .map_err(|e| CliError::Io {
                    what: format!("cannot write {}", p.display()),
                    error: e,
                })
        };
        let mut key = key;
        if !key.ends_with('\n') {
            key.push('\n');
        }
        write("key", &key)?;
        write("known_hosts", &format!("{address} {pinned}\n"))?;
        Ok(Session { dir })
    }

    fn options(&self) -> Vec<String> {
        let d = self.dir.path();
        vec![
            "-i".into(),
            d.join("key").display().to_string(),
            "-o".into(),
            format!("UserKnownHostsFile={}", d.join("known_hosts").display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            // Only the pinned key: no other known_hosts file, no user configuration.
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-F".into(),
            "/dev/null".into(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "ConnectTimeout=5".into(),
        ]
    }
}

fn run_child(program: &str, args: &[String]) -> Result<(), CliError> {
    let status = std::process::Command::new(program)
        .args(args)
        .status()
        .map_err(|e| CliError::Io {
            what: format!("cannot run {program}"),
            error: e,
        })?;
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(CliError::ChildExit(u8::try_from(c).unwrap_or(1))),
        None => Err(CliError::ChildExit(1)),
    }
}

/// Runs `ckecli ssh`.
pub async fn ssh(ctx: &Ctx, args: SshArgs) -> Result<(), CliError> {
    let (user, address) = resolve(ctx, &args.node).await?;
    let s = Session::prepare(ctx, &address, &args.identity).await?;
    let mut a = s.options();
    a.push(format!("{user}@{address}"));
    if !args.command.is_empty() {
        a.push("--".into());
        a.extend(args.command.iter().cloned());
    }
    run_child("ssh", &a)
}

/// Runs `ckecli scp`.
pub async fn scp(ctx: &Ctx, args: ScpArgs) -> Result<(), CliError> {
    let remote = |s: &str| {
        s.split_once(':')
            .filter(|(h, _)| !h.contains('/'))
            .map(|(h, p)| (h.to_string(), p.to_string()))
    };
    let (node_side, path_src, path_dst) = match (remote(&args.source), remote(&args.destination)) {
        (Some(r), None) => (r.0.clone(), Some(r.1), None),
        (None, Some(r)) => (r.0.clone(), None, Some(r.1)),
        _ => {
            return Err(invalid(
                "SOURCE/DESTINATION",
                "exactly one side must be NODE:PATH".into(),
            ))
        }
    };
    let (user, address) = resolve(ctx, &node_side).await?;
    let s = Session::prepare(ctx, &address, &args.identity).await?;
    let mut a = s.options();
    if args.recursive {
        a.push("-r".into());
    }
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.clone()
    };
    match (path_src, path_dst) {
        (Some(p), None) => {
            a.push(format!("{user}@{host}:{p}"));
            a.push(args.destination.clone());
        }
        (None, Some(p)) => {
            a.push(args.source.clone());
            a.push(format!("{user}@{host}:{p}"));
        }
        _ => unreachable!("checked above"),
    }
    run_child("scp", &a)
}

/// Runs `ckecli ssh-hostkey`.
pub async fn hostkey(ctx: &Ctx, cmd: HostKeyCommand) -> Result<(), CliError> {
    let pins = StorageHostKeys(Arc::new(ctx.storage().await?.clone()));
    match cmd {
        HostKeyCommand::List => {
            for (addr, key) in pins.list().await? {
                println!("{addr} {key}");
            }
            Ok(())
        }
        HostKeyCommand::Set { address, key } => {
            check_ip(&address)?;
            let line = if key == "-" { read_input("-")? } else { key };
            let key = normalise_public_key(line.trim()).map_err(|r| invalid("KEY", r))?;
            pins.set(&address, &key).await?;
            Ok(())
        }
        HostKeyCommand::Scan { port, addresses } => {
            for a in &addresses {
                check_ip(a)?;
            }
            for a in addresses {
                let key = SshPool::scan(&a, port, Duration::from_secs(5))
                    .await
                    .map_err(|e| CliError::Other(e.into()))?;
                let previous = pins.get(&a).await?;
                pins.set(&a, &key).await?;
                match previous {
                    Some(p) if p != key => println!("{a} {key} (replaced {p})"),
                    _ => println!("{a} {key}"),
                }
            }
            Ok(())
        }
        HostKeyCommand::Delete { address } => {
            check_ip(&address)?;
            if pins.delete(&address).await? {
                Ok(())
            } else {
                Err(CliError::NotFound(format!("no pinned key for {address}")))
            }
        }
    }
}
