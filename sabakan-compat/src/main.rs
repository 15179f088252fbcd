//! `sabakan-compat --inventory FILE [--listen ADDR]`: serves the inventory's machines with sabakan's
//! GraphQL `searchMachines` and its machine state API until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Command-line flags.
#[derive(Debug, Parser)]
#[command(
    name = "sabakan-compat",
    version,
    about = "Serve machines from an inventory file with sabakan's GraphQL searchMachines and state API"
)]
struct Args {
    /// The inventory: YAML or JSON machines (see README.md).
    #[arg(long)]
    inventory: PathBuf,
    /// Listen address; CKE's URL is then http://ADDR/graphql.
    #[arg(long, default_value = "127.0.0.1:10080")]
    listen: SocketAddr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SABAKAN_COMPAT_LOG").unwrap_or_else(|_| "info".into()),
        )
        .init();
    let text = match std::fs::read_to_string(&args.inventory) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("sabakan-compat: cannot read {}: {e}", args.inventory.display());
            return ExitCode::from(2);
        }
    };
    let machines = match sabakan_compat::parse_inventory(&text, chrono::Utc::now()) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("sabakan-compat: {}: {e}", args.inventory.display());
            return ExitCode::from(2);
        }
    };
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let result: anyhow::Result<()> = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?;
        tracing::info!(
            listen = %listener.local_addr()?,
            machines = machines.len(),
            "serving (GraphQL at /graphql, states at /api/v1/state/<serial>)"
        );
        let shutdown = async {
            use tokio::signal::unix::{signal, SignalKind};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        sabakan_compat::serve(listener, sabakan_compat::Store::new(machines), shutdown).await?;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sabakan-compat: {e:#}");
            ExitCode::FAILURE
        }
    }
}
