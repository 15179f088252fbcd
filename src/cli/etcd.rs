//! `ckecli etcd root-issue|issue|user-add|local-backup`: client certificates for the managed etcd,
//! its users, and snapshots.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use regex::Regex;
use serde::Serialize;
use std::sync::LazyLock;

use super::{print_json, CliError, Ctx};
use crate::infra::managed_etcd::{EtcdTls, ManagedEtcd};
use crate::infra::pki::{Issuer, USER_CERT_TTL};
use crate::model::ValidationError;
use crate::planner::params::etcd_client_url;
use crate::storage::Storage;

/// How certificates are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertOutput {
    /// JSON with `certificate`, `private_key`, `ca_certificate` on standard output.
    Json,
    /// Files `etcd-<user>.crt`, `etcd-<user>.key` (mode 0600) and `etcd-ca.crt` in the current directory.
    File,
}

/// `ckecli etcd ...`
#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Issue a 2-hour client certificate for the managed etcd's `root` user.
    RootIssue {
        /// Output format.
        #[arg(long, value_enum, default_value_t = CertOutput::Json)]
        output: CertOutput,
    },
    /// Issue a client certificate for etcd user NAME.
    Issue {
        /// Certificate lifetime.
        #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CertOutput::Json)]
        output: CertOutput,
        /// The etcd user (the certificate's CN).
        name: String,
    },
    /// Create (or update) etcd user NAME with read-write access to keys under PREFIX.
    UserAdd {
        /// User name.
        name: String,
        /// Key prefix, e.g. `/backup/`.
        prefix: String,
    },
    /// Save a snapshot of the managed etcd to DIR and keep the newest N.
    LocalBackup {
        /// Directory for snapshots.
        #[arg(long, default_value = "/var/cke/etcd-backups")]
        dir: PathBuf,
        /// How many snapshots to keep.
        #[arg(long, default_value_t = 10)]
        max_backups: usize,
    },
}

static USER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$").unwrap());

#[derive(Serialize)]
struct CertJson<'a> {
    certificate: &'a str,
    private_key: &'a str,
    ca_certificate: &'a str,
}

fn invalid(field: &str, reason: String) -> CliError {
    CliError::Invalid {
        what: "arguments".into(),
        problems: ValidationError::single(field, reason),
    }
}

fn check_user(name: &str) -> Result<(), CliError> {
    if USER.is_match(name) {
        Ok(())
    } else {
        Err(invalid(
            "NAME",
            format!("{name:?} is not a valid etcd user name (letters, digits, '_', '.', '-')"),
        ))
    }
}

/// The CA that signs the managed etcd's server certificates (clients verify the server with it).
async fn server_ca(ctx: &Ctx) -> Result<String, CliError> {
    ctx.storage()
        .await?
        .get_ca("server")
        .await?
        .ok_or_else(|| CliError::NotFound("CA server is not set (run ckecli vault init)".into()))
}

async fn issue(ctx: &Ctx, user: &str, ttl: Duration, output: CertOutput) -> Result<(), CliError> {
    let issuer = Issuer::new(ctx.vault().await?);
    let cert = issuer.issue_etcd_client(user, Some(ttl)).await?;
    let ca = server_ca(ctx).await?;
    match output {
        CertOutput::Json => print_json(&CertJson {
            certificate: &cert.certificate,
            private_key: &cert.private_key,
            ca_certificate: &ca,
        }),
        CertOutput::File => {
            write_file(Path::new(&format!("etcd-{user}.crt")), &cert.certificate, 0o644)?;
            write_file(Path::new(&format!("etcd-{user}.key")), &cert.private_key, 0o600)?;
            write_file(Path::new("etcd-ca.crt"), &ca, 0o644)?;
            println!("wrote etcd-{user}.crt, etcd-{user}.key, etcd-ca.crt");
            Ok(())
        }
    }
}

fn write_file(path: &Path, content: &str, mode: u32) -> Result<(), CliError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |e| CliError::Io {
        what: format!("cannot write {}", path.display()),
        error: e,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io)?;
    f.write_all(content.as_bytes()).map_err(io)
}

/// A root connection to the managed etcd through every control-plane node of the declaration.
async fn managed_etcd(ctx: &Ctx) -> Result<ManagedEtcd, CliError> {
    let storage = ctx.storage().await?;
    let cluster = storage
        .get_cluster()
        .await?
        .ok_or_else(|| CliError::NotFound("no cluster has been set (use ckecli cluster set FILE)".into()))?;
    let endpoints: Vec<String> = cluster.control_planes().map(|n| etcd_client_url(&n.address)).collect();
    let issuer = Issuer::new(ctx.vault().await?);
    let cert = issuer.issue_etcd_client("root", Some(Duration::from_secs(600))).await?;
    let tls = EtcdTls {
        ca: server_ca(ctx).await?,
        cert: cert.certificate,
        key: cert.private_key,
    };
    Ok(ManagedEtcd::connect(endpoints, tls, Duration::from_secs(10)).await?)
}

/// Runs an `etcd` command.
pub async fn run(ctx: &Ctx, cmd: EtcdCommand) -> Result<(), CliError> {
    match cmd {
        EtcdCommand::RootIssue { output } => issue(ctx, "root", USER_CERT_TTL, output).await,
        EtcdCommand::Issue { ttl, output, name } => {
            check_user(&name)?;
            if name == "root" {
                return Err(invalid("NAME", "use ckecli etcd root-issue for the root user".into()));
            }
            if ttl.is_zero() {
                return Err(invalid("--ttl", "must be positive".into()));
            }
            issue(ctx, &name, ttl, output).await
        }
        EtcdCommand::UserAdd { name, prefix } => {
            check_user(&name)?;
            if name == "root" || name == "kube-apiserver" {
                return Err(invalid("NAME", format!("{name} is managed by cke")));
            }
            if !prefix.starts_with('/') {
                return Err(invalid("PREFIX", format!("{prefix:?} must start with /")));
            }
            managed_etcd(ctx).await?.user_add(&name, &prefix).await?;
            println!("user {name} may read and write keys under {prefix}");
            Ok(())
        }
        EtcdCommand::LocalBackup { dir, max_backups } => {
            if max_backups == 0 {
                return Err(invalid("--max-backups", "must be at least 1".into()));
            }
            std::fs::create_dir_all(&dir).map_err(|e| CliError::Io {
                what: format!("cannot create {}", dir.display()),
                error: e,
            })?;
            let etcd = managed_etcd(ctx).await?;
            let name = format!("snapshot-{}.db", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
            let path = dir.join(&name);
            let size = etcd.snapshot_to(&path).await?;
            println!("{} ({size} bytes)", path.display());
            prune(&dir, max_backups)
        }
    }
}

/// Keeps the newest `keep` snapshots in `dir`.
fn prune(dir: &Path, keep: usize) -> Result<(), CliError> {
    let io = |e| CliError::Io {
        what: format!("cannot list {}", dir.display()),
        error: e,
    };
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("snapshot-") && n.ends_with(".db"))
        })
        .collect();
    snaps.sort();
    while snaps.len() > keep {
        let old = snaps.remove(0);
        std::fs::remove_file(&old).map_err(|e| CliError::Io {
            what: format!("cannot remove {}", old.display()),
            error: e,
        })?;
    }
    Ok(())
}
