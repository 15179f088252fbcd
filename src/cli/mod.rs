//! `ckecli`: the operators' command line. It talks to the management etcd and Vault, never to `cke`.
//!
//! One file per command group. [`main_impl`] parses the arguments, runs the command and maps errors to
//! exit codes: 0 success, 1 runtime failure (etcd or Vault unreachable, nothing found), 2 usage or invalid
//! input. Invalid input is refused before anything is written.

mod ca;
mod cluster;
mod constraints;
mod etcd;
mod history;
mod kubernetes;
mod reboot_queue;
mod repair_queue;
mod resource;
mod sabakan;
mod ssh;
mod vault;

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};
use tokio::sync::OnceCell;

use crate::config::{Config, ConfigError, DEFAULT_CONFIG_PATH};
use crate::error::{print_error, ExitCode};
use crate::model::ValidationError;
use crate::storage::{EtcdStorage, Storage, StorageError};

/// Command-line arguments of `ckecli`.
#[derive(Debug, Parser)]
#[command(
    name = "ckecli",
    version,
    about = "Control cke-rs through the management etcd and Vault"
)]
pub struct Cli {
    /// Path of the management etcd config file (CKE's etcdutil format).
    #[arg(long, global = true, default_value = DEFAULT_CONFIG_PATH, env = "CKECLI_CONFIG")]
    pub config: PathBuf,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set, get or validate the cluster declaration.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Set or show constraints.
    #[command(subcommand)]
    Constraints(constraints::ConstraintsCommand),
    /// Show operation records, newest first.
    History(history::HistoryArgs),
    /// Print the name of the current leader (exit 1 when there is none).
    Leader,
    /// Print the leader's last published status as JSON.
    Status,
    /// Print what the leader plans to do next (operation, targets, reason), without doing it.
    Plan {
        /// Output format: text or json.
        #[arg(long, short, default_value = "text", value_parser = ["text", "json"])]
        output: String,
    },
    /// Print the images cke runs, one per line (from the leader's status; cke's defaults when none
    /// was published); `--output wide` adds each image's role and the Kubernetes version.
    Images {
        /// Output format: names, or wide.
        #[arg(long, short, default_value = "names", value_parser = ["names", "wide"])]
        output: String,
    },
    /// Set up Vault and manage the secrets kept there.
    #[command(subcommand)]
    Vault(vault::VaultCommand),
    /// Set or get CA certificates stored in etcd.
    #[command(subcommand)]
    Ca(ca::CaCommand),
    /// The managed etcd: client certificates, users, backups.
    #[command(subcommand)]
    Etcd(etcd::EtcdCommand),
    /// Kubernetes client credentials.
    #[command(subcommand)]
    Kubernetes(kubernetes::KubernetesCommand),
    /// User-defined Kubernetes resources that cke applies (`resource/<key>`).
    #[command(subcommand)]
    Resource(resource::ResourceCommand),
    /// The reboot queue: nodes to drain, reboot and bring back, one safe step at a time.
    #[command(subcommand, name = "reboot-queue", alias = "rq")]
    RebootQueue(reboot_queue::RebootQueueCommand),
    /// The repair queue: requests to repair machines (docs/repair.md).
    #[command(subcommand, name = "repair-queue")]
    RepairQueue(repair_queue::RepairQueueCommand),
    /// Open a shell or run a command on a node (key from Vault, pinned host key).
    Ssh(ssh::SshArgs),
    /// Copy files to or from a node.
    Scp(ssh::ScpArgs),
    /// Manage pinned SSH host keys.
    #[command(subcommand, name = "ssh-hostkey")]
    SshHostkey(ssh::HostKeyCommand),
    /// The sabakan integration: the cluster declaration generated from sabakan's machines.
    #[command(subcommand)]
    Sabakan(sabakan::SabakanCommand),
    /// Sabakan-triggered automatic repair.
    #[command(subcommand, name = "auto-repair")]
    AutoRepair(sabakan::AutoRepairCommand),
}

/// Errors of `ckecli` commands; [`CliError::exit_code`] maps them to exit codes.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input (a file or an argument) is invalid; nothing was changed.
    #[error("{what}: {problems}")]
    Invalid {
        /// What was given, e.g. the file name.
        what: String,
        /// Every problem, each naming its field.
        problems: ValidationError,
    },
    /// A resource document (or key) is invalid; nothing was changed.
    #[error("{what}: {error}")]
    Resources {
        /// What was given: the file name, or `KEY`.
        what: String,
        /// Every invalid document, each with its number and field.
        error: crate::model::ResourceError,
    },
    /// A file (or standard input) named on the command line cannot be read; nothing was changed.
    #[error("cannot read {path}: {error}")]
    Unreadable {
        /// The file as named on the command line.
        path: String,
        /// Why it cannot be read.
        error: std::io::Error,
    },
    /// A file (or standard input) named on the command line holds nothing but whitespace (or, for a
    /// YAML document, comments); nothing was changed.
    #[error("{0} is empty")]
    EmptyInput(String),
    /// The arguments do not make sense together.
    #[error("{0}")]
    Usage(String),
    /// The config file cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The management etcd failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Vault failed.
    #[error(transparent)]
    Vault(#[from] crate::infra::pki::VaultError),
    /// The managed etcd failed.
    #[error(transparent)]
    ManagedEtcd(#[from] crate::infra::managed_etcd::ManagedEtcdError),
    /// Reading input or writing output failed.
    #[error("{what}: {error}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The thing asked for does not exist (e.g. no leader, no cluster declared).
    #[error("{0}")]
    NotFound(String),
    /// `ckecli status`: no status has been published (exit 4, as CKE's).
    #[error("{0}")]
    NoStatus(String),
    /// A child process (ssh, scp) exited with this code; it has said why.
    #[error("exited with {0}")]
    ChildExit(u8),
    /// Any other runtime failure, with its context.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl CliError {
    /// The exit code: invalid input 2, no status 4, a child's own code, any other failure 1.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Invalid { .. }
            | CliError::Resources { .. }
            | CliError::Unreadable { .. }
            | CliError::EmptyInput(_)
            | CliError::Usage(_)
            | CliError::Config(_) => ExitCode::InvalidInput,
            CliError::NoStatus(_) => ExitCode::NoStatus,
            CliError::ChildExit(c) => ExitCode::Child(*c),
            CliError::Storage(_)
            | CliError::Vault(_)
            | CliError::ManagedEtcd(_)
            | CliError::Io { .. }
            | CliError::NotFound(_)
            | CliError::Other(_) => ExitCode::Failure,
        }
    }
}

/// What every command may need, created lazily so that offline commands never touch etcd.
pub struct Ctx {
    config_path: PathBuf,
    storage: OnceCell<EtcdStorage>,
}

impl Ctx {
    /// A context for this config file.
    pub fn new(config_path: &Path) -> Self {
        Ctx {
            config_path: config_path.to_path_buf(),
            storage: OnceCell::new(),
        }
    }

    /// The parsed config file.
    pub fn config(&self) -> Result<Config, CliError> {
        Ok(Config::load(&self.config_path)?)
    }

    /// A Vault client logged in with the AppRole stored in etcd (`vault` key).
    pub async fn vault(&self) -> Result<crate::infra::pki::VaultClient, CliError> {
        let Some(config) = self.storage().await?.get_vault_config().await? else {
            return Err(CliError::NotFound(
                "Vault is not configured: run ckecli vault init or ckecli vault config".into(),
            ));
        };
        Ok(crate::infra::pki::VaultClient::connect(&config).await?)
    }

    /// The management etcd client.
    pub async fn storage(&self) -> Result<&EtcdStorage, CliError> {
        self.storage
            .get_or_try_init(|| async {
                let config = self.config()?;
                Ok::<_, CliError>(EtcdStorage::connect(&config).await?)
            })
            .await
    }
}

/// Reads a file, or standard input for `-`. A missing, unreadable or blank input is invalid input.
/// More than [`crate::model::limits::MAX_INPUT_BYTES`] is refused without reading the rest.
pub fn read_input(path: &str) -> Result<String, CliError> {
    use crate::model::limits::{check_size, MAX_INPUT_BYTES};
    let mut bytes = Vec::new();
    let limit = MAX_INPUT_BYTES as u64 + 1;
    let res = if path == "-" {
        std::io::stdin().take(limit).read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut bytes).map(|_| ()))
    };
    let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let text = res
        .and_then(|()| check_size(bytes.len()).map_err(|e| invalid(e.to_string())))
        .and_then(|()| String::from_utf8(bytes).map_err(|e| invalid(e.to_string())))
        .map_err(|error| CliError::Unreadable {
            path: display_input(path),
            error,
        })?;
    if text.trim().is_empty() {
        return Err(CliError::EmptyInput(display_input(path)));
    }
    Ok(text)
}

/// Reads a YAML (or JSON) document like [`read_input`]; one holding only comments is empty too.
pub fn read_yaml_input(path: &str) -> Result<String, CliError> {
    let text = read_input(path)?;
    let blank = text
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || l.starts_with('#') || l == "---" || l == "...");
    if blank {
        return Err(CliError::EmptyInput(display_input(path)));
    }
    Ok(text)
}

/// How an input path is named in messages.
pub fn display_input(path: &str) -> String {
    if path == "-" {
        "standard input".into()
    } else {
        path.into()
    }
}

/// Prints a value as indented JSON on standard output.
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<(), CliError> {
    let s = serde_json::to_string_pretty(v).map_err(anyhow::Error::from)?;
    println!("{s}");
    Ok(())
}

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let ctx = Ctx::new(&cli.config);
    match cli.command {
        Command::Cluster(c) => cluster::run(&ctx, c).await,
        Command::Constraints(c) => constraints::run(&ctx, c).await,
        Command::History(a) => history::run(&ctx, a).await,
        Command::Leader => match ctx.storage().await?.get_leader().await? {
            Some(name) => {
                println!("{name}");
                Ok(())
            }
            None => Err(CliError::NotFound("no leader".into())),
        },
        Command::Status => match ctx.storage().await?.get_status().await? {
            Some(s) => print_json(&s),
            None => Err(CliError::NoStatus(
                "no status has been published yet (is a cke leader running?)".into(),
            )),
        },
        Command::Plan { output } => {
            let Some(s) = ctx.storage().await?.get_status().await? else {
                return Err(CliError::NotFound(
                    "no plan has been published yet (is a cke leader running?)".into(),
                ));
            };
            if output == "json" {
                return print_json(&s);
            }
            println!("phase: {} (since {})", s.phase, s.timestamp);
            if !s.note.is_empty() {
                println!("note: {}", s.note);
            }
            if s.operations.is_empty() {
                println!("nothing planned");
            }
            for op in &s.operations {
                println!("- {} [{}]: {}", op.name(), op.targets().join(","), op.reason);
            }
            Ok(())
        }
        Command::Images { output } => {
            let status = ctx.storage().await?.get_status().await?;
            let images = match status.as_ref().and_then(|s| s.images.clone()) {
                Some(i) => i,
                None => {
                    eprintln!("ckecli: no leader has published its images; these are cke's defaults");
                    crate::topology::Images::default()
                }
            };
            let version = crate::k8s::KubeVersion::from_image(&images.kubernetes)
                .map(|v| format!("Kubernetes {v}"))
                .unwrap_or_else(|e| format!("no Kubernetes version: {e}"));
            for (role, image, extra) in [
                ("etcd", &images.etcd, String::new()),
                ("tools", &images.tools, String::new()),
                ("kubernetes", &images.kubernetes, version),
                ("coredns", &images.coredns, String::new()),
                ("unbound", &images.unbound, String::new()),
                ("unbound_exporter", &images.unbound_exporter, String::new()),
            ] {
                if output == "wide" {
                    println!("{}", format!("{role:<16}  {image}  {extra}").trim_end());
                } else {
                    println!("{image}");
                }
            }
            Ok(())
        }
        Command::Vault(c) => vault::run(&ctx, c).await,
        Command::Ca(c) => ca::run(&ctx, c).await,
        Command::Etcd(c) => etcd::run(&ctx, c).await,
        Command::Kubernetes(c) => kubernetes::run(&ctx, c).await,
        Command::Resource(c) => resource::run(&ctx, c).await,
        Command::RebootQueue(c) => reboot_queue::run(&ctx, c).await,
        Command::RepairQueue(c) => repair_queue::run(&ctx, c).await,
        Command::Ssh(a) => ssh::ssh(&ctx, a).await,
        Command::Scp(a) => ssh::scp(&ctx, a).await,
        Command::SshHostkey(c) => ssh::hostkey(&ctx, c).await,
        Command::Sabakan(c) => sabakan::run(&ctx, c).await,
        Command::AutoRepair(c) => sabakan::run_auto_repair(&ctx, c).await,
    }
}

/// The whole `ckecli` program; returns the process exit code.
pub fn main_impl() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rt = crate::process_setup("CKECLI_LOG", "warn", None);
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::Success.into(),
        Err(e) => {
            // A child (ssh, scp) has said why it failed.
            if !matches!(e, CliError::ChildExit(_)) {
                print_error("ckecli", &e);
            }
            e.exit_code().into()
        }
    }
}
