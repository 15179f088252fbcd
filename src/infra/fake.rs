//! A fake of the whole infrastructure for unit tests (test builds only): nodes with containers,
//! volumes, files and shell commands; a managed etcd whose members start when their container
//! runs; a certificate issuer that records requests. Every side effect is appended to one log, in
//! order, and any of them can be made to fail once ([`Fake::fail_once`]). [`Fake::status`] reads the
//! fake world back as the probe would, so a test can run plan → operators → probe → plan in-process.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{CertIssuer, Engine, EtcdAdmin, EtcdConnectError, EtcdConnector, Infra, IssueError, NodeAccess};
use crate::infra::agent::container::RunSpec;
use crate::infra::agent::{AgentError, Output, Runner};
use crate::infra::managed_etcd::{host_of_url, ManagedEtcdError, MemberInfo};
use crate::infra::pki::{IssueRequest, IssuedCert, VaultError};
use crate::model::{Cluster, ClusterStatus, EtcdClusterStatus, EtcdMember, NodeStatus, ServiceStatus};
use crate::storage::{MemStorage, Storage};
use crate::topology::*;

/// The key of an object in [`World::kube_objects`].
pub fn object_key(group: &str, kind: &str, namespace: &str, name: &str) -> (String, String, String, String) {
    (group.into(), kind.into(), namespace.into(), name.into())
}

/// One fake node.
#[derive(Debug, Clone, Default)]
pub struct FakeNode {
    /// Containers by name: the spec they were started with, and whether they run.
    pub containers: BTreeMap<String, (RunSpec, bool)>,
    /// Named volumes.
    pub volumes: BTreeSet<String>,
    /// Files by path: content and mode.
    pub files: BTreeMap<String, (Vec<u8>, u32)>,
    /// Images present.
    pub images: BTreeSet<String>,
}

/// The fake managed etcd.
#[derive(Debug, Clone, Default)]
pub struct FakeEtcd {
    /// Members in the order they were added.
    pub members: Vec<MemberInfo>,
    /// The next member id.
    pub next_id: u64,
    /// Users and auth were set up.
    pub auth: bool,
}

/// Everything the fake holds.
#[derive(Debug, Default)]
pub struct World {
    /// Every side effect, in order (`10.0.0.1: run etcd`, `issue server CN=node1`, ...). A failed
    /// one is logged with a leading `!`.
    pub log: Vec<String>,
    /// Nodes by address.
    pub nodes: BTreeMap<String, FakeNode>,
    /// The managed etcd.
    pub etcd: FakeEtcd,
    /// Certificate requests, in order.
    pub issued: Vec<IssueRequest>,
    /// Nodes that do not answer.
    pub unreachable: BTreeSet<String>,
    /// The Secret encryption keys in Vault.
    pub encryption_keys: Vec<crate::k8s::encryption::EncryptionKey>,
    /// Node objects by name (labels, annotations, taints; always ready).
    pub kube_nodes: BTreeMap<String, crate::model::KubeNode>,
    /// Other Kubernetes objects by (API group, kind, namespace, name), as JSON; an object the fake
    /// applied server-side carries `metadata.managedFields` of manager `cke`.
    pub kube_objects: BTreeMap<(String, String, String, String), serde_json::Value>,
    /// Answers of host commands ([`Fake::on_host_command`]): the first whose pattern the command
    /// line contains; a command no rule matches prints nothing and succeeds.
    pub host_answers: Vec<(String, Result<String, String>)>,
    /// Every host command run, with the timeout it was given.
    pub host_timeouts: Vec<(String, Option<Duration>)>,
    /// How long host commands take ([`Fake::host_command_takes`]), by pattern of the command line.
    pub host_durations: Vec<(String, Duration)>,
    /// Pods by (namespace, name). Evicted and deleted pods are gone at once.
    pub pods: BTreeMap<(String, String), crate::infra::KubePod>,
    /// Namespace labels by name (a namespace of a pod exists without an entry here).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    /// Pods whose eviction a PodDisruptionBudget refuses (429), with how many more times.
    pub eviction_refusals: BTreeMap<(String, String), u32>,
    /// DaemonSets with `updateStrategy: OnDelete`, as (namespace, name).
    pub on_delete_daemonsets: BTreeSet<(String, String)>,
    /// `status.volumesInUse` by Node name.
    pub volumes_in_use: BTreeMap<String, Vec<String>>,
    failures: Vec<String>,
}

impl World {
    /// Logs an action, failing it when a pending failure matches.
    fn act(&mut self, entry: String) -> Result<(), String> {
        if let Some(i) = self.failures.iter().position(|f| entry.contains(f.as_str())) {
            self.failures.remove(i);
            self.log.push(format!("!{entry}"));
            return Err(format!("injected failure of `{entry}`"));
        }
        self.log.push(entry);
        Ok(())
    }

    /// Logs a Kubernetes API call through the apiserver on `address` (failing it when a pending
    /// failure matches), after registering the Nodes of running kubelets.
    fn kube_act(&mut self, address: &str, entry: String) -> Result<(), crate::infra::KubeError> {
        self.act(entry).map_err(|reason| crate::infra::KubeError::Api {
            address: address.into(),
            reason,
        })?;
        Fake::register_nodes(self);
        self.controller_manager_objects();
        Ok(())
    }

    /// What a running controller-manager creates: the ServiceAccount `kube-system/default`.
    fn controller_manager_objects(&mut self) {
        let running = self
            .nodes
            .keys()
            .any(|a| self.running(a, KUBE_CONTROLLER_MANAGER_CONTAINER));
        if running {
            self.kube_objects
                .entry(object_key("", "ServiceAccount", "kube-system", "default"))
                .or_insert_with(|| {
                    serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"namespace": "kube-system", "name": "default"}})
                });
        }
    }

    /// The object of `kind` at `namespace/name`.
    pub fn kube_object(&self, kind: &crate::infra::ApiKind, namespace: &str, name: &str) -> Option<&serde_json::Value> {
        self.kube_objects
            .get(&object_key(kind.group(), &kind.kind, namespace, name))
    }

    /// The kinds the fake apiserver serves: common built-in kinds, and those of the CRDs stored.
    fn find_kind(&self, api_version: &str, kind: &str) -> Option<crate::infra::ApiKind> {
        const BUILTIN: &[(&str, &str, &str, bool)] = &[
            ("v1", "Namespace", "namespaces", false),
            ("v1", "ServiceAccount", "serviceaccounts", true),
            ("v1", "ConfigMap", "configmaps", true),
            ("v1", "Secret", "secrets", true),
            ("v1", "Service", "services", true),
            ("v1", "Endpoints", "endpoints", true),
            ("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", false),
            (
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                "clusterrolebindings",
                false,
            ),
            ("rbac.authorization.k8s.io/v1", "Role", "roles", true),
            ("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", true),
            ("apps/v1", "DaemonSet", "daemonsets", true),
            ("apps/v1", "Deployment", "deployments", true),
            ("policy/v1beta1", "PodDisruptionBudget", "poddisruptionbudgets", true),
            ("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", true),
            ("discovery.k8s.io/v1beta1", "EndpointSlice", "endpointslices", true),
            ("discovery.k8s.io/v1", "EndpointSlice", "endpointslices", true),
            ("networking.k8s.io/v1", "NetworkPolicy", "networkpolicies", true),
            (
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "customresourcedefinitions",
                false,
            ),
            (
                "admissionregistration.k8s.io/v1",
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
                false,
            ),
            (
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
                false,
            ),
        ];
        if let Some((v, k, plural, namespaced)) = BUILTIN.iter().find(|(v, k, ..)| *v == api_version && *k == kind) {
            return Some(crate::infra::ApiKind::new(v, k, plural, *namespaced));
        }
        self.kube_objects
            .iter()
            .filter(|((g, k, ..), _)| g == "apiextensions.k8s.io" && k == "CustomResourceDefinition")
            .find_map(|(_, crd)| {
                let group = crd.pointer("/spec/group")?.as_str()?;
                let served = crd.pointer("/spec/versions")?.as_array()?.iter().any(|v| {
                    v["served"].as_bool().unwrap_or(true)
                        && format!("{group}/{}", v["name"].as_str().unwrap_or("")) == api_version
                });
                let names = crd.pointer("/spec/names")?;
                (served && names["kind"].as_str()? == kind).then(|| {
                    crate::infra::ApiKind::new(
                        api_version,
                        kind,
                        names["plural"].as_str().unwrap_or_default(),
                        crd.pointer("/spec/scope").and_then(|s| s.as_str()) == Some("Namespaced"),
                    )
                })
            })
    }

    /// The key of `body` of `kind`, or why it has none.
    fn body_key(
        kind: &crate::infra::ApiKind,
        body: &serde_json::Value,
    ) -> Result<(String, String, String, String), String> {
        let name = body
            .pointer("/metadata/name")
            .and_then(|v| v.as_str())
            .ok_or("no metadata.name")?;
        let ns = if kind.namespaced {
            body.pointer("/metadata/namespace")
                .and_then(|v| v.as_str())
                .ok_or("no metadata.namespace")?
        } else {
            ""
        };
        Ok(object_key(kind.group(), &kind.kind, ns, name))
    }

    fn running(&self, address: &str, name: &str) -> bool {
        self.nodes
            .get(address)
            .and_then(|n| n.containers.get(name))
            .is_some_and(|(_, running)| *running)
    }

    fn member_running(&self, m: &MemberInfo) -> bool {
        !m.name.is_empty() && m.address().is_some_and(|a| self.running(&a, ETCD_CONTAINER))
    }

    /// A majority of the voting members run.
    pub fn etcd_healthy(&self) -> bool {
        let voters: Vec<&MemberInfo> = self.etcd.members.iter().filter(|m| !m.is_learner).collect();
        let up = voters.iter().filter(|m| self.member_running(m)).count();
        !voters.is_empty() && up * 2 > voters.len()
    }

    fn etcd_started(&mut self, address: &str, spec: &RunSpec) {
        let url = etcd_peer_url(address);
        let new = spec.command.iter().any(|a| a == "--initial-cluster-state=new");
        // A bootstrap registers every member of the initial cluster at once, as etcd does; those
        // not started yet have no name.
        if new && self.etcd.members.is_empty() {
            let initial = spec.command.iter().find_map(|a| a.strip_prefix("--initial-cluster="));
            for entry in initial.unwrap_or_default().split(',') {
                if let Some((_, peer)) = entry.split_once('=') {
                    self.etcd.next_id += 1;
                    self.etcd.members.push(MemberInfo {
                        id: self.etcd.next_id,
                        name: String::new(),
                        peer_urls: vec![peer.into()],
                        client_urls: vec![],
                        is_learner: false,
                    });
                }
            }
        }
        match self.etcd.members.iter_mut().find(|m| m.peer_urls.contains(&url)) {
            Some(m) => {
                m.name = address.into();
                m.client_urls = vec![etcd_client_url(address)];
            }
            None if new => {
                self.etcd.next_id += 1;
                self.etcd.members.push(MemberInfo {
                    id: self.etcd.next_id,
                    name: address.into(),
                    peer_urls: vec![url],
                    client_urls: vec![etcd_client_url(address)],
                    is_learner: false,
                });
            }
            None => {}
        }
    }
}

/// The fake. Cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct Fake {
    world: Arc<Mutex<World>>,
}

fn agent_error(address: &str, what: &str, reason: String) -> AgentError {
    AgentError::Failed {
        address: address.into(),
        command: what.into(),
        status: 1,
        stderr: reason,
    }
}

fn etcd_error(reason: String) -> ManagedEtcdError {
    ManagedEtcdError::Unexpected {
        endpoints: "fake".into(),
        reason,
    }
}

/// Whether `labels` satisfy a selector in the API's query syntax
/// ([`crate::model::LabelSelector::to_query`]): `k=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`.
pub fn selector_matches(query: &str, labels: &BTreeMap<String, String>) -> bool {
    let mut reqs = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in query.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                reqs.push(&query[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    reqs.push(&query[start..]);
    reqs.into_iter().map(str::trim).filter(|r| !r.is_empty()).all(|r| {
        let set = |rest: &str| -> Vec<String> {
            rest.trim()
                .trim_start_matches('(')
                .trim_end_matches(')')
                .split(',')
                .map(|v| v.trim().to_string())
                .collect()
        };
        if let Some((k, rest)) = r.split_once(" notin ") {
            labels.get(k.trim()).is_none_or(|v| !set(rest).contains(v))
        } else if let Some((k, rest)) = r.split_once(" in ") {
            labels.get(k.trim()).is_some_and(|v| set(rest).contains(v))
        } else if let Some((k, v)) = r.split_once('=') {
            labels.get(k.trim()) == Some(&v.trim().to_string())
        } else if let Some(k) = r.strip_prefix('!') {
            !labels.contains_key(k.trim())
        } else {
            labels.contains_key(r)
        }
    })
}

impl Fake {
    /// A pod on Node `node`, owned by a controller of `controller_kind` (`"DaemonSet"`, `"Job"`,
    /// `""` for none) named after the pod, in `phase`, with `labels`.
    pub fn add_pod(
        &self,
        namespace: &str,
        name: &str,
        node: &str,
        controller_kind: &str,
        phase: &str,
        labels: &[(&str, &str)],
    ) {
        let pod = crate::infra::KubePod {
            namespace: namespace.into(),
            name: name.into(),
            uid: format!("uid-{namespace}-{name}"),
            labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            controller_kind: (!controller_kind.is_empty()).then(|| controller_kind.to_string()),
            controller_name: (!controller_kind.is_empty()).then(|| name.to_string()),
            phase: phase.into(),
            node_name: node.into(),
        };
        self.with(|w| w.pods.insert((namespace.into(), name.into()), pod));
    }

    /// An empty world: nodes appear when first used.
    pub fn new() -> Self {
        let f = Fake::default();
        f.with(|w| {
            w.encryption_keys = vec![crate::k8s::encryption::EncryptionKey {
                name: "2026-01-01T00:00:00Z".into(),
                secret: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
            }]
        });
        f
    }

    /// Reads or changes the world.
    pub fn with<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.world.lock().unwrap())
    }

    /// The next side effect whose log entry contains `pattern` fails (once).
    pub fn fail_once(&self, pattern: &str) {
        self.with(|w| w.failures.push(pattern.into()));
    }

    /// The log so far, and clears it.
    pub fn take_log(&self) -> Vec<String> {
        self.with(|w| std::mem::take(&mut w.log))
    }

    /// Stops a container as a crash would (it stays, not running).
    pub fn crash(&self, address: &str, name: &str) {
        self.with(|w| {
            if let Some((_, running)) = w.nodes.entry(address.into()).or_default().containers.get_mut(name) {
                *running = false;
            }
        });
    }

    /// A memory storage holding the CAs the operators read.
    pub async fn storage() -> Arc<dyn Storage> {
        let s = MemStorage::new("/cke/");
        for ca in crate::storage::CA_NAMES {
            s.put_ca(ca, &format!("CA {ca}")).await.unwrap();
        }
        s.put_raw(crate::storage::KEY_SERVICE_ACCOUNT_CERT, b"SA CERT".to_vec())
            .await
            .unwrap();
        s.put_raw(crate::storage::KEY_SERVICE_ACCOUNT_KEY, b"SA KEY".to_vec())
            .await
            .unwrap();
        Arc::new(s)
    }

    /// Infra whose every side effect lands in this fake.
    pub fn infra(&self, cluster: &Cluster, storage: Arc<dyn Storage>) -> Infra {
        Infra {
            storage,
            cluster: Arc::new(cluster.clone()),
            nodes: Arc::new(self.clone()),
            engine: Arc::new(self.clone()),
            issuer: Arc::new(self.clone()),
            etcd: Arc::new(self.clone()),
            kube: Arc::new(self.clone()),
            health: Arc::new(self.clone()),
            commands: Arc::new(self.clone()),
            fence: None,
        }
    }

    /// Host commands whose command line contains `pattern` print `answer` and succeed (`Ok`), or
    /// fail with the message (`Err`); the latest rule for a pattern wins.
    pub fn on_host_command(&self, pattern: &str, answer: Result<&str, &str>) {
        self.with(|w| {
            w.host_answers.retain(|(p, _)| p != pattern);
            w.host_answers
                .insert(0, (pattern.into(), answer.map(str::to_string).map_err(str::to_string)));
        });
    }

    /// Host commands whose command line contains `pattern` take `duration` (tokio time) before they
    /// answer; one given a shorter timeout times out at it.
    pub fn host_command_takes(&self, pattern: &str, duration: Duration) {
        self.with(|w| {
            w.host_durations.retain(|(p, _)| p != pattern);
            w.host_durations.insert(0, (pattern.into(), duration));
        });
    }

    /// The fake Node objects: a kubelet running on a node registers its Node (with the boot taints
    /// of its params) the first time anyone asks.
    fn register_nodes(w: &mut World) {
        for (address, n) in &w.nodes {
            let Some((spec, true)) = n.containers.get(KUBELET_CONTAINER) else {
                continue;
            };
            let name = spec
                .command
                .iter()
                .find_map(|a| a.strip_prefix("--hostname-override="))
                .unwrap_or(address)
                .to_string();
            w.kube_nodes
                .entry(name.clone())
                .or_insert_with(|| crate::model::KubeNode {
                    name,
                    ready: true,
                    ..Default::default()
                });
        }
    }

    /// The Kubernetes objects as the probe reads them ([`crate::probe::read_kubernetes`]).
    fn kubernetes_status(w: &World, cluster: &Cluster) -> crate::model::KubernetesStatus {
        use crate::k8s::endpoints::{endpoint_slice_view, endpoints_view, service_view};
        let get =
            |group: &str, kind: &str, ns: &str, name: &str| w.kube_objects.get(&object_key(group, kind, ns, name));
        let data = |o: &serde_json::Value| -> BTreeMap<String, String> {
            o["data"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        let ip = |o: &serde_json::Value| {
            o.pointer("/spec/clusterIP")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let dns_service_ip = cluster
            .dns_service
            .split_once('/')
            .and_then(|(ns, name)| get("", "Service", ns, name))
            .and_then(ip);
        crate::model::KubernetesStatus {
            api_read: true,
            nodes: w.kube_nodes.values().cloned().collect(),
            control_plane_ready: get("", "ServiceAccount", "kube-system", "default").is_some(),
            dns_service_ip,
            cluster_dns_config: get("", "ConfigMap", "kube-system", "cluster-dns").map(data),
            cluster_dns_ip: get("", "Service", "kube-system", "cluster-dns")
                .and_then(ip)
                .unwrap_or_default(),
            node_dns_config: get("", "ConfigMap", "kube-system", "node-dns").map(data),
            master_endpoints: get("", "Endpoints", "default", "kubernetes").map(endpoints_view),
            master_endpoint_slice: get("discovery.k8s.io", "EndpointSlice", "default", "kubernetes")
                .map(endpoint_slice_view),
            etcd_service: get("", "Service", "kube-system", "cke-etcd").map(service_view),
            etcd_endpoints: get("", "Endpoints", "kube-system", "cke-etcd").map(endpoints_view),
            etcd_endpoint_slice: get("discovery.k8s.io", "EndpointSlice", "kube-system", "cke-etcd")
                .map(endpoint_slice_view),
            // Every object the fake holds, by resource key, as the probe's resource statuses.
            resources: w
                .kube_objects
                .iter()
                .map(|((_, kind, ns, name), o)| {
                    let ns = (!ns.is_empty()).then_some(ns.as_str());
                    let annotations = o
                        .pointer("/metadata/annotations")
                        .and_then(|a| a.as_object())
                        .map(|m| {
                            m.iter()
                                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                                .collect()
                        })
                        .unwrap_or_default();
                    let has_been_ssa = o
                        .pointer("/metadata/managedFields")
                        .and_then(|m| m.as_array())
                        .is_some_and(|m| !m.is_empty());
                    (
                        crate::model::resource::resource_key(kind, ns, name),
                        crate::model::ResourceStatus {
                            annotations,
                            has_been_ssa,
                        },
                    )
                })
                .collect(),
        }
    }

    /// What the probe would see of the fake world.
    pub fn status(&self, cluster: &Cluster) -> ClusterStatus {
        self.with(|w| {
            let service = |node: Option<&FakeNode>, name: &str| {
                node.and_then(|n| n.containers.get(name))
                    .map(|(spec, running)| ServiceStatus {
                        exists: true,
                        running: *running,
                        image: spec.image.clone(),
                        params: Some(spec.params.clone()),
                    })
                    .unwrap_or_default()
            };
            let mut st = ClusterStatus::default();
            for n in &cluster.nodes {
                let mut ns = NodeStatus::default();
                if w.unreachable.contains(&n.address) {
                    ns.ssh_error = "unreachable (fake)".into();
                } else {
                    let fnode = w.nodes.get(&n.address);
                    ns.ssh_connected = true;
                    ns.etcd.service = service(fnode, ETCD_CONTAINER);
                    ns.etcd.has_data = fnode.is_some_and(|f| f.volumes.contains(cluster.options.etcd.volume()));
                    ns.etcd.is_added_member = fnode.is_some_and(|f| f.volumes.contains(ETCD_ADDED_MEMBER_VOLUME));
                    ns.rivers = service(fnode, RIVERS_CONTAINER);
                    ns.etcd_rivers = service(fnode, ETCD_RIVERS_CONTAINER);
                    // Kubernetes: an apiserver is healthy when it runs and etcd is healthy; the
                    // others when they run. Configuration files are read back from the node.
                    let kube = |name: &str, config_path: Option<&str>, healthy: bool| {
                        let service = service(fnode, name);
                        let config = config_path.and_then(|p| {
                            let (bytes, _) = fnode?.files.get(p)?;
                            crate::k8s::config::parse(p, &String::from_utf8_lossy(bytes)).ok()
                        });
                        crate::model::KubeComponentStatus {
                            is_healthy: service.running && healthy,
                            service,
                            config,
                        }
                    };
                    let etcd_ok = w.etcd_healthy();
                    ns.kube_apiserver = kube(KUBE_APISERVER_CONTAINER, None, etcd_ok);
                    ns.kube_controller_manager = kube(KUBE_CONTROLLER_MANAGER_CONTAINER, None, true);
                    ns.kube_scheduler = kube(KUBE_SCHEDULER_CONTAINER, Some(SCHEDULER_CONFIG_PATH), true);
                    ns.kubelet = kube(KUBELET_CONTAINER, Some(KUBELET_CONFIG_PATH), true);
                    ns.kube_proxy = kube(KUBE_PROXY_CONTAINER, Some(PROXY_CONFIG_PATH), true);
                }
                st.nodes.insert(n.address.clone(), ns);
            }
            if cluster
                .control_planes()
                .any(|n| st.nodes[&n.address].kube_apiserver.service.running)
            {
                Fake::register_nodes(w);
                w.controller_manager_objects();
                st.kubernetes = Fake::kubernetes_status(w, cluster);
            }
            let any_running = w.etcd.members.iter().any(|m| w.member_running(m));
            if any_running {
                st.etcd = EtcdClusterStatus {
                    is_healthy: w.etcd_healthy(),
                    members: w
                        .etcd
                        .members
                        .iter()
                        .filter_map(|m| {
                            let a = m.address()?;
                            Some((
                                a,
                                EtcdMember {
                                    id: m.id,
                                    name: m.name.clone(),
                                    is_learner: m.is_learner,
                                },
                            ))
                        })
                        .collect(),
                    in_sync_members: if w.etcd_healthy() {
                        w.etcd
                            .members
                            .iter()
                            .filter(|m| w.member_running(m))
                            .filter_map(|m| m.address())
                            .collect()
                    } else {
                        BTreeSet::new()
                    },
                };
            }
            st
        })
    }

    fn node_act(&self, address: &str, entry: String) -> Result<(), AgentError> {
        self.with(|w| {
            if w.unreachable.contains(address) {
                w.log.push(format!("!{entry}"));
                return Err(AgentError::Connect {
                    address: address.into(),
                    reason: "unreachable (fake)".into(),
                });
            }
            w.act(entry.clone()).map_err(|r| agent_error(address, &entry, r))
        })
    }
}

/// A fake node's shell.
pub struct FakeRunner {
    fake: Fake,
    address: String,
}

#[async_trait]
impl Runner for FakeRunner {
    fn address(&self) -> &str {
        &self.address
    }

    async fn run(&self, command: &str, _stdin: Option<&[u8]>, _timeout: Duration) -> Result<Output, AgentError> {
        self.fake
            .node_act(&self.address, format!("{}: sh {command}", self.address))?;
        // `find D -mindepth 1 -delete` (an emptied directory): everything below D goes.
        if let Some(dir) = command
            .split(" && ")
            .find_map(|c| c.strip_prefix("find ")?.strip_suffix(" -mindepth 1 -delete"))
        {
            let dir = dir.trim_matches('\'').to_string();
            self.fake.with(|w| {
                let n = w.nodes.entry(self.address.clone()).or_default();
                n.files.retain(|p, _| !p.starts_with(&format!("{dir}/")));
            });
        }
        if let Some(dir) = command.strip_prefix("rm -rf ") {
            let dir = dir.trim_matches('\'').to_string();
            self.fake.with(|w| {
                let n = w.nodes.entry(self.address.clone()).or_default();
                n.files.retain(|p, _| !p.starts_with(&format!("{dir}/")) && *p != dir);
            });
        }
        Ok(Output {
            status: 0,
            ..Default::default()
        })
    }

    async fn write_file(&self, path: &str, content: &[u8], mode: u32, _owner: Option<&str>) -> Result<(), AgentError> {
        self.fake
            .node_act(&self.address, format!("{}: write {path}", self.address))?;
        self.fake.with(|w| {
            let n = w.nodes.entry(self.address.clone()).or_default();
            n.files.insert(path.into(), (content.to_vec(), mode));
        });
        Ok(())
    }
}

#[async_trait]
impl NodeAccess for Fake {
    fn node(&self, address: &str, _user: &str) -> Arc<dyn Runner> {
        Arc::new(FakeRunner {
            fake: self.clone(),
            address: address.into(),
        })
    }

    /// Logs `<address>: release connection`.
    async fn release(&self, address: &str, _user: &str) {
        self.with(|w| w.log.push(format!("{address}: release connection")));
    }
}

#[async_trait]
impl Engine for Fake {
    async fn run(&self, node: &dyn Runner, spec: &RunSpec) -> Result<(), AgentError> {
        let a = node.address();
        self.node_act(a, format!("{a}: run {}", spec.name))?;
        self.with(|w| {
            let n = w.nodes.entry(a.into()).or_default();
            // An operator that skips the image check must know the image is there.
            assert!(
                !spec.image_present || n.images.contains(&spec.image),
                "{a}: {} run without an image check, but {} is not on the node",
                spec.name,
                spec.image
            );
            n.images.insert(spec.image.clone());
            n.containers.insert(spec.name.clone(), (spec.clone(), true));
            if spec.name == ETCD_CONTAINER {
                w.etcd_started(a, spec);
            }
        });
        Ok(())
    }

    async fn remove(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        let a = node.address();
        self.node_act(a, format!("{a}: remove {name}"))?;
        self.with(|w| w.nodes.entry(a.into()).or_default().containers.remove(name));
        Ok(())
    }

    async fn volume_create(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        let a = node.address();
        self.node_act(a, format!("{a}: volume create {name}"))?;
        self.with(|w| w.nodes.entry(a.into()).or_default().volumes.insert(name.into()));
        Ok(())
    }

    async fn volume_remove(&self, node: &dyn Runner, name: &str) -> Result<(), AgentError> {
        let a = node.address();
        self.node_act(a, format!("{a}: volume rm {name}"))?;
        self.with(|w| w.nodes.entry(a.into()).or_default().volumes.remove(name));
        Ok(())
    }

    async fn pull_if_missing(&self, node: &dyn Runner, image: &str) -> Result<(), AgentError> {
        let a = node.address();
        self.node_act(a, format!("{a}: pull {image}"))?;
        self.with(|w| w.nodes.entry(a.into()).or_default().images.insert(image.into()));
        Ok(())
    }
}

#[async_trait]
impl CertIssuer for Fake {
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, IssueError> {
        let entry = format!("issue {} CN={}", req.ca, req.common_name);
        self.with(|w| {
            w.act(entry).map_err(|reason| {
                IssueError::Vault(VaultError::Unexpected {
                    endpoint: "fake".into(),
                    path: format!("cke/ca-{}", req.ca),
                    reason,
                })
            })?;
            w.issued.push(req.clone());
            Ok(IssuedCert {
                certificate: format!("CERT {} {}", req.ca, req.common_name),
                private_key: format!("KEY {} {}", req.ca, req.common_name),
                ca_certificate: format!("CA {}", req.ca),
                serial_number: w.issued.len().to_string(),
                expiration: 0,
            })
        })
    }

    async fn k8s_encryption_keys(&self) -> Result<Vec<crate::k8s::encryption::EncryptionKey>, IssueError> {
        self.with(|w| {
            w.act("read cke/secrets/k8s".into()).map_err(|reason| {
                IssueError::Vault(VaultError::Unexpected {
                    endpoint: "fake".into(),
                    path: "cke/secrets/k8s".into(),
                    reason,
                })
            })?;
            Ok(w.encryption_keys.clone())
        })
    }
}

#[async_trait]
impl EtcdConnector for Fake {
    async fn connect(
        &self,
        preferred: &[String],
        _fallback: &[String],
    ) -> Result<Arc<dyn EtcdAdmin>, EtcdConnectError> {
        let hosts: Vec<String> = preferred.iter().filter_map(|u| host_of_url(u)).collect();
        Ok(Arc::new(FakeEtcdAdmin {
            fake: self.clone(),
            endpoints: hosts.join(","),
        }))
    }
}

/// A client of the fake managed etcd.
pub struct FakeEtcdAdmin {
    fake: Fake,
    endpoints: String,
}

impl FakeEtcdAdmin {
    fn act(&self, what: &str) -> Result<(), ManagedEtcdError> {
        self.fake
            .with(|w| {
                w.act(format!("etcd {what}"))?;
                if !w.etcd.members.iter().any(|m| w.member_running(m)) {
                    return Err(format!("no member answers through {}", self.endpoints));
                }
                Ok(())
            })
            .map_err(etcd_error)
    }
}

#[async_trait]
impl EtcdAdmin for FakeEtcdAdmin {
    fn endpoints(&self) -> String {
        self.endpoints.clone()
    }

    async fn members(&self) -> Result<Vec<MemberInfo>, ManagedEtcdError> {
        self.act("member list")?;
        Ok(self.fake.with(|w| w.etcd.members.clone()))
    }

    async fn add_learner_when_ready(
        &self,
        peer_url: &str,
        _limit: Duration,
    ) -> Result<(u64, Vec<MemberInfo>), ManagedEtcdError> {
        self.act(&format!("add learner {peer_url}"))?;
        self.fake.with(|w| {
            if !w.etcd_healthy() {
                return Err(etcd_error("no quorum".into()));
            }
            let existing = w
                .etcd
                .members
                .iter()
                .find(|m| m.peer_urls.iter().any(|u| u == peer_url) && m.is_learner && m.name.is_empty())
                .map(|m| m.id);
            let id = match existing {
                Some(id) => id,
                None => {
                    w.etcd.next_id += 1;
                    let id = w.etcd.next_id;
                    w.etcd.members.push(MemberInfo {
                        id,
                        name: String::new(),
                        peer_urls: vec![peer_url.into()],
                        client_urls: vec![],
                        is_learner: true,
                    });
                    id
                }
            };
            Ok((id, w.etcd.members.clone()))
        })
    }

    async fn promote_when_ready(&self, id: u64, _limit: Duration) -> Result<(), ManagedEtcdError> {
        self.act(&format!("promote {id:x}"))?;
        self.fake.with(|w| {
            let started = w.etcd.members.iter().any(|m| m.id == id && w.member_running(m));
            match w.etcd.members.iter_mut().find(|m| m.id == id) {
                None => Err(etcd_error(format!("member {id:x} not found"))),
                Some(_) if !started => Err(etcd_error(format!("learner {id:x} did not catch up"))),
                Some(m) => {
                    m.is_learner = false;
                    Ok(())
                }
            }
        })
    }

    async fn remove(&self, id: u64) -> Result<(), ManagedEtcdError> {
        self.act(&format!("remove {id:x}"))?;
        self.fake.with(|w| w.etcd.members.retain(|m| m.id != id));
        Ok(())
    }

    async fn health_revision(&self) -> Result<i64, ManagedEtcdError> {
        self.act("health")?;
        if self.fake.with(|w| w.etcd_healthy()) {
            Ok(1)
        } else {
            Err(etcd_error("no quorum".into()))
        }
    }

    async fn cluster_status(&self) -> Result<EtcdClusterStatus, ManagedEtcdError> {
        self.act("status")?;
        Ok(self.fake.with(|w| EtcdClusterStatus {
            is_healthy: w.etcd_healthy(),
            members: Default::default(),
            in_sync_members: w
                .etcd
                .members
                .iter()
                .filter(|m| w.member_running(m))
                .filter_map(|m| m.address())
                .collect(),
        }))
    }

    async fn setup_auth(&self) -> Result<(), ManagedEtcdError> {
        self.act("setup auth")?;
        self.fake.with(|w| w.etcd.auth = true);
        Ok(())
    }
}

#[async_trait]
impl crate::infra::KubeApi for Fake {
    async fn apiserver_healthy(&self, address: &str) -> bool {
        self.with(|w| !w.unreachable.contains(address) && w.running(address, KUBE_APISERVER_CONTAINER))
    }

    async fn nodes(&self, address: &str) -> Result<Vec<crate::model::KubeNode>, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube list nodes"))?;
            Ok(w.kube_nodes.values().cloned().collect())
        })
    }

    async fn add_taints(
        &self,
        address: &str,
        name: &str,
        taints: &[crate::model::Taint],
    ) -> Result<bool, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube taint {name}"))?;
            let Some(current) = w.kube_nodes.get_mut(name) else {
                return Ok(false);
            };
            for t in taints {
                current.taints.retain(|c| c.key != t.key);
                current.taints.push(t.clone());
            }
            Ok(true)
        })
    }

    async fn update_node(
        &self,
        address: &str,
        declared: &crate::model::Node,
        taint_control_plane: bool,
    ) -> Result<crate::infra::NodeUpdate, crate::infra::KubeError> {
        let name = declared.nodename();
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube update node {name}"))?;
            let Some(current) = w.kube_nodes.get_mut(name) else {
                return Ok(crate::infra::NodeUpdate::Missing);
            };
            if !crate::k8s::node::is_outdated(declared, current, taint_control_plane) {
                return Ok(crate::infra::NodeUpdate::Current);
            }
            *current = crate::k8s::node::desired(declared, current, taint_control_plane).apply_to(current);
            Ok(crate::infra::NodeUpdate::Updated)
        })
    }

    async fn get_object(
        &self,
        address: &str,
        kind: &crate::infra::ApiKind,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Option<serde_json::Value>, crate::infra::KubeError> {
        let ns = namespace.unwrap_or_default();
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube get {} {ns}/{name}", kind.kind))?;
            Ok(w.kube_object(kind, ns, name).cloned())
        })
    }

    async fn create_object(
        &self,
        address: &str,
        kind: &crate::infra::ApiKind,
        body: &serde_json::Value,
    ) -> Result<(), crate::infra::KubeError> {
        self.with(|w| {
            let err = |reason: String| crate::infra::KubeError::Api {
                address: address.into(),
                reason,
            };
            let key = World::body_key(kind, body).map_err(err)?;
            w.kube_act(
                address,
                format!("{address}: kube create {} {}/{}", kind.kind, key.2, key.3),
            )?;
            if w.kube_objects.contains_key(&key) {
                return Err(err(format!("{} {}/{} already exists", kind.kind, key.2, key.3)));
            }
            w.kube_objects.insert(key, body.clone());
            Ok(())
        })
    }

    async fn replace_object(
        &self,
        address: &str,
        kind: &crate::infra::ApiKind,
        body: &serde_json::Value,
    ) -> Result<(), crate::infra::KubeError> {
        self.with(|w| {
            let err = |reason: String| crate::infra::KubeError::Api {
                address: address.into(),
                reason,
            };
            let key = World::body_key(kind, body).map_err(err)?;
            w.kube_act(
                address,
                format!("{address}: kube update {} {}/{}", kind.kind, key.2, key.3),
            )?;
            if !w.kube_objects.contains_key(&key) {
                return Err(err(format!("{} {}/{} not found", kind.kind, key.2, key.3)));
            }
            w.kube_objects.insert(key, body.clone());
            Ok(())
        })
    }

    async fn apply_object(
        &self,
        address: &str,
        kind: &crate::infra::ApiKind,
        body: &serde_json::Value,
    ) -> Result<crate::infra::Applied, crate::infra::KubeError> {
        self.with(|w| {
            let key = World::body_key(kind, body).map_err(|reason| crate::infra::KubeError::Api {
                address: address.into(),
                reason,
            })?;
            w.kube_act(
                address,
                format!("{address}: kube apply {} {}/{}", kind.kind, key.2, key.3),
            )?;
            if w.find_kind(&kind.api_version, &kind.kind).is_none() {
                return Ok(crate::infra::Applied::NotServed);
            }
            let mut obj = body.clone();
            obj["metadata"]["managedFields"] = serde_json::json!([{"manager": "cke", "operation": "Apply"}]);
            w.kube_objects.insert(key, obj);
            Ok(crate::infra::Applied::Applied)
        })
    }

    async fn find_kind(
        &self,
        address: &str,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<crate::infra::ApiKind>, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube discover {api_version} {kind}"))?;
            Ok(w.find_kind(api_version, kind))
        })
    }

    async fn pods_on_node(
        &self,
        address: &str,
        node: &str,
    ) -> Result<Vec<crate::infra::KubePod>, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube list pods on {node}"))?;
            Ok(w.pods.values().filter(|p| p.node_name == node).cloned().collect())
        })
    }

    async fn namespaces(&self, address: &str, label_selector: &str) -> Result<Vec<String>, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube list namespaces {label_selector:?}"))?;
            let mut all: BTreeMap<String, BTreeMap<String, String>> = w.namespaces.clone();
            for (ns, _) in w.pods.keys() {
                all.entry(ns.clone()).or_default();
            }
            Ok(all
                .into_iter()
                .filter(|(_, labels)| selector_matches(label_selector, labels))
                .map(|(n, _)| n)
                .collect())
        })
    }

    async fn evict_pod(
        &self,
        address: &str,
        policy_api: &str,
        namespace: &str,
        name: &str,
        dry_run: bool,
    ) -> Result<crate::infra::Eviction, crate::infra::KubeError> {
        self.with(|w| {
            let dry = if dry_run { " (dry run)" } else { "" };
            w.kube_act(
                address,
                format!("{address}: kube evict {namespace}/{name} {policy_api}{dry}"),
            )?;
            let key = (namespace.to_string(), name.to_string());
            if !w.pods.contains_key(&key) {
                return Ok(crate::infra::Eviction::NotFound);
            }
            if let Some(n) = w.eviction_refusals.get_mut(&key) {
                if *n > 0 {
                    *n = n.saturating_sub(u32::from(!dry_run));
                    return Ok(crate::infra::Eviction::TooManyRequests(
                        "Cannot evict pod as it would violate the pod's disruption budget.".into(),
                    ));
                }
            }
            if !dry_run {
                w.pods.remove(&key);
            }
            Ok(crate::infra::Eviction::Evicted)
        })
    }

    async fn delete_pod(&self, address: &str, namespace: &str, name: &str) -> Result<bool, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube delete pod {namespace}/{name}"))?;
            Ok(w.pods.remove(&(namespace.to_string(), name.to_string())).is_some())
        })
    }

    async fn on_delete_daemonset_pods(
        &self,
        address: &str,
        node: &str,
    ) -> Result<Vec<crate::infra::KubePod>, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(
                address,
                format!("{address}: kube list on-delete daemonset pods on {node}"),
            )?;
            Ok(w.pods
                .values()
                .filter(|p| {
                    p.node_name == node
                        && p.controller_kind.as_deref() == Some("DaemonSet")
                        && p.controller_name
                            .as_ref()
                            .is_some_and(|ds| w.on_delete_daemonsets.contains(&(p.namespace.clone(), ds.clone())))
                })
                .cloned()
                .collect())
        })
    }

    async fn set_reboot_cordon(
        &self,
        address: &str,
        name: &str,
        cordon: bool,
    ) -> Result<crate::infra::NodeUpdate, crate::infra::KubeError> {
        self.with(|w| {
            let verb = if cordon { "cordon" } else { "uncordon" };
            w.kube_act(address, format!("{address}: kube {verb} {name}"))?;
            let Some(node) = w.kube_nodes.get_mut(name) else {
                return Ok(crate::infra::NodeUpdate::Missing);
            };
            node.unschedulable = cordon;
            if cordon {
                node.annotations
                    .insert(crate::infra::ANNOTATION_REBOOT.into(), "true".into());
            } else {
                node.annotations.remove(crate::infra::ANNOTATION_REBOOT);
            }
            Ok(crate::infra::NodeUpdate::Updated)
        })
    }

    async fn volumes_in_use(&self, address: &str, name: &str) -> Result<Option<Vec<String>>, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube volumes in use {name}"))?;
            Ok(w.kube_nodes
                .contains_key(name)
                .then(|| w.volumes_in_use.get(name).cloned().unwrap_or_default()))
        })
    }

    async fn remove_node(
        &self,
        address: &str,
        name: &str,
    ) -> Result<crate::infra::NodeRemoval, crate::infra::KubeError> {
        self.with(|w| {
            w.kube_act(address, format!("{address}: kube remove node {name}"))?;
            Ok(match w.kube_nodes.remove(name) {
                Some(_) => crate::infra::NodeRemoval::Deleted,
                None => crate::infra::NodeRemoval::Missing,
            })
        })
    }
}

#[async_trait]
impl crate::infra::Health for Fake {
    /// Healthy when the container behind the port runs on the node of the URL.
    async fn healthz(&self, url: &str, _ca: Option<&str>) -> bool {
        let rest = url.split("://").nth(1).unwrap_or(url);
        let hostport = rest.split('/').next().unwrap_or(rest);
        let Some((host, port)) = hostport.rsplit_once(':') else {
            return false;
        };
        let container = match port.parse::<u16>() {
            Ok(KUBELET_HEALTHZ_PORT) => KUBELET_CONTAINER,
            Ok(KUBE_PROXY_METRICS_PORT) => KUBE_PROXY_CONTAINER,
            Ok(KUBE_CONTROLLER_MANAGER_PORT) => KUBE_CONTROLLER_MANAGER_CONTAINER,
            Ok(KUBE_SCHEDULER_PORT) => KUBE_SCHEDULER_CONTAINER,
            _ => return false,
        };
        self.with(|w| !w.unreachable.contains(host) && w.running(host, container))
    }
}

#[async_trait]
impl crate::infra::HostCommands for Fake {
    /// Logs `host: <command line>` (and its timeout in `host_timeouts`) when it starts; answers by
    /// [`Fake::on_host_command`], after [`Fake::host_command_takes`].
    async fn run(&self, argv: &[String], timeout: Option<Duration>) -> Result<String, crate::infra::HostCommandError> {
        use crate::infra::HostCommandError;
        if argv.is_empty() {
            return Err(HostCommandError::Empty);
        }
        let command = argv.join(" ");
        let (answer, takes) = self.with(|w| {
            let failed = |stderr: String| HostCommandError::Failed {
                command: command.clone(),
                status: "exit status 1".into(),
                stdout: String::new(),
                stderr,
            };
            w.host_timeouts.push((command.clone(), timeout));
            let takes = w
                .host_durations
                .iter()
                .find(|(p, _)| command.contains(p.as_str()))
                .map(|(_, d)| *d);
            let answer = w.act(format!("host: {command}")).map_err(failed).and_then(|()| {
                match w.host_answers.iter().find(|(p, _)| command.contains(p.as_str())) {
                    Some((_, Ok(out))) => Ok(out.clone()),
                    Some((_, Err(e))) => Err(failed(e.clone())),
                    None => Ok(String::new()),
                }
            });
            (answer, takes)
        });
        match (takes, timeout) {
            (Some(takes), Some(t)) if t < takes => {
                tokio::time::sleep(t).await;
                Err(HostCommandError::TimedOut {
                    command,
                    timeout: t,
                    stdout: String::new(),
                    stderr: String::new(),
                })
            }
            (Some(takes), _) => {
                tokio::time::sleep(takes).await;
                answer
            }
            (None, _) => answer,
        }
    }
}
