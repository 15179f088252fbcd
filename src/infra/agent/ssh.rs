//! SSH to the nodes (russh): a pool of connections keyed by address and user, reused across commands
//! and passes, with a dial timeout (TCP, key exchange and authentication: a node that accepts TCP and
//! never answers costs that much), keep-alives, reconnection when a connection broke, verified host
//! keys (a pin that changes drops the pooled connections verified with another key), a deadline on
//! every command enforced on the node too (`timeout -k`: a hung command is killed there, not only
//! abandoned here), and a semaphore bounding how many commands run at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use russh::client::{self, Handle};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::ChannelMsg;
use tokio::sync::{Mutex, Semaphore};

use super::hostkey::{HostKeyMode, HostKeyStore};
use super::{AgentError, Output, Runner};

/// Supplies SSH private keys by node address.
#[async_trait]
pub trait KeyProvider: Send + Sync {
    /// The private key (OpenSSH or PEM text) for `address`.
    async fn private_key(&self, address: &str) -> Result<String, AgentError>;

    /// The private key for `address`, parsed (providers that cache keys parse each one once).
    async fn decoded_key(&self, address: &str) -> Result<Arc<PrivateKey>, AgentError> {
        let text = self.private_key(address).await?;
        russh::keys::decode_secret_key(&text, None)
            .map(Arc::new)
            .map_err(|e| AgentError::NoKey {
                address: address.into(),
                reason: format!("unusable private key: {e}"),
            })
    }
}

/// One key for every node (tests, `ckecli ssh --identity`).
pub struct StaticKey(pub String);

#[async_trait]
impl KeyProvider for StaticKey {
    async fn private_key(&self, _address: &str) -> Result<String, AgentError> {
        Ok(self.0.clone())
    }
}

/// Pool settings.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// TCP connect plus SSH handshake limit.
    pub dial_timeout: Duration,
    /// Keep-alive interval on idle connections.
    pub keepalive: Duration,
    /// Host-key policy.
    pub host_key_mode: HostKeyMode,
    /// Commands running at once over the whole pool.
    pub max_concurrency: usize,
    /// SSH port.
    pub port: u16,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            dial_timeout: Duration::from_secs(5),
            keepalive: KEEPALIVE,
            host_key_mode: HostKeyMode::Tofu,
            max_concurrency: 64,
            port: 22,
        }
    }
}

/// Keep-alive interval on idle connections: a pooled connection that answers none of two is dropped.
/// Every idle connection costs a round trip per interval (at 1000 nodes and 5 s, 200 a second: more
/// than the probe itself); a connection that dies silently while a command runs is found by the
/// command's deadline or by these keep-alives, whichever comes first, and the probe drops a
/// connection that does not answer within its own limit.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// The ciphers offered, most preferred first: russh's default set, AES-GCM first (AES-NI and
/// carry-less multiplication make it the cheapest on x86-64 and arm64 servers; ChaCha20-Poly1305 for
/// nodes without them).
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

struct Verifier {
    address: String,
    store: Arc<dyn HostKeyStore>,
    mode: HostKeyMode,
    refused: Arc<std::sync::Mutex<Option<String>>>,
    seen: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            *self.refused.lock().unwrap() = Some("host certificates are not accepted; pin a host key".into());
            return Ok(false);
        };
        let presented = key.to_openssh().map_err(|_| russh::Error::UnknownKey)?;
        let presented = key_text(&presented);
        *self.seen.lock().unwrap() = Some(presented.clone());
        let pinned = match self.store.get(&self.address).await {
            Ok(p) => p,
            Err(e) => {
                *self.refused.lock().unwrap() = Some(format!("cannot read the pinned key: {e}"));
                return Ok(false);
            }
        };
        let verdict = match (pinned, self.mode) {
            (Some(p), _) if key_text(&p) == presented => Ok(()),
            (Some(p), _) => Err(format!("presented {presented}, pinned {p}")),
            (None, HostKeyMode::Strict) => Err(format!("no pinned key (strict mode); presented {presented}")),
            // Pinned only if still unpinned: of two first connections, one pins and the other
            // is checked against that pin.
            (None, HostKeyMode::Tofu) => match self.store.pin_first(&self.address, &presented).await {
                Ok(true) => {
                    tracing::info!(
                        address = self.address,
                        key = presented,
                        "pinned SSH host key on first use"
                    );
                    Ok(())
                }
                Ok(false) => match self.store.get(&self.address).await {
                    Ok(Some(p)) if key_text(&p) == presented => Ok(()),
                    Ok(p) => Err(format!(
                        "presented {presented}, pinned meanwhile {}",
                        p.unwrap_or_default()
                    )),
                    Err(e) => Err(format!("cannot read the pinned key: {e}")),
                },
                Err(e) => Err(format!("cannot pin the key: {e}")),
            },
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(reason) => {
                crate::metrics::process().ssh_hostkey_mismatches.inc();
                tracing::error!(
                    address = self.address,
                    reason,
                    "SSH HOST KEY REFUSED: possible man-in-the-middle; node treated as unreachable"
                );
                *self.refused.lock().unwrap() = Some(reason);
                Ok(false)
            }
        }
    }
}

/// A pooled connection, counted in `cke_ssh_connections` while the pool or a command holds it.
struct Pooled {
    handle: Handle<Verifier>,
    _open: crate::metrics::SshConnection,
}

impl std::ops::Deref for Pooled {
    type Target = Handle<Verifier>;
    fn deref(&self) -> &Handle<Verifier> {
        &self.handle
    }
}

type Conn = Arc<Pooled>;

/// An entry of the pool: a connection and the host key it was verified with (`ALGORITHM BASE64`).
struct PoolEntry {
    conn: Conn,
    host_key: String,
}

/// The pool.
pub struct SshPool {
    keys: Arc<dyn KeyProvider>,
    hostkeys: Arc<dyn HostKeyStore>,
    cfg: SshConfig,
    conns: Mutex<HashMap<(String, String), PoolEntry>>,
    sem: Arc<Semaphore>,
}

impl SshPool {
    /// A pool.
    pub fn new(keys: Arc<dyn KeyProvider>, hostkeys: Arc<dyn HostKeyStore>, cfg: SshConfig) -> Arc<Self> {
        let sem = Arc::new(Semaphore::new(cfg.max_concurrency.max(1)));
        Arc::new(SshPool {
            keys,
            hostkeys,
            cfg,
            conns: Mutex::new(HashMap::new()),
            sem,
        })
    }

    /// A runner for `user@address`. Connecting happens on the first command.
    pub fn node(self: &Arc<Self>, address: &str, user: &str) -> NodeAgent {
        NodeAgent {
            pool: self.clone(),
            address: address.into(),
            user: user.into(),
        }
    }

    /// Connects and returns the host key presented (used by `ckecli ssh-hostkey scan`); the key is
    /// checked against the pins like any other connection.
    pub async fn scan(address: &str, port: u16, timeout: Duration) -> Result<String, AgentError> {
        struct Capture(Arc<std::sync::Mutex<Option<String>>>);
        impl client::Handler for Capture {
            type Error = russh::Error;
            async fn check_server_key(&mut self, key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
                let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
                    return Ok(false);
                };
                let line = key.to_openssh().map_err(|_| russh::Error::UnknownKey)?;
                *self.0.lock().unwrap() = Some(key_text(&line));
                Ok(false)
            }
        }
        let seen = Arc::new(std::sync::Mutex::new(None));
        let config = Arc::new(client::Config::default());
        let _ = tokio::time::timeout(timeout, client::connect(config, (address, port), Capture(seen.clone()))).await;
        let key = seen.lock().unwrap().clone();
        key.ok_or_else(|| AgentError::Connect {
            address: address.into(),
            reason: "no host key received".into(),
        })
    }

    async fn connect(&self, address: &str, user: &str) -> Result<PoolEntry, AgentError> {
        match self.dial(address, user).await {
            Ok((handle, host_key)) => Ok(PoolEntry {
                conn: Arc::new(Pooled {
                    handle,
                    _open: crate::metrics::process().ssh_connection(),
                }),
                host_key,
            }),
            Err(e) => {
                crate::metrics::process().ssh_connect_failure();
                Err(e)
            }
        }
    }

    /// Dials, checks the host key, reads the key and authenticates. Returns the handle and the host
    /// key it was verified with.
    async fn dial(&self, address: &str, user: &str) -> Result<(Handle<Verifier>, String), AgentError> {
        // With a pin, ask for the pinned key's algorithm: a server with several host keys would
        // otherwise present its Ed25519 key while an RSA or ECDSA key is pinned.
        let mut preferred = russh::Preferred {
            cipher: CIPHERS.into(),
            ..Default::default()
        };
        if let Ok(Some(pin)) = self.hostkeys.get(address).await {
            if let Some(algorithms) = host_key_algorithms(&pin) {
                preferred.key = algorithms.into();
            }
        }
        let config = Arc::new(client::Config {
            keepalive_interval: Some(self.cfg.keepalive),
            keepalive_max: 2,
            inactivity_timeout: None,
            preferred,
            ..Default::default()
        });
        let refused = Arc::new(std::sync::Mutex::new(None));
        let seen = Arc::new(std::sync::Mutex::new(None));
        let verifier = Verifier {
            address: address.into(),
            store: self.hostkeys.clone(),
            mode: self.cfg.host_key_mode,
            refused: refused.clone(),
            seen: seen.clone(),
        };
        let connect = client::connect(config, (address, self.cfg.port), verifier);
        let mut handle = match tokio::time::timeout(self.cfg.dial_timeout, connect).await {
            Err(_) => {
                return Err(AgentError::Connect {
                    address: address.into(),
                    reason: format!("no answer within {:?}", self.cfg.dial_timeout),
                })
            }
            Ok(Err(e)) => {
                if let Some(reason) = refused.lock().unwrap().take() {
                    return Err(AgentError::HostKey {
                        address: address.into(),
                        reason,
                    });
                }
                return Err(AgentError::Connect {
                    address: address.into(),
                    reason: e.to_string(),
                });
            }
            Ok(Ok(h)) => h,
        };
        // The key only once the node has answered: a node that cannot be reached costs no read of
        // the keys (with a node down, every pass would read them again).
        let key = self.keys.decoded_key(address).await?;
        let hash = handle.best_supported_rsa_hash().await.ok().flatten().flatten();
        let auth = tokio::time::timeout(
            self.cfg.dial_timeout,
            handle.authenticate_publickey(user, PrivateKeyWithHashAlg::new(key, hash)),
        )
        .await
        .map_err(|_| AgentError::Connect {
            address: address.into(),
            reason: "authentication timed out".into(),
        })?
        .map_err(|e| AgentError::Connect {
            address: address.into(),
            reason: e.to_string(),
        })?;
        if !auth.success() {
            return Err(AgentError::Auth {
                address: address.into(),
                user: user.into(),
            });
        }
        let host_key = seen.lock().unwrap().take().unwrap_or_default();
        Ok((handle, host_key))
    }

    async fn get(&self, address: &str, user: &str) -> Result<Conn, AgentError> {
        let key = (address.to_string(), user.to_string());
        if let Some(c) = self.conns.lock().await.get(&key) {
            if !c.conn.is_closed() {
                return Ok(c.conn.clone());
            }
        }
        let c = self.connect(address, user).await?;
        let conn = c.conn.clone();
        self.conns.lock().await.insert(key, c);
        Ok(conn)
    }

    /// The pinned host key of `address` changed to `pin` (`None`: the pin was deleted): drops the
    /// pooled connections to that node that were verified with another key (all of them when the pin
    /// was deleted), so that no command reaches a node over a connection the pins no longer vouch
    /// for. Returns how many were dropped.
    pub async fn pin_changed(&self, address: &str, pin: Option<&str>) -> usize {
        let pin = pin.map(key_text);
        let mut conns = self.conns.lock().await;
        let before = conns.len();
        conns.retain(|(a, _), c| a != address || pin.as_deref() == Some(c.host_key.as_str()));
        let dropped = before - conns.len();
        if dropped > 0 {
            tracing::warn!(
                address,
                dropped,
                "the pinned SSH host key changed: pooled connections dropped"
            );
        }
        dropped
    }

    /// The pool's settings.
    pub fn config(&self) -> &SshConfig {
        &self.cfg
    }

    /// Drops the pooled connection to `user@address` (the next command reconnects).
    pub async fn forget(&self, address: &str, user: &str) {
        self.conns.lock().await.remove(&(address.to_string(), user.to_string()));
    }

    /// Closes every pooled connection.
    pub async fn close_all(&self) {
        self.conns.lock().await.clear();
    }
}

/// Commands on one node through the pool.
#[derive(Clone)]
pub struct NodeAgent {
    pool: Arc<SshPool>,
    address: String,
    user: String,
}

/// `ALGORITHM BASE64` of an OpenSSH public key line (the comment dropped), for comparing keys.
fn key_text(line: &str) -> String {
    line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// The host-key algorithms that can present the pinned key `pin` (`ALGORITHM BASE64`): an RSA key
/// signs with SHA-512, SHA-256 or SHA-1.
fn host_key_algorithms(pin: &str) -> Option<Vec<russh::keys::Algorithm>> {
    use russh::keys::{Algorithm, HashAlg};
    let key = russh::keys::parse_public_key_base64(pin.split_whitespace().nth(1)?).ok()?;
    Some(match key.algorithm() {
        Algorithm::Rsa { .. } => vec![
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha512),
            },
            Algorithm::Rsa {
                hash: Some(HashAlg::Sha256),
            },
            Algorithm::Rsa { hash: None },
        ],
        other => vec![other],
    })
}

/// Why [`exec`] failed: `started` when the command may have reached the node (it must not be sent
/// again then: it may still be running).
struct ExecError {
    started: bool,
    error: russh::Error,
}

/// How long after its deadline a remote command that ignores SIGTERM gets SIGKILL.
pub const REMOTE_KILL_AFTER: Duration = Duration::from_secs(5);

/// The exit statuses of `timeout(1)` when the deadline passed: 124 (SIGTERM sufficed), 137 (SIGKILL).
const TIMEOUT_STATUSES: [u32; 2] = [124, 137];

/// `command` under a deadline enforced on the node: `timeout` sends SIGTERM to the command's whole
/// process group at `limit`, SIGKILL [`REMOTE_KILL_AFTER`] later, so that a command that hangs (a stuck
/// container engine, a dead NFS mount) does not outlive its caller's patience on the node.
pub fn with_remote_deadline(command: &str, limit: Duration) -> String {
    format!(
        "timeout -k {}s {:.3}s sh -c {}",
        REMOTE_KILL_AFTER.as_secs(),
        limit.as_secs_f64().max(0.001),
        super::shell_quote(command)
    )
}

async fn exec(conn: &Conn, command: &str, stdin: Option<&[u8]>) -> Result<Output, ExecError> {
    let mut ch = conn
        .channel_open_session()
        .await
        .map_err(|error| ExecError { started: false, error })?;
    let started = |error| ExecError { started: true, error };
    ch.exec(true, command).await.map_err(started)?;
    if let Some(data) = stdin {
        ch.data(data).await.map_err(started)?;
    }
    ch.eof().await.map_err(started)?;
    let mut out = Output {
        status: 255,
        ..Default::default()
    };
    while let Some(msg) = ch.wait().await {
        match msg {
            ChannelMsg::Data { data } => out.stdout.extend_from_slice(&data),
            ChannelMsg::ExtendedData { data, ext: 1 } => out.stderr.extend_from_slice(&data),
            ChannelMsg::ExitStatus { exit_status } => out.status = exit_status,
            _ => {}
        }
    }
    Ok(out)
}

impl NodeAgent {
    /// The SSH user.
    pub fn user(&self) -> &str {
        &self.user
    }
}

#[async_trait]
impl Runner for NodeAgent {
    fn address(&self) -> &str {
        &self.address
    }

    async fn run(&self, command: &str, stdin: Option<&[u8]>, timeout: Duration) -> Result<Output, AgentError> {
        let _permit = self.pool.sem.acquire().await.expect("semaphore never closes");
        let timed_out = || AgentError::Timeout {
            address: self.address.clone(),
            command: command.into(),
            timeout,
        };
        let remote = with_remote_deadline(command, timeout);
        for attempt in 0..2 {
            let conn = self.pool.get(&self.address, &self.user).await?;
            let started = tokio::time::Instant::now();
            // The node ends the command at `timeout`; a second more here lets its answer arrive.
            match tokio::time::timeout(timeout + Duration::from_secs(1), exec(&conn, &remote, stdin)).await {
                Err(_) => {
                    // The channel may be stuck; drop the connection so the next command starts clean.
                    self.pool.forget(&self.address, &self.user).await;
                    return Err(timed_out());
                }
                Ok(Ok(out)) if TIMEOUT_STATUSES.contains(&out.status) && started.elapsed() >= timeout => {
                    return Err(timed_out())
                }
                Ok(Ok(out)) => return Ok(out),
                Ok(Err(e)) => {
                    self.pool.forget(&self.address, &self.user).await;
                    // A pooled connection that broke before the command was sent is retried on a new
                    // one; a command that may have started is never sent twice.
                    if attempt == 1 || e.started {
                        return Err(AgentError::Session {
                            address: self.address.clone(),
                            reason: e.error.to_string(),
                        });
                    }
                    tracing::debug!(address = self.address, error = %e.error, "SSH connection broke; reconnecting");
                }
            }
        }
        unreachable!("the loop returns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_enforces_the_deadline() {
        assert_eq!(
            with_remote_deadline("echo 'a b'; sleep 1", Duration::from_millis(2500)),
            r#"timeout -k 5s 2.500s sh -c 'echo '\''a b'\''; sleep 1'"#
        );
    }
}
