//! `ckecli kubernetes issue`: a kubeconfig with an embedded client certificate.

use std::time::Duration;

use clap::Subcommand;

use super::{CliError, Ctx};
use crate::infra::pki::Issuer;
use crate::model::ValidationError;
use crate::planner::params::API_SERVER_PORT;
use crate::storage::Storage;

/// `ckecli kubernetes ...`
#[derive(Debug, Subcommand)]
pub enum KubernetesCommand {
    /// Print a kubeconfig for USER in GROUP with a client certificate valid for TTL.
    Issue {
        /// Certificate lifetime.
        #[arg(long, default_value = "2h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// Kubernetes group (the certificate's O).
        #[arg(long, default_value = "system:masters")]
        group: String,
        /// Kubernetes user (the certificate's CN).
        #[arg(long, default_value = "cke:user:admin")]
        user: String,
    },
}

/// Runs a `kubernetes` command.
pub async fn run(ctx: &Ctx, cmd: KubernetesCommand) -> Result<(), CliError> {
    let KubernetesCommand::Issue { ttl, group, user } = cmd;
    if ttl.is_zero() {
        return Err(CliError::Invalid {
            what: "arguments".into(),
            problems: ValidationError::single("--ttl", "must be positive"),
        });
    }
    if user.trim().is_empty() {
        return Err(CliError::Invalid {
            what: "arguments".into(),
            problems: ValidationError::single("--user", "is required"),
        });
    }
    let storage = ctx.storage().await?;
    let cluster = storage
        .get_cluster()
        .await?
        .ok_or_else(|| CliError::NotFound("no cluster has been set (use ckecli cluster set FILE)".into()))?;
    let server_node = cluster
        .control_planes()
        .next()
        .ok_or_else(|| CliError::NotFound("the cluster has no control-plane node".into()))?;
    let host = if server_node.address.contains(':') {
        format!("[{}]", server_node.address)
    } else {
        server_node.address.clone()
    };
    // The API servers' certificates come from the `kubernetes` CA (as CKE's).
    let ca = storage
        .get_ca("kubernetes")
        .await?
        .ok_or_else(|| CliError::NotFound("CA kubernetes is not set (run ckecli vault init)".into()))?;
    let cert = Issuer::new(ctx.vault().await?)
        .issue_kube_user(&user, &group, ttl)
        .await?;
    print!(
        "{}",
        crate::k8s::kubeconfig::embedded(
            &cluster.name,
            &user,
            &ca,
            &cert.certificate,
            &cert.private_key,
            &format!("https://{host}:{API_SERVER_PORT}"),
        )
    );
    Ok(())
}
