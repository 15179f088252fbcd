//! The Endpoints, EndpointSlices and Service cke keeps itself (CKE's `server/strategy.go`
//! decideEpEpsOps, decideEtcdServiceOps; `op/kube_endpoints.go`, `op/kube_endpointslice.go`,
//! `op/kube_etcd_service.go`). Pure: the bodies cke sends, CKE's rules for when the objects on
//! the server are outdated, and the views the probe reads back ([`crate::model::EndpointsView`]...).
//!
//! - `default/kubernetes`: the apiservers run with `--endpoint-reconciler-type=none`, so cke lists
//!   the control planes itself: healthy apiservers ready (unless being rebooted or about to be
//!   restarted), the others not ready, port `https` 6443. The Endpoints carry
//!   `endpointslice.kubernetes.io/skip-mirror=true` so that the controller-manager does not mirror
//!   them into a slice of its own; cke writes the EndpointSlice too.
//! - `kube-system/cke-etcd`: every control plane (not ready while being rebooted), port 2379, and
//!   the headless Service an Endpoints needs to be kept by Kubernetes.

use serde_json::{json, Value};

use crate::model::{EndpointSliceView, EndpointSubsetView, EndpointsView, PortView, ServiceView, SliceEndpointView};
use crate::topology::{API_SERVER_PORT, ETCD_CLIENT_PORT};

/// Name of the etcd Service, Endpoints and EndpointSlice (CKE's `EtcdServiceName`).
pub const ETCD_SERVICE_NAME: &str = "cke-etcd";
/// Label that keeps the controller-manager from mirroring an Endpoints into an EndpointSlice.
pub const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
/// Label naming who manages an EndpointSlice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`] on cke's slices.
pub const MANAGED_BY_CKE: &str = "cke.cybozu.com";
/// Label naming the Service of an EndpointSlice.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What an Endpoints/EndpointSlice pair should list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointParams {
    /// Namespace of both objects.
    pub namespace: &'static str,
    /// Name of both objects.
    pub name: &'static str,
    /// Ready IPs, in the given order.
    pub ready: Vec<String>,
    /// Not-ready IPs, in the given order.
    pub not_ready: Vec<String>,
    /// The port.
    pub port: i32,
    /// The port's name (empty for none).
    pub port_name: &'static str,
    /// The Service the slice belongs to.
    pub service_name: &'static str,
}

impl EndpointParams {
    /// `default/kubernetes`: the apiservers.
    pub fn kubernetes(ready: Vec<String>, not_ready: Vec<String>) -> Self {
        EndpointParams {
            namespace: "default",
            name: "kubernetes",
            ready,
            not_ready,
            port: i32::from(API_SERVER_PORT),
            port_name: "https",
            service_name: "kubernetes",
        }
    }

    /// `kube-system/cke-etcd`: the managed etcd's members.
    pub fn etcd(ready: Vec<String>, not_ready: Vec<String>) -> Self {
        EndpointParams {
            namespace: "kube-system",
            name: ETCD_SERVICE_NAME,
            ready,
            not_ready,
            port: i32::from(ETCD_CLIENT_PORT),
            port_name: "",
            service_name: ETCD_SERVICE_NAME,
        }
    }

    /// The slice's endpoints: every IP once, sorted, with its readiness (an IP both ready and not
    /// ready is not ready, as CKE's map decides).
    fn slice_endpoints(&self) -> Vec<(String, bool)> {
        let mut ips: Vec<String> = self.ready.iter().chain(&self.not_ready).cloned().collect();
        ips.sort();
        ips.dedup();
        ips.into_iter()
            .map(|ip| {
                let ready = !self.not_ready.contains(&ip);
                (ip, ready)
            })
            .collect()
    }
}

fn addresses(ips: &[String]) -> Vec<Value> {
    ips.iter().map(|ip| json!({ "ip": ip })).collect()
}

fn port_json(name: &str, port: i32) -> Value {
    if name.is_empty() {
        json!({ "port": port })
    } else {
        json!({ "name": name, "port": port })
    }
}

/// The Endpoints object cke sends (create, or replace without a `resourceVersion`, as CKE).
pub fn endpoints_body(p: &EndpointParams) -> Value {
    let mut subset = json!({ "ports": [port_json(p.port_name, p.port)] });
    if !p.ready.is_empty() {
        subset["addresses"] = Value::Array(addresses(&p.ready));
    }
    if !p.not_ready.is_empty() {
        subset["notReadyAddresses"] = Value::Array(addresses(&p.not_ready));
    }
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "namespace": p.namespace,
            "name": p.name,
            "labels": { SKIP_MIRROR_LABEL: "true" },
        },
        "subsets": [subset],
    })
}

/// The EndpointSlice object cke sends, as `api_version` (`discovery.k8s.io/v1beta1` on 1.20, `v1`
/// later: the fields cke sets are the same in both).
pub fn endpoint_slice_body(p: &EndpointParams, api_version: &str) -> Value {
    let endpoints: Vec<Value> = p
        .slice_endpoints()
        .into_iter()
        .map(|(ip, ready)| json!({ "addresses": [ip], "conditions": { "ready": ready } }))
        .collect();
    json!({
        "apiVersion": api_version,
        "kind": "EndpointSlice",
        "metadata": {
            "namespace": p.namespace,
            "name": p.name,
            "labels": { MANAGED_BY_LABEL: MANAGED_BY_CKE, SERVICE_NAME_LABEL: p.service_name },
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{ "name": p.port_name, "port": p.port }],
    })
}

/// CKE's decideEpOp: the Endpoints on the server differ from `p` (a label, not exactly one
/// subset, its port, or the sets of ready and not-ready IPs).
pub fn endpoints_outdated(p: &EndpointParams, actual: &EndpointsView) -> bool {
    let labels_differ = actual.labels.get(SKIP_MIRROR_LABEL).map(String::as_str) != Some("true");
    let [subset] = actual.subsets.as_slice() else {
        return true;
    };
    labels_differ
        || subset.ports.len() != 1
        || subset.ports[0].port != p.port
        || !same_set(&subset.addresses, &p.ready)
        || !same_set(&subset.not_ready_addresses, &p.not_ready)
}

/// The same IPs, as CKE compares them (lengths equal and every actual IP expected).
fn same_set(actual: &[String], expected: &[String]) -> bool {
    actual.len() == expected.len() && actual.iter().all(|a| expected.contains(a))
}

/// CKE's decideEpsOp: the EndpointSlice on the server differs from `p` (labels, address type,
/// the endpoints element by element with their readiness, the one port's name and number).
pub fn endpoint_slice_outdated(p: &EndpointParams, actual: &EndpointSliceView) -> bool {
    let label = |k: &str| actual.labels.get(k).map(String::as_str);
    if label(MANAGED_BY_LABEL) != Some(MANAGED_BY_CKE) || label(SERVICE_NAME_LABEL) != Some(p.service_name) {
        return true;
    }
    if actual.address_type != "IPv4" {
        return true;
    }
    let expected = p.slice_endpoints();
    if actual.endpoints.len() != expected.len() {
        return true;
    }
    for (a, (ip, ready)) in actual.endpoints.iter().zip(&expected) {
        if a.ready != Some(*ready) || a.addresses.len() != 1 || a.addresses[0] != *ip {
            return true;
        }
    }
    !matches!(actual.ports.as_slice(), [port] if port.name == p.port_name && port.port == p.port)
}

/// The headless Service `kube-system/cke-etcd` (port 2379).
pub fn etcd_service_body() -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": { "namespace": "kube-system", "name": ETCD_SERVICE_NAME },
        "spec": {
            "ports": [{ "port": i32::from(ETCD_CLIENT_PORT) }],
            "type": "ClusterIP",
            "clusterIP": "None",
        },
    })
}

/// CKE's decideEtcdServiceOps: one port 2379, type ClusterIP, headless.
pub fn etcd_service_outdated(actual: &ServiceView) -> bool {
    !matches!(actual.ports.as_slice(), [p] if p.port == i32::from(ETCD_CLIENT_PORT))
        || actual.service_type != "ClusterIP"
        || actual.cluster_ip != "None"
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn labels(obj: &Value) -> std::collections::BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn ports(v: Option<&Value>) -> Vec<PortView> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|p| PortView {
                    name: p["name"].as_str().unwrap_or_default().to_string(),
                    port: p["port"].as_i64().and_then(|n| i32::try_from(n).ok()).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn ips(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|e| e["ip"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// What cke compares of an Endpoints object read from the server.
pub fn endpoints_view(obj: &Value) -> EndpointsView {
    let subsets = obj["subsets"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|s| EndpointSubsetView {
                    addresses: ips(&s["addresses"]),
                    not_ready_addresses: ips(&s["notReadyAddresses"]),
                    ports: ports(s.get("ports")),
                })
                .collect()
        })
        .unwrap_or_default();
    EndpointsView {
        labels: labels(obj),
        subsets,
    }
}

/// What cke compares of an EndpointSlice read from the server (either API version).
pub fn endpoint_slice_view(obj: &Value) -> EndpointSliceView {
    let endpoints = obj["endpoints"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| SliceEndpointView {
                    addresses: strings(&e["addresses"]),
                    ready: e.pointer("/conditions/ready").and_then(Value::as_bool),
                })
                .collect()
        })
        .unwrap_or_default();
    EndpointSliceView {
        labels: labels(obj),
        address_type: obj["addressType"].as_str().unwrap_or_default().to_string(),
        endpoints,
        ports: ports(obj.get("ports")),
    }
}

/// What cke compares of a Service read from the server.
pub fn service_view(obj: &Value) -> ServiceView {
    ServiceView {
        service_type: obj
            .pointer("/spec/type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        cluster_ip: obj
            .pointer("/spec/clusterIP")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ports: ports(obj.pointer("/spec/ports")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn bodies_read_back_as_current() {
        let p = EndpointParams::kubernetes(s(&["10.0.0.3", "10.0.0.1"]), s(&["10.0.0.2"]));
        let ep = endpoints_view(&endpoints_body(&p));
        assert!(!endpoints_outdated(&p, &ep), "{ep:?}");
        assert_eq!(
            ep.subsets[0].ports,
            vec![PortView {
                name: "https".into(),
                port: 6443
            }]
        );
        let slice_body = endpoint_slice_body(&p, "discovery.k8s.io/v1beta1");
        assert_eq!(slice_body["apiVersion"], "discovery.k8s.io/v1beta1");
        let slice = endpoint_slice_view(&slice_body);
        assert!(!endpoint_slice_outdated(&p, &slice), "{slice:?}");
        let order: Vec<_> = slice
            .endpoints
            .iter()
            .map(|e| (e.addresses[0].as_str(), e.ready))
            .collect();
        assert_eq!(
            order,
            [
                ("10.0.0.1", Some(true)),
                ("10.0.0.2", Some(false)),
                ("10.0.0.3", Some(true))
            ],
            "sorted, with readiness"
        );
        let e = EndpointParams::etcd(s(&["10.0.0.1"]), vec![]);
        assert!(!endpoints_outdated(&e, &endpoints_view(&endpoints_body(&e))));
        assert!(!endpoint_slice_outdated(
            &e,
            &endpoint_slice_view(&endpoint_slice_body(&e, "discovery.k8s.io/v1"))
        ));
        assert!(!etcd_service_outdated(&service_view(&etcd_service_body())));
    }

    #[test]
    fn endpoints_differences_are_outdated() {
        let p = EndpointParams::kubernetes(s(&["10.0.0.1", "10.0.0.2"]), s(&["10.0.0.3"]));
        let current = endpoints_view(&endpoints_body(&p));
        let mut moved = p.clone();
        moved.ready = s(&["10.0.0.1"]);
        moved.not_ready = s(&["10.0.0.2", "10.0.0.3"]);
        assert!(endpoints_outdated(&moved, &current), "an apiserver went not ready");
        let mut swapped = current.clone();
        swapped.subsets[0].addresses = s(&["10.0.0.1", "10.0.0.9"]);
        assert!(endpoints_outdated(&p, &swapped), "same count, other IP");
        let mut reordered = current.clone();
        reordered.subsets[0].addresses.reverse();
        assert!(!endpoints_outdated(&p, &reordered), "order does not matter");
        let mut unlabelled = current.clone();
        unlabelled.labels.clear();
        assert!(endpoints_outdated(&p, &unlabelled));
        let mut two = current.clone();
        two.subsets.push(EndpointSubsetView::default());
        assert!(endpoints_outdated(&p, &two));
        let mut port = current.clone();
        port.subsets[0].ports[0].port = 443;
        assert!(endpoints_outdated(&p, &port));
        assert!(endpoints_outdated(&p, &EndpointsView::default()));
    }

    #[test]
    fn slice_differences_are_outdated() {
        let p = EndpointParams::kubernetes(s(&["10.0.0.1", "10.0.0.2"]), vec![]);
        let current = endpoint_slice_view(&endpoint_slice_body(&p, "discovery.k8s.io/v1"));
        let mut not_ready = current.clone();
        not_ready.endpoints[1].ready = Some(false);
        assert!(endpoint_slice_outdated(&p, &not_ready));
        let mut unset = current.clone();
        unset.endpoints[0].ready = None;
        assert!(endpoint_slice_outdated(&p, &unset), "unset readiness is not ready=true");
        let mut reordered = current.clone();
        reordered.endpoints.reverse();
        assert!(endpoint_slice_outdated(&p, &reordered), "compared element-wise, sorted");
        let mut other_service = current.clone();
        other_service.labels.insert(SERVICE_NAME_LABEL.into(), "x".into());
        assert!(endpoint_slice_outdated(&p, &other_service));
        let mut v6 = current.clone();
        v6.address_type = "IPv6".into();
        assert!(endpoint_slice_outdated(&p, &v6));
        let mut port_name = current.clone();
        port_name.ports[0].name = String::new();
        assert!(endpoint_slice_outdated(&p, &port_name));
        let mut extra = current;
        extra.labels.insert("other".into(), "kept".into());
        assert!(!endpoint_slice_outdated(&p, &extra), "other labels do not matter");
    }

    #[test]
    fn etcd_service_rules() {
        let ok = service_view(&etcd_service_body());
        assert_eq!(ok.cluster_ip, "None");
        for change in [
            |v: &mut ServiceView| v.cluster_ip = "10.68.0.10".into(),
            |v: &mut ServiceView| v.service_type = "NodePort".into(),
            |v: &mut ServiceView| v.ports[0].port = 2380,
            |v: &mut ServiceView| v.ports.clear(),
        ] {
            let mut v = ok.clone();
            change(&mut v);
            assert!(etcd_service_outdated(&v), "{v:?}");
        }
    }

    #[test]
    fn empty_lists_are_left_out_of_endpoints() {
        let p = EndpointParams::etcd(vec![], s(&["10.0.0.1"]));
        let body = endpoints_body(&p);
        assert!(body["subsets"][0].get("addresses").is_none());
        assert_eq!(body["subsets"][0]["notReadyAddresses"][0]["ip"], "10.0.0.1");
        assert_eq!(body["subsets"][0]["ports"][0], json!({ "port": 2379 }));
    }
}
