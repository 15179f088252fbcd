//! Probing the nodes over SSH: per node, whether SSH works (and why not), the state of each cke
//! container (running, image, params label), the etcd volumes and the running configuration files
//! of kube-scheduler, kubelet and kube-proxy, all in one round trip. Then, from the cke host, the
//! health of each running Kubernetes component (the apiserver through the API, the others through
//! `/healthz`) and, through the first healthy apiserver, the `Node` objects. Nodes are probed in
//! parallel with bounded concurrency; an unreachable node costs at most the dial timeout.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};

pub mod repair_queue;

use crate::infra::agent::container::{is_absent, ContainerEngine};
use crate::infra::agent::ssh::SshPool;
use crate::infra::agent::{shell_quote, AgentError, Runner};

use crate::infra::{EtcdConnector, Health, KubeApi};
use crate::model::{
    Cluster, ClusterStatus, EtcdClusterStatus, EtcdNodeStatus, KubeComponentStatus, KubernetesStatus, Node, NodeStatus,
};
use crate::storage::Storage;
use crate::topology::{
    etcd_client_url, host_port_part, ETCD_ADDED_MEMBER_VOLUME, ETCD_CONTAINER, ETCD_RIVERS_CONTAINER,
    KUBELET_CONFIG_PATH, KUBELET_CONTAINER, KUBELET_HEALTHZ_PORT, KUBE_APISERVER_CONTAINER,
    KUBE_CONTROLLER_MANAGER_CONTAINER, KUBE_CONTROLLER_MANAGER_PORT, KUBE_PROXY_CONTAINER, KUBE_PROXY_METRICS_PORT,
    KUBE_SCHEDULER_CONTAINER, KUBE_SCHEDULER_PORT, PROXY_CONFIG_PATH, RIVERS_CONTAINER, SCHEDULER_CONFIG_PATH,
};

/// Probes one node. Never fails: problems become `ssh_connected: false` with the reason. A node that
/// does not answer within twice the dial timeout (a partition with a pooled connection still open) is
/// reported unreachable and its connection dropped.
pub async fn probe_node(pool: &Arc<SshPool>, engine: &ContainerEngine, node: &Node, etcd_volume: &str) -> NodeStatus {
    let limit = pool.config().dial_timeout * 2;
    match tokio::time::timeout(limit, probe_node_inner(pool, engine, node, etcd_volume)).await {
        Ok(Ok(st)) => st,
        Ok(Err(e)) => NodeStatus {
            ssh_connected: false,
            ssh_error: e.to_string(),
            ..Default::default()
        },
        Err(_) => {
            pool.forget(&node.address, &node.user).await;
            NodeStatus {
                ssh_connected: false,
                ssh_error: format!("no answer within {limit:?}"),
                ..Default::default()
            }
        }
    }
}

async fn probe_node_inner(
    pool: &Arc<SshPool>,
    engine: &ContainerEngine,
    node: &Node,
    etcd_volume: &str,
) -> Result<NodeStatus, AgentError> {
    let agent = pool.node(&node.address, &node.user);
    let out = agent
        .run(
            &probe_script(engine, etcd_volume)?,
            None,
            pool.config().dial_timeout * 2,
        )
        .await?;
    if out.status != 0 {
        return Err(AgentError::Failed {
            address: node.address.clone(),
            command: "probe".into(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().chars().take(500).collect(),
        });
    }
    parse_probe_output(
        &node.address,
        engine,
        &out.stdout_str(),
        &String::from_utf8_lossy(&out.stderr),
        etcd_volume,
    )
}

/// The probe's one round trip: a single call of the container engine inspecting every managed
/// container and both etcd volumes at once (`inspect` without a type finds containers and volumes),
/// its exit status, then the configuration files, each after its own separator. The engine's error
/// output is the command's standard error; nothing else writes there.
///
/// The shell gathers both outputs and writes each at once when everything has run (command
/// substitutions: subshells, no more processes): every write of the engine, the `echo`s and `cat`s
/// would otherwise reach cke as an SSH packet of its own, and each packet is a wake-up of cke
/// (docs/performance.md). The trailing newlines a substitution drops are the last file's, which
/// its parser ignores.
pub fn probe_script(engine: &ContainerEngine, etcd_volume: &str) -> Result<String, AgentError> {
    for v in [etcd_volume, ETCD_ADDED_MEMBER_VOLUME] {
        if !v.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) || v.is_empty() {
            return Err(AgentError::Invalid {
                what: "volume name".into(),
                reason: format!("{v:?}"),
            });
        }
    }
    let mut names: Vec<&str> = CONTAINERS.to_vec();
    names.extend([etcd_volume, ETCD_ADDED_MEMBER_VOLUME]);
    let mut script = vec![format!(
        "{} inspect {}; s=$?; echo; echo {SEPARATOR} $s",
        shell_quote(engine.cli()),
        crate::infra::agent::shell_join(&names)
    )];
    // The running configuration files; an absent or unreadable one gives an empty section.
    for path in CONFIG_FILES {
        script.push(format!("echo {FILE_SEPARATOR}"));
        script.push(format!("cat {} 2>/dev/null", shell_quote(path)));
    }
    Ok(format!(
        "exec 3>&1; e=$( {{ o=$({}); printf '%s\\n' \"$o\" >&3; }} 2>&1 ); printf '%s' \"$e\" >&2",
        script.join("; ")
    ))
}

/// The containers the probe inspects.
const CONTAINERS: [&str; 8] = [
    ETCD_CONTAINER,
    RIVERS_CONTAINER,
    ETCD_RIVERS_CONTAINER,
    KUBE_APISERVER_CONTAINER,
    KUBE_CONTROLLER_MANAGER_CONTAINER,
    KUBE_SCHEDULER_CONTAINER,
    KUBELET_CONTAINER,
    KUBE_PROXY_CONTAINER,
];

/// The configuration files read back, in the order of their sections in the output.
const CONFIG_FILES: [&str; 3] = [SCHEDULER_CONFIG_PATH, KUBELET_CONFIG_PATH, PROXY_CONFIG_PATH];

/// The node's status from the probe script's output ([`probe_script`]): the engine's inspect
/// document (containers and volumes), a separator with the engine's exit status, then one section
/// per configuration file. `stderr` is the engine's error output: when it failed, every line of it
/// must say that an object does not exist ("no such object/container/volume"); any other failure
/// (a busy lock, a restarting daemon) fails the node's probe, so that a running member is never
/// read as stopped or its data as missing.
pub fn parse_probe_output(
    address: &str,
    engine: &ContainerEngine,
    text: &str,
    stderr: &str,
    etcd_volume: &str,
) -> Result<NodeStatus, AgentError> {
    let bad = |reason: String| AgentError::Output {
        address: address.into(),
        command: "probe".into(),
        reason,
    };
    let (inspect, rest) = text
        .split_once(SEPARATOR)
        .ok_or_else(|| bad("no separator in the output".into()))?;
    let (status, rest) = rest.split_once('\n').unwrap_or((rest, ""));
    let status: u32 = status
        .trim()
        .parse()
        .map_err(|_| bad(format!("no exit status after the separator: {status:?}")))?;
    if status != 0 {
        let other: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !is_absent(l))
            .collect();
        if !other.is_empty() || inspect.trim().is_empty() {
            let msg = if other.is_empty() {
                stderr.trim().to_string()
            } else {
                other.join("; ")
            };
            return Err(bad(format!(
                "the container engine failed (exit status {status}): {msg}"
            )));
        }
    }
    let sections: Vec<&str> = rest.split(FILE_SEPARATOR).collect();
    if sections.len() != CONFIG_FILES.len() + 1 {
        return Err(bad(format!(
            "{} configuration file sections in the output, expected {}",
            sections.len() - 1,
            CONFIG_FILES.len()
        )));
    }
    let volume_names = [etcd_volume, ETCD_ADDED_MEMBER_VOLUME];
    let found = engine.parse_inspect_all(address, inspect.as_bytes(), &CONTAINERS, &volume_names)?;
    let mut containers = found.containers;
    let volumes = found.volumes;
    let config = |i: usize| read_config(address, CONFIG_FILES[i], sections[i + 1]);
    let mut component = |name: &str, config: Option<serde_json::Value>| KubeComponentStatus {
        service: containers.remove(name).unwrap_or_default(),
        is_healthy: false,
        config,
    };
    Ok(NodeStatus {
        ssh_connected: true,
        ssh_error: String::new(),
        kube_apiserver: component(KUBE_APISERVER_CONTAINER, None),
        kube_controller_manager: component(KUBE_CONTROLLER_MANAGER_CONTAINER, None),
        kube_scheduler: component(KUBE_SCHEDULER_CONTAINER, config(0)),
        kubelet: component(KUBELET_CONTAINER, config(1)),
        kube_proxy: component(KUBE_PROXY_CONTAINER, config(2)),
        etcd: EtcdNodeStatus {
            service: containers.remove(ETCD_CONTAINER).unwrap_or_default(),
            has_data: volumes.contains(etcd_volume),
            is_added_member: volumes.contains(ETCD_ADDED_MEMBER_VOLUME),
        },
        rivers: containers.remove(RIVERS_CONTAINER).unwrap_or_default(),
        etcd_rivers: containers.remove(ETCD_RIVERS_CONTAINER).unwrap_or_default(),
    })
}

/// A configuration file's section: `None` when empty (absent or unreadable) or not a YAML mapping
/// (logged; the planner then treats the component as outdated).
fn read_config(address: &str, path: &str, text: &str) -> Option<serde_json::Value> {
    if text.trim().is_empty() {
        return None;
    }
    match crate::k8s::config::parse(path, text) {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(
                address,
                error = crate::error::error_chain(&e),
                "unreadable configuration file"
            );
            None
        }
    }
}

const SEPARATOR: &str = "----cke-probe-status----";
const FILE_SEPARATOR: &str = "----cke-probe-file----";

/// Probes every declared node, at most `concurrency` at once.
pub async fn probe_nodes(
    pool: &Arc<SshPool>,
    engine: &ContainerEngine,
    cluster: &Cluster,
    concurrency: usize,
) -> BTreeMap<String, NodeStatus> {
    let volume = cluster.options.etcd.volume().to_string();
    let mut futures = Vec::new();
    for n in cluster.nodes.iter().cloned() {
        let volume = volume.clone();
        futures.push(async move {
            let st = probe_node(pool, engine, &n, &volume).await;
            (n.address, st)
        });
    }
    stream::iter(futures)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await
}

/// The health of each running Kubernetes component of a node probed over SSH, asked from here:
/// the apiserver through the API, the others through `/healthz` (controller-manager and
/// scheduler over https verified by `ca`, the `kubernetes` CA; kubelet and kube-proxy over http).
/// Components that do not run are not asked (and stay unhealthy).
pub async fn check_health(
    kube: &dyn KubeApi,
    health: &dyn Health,
    address: &str,
    st: &mut NodeStatus,
    ca: Option<&str>,
) {
    let host = host_port_part(address);
    let ask = |running: bool, url: String, ca: Option<&str>| {
        let ca = ca.map(str::to_string);
        async move { running && health.healthz(&url, ca.as_deref()).await }
    };
    let (api, cm, sched, kubelet, proxy) = futures::join!(
        async { st.kube_apiserver.service.running && kube.apiserver_healthy(address).await },
        ask(
            st.kube_controller_manager.service.running,
            format!("https://{host}:{KUBE_CONTROLLER_MANAGER_PORT}/healthz"),
            ca
        ),
        ask(
            st.kube_scheduler.service.running,
            format!("https://{host}:{KUBE_SCHEDULER_PORT}/healthz"),
            ca
        ),
        ask(
            st.kubelet.service.running,
            format!("http://{host}:{KUBELET_HEALTHZ_PORT}/healthz"),
            None
        ),
        ask(
            st.kube_proxy.service.running,
            format!("http://{host}:{KUBE_PROXY_METRICS_PORT}/healthz"),
            None
        ),
    );
    st.kube_apiserver.is_healthy = api;
    st.kube_controller_manager.is_healthy = cm;
    st.kube_scheduler.is_healthy = sched;
    st.kubelet.is_healthy = kubelet;
    st.kube_proxy.is_healthy = proxy;
}

/// The Kubernetes cluster through the first control plane whose apiserver runs and is healthy:
/// the `Node` objects, whether the control plane is ready, the DNS objects and the endpoints cke
/// keeps ([`read_kubernetes`]). Not read (`api_read: false`) when there is no such apiserver or a
/// read fails; the planner then does nothing that needs the API's view.
pub async fn kubernetes_status(
    kube: &dyn KubeApi,
    cluster: &Cluster,
    nodes: &BTreeMap<String, NodeStatus>,
) -> KubernetesStatus {
    let healthy = |n: &&Node| {
        nodes
            .get(&n.address)
            .is_some_and(|s| s.kube_apiserver.service.running && s.kube_apiserver.is_healthy)
    };
    let Some(cp) = cluster.control_planes().find(healthy) else {
        return KubernetesStatus::default();
    };
    // The EndpointSlice API version of the Kubernetes that apiserver runs (1.20: v1beta1).
    let image = &nodes[&cp.address].kube_apiserver.service.image;
    let slice_api = crate::k8s::VersionSet::for_image(image)
        .map(|r| r.set.endpoint_slice_api)
        .unwrap_or(crate::k8s::VersionSet::latest().endpoint_slice_api);
    match read_kubernetes(kube, cluster, &cp.address, slice_api).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(
                error = crate::error::error_chain(&e),
                "cannot read the Kubernetes objects"
            );
            KubernetesStatus::default()
        }
    }
}

/// Reads, through the apiserver on `address`, everything the `k8s-maintain` rules compare (CKE's
/// GetKubernetesClusterStatus): Nodes, ServiceAccount `kube-system/default`, the `dns_service`
/// Service, the `cluster-dns` and `node-dns` ConfigMaps, the `cluster-dns` Service, and the
/// Endpoints, EndpointSlices (of `slice_api`) and Service of `default/kubernetes` and
/// `kube-system/cke-etcd`.
pub async fn read_kubernetes(
    kube: &dyn KubeApi,
    cluster: &Cluster,
    address: &str,
    slice_api: &str,
) -> Result<KubernetesStatus, crate::infra::KubeError> {
    use crate::infra::ApiKind;
    use crate::k8s::endpoints::{endpoint_slice_view, endpoints_view, service_view, ETCD_SERVICE_NAME};
    let get = |kind: ApiKind, ns: &'static str, name: String| async move {
        kube.get_object(address, &kind, Some(ns), &name).await
    };
    let data = |obj: Option<serde_json::Value>| -> Option<BTreeMap<String, String>> {
        let obj = obj?;
        Some(
            obj["data"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default(),
        )
    };
    let cluster_ip = |obj: &serde_json::Value| {
        obj.pointer("/spec/clusterIP")
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    let mut k = KubernetesStatus {
        api_read: true,
        nodes: kube.nodes(address).await?,
        control_plane_ready: get(ApiKind::service_account(), "kube-system", "default".into())
            .await?
            .is_some(),
        ..Default::default()
    };
    if let Some((ns, name)) = cluster.dns_service.split_once('/') {
        let svc = kube.get_object(address, &ApiKind::service(), Some(ns), name).await?;
        k.dns_service_ip = svc.as_ref().and_then(cluster_ip);
    }
    k.cluster_dns_config = data(get(ApiKind::config_map(), "kube-system", "cluster-dns".into()).await?);
    k.node_dns_config = data(get(ApiKind::config_map(), "kube-system", "node-dns".into()).await?);
    k.cluster_dns_ip = get(ApiKind::service(), "kube-system", "cluster-dns".into())
        .await?
        .as_ref()
        .and_then(cluster_ip)
        .unwrap_or_default();
    let slice = ApiKind::endpoint_slice(slice_api);
    k.master_endpoints = get(ApiKind::endpoints(), "default", "kubernetes".into())
        .await?
        .map(|o| endpoints_view(&o));
    k.master_endpoint_slice = get(slice.clone(), "default", "kubernetes".into())
        .await?
        .map(|o| endpoint_slice_view(&o));
    k.etcd_service = get(ApiKind::service(), "kube-system", ETCD_SERVICE_NAME.into())
        .await?
        .map(|o| service_view(&o));
    k.etcd_endpoints = get(ApiKind::endpoints(), "kube-system", ETCD_SERVICE_NAME.into())
        .await?
        .map(|o| endpoints_view(&o));
    k.etcd_endpoint_slice = get(slice, "kube-system", ETCD_SERVICE_NAME.into())
        .await?
        .map(|o| endpoint_slice_view(&o));
    Ok(k)
}

/// Which of `defs` exist, read through the apiserver on `address` (CKE's resource statuses): each
/// kind's REST mapping from discovery (once per kind), else from `trusted`; a kind served by
/// neither is left out (absent: `resource-apply` tries it, and a later pass again). Each present
/// object's annotations and whether it has managed fields (it was applied server-side).
pub async fn resource_statuses(
    kube: &dyn KubeApi,
    address: &str,
    defs: &[crate::model::ResourceDefinition],
    trusted: &[crate::model::TrustedRestMapping],
) -> Result<BTreeMap<String, crate::model::ResourceStatus>, crate::infra::KubeError> {
    let mut kinds: BTreeMap<(String, String), Option<crate::infra::ApiKind>> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for d in defs {
        let id = (d.api_version.clone(), d.kind.clone());
        if !kinds.contains_key(&id) {
            let mut k = kube.find_kind(address, &d.api_version, &d.kind).await?;
            if k.is_none() {
                let (group, version) = d.api_version.rsplit_once('/').unwrap_or(("", d.api_version.as_str()));
                k = trusted
                    .iter()
                    .find(|m| m.group == group && m.version == version && m.kind == d.kind)
                    .map(|m| crate::infra::ApiKind::new(&d.api_version, &d.kind, &m.resource, m.namespaced));
            }
            kinds.insert(id.clone(), k);
        }
        let Some(kind) = &kinds[&id] else {
            continue;
        };
        let namespace = kind.namespaced.then(|| d.namespace.as_deref().unwrap_or("default"));
        if let Some(obj) = kube.get_object(address, kind, namespace, &d.name).await? {
            let annotations = obj
                .pointer("/metadata/annotations")
                .and_then(|a| a.as_object())
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default();
            let has_been_ssa = obj
                .pointer("/metadata/managedFields")
                .and_then(|m| m.as_array())
                .is_some_and(|m| !m.is_empty());
            out.insert(
                d.key.clone(),
                crate::model::ResourceStatus {
                    annotations,
                    has_been_ssa,
                },
            );
        }
    }
    Ok(out)
}

/// The reboot queue this pass (CKE's GetRebootQueueStatus, without what the planner derives from
/// it and the time): whether it is enabled, its entries (the first of each node), which `draining`
/// entries' drains are complete ([`crate::infra::drain::drained_for_reboot`], through `apiserver`),
/// and which `rebooting` entries' boot checks print `true` (`boot_check_command <address> <last
/// transition time, Unix seconds>` on this host, all at once, with `command_timeout_seconds`). A
/// failed check counts as not done (logged): a drain then times out, a reboot waits.
pub async fn reboot_queue_status(
    storage: &dyn Storage,
    kube: &dyn KubeApi,
    commands: &dyn crate::infra::HostCommands,
    cluster: &Cluster,
    apiserver: &str,
) -> Result<crate::model::RebootQueueStatus, crate::storage::StorageError> {
    use crate::model::{RebootQueueEntry, RebootStatus};
    use crate::storage::queue;
    let enabled = queue::is_enabled(storage, &queue::REBOOT_QUEUE).await?;
    let all: Vec<RebootQueueEntry> = queue::entries(storage, &queue::REBOOT_QUEUE).await?;
    let entries = crate::model::dedup_reboot_entries(&all);
    let member = |e: &&RebootQueueEntry| cluster.node(&e.node).is_some();
    let drains = entries
        .iter()
        .filter(member)
        .filter(|e| e.status == RebootStatus::Draining)
        .map(|e| async move {
            let name = cluster.node(&e.node).map_or(e.node.as_str(), |n| n.nodename());
            match crate::infra::drain::drained_for_reboot(kube, apiserver, name).await {
                Ok(done) => done.then(|| e.node.clone()),
                Err(err) => {
                    tracing::warn!(
                        node = e.node,
                        error = crate::error::error_chain(&err),
                        "cannot check the drain"
                    );
                    None
                }
            }
        });
    let reboot = cluster.reboot.clone().unwrap_or_default();
    let checks = entries
        .iter()
        .filter(member)
        .filter(|e| e.status == RebootStatus::Rebooting && !reboot.boot_check_command.is_empty())
        .map(|e| {
            let since = e.last_transition_time.map_or(0, |t| t.timestamp()).to_string();
            let argv = crate::infra::host_command::with_args(&reboot.boot_check_command, &[&e.node, &since]);
            let timeout = crate::infra::host_command::timeout_of(reboot.command_timeout_seconds, 0);
            async move {
                match commands.run(&argv, timeout).await {
                    Ok(out) => (out.trim() == "true").then(|| e.node.clone()),
                    Err(err) => {
                        tracing::warn!(
                            node = e.node,
                            error = crate::error::error_chain(&err),
                            "boot check failed"
                        );
                        None
                    }
                }
            }
        });
    let (drained, booted) = futures::join!(futures::future::join_all(drains), futures::future::join_all(checks));
    Ok(crate::model::RebootQueueStatus {
        enabled,
        entries,
        drain_completed: drained.into_iter().flatten().collect(),
        boot_checked: booted.into_iter().flatten().collect(),
    })
}

/// The real prober: the nodes over SSH, the managed etcd with its root credentials, Kubernetes
/// through its API and the components' health endpoints.
pub struct SshProber {
    pool: Arc<SshPool>,
    engine: ContainerEngine,
    etcd: Arc<dyn EtcdConnector>,
    kube: Arc<dyn KubeApi>,
    health: Arc<dyn Health>,
    storage: Arc<dyn Storage>,
    concurrency: usize,
    /// The open-file warning last logged (logged again only when it changes).
    fd_warning: std::sync::Mutex<Option<String>>,
    /// The SSH keys and pins the pool uses, read afresh (when needed) once per pass.
    credentials: Option<Arc<crate::infra::agent::credentials::PassCredentials>>,
}

impl SshProber {
    /// A prober reaching the nodes through `pool`, the managed etcd through `etcd`, the Kubernetes
    /// API through `kube` and the health endpoints through `health`, with the `kubernetes` CA read
    /// from `storage` once per pass; at most `concurrency` nodes at once.
    pub fn new(
        pool: Arc<SshPool>,
        engine: ContainerEngine,
        etcd: Arc<dyn EtcdConnector>,
        kube: Arc<dyn KubeApi>,
        health: Arc<dyn Health>,
        storage: Arc<dyn Storage>,
        concurrency: usize,
    ) -> Self {
        SshProber {
            pool,
            engine,
            etcd,
            kube,
            health,
            storage,
            concurrency,
            fd_warning: Default::default(),
            credentials: None,
        }
    }

    /// Marks `credentials` (those of the pool) stale at the start of each probe: a pass reads the
    /// SSH keys and the pins at most once, and only when it has connections to make.
    pub fn with_credentials(mut self, credentials: Arc<crate::infra::agent::credentials::PassCredentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The managed etcd through the control-plane nodes and any other node running etcd (a member
    /// on a node that is no longer control plane still answers for the cluster). Unknown (empty)
    /// when it cannot be reached; the planner then does nothing that needs it.
    async fn etcd_status(&self, cluster: &Cluster, nodes: &BTreeMap<String, NodeStatus>) -> EtcdClusterStatus {
        let endpoints: Vec<String> = cluster
            .nodes
            .iter()
            .filter(|n| n.control_plane || nodes.get(&n.address).is_some_and(|s| s.etcd.service.running))
            .map(|n| etcd_client_url(&n.address))
            .collect();
        let etcd = match self.etcd.connect(&endpoints, &[]).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = crate::error::error_chain(&e), "cannot reach the managed etcd");
                return Default::default();
            }
        };
        etcd.cluster_status().await.unwrap_or_default()
    }
}

#[async_trait]
impl Prober for SshProber {
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus {
        if let Some(c) = &self.credentials {
            c.new_pass().await;
        }
        let ca = match self.storage.get_ca("kubernetes").await {
            Ok(ca) => ca,
            Err(e) => {
                tracing::warn!(error = crate::error::error_chain(&e), "cannot read CA kubernetes");
                None
            }
        };
        if let Some(w) =
            crate::infra::agent::open_file_warning(cluster.nodes.len(), crate::infra::agent::open_file_limit())
        {
            let mut said = self.fd_warning.lock().unwrap();
            if said.as_deref() != Some(w.as_str()) {
                tracing::warn!("{w}");
                *said = Some(w);
            }
        }
        let volume = cluster.options.etcd.volume().to_string();
        let mut futures = Vec::new();
        for n in cluster.nodes.iter().cloned() {
            let (volume, ca) = (volume.clone(), ca.clone());
            futures.push(async move {
                let started = std::time::Instant::now();
                let mut st = probe_node(&self.pool, &self.engine, &n, &volume).await;
                if st.ssh_connected {
                    check_health(&*self.kube, &*self.health, &n.address, &mut st, ca.as_deref()).await;
                }
                (n.address, st, started.elapsed())
            });
        }
        let probed: Vec<(String, NodeStatus, std::time::Duration)> = stream::iter(futures)
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        let durations: Vec<(String, std::time::Duration)> = probed.iter().map(|(a, _, d)| (a.clone(), *d)).collect();
        crate::metrics::process().probed_nodes(&durations);
        let nodes: BTreeMap<String, NodeStatus> = probed.into_iter().map(|(a, st, _)| (a, st)).collect();
        let (etcd, kubernetes) = futures::join!(
            self.etcd_status(cluster, &nodes),
            kubernetes_status(&*self.kube, cluster, &nodes)
        );
        // The reboot queue is read by the controller, with the operators' infra
        // ([`reboot_queue_status`]).
        ClusterStatus {
            nodes,
            etcd,
            kubernetes,
            ..Default::default()
        }
    }
}

/// Gathers the status the planner needs. The SSH-based implementation lives with the node agent.
#[async_trait]
pub trait Prober: Send + Sync {
    /// Probes every declared node and the managed etcd.
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus;
}

/// A prober for a daemon without a node agent: every node is reported unreachable, with the reason,
/// so the planner acts on nothing it cannot reach.
pub struct NoAgentProber;

#[async_trait]
impl Prober for NoAgentProber {
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus {
        let mut st = ClusterStatus::default();
        for n in &cluster.nodes {
            st.nodes.insert(
                n.address.clone(),
                crate::model::NodeStatus {
                    ssh_error: "no node agent is configured".into(),
                    ..Default::default()
                },
            );
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::KubeError;
    use crate::model::KubeNode;
    use std::sync::Mutex;

    fn inspect(name: &str, running: bool) -> serde_json::Value {
        serde_json::json!({
            "Name": format!("/{name}"),
            "State": {"Running": running},
            "Config": {"Image": "img", "Labels": {}},
        })
    }

    /// What the probe script prints: one inspect document (containers, then volumes), the
    /// separator with the engine's exit status (125 when something was absent), the files.
    fn output(containers: &[(&str, bool)], volumes: &[&str], files: [&str; 3]) -> String {
        let mut objects: Vec<serde_json::Value> = containers.iter().map(|(n, r)| inspect(n, *r)).collect();
        objects.extend(
            volumes
                .iter()
                .map(|v| serde_json::json!({"Name": v, "Driver": "local", "Mountpoint": format!("/v/{v}")})),
        );
        let status = if containers.len() == 8 && volumes.len() == 2 {
            0
        } else {
            125
        };
        let mut s = serde_json::to_string_pretty(&objects).unwrap();
        s += &format!("\n{SEPARATOR} {status}\n");
        for f in files {
            s += &format!("{FILE_SEPARATOR}\n{f}");
        }
        s
    }

    const ABSENT: &str = "Error: inspecting object: no such object: \"kubelet\"\nError: No such object: etcd-cke\n";

    #[test]
    fn the_output_gives_containers_volumes_and_configuration_files() {
        let text = output(
            &[
                (ETCD_CONTAINER, true),
                (KUBE_APISERVER_CONTAINER, true),
                (KUBELET_CONTAINER, false),
                (KUBE_SCHEDULER_CONTAINER, true),
            ],
            &["etcd-cke", ETCD_ADDED_MEMBER_VOLUME],
            [
                // cat gives no trailing newline: the next separator follows on the same line.
                "apiVersion: kubescheduler.config.k8s.io/v1beta1\nkind: KubeSchedulerConfiguration",
                "",
                "- not\n- a mapping\n",
            ],
        );
        let st = parse_probe_output("10.0.0.1", &ContainerEngine::default(), &text, ABSENT, "etcd-cke").unwrap();
        assert!(st.ssh_connected);
        assert!(st.etcd.service.running && st.etcd.has_data && st.etcd.is_added_member);
        assert!(st.kube_apiserver.service.running);
        assert!(st.kubelet.service.exists && !st.kubelet.service.running);
        assert!(!st.kube_proxy.service.exists);
        assert!(!st.kube_controller_manager.service.exists);
        assert_eq!(
            st.kube_scheduler.config,
            Some(serde_json::json!({
                "apiVersion": "kubescheduler.config.k8s.io/v1beta1",
                "kind": "KubeSchedulerConfiguration",
            }))
        );
        assert_eq!(st.kubelet.config, None, "absent file");
        assert_eq!(st.kube_proxy.config, None, "not a mapping");
        assert!(
            !st.kube_apiserver.is_healthy,
            "health is asked later, from the cke host"
        );
        // Only the volumes asked for count; the other volume's absence is read from the same call.
        let text = output(&[(ETCD_CONTAINER, true)], &["etcd-other"], ["", "", ""]);
        let st = parse_probe_output("10.0.0.1", &ContainerEngine::default(), &text, ABSENT, "etcd-cke").unwrap();
        assert!(!st.etcd.has_data && !st.etcd.is_added_member);
    }

    #[test]
    fn the_probe_calls_the_engine_once() {
        let script = probe_script(&ContainerEngine::new("podman", vec![]), "etcd-cke").unwrap();
        assert_eq!(script.matches("podman").count(), 1, "{script}");
        assert!(script.contains(
            "o=$(podman inspect etcd rivers etcd-rivers kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy etcd-cke etcd-added-member;"
        ), "{script}");
        assert!(probe_script(&ContainerEngine::default(), "a;b").is_err());
    }

    /// The script run by `sh` with an engine that writes its answer in pieces, apart in time: the
    /// first read of each stream gets the whole of it (one write each), and it parses.
    #[test]
    fn the_probe_script_writes_each_stream_at_once() {
        use std::io::Read;
        let dir = tempfile::tempdir().unwrap();
        let cli = dir.path().join("engine");
        let rivers = inspect(RIVERS_CONTAINER, true).to_string();
        std::fs::write(
            &cli,
            format!(
                "#!/bin/sh\nshift; printf '['; sleep 0.2; printf '%s' '{rivers}'\n\
                 for n in \"$@\"; do [ \"$n\" = rivers ] || {{ echo \"Error: No such object: $n\" >&2; sleep 0.01; }}; done\n\
                 echo ']'; exit 1\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cli, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let engine = ContainerEngine::new(cli.to_str().unwrap(), vec![]);
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(probe_script(&engine, "etcd-cke").unwrap())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let first_read = |r: &mut dyn Read| {
            let mut buf = vec![0; 65536];
            let n = r.read(&mut buf).unwrap();
            buf.truncate(n);
            String::from_utf8(buf).unwrap()
        };
        let stdout = first_read(child.stdout.as_mut().unwrap());
        let stderr = first_read(child.stderr.as_mut().unwrap());
        assert!(child.wait().unwrap().success());
        assert_eq!(stderr.lines().count(), 9, "{stderr}");
        let st = parse_probe_output("10.0.0.1", &engine, &stdout, &stderr, "etcd-cke").unwrap();
        assert!(
            st.ssh_connected && st.rivers.running && !st.etcd.service.exists,
            "{st:?}"
        );
        assert_eq!(st.kubelet.config, None);
    }

    #[test]
    fn an_engine_failure_other_than_absence_fails_the_probe() {
        let engine = ContainerEngine::default();
        let text = output(&[(ETCD_CONTAINER, true)], &[], ["", "", ""]);
        let locked = "Error: acquiring lock: database is locked\n";
        let e = parse_probe_output("10.0.0.1", &engine, &text, locked, "etcd-cke").unwrap_err();
        assert!(e.to_string().contains("database is locked"), "{e}");
        // Absence mixed with another failure: still a failure.
        let mixed = format!("{ABSENT}{locked}");
        assert!(parse_probe_output("10.0.0.1", &engine, &text, &mixed, "etcd-cke").is_err());
        // A daemon that is down prints nothing on stdout.
        let down = format!("\n{SEPARATOR} 1\n{FILE_SEPARATOR}\n{FILE_SEPARATOR}\n{FILE_SEPARATOR}\n");
        let e = parse_probe_output(
            "10.0.0.1",
            &engine,
            &down,
            "Cannot connect to the Docker daemon",
            "etcd-cke",
        )
        .unwrap_err();
        assert!(e.to_string().contains("Cannot connect"), "{e}");
        // Everything absent: podman prints [] and the absences.
        let none = format!("[]\n{SEPARATOR} 125\n{FILE_SEPARATOR}\n{FILE_SEPARATOR}\n{FILE_SEPARATOR}\n");
        let st = parse_probe_output("10.0.0.1", &engine, &none, ABSENT, "etcd-cke").unwrap();
        assert!(!st.etcd.service.exists && !st.etcd.has_data);
        // A volume name that the engine resolved to a container: unknowable, so a failure.
        let text = output(&[("etcd-cke", true)], &[], ["", "", ""]);
        let e = parse_probe_output("10.0.0.1", &engine, &text, ABSENT, "etcd-cke").unwrap_err();
        assert!(e.to_string().contains("cannot tell"), "{e}");
    }

    #[test]
    fn a_truncated_output_fails_the_probe() {
        let text = output(&[], &[], ["", "", ""]);
        let cut = &text[..text.rfind(FILE_SEPARATOR).unwrap()];
        let e = parse_probe_output("10.0.0.1", &ContainerEngine::default(), cut, ABSENT, "etcd-cke").unwrap_err();
        assert!(e.to_string().contains("2 configuration file sections"), "{e}");
        let e = parse_probe_output("10.0.0.1", &ContainerEngine::default(), "[]", "", "etcd-cke").unwrap_err();
        assert!(e.to_string().contains("no separator"), "{e}");
    }

    /// Records what was asked; healthy where told.
    #[derive(Default)]
    struct Stub {
        asked: Mutex<Vec<String>>,
        healthy_apiservers: Vec<String>,
        nodes_fail: bool,
        /// Objects by `Kind namespace/name` (`apiVersion` included for slices).
        objects: BTreeMap<String, serde_json::Value>,
    }

    #[async_trait]
    impl KubeApi for Stub {
        async fn apiserver_healthy(&self, address: &str) -> bool {
            self.asked.lock().unwrap().push(format!("api {address}"));
            self.healthy_apiservers.iter().any(|a| a == address)
        }

        async fn nodes(&self, address: &str) -> Result<Vec<KubeNode>, KubeError> {
            self.asked.lock().unwrap().push(format!("nodes {address}"));
            if self.nodes_fail {
                return Err(KubeError::Api {
                    address: address.into(),
                    reason: "refused".into(),
                });
            }
            Ok(vec![KubeNode {
                name: "n1".into(),
                ready: true,
                labels: [("cke.cybozu.com/master".to_string(), "true".to_string())].into(),
                ..Default::default()
            }])
        }

        async fn add_taints(&self, _: &str, _: &str, _: &[crate::model::Taint]) -> Result<bool, KubeError> {
            unreachable!("the probe changes nothing")
        }

        async fn update_node(
            &self,
            _: &str,
            _: &crate::model::Node,
            _: bool,
        ) -> Result<crate::infra::NodeUpdate, KubeError> {
            unreachable!("the probe changes nothing")
        }

        async fn get_object(
            &self,
            address: &str,
            kind: &crate::infra::ApiKind,
            namespace: Option<&str>,
            name: &str,
        ) -> Result<Option<serde_json::Value>, KubeError> {
            let key = format!("{} {}/{name}", kind.kind, namespace.unwrap_or_default());
            self.asked
                .lock()
                .unwrap()
                .push(format!("get {key} {} {address}", kind.api_version));
            Ok(self.objects.get(&key).cloned())
        }

        async fn create_object(
            &self,
            _: &str,
            _: &crate::infra::ApiKind,
            _: &serde_json::Value,
        ) -> Result<(), KubeError> {
            unreachable!("the probe changes nothing")
        }

        async fn replace_object(
            &self,
            _: &str,
            _: &crate::infra::ApiKind,
            _: &serde_json::Value,
        ) -> Result<(), KubeError> {
            unreachable!("the probe changes nothing")
        }

        async fn apply_object(
            &self,
            _: &str,
            _: &crate::infra::ApiKind,
            _: &serde_json::Value,
        ) -> Result<crate::infra::Applied, KubeError> {
            unreachable!("the probe changes nothing")
        }

        async fn find_kind(&self, _: &str, _: &str, _: &str) -> Result<Option<crate::infra::ApiKind>, KubeError> {
            unreachable!("not used by this probe test")
        }

        async fn remove_node(&self, _: &str, _: &str) -> Result<crate::infra::NodeRemoval, KubeError> {
            unreachable!("the probe changes nothing")
        }
    }

    #[async_trait]
    impl Health for Stub {
        async fn healthz(&self, url: &str, ca: Option<&str>) -> bool {
            self.asked
                .lock()
                .unwrap()
                .push(format!("{url} ca={}", ca.unwrap_or("-")));
            true
        }
    }

    fn running(st: &mut KubeComponentStatus) {
        st.service.exists = true;
        st.service.running = true;
    }

    #[tokio::test]
    async fn only_running_components_are_asked_with_the_ca_for_https() {
        let stub = Stub {
            healthy_apiservers: vec!["10.0.0.1".into()],
            ..Default::default()
        };
        let mut st = NodeStatus {
            ssh_connected: true,
            ..Default::default()
        };
        running(&mut st.kube_apiserver);
        running(&mut st.kube_scheduler);
        running(&mut st.kubelet);
        check_health(&stub, &stub, "10.0.0.1", &mut st, Some("CA")).await;
        let mut asked = stub.asked.lock().unwrap().clone();
        asked.sort();
        assert_eq!(
            asked,
            [
                "api 10.0.0.1",
                "http://10.0.0.1:10248/healthz ca=-",
                "https://10.0.0.1:10259/healthz ca=CA",
            ]
        );
        assert!(st.kube_apiserver.is_healthy && st.kube_scheduler.is_healthy && st.kubelet.is_healthy);
        assert!(!st.kube_controller_manager.is_healthy && !st.kube_proxy.is_healthy);

        // IPv6 in brackets; an apiserver that does not answer is unhealthy.
        let mut st6 = NodeStatus::default();
        running(&mut st6.kube_apiserver);
        running(&mut st6.kube_controller_manager);
        running(&mut st6.kube_proxy);
        stub.asked.lock().unwrap().clear();
        check_health(&stub, &stub, "fd00::1", &mut st6, None).await;
        let mut asked = stub.asked.lock().unwrap().clone();
        asked.sort();
        assert_eq!(
            asked,
            [
                "api fd00::1",
                "http://[fd00::1]:10249/healthz ca=-",
                "https://[fd00::1]:10257/healthz ca=-",
            ]
        );
        assert!(!st6.kube_apiserver.is_healthy);
    }

    fn cluster() -> Cluster {
        let nodes = vec![
            Node::new("10.0.0.1", "core", true),
            Node::new("10.0.0.2", "core", true),
            Node::new("10.0.0.3", "core", false),
        ];
        Cluster::new("t", "10.96.0.0/16", nodes)
    }

    fn apiserver(running: bool, healthy: bool) -> NodeStatus {
        let mut st = NodeStatus::default();
        st.kube_apiserver.service.running = running;
        st.kube_apiserver.is_healthy = healthy;
        st
    }

    #[tokio::test]
    async fn the_api_is_read_through_the_first_healthy_control_plane() {
        let cluster = cluster();
        let stub = Stub::default();
        let mut nodes = BTreeMap::new();
        nodes.insert("10.0.0.1".to_string(), apiserver(true, false));
        nodes.insert("10.0.0.2".to_string(), apiserver(true, true));
        // A worker's apiserver (it is not a control plane) is never used.
        nodes.insert("10.0.0.3".to_string(), apiserver(true, true));
        let k = kubernetes_status(&stub, &cluster, &nodes).await;
        assert!(k.api_read);
        assert_eq!(k.nodes.len(), 1);
        // The Node's attributes come along for the planner's update-node rule.
        assert_eq!(k.nodes[0].labels["cke.cybozu.com/master"], "true");
        let asked = stub.asked.lock().unwrap().clone();
        assert_eq!(asked[0], "nodes 10.0.0.2");
        assert!(
            asked[1..]
                .iter()
                .all(|a| a.starts_with("get ") && a.ends_with(" 10.0.0.2")),
            "{asked:?}"
        );
        assert_eq!(
            k,
            KubernetesStatus {
                api_read: true,
                nodes: k.nodes.clone(),
                ..Default::default()
            },
            "nothing else exists"
        );

        // No healthy apiserver on a control plane: not read, nothing asked.
        nodes.insert("10.0.0.2".to_string(), apiserver(false, false));
        stub.asked.lock().unwrap().clear();
        let k = kubernetes_status(&stub, &cluster, &nodes).await;
        assert_eq!(k, KubernetesStatus::default());
        assert!(stub.asked.lock().unwrap().is_empty());

        // The list fails: not read.
        let failing = Stub {
            nodes_fail: true,
            ..Default::default()
        };
        nodes.insert("10.0.0.1".to_string(), apiserver(true, true));
        let k = kubernetes_status(&failing, &cluster, &nodes).await;
        assert!(!k.api_read);
        assert_eq!(*failing.asked.lock().unwrap(), ["nodes 10.0.0.1"]);
    }

    #[tokio::test]
    async fn the_objects_cke_keeps_are_read_with_the_slice_api_of_the_running_apiserver() {
        let mut cluster = cluster();
        cluster.dns_service = "kube-system/upstream-dns".into();
        let body = |v: serde_json::Value| v;
        let p = crate::k8s::endpoints::EndpointParams::kubernetes(vec!["10.0.0.1".into()], vec![]);
        let stub = Stub {
            objects: [
                (
                    "ServiceAccount kube-system/default".to_string(),
                    body(serde_json::json!({"metadata": {"name": "default"}})),
                ),
                (
                    "Service kube-system/upstream-dns".to_string(),
                    body(serde_json::json!({"spec": {"clusterIP": "10.96.0.53"}})),
                ),
                (
                    "Service kube-system/cluster-dns".to_string(),
                    body(serde_json::json!({"spec": {"clusterIP": "10.96.0.10"}})),
                ),
                (
                    "ConfigMap kube-system/cluster-dns".to_string(),
                    body(serde_json::json!({"data": {"Corefile": ".:1053 {}"}})),
                ),
                (
                    "Endpoints default/kubernetes".to_string(),
                    crate::k8s::endpoints::endpoints_body(&p),
                ),
                (
                    "EndpointSlice default/kubernetes".to_string(),
                    crate::k8s::endpoints::endpoint_slice_body(&p, "discovery.k8s.io/v1beta1"),
                ),
            ]
            .into(),
            ..Default::default()
        };
        let mut nodes = BTreeMap::new();
        let mut st = apiserver(true, true);
        st.kube_apiserver.service.image = "localhost/cke-kubernetes:1.20.2".into();
        nodes.insert("10.0.0.1".to_string(), st);
        let k = kubernetes_status(&stub, &cluster, &nodes).await;
        assert!(k.api_read && k.control_plane_ready);
        assert_eq!(k.dns_service_ip.as_deref(), Some("10.96.0.53"));
        assert_eq!(k.cluster_dns_ip, "10.96.0.10");
        assert_eq!(k.cluster_dns_config.unwrap()["Corefile"], ".:1053 {}");
        assert_eq!(k.node_dns_config, None);
        assert_eq!(k.master_endpoints.unwrap().subsets[0].addresses, ["10.0.0.1"]);
        assert_eq!(k.master_endpoint_slice.unwrap().endpoints.len(), 1);
        assert_eq!(
            (k.etcd_service, k.etcd_endpoints, k.etcd_endpoint_slice),
            (None, None, None)
        );
        let asked = stub.asked.lock().unwrap().clone();
        assert!(
            asked.contains(&"get EndpointSlice default/kubernetes discovery.k8s.io/v1beta1 10.0.0.1".to_string()),
            "1.20 serves EndpointSlices as v1beta1: {asked:?}"
        );
        // The same code, with a 1.35 apiserver, asks for discovery.k8s.io/v1.
        nodes.get_mut("10.0.0.1").unwrap().kube_apiserver.service.image = "ghcr.io/cybozu/kubernetes:1.35.5.1".into();
        stub.asked.lock().unwrap().clear();
        assert!(kubernetes_status(&stub, &cluster, &nodes).await.api_read);
        let asked = stub.asked.lock().unwrap().clone();
        assert!(
            asked.contains(&"get EndpointSlice default/kubernetes discovery.k8s.io/v1 10.0.0.1".to_string()),
            "1.35 serves EndpointSlices as v1: {asked:?}"
        );
    }
}
