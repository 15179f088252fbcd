//! CKE's `k8s-maintain` phase (`server/strategy.go` k8sMaintOps): the Kubernetes objects cke keeps
//! right through the API once the components run, and the `kubernetes` endpoints that `k8s-start`
//! updates around apiserver restarts (masterEndpointOps). Pure.
//!
//! Nothing is planned unless the API was read this pass and some control plane's apiserver is
//! healthy: the first such control plane, in declaration order (CKE's `HealthyAPIServer`), is the
//! one every operation talks to. Then, in CKE's order:
//!
//! 0. `wait-kubernetes`, alone, until the ServiceAccount `kube-system/default` exists;
//! 1. `resource-apply` of each static, then each user resource that is absent or at another
//!    revision (Deployments once most nodes are Ready);
//! 2. the `cluster-dns` ConfigMap (CoreDNS's Corefile), then, once the `cluster-dns` Service has a
//!    ClusterIP, the `node-dns` ConfigMap (unbound's configuration);
//! 3. the etcd Service, Endpoints and EndpointSlice `kube-system/cke-etcd` (every control plane);
//! 4. `update-node` for declared nodes whose `Node` (matched by name: the node's `hostname`, else its
//!    address) has outdated labels, annotations or taints by the rule of [`crate::k8s::node`];
//!    declared nodes without a Node are skipped (their kubelet registers them);
//! 5. `remove-node` for Nodes no declared node accounts for.

use crate::k8s::dns;
use crate::k8s::endpoints::{self, EndpointParams};
use crate::k8s::node::is_outdated;
use crate::model::{CkeObject, EndpointSliceView, EndpointsView, OpKind, PlannedOp, ResourceDefinition};

use super::{NodeFilter, REASON_EXAMPLES};

/// The `k8s-maintain` operations, in CKE's order; empty when there is nothing to do.
pub(super) fn k8s_maintain_ops(nf: &NodeFilter) -> Vec<PlannedOp> {
    let cluster = nf.cluster();
    let k = &nf.status().kubernetes;
    let Some(apiserver) = healthy_apiserver(nf) else {
        return vec![];
    };
    if !k.control_plane_ready {
        return vec![PlannedOp::new(
            OpKind::WaitKubernetes { apiserver },
            "the control plane is not ready: ServiceAccount kube-system/default does not exist yet",
        )];
    }
    let mut ops = resource_ops(nf, &apiserver);
    ops.extend(cluster_dns_ops(nf, &apiserver));
    ops.extend(node_dns_ops(nf, &apiserver));
    ops.extend(etcd_endpoint_ops(nf, &apiserver));
    let outdated: Vec<(&crate::model::Node, &crate::model::KubeNode)> = cluster
        .nodes
        .iter()
        .filter_map(|n| {
            k.nodes
                .iter()
                .find(|kn| kn.name == n.nodename())
                .filter(|kn| is_outdated(n, kn, cluster.taint_control_plane))
                .map(|kn| (n, kn))
        })
        .collect();
    if !outdated.is_empty() {
        let reason = node_changes_reason(&outdated, cluster.taint_control_plane);
        let outdated = outdated.iter().map(|(n, _)| n.address.clone()).collect();
        ops.push(PlannedOp::new(
            OpKind::UpdateNode {
                apiserver: apiserver.clone(),
                nodes: outdated,
            },
            reason,
        ));
    }
    let strays = non_cluster_nodes(nf);
    if !strays.is_empty() {
        let reason = format!(
            "Nodes {} belong to no declared node: cordon and delete them",
            crate::model::few(&strays, REASON_EXAMPLES)
        );
        ops.push(PlannedOp::new(
            OpKind::RemoveNode {
                apiserver: apiserver.clone(),
                nodes: strays,
            },
            reason,
        ));
    }
    ops
}

/// The reason of an `update-node`: what it writes on each Node (the first [`DETAILED_NODES`] of
/// them; the rest are counted).
fn node_changes_reason(
    outdated: &[(&crate::model::Node, &crate::model::KubeNode)],
    taint_control_plane: bool,
) -> String {
    let mut parts: Vec<String> = outdated
        .iter()
        .take(DETAILED_NODES)
        .map(|(n, kn)| {
            format!(
                "Node {}: {}",
                kn.name,
                crate::k8s::node::changes(n, kn, taint_control_plane).join(", ")
            )
        })
        .collect();
    if outdated.len() > DETAILED_NODES {
        parts.push(format!("and {} more Nodes", outdated.len() - DETAILED_NODES));
    }
    format!(
        "labels, annotations or taints differ from the declaration: {}",
        parts.join("; ")
    )
}

/// How many Nodes an `update-node` reason details.
const DETAILED_NODES: usize = 10;

/// cke's own static resources (CKE's nine, [`crate::k8s::static_resources`]) for the declared
/// images and Kubernetes version, as definitions, in CKE's order.
pub fn static_definitions(inputs: &super::PlanInputs) -> Vec<ResourceDefinition> {
    let version = crate::k8s::VersionSet::for_image(&inputs.images.kubernetes)
        .map(|r| r.set)
        .unwrap_or(crate::k8s::VersionSet::latest());
    crate::k8s::static_resources::static_resources(&inputs.images, version)
        .into_iter()
        .map(|r| ResourceDefinition {
            key: r.key,
            kind: r.kind,
            api_version: r.api_version,
            namespace: r.namespace,
            name: r.name,
            revision: r.revision,
            image: r.image,
            definition: serde_json::to_vec(&r.object).unwrap_or_default(),
        })
        .collect()
}

/// Every resource `resource-apply` may act on: the static ones, then the user ones.
pub fn all_resources(inputs: &super::PlanInputs) -> Vec<ResourceDefinition> {
    let mut all = static_definitions(inputs);
    all.extend(inputs.resources.iter().cloned());
    all
}

/// CKE's decideResourceOps: every static resource, then every user resource (in CKE's kind order),
/// that is absent or carries another revision (or, for the static ones, another image annotation);
/// Deployments only once more than half of the declared nodes are Ready (no thundering herd of pods
/// onto the first nodes).
fn resource_ops(nf: &NodeFilter, apiserver: &str) -> Vec<PlannedOp> {
    let k = &nf.status().kubernetes;
    let ready = k.is_ready(nf.cluster());
    let mut ops = Vec::new();
    let statics = static_definitions(nf.inputs());
    let mut users = nf.inputs().resources.clone();
    crate::model::sort_resources(&mut users);
    for (builtin, list) in [(true, statics), (false, users)] {
        for def in list {
            if def.kind == crate::model::resource::KIND_DEPLOYMENT && !ready {
                continue;
            }
            let status = k.resources.get(&def.key);
            if !def.needs_update(status) {
                continue;
            }
            let why = match status {
                None => "does not exist".to_string(),
                Some(s) => {
                    let annotation = |key: &str| s.annotations.get(key).map_or("none", String::as_str);
                    let revision = annotation(crate::model::resource::ANNOTATION_RESOURCE_REVISION);
                    if revision != def.revision.to_string() {
                        format!("is at revision {revision}, not {}", def.revision)
                    } else {
                        format!(
                            "has images {}, not {}",
                            annotation(crate::model::resource::ANNOTATION_RESOURCE_IMAGE),
                            def.image.as_deref().unwrap_or("none")
                        )
                    }
                }
            };
            let what = if builtin { "static resource" } else { "resource" };
            ops.push(PlannedOp::new(
                OpKind::ResourceApply {
                    apiserver: apiserver.into(),
                    key: def.key.clone(),
                    revision: def.revision,
                    builtin,
                },
                format!("{what} {} {why}", def.key),
            ));
        }
    }
    ops
}

/// CKE's decideClusterDNSOps: the ConfigMap `kube-system/cluster-dns` with the Corefile rendered
/// from the cluster domain and the upstreams ([`dns::dns_upstreams`]); created when absent, replaced
/// when its `Corefile` differs.
fn cluster_dns_ops(nf: &NodeFilter, apiserver: &str) -> Vec<PlannedOp> {
    let cluster = nf.cluster();
    let k = &nf.status().kubernetes;
    let domain = dns::cluster_domain(cluster);
    let upstreams = dns::dns_upstreams(cluster, k.dns_service_ip.as_deref());
    let body = dns::cluster_dns_configmap(&domain, &upstreams);
    let create = match &k.cluster_dns_config {
        None => true,
        Some(data)
            if data.get(dns::COREFILE_KEY) != body["data"][dns::COREFILE_KEY].as_str().map(str::to_string).as_ref() =>
        {
            false
        }
        Some(_) => return vec![],
    };
    let reason = format!(
        "ConfigMap kube-system/cluster-dns {} (domain {domain}, upstreams {})",
        if create { "is missing" } else { "has another Corefile" },
        list_or_none(&upstreams)
    );
    vec![PlannedOp::new(
        OpKind::KubeObject {
            apiserver: apiserver.into(),
            object: CkeObject::ClusterDnsConfigMap,
            create,
            body,
        },
        reason,
    )]
}

/// CKE's decideNodeDNSOps: once the Service `kube-system/cluster-dns` has a ClusterIP, the
/// ConfigMap `kube-system/node-dns` with unbound's configuration (the cluster domain to that IP,
/// the rest to the upstreams); created when absent, replaced when its `unbound.conf` differs.
fn node_dns_ops(nf: &NodeFilter, apiserver: &str) -> Vec<PlannedOp> {
    let cluster = nf.cluster();
    let k = &nf.status().kubernetes;
    let Some(cluster_ip) = dns::node_dns_cluster_ip(Some(k.cluster_dns_ip.as_str())) else {
        return vec![];
    };
    let domain = dns::cluster_domain(cluster);
    let upstreams = dns::dns_upstreams(cluster, k.dns_service_ip.as_deref());
    let body = dns::node_dns_configmap(&domain, cluster_ip, &upstreams);
    let want = body["data"][dns::UNBOUND_CONF_KEY].as_str().map(str::to_string);
    let create = match &k.node_dns_config {
        None => true,
        Some(data) if data.get(dns::UNBOUND_CONF_KEY) != want.as_ref() => false,
        Some(_) => return vec![],
    };
    let reason = format!(
        "ConfigMap kube-system/node-dns {} (domain {domain} to {cluster_ip}, upstreams {})",
        if create {
            "is missing"
        } else {
            "has another unbound.conf"
        },
        list_or_none(&upstreams)
    );
    vec![PlannedOp::new(
        OpKind::KubeObject {
            apiserver: apiserver.into(),
            object: CkeObject::NodeDnsConfigMap,
            create,
            body,
        },
        reason,
    )]
}

/// The first control plane whose apiserver is healthy, when the API was read (CKE's
/// `HealthyAPIServer`).
pub(super) fn healthy_apiserver(nf: &NodeFilter) -> Option<String> {
    if !nf.status().kubernetes.api_read {
        return None;
    }
    nf.cluster()
        .control_planes()
        .find(|n| nf.node_status(n).kube_apiserver.is_healthy)
        .map(|n| n.address.clone())
}

/// Names of `Node` objects that no declared node accounts for (CKE's NonClusterNodes: a name is a
/// declared node's `hostname`, or else taken as an address).
fn non_cluster_nodes(nf: &NodeFilter) -> Vec<String> {
    let cluster = nf.cluster();
    nf.status()
        .kubernetes
        .nodes
        .iter()
        .filter(|kn| {
            let address = cluster
                .nodes
                .iter()
                .find(|n| !n.hostname.is_empty() && n.hostname == kn.name)
                .map_or(kn.name.as_str(), |n| n.address.as_str());
            cluster.node(address).is_none()
        })
        .map(|kn| kn.name.clone())
        .collect()
}

/// The EndpointSlice API version of the declared Kubernetes (1.20: `discovery.k8s.io/v1beta1`).
fn slice_api(nf: &NodeFilter) -> &'static str {
    nf.kube_version()
        .map(|v| v.endpoint_slice_api)
        .unwrap_or(crate::k8s::VersionSet::latest().endpoint_slice_api)
}

/// The create or update operations that bring the Endpoints and EndpointSlice of `p` in line
/// (CKE's decideEpEpsOps), through `apiserver`.
fn endpoint_pair_ops(
    nf: &NodeFilter,
    apiserver: &str,
    p: &EndpointParams,
    objects: (CkeObject, CkeObject),
    actual: (Option<&EndpointsView>, Option<&EndpointSliceView>),
) -> Vec<PlannedOp> {
    let describe = || {
        format!(
            "ready {}; not ready {}",
            list_or_none(&p.ready),
            list_or_none(&p.not_ready)
        )
    };
    let mut ops = Vec::new();
    let ep = match actual.0 {
        None => Some(true),
        Some(a) => endpoints::endpoints_outdated(p, a).then_some(false),
    };
    if let Some(create) = ep {
        let what = if create { "is missing" } else { "differs" };
        ops.push(PlannedOp::new(
            OpKind::KubeObject {
                apiserver: apiserver.into(),
                object: objects.0,
                create,
                body: endpoints::endpoints_body(p),
            },
            format!("Endpoints {}/{} {what}: {}", p.namespace, p.name, describe()),
        ));
    }
    let eps = match actual.1 {
        None => Some(true),
        Some(a) => endpoints::endpoint_slice_outdated(p, a).then_some(false),
    };
    if let Some(create) = eps {
        let what = if create { "is missing" } else { "differs" };
        ops.push(PlannedOp::new(
            OpKind::KubeObject {
                apiserver: apiserver.into(),
                object: objects.1,
                create,
                body: endpoints::endpoint_slice_body(p, slice_api(nf)),
            },
            format!("EndpointSlice {}/{} {what}: {}", p.namespace, p.name, describe()),
        ));
    }
    ops
}

fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// CKE's masterEndpointOps: the `default/kubernetes` Endpoints and EndpointSlice list the control
/// planes, those with a healthy apiserver ready unless in `not_ready` (about to be restarted or
/// rebooted) or being rebooted, the rest not ready. Empty when the API was not read or no apiserver
/// is healthy.
pub(super) fn master_endpoint_ops(nf: &NodeFilter, not_ready: &[String]) -> Vec<PlannedOp> {
    let Some(apiserver) = healthy_apiserver(nf) else {
        return vec![];
    };
    let (mut ready, mut unready) = (Vec::new(), Vec::new());
    for n in nf.cluster().control_planes() {
        if nf.node_status(n).kube_apiserver.is_healthy
            && !not_ready.contains(&n.address)
            && !super::reboot::reboot_processing(nf, &n.address)
        {
            ready.push(n.address.clone());
        } else {
            unready.push(n.address.clone());
        }
    }
    // CKE lists the healthy ones (ready or marked) first, then the unhealthy ones; the order of the
    // not-ready list does not matter to the comparison.
    let p = EndpointParams::kubernetes(ready, unready);
    let k = &nf.status().kubernetes;
    endpoint_pair_ops(
        nf,
        &apiserver,
        &p,
        (CkeObject::KubernetesEndpoints, CkeObject::KubernetesEndpointSlice),
        (k.master_endpoints.as_ref(), k.master_endpoint_slice.as_ref()),
    )
}

/// CKE's etcdEndpointOps: the headless Service `kube-system/cke-etcd` (an Endpoints without its
/// Service would be removed by Kubernetes), then its Endpoints and EndpointSlice listing every
/// control plane, ready but those being rebooted or next to be.
fn etcd_endpoint_ops(nf: &NodeFilter, apiserver: &str) -> Vec<PlannedOp> {
    let k = &nf.status().kubernetes;
    let mut ops = Vec::new();
    let svc = match &k.etcd_service {
        None => Some(true),
        Some(s) => endpoints::etcd_service_outdated(s).then_some(false),
    };
    if let Some(create) = svc {
        let what = if create { "is missing" } else { "differs" };
        ops.push(PlannedOp::new(
            OpKind::KubeObject {
                apiserver: apiserver.into(),
                object: CkeObject::EtcdService,
                create,
                body: endpoints::etcd_service_body(),
            },
            format!("Service kube-system/cke-etcd {what} (headless, port 2379)"),
        ));
    }
    let not_ready = super::reboot::not_ready_control_planes(nf);
    let (unready, ready) = nf
        .control_plane_addresses()
        .into_iter()
        .partition(|a| not_ready.contains(a));
    let p = EndpointParams::etcd(ready, unready);
    ops.extend(endpoint_pair_ops(
        nf,
        apiserver,
        &p,
        (CkeObject::EtcdEndpoints, CkeObject::EtcdEndpointSlice),
        (k.etcd_endpoints.as_ref(), k.etcd_endpoint_slice.as_ref()),
    ));
    ops
}

/// The objects cke keeps as it last wrote them for `status` (for tests and previews of a
/// converged cluster): the control plane ready, `default/kubernetes` listing the control planes
/// with a healthy apiserver ready and the rest not ready, the etcd Service and endpoints with every
/// control plane, the `cluster-dns` ConfigMap (and the `node-dns` one when the `cluster-dns`
/// Service has a ClusterIP), every static and user resource at its revision.
pub fn as_kept(cluster: &crate::model::Cluster, inputs: &super::PlanInputs, status: &mut crate::model::ClusterStatus) {
    let slice_api = crate::k8s::VersionSet::for_image(&inputs.images.kubernetes)
        .map(|r| r.set.endpoint_slice_api)
        .unwrap_or(crate::k8s::VersionSet::latest().endpoint_slice_api);
    let (mut ready, mut not_ready) = (vec![], vec![]);
    for n in cluster.control_planes() {
        if status
            .nodes
            .get(&n.address)
            .is_some_and(|s| s.kube_apiserver.is_healthy)
        {
            ready.push(n.address.clone());
        } else {
            not_ready.push(n.address.clone());
        }
    }
    let master = EndpointParams::kubernetes(ready, not_ready);
    let etcd = EndpointParams::etcd(cluster.control_planes().map(|n| n.address.clone()).collect(), vec![]);
    let k = &mut status.kubernetes;
    k.control_plane_ready = true;
    k.master_endpoints = Some(endpoints::endpoints_view(&endpoints::endpoints_body(&master)));
    k.master_endpoint_slice = Some(endpoints::endpoint_slice_view(&endpoints::endpoint_slice_body(
        &master, slice_api,
    )));
    k.etcd_service = Some(endpoints::service_view(&endpoints::etcd_service_body()));
    k.etcd_endpoints = Some(endpoints::endpoints_view(&endpoints::endpoints_body(&etcd)));
    k.etcd_endpoint_slice = Some(endpoints::endpoint_slice_view(&endpoints::endpoint_slice_body(
        &etcd, slice_api,
    )));
    let domain = dns::cluster_domain(cluster);
    let upstreams = dns::dns_upstreams(cluster, k.dns_service_ip.as_deref());
    let corefile = dns::cluster_dns_corefile(&domain, &upstreams);
    k.cluster_dns_config = Some([(dns::COREFILE_KEY.to_string(), corefile)].into());
    k.node_dns_config = dns::node_dns_cluster_ip(Some(k.cluster_dns_ip.as_str())).map(|ip| {
        let conf = dns::node_dns_unbound_conf(&domain, ip, &upstreams);
        [(dns::UNBOUND_CONF_KEY.to_string(), conf)].into()
    });
    k.resources = all_resources(inputs)
        .iter()
        .map(|d| {
            let mut annotations = std::collections::BTreeMap::new();
            annotations.insert(
                crate::model::resource::ANNOTATION_RESOURCE_REVISION.to_string(),
                d.revision.to_string(),
            );
            if let Some(image) = &d.image {
                annotations.insert(
                    crate::model::resource::ANNOTATION_RESOURCE_IMAGE.to_string(),
                    image.clone(),
                );
            }
            (
                d.key.clone(),
                crate::model::ResourceStatus {
                    annotations,
                    has_been_ssa: true,
                },
            )
        })
        .collect();
}
