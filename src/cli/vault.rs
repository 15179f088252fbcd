//! `ckecli vault init|config|ssh-privkey|enckey`.

use std::net::IpAddr;

use clap::Subcommand;

use super::{display_input, read_input, CliError, Ctx};
use crate::infra::pki::{secrets, vault_init, VaultClient};
use crate::model::ValidationError;
use crate::storage::{Storage, VaultConfig};

/// `ckecli vault ...`
#[derive(Debug, Subcommand)]
pub enum VaultCommand {
    /// Create (idempotently) the PKI mounts, roles, KV mount, policy and AppRole cke needs, and store
    /// the CA certificates and the Vault connection in etcd.
    Init {
        /// Vault address.
        #[arg(long, env = "VAULT_ADDR")]
        address: String,
        /// A Vault token allowed to create mounts, policies and auth methods.
        #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
        token: String,
        /// PEM file of the CA that signs Vault's server certificate (stored with the connection).
        #[arg(long)]
        ca_cert: Option<String>,
    },
    /// Store the Vault connection from a JSON file (`endpoint`, `ca-cert`, `role-id`, `secret-id`);
    /// the credentials are tried first, nothing is stored if they do not work.
    Config {
        /// JSON file, or `-` for standard input.
        file: String,
    },
    /// Store an SSH private key in Vault for one node (`--host ADDR`) or as the default.
    SshPrivkey {
        /// Node address; the default key when omitted.
        #[arg(long)]
        host: Option<String>,
        /// Private key file (OpenSSH or PEM), or `-` for standard input.
        file: String,
    },
    /// Generate a new Kubernetes Secret-encryption key; the current one is kept for decryption.
    Enckey,
}

/// Runs a `vault` command.
pub async fn run(ctx: &Ctx, cmd: VaultCommand) -> Result<(), CliError> {
    match cmd {
        VaultCommand::Init {
            address,
            token,
            ca_cert,
        } => {
            let ca = match &ca_cert {
                Some(f) => read_input(f)?,
                None => String::new(),
            };
            let root = VaultClient::with_token(&address, &ca, &token)
                .map_err(|e| CliError::Invalid {
                    what: "vault address".into(),
                    problems: ValidationError::single("address", e.to_string()),
                })?
                .without_retries();
            let storage = ctx.storage().await?;
            let report = vault_init(&root, storage, &ca).await.map_err(|e| match e {
                crate::infra::pki::InitError::Vault(v) => CliError::Vault(v),
                crate::infra::pki::InitError::Storage(s) => CliError::Storage(s),
            })?;
            if report.changes.is_empty() {
                println!("vault init: everything already in place; nothing changed");
            }
            for c in report.changes {
                println!("{c}");
            }
            Ok(())
        }
        VaultCommand::Config { file } => {
            let text = read_input(&file)?;
            let config: VaultConfig = serde_json::from_str(&text).map_err(|e| CliError::Invalid {
                what: display_input(&file),
                problems: ValidationError::single("", format!("not a Vault connection: {e}")),
            })?;
            for (field, v) in [
                ("endpoint", &config.endpoint),
                ("role-id", &config.role_id),
                ("secret-id", &config.secret_id),
            ] {
                if v.trim().is_empty() {
                    return Err(CliError::Invalid {
                        what: display_input(&file),
                        problems: ValidationError::single(field, "is required"),
                    });
                }
            }
            VaultClient::connect(&config).await?;
            ctx.storage().await?.put_vault_config(&config).await?;
            Ok(())
        }
        VaultCommand::SshPrivkey { host, file } => {
            if let Some(h) = &host {
                if h.parse::<IpAddr>().is_err() {
                    return Err(CliError::Invalid {
                        what: "--host".into(),
                        problems: ValidationError::single("host", format!("{h:?} is not an IP address")),
                    });
                }
            }
            let key = read_input(&file)?;
            if let Err(e) = russh::keys::decode_secret_key(&key, None) {
                return Err(CliError::Invalid {
                    what: display_input(&file),
                    problems: ValidationError::single("", format!("not an unencrypted SSH private key: {e}")),
                });
            }
            let vault = ctx.vault().await?;
            secrets::put_ssh_private_key(&vault, host.as_deref(), &key).await?;
            Ok(())
        }
        VaultCommand::Enckey => {
            let vault = ctx.vault().await?;
            let keys = secrets::rotate_k8s_encryption_key(&vault, chrono::Utc::now()).await?;
            println!(
                "new encryption key {} is current; kept: {}",
                keys[0].name,
                keys.len() - 1
            );
            Ok(())
        }
    }
}
