//! The client side of the *managed* etcd (the one cke runs on control-plane nodes): membership
//! (learner add, promote, remove), health and in-sync checks, and the RBAC setup done at bootstrap.
//! It authenticates with a client certificate (the `root` user). It never touches the management etcd
//! and never runs anything on a node: operators combine it with the node agent.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, MemberAddOptions, Permission, TlsOptions, UserAddOptions,
};

use crate::model::{EtcdClusterStatus, EtcdMember};

/// Client certificate material for the managed etcd.
#[derive(Clone)]
pub struct EtcdTls {
    /// PEM CA certificate of the etcd server certificates (Vault `cke/ca-server`).
    pub ca: String,
    /// PEM client certificate (CN = etcd user, e.g. `root`).
    pub cert: String,
    /// PEM private key of the client certificate.
    pub key: String,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EtcdTls { .. }")
    }
}

/// Errors talking to the managed etcd.
#[derive(Debug, thiserror::Error)]
pub enum ManagedEtcdError {
    /// A request failed.
    #[error("managed etcd ({endpoints}): {what} failed")]
    Request {
        /// Endpoints used.
        endpoints: String,
        /// What was attempted.
        what: String,
        /// The client error.
        #[source]
        source: etcd_client::Error,
    },
    /// A request did not answer in time.
    #[error("managed etcd ({endpoints}): {what} timed out after {timeout:?}")]
    Timeout {
        /// Endpoints used.
        endpoints: String,
        /// What was attempted.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// The cluster answered, but not as expected.
    #[error("managed etcd ({endpoints}): {reason}")]
    Unexpected {
        /// Endpoints used.
        endpoints: String,
        /// What is wrong.
        reason: String,
    },
}

/// One member as listed by etcd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Member id.
    pub id: u64,
    /// Name; empty until the member has started.
    pub name: String,
    /// Peer URLs.
    pub peer_urls: Vec<String>,
    /// Client URLs; empty until started.
    pub client_urls: Vec<String>,
    /// Non-voting learner.
    pub is_learner: bool,
}

impl MemberInfo {
    /// The node address, parsed from the first peer URL (`https://ADDR:2380`).
    pub fn address(&self) -> Option<String> {
        self.peer_urls.first().and_then(|u| host_of_url(u))
    }
}

/// The host part of a URL such as `https://10.0.0.1:2380` or `https://[fd00::1]:2380`.
pub fn host_of_url(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let hostport = rest.split('/').next()?;
    if let Some(v6) = hostport.strip_prefix('[') {
        return v6.split_once(']').map(|(h, _)| h.to_string());
    }
    Some(hostport.rsplit_once(':').map_or(hostport, |(h, _)| h).to_string())
}

/// A connection to the managed etcd through a set of client endpoints.
#[derive(Clone)]
pub struct ManagedEtcd {
    client: Client,
    endpoints: Vec<String>,
    tls: EtcdTls,
    timeout: Duration,
}

fn options(tls: &EtcdTls, timeout: Duration) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
        .with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(tls.ca.clone()))
                .identity(Identity::from_pem(tls.cert.clone(), tls.key.clone())),
        )
}

/// The endpoints (URLs) that accept a TCP connection within a second, checked in parallel.
pub async fn live_endpoints(endpoints: &[String]) -> Vec<String> {
    let checks = endpoints.iter().map(|e| async move {
        let rest = e.split_once("://").map_or(e.as_str(), |(_, r)| r);
        let hostport = rest.split('/').next().unwrap_or(rest).to_string();
        let ok = matches!(
            tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(hostport)).await,
            Ok(Ok(_))
        );
        (e.clone(), ok)
    });
    futures::future::join_all(checks)
        .await
        .into_iter()
        .filter(|(_, ok)| *ok)
        .map(|(e, _)| e)
        .collect()
}

impl ManagedEtcd {
    /// A client over `endpoints` (e.g. `https://10.0.0.1:2379`). Endpoints that do not accept a TCP
    /// connection within a second are left out (the client would otherwise send some requests to a
    /// node whose member is down or not yet started); when none answers, all are kept so that the
    /// error names them.
    pub async fn connect(endpoints: Vec<String>, tls: EtcdTls, timeout: Duration) -> Result<Self, ManagedEtcdError> {
        let live = live_endpoints(&endpoints).await;
        let endpoints = if live.is_empty() { endpoints } else { live };
        let client = Client::connect(endpoints.clone(), Some(options(&tls, timeout)))
            .await
            .map_err(|e| ManagedEtcdError::Request {
                endpoints: endpoints.join(","),
                what: "connect".into(),
                source: e,
            })?;
        Ok(ManagedEtcd {
            client,
            endpoints,
            tls,
            timeout,
        })
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// The underlying client, for callers that need a raw request (e.g. a test writer).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    async fn call<T, F>(&self, what: &str, f: F) -> Result<T, ManagedEtcdError>
    where
        F: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.timeout, f).await {
            Err(_) => Err(ManagedEtcdError::Timeout {
                endpoints: self.endpoints(),
                what: what.into(),
                timeout: self.timeout,
            }),
            Ok(Err(e)) => Err(ManagedEtcdError::Request {
                endpoints: self.endpoints(),
                what: what.into(),
                source: e,
            }),
            Ok(Ok(v)) => Ok(v),
        }
    }

    /// Lists the members. A read: tried once more when the first try fails (the client may have
    /// picked the endpoint of a member that was just removed and is shutting down).
    pub async fn members(&self) -> Result<Vec<MemberInfo>, ManagedEtcdError> {
        let mut c = self.client.clone();
        let resp = match self.call("member list", c.member_list()).await {
            Ok(r) => r,
            Err(_) => self.call("member list", c.member_list()).await?,
        };
        Ok(resp.members().iter().map(convert).collect())
    }

    /// Adds a learner with this peer URL; returns its id and the member list after the change
    /// (from which the joining member's `--initial-cluster` is built).
    pub async fn add_learner(&self, peer_url: &str) -> Result<(u64, Vec<MemberInfo>), ManagedEtcdError> {
        let mut c = self.client.clone();
        let what = format!("member add --learner {peer_url}");
        let resp = self
            .call(
                &what,
                c.member_add([peer_url], Some(MemberAddOptions::new().with_is_learner())),
            )
            .await?;
        let id = resp
            .member()
            .map(|m| m.id())
            .ok_or_else(|| ManagedEtcdError::Unexpected {
                endpoints: self.endpoints(),
                reason: format!("{what}: no member in the response"),
            })?;
        Ok((id, resp.member_list().iter().map(convert).collect()))
    }

    /// Adds a learner, retrying while etcd refuses ("unhealthy cluster" right after members start),
    /// for at most `limit`. Safe to retry: a member already registered with this peer URL (from an
    /// attempt whose answer was lost) is returned instead of adding another.
    pub async fn add_learner_when_ready(
        &self,
        peer_url: &str,
        limit: Duration,
    ) -> Result<(u64, Vec<MemberInfo>), ManagedEtcdError> {
        let start = tokio::time::Instant::now();
        loop {
            let members = self.members().await?;
            if let Some(m) = members.iter().find(|m| m.peer_urls.iter().any(|u| u == peer_url)) {
                return Ok((m.id, members));
            }
            match self.add_learner(peer_url).await {
                Ok(r) => return Ok(r),
                Err(e) if start.elapsed() >= limit => return Err(e),
                Err(e) => {
                    tracing::info!(error = %e, "etcd refused member add; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await
                }
            }
        }
    }

    /// Promotes a learner. etcd refuses while the learner lags; see [`Self::promote_when_ready`].
    ///
    /// The request goes to the raft leader's endpoint: a follower forwards a promotion to the leader
    /// without the caller's credentials, and with auth enabled etcd 3.4 refuses that ("auth: user name
    /// is empty") and retries it until the request times out. When the leader cannot be found or reached, the
    /// request goes through every endpoint.
    pub async fn promote(&self, id: u64) -> Result<(), ManagedEtcdError> {
        let what = format!("member promote {id:x}");
        match self.leader_client_url().await {
            Some(url) if !live_endpoints(std::slice::from_ref(&url)).await.is_empty() => {
                let leader = ManagedEtcd::connect(vec![url], self.tls.clone(), self.timeout).await?;
                let mut c = leader.client.clone();
                leader.call(&what, c.member_promote(id)).await?;
            }
            _ => {
                let mut c = self.client.clone();
                self.call(&what, c.member_promote(id)).await?;
            }
        }
        Ok(())
    }

    /// The client URL of the raft leader, as the members see it.
    async fn leader_client_url(&self) -> Option<String> {
        let mut c = self.client.clone();
        let leader = self.call("status", c.status()).await.ok()?.leader();
        let members = self.members().await.ok()?;
        members
            .into_iter()
            .find(|m| m.id == leader)?
            .client_urls
            .into_iter()
            .next()
    }

    /// Promotes a learner, retrying while it catches up, for at most `limit`.
    pub async fn promote_when_ready(&self, id: u64, limit: Duration) -> Result<(), ManagedEtcdError> {
        let start = tokio::time::Instant::now();
        let mut refusals = 0u32;
        loop {
            match self.promote(id).await {
                Ok(()) => {
                    tracing::info!(member = format!("{id:x}"), refusals, elapsed = ?start.elapsed(), "learner promoted");
                    return Ok(());
                }
                Err(e) => {
                    // An answer lost after the promotion, or a member that is gone: no retry helps.
                    if let Ok(ms) = self.members().await {
                        match ms.iter().find(|m| m.id == id) {
                            Some(m) if !m.is_learner => {
                                tracing::info!(member = format!("{id:x}"), "learner already promoted");
                                return Ok(());
                            }
                            None => return Err(e),
                            Some(_) => {}
                        }
                    }
                    if start.elapsed() >= limit {
                        return Err(e);
                    }
                    if refusals == 0 {
                        tracing::info!(
                            member = format!("{id:x}"),
                            error = crate::error::error_chain(&e),
                            "learner not ready for promotion; retrying"
                        );
                    }
                    refusals += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await
                }
            }
        }
    }

    /// Removes a member. Removing an id that is already gone succeeds (idempotent), also when the
    /// member list came from a member that had not yet applied the removal ("member not found").
    pub async fn remove(&self, id: u64) -> Result<(), ManagedEtcdError> {
        if !self.members().await?.iter().any(|m| m.id == id) {
            return Ok(());
        }
        let mut c = self.client.clone();
        match self.call(&format!("member remove {id:x}"), c.member_remove(id)).await {
            Err(ManagedEtcdError::Request { source, .. }) if source.to_string().contains("member not found") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Health: a lease grant through the members; returns the grant's revision.
    pub async fn health_revision(&self) -> Result<i64, ManagedEtcdError> {
        let mut c = self.client.clone();
        let resp = self.call("lease grant", c.lease_grant(10, None)).await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or_default();
        let _ = self.call("lease revoke", c.lease_revoke(resp.id())).await;
        Ok(rev)
    }

    /// The revision a member serves from its own state (a serializable read on its endpoint alone).
    pub async fn member_revision(&self, client_url: &str) -> Result<i64, ManagedEtcdError> {
        let one = ManagedEtcd::connect(vec![client_url.to_string()], self.tls.clone(), self.timeout).await?;
        let mut c = one.client.clone();
        let resp = one
            .call(
                "serializable read",
                c.get("health", Some(GetOptions::new().with_serializable())),
            )
            .await?;
        Ok(resp.header().map(|h| h.revision()).unwrap_or_default())
    }

    /// The cluster status the planner needs: members by node address, health, in-sync members.
    /// Unreachable members are simply not in sync; only a failing member list is an error.
    pub async fn cluster_status(&self) -> Result<EtcdClusterStatus, ManagedEtcdError> {
        let members = self.members().await?;
        let mut st = EtcdClusterStatus::default();
        for m in &members {
            if let Some(a) = m.address() {
                st.members.insert(
                    a,
                    EtcdMember {
                        id: m.id,
                        name: m.name.clone(),
                        is_learner: m.is_learner,
                    },
                );
            }
        }
        let Ok(rev) = self.health_revision().await else {
            return Ok(st);
        };
        st.is_healthy = true;
        let checks = members.iter().filter(|m| !m.name.is_empty()).filter_map(|m| {
            let url = m.client_urls.first()?.clone();
            let addr = m.address()?;
            Some(async move { (addr, self.member_revision(&url).await) })
        });
        let results = futures::future::join_all(checks).await;
        st.in_sync_members = results
            .into_iter()
            .filter(|(_, r)| matches!(r, Ok(v) if *v >= rev))
            .map(|(a, _)| a)
            .collect();
        Ok(st)
    }

    async fn users_and_roles(&self) -> Result<(BTreeSet<String>, BTreeSet<String>), ManagedEtcdError> {
        let mut c = self.client.clone();
        let users = self
            .call("user list", c.user_list())
            .await?
            .users()
            .iter()
            .cloned()
            .collect();
        let roles = self
            .call("role list", c.role_list())
            .await?
            .roles()
            .iter()
            .cloned()
            .collect();
        Ok((users, roles))
    }

    /// Creates the users and roles cke relies on and enables authentication (idempotent):
    /// `root` (role root) and `kube-apiserver` (role with read-write on `/registry/`), both without
    /// passwords: clients authenticate with certificates whose CN is the user name.
    pub async fn setup_auth(&self) -> Result<(), ManagedEtcdError> {
        let mut c = self.client.clone();
        let (users, roles) = self.users_and_roles().await?;
        if !users.contains("root") {
            self.call(
                "user add root",
                c.user_add("root", "", Some(UserAddOptions::new().with_no_pwd())),
            )
            .await?;
        }
        if !roles.contains("root") {
            self.call("role add root", c.role_add("root")).await?;
        }
        self.call("grant root to root", c.user_grant_role("root", "root"))
            .await?;
        self.ensure_prefix_user("kube-apiserver", "/registry/", &users, &roles)
            .await?;
        self.call("auth enable", c.auth_enable()).await?;
        Ok(())
    }

    async fn ensure_prefix_user(
        &self,
        user: &str,
        prefix: &str,
        users: &BTreeSet<String>,
        roles: &BTreeSet<String>,
    ) -> Result<(), ManagedEtcdError> {
        let mut c = self.client.clone();
        if !users.contains(user) {
            self.call(
                &format!("user add {user}"),
                c.user_add(user, "", Some(UserAddOptions::new().with_no_pwd())),
            )
            .await?;
        }
        if !roles.contains(user) {
            self.call(&format!("role add {user}"), c.role_add(user)).await?;
        }
        self.call(
            &format!("grant {prefix} to role {user}"),
            c.role_grant_permission(user, Permission::read_write(prefix).with_prefix()),
        )
        .await?;
        self.call(&format!("grant role {user}"), c.user_grant_role(user, user))
            .await?;
        Ok(())
    }

    /// Adds (or updates) a user with read-write access to `prefix` (`ckecli etcd user-add`).
    pub async fn user_add(&self, user: &str, prefix: &str) -> Result<(), ManagedEtcdError> {
        let (users, roles) = self.users_and_roles().await?;
        self.ensure_prefix_user(user, prefix, &users, &roles).await
    }

    /// Streams a snapshot of the keyspace from one member into `path` (written to a temporary file
    /// first, then renamed, so a partial snapshot never looks complete); returns its size in bytes.
    pub async fn snapshot_to(&self, path: &std::path::Path) -> Result<u64, ManagedEtcdError> {
        use tokio::io::AsyncWriteExt;
        let io_err = |what: String, e: std::io::Error| ManagedEtcdError::Unexpected {
            endpoints: self.endpoints(),
            reason: format!("{what}: {e}"),
        };
        let tmp = path.with_extension("part");
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(|e| io_err(format!("create {}", tmp.display()), e))?;
        let mut c = self.client.clone();
        let mut stream = self.call("snapshot", c.snapshot()).await?;
        let mut size = 0u64;
        loop {
            let msg = match tokio::time::timeout(self.timeout * 6, stream.message()).await {
                Err(_) => {
                    return Err(ManagedEtcdError::Timeout {
                        endpoints: self.endpoints(),
                        what: "snapshot stream".into(),
                        timeout: self.timeout * 6,
                    })
                }
                Ok(Err(e)) => {
                    return Err(ManagedEtcdError::Request {
                        endpoints: self.endpoints(),
                        what: "snapshot".into(),
                        source: e,
                    })
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(m))) => m,
            };
            file.write_all(msg.blob())
                .await
                .map_err(|e| io_err(format!("write {}", tmp.display()), e))?;
            size += msg.blob().len() as u64;
        }
        file.sync_all()
            .await
            .map_err(|e| io_err(format!("sync {}", tmp.display()), e))?;
        drop(file);
        if size == 0 {
            return Err(ManagedEtcdError::Unexpected {
                endpoints: self.endpoints(),
                reason: "empty snapshot".into(),
            });
        }
        tokio::fs::rename(&tmp, path)
            .await
            .map_err(|e| io_err(format!("rename to {}", path.display()), e))?;
        Ok(size)
    }

    /// Members by address, for callers that need the full list.
    pub async fn members_by_address(&self) -> Result<BTreeMap<String, MemberInfo>, ManagedEtcdError> {
        Ok(self
            .members()
            .await?
            .into_iter()
            .filter_map(|m| Some((m.address()?, m)))
            .collect())
    }
}

fn convert(m: &etcd_client::Member) -> MemberInfo {
    MemberInfo {
        id: m.id(),
        name: m.name().to_string(),
        peer_urls: m.peer_urls().to_vec(),
        client_urls: m.client_urls().to_vec(),
        is_learner: m.is_learner(),
    }
}

#[cfg(test)]
mod tests {
    use super::host_of_url;

    #[test]
    fn hosts_of_urls() {
        assert_eq!(host_of_url("https://10.0.0.1:2380").as_deref(), Some("10.0.0.1"));
        assert_eq!(host_of_url("https://[fd00::1]:2380").as_deref(), Some("fd00::1"));
        assert_eq!(host_of_url("http://node1:2379/").as_deref(), Some("node1"));
        assert_eq!(host_of_url("10.0.0.2").as_deref(), Some("10.0.0.2"));
    }
}
