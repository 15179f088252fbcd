//! The infrastructure layer: every side effect an operator may cause, each behind a trait with a
//! real implementation and, for unit tests, a fake ([`fake`], test builds only).
//!
//! - [`NodeAccess`]: shell commands and files on a node (SSH: [`agent::ssh::SshPool`]);
//! - [`Engine`]: the docker-compatible container engine on a node ([`ContainerEngine`] over SSH);
//! - [`CertIssuer`]: certificates from Vault PKI ([`pki::Issuer`]);
//! - [`EtcdConnector`] / [`EtcdAdmin`]: the managed etcd's admin API ([`managed_etcd`]);
//! - [`HostCommands`]: commands on cke's own host, with their timeouts ([`host_command`]);
//! - the management etcd is [`crate::storage::Storage`] (with its in-memory double).
//!
//! [`Infra`] bundles them for one pass. Building it connects nowhere; the real implementations
//! connect on first use. This layer knows nothing of plans or operators.

pub mod agent;
pub mod drain;
#[cfg(test)]
pub mod fake;
pub mod host_command;
pub mod kube;
pub mod managed_etcd;
pub mod pki;
pub mod term_guard;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::infra::agent::container::{ContainerEngine, RunSpec};
use crate::infra::agent::ssh::SshPool;
use crate::infra::agent::{AgentError, Runner};
pub use crate::infra::host_command::{HostCommandError, HostCommands};
use crate::infra::managed_etcd::{live_endpoints, EtcdTls, ManagedEtcd, ManagedEtcdError, MemberInfo};
use crate::infra::pki::{IssueRequest, IssuedCert, Issuer, VaultClient, VaultError};
use crate::model::{Cluster, EtcdClusterStatus};
use crate::storage::{Storage, StorageError};

/// A reqwest client builder for cke's HTTP clients (Vault, health endpoints). reqwest is built
/// without a TLS crypto provider of its own; this installs ring, the one cke uses everywhere, for
/// the process if none is installed yet.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// Shell access to the nodes.
#[async_trait]
pub trait NodeAccess: Send + Sync {
    /// A runner for `user@address`; connecting happens on the first command.
    fn node(&self, address: &str, user: &str) -> Arc<dyn Runner>;

    /// Forgets any connection kept to `user@address` (the node is about to reboot: the next command
    /// connects anew). Nothing by default.
    async fn release(&self, address: &str, user: &str) {
        let _ = (address, user);
    }
}

#[async_trait]
impl NodeAccess for Arc<SshPool> {
    fn node(&self, address: &str, user: &str) -> Arc<dyn Runner> {
        Arc::new(SshPool::node(self, address, user))
    }

    async fn release(&self, address: &str, user: &str) {
        self.forget(address, user).await;
    }
}

/// For a daemon without SSH keys: every command fails with the reason.
pub struct NoNodeAccess;

struct Unreachable(String);

#[async_trait]
impl Runner for Unreachable {
    fn address(&self) -> &str {
        &self.0
    }

    async fn run(
        &self,
        _command: &str,
        _stdin: Option<&[u8]>,
        _timeout: Duration,
    ) -> Result<crate::infra::agent::Output, AgentError> {
        Err(AgentError::Connect {
            address: self.0.clone(),
            reason: "no node agent is configured".into(),
        })
    }
}

#[async_trait]
impl NodeAccess for NoNodeAccess {
    fn node(&self, address: &str, _user: &str) -> Arc<dyn Runner> {
        Arc::new(Unreachable(address.into()))
    }
}

/// The container engine on a node (the runner names the node).
#[async_trait]
pub trait Engine: Send + Sync {
    /// Starts a container, replacing one of the same name; a missing image is pulled first, so a
    /// failed pull leaves the old container running.
    async fn run(&self, node: &dyn Runner, spec: &RunSpec) -> Result<(), AgentError>;
    /// Stops and removes a container (no error when absent).
    async fn remove(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError>;
    /// Creates a named volume (idempotent).
    async fn volume_create(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError>;
    /// Removes a named volume (no error when absent).
    async fn volume_remove(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError>;
    /// Pulls an image unless it is present.
    async fn pull_if_missing(&self, node: &dyn Runner, image: &str) -> Result<(), AgentError>;
}

#[async_trait]
impl Engine for ContainerEngine {
    async fn run(&self, node: &dyn Runner, spec: &RunSpec) -> Result<(), AgentError> {
        ContainerEngine::run(self, node, spec).await
    }

    async fn remove(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        ContainerEngine::remove(self, node, name).await
    }

    async fn volume_create(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        ContainerEngine::volume_create(self, node, name).await
    }

    async fn volume_remove(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        ContainerEngine::volume_remove(self, node, name).await
    }

    async fn pull_if_missing(&self, node: &dyn Runner, image: &str) -> Result<(), AgentError> {
        if !self.image_exists(node, image).await? {
            self.pull(node, image).await?;
        }
        Ok(())
    }
}

/// Errors of the certificate issuer.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// Vault is not set up or not reachable with the stored config.
    #[error("Vault is not configured (ckecli vault init, ckecli vault config)")]
    NotConfigured,
    /// Vault refused or failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// Issues certificates (Vault PKI). Every certificate cke issues is one [`IssueRequest`]; the helpers
/// in [`crate::infra::pki::requests`] build the requests with CKE's names.
#[async_trait]
pub trait CertIssuer: Send + Sync {
    /// Issues a certificate; the private key is made locally and never sent.
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, IssueError>;

    /// The keys that encrypt Secrets at rest (Vault `cke/secrets/k8s`, field `aescbc`), current
    /// first; empty when none were made (`ckecli vault init` / `enckey` make them).
    async fn k8s_encryption_keys(&self) -> Result<Vec<crate::k8s::encryption::EncryptionKey>, IssueError>;
}

#[async_trait]
impl CertIssuer for Issuer {
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, IssueError> {
        Ok(Issuer::issue(self, req).await?)
    }

    async fn k8s_encryption_keys(&self) -> Result<Vec<crate::k8s::encryption::EncryptionKey>, IssueError> {
        Ok(crate::infra::pki::secrets::k8s_encryption_keys(self.client()).await?)
    }
}

/// For a daemon without Vault: every request fails with the reason.
pub struct NoIssuer;

#[async_trait]
impl CertIssuer for NoIssuer {
    async fn issue(&self, _req: &IssueRequest) -> Result<IssuedCert, IssueError> {
        Err(IssueError::NotConfigured)
    }

    async fn k8s_encryption_keys(&self) -> Result<Vec<crate::k8s::encryption::EncryptionKey>, IssueError> {
        Err(IssueError::NotConfigured)
    }
}

/// The managed etcd's admin API, through some of its members.
#[async_trait]
pub trait EtcdAdmin: Send + Sync {
    /// The endpoints in use, for messages.
    fn endpoints(&self) -> String;
    /// Every member.
    async fn members(&self) -> Result<Vec<MemberInfo>, ManagedEtcdError>;
    /// Adds a learner with `peer_url` once the cluster accepts it (or reuses an unstarted learner
    /// with that URL); returns its id and the members after the change.
    async fn add_learner_when_ready(
        &self,
        peer_url: &str,
        limit: Duration,
    ) -> Result<(u64, Vec<MemberInfo>), ManagedEtcdError>;
    /// Promotes a learner once it has caught up.
    async fn promote_when_ready(&self, id: u64, limit: Duration) -> Result<(), ManagedEtcdError>;
    /// Removes a member (no error when it is already gone).
    async fn remove(&self, id: u64) -> Result<(), ManagedEtcdError>;
    /// Grants a lease through the members: the revision when healthy.
    async fn health_revision(&self) -> Result<i64, ManagedEtcdError>;
    /// Members, health and in-sync members.
    async fn cluster_status(&self) -> Result<EtcdClusterStatus, ManagedEtcdError>;
    /// Users `root` and `kube-apiserver`, auth on (idempotent).
    async fn setup_auth(&self) -> Result<(), ManagedEtcdError>;
}

#[async_trait]
impl EtcdAdmin for ManagedEtcd {
    fn endpoints(&self) -> String {
        ManagedEtcd::endpoints(self)
    }

    async fn members(&self) -> Result<Vec<MemberInfo>, ManagedEtcdError> {
        ManagedEtcd::members(self).await
    }

    async fn add_learner_when_ready(
        &self,
        peer_url: &str,
        limit: Duration,
    ) -> Result<(u64, Vec<MemberInfo>), ManagedEtcdError> {
        ManagedEtcd::add_learner_when_ready(self, peer_url, limit).await
    }

    async fn promote_when_ready(&self, id: u64, limit: Duration) -> Result<(), ManagedEtcdError> {
        ManagedEtcd::promote_when_ready(self, id, limit).await
    }

    async fn remove(&self, id: u64) -> Result<(), ManagedEtcdError> {
        ManagedEtcd::remove(self, id).await
    }

    async fn health_revision(&self) -> Result<i64, ManagedEtcdError> {
        ManagedEtcd::health_revision(self).await
    }

    async fn cluster_status(&self) -> Result<EtcdClusterStatus, ManagedEtcdError> {
        ManagedEtcd::cluster_status(self).await
    }

    async fn setup_auth(&self) -> Result<(), ManagedEtcdError> {
        ManagedEtcd::setup_auth(self).await
    }
}

/// Errors connecting to the managed etcd.
#[derive(Debug, thiserror::Error)]
pub enum EtcdConnectError {
    /// The root client certificate could not be issued.
    #[error("cannot issue the managed etcd's root certificate")]
    Credentials(#[source] IssueError),
    /// The CA of the etcd server certificates is missing.
    #[error("CA server is not in the management etcd (ckecli vault init)")]
    NoCa,
    /// The management etcd failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The managed etcd refused the connection.
    #[error(transparent)]
    Etcd(#[from] ManagedEtcdError),
}

/// Connects to the managed etcd as `root`.
#[async_trait]
pub trait EtcdConnector: Send + Sync {
    /// A client through those of `preferred` (client URLs) that answer; when none does, through
    /// those of `fallback` that do (a member may still run on a former control-plane node); when
    /// none answers at all, through `preferred`, so that errors name them.
    async fn connect(&self, preferred: &[String], fallback: &[String]) -> Result<Arc<dyn EtcdAdmin>, EtcdConnectError>;
}

/// The managed etcd's root credentials: a client certificate issued once and reused until it is
/// near its expiry, with the CA of the servers from the management etcd. Shared by the prober, the
/// operators and `ckecli`, so a pass issues at most one root certificate an hour.
pub struct EtcdCredentials {
    issuer: Arc<dyn CertIssuer>,
    storage: Arc<dyn Storage>,
    cached: Mutex<Option<(tokio::time::Instant, EtcdTls)>>,
}

/// The TTL of the managed etcd root certificate cke issues for itself.
pub const ETCD_ROOT_CERT_TTL: Duration = Duration::from_secs(2 * 3600);

/// How long before its expiry a cached credential is replaced.
pub const RENEW_BEFORE_EXPIRY: Duration = Duration::from_secs(3600);

impl EtcdCredentials {
    /// Credentials issued by `issuer`, with the CA read from `storage`.
    pub fn new(issuer: Arc<dyn CertIssuer>, storage: Arc<dyn Storage>) -> Self {
        EtcdCredentials {
            issuer,
            storage,
            cached: Mutex::new(None),
        }
    }

    /// The TLS material, issuing a new certificate when none is cached or the cached one is near
    /// its expiry.
    pub async fn get(&self) -> Result<EtcdTls, EtcdConnectError> {
        let mut cached = self.cached.lock().await;
        if let Some((at, tls)) = cached.as_ref() {
            if at.elapsed() + RENEW_BEFORE_EXPIRY < ETCD_ROOT_CERT_TTL {
                return Ok(tls.clone());
            }
        }
        let cert = self
            .issuer
            .issue(&crate::infra::pki::requests::etcd_client(
                "root",
                Some(ETCD_ROOT_CERT_TTL),
            ))
            .await
            .map_err(EtcdConnectError::Credentials)?;
        let ca = self.storage.get_ca("server").await?.ok_or(EtcdConnectError::NoCa)?;
        let tls = EtcdTls {
            ca,
            cert: cert.certificate,
            key: cert.private_key,
        };
        *cached = Some((tokio::time::Instant::now(), tls.clone()));
        Ok(tls)
    }
}

/// The real connector: [`ManagedEtcd`] with [`EtcdCredentials`].
pub struct EtcdClientConnector {
    credentials: Arc<EtcdCredentials>,
    timeout: Duration,
}

impl EtcdClientConnector {
    /// A connector whose requests time out after `timeout`.
    pub fn new(credentials: Arc<EtcdCredentials>, timeout: Duration) -> Self {
        EtcdClientConnector { credentials, timeout }
    }
}

#[async_trait]
impl EtcdConnector for EtcdClientConnector {
    async fn connect(&self, preferred: &[String], fallback: &[String]) -> Result<Arc<dyn EtcdAdmin>, EtcdConnectError> {
        let tls = self.credentials.get().await?;
        let mut endpoints = preferred.to_vec();
        if !fallback.is_empty() && live_endpoints(preferred).await.is_empty() {
            let live = live_endpoints(fallback).await;
            if !live.is_empty() {
                endpoints = live;
            }
        }
        Ok(Arc::new(ManagedEtcd::connect(endpoints, tls, self.timeout).await?))
    }
}

/// A failure of the Kubernetes API.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// No Kubernetes client is set up (no Vault to issue the admin certificate from, or a daemon
    /// built without one).
    #[error("no Kubernetes API client (Vault is not set up: ckecli vault config)")]
    NotConfigured,
    /// The API server on `address` failed or refused the request.
    #[error("Kubernetes API on {address}: {reason}")]
    Api {
        /// The control-plane node whose apiserver was asked.
        address: String,
        /// What failed.
        reason: String,
    },
}

/// The managed cluster's Kubernetes API as cke uses it: `https://<control plane>:6443` with the
/// `kubernetes` CA and an admin client certificate (CKE's own client).
#[async_trait]
pub trait KubeApi: Send + Sync {
    /// The apiserver on `address` answers `GET /api/v1/namespaces`.
    async fn apiserver_healthy(&self, address: &str) -> bool;
    /// Every `Node` object, read through the apiserver on `address`.
    async fn nodes(&self, address: &str) -> Result<Vec<crate::model::KubeNode>, KubeError>;
    /// Adds `taints` to Node `name` (replacing taints of the same key), through the apiserver on
    /// `address`, retrying on conflict; `Ok(false)` when there is no such Node.
    async fn add_taints(&self, address: &str, name: &str, taints: &[crate::model::Taint]) -> Result<bool, KubeError>;
    /// Brings the labels, annotations and taints of the Node of `declared` (named
    /// `declared.nodename()`) in line with the declaration by CKE's rule ([`crate::k8s::node`]),
    /// through the apiserver on `address`: read, merge, replace with the `resourceVersion` read,
    /// again on a conflict.
    async fn update_node(
        &self,
        address: &str,
        declared: &crate::model::Node,
        taint_control_plane: bool,
    ) -> Result<NodeUpdate, KubeError>;
    /// The object `namespace/name` (`namespace` `None` for cluster-scoped kinds) of `kind`, as
    /// JSON; `Ok(None)` when there is none.
    async fn get_object(
        &self,
        address: &str,
        kind: &ApiKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, KubeError>;
    /// Creates `body` (its `metadata.namespace` and `metadata.name` say where).
    async fn create_object(&self, address: &str, kind: &ApiKind, body: &serde_json::Value) -> Result<(), KubeError>;
    /// Replaces the object with `body` as it is: without a `resourceVersion`, the update is
    /// unconditional (CKE's Update of the objects it owns).
    async fn replace_object(&self, address: &str, kind: &ApiKind, body: &serde_json::Value) -> Result<(), KubeError>;
    /// Server-side apply of `body` with field manager `cke`, forcing conflicts (CKE's
    /// resource-apply). [`Applied::NotServed`] when the server answers 404 (its kind is not served
    /// yet, e.g. a custom resource before its CRD).
    async fn apply_object(&self, address: &str, kind: &ApiKind, body: &serde_json::Value)
        -> Result<Applied, KubeError>;
    /// Where the server serves `kind` of `api_version` (discovery); `Ok(None)` when it does not.
    async fn find_kind(&self, address: &str, api_version: &str, kind: &str) -> Result<Option<ApiKind>, KubeError>;
    /// Cordons Node `name` (unless it is already unschedulable) and deletes it (CKE's
    /// remove-node); a Node already being deleted is left alone.
    async fn remove_node(&self, address: &str, name: &str) -> Result<NodeRemoval, KubeError>;

    // The calls of draining (the reboot and repair queues, [`drain`]). A client that does not drain
    // (a daemon without Kubernetes, test stubs) fails them with `NotConfigured`.

    /// Every pod on Node `node`, in all namespaces (`fieldSelector=spec.nodeName=<node>`).
    async fn pods_on_node(&self, _address: &str, _node: &str) -> Result<Vec<KubePod>, KubeError> {
        Err(KubeError::NotConfigured)
    }
    /// The names of the Namespaces matching `label_selector` (the API's query syntax,
    /// [`crate::model::LabelSelector::to_query`]; empty: all).
    async fn namespaces(&self, _address: &str, _label_selector: &str) -> Result<Vec<String>, KubeError> {
        Err(KubeError::NotConfigured)
    }
    /// Evicts pod `namespace/name` through its `eviction` subresource with an `Eviction` of
    /// `policy_api` (by Kubernetes minor: [`crate::model::kube_version::VersionSet::policy_api`]);
    /// `dry_run` sends `dryRun=All`. A 404 and a 429 (a PodDisruptionBudget forbids it now) are
    /// answers, not errors.
    async fn evict_pod(
        &self,
        _address: &str,
        _policy_api: &str,
        _namespace: &str,
        _name: &str,
        _dry_run: bool,
    ) -> Result<Eviction, KubeError> {
        Err(KubeError::NotConfigured)
    }
    /// Deletes pod `namespace/name`; `Ok(false)` when there is no such pod.
    async fn delete_pod(&self, _address: &str, _namespace: &str, _name: &str) -> Result<bool, KubeError> {
        Err(KubeError::NotConfigured)
    }
    /// The pods on Node `node` that belong to DaemonSets with `updateStrategy: OnDelete` (CKE: those
    /// are deleted before a reboot, so they restart with the current template).
    async fn on_delete_daemonset_pods(&self, _address: &str, _node: &str) -> Result<Vec<KubePod>, KubeError> {
        Err(KubeError::NotConfigured)
    }
    /// Cordons Node `name` and annotates it `cke.cybozu.com/reboot: "true"` (`cordon`), or removes
    /// both (a strategic-merge patch, as CKE's); [`NodeUpdate::Missing`] when there is no such Node.
    async fn set_reboot_cordon(&self, _address: &str, _name: &str, _cordon: bool) -> Result<NodeUpdate, KubeError> {
        Err(KubeError::NotConfigured)
    }
    /// `status.volumesInUse` of Node `name`; `Ok(None)` when there is no such Node.
    async fn volumes_in_use(&self, _address: &str, _name: &str) -> Result<Option<Vec<String>>, KubeError> {
        Err(KubeError::NotConfigured)
    }
}

/// The annotation cke puts on a Node it cordons for a reboot or a repair (CKE's).
pub const ANNOTATION_REBOOT: &str = crate::k8s::node::REBOOT_ANNOTATION;

/// A pod as draining needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubePod {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.labels`.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The kind of the owner reference with `controller: true` (`DaemonSet`, `Job`, ...), if any.
    pub controller_kind: Option<String>,
    /// That owner's name.
    pub controller_name: Option<String>,
    /// `status.phase` (`Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`; empty when unset).
    pub phase: String,
    /// `spec.nodeName`.
    pub node_name: String,
}

/// What [`KubeApi::evict_pod`] answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum Eviction {
    /// Evicted (or, with `dry_run`, it would be).
    Evicted,
    /// There is no such pod (already gone).
    NotFound,
    /// 429 Too Many Requests: a PodDisruptionBudget does not allow it now; the server's message.
    TooManyRequests(String),
}

/// A kind of Kubernetes object as the API serves it: where to find it and how it is named in
/// URLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKind {
    /// `group/version`, or `v1` for the core group.
    pub api_version: String,
    /// The kind (`ConfigMap`).
    pub kind: String,
    /// The plural resource name (`configmaps`).
    pub plural: String,
    /// Objects of the kind live in namespaces.
    pub namespaced: bool,
}

impl ApiKind {
    /// A kind given by all four parts.
    pub fn new(api_version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ApiKind {
            api_version: api_version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
        }
    }

    /// `v1` `Endpoints`.
    pub fn endpoints() -> Self {
        ApiKind::new("v1", "Endpoints", "endpoints", true)
    }

    /// `EndpointSlice` of `api_version` (by Kubernetes minor: `VersionSet::endpoint_slice_api`).
    pub fn endpoint_slice(api_version: &str) -> Self {
        ApiKind::new(api_version, "EndpointSlice", "endpointslices", true)
    }

    /// `v1` `Service`.
    pub fn service() -> Self {
        ApiKind::new("v1", "Service", "services", true)
    }

    /// `v1` `ConfigMap`.
    pub fn config_map() -> Self {
        ApiKind::new("v1", "ConfigMap", "configmaps", true)
    }

    /// `v1` `ServiceAccount`.
    pub fn service_account() -> Self {
        ApiKind::new("v1", "ServiceAccount", "serviceaccounts", true)
    }

    /// The API group (empty for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
    }

    /// The version within the group.
    pub fn version(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map(|(_, v)| v)
            .unwrap_or(&self.api_version)
    }
}

/// What [`KubeApi::apply_object`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Applied {
    /// The server applied it.
    Applied,
    /// The server does not serve the kind (404); a later pass tries again.
    NotServed,
}

/// What [`KubeApi::remove_node`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum NodeRemoval {
    /// Cordoned (if it was not) and deleted.
    Deleted,
    /// Already being deleted: left alone.
    Deleting,
    /// There is no such Node.
    Missing,
}

/// What [`KubeApi::update_node`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum NodeUpdate {
    /// The Node was replaced with the merged attributes.
    Updated,
    /// The Node already had them: nothing was written.
    Current,
    /// There is no such Node.
    Missing,
}

/// For a daemon without a Kubernetes client: nothing is healthy, every call fails with the reason.
pub struct NoKube;

#[async_trait]
impl KubeApi for NoKube {
    async fn apiserver_healthy(&self, _address: &str) -> bool {
        false
    }

    async fn nodes(&self, _address: &str) -> Result<Vec<crate::model::KubeNode>, KubeError> {
        Err(KubeError::NotConfigured)
    }

    async fn add_taints(
        &self,
        _address: &str,
        _name: &str,
        _taints: &[crate::model::Taint],
    ) -> Result<bool, KubeError> {
        Err(KubeError::NotConfigured)
    }

    async fn update_node(
        &self,
        _address: &str,
        _declared: &crate::model::Node,
        _taint_control_plane: bool,
    ) -> Result<NodeUpdate, KubeError> {
        Err(KubeError::NotConfigured)
    }

    async fn get_object(
        &self,
        _address: &str,
        _kind: &ApiKind,
        _namespace: Option<&str>,
        _name: &str,
    ) -> Result<Option<serde_json::Value>, KubeError> {
        Err(KubeError::NotConfigured)
    }

    async fn create_object(&self, _address: &str, _kind: &ApiKind, _body: &serde_json::Value) -> Result<(), KubeError> {
        Err(KubeError::NotConfigured)
    }

    async fn replace_object(
        &self,
        _address: &str,
        _kind: &ApiKind,
        _body: &serde_json::Value,
    ) -> Result<(), KubeError> {
        Err(KubeError::NotConfigured)
    }

    async fn apply_object(
        &self,
        _address: &str,
        _kind: &ApiKind,
        _body: &serde_json::Value,
    ) -> Result<Applied, KubeError> {
        Err(KubeError::NotConfigured)
    }

    async fn find_kind(&self, _address: &str, _api_version: &str, _kind: &str) -> Result<Option<ApiKind>, KubeError> {
        Err(KubeError::NotConfigured)
    }

    async fn remove_node(&self, _address: &str, _name: &str) -> Result<NodeRemoval, KubeError> {
        Err(KubeError::NotConfigured)
    }
}

/// The components' HTTP health endpoints (`/healthz` of kubelet, kube-proxy, controller-manager,
/// scheduler), asked from the cke host.
#[async_trait]
pub trait Health: Send + Sync {
    /// `GET url` answers 200 with the body `ok`. For `https`, `ca` (PEM) verifies the server; no
    /// client certificate is sent.
    async fn healthz(&self, url: &str, ca: Option<&str>) -> bool;
}

/// For a daemon that asks no health endpoint: nothing is healthy.
pub struct NoHealth;

#[async_trait]
impl Health for NoHealth {
    async fn healthz(&self, _url: &str, _ca: Option<&str>) -> bool {
        false
    }
}

/// What operators may use during one pass.
#[derive(Clone)]
pub struct Infra {
    /// The management etcd.
    pub storage: Arc<dyn Storage>,
    /// The declaration the operations were planned from.
    pub cluster: Arc<Cluster>,
    /// Shell access to the nodes.
    pub nodes: Arc<dyn NodeAccess>,
    /// The container engine on the nodes.
    pub engine: Arc<dyn Engine>,
    /// Certificates.
    pub issuer: Arc<dyn CertIssuer>,
    /// The managed etcd.
    pub etcd: Arc<dyn EtcdConnector>,
    /// The Kubernetes API.
    pub kube: Arc<dyn KubeApi>,
    /// The components' health endpoints.
    pub health: Arc<dyn Health>,
    /// Commands on cke's own host (reboot, boot check, repair commands).
    pub commands: Arc<dyn HostCommands>,
    /// The leader's fence, for the writes an operation makes itself (dequeueing a queue entry);
    /// the controller sets it for each pass.
    pub fence: Option<crate::storage::Fence>,
}

impl Infra {
    /// Infra that reaches only the management etcd: nodes, Vault and the managed etcd fail with the
    /// reason (a daemon not set up yet, tests of the framework).
    pub fn minimal(storage: Arc<dyn Storage>, cluster: Arc<Cluster>) -> Self {
        let issuer: Arc<dyn CertIssuer> = Arc::new(NoIssuer);
        let credentials = Arc::new(EtcdCredentials::new(issuer.clone(), storage.clone()));
        Infra {
            storage,
            cluster,
            nodes: Arc::new(NoNodeAccess),
            engine: Arc::new(ContainerEngine::default()),
            issuer,
            etcd: Arc::new(EtcdClientConnector::new(credentials, Duration::from_secs(10))),
            kube: Arc::new(NoKube),
            health: Arc::new(NoHealth),
            commands: Arc::new(host_command::NoHostCommands),
            fence: None,
        }
    }

    /// The runner of a node, as the declared user (root for a node no longer declared).
    pub fn node(&self, address: &str) -> Arc<dyn Runner> {
        let user = self.cluster.node(address).map_or("root", |n| n.user.as_str());
        self.nodes.node(address, user)
    }

    /// A real issuer over a Vault client, or [`NoIssuer`].
    pub fn issuer_for(vault: Option<VaultClient>) -> Arc<dyn CertIssuer> {
        match vault {
            Some(v) => Arc::new(Issuer::new(v)),
            None => Arc::new(NoIssuer),
        }
    }
}
