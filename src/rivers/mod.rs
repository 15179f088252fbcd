//! rivers: a small TCP load balancer run on every node so that local clients reach every API server
//! (and, as `etcd-rivers`, every etcd member) through localhost.
//!
//! Owns: the command-line flags ([`Args`]), the validated [`Config`], the proxy [`Server`] with its
//! runtime [`Handle`], upstream health (active and passive), draining, and the optional metrics and
//! health HTTP listener. Must not: know anything about clusters, etcd or Kubernetes (it only moves
//! bytes between TCP sockets), read files at run time, or write anywhere but stderr.
//!
//! See `docs/rivers.md` for the flags and the behaviour.

mod config;
mod metrics;
mod pool;
mod server;

use std::process::ExitCode;

pub use config::{Args, Config, LogFormat, LogLevel};
pub use pool::UpstreamStats;
pub use server::{Handle, Server, ShutdownReport, Stats};

/// Errors of the rivers load balancer. Configuration errors name the flag and the reason.
#[derive(Debug, thiserror::Error)]
pub enum RiversError {
    /// `--listen` was not given or is blank.
    #[error("--listen is empty: give the address to listen on, e.g. 127.0.0.1:16443")]
    ListenEmpty,
    /// `--upstreams` was not given or lists no address.
    #[error("--upstreams is empty: give at least one upstream as host:port")]
    UpstreamsEmpty,
    /// One entry of the upstream list is not a usable `host:port`.
    #[error("invalid upstream {address:?} in --upstreams: {reason}")]
    InvalidUpstream {
        /// The entry as given.
        address: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A flag has a value that cannot be used.
    #[error("invalid --{flag} {value:?}: {reason}")]
    InvalidFlag {
        /// Flag name without the dashes.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The proxy listener could not be opened.
    #[error("cannot listen on {address}")]
    Listen {
        /// The `--listen` address.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The metrics listener could not be opened.
    #[error("cannot listen for metrics on {address}")]
    MetricsListen {
        /// The `--metrics` address.
        address: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The signal handlers could not be installed.
    #[error("cannot install the SIGTERM/SIGINT handlers")]
    Signal {
        /// The error from the runtime.
        #[source]
        source: std::io::Error,
    },
    /// The tokio runtime could not be started.
    #[error("cannot start the async runtime")]
    Runtime {
        /// The error from the runtime builder.
        #[source]
        source: std::io::Error,
    },
}

/// Runs the `rivers` binary with parsed flags: logs to stderr, proxies until SIGTERM or SIGINT, then
/// stops accepting and drains open connections for up to `--shutdown-timeout` (a second signal ends
/// the drain at once). Returns 0 after a shutdown, 1 when the configuration or a listener fails.
pub fn main_impl(args: Args) -> ExitCode {
    init_logging(&args);
    match run_blocking(args) {
        Ok(report) => {
            tracing::info!(aborted = report.aborted, "rivers stopped");
            crate::error::ExitCode::Success.into()
        }
        Err(err) => {
            crate::error::print_error("rivers", &err);
            crate::error::ExitCode::Failure.into()
        }
    }
}

fn init_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::new(format!("warn,cke::rivers={}", args.loglevel.directive()));
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    let _ = match args.logformat {
        LogFormat::Plain => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn run_blocking(args: Args) -> Result<ShutdownReport, RiversError> {
    let config = args.into_config()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rivers")
        .build()
        .map_err(|source| RiversError::Runtime { source })?;
    rt.block_on(async move {
        let server = Server::bind(config).await?;
        let handle = server.handle();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|source| RiversError::Signal { source })?;
        let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            .map_err(|source| RiversError::Signal { source })?;
        tokio::spawn(async move {
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::info!("signal received: draining connections");
            handle.shutdown();
            tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
            tracing::warn!("second signal received: closing open connections now");
            handle.shutdown_now();
        });
        Ok(server.run().await)
    })
}
