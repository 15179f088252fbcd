//! cke-rs: a Kubernetes cluster manager for on-premises clusters, compatible with Cybozu CKE.
//!
//! Layers (see `docs/design.md`): [`model`] (pure types and validation), [`storage`] (management etcd),
//! [`planner`] (pure planning), [`op`] (operators and commanders), [`infra`] (every side effect: SSH
//! and containers, Vault PKI, the managed etcd), [`controller`] (the leader loop), [`server`] (HTTP).
//! Binaries stay thin and call into [`cli`] and [`daemon`].

pub mod cli;
pub mod config;
pub mod controller;
pub mod daemon;
pub mod error;
#[cfg(feature = "test-hooks")]
pub mod hooks;
pub mod infra;
pub mod k8s;
pub mod leader;
pub mod metrics;
pub mod model;
pub mod op;
pub mod planner;
pub mod probe;
pub mod rivers;
pub mod sabakan;
pub mod server;
pub mod storage;
pub mod topology;

/// A named point where a build with the `test-hooks` feature may abort (see [`hooks::failpoint`]);
/// nothing in other builds.
#[macro_export]
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "test-hooks")]
        $crate::hooks::failpoint($name);
    };
}

/// What every binary does first: install the TLS crypto provider (kube and the Vault client need one),
/// log to standard error filtered by the environment variable `log_var` (default `default_filter`),
/// and build the tokio runtime: `workers` worker threads when given and `TOKIO_WORKER_THREADS` is not
/// set, one per CPU otherwise.
pub fn process_setup(log_var: &str, default_filter: &str, workers: Option<usize>) -> tokio::runtime::Runtime {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env(log_var).unwrap_or_else(|_| default_filter.into()))
        .init();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers.filter(|_| std::env::var_os("TOKIO_WORKER_THREADS").is_none()) {
        runtime.worker_threads(n);
    }
    runtime.enable_all().build().expect("tokio runtime")
}
