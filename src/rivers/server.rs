//! The proxy: accept loop, per-connection dial and copy, active health check, draining shutdown,
//! and the [`Handle`] to change upstreams or stop at run time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use super::config::{validate_upstreams, Config};
use super::pool::{Pool, Upstream, UpstreamStats};
use super::{metrics, RiversError};

/// Size of each of the two copy buffers of one connection.
const COPY_BUFFER: usize = 32 * 1024;

/// Run state, sent through a watch channel.
const RUNNING: u8 = 0;
const DRAINING: u8 = 1;
const ABORTING: u8 = 2;

/// State shared by the accept loop, the connections, the health checker, metrics and handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: Config,
    pub(crate) pool: Pool,
    state: watch::Sender<u8>,
    check_now: Notify,
    pub(crate) accepted: AtomicU64,
    pub(crate) active: AtomicU64,
    pub(crate) no_upstream: AtomicU64,
    check_rounds: AtomicU64,
}

/// Whole-proxy counters plus one entry per upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Client connections accepted since start.
    pub accepted: u64,
    /// Client connections open now (including ones still dialling).
    pub active: u64,
    /// Client connections closed because no upstream could be dialled.
    pub no_upstream: u64,
    /// Completed rounds of the active health check.
    pub check_rounds: u64,
    /// Per-upstream counters: the current set first, then removed upstreams still draining.
    pub upstreams: Vec<UpstreamStats>,
}

/// Outcome of a shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections still open when the shutdown timeout expired (or a second signal came), closed
    /// forcibly. Zero when every connection finished on its own.
    pub aborted: usize,
}

/// A cheap, cloneable control handle of a running [`Server`].
#[derive(Debug, Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Replaces the upstream set. New connections go to the new set at once; connections to
    /// removed upstreams stay open until they end (draining). Kept upstreams keep their state.
    /// Invalid lists are rejected and change nothing.
    pub fn set_upstreams(&self, upstreams: Vec<String>) -> Result<(), RiversError> {
        validate_upstreams(&upstreams)?;
        self.shared.pool.replace(&upstreams);
        tracing::info!(upstreams = ?upstreams, "upstream set replaced");
        self.shared.check_now.notify_one();
        Ok(())
    }

    /// The current upstream addresses.
    pub fn upstreams(&self) -> Vec<String> {
        self.shared.pool.snapshot().iter().map(|u| u.address.clone()).collect()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Starts a graceful shutdown: stop accepting, wait for open connections up to the shutdown
    /// timeout. Idempotent.
    pub fn shutdown(&self) {
        self.shared.state.send_if_modified(|s| {
            if *s == RUNNING {
                *s = DRAINING;
                true
            } else {
                false
            }
        });
    }

    /// Stops at once: stop accepting and close every open connection.
    pub fn shutdown_now(&self) {
        self.shared.state.send_replace(ABORTING);
    }
}

impl Shared {
    pub(crate) fn stats(&self) -> Stats {
        Stats {
            accepted: self.accepted.load(Ordering::Relaxed),
            active: self.active.load(Ordering::Relaxed),
            no_upstream: self.no_upstream.load(Ordering::Relaxed),
            check_rounds: self.check_rounds.load(Ordering::Relaxed),
            upstreams: self.pool.stats(),
        }
    }
}

/// A bound, not yet running proxy.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    metrics: Option<TcpListener>,
    shared: Arc<Shared>,
}

impl Server {
    /// Validates the configuration and opens the listeners (proxy and, if configured, metrics).
    pub async fn bind(config: Config) -> Result<Server, RiversError> {
        config.validate()?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|source| RiversError::Listen {
                address: config.listen.clone(),
                source,
            })?;
        let metrics = match &config.metrics {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| RiversError::MetricsListen {
                        address: addr.clone(),
                        source,
                    })?,
            ),
            None => None,
        };
        let shared = Arc::new(Shared {
            pool: Pool::new(&config.upstreams),
            config,
            state: watch::Sender::new(RUNNING),
            check_now: Notify::new(),
            accepted: AtomicU64::new(0),
            active: AtomicU64::new(0),
            no_upstream: AtomicU64::new(0),
            check_rounds: AtomicU64::new(0),
        });
        Ok(Server {
            listener,
            metrics,
            shared,
        })
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    /// The address of the metrics listener, if configured.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .map(|l| l.local_addr().expect("bound listener has an address"))
    }

    /// A control handle.
    pub fn handle(&self) -> Handle {
        Handle {
            shared: self.shared.clone(),
        }
    }

    /// Proxies until [`Handle::shutdown`] (or [`Handle::shutdown_now`]), then drains. Every task it
    /// started has ended when it returns.
    pub async fn run(self) -> ShutdownReport {
        let Server {
            listener,
            metrics,
            shared,
        } = self;
        tracing::info!(
            listen = %listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            upstreams = ?shared.config.upstreams,
            "rivers started"
        );
        let mut background = JoinSet::new();
        background.spawn(health_loop(shared.clone()));
        if let Some(l) = metrics {
            background.spawn(metrics::serve(l, shared.clone()));
        }

        let limit = Arc::new(Semaphore::new(shared.config.max_connections));
        let mut conns = JoinSet::new();
        let mut state = shared.state.subscribe();
        loop {
            let accept = async {
                let permit = limit.clone().acquire_owned().await.expect("semaphore is never closed");
                (permit, listener.accept().await)
            };
            tokio::select! {
                biased;
                _ = wait_state(&mut state, |s| s != RUNNING) => break,
                Some(done) = conns.join_next(), if !conns.is_empty() => log_join(done),
                (permit, res) = accept => match res {
                    Ok((stream, peer)) => {
                        shared.accepted.fetch_add(1, Ordering::Relaxed);
                        let shared = shared.clone();
                        conns.spawn(async move {
                            serve_connection(shared, stream, peer).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        drop(listener);
        tracing::info!(open = conns.len(), "stopped accepting; draining connections");

        let timeout = shared.config.shutdown_timeout;
        let deadline = async {
            if timeout.is_zero() {
                std::future::pending::<()>().await
            } else {
                tokio::time::sleep(timeout).await
            }
        };
        tokio::pin!(deadline);
        let mut aborted = 0;
        loop {
            if conns.is_empty() {
                break;
            }
            tokio::select! {
                Some(done) = conns.join_next() => log_join(done),
                _ = &mut deadline => {
                    aborted = conns.len();
                    tracing::warn!(open = aborted, "shutdown timeout expired; closing open connections");
                    break;
                }
                _ = wait_state(&mut state, |s| s == ABORTING) => {
                    aborted = conns.len();
                    break;
                }
            }
        }
        conns.shutdown().await;
        background.shutdown().await;
        ShutdownReport { aborted }
    }
}

/// Waits until the run state satisfies `cond` (returns at once if it already does).
async fn wait_state(state: &mut watch::Receiver<u8>, cond: impl Fn(u8) -> bool) {
    // The sender lives in `Shared`, which the caller holds, so this only ends by `cond`.
    let _ = state.wait_for(|s| cond(*s)).await;
}

fn log_join(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            tracing::error!(error = %e, "connection task panicked");
        }
    }
}

/// Counts a client connection as active until dropped.
struct ClientGuard<'a>(&'a Shared);

impl Drop for ClientGuard<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn serve_connection(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr) {
    shared.active.fetch_add(1, Ordering::Relaxed);
    let _client_guard = ClientGuard(&shared);
    let _ = client.set_nodelay(true);
    let Some((upstream, mut server)) = connect_upstream(&shared).await else {
        shared.no_upstream.fetch_add(1, Ordering::Relaxed);
        tracing::error!(client = %peer, "no upstream could be reached; closing the client connection");
        return;
    };
    let _guard = upstream.open();
    let mut close = upstream.close_signal();
    let started = std::time::Instant::now();
    tokio::select! {
        res = tokio::io::copy_bidirectional_with_sizes(&mut client, &mut server, COPY_BUFFER, COPY_BUFFER) => {
            match res {
                Ok((up, down)) => tracing::debug!(
                    client = %peer, upstream = %upstream.address, sent = up, received = down,
                    elapsed = ?started.elapsed(), "proxy ends"
                ),
                Err(e) => tracing::debug!(
                    client = %peer, upstream = %upstream.address, error = %e,
                    elapsed = ?started.elapsed(), "proxy ends with an error"
                ),
            }
        }
        _ = close.changed() => {
            tracing::info!(client = %peer, upstream = %upstream.address, "closing connection to an unhealthy upstream");
        }
    }
}

/// Dials the candidates in order; a failed dial marks that upstream down (passive health check)
/// and the next one is tried.
async fn connect_upstream(shared: &Shared) -> Option<(Arc<Upstream>, TcpStream)> {
    for upstream in shared.pool.candidates() {
        match dial(
            &upstream.address,
            shared.config.dial_timeout,
            shared.config.dial_keep_alive,
        )
        .await
        {
            Ok(stream) => {
                // Only possible for an unhealthy upstream when none was healthy: a dial that works
                // is as good as a passed check.
                if !upstream.set_healthy(true) {
                    tracing::info!(upstream = %upstream.address, "dial succeeded; upstream marked healthy");
                }
                return Some((upstream, stream));
            }
            Err(e) => {
                upstream.record_dial_failure();
                if upstream.set_healthy(false) {
                    tracing::warn!(upstream = %upstream.address, error = %e, "dial failed; upstream marked unhealthy");
                } else {
                    tracing::debug!(upstream = %upstream.address, error = %e, "dial failed");
                }
            }
        }
    }
    None
}

async fn dial(address: &str, timeout: Duration, keep_alive: Duration) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("dial timed out after {timeout:?}"),
            )
        })??;
    let _ = stream.set_nodelay(true);
    if !keep_alive.is_zero() {
        let ka = socket2::TcpKeepalive::new()
            .with_time(keep_alive)
            .with_interval(keep_alive);
        if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&ka) {
            tracing::debug!(upstream = %address, error = %e, "cannot set TCP keep-alive");
        }
    }
    Ok(stream)
}

/// Checks every upstream at start, every check interval, and right after the set changes.
async fn health_loop(shared: Arc<Shared>) {
    let mut first = true;
    loop {
        check_all(&shared, first).await;
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(shared.config.check_interval) => {}
            _ = shared.check_now.notified() => {}
        }
    }
}

/// One round of TCP-connect checks, concurrently. An upstream that fails is marked down and its
/// open connections are closed (as CKE's rivers does); one that passes is marked up.
async fn check_all(shared: &Shared, first: bool) {
    let list = shared.pool.snapshot();
    let timeout = shared.config.check_timeout;
    let checks = list.iter().map(|u| async move {
        let res = match tokio::time::timeout(timeout, TcpStream::connect(&u.address)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {timeout:?}")),
        };
        match res {
            Ok(()) => {
                if !u.set_healthy(true) || first {
                    tracing::info!(upstream = %u.address, "upstream is healthy");
                }
            }
            Err(e) => {
                if u.set_healthy(false) || first {
                    tracing::warn!(upstream = %u.address, error = %e, "upstream is unhealthy");
                }
                if u.active() > 0 {
                    u.close_connections();
                }
            }
        }
    });
    futures::future::join_all(checks).await;
    shared.check_rounds.fetch_add(1, Ordering::Relaxed);
}
