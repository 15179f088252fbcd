//! The real [`KubeApi`] (kube-rs) and [`Health`] (reqwest).
//!
//! cke talks to each apiserver directly, as CKE does (`infrastructure.go`): `https://<control
//! plane>:6443`, the server verified with the `kubernetes` CA from the management etcd, and a client
//! certificate CN `admin`, O `system:masters` issued from Vault. The certificate (TTL 25 h) is issued
//! once and reused until less than an hour of it is left ([`AdminCredentials`]); the clients built on
//! it are kept per address and rebuilt with the next certificate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::Api;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::sync::Mutex;

use crate::infra::{
    ApiKind, Applied, CertIssuer, Eviction, Health, IssueError, KubeApi, KubeError, KubePod, NodeRemoval, NodeUpdate,
    ANNOTATION_REBOOT, RENEW_BEFORE_EXPIRY,
};
use crate::model::{KubeNode, Taint};
use crate::storage::Storage;
use crate::topology::host_port_part;

/// The TTL of the admin certificate cke issues for its own Kubernetes client (CKE's `25h`).
pub const KUBE_ADMIN_CERT_TTL: Duration = Duration::from_secs(25 * 3600);
/// The user (CN) of cke's Kubernetes client certificate.
pub const KUBE_ADMIN_USER: &str = "admin";
/// The group (O) of cke's Kubernetes client certificate.
pub const KUBE_ADMIN_GROUP: &str = "system:masters";
/// How long one Kubernetes API request may take (CKE: 5 s).
pub const KUBE_API_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a Node update is tried when it conflicts with another writer.
pub const UPDATE_ATTEMPTS: usize = 5;

/// The admin client certificate and the `kubernetes` CA, PEM.
#[derive(Clone)]
pub struct AdminTls {
    /// The `kubernetes` CA (verifies the apiservers).
    pub ca: String,
    /// The client certificate.
    pub cert: String,
    /// Its private key.
    pub key: String,
}

/// Why the admin credential could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// Vault could not issue the certificate.
    #[error("cannot issue the Kubernetes admin certificate")]
    Issue(#[source] IssueError),
    /// The CA is not stored.
    #[error("CA kubernetes is not in the management etcd (ckecli vault init)")]
    NoCa,
    /// The management etcd failed.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// The admin credential, issued once and reused until it is near its expiry (like
/// [`crate::infra::EtcdCredentials`]). Each renewal bumps a generation, so clients built on an older
/// credential are replaced.
pub struct AdminCredentials {
    issuer: Arc<dyn CertIssuer>,
    storage: Arc<dyn Storage>,
    cached: Mutex<Option<(tokio::time::Instant, u64, AdminTls)>>,
}

impl AdminCredentials {
    /// Credentials issued by `issuer`, with the CA read from `storage`.
    pub fn new(issuer: Arc<dyn CertIssuer>, storage: Arc<dyn Storage>) -> Self {
        AdminCredentials {
            issuer,
            storage,
            cached: Mutex::new(None),
        }
    }

    /// The TLS material and its generation, issuing a new certificate when none is cached or the
    /// cached one has less than [`RENEW_BEFORE_EXPIRY`] left.
    pub async fn get(&self) -> Result<(u64, AdminTls), CredentialError> {
        let mut cached = self.cached.lock().await;
        let generation = match cached.as_ref() {
            Some((at, generation, tls)) => {
                if at.elapsed() + RENEW_BEFORE_EXPIRY < KUBE_ADMIN_CERT_TTL {
                    return Ok((*generation, tls.clone()));
                }
                generation + 1
            }
            None => 0,
        };
        let cert = self
            .issuer
            .issue(&admin_request())
            .await
            .map_err(CredentialError::Issue)?;
        let ca = self.storage.get_ca("kubernetes").await?.ok_or(CredentialError::NoCa)?;
        let tls = AdminTls {
            ca,
            cert: cert.certificate,
            key: cert.private_key,
        };
        *cached = Some((tokio::time::Instant::now(), generation, tls.clone()));
        Ok((generation, tls))
    }
}

/// The Vault request of cke's admin certificate: CN `admin`, O `system:masters`, 25 h.
pub fn admin_request() -> crate::infra::pki::IssueRequest {
    crate::infra::pki::requests::kube_user(KUBE_ADMIN_USER, KUBE_ADMIN_GROUP, KUBE_ADMIN_CERT_TTL)
}

/// The apiserver URL of a control-plane node.
pub fn apiserver_url(address: &str, port: u16) -> String {
    format!("https://{}:{port}", host_port_part(address))
}

/// The kube-rs configuration of a client of the apiserver at `url` with `tls`.
pub fn client_config(url: &str, tls: &AdminTls, timeout: Duration) -> Result<kube::Config, String> {
    let uri = url.parse().map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let roots: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(tls.ca.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("CA kubernetes is not valid PEM: {e}"))?;
    if roots.is_empty() {
        return Err("CA kubernetes holds no certificate".into());
    }
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut config = kube::Config::new(uri);
    config.root_cert = Some(roots);
    config.auth_info.client_certificate_data = Some(b64(&tls.cert));
    config.auth_info.client_key_data = Some(secrecy::SecretString::from(b64(&tls.key)));
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // No retries behind cke's back: a 429 of an eviction is an answer (a PodDisruptionBudget), which
    // the drain handles as CKE does; a pass that fails is planned again.
    config.default_retry = false;
    Ok(config)
}

/// The real Kubernetes API: one kube-rs client per apiserver, all on the cached admin credential.
pub struct KubeClients {
    credentials: AdminCredentials,
    port: u16,
    timeout: Duration,
    clients: Mutex<(u64, HashMap<String, kube::Client>)>,
}

impl KubeClients {
    /// Clients of the apiservers on `port` ([`crate::topology::API_SERVER_PORT`] but in tests), with
    /// the admin certificate from `issuer` and the CA from `storage`.
    pub fn new(issuer: Arc<dyn CertIssuer>, storage: Arc<dyn Storage>, port: u16) -> Self {
        KubeClients {
            credentials: AdminCredentials::new(issuer, storage),
            port,
            timeout: KUBE_API_TIMEOUT,
            clients: Mutex::new((0, HashMap::new())),
        }
    }

    /// The client of the apiserver on `address` (built on first use and after each renewal).
    async fn client(&self, address: &str) -> Result<kube::Client, KubeError> {
        let (generation, tls) = self.credentials.get().await.map_err(|e| match e {
            CredentialError::Issue(IssueError::NotConfigured) => KubeError::NotConfigured,
            e => api_error(address, crate::error::error_chain(&e)),
        })?;
        let mut clients = self.clients.lock().await;
        if clients.0 != generation {
            *clients = (generation, HashMap::new());
        }
        if let Some(c) = clients.1.get(address) {
            return Ok(c.clone());
        }
        let config = client_config(&apiserver_url(address, self.port), &tls, self.timeout)
            .map_err(|reason| api_error(address, reason))?;
        let client = kube::Client::try_from(config).map_err(|e| {
            api_error(
                address,
                format!("cannot build the client: {}", crate::error::error_chain(&e)),
            )
        })?;
        clients.1.insert(address.to_string(), client.clone());
        Ok(client)
    }
}

#[async_trait]
impl KubeApi for KubeClients {
    async fn apiserver_healthy(&self, address: &str) -> bool {
        let client = match self.client(address).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(address, error = crate::error::error_chain(&e), "no Kubernetes client");
                return false;
            }
        };
        let api: Api<Namespace> = Api::all(client);
        match call(
            self.timeout,
            address,
            "list namespaces",
            api.list(&ListParams::default()),
        )
        .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::info!(error = crate::error::error_chain(&e), "apiserver unhealthy");
                false
            }
        }
    }

    async fn nodes(&self, address: &str) -> Result<Vec<KubeNode>, KubeError> {
        let api: Api<Node> = Api::all(self.client(address).await?);
        let list = call(self.timeout, address, "list nodes", api.list(&ListParams::default())).await?;
        Ok(list.items.iter().map(kube_node).collect())
    }

    async fn add_taints(&self, address: &str, name: &str, taints: &[Taint]) -> Result<bool, KubeError> {
        let api: Api<Node> = Api::all(self.client(address).await?);
        add_taints_through(&api, self.timeout, address, name, taints).await
    }

    async fn update_node(
        &self,
        address: &str,
        declared: &crate::model::Node,
        taint_control_plane: bool,
    ) -> Result<NodeUpdate, KubeError> {
        let api: Api<Node> = Api::all(self.client(address).await?);
        update_node_through(&api, self.timeout, address, declared, taint_control_plane).await
    }

    async fn get_object(
        &self,
        address: &str,
        kind: &ApiKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, KubeError> {
        let api = self.dynamic(address, kind, namespace).await?;
        let what = format!("get {} {}", kind.kind, object_name(namespace, name));
        // A kind named by a trusted REST mapping but not served yet answers 404 too: none.
        let obj = call_or_404(self.timeout, address, &what, api.get(name)).await?;
        obj.map(|o| serde_json::to_value(o).map_err(|e| api_error(address, format!("{what}: {e}"))))
            .transpose()
    }

    async fn create_object(&self, address: &str, kind: &ApiKind, body: &serde_json::Value) -> Result<(), KubeError> {
        let (namespace, name, obj) = dynamic_body(address, kind, body)?;
        let api = self.dynamic(address, kind, namespace.as_deref()).await?;
        let what = format!("create {} {}", kind.kind, object_name(namespace.as_deref(), &name));
        call(self.timeout, address, &what, api.create(&PostParams::default(), &obj)).await?;
        Ok(())
    }

    async fn replace_object(&self, address: &str, kind: &ApiKind, body: &serde_json::Value) -> Result<(), KubeError> {
        let (namespace, name, obj) = dynamic_body(address, kind, body)?;
        let api = self.dynamic(address, kind, namespace.as_deref()).await?;
        let what = format!("update {} {}", kind.kind, object_name(namespace.as_deref(), &name));
        call(
            self.timeout,
            address,
            &what,
            api.replace(&name, &PostParams::default(), &obj),
        )
        .await?;
        Ok(())
    }

    async fn apply_object(
        &self,
        address: &str,
        kind: &ApiKind,
        body: &serde_json::Value,
    ) -> Result<Applied, KubeError> {
        let (namespace, name, _) = dynamic_body(address, kind, body)?;
        let api = self.dynamic(address, kind, namespace.as_deref()).await?;
        let what = format!("apply {} {}", kind.kind, object_name(namespace.as_deref(), &name));
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let body = Patch::Apply(body);
        let patch = api.patch(&name, &params, &body);
        Ok(match call_or_404(self.timeout, address, &what, patch).await? {
            Some(_) => Applied::Applied,
            None => Applied::NotServed,
        })
    }

    async fn find_kind(&self, address: &str, api_version: &str, kind: &str) -> Result<Option<ApiKind>, KubeError> {
        let client = self.client(address).await?;
        let what = format!("discover {api_version}");
        let list = if api_version.contains('/') {
            call_or_404(
                self.timeout,
                address,
                &what,
                client.list_api_group_resources(api_version),
            )
            .await?
        } else {
            call_or_404(
                self.timeout,
                address,
                &what,
                client.list_core_api_resources(api_version),
            )
            .await?
        };
        let Some(list) = list else {
            return Ok(None);
        };
        Ok(list
            .resources
            .iter()
            .find(|r| r.kind == kind && !r.name.contains('/'))
            .map(|r| ApiKind::new(api_version, kind, &r.name, r.namespaced)))
    }

    async fn pods_on_node(&self, address: &str, node: &str) -> Result<Vec<KubePod>, KubeError> {
        let api = self.pods_api(address, None).await?;
        let params = ListParams::default().fields(&format!("spec.nodeName={node}"));
        let what = format!("list pods on node {node}");
        let list = call(self.timeout, address, &what, api.list(&params)).await?;
        Ok(list.items.iter().map(kube_pod).collect())
    }

    async fn namespaces(&self, address: &str, label_selector: &str) -> Result<Vec<String>, KubeError> {
        let api: Api<Namespace> = Api::all(self.client(address).await?);
        let params = ListParams::default().labels(label_selector);
        let what = format!("list namespaces {label_selector:?}");
        let list = call(self.timeout, address, &what, api.list(&params)).await?;
        Ok(list.items.into_iter().filter_map(|n| n.metadata.name).collect())
    }

    async fn evict_pod(
        &self,
        address: &str,
        policy_api: &str,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<Eviction, KubeError> {
        let client = self.client(address).await?;
        let body = eviction_body(address, policy_api, namespace, name, dry_run)?;
        let mut url = format!("/api/v1/namespaces/{namespace}/pods/{name}/eviction");
        if dry_run {
            url.push_str("?dryRun=All");
        }
        let what = format!(
            "evict pod {namespace}/{name}{}",
            if dry_run { " (dry run)" } else { "" }
        );
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .map_err(|e| api_error(address, format!("{what}: {e}")))?;
        match tokio::time::timeout(self.timeout, client.request_text(request)).await {
            Ok(Ok(_)) => Ok(Eviction::Evicted),
            Ok(Err(e)) if status_code(&e) == Some(404) => Ok(Eviction::NotFound),
            Ok(Err(kube::Error::Api(s))) if s.code == 429 => Ok(Eviction::TooManyRequests(s.message.clone())),
            Ok(Err(e)) => Err(api_error(address, format!("{what}: {}", crate::error::error_chain(&e)))),
            Err(_) => Err(api_error(
                address,
                format!("{what}: no answer within {:?}", self.timeout),
            )),
        }
    }

    async fn delete_pod(&self, address: &str, namespace: &str, name: &str) -> Result<bool, KubeError> {
        let api = self.pods_api(address, Some(namespace)).await?;
        let what = format!("delete pod {namespace}/{name}");
        match tokio::time::timeout(self.timeout, api.delete(name, &DeleteParams::default())).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if status_code(&e) == Some(404) => Ok(false),
            Ok(Err(e)) => Err(api_error(address, format!("{what}: {}", crate::error::error_chain(&e)))),
            Err(_) => Err(api_error(
                address,
                format!("{what}: no answer within {:?}", self.timeout),
            )),
        }
    }

    async fn on_delete_daemonset_pods(&self, address: &str, node: &str) -> Result<Vec<KubePod>, KubeError> {
        let client = self.client(address).await?;
        let api: Api<DaemonSet> = Api::all(client.clone());
        let list = call(
            self.timeout,
            address,
            "list daemonsets",
            api.list(&ListParams::default()),
        )
        .await?;
        let mut out = Vec::new();
        for ds in list.items {
            let spec = ds.spec;
            let on_delete = spec.update_strategy.as_ref().and_then(|u| u.type_.as_deref()) == Some("OnDelete");
            if !on_delete {
                continue;
            }
            let ns = ds.metadata.namespace.unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
            let params = ListParams::default().labels(&selector_query(&spec.selector));
            let what = format!("list pods of daemonset {ns}/{}", ds.metadata.name.unwrap_or_default());
            let list = call(self.timeout, address, &what, pods.list(&params)).await?;
            out.extend(list.items.iter().map(kube_pod).filter(|p| p.node_name == node));
        }
        Ok(out)
    }

    async fn set_reboot_cordon(&self, address: &str, name: &str, cordon: bool) -> Result<NodeUpdate, KubeError> {
        let api: Api<Node> = Api::all(self.client(address).await?);
        let patch = if cordon {
            serde_json::json!({"metadata": {"annotations": {ANNOTATION_REBOOT: "true"}}, "spec": {"unschedulable": true}})
        } else {
            serde_json::json!({"metadata": {"annotations": {ANNOTATION_REBOOT: null}}, "spec": {"unschedulable": null}})
        };
        let what = format!("{} node {name}", if cordon { "cordon" } else { "uncordon" });
        let params = PatchParams::default();
        match tokio::time::timeout(self.timeout, api.patch(name, &params, &Patch::Strategic(&patch))).await {
            Ok(Ok(_)) => Ok(NodeUpdate::Updated),
            Ok(Err(e)) if status_code(&e) == Some(404) => Ok(NodeUpdate::Missing),
            Ok(Err(e)) => Err(api_error(address, format!("{what}: {}", crate::error::error_chain(&e)))),
            Err(_) => Err(api_error(
                address,
                format!("{what}: no answer within {:?}", self.timeout),
            )),
        }
    }

    async fn volumes_in_use(&self, address: &str, name: &str) -> Result<Option<Vec<String>>, KubeError> {
        let api: Api<Node> = Api::all(self.client(address).await?);
        let node = call(self.timeout, address, "get node", api.get_opt(name)).await?;
        Ok(node.map(|n| n.status.and_then(|s| s.volumes_in_use).unwrap_or_default()))
    }

    async fn remove_node(&self, address: &str, name: &str) -> Result<NodeRemoval, KubeError> {
        let api: Api<Node> = Api::all(self.client(address).await?);
        let Some(node) = call(self.timeout, address, "get node", api.get_opt(name)).await? else {
            return Ok(NodeRemoval::Missing);
        };
        if node.metadata.deletion_timestamp.is_some() {
            return Ok(NodeRemoval::Deleting);
        }
        if !node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false) {
            let patch = serde_json::json!({ "spec": { "unschedulable": true } });
            let what = format!("cordon node {name}");
            let params = PatchParams::default();
            call(
                self.timeout,
                address,
                &what,
                api.patch(name, &params, &Patch::Strategic(&patch)),
            )
            .await?;
        }
        let what = format!("delete node {name}");
        let params = DeleteParams::default();
        let delete = api.delete(name, &params);
        Ok(match call_or_404(self.timeout, address, &what, delete).await? {
            Some(_) => NodeRemoval::Deleted,
            None => NodeRemoval::Missing,
        })
    }
}

/// The calls of draining (the second half of [`KubeApi`] for [`KubeClients`]).
impl KubeClients {
    async fn pods_api(&self, address: &str, namespace: Option<&str>) -> Result<Api<Pod>, KubeError> {
        let client = self.client(address).await?;
        Ok(match namespace {
            Some(ns) => Api::namespaced(client, ns),
            None => Api::all(client),
        })
    }
}

/// The `policy/...` API version of the `Eviction` body, or an error naming it.
fn eviction_body(
    address: &str,
    policy_api: &str,
    namespace: &str,
    name: &str,
    dry_run: bool,
) -> Result<Vec<u8>, KubeError> {
    if !policy_api.starts_with("policy/") {
        return Err(api_error(
            address,
            format!("{policy_api:?} is not a policy API version"),
        ));
    }
    let mut body = serde_json::json!({
        "apiVersion": policy_api,
        "kind": "Eviction",
        "metadata": {"name": name, "namespace": namespace},
    });
    if dry_run {
        body["deleteOptions"] = serde_json::json!({"dryRun": ["All"]});
    }
    Ok(serde_json::to_vec(&body).expect("JSON serializes"))
}

/// The pod as draining sees it.
pub fn kube_pod(pod: &Pod) -> KubePod {
    let controller = pod
        .metadata
        .owner_references
        .as_ref()
        .and_then(|refs| refs.iter().find(|r| r.controller == Some(true)));
    KubePod {
        namespace: pod.metadata.namespace.clone().unwrap_or_default(),
        name: pod.metadata.name.clone().unwrap_or_default(),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        controller_kind: controller.map(|r| r.kind.clone()),
        controller_name: controller.map(|r| r.name.clone()),
        phase: pod.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default(),
        node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default(),
    }
}

/// A DaemonSet's `spec.selector` in the API's query syntax (CKE's `FormatLabelSelector`).
fn selector_query(sel: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> String {
    let model = crate::model::LabelSelector {
        match_labels: sel.match_labels.clone().unwrap_or_default(),
        match_expressions: sel
            .match_expressions
            .iter()
            .flatten()
            .map(|r| crate::model::LabelSelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: r.values.clone().unwrap_or_default(),
            })
            .collect(),
    };
    model.to_query()
}

/// The HTTP status of a failed request, if the server answered one.
fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// The field manager of cke's server-side applies (CKE's).
pub const FIELD_MANAGER: &str = "cke";

impl KubeClients {
    /// A dynamic API of `kind` in `namespace` (or cluster-wide).
    async fn dynamic(
        &self,
        address: &str,
        kind: &ApiKind,
        namespace: Option<&str>,
    ) -> Result<Api<DynamicObject>, KubeError> {
        let client = self.client(address).await?;
        let ar = ApiResource {
            group: kind.group().into(),
            version: kind.version().into(),
            api_version: kind.api_version.clone(),
            kind: kind.kind.clone(),
            plural: kind.plural.clone(),
        };
        Ok(match namespace {
            Some(ns) if kind.namespaced => Api::namespaced_with(client, ns, &ar),
            _ => Api::all_with(client, &ar),
        })
    }
}

/// `namespace/name`, or `name`.
fn object_name(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// The namespace and name of `body`, and `body` as a dynamic object; a body without a name (or a
/// namespaced one without a namespace) is refused before anything is sent.
fn dynamic_body(
    address: &str,
    kind: &ApiKind,
    body: &serde_json::Value,
) -> Result<(Option<String>, String, DynamicObject), KubeError> {
    let name = body
        .pointer("/metadata/name")
        .and_then(serde_json::Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| api_error(address, format!("{} object without metadata.name", kind.kind)))?;
    let namespace = body.pointer("/metadata/namespace").and_then(serde_json::Value::as_str);
    if kind.namespaced && namespace.is_none_or(str::is_empty) {
        return Err(api_error(
            address,
            format!("{} {name}: metadata.namespace is missing", kind.kind),
        ));
    }
    let obj: DynamicObject = serde_json::from_value(body.clone())
        .map_err(|e| api_error(address, format!("{} {name} is not an object: {e}", kind.kind)))?;
    Ok((namespace.map(str::to_string), name.to_string(), obj))
}

fn api_error(address: &str, reason: impl Into<String>) -> KubeError {
    KubeError::Api {
        address: address.into(),
        reason: reason.into(),
    }
}

/// Runs one request with the timeout; errors name the address.
async fn call<T>(
    timeout: Duration,
    address: &str,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, KubeError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(api_error(address, format!("{what}: {}", crate::error::error_chain(&e)))),
        Err(_) => Err(api_error(address, format!("{what}: no answer within {timeout:?}"))),
    }
}

/// [`call`], with any 404 answer as `Ok(None)`: the object's "not found", and also the server's
/// plain "404 page not found" for a kind it does not serve (yet), as client-go's `IsNotFound` counts
/// both (kube's `get_opt` only the first).
async fn call_or_404<T>(
    timeout: Duration,
    address: &str,
    what: &str,
    fut: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<Option<T>, KubeError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(Some(v)),
        Ok(Err(kube::Error::Api(s))) if s.code == 404 => Ok(None),
        Ok(Err(e)) => Err(api_error(address, format!("{what}: {}", crate::error::error_chain(&e)))),
        Err(_) => Err(api_error(address, format!("{what}: no answer within {timeout:?}"))),
    }
}

/// Get Node `name`, let `change` edit it (it returns false when the Node is already as wanted:
/// nothing is written), and replace it; the `resourceVersion` read makes a concurrent change a
/// conflict, and the whole is tried again on a conflict up to [`UPDATE_ATTEMPTS`] times.
async fn modify_node(
    api: &Api<Node>,
    timeout: Duration,
    address: &str,
    name: &str,
    mut change: impl FnMut(&mut Node) -> bool,
) -> Result<NodeUpdate, KubeError> {
    for _ in 0..UPDATE_ATTEMPTS {
        let Some(mut node) = call(timeout, address, "get node", api.get_opt(name)).await? else {
            return Ok(NodeUpdate::Missing);
        };
        if !change(&mut node) {
            return Ok(NodeUpdate::Current);
        }
        match tokio::time::timeout(timeout, api.replace(name, &PostParams::default(), &node)).await {
            Ok(Ok(_)) => return Ok(NodeUpdate::Updated),
            Ok(Err(kube::Error::Api(s))) if s.code == 409 => continue,
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => return Ok(NodeUpdate::Missing),
            Ok(Err(e)) => {
                return Err(api_error(
                    address,
                    format!("update node {name}: {}", crate::error::error_chain(&e)),
                ))
            }
            Err(_) => {
                return Err(api_error(
                    address,
                    format!("update node {name}: no answer within {timeout:?}"),
                ))
            }
        }
    }
    Err(api_error(
        address,
        format!("update node {name}: still conflicting after {UPDATE_ATTEMPTS} attempts"),
    ))
}

/// Adds `taints` to Node `name` ([`merge_taints`]); `Ok(false)` when there is no such Node. Nothing
/// is written when the Node already has them.
async fn add_taints_through(
    api: &Api<Node>,
    timeout: Duration,
    address: &str,
    name: &str,
    taints: &[Taint],
) -> Result<bool, KubeError> {
    let r = modify_node(api, timeout, address, name, |node| {
        let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        let merged = merge_taints(current.clone(), taints);
        if merged == current {
            return false;
        }
        node.spec.get_or_insert_with(Default::default).taints = Some(merged);
        true
    })
    .await?;
    Ok(r != NodeUpdate::Missing)
}

/// Sets the attributes of Node `declared.nodename()` as CKE does ([`crate::k8s::node::desired`]);
/// nothing is written when the Node is current.
async fn update_node_through(
    api: &Api<Node>,
    timeout: Duration,
    address: &str,
    declared: &crate::model::Node,
    taint_control_plane: bool,
) -> Result<NodeUpdate, KubeError> {
    modify_node(api, timeout, address, declared.nodename(), |node| {
        let current = kube_node(node);
        if !crate::k8s::node::is_outdated(declared, &current, taint_control_plane) {
            return false;
        }
        let attrs = crate::k8s::node::desired(declared, &current, taint_control_plane);
        set_attrs(node, &attrs);
        true
    })
    .await
}

/// Writes `attrs` into `node`: labels and annotations as given, taints in the given order, each
/// keeping the `timeAdded` of the Node's taint it equals (key, value and effect).
pub fn set_attrs(node: &mut Node, attrs: &crate::k8s::node::NodeAttrs) {
    node.metadata.labels = Some(attrs.labels.clone());
    node.metadata.annotations = Some(attrs.annotations.clone());
    let spec = node.spec.get_or_insert_with(Default::default);
    let old = spec.taints.take().unwrap_or_default();
    let taints: Vec<k8s_openapi::api::core::v1::Taint> = attrs
        .taints
        .iter()
        .map(|t| {
            let value = (!t.value.is_empty()).then(|| t.value.clone());
            let time_added = old
                .iter()
                .find(|o| o.key == t.key && o.value == value && o.effect == t.effect)
                .and_then(|o| o.time_added.clone());
            k8s_openapi::api::core::v1::Taint {
                key: t.key.clone(),
                value,
                effect: t.effect.clone(),
                time_added,
            }
        })
        .collect();
    spec.taints = (!taints.is_empty()).then_some(taints);
}

/// A Node as the status has it: its name, whether its `Ready` condition is `True`, its labels,
/// annotations and taints.
pub fn kube_node(node: &Node) -> KubeNode {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .map(|ts| {
            ts.iter()
                .map(|t| Taint {
                    key: t.key.clone(),
                    value: t.value.clone().unwrap_or_default(),
                    effect: t.effect.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    KubeNode {
        name: node.metadata.name.clone().unwrap_or_default(),
        ready,
        labels: node.metadata.labels.clone().unwrap_or_default(),
        annotations: node.metadata.annotations.clone().unwrap_or_default(),
        taints,
        unschedulable: node.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
    }
}

/// `existing` with `add` applied: a taint of the same key is replaced in place, a new key appended.
pub fn merge_taints(
    mut existing: Vec<k8s_openapi::api::core::v1::Taint>,
    add: &[Taint],
) -> Vec<k8s_openapi::api::core::v1::Taint> {
    for t in add {
        let new = k8s_openapi::api::core::v1::Taint {
            key: t.key.clone(),
            value: (!t.value.is_empty()).then(|| t.value.clone()),
            effect: t.effect.clone(),
            time_added: None,
        };
        match existing.iter_mut().find(|e| e.key == t.key) {
            Some(e) => {
                if e.value != new.value || e.effect != new.effect {
                    *e = new;
                }
            }
            None => existing.push(new),
        }
    }
    existing
}

/// The real [`Health`]: `GET` with a 3 s timeout; for `https`, the given CA is the only root and no
/// client certificate is sent. Clients are kept per CA.
pub struct HttpHealth {
    plain: reqwest::Client,
    with_ca: std::sync::Mutex<HashMap<String, reqwest::Client>>,
}

/// How long a health check may take.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

impl HttpHealth {
    /// A checker with no client built yet for any CA.
    pub fn new() -> Self {
        HttpHealth {
            plain: super::http_client_builder()
                .timeout(HEALTH_TIMEOUT)
                .tls_certs_only(Vec::new())
                .build()
                .expect("a plain HTTP client builds"),
            with_ca: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn client_for(&self, ca: &str) -> Result<reqwest::Client, String> {
        let mut map = self.with_ca.lock().unwrap();
        if let Some(c) = map.get(ca) {
            return Ok(c.clone());
        }
        let c = https_client(ca)?;
        map.insert(ca.to_string(), c.clone());
        Ok(c)
    }
}

impl Default for HttpHealth {
    fn default() -> Self {
        Self::new()
    }
}

/// An HTTPS client trusting only the certificates of `ca` (PEM).
pub fn https_client(ca: &str) -> Result<reqwest::Client, String> {
    let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes()).map_err(|e| format!("invalid CA PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the CA PEM holds no certificate".into());
    }
    super::http_client_builder()
        .timeout(HEALTH_TIMEOUT)
        .tls_backend_rustls()
        .tls_certs_only(certs)
        .build()
        .map_err(|e| format!("cannot build the HTTPS client: {e}"))
}

#[async_trait]
impl Health for HttpHealth {
    async fn healthz(&self, url: &str, ca: Option<&str>) -> bool {
        let client = if url.starts_with("https://") {
            let Some(ca) = ca else {
                tracing::warn!(url, "no CA to verify the health endpoint with");
                return false;
            };
            match self.client_for(ca) {
                Ok(c) => c,
                Err(reason) => {
                    tracing::warn!(url, reason, "health check");
                    return false;
                }
            }
        } else {
            self.plain.clone()
        };
        let resp = match client.get(url).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(url, error = crate::error::error_chain(&e), "health check failed");
                return false;
            }
        };
        if !resp.status().is_success() {
            return false;
        }
        matches!(resp.text().await, Ok(body) if body.trim() == "ok")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};

    fn k8s_taint(key: &str, value: Option<&str>, effect: &str) -> k8s_openapi::api::core::v1::Taint {
        k8s_openapi::api::core::v1::Taint {
            key: key.into(),
            value: value.map(str::to_string),
            effect: effect.into(),
            time_added: None,
        }
    }

    /// Adds the taint `b::NoSchedule` to Node `n1` through `api`.
    async fn add_b(api: &Api<Node>) -> Result<bool, KubeError> {
        add_taints_through(api, KUBE_API_TIMEOUT, "10.0.0.1", "n1", &[taint("b", "", "NoSchedule")]).await
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }

    #[test]
    fn taints_of_the_same_key_are_replaced_others_kept_new_appended() {
        let existing = vec![
            k8s_taint("a", Some("1"), "NoSchedule"),
            k8s_taint("b", None, "NoExecute"),
        ];
        let merged = merge_taints(
            existing,
            &[taint("b", "2", "NoSchedule"), taint("c", "", "PreferNoSchedule")],
        );
        assert_eq!(
            merged,
            vec![
                k8s_taint("a", Some("1"), "NoSchedule"),
                k8s_taint("b", Some("2"), "NoSchedule"),
                k8s_taint("c", None, "PreferNoSchedule"),
            ]
        );
        // Applying the same taints again changes nothing.
        assert_eq!(merge_taints(merged.clone(), &[taint("b", "2", "NoSchedule")]), merged);
    }

    #[test]
    fn a_node_is_ready_only_with_ready_true() {
        let node = |conds: Vec<(&str, &str)>| Node {
            metadata: kube::api::ObjectMeta {
                name: Some("n1".into()),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: Some(
                    conds
                        .into_iter()
                        .map(|(t, s)| NodeCondition {
                            type_: t.into(),
                            status: s.into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            kube_node(&node(vec![("MemoryPressure", "False"), ("Ready", "True")])),
            KubeNode {
                name: "n1".into(),
                ready: true,
                ..Default::default()
            }
        );
        assert!(!kube_node(&node(vec![("Ready", "False")])).ready);
        assert!(!kube_node(&node(vec![("Ready", "Unknown")])).ready);
        assert!(!kube_node(&node(vec![("MemoryPressure", "True")])).ready);
        assert!(!kube_node(&Node::default()).ready);
    }

    #[test]
    fn urls_and_the_admin_request() {
        assert_eq!(apiserver_url("10.0.0.1", 6443), "https://10.0.0.1:6443");
        assert_eq!(apiserver_url("fd00::1", 6443), "https://[fd00::1]:6443");
        let r = admin_request();
        assert_eq!(r.ca, "kubernetes");
        assert_eq!(r.common_name, "admin");
        assert_eq!(r.organization.as_deref(), Some("system:masters"));
        assert_eq!(r.ttl, Some(Duration::from_secs(25 * 3600)));
    }

    fn test_tls() -> AdminTls {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        AdminTls {
            ca: ca.pem(),
            cert: ca.pem(),
            key: key.serialize_pem(),
        }
    }

    #[test]
    fn client_config_carries_the_ca_the_certificate_and_the_timeout() {
        let tls = test_tls();
        let c = client_config("https://10.0.0.1:6443", &tls, KUBE_API_TIMEOUT).unwrap();
        assert_eq!(c.cluster_url.to_string(), "https://10.0.0.1:6443/");
        assert_eq!(c.root_cert.as_ref().map(Vec::len), Some(1));
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(c.auth_info.client_certificate_data.as_ref().unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(decoded).unwrap(), tls.cert);
        assert_eq!(c.read_timeout, Some(KUBE_API_TIMEOUT));
        assert_eq!(c.connect_timeout, Some(KUBE_API_TIMEOUT));
        assert!(!c.default_retry, "429s reach the drain");

        let bad = AdminTls {
            ca: "not a certificate".into(),
            ..tls.clone()
        };
        let e = client_config("https://10.0.0.1:6443", &bad, KUBE_API_TIMEOUT).unwrap_err();
        assert!(e.contains("CA kubernetes holds no certificate"), "{e}");
        assert!(client_config("not a url", &tls, KUBE_API_TIMEOUT)
            .unwrap_err()
            .contains("invalid URL"));
    }

    struct CountingIssuer(std::sync::atomic::AtomicUsize, AdminTls);

    #[async_trait]
    impl CertIssuer for CountingIssuer {
        async fn issue(
            &self,
            req: &crate::infra::pki::IssueRequest,
        ) -> Result<crate::infra::pki::IssuedCert, IssueError> {
            assert_eq!(req.common_name, "admin");
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(crate::infra::pki::IssuedCert {
                certificate: self.1.cert.clone(),
                private_key: self.1.key.clone(),
                ca_certificate: self.1.ca.clone(),
                serial_number: String::new(),
                expiration: 0,
            })
        }

        async fn k8s_encryption_keys(&self) -> Result<Vec<crate::k8s::encryption::EncryptionKey>, IssueError> {
            Ok(vec![])
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_admin_certificate_is_cached_until_an_hour_before_expiry() {
        let tls = test_tls();
        let issuer = Arc::new(CountingIssuer(Default::default(), tls.clone()));
        let storage = Arc::new(crate::storage::MemStorage::new("/cke/"));
        let creds = AdminCredentials::new(issuer.clone(), storage.clone());
        // No CA stored: a clear error.
        let e = creds.get().await.err().unwrap();
        assert!(e.to_string().contains("CA kubernetes"), "{e}");
        storage.put_ca("kubernetes", &tls.ca).await.unwrap();
        let count = || issuer.0.load(std::sync::atomic::Ordering::SeqCst);
        let (g0, _) = creds.get().await.unwrap();
        let issued = count();
        tokio::time::advance(Duration::from_secs(23 * 3600)).await;
        assert_eq!(creds.get().await.unwrap().0, g0);
        assert_eq!(count(), issued, "reused within 24 h");
        tokio::time::advance(Duration::from_secs(3600 + 1)).await;
        let (g1, _) = creds.get().await.unwrap();
        assert_eq!(count(), issued + 1, "renewed with less than 1 h left");
        assert_ne!(g0, g1);
    }

    #[tokio::test]
    async fn without_vault_the_api_is_not_configured() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kube = KubeClients::new(
            Arc::new(crate::infra::NoIssuer),
            Arc::new(crate::storage::MemStorage::new("/cke/")),
            6443,
        );
        assert!(matches!(kube.nodes("10.0.0.1").await, Err(KubeError::NotConfigured)));
        assert!(!kube.apiserver_healthy("10.0.0.1").await);
    }

    async fn serve_once(body: &'static str, status: &'static str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        format!("http://{addr}/healthz")
    }

    #[tokio::test]
    async fn http_health_wants_200_and_ok() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let h = HttpHealth::new();
        assert!(h.healthz(&serve_once("ok", "200 OK").await, None).await);
        assert!(h.healthz(&serve_once("ok\n", "200 OK").await, None).await);
        assert!(!h.healthz(&serve_once("[-]etcd failed", "200 OK").await, None).await);
        assert!(
            !h.healthz(&serve_once("ok", "500 Internal Server Error").await, None)
                .await
        );
        // Nothing listens there.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", l.local_addr().unwrap());
        drop(l);
        assert!(!h.healthz(&url, None).await);
        // https without a CA, or with a CA that is not PEM: not healthy.
        assert!(!h.healthz("https://127.0.0.1:1/healthz", None).await);
        assert!(!h.healthz("https://127.0.0.1:1/healthz", Some("junk")).await);
    }

    /// A scripted apiserver over plain HTTP: answers the requests in order with (status, body) and
    /// records each as `METHOD path body`.
    async fn scripted(answers: Vec<(u16, String)>) -> (Api<Node>, Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            for (status, body) in answers {
                let Ok((mut s, _)) = l.accept().await else { return };
                let mut req = Vec::new();
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    let n = s.read(&mut buf).await.unwrap();
                    assert!(n > 0, "client closed early");
                    req.extend_from_slice(&buf[..n]);
                    if let Some(i) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&req[..head_end]).to_string();
                let len: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                while req.len() < head_end + len {
                    let n = s.read(&mut buf).await.unwrap();
                    req.extend_from_slice(&buf[..n]);
                }
                let line = head.lines().next().unwrap().rsplit_once(' ').unwrap().0.to_string();
                log.lock()
                    .unwrap()
                    .push(format!("{line} {}", String::from_utf8_lossy(&req[head_end..])));
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(resp.as_bytes()).await.unwrap();
            }
        });
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        (Api::all(client), seen)
    }

    fn node_json(taints: serde_json::Value) -> String {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "n1", "resourceVersion": "7"},
            "spec": {"taints": taints},
        })
        .to_string()
    }

    fn status_json(code: u16, reason: &str) -> String {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": reason, "reason": reason, "code": code,
        })
        .to_string()
    }

    #[tokio::test]
    async fn a_conflicting_update_is_tried_again_on_a_fresh_read() {
        let node = node_json(serde_json::json!([{"key": "a", "effect": "NoSchedule"}]));
        let (api, seen) = scripted(vec![
            (200, node.clone()),
            (409, status_json(409, "Conflict")),
            (200, node.clone()),
            (200, node.clone()),
        ])
        .await;
        let ok = add_taints_through(
            &api,
            KUBE_API_TIMEOUT,
            "10.0.0.1",
            "n1",
            &[taint("b", "1", "NoExecute")],
        )
        .await
        .unwrap();
        assert!(ok);
        let seen = seen.lock().unwrap().clone();
        let methods: Vec<&str> = seen.iter().map(|s| s.split(' ').next().unwrap()).collect();
        assert_eq!(methods, ["GET", "PUT", "GET", "PUT"]);
        assert!(seen[0].starts_with("GET /api/v1/nodes/n1"), "{}", seen[0]);
        let body: serde_json::Value =
            serde_json::from_str(seen[3].split_once(' ').unwrap().1.split_once(' ').unwrap().1).unwrap();
        assert_eq!(
            body["spec"]["taints"],
            serde_json::json!([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "value": "1", "effect": "NoExecute"}])
        );
        assert_eq!(
            body["metadata"]["resourceVersion"], "7",
            "the update is conditional on what was read"
        );
    }

    #[tokio::test]
    async fn conflicts_without_end_fail_and_a_missing_node_is_false() {
        let node = node_json(serde_json::json!([]));
        let mut answers = Vec::new();
        for _ in 0..UPDATE_ATTEMPTS {
            answers.push((200, node.clone()));
            answers.push((409, status_json(409, "Conflict")));
        }
        let (api, seen) = scripted(answers).await;
        let e = add_b(&api).await.unwrap_err().to_string();
        assert!(
            e.contains("10.0.0.1") && e.contains("still conflicting after 5 attempts"),
            "{e}"
        );
        assert_eq!(seen.lock().unwrap().len(), 2 * UPDATE_ATTEMPTS);

        let (api, _) = scripted(vec![(404, status_json(404, "NotFound"))]).await;
        assert!(!add_b(&api).await.unwrap());
        // Deleted between the read and the update.
        let (api, _) = scripted(vec![(200, node.clone()), (404, status_json(404, "NotFound"))]).await;
        assert!(!add_b(&api).await.unwrap());
        // Another failure is an error naming the address.
        let (api, _) = scripted(vec![(200, node), (403, status_json(403, "Forbidden"))]).await;
        let e = add_b(&api).await.unwrap_err().to_string();
        assert!(e.contains("10.0.0.1") && e.contains("update node n1"), "{e}");
    }

    #[tokio::test]
    async fn taints_already_there_are_not_written() {
        let node = node_json(serde_json::json!([{"key": "b", "value": "1", "effect": "NoExecute"}]));
        let (api, seen) = scripted(vec![(200, node)]).await;
        assert!(add_taints_through(
            &api,
            KUBE_API_TIMEOUT,
            "10.0.0.1",
            "n1",
            &[taint("b", "1", "NoExecute")]
        )
        .await
        .unwrap());
        assert_eq!(seen.lock().unwrap().len(), 1, "only the read");
    }
}
