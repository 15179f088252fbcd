//! The `cke` daemon: flags, the election loop, the controller, the HTTP server and graceful
//! shutdown. `src/bin/cke.rs` only calls [`main_impl`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::controller::{Controller, ControllerConfig, InfraFactory, TermEnd};
use crate::error::{error_chain, print_error, ExitCode};
use crate::infra::agent::container::ContainerEngine;
use crate::infra::agent::credentials::{BulkPins, KeyMap, KeySource, KeysError, PassCredentials, VaultKeySource};
use crate::infra::agent::hostkey::{HostKeyMode, StorageHostKeys};
use crate::infra::agent::ssh::{SshConfig, SshPool};
use crate::infra::kube::{HttpHealth, KubeClients};
use crate::infra::pki::VaultClient;
use crate::infra::term_guard::{GuardedCommands, GuardedNodes};
use crate::infra::{EtcdClientConnector, EtcdCredentials, Health, Infra, KubeApi, NodeAccess};
use crate::leader::Elector;
#[cfg(feature = "test-hooks")]
use crate::op::test_ops::TestOperatorSpec;
use crate::probe::{Prober, SshProber};
use crate::server::Shared;
use crate::storage::{EtcdStorage, Storage, KEY_CLUSTER, KEY_CONSTRAINTS, KEY_RESOURCE_PREFIX};

/// Prefix of the sabakan integration's keys: a change (URL, template, variables, enabling) wakes the
/// controller, as CKE's sabakan watcher does.
const KEY_SABAKAN_PREFIX: &str = "sabakan/";
use crate::topology::Images;

/// Command-line flags of `cke`.
#[derive(Debug, Parser)]
#[command(
    name = "cke",
    version,
    about = "cke-rs daemon: keeps an on-premises Kubernetes cluster as declared"
)]
pub struct Args {
    /// Management etcd config file (CKE's etcdutil format).
    #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Instance name used in the election and in records (default: the host name).
    #[arg(long)]
    pub name: Option<String>,
    /// Listen address of the HTTP endpoint (/health, /version, /status, /metrics).
    #[arg(long, default_value = "0.0.0.0:10180")]
    pub http: SocketAddr,
    /// Time between passes when nothing changes.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// TTL of the election lease: how long a crashed leader keeps leadership.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub session_ttl: Duration,
    /// Plan and publish the plan, but never execute anything.
    #[arg(long)]
    pub dry_run: bool,
    /// How long a running command may finish after SIGTERM before it is abandoned (commands are
    /// safe to abandon and re-run; a short grace keeps the takeover fast).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// How often expired certificates are tidied from every PKI mount.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub certs_gc_interval: Duration,
    /// SSH host-key policy: `tofu` pins the first key seen per node, `strict` needs keys pinned
    /// beforehand (`ckecli ssh-hostkey`).
    #[arg(long, value_enum, default_value_t = HostKeyMode::Tofu)]
    pub ssh_host_key_mode: HostKeyMode,
    /// The docker-compatible CLI on the nodes: `docker` or `podman`.
    #[arg(long, default_value = "docker", value_parser = ["docker", "podman"])]
    pub container_cli: String,
    /// Nodes probed at once (the SSH pool runs at most 64 commands at once, so more than 64 only
    /// helps the probe's other checks).
    #[arg(long, default_value_t = 64)]
    pub probe_concurrency: usize,
    /// Image of the managed etcd.
    #[arg(long, default_value_t = Images::default().etcd)]
    pub etcd_image: String,
    /// Image of rivers and the other tools.
    #[arg(long, default_value_t = Images::default().tools)]
    pub tools_image: String,
    /// Image of the Kubernetes components; its tag gives the Kubernetes version (1.20 or later).
    #[arg(long, default_value_t = Images::default().kubernetes)]
    pub kubernetes_image: String,
    /// Image of CoreDNS (the cluster-dns Deployment).
    #[arg(long, default_value_t = Images::default().coredns)]
    pub coredns_image: String,
    /// Image of unbound (the node-dns DaemonSet and its reload sidecar).
    #[arg(long, default_value_t = Images::default().unbound)]
    pub unbound_image: String,
    /// Image of unbound_exporter (the node-dns DaemonSet's metrics sidecar).
    #[arg(long, default_value_t = Images::default().unbound_exporter)]
    pub unbound_exporter_image: String,
    /// Nodes per pass whose rivers, etcd-rivers, kubelet or kube-proxy are started or restarted
    /// (CKE's flag).
    #[arg(long, default_value_t = crate::planner::DEFAULT_MAX_CONCURRENT_UPDATES)]
    pub max_concurrent_updates: usize,
    /// What the node hosts need of the Kubernetes containers: `cke` (CKE's options: journald logs,
    /// docker's /var/lib/docker) or `testbed` (the mtest node hosts: the engine's log driver,
    /// containerd's /var/lib/containerd, /sys/fs/cgroup bound into the kubelet, no /lib/modules).
    #[arg(long, default_value = "cke", value_parser = ["cke", "testbed"])]
    pub node_profile: String,
    /// Test only: append a test operator (write:PATH, block:SECONDS, fail) to every pass. Exists
    /// only in builds with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    pub test_operator: Option<TestOperatorSpec>,
    /// Test only: plan no Kubernetes component (rivers and the managed etcd only), for the
    /// managed-etcd suites on node hosts without Kubernetes. Exists only with `test-hooks`.
    #[cfg(feature = "test-hooks")]
    #[arg(long, hide = true)]
    pub test_without_kubernetes: bool,
}

impl Args {
    /// The images the flags name.
    pub fn images(&self) -> Images {
        Images {
            etcd: self.etcd_image.clone(),
            tools: self.tools_image.clone(),
            kubernetes: self.kubernetes_image.clone(),
            coredns: self.coredns_image.clone(),
            unbound: self.unbound_image.clone(),
            unbound_exporter: self.unbound_exporter_image.clone(),
        }
    }
}

/// Errors that stop the daemon at start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Invalid flags or config.
    #[error("{0}")]
    Invalid(String),
    /// The HTTP listener could not be bound.
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        error: std::io::Error,
    },
}

impl DaemonError {
    /// The exit code: invalid flags or config 2, a listener that cannot be bound 1.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            DaemonError::Invalid(_) => ExitCode::InvalidInput,
            DaemonError::Listen { .. } => ExitCode::Failure,
        }
    }
}

/// The daemon's tokio worker threads (`TOKIO_WORKER_THREADS` overrides it). cke waits on the network
/// almost all the time (a warm pass over 1000 nodes costs it well under a second of CPU); with one
/// worker per CPU, every wake-up of an idle worker to share a few ready tasks is a futex round trip and
/// a context switch, which cost more CPU than the work they share (docs/performance.md). Key
/// exchanges, JSON and the planner run on this thread too; blocking work (files, DNS) goes to tokio's
/// blocking pool as before.
pub const WORKER_THREADS: usize = 1;

/// Runs the daemon until SIGTERM or SIGINT; returns the exit code.
pub fn main_impl() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = crate::process_setup("CKE_LOG", "info", Some(WORKER_THREADS));
    match rt.block_on(run(args)) {
        Ok(()) => ExitCode::Success.into(),
        Err(e) => {
            print_error("cke", &e);
            e.exit_code().into()
        }
    }
}

async fn run(args: Args) -> Result<(), DaemonError> {
    let config = Config::load(&args.config).map_err(|e| DaemonError::Invalid(e.to_string()))?;
    if args.session_ttl < Duration::from_secs(2) {
        return Err(DaemonError::Invalid("--session-ttl must be at least 2s".into()));
    }
    if let Err(e) = crate::k8s::VersionSet::for_image(&args.kubernetes_image) {
        return Err(DaemonError::Invalid(format!("--kubernetes-image: {e}")));
    }
    if args.max_concurrent_updates == 0 {
        return Err(DaemonError::Invalid(
            "--max-concurrent-updates must be at least 1".into(),
        ));
    }
    let name = match args.name.clone() {
        Some(n) if !n.is_empty() => n,
        _ => hostname::get()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "cke".into()),
    };
    match crate::infra::agent::raise_open_file_limit() {
        Ok((before, after)) if before < after => {
            tracing::info!(before, after, "raised the open-file limit to the hard limit")
        }
        Ok((_, limit)) => tracing::info!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = e, "cannot raise the open-file limit"),
    }
    let storage = EtcdStorage::connect(&config)
        .await
        .map_err(|e| DaemonError::Invalid(error_chain(&e)))?;
    let shared = Arc::new(Shared::default());
    {
        let mut st = shared.status.write().unwrap();
        st.name = name.clone();
        st.dry_run = args.dry_run;
        let images = args.images();
        st.kubernetes_version = crate::controller::kubernetes_version(&images);
        st.images = Some(images);
    }
    shared.alive();

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(signals(shutdown_tx));

    let listener = tokio::net::TcpListener::bind(args.http)
        .await
        .map_err(|e| DaemonError::Listen {
            addr: args.http,
            error: e,
        })?;
    let http_shutdown = shutdown_rx.clone();
    let router = crate::server::router(shared.clone());
    let http = tokio::spawn(async move {
        let mut rx = http_shutdown;
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            })
            .await;
    });
    tokio::spawn(watch_leader(storage.clone(), shared.clone()));

    let storage_dyn: Arc<dyn Storage> = Arc::new(storage.clone());
    let images = args.images();
    let engine = ContainerEngine::new(&args.container_cli, vec![]);
    let controller_cfg = ControllerConfig {
        name: name.clone(),
        interval: args.interval,
        dry_run: args.dry_run,
        shutdown_grace: args.shutdown_grace,
        #[cfg(feature = "test-hooks")]
        test_operator: args.test_operator.clone(),
        #[cfg(feature = "test-hooks")]
        without_kubernetes: args.test_without_kubernetes,
        images: images.clone(),
        host: match args.node_profile.as_str() {
            "testbed" => crate::k8s::params::HostSettings::testbed(),
            _ => crate::k8s::params::HostSettings::default(),
        },
        max_concurrent_updates: args.max_concurrent_updates,
    };
    let elector = Elector::new(storage.client(), storage.prefix(), &name, args.session_ttl);
    tracing::info!(name, http = %args.http, ttl = ?args.session_ttl, dry_run = args.dry_run, "cke started");

    let mut shutdown = shutdown_rx.clone();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let campaign = elector.campaign();
        tokio::pin!(campaign);
        let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
        let won = loop {
            tokio::select! {
                r = &mut campaign => break Some(r),
                _ = heartbeat.tick() => shared.alive(),
                _ = shutdown.wait_for(|s| *s) => break None,
            }
        };
        let term = match won {
            None => break,
            Some(Err(e)) => {
                tracing::warn!(error = error_chain(&e), "campaign failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
                continue;
            }
            Some(Ok(t)) => t,
        };
        tracing::info!(key = term.fence.key, "became the leader");
        shared.metrics.set_leader(true);
        {
            let mut st = shared.status.write().unwrap();
            st.is_leader = true;
            st.leader = Some(name.clone());
        }
        let (trigger_tx, mut trigger_rx) = mpsc::channel(1);
        let mut watchers = spawn_triggers(&storage, trigger_tx);
        let (vault, tasks) = start_vault_tasks(&storage, args.certs_gc_interval, shared.clone()).await;
        watchers.extend(tasks);
        // SSH keys and host-key pins are read in bulk, at most once per pass.
        let key_source: Arc<dyn KeySource> = match &vault {
            Some(v) => Arc::new(VaultKeySource(v.clone())),
            None => Arc::new(NoVault),
        };
        let node_credentials = Arc::new(PassCredentials::new(
            key_source,
            Arc::new(StorageHostKeys(storage_dyn.clone())),
        ));
        let pool = SshPool::new(
            node_credentials.keys(),
            node_credentials.pins(),
            SshConfig {
                host_key_mode: args.ssh_host_key_mode,
                ..Default::default()
            },
        );
        watchers.push(tokio::spawn(follow_pins(
            storage_dyn.clone(),
            pool.clone(),
            node_credentials.pins(),
        )));
        // One root credential of the managed etcd for the term, shared by the probe and the operators.
        let issuer = Infra::issuer_for(vault.clone());
        let credentials = Arc::new(EtcdCredentials::new(issuer.clone(), storage_dyn.clone()));
        // One Kubernetes admin credential for the term too (CKE's 25 h certificate, kept 24 h).
        let kube: Arc<dyn KubeApi> = Arc::new(KubeClients::new(
            issuer.clone(),
            storage_dyn.clone(),
            crate::topology::API_SERVER_PORT,
        ));
        let health: Arc<dyn Health> = Arc::new(HttpHealth::new());
        let prober: Arc<dyn Prober> = Arc::new(
            SshProber::new(
                pool.clone(),
                engine.clone(),
                Arc::new(EtcdClientConnector::new(credentials.clone(), Duration::from_secs(5))),
                kube.clone(),
                health.clone(),
                storage_dyn.clone(),
                args.probe_concurrency,
            )
            .with_credentials(node_credentials),
        );
        let etcd = Arc::new(EtcdClientConnector::new(credentials, Duration::from_secs(10)));
        let engine2 = Arc::new(engine.clone());
        // Operators reach the nodes, and commands run on this host, only while the term's lease
        // deadline holds.
        let nodes: Arc<dyn NodeAccess> = Arc::new(GuardedNodes::new(Arc::new(pool.clone()), term.deadline()));
        let commands: Arc<dyn crate::infra::HostCommands> = Arc::new(GuardedCommands::new(
            Arc::new(crate::infra::host_command::ProcessCommands),
            term.deadline(),
        ));
        let infra: InfraFactory = Arc::new(move |storage, cluster| Infra {
            storage,
            cluster,
            nodes: nodes.clone(),
            engine: engine2.clone(),
            issuer: issuer.clone(),
            etcd: etcd.clone(),
            kube: kube.clone(),
            health: health.clone(),
            commands: commands.clone(),
            fence: None,
        });
        let integrator = Arc::new(crate::sabakan::Integrator::new(
            storage_dyn.clone(),
            Arc::new(crate::sabakan::SabakanClient::new()),
        ));
        let controller = Controller::new(storage_dyn.clone(), prober, shared.clone(), controller_cfg.clone())
            .with_infra(infra)
            .with_integrator(integrator);
        let end = controller
            .run_term(
                &term.fence,
                term.deadline(),
                term.lost_signal(),
                shutdown_rx.clone(),
                &mut trigger_rx,
            )
            .await;
        for w in watchers {
            w.abort();
        }
        shared.clear_problems();
        shared.metrics.set_leader(false);
        {
            let mut st = shared.status.write().unwrap();
            st.is_leader = false;
            st.planned_operations.clear();
        }
        match end {
            TermEnd::Lost => {
                // Our lease may still be alive (a keep-alive stream broke while etcd kept it): revoke
                // it, or every candidate would queue behind our stale election key for a whole TTL.
                term.resign().await;
                tracing::warn!("leadership lost; campaigning again");
            }
            TermEnd::Shutdown => {
                tracing::info!("shutting down: resigning leadership");
                term.resign().await;
                break;
            }
        }
    }
    let _ = http.await;
    tracing::info!("cke stopped");
    Ok(())
}

async fn signals(tx: watch::Sender<bool>) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received");
    let _ = tx.send(true);
}

/// Keeps `/status`'s leader name and `/health`'s etcd freshness current.
async fn watch_leader(storage: EtcdStorage, shared: Arc<Shared>) {
    loop {
        match storage.get_leader().await {
            Ok(leader) => {
                shared.etcd_ok();
                shared.status.write().unwrap().leader = leader;
            }
            Err(e) => tracing::debug!(error = error_chain(&e), "management etcd check failed"),
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// On the leader: a Vault client from the `vault` key with token renewal, the periodic tidy of
/// expired certificates, and a check of Vault's health for `/health`. A Vault that is down or
/// sealed when the term starts still gives a client, which logs in once Vault answers. Without a
/// `vault` key there is no client (logged once per term).
async fn start_vault_tasks(
    storage: &EtcdStorage,
    gc_interval: Duration,
    shared: Arc<Shared>,
) -> (Option<VaultClient>, Vec<tokio::task::JoinHandle<()>>) {
    let config = match storage.get_vault_config().await {
        Ok(Some(c)) => c,
        Ok(None) => {
            tracing::warn!("Vault is not configured (ckecli vault init); certificates cannot be issued");
            shared.set_problem("vault", Some("not configured (ckecli vault init)".into()));
            return (None, vec![]);
        }
        Err(e) => {
            tracing::warn!(error = error_chain(&e), "cannot read the Vault connection");
            shared.set_problem("vault", Some(format!("cannot read the vault key: {}", error_chain(&e))));
            return (None, vec![]);
        }
    };
    let client = match VaultClient::connect(&config).await {
        Ok(client) => client,
        Err(e) => {
            tracing::warn!(error = error_chain(&e), "cannot log in to Vault; trying again on use");
            match VaultClient::connect_later(&config) {
                Ok(c) => c,
                Err(e) => {
                    shared.set_problem("vault", Some(error_chain(&e)));
                    return (None, vec![]);
                }
            }
        }
    };
    let renewal = client.spawn_renewal();
    let tidy = crate::infra::pki::Issuer::new(client.clone()).spawn_tidy(gc_interval);
    let health = tokio::spawn(watch_vault(client.clone(), shared));
    (Some(client), vec![renewal, tidy, health])
}

/// How often the leader asks Vault for its health.
const VAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps `/health`'s word on Vault current: down, sealed, or fine.
async fn watch_vault(client: VaultClient, shared: Arc<Shared>) {
    loop {
        shared.set_problem("vault", vault_problem(&client).await);
        tokio::time::sleep(VAULT_CHECK_INTERVAL).await;
    }
}

/// What is wrong with Vault, by `sys/health` (no token needed; standbys that forward requests are
/// fine): 503 sealed, 501 not initialised; no answer: down.
async fn vault_problem(client: &VaultClient) -> Option<String> {
    match tokio::time::timeout(Duration::from_secs(5), client.health()).await {
        Err(_) => Some(format!("{}: no answer within 5s", client.endpoint())),
        Ok(Ok(())) => None,
        Ok(Err(e)) => match e.status() {
            Some(503) => Some(format!("{}: sealed", client.endpoint())),
            Some(501) => Some(format!("{}: not initialised", client.endpoint())),
            _ => Some(format!("down: {}", error_chain(&e))),
        },
    }
}

/// The keys while Vault is not configured: every node is unreachable, saying why.
struct NoVault;

#[async_trait::async_trait]
impl KeySource for NoVault {
    async fn all_keys(&self) -> Result<KeyMap, KeysError> {
        Err(KeysError::NotConfigured(
            "Vault is not configured (ckecli vault init)".into(),
        ))
    }
}

/// Wakes the controller when the declaration, the constraints, the resources or the sabakan
/// integration's settings change.
fn spawn_triggers(storage: &EtcdStorage, tx: mpsc::Sender<()>) -> Vec<tokio::task::JoinHandle<()>> {
    let storage: Arc<dyn Storage> = Arc::new(storage.clone());
    [
        (KEY_CLUSTER, false),
        (KEY_CONSTRAINTS, false),
        (KEY_RESOURCE_PREFIX, true),
        (KEY_SABAKAN_PREFIX, true),
    ]
    .into_iter()
    .map(|(key, prefix)| tokio::spawn(trigger_on_change(storage.clone(), key, prefix, tx.clone())))
    .collect()
}

/// Pause before a broken trigger watch is made again.
const TRIGGER_REWATCH_PAUSE: Duration = Duration::from_secs(2);

/// Sends a trigger on every change of `key` (every key under it with `prefix`). A broken watch (an
/// etcd member restarting, say) is made again after a pause, with a pass triggered in case a change
/// fell in the gap; the task ends only when aborted with the term.
async fn trigger_on_change(storage: Arc<dyn Storage>, key: &'static str, prefix: bool, tx: mpsc::Sender<()>) {
    use futures::StreamExt;
    loop {
        match storage.watch(key, 0).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(ev) if prefix || ev.key() == key => {
                            let _ = tx.try_send(());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::debug!(error = error_chain(&e), "trigger watch ended; making it again");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = error_chain(&e), "cannot watch {key}; retrying"),
        }
        tokio::time::sleep(TRIGGER_REWATCH_PAUSE).await;
        let _ = tx.try_send(());
    }
}

/// Drops the pooled SSH connections to a node whose pinned host key changes (`ckecli ssh-hostkey
/// set|delete`), and updates the pins read for the pass, so that the next command is verified
/// against the new pin. A broken watch is made again after a pause; the task ends only when aborted
/// with the term.
async fn follow_pins(storage: Arc<dyn Storage>, pool: Arc<SshPool>, pins: Arc<BulkPins>) {
    use crate::storage::{WatchEvent, KEY_SSH_HOSTKEY_PREFIX};
    use futures::StreamExt;
    loop {
        match storage.watch(KEY_SSH_HOSTKEY_PREFIX, 0).await {
            Ok(mut stream) => {
                while let Some(item) = stream.next().await {
                    match item {
                        Ok(ev) => {
                            let Some(address) = ev.key().strip_prefix(KEY_SSH_HOSTKEY_PREFIX) else {
                                continue;
                            };
                            let pin = match &ev {
                                WatchEvent::Put { value, .. } => Some(String::from_utf8_lossy(value).into_owned()),
                                WatchEvent::Delete { .. } => None,
                            };
                            pins.changed(address, pin.as_deref()).await;
                            pool.pin_changed(address, pin.as_deref()).await;
                        }
                        Err(e) => {
                            tracing::debug!(error = error_chain(&e), "host-key watch ended; making it again");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = error_chain(&e), "cannot watch the host keys; retrying"),
        }
        tokio::time::sleep(TRIGGER_REWATCH_PAUSE).await;
    }
}

#[cfg(test)]
mod trigger_tests {
    use super::*;
    use crate::storage::MemStorage;

    async fn until_watching(mem: &MemStorage, n: usize) {
        for _ in 0..500 {
            if mem.watcher_count() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("{} watches open, expected {n}", mem.watcher_count());
    }

    async fn triggered(rx: &mut mpsc::Receiver<()>, within: Duration) -> bool {
        tokio::time::timeout(within, rx.recv()).await.is_ok()
    }

    #[tokio::test]
    async fn triggers_follow_their_keys_and_survive_a_broken_watch() {
        let mem = Arc::new(MemStorage::default());
        let (tx, mut rx) = mpsc::channel(1);
        let exact = tokio::spawn(trigger_on_change(mem.clone(), KEY_CLUSTER, false, tx.clone()));
        let prefixed = tokio::spawn(trigger_on_change(mem.clone(), KEY_RESOURCE_PREFIX, true, tx));
        until_watching(&mem, 2).await;
        let short = Duration::from_millis(200);

        // An exact key ignores its longer namesakes; a prefix takes every key under it.
        mem.put_raw("clusterx", b"{}".to_vec()).await.unwrap();
        mem.put_raw("status", b"{}".to_vec()).await.unwrap();
        assert!(!triggered(&mut rx, short).await, "unrelated keys must not trigger");
        mem.put_raw(KEY_CLUSTER, b"{}".to_vec()).await.unwrap();
        assert!(triggered(&mut rx, short).await, "a change of the cluster must trigger");
        mem.put_raw("resource/ConfigMap/a", b"x".to_vec()).await.unwrap();
        assert!(triggered(&mut rx, short).await, "a put under resource/ must trigger");
        mem.delete_raw("resource/ConfigMap/a").await.unwrap();
        assert!(triggered(&mut rx, short).await, "a delete under resource/ must trigger");

        // A broken watch: one pass after the pause (a change may have fallen in the gap), then
        // watched again.
        mem.break_watches();
        assert_eq!(mem.watcher_count(), 0);
        assert!(
            !triggered(&mut rx, TRIGGER_REWATCH_PAUSE / 2).await,
            "no trigger before the pause"
        );
        assert!(
            triggered(&mut rx, TRIGGER_REWATCH_PAUSE * 2).await,
            "a pass after re-making the watch"
        );
        until_watching(&mem, 2).await;
        while rx.try_recv().is_ok() {}
        mem.put_raw(KEY_CLUSTER, b"{\"x\":1}".to_vec()).await.unwrap();
        assert!(triggered(&mut rx, short).await, "the re-made watch must trigger");

        exact.abort();
        prefixed.abort();
        let _ = exact.await;
        let _ = prefixed.await;
        assert_eq!(mem.watcher_count(), 0, "aborting the task cancels its watch");
    }
}
