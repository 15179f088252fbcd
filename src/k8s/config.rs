//! The component configuration files: `KubeletConfiguration`, `KubeSchedulerConfiguration` and
//! `KubeProxyConfiguration`, as CKE generates them (`op/k8s/config.go`): CKE's base values, the
//! user's `options.<component>.config` merged on top (its `apiVersion` and `kind` must be the
//! version's, `cluster.go` MergeConfig), then the forced values. And [`differs`], the comparison of
//! a running file with the desired one, in the manner of `equality.Semantic.DeepEqual` over the Go
//! structs.
//!
//! Values are JSON objects ([`serde_json::Value`], keys sorted, as Go's unstructured encoding
//! writes them); [`to_yaml`] renders the file. Unlike CKE's typed structs, fields left at their zero
//! value are omitted rather than written out (`syncFrequency: 0s`): the components read both the
//! same, and [`differs`] treats them as equal.

use serde_json::{json, Map, Value};

use super::{K8sError, VersionSet};
use crate::model::{KubeletParams, Node, ProxyParams, SchedulerParams};
use crate::topology::*;

pub use crate::model::kube_version::{KUBELET_KIND, PROXY_KIND, SCHEDULER_KIND};

/// The kubelet fields kept from the running configuration while the node runs (CKE: "This field
/// should not be updated without a full node reboot").
pub const KUBELET_KEPT_FIELDS: [&str; 10] = [
    "kubeletCgroups",
    "systemCgroups",
    "cgroupRoot",
    "cgroupsPerQOS",
    "cgroupDriver",
    "cpuManagerPolicy",
    "topologyManagerPolicy",
    "qosReserved",
    "systemReservedCgroup",
    "kubeReservedCgroup",
];

/// Checks a user config's `apiVersion` and `kind` against the expected ones and returns its other
/// fields. `field` names it in errors (`options.kubelet.config`).
fn user_fields(config: &Value, field: &str, api_version: &str, kind: &str) -> Result<Map<String, Value>, K8sError> {
    let err = |reason: String| K8sError::Config {
        field: field.into(),
        reason,
    };
    let Some(obj) = config.as_object() else {
        return Err(err("must be a mapping".into()));
    };
    let got_api = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let got_kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if got_api != api_version {
        return Err(err(format!(
            "apiVersion is {got_api:?}; this Kubernetes version needs {api_version:?}"
        )));
    }
    if got_kind != kind {
        return Err(err(format!("kind is {got_kind:?}; it must be {kind:?}")));
    }
    let mut out = obj.clone();
    out.remove("apiVersion");
    out.remove("kind");
    Ok(out)
}

/// Merges `over` onto `base` as Go's `json.Unmarshal` onto a filled struct does: objects merge key
/// by key (recursively), anything else replaces; `null` clears the field.
fn merge(base: &mut Map<String, Value>, over: Map<String, Value>) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (_, Value::Null) => {
                base.remove(&k);
            }
            (Some(Value::Object(b)), Value::Object(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Sets `path` (object keys) to `value`, creating (or replacing non-object) intermediate objects.
fn set(obj: &mut Map<String, Value>, path: &[&str], value: Value) {
    let (last, parents) = path.split_last().expect("non-empty path");
    let mut cur = obj;
    for p in parents {
        let entry = cur.entry(p.to_string()).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        cur = entry.as_object_mut().expect("object");
    }
    cur.insert(last.to_string(), value);
}

fn with_type(mut obj: Map<String, Value>, api_version: &str, kind: &str) -> Value {
    obj.insert("apiVersion".into(), json!(api_version));
    obj.insert("kind".into(), json!(kind));
    Value::Object(obj)
}

fn base_and_user(
    base: Value,
    user: &Option<Value>,
    field: &str,
    api_version: &str,
    kind: &str,
) -> Result<Map<String, Value>, K8sError> {
    let Value::Object(mut obj) = base else {
        unreachable!("bases are objects")
    };
    if let Some(config) = user {
        merge(&mut obj, user_fields(config, field, api_version, kind)?);
    }
    Ok(obj)
}

/// The cluster domain: the user kubelet config's `clusterDomain`, else `cluster.local` (CKE reads
/// it from the generated kubelet configuration).
pub fn cluster_domain(options: &KubeletParams) -> String {
    options
        .config
        .as_ref()
        .and_then(|c| c.get("clusterDomain"))
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .unwrap_or(DEFAULT_CLUSTER_DOMAIN)
        .to_string()
}

/// `KubeSchedulerConfiguration` (CKE `GenerateSchedulerConfiguration`): empty base, the user's
/// `options.kube-scheduler.config`, forced `clientConnection.kubeconfig` and
/// `leaderElection.leaderElect: true`.
pub fn scheduler(version: &VersionSet, options: &SchedulerParams) -> Result<Value, K8sError> {
    let api = version.scheduler_config_api;
    let mut obj = base_and_user(
        json!({}),
        &options.config,
        "options.kube-scheduler.config",
        api,
        SCHEDULER_KIND,
    )?;
    set(
        &mut obj,
        &["clientConnection", "kubeconfig"],
        json!(SCHEDULER_KUBECONFIG_PATH),
    );
    set(&mut obj, &["leaderElection", "leaderElect"], json!(true));
    Ok(with_type(obj, api, SCHEDULER_KIND))
}

/// `KubeProxyConfiguration` (CKE `GenerateProxyConfiguration`): base `hostnameOverride` (the node
/// name), `metricsBindAddress: 0.0.0.0`, conntrack `tcpEstablishedTimeout: 24h`,
/// `tcpCloseWaitTimeout: 1h`; the user's `options.kube-proxy.config`; forced
/// `clientConnection.kubeconfig`.
pub fn proxy(version: &VersionSet, options: &ProxyParams, node: &Node) -> Result<Value, K8sError> {
    let api = version.proxy_config_api;
    let base = json!({
        "hostnameOverride": node.nodename(),
        "metricsBindAddress": "0.0.0.0",
        "conntrack": {
            "tcpEstablishedTimeout": "24h0m0s",
            "tcpCloseWaitTimeout": "1h0m0s",
        },
    });
    let mut obj = base_and_user(base, &options.config, "options.kube-proxy.config", api, PROXY_KIND)?;
    set(
        &mut obj,
        &["clientConnection", "kubeconfig"],
        json!(PROXY_KUBECONFIG_PATH),
    );
    Ok(with_type(obj, api, PROXY_KIND))
}

/// `KubeletConfiguration` (CKE `GenerateKubeletConfiguration`) for the node at `address`: base
/// `clusterDomain: cluster.local`, `runtimeRequestTimeout: 15m`, `healthzBindAddress: 0.0.0.0`,
/// `volumePluginDir: /opt/volume/bin`; the user's `options.kubelet.config`; forced TLS files,
/// `authentication` (x509 client CA, webhook) and `authorization` (webhook), `clusterDNS: [address]`
/// (the node-local DNS); `boot_taints` merged into `registerWithTaints` (a boot taint replaces a
/// user taint of the same key); and, when `running` (the node's current file, parsed) is given, the
/// [`KUBELET_KEPT_FIELDS`] as they are there.
pub fn kubelet(
    version: &VersionSet,
    options: &KubeletParams,
    address: &str,
    running: Option<&Value>,
) -> Result<Value, K8sError> {
    let api = version.kubelet_config_api;
    let base = json!({
        "clusterDomain": DEFAULT_CLUSTER_DOMAIN,
        "runtimeRequestTimeout": "15m0s",
        "healthzBindAddress": "0.0.0.0",
        "volumePluginDir": VOLUME_PLUGIN_DIR,
    });
    let mut obj = base_and_user(base, &options.config, "options.kubelet.config", api, KUBELET_KIND)?;
    obj.insert("tlsCertFile".into(), json!(k8s_pki_path("kubelet.crt")));
    obj.insert("tlsPrivateKeyFile".into(), json!(k8s_pki_path("kubelet.key")));
    obj.insert(
        "authentication".into(),
        json!({"x509": {"clientCAFile": k8s_pki_path("ca.crt")}, "webhook": {"enabled": true}}),
    );
    obj.insert("authorization".into(), json!({"mode": "Webhook"}));
    obj.insert("clusterDNS".into(), json!([address]));

    if !options.boot_taints.is_empty() {
        let mut taints: Vec<Value> = match obj.remove("registerWithTaints") {
            Some(Value::Array(a)) => a,
            Some(Value::Null) | None => vec![],
            Some(other) => {
                return Err(K8sError::Config {
                    field: "options.kubelet.config.registerWithTaints".into(),
                    reason: format!("must be a list, not {other}"),
                })
            }
        };
        // As CKE: index user taints by key (the last one of a key wins), replace those a boot taint
        // names, append the others.
        let mut index = std::collections::HashMap::new();
        for (i, t) in taints.iter().enumerate() {
            if let Some(k) = t.get("key").and_then(Value::as_str) {
                index.insert(k.to_string(), i);
            }
        }
        for t in &options.boot_taints {
            let v = serde_json::to_value(t).expect("taint serializes");
            match index.get(&t.key) {
                Some(&i) => taints[i] = v,
                None => taints.push(v),
            }
        }
        obj.insert("registerWithTaints".into(), Value::Array(taints));
    }

    if let Some(running) = running {
        for k in KUBELET_KEPT_FIELDS {
            match running.get(k) {
                Some(v) if !v.is_null() => {
                    obj.insert(k.into(), v.clone());
                }
                _ => {
                    obj.remove(k);
                }
            }
        }
    }
    Ok(with_type(obj, api, KUBELET_KIND))
}

/// The file's text (YAML, keys sorted).
pub fn to_yaml(config: &Value) -> String {
    serde_yaml::to_string(config).expect("JSON values render as YAML")
}

/// Reads a running configuration file (YAML or JSON) back; `path` names it in errors.
pub fn parse(path: &str, text: &str) -> Result<Value, K8sError> {
    let v: Value = serde_yaml::from_str(text).map_err(|e| K8sError::Config {
        field: path.into(),
        reason: format!("is not valid YAML: {e}"),
    })?;
    if !v.is_object() {
        return Err(K8sError::Config {
            field: path.into(),
            reason: "is not a mapping".into(),
        });
    }
    Ok(v)
}

/// Parses a Go duration (`1h30m`, `15m0s`, `500ms`) to nanoseconds; `None` if it is none.
fn go_duration(s: &str) -> Option<i128> {
    if s.is_empty() {
        return None;
    }
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 {
            return None;
        }
        let num: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += num * unit;
    }
    let ns = total.round() as i128;
    Some(if neg { -ns } else { ns })
}

/// A value Go reads as the zero value of its field: absent, `null`, `false`, `0`, `""`, a zero
/// duration, an empty list or an empty mapping (whose fields are all zero).
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty() || go_duration(s) == Some(0),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_zero),
    }
}

fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let empty = Value::Null;
            x.keys()
                .chain(y.keys())
                .all(|k| same(x.get(k).unwrap_or(&empty), y.get(k).unwrap_or(&empty)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y || matches!((go_duration(x), go_duration(y)), (Some(p), Some(q)) if p == q)
        }
        _ if is_zero(a) && is_zero(b) => true,
        _ => a == b,
    }
}

/// Whether a running configuration differs from the desired one, as CKE decides with
/// `equality.Semantic.DeepEqual` after decoding both into the Go struct: a field absent on one side
/// equals its zero value on the other, durations compare by length (`24h` = `24h0m0s`), numbers by
/// value. `apiVersion` and `kind` take part: a file of another version differs.
pub fn differs(desired: &Value, running: &Value) -> bool {
    !same(desired, running)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Taint;

    fn v135() -> &'static VersionSet {
        VersionSet::exact(35).unwrap()
    }

    fn v120() -> &'static VersionSet {
        VersionSet::exact(20).unwrap()
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.into(),
            effect: effect.into(),
        }
    }

    #[test]
    fn scheduler_config() {
        let c = scheduler(v135(), &SchedulerParams::default()).unwrap();
        assert_eq!(
            c,
            json!({
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {"kubeconfig": "/etc/kubernetes/scheduler/kubeconfig"},
                "leaderElection": {"leaderElect": true},
            })
        );
        // User values merge; forced ones win.
        let options = SchedulerParams {
            config: Some(json!({
                "apiVersion": "kubescheduler.config.k8s.io/v1beta1",
                "kind": "KubeSchedulerConfiguration",
                "clientConnection": {"kubeconfig": "/nope", "qps": 100},
                "leaderElection": {"leaderElect": false, "leaseDuration": "20s"},
                "podMaxBackoffSeconds": 5,
            })),
            ..Default::default()
        };
        let c = scheduler(v120(), &options).unwrap();
        assert_eq!(c["apiVersion"], "kubescheduler.config.k8s.io/v1beta1");
        assert_eq!(
            c["clientConnection"],
            json!({"kubeconfig": SCHEDULER_KUBECONFIG_PATH, "qps": 100})
        );
        assert_eq!(
            c["leaderElection"],
            json!({"leaderElect": true, "leaseDuration": "20s"})
        );
        assert_eq!(c["podMaxBackoffSeconds"], 5);
        // The same config does not fit 1.35.
        let e = scheduler(v135(), &options).unwrap_err().to_string();
        assert!(
            e.contains("options.kube-scheduler.config")
                && e.contains("kubescheduler.config.k8s.io/v1beta1")
                && e.contains("needs \"kubescheduler.config.k8s.io/v1\""),
            "{e}"
        );
    }

    #[test]
    fn wrong_kind_or_shape_is_named() {
        let options = ProxyParams {
            config: Some(json!({"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeletConfiguration"})),
            ..Default::default()
        };
        let e = proxy(v135(), &options, &Node::new("10.0.0.1", "u", false))
            .unwrap_err()
            .to_string();
        assert!(e.contains("options.kube-proxy.config") && e.contains("kind"), "{e}");
        let options = KubeletParams {
            config: Some(json!(["x"])),
            ..Default::default()
        };
        let e = kubelet(v135(), &options, "10.0.0.1", None).unwrap_err().to_string();
        assert_eq!(e, "options.kubelet.config: must be a mapping");
    }

    #[test]
    fn proxy_config() {
        let mut node = Node::new("10.0.0.1", "u", false);
        node.hostname = "node1".into();
        let options = ProxyParams {
            config: Some(json!({
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "mode": "ipvs",
                "conntrack": {"maxPerCore": 0, "tcpCloseWaitTimeout": "0s"},
            })),
            ..Default::default()
        };
        let c = proxy(v120(), &options, &node).unwrap();
        assert_eq!(
            c,
            json!({
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "hostnameOverride": "node1",
                "metricsBindAddress": "0.0.0.0",
                "mode": "ipvs",
                "conntrack": {"tcpEstablishedTimeout": "24h0m0s", "tcpCloseWaitTimeout": "0s", "maxPerCore": 0},
                "clientConnection": {"kubeconfig": "/etc/kubernetes/proxy/kubeconfig"},
            })
        );
    }

    #[test]
    fn kubelet_config_base_and_forced() {
        let c = kubelet(v135(), &KubeletParams::default(), "10.0.0.3", None).unwrap();
        assert_eq!(
            c,
            json!({
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "clusterDomain": "cluster.local",
                "runtimeRequestTimeout": "15m0s",
                "healthzBindAddress": "0.0.0.0",
                "volumePluginDir": "/opt/volume/bin",
                "tlsCertFile": "/etc/kubernetes/pki/kubelet.crt",
                "tlsPrivateKeyFile": "/etc/kubernetes/pki/kubelet.key",
                "authentication": {"x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}, "webhook": {"enabled": true}},
                "authorization": {"mode": "Webhook"},
                "clusterDNS": ["10.0.0.3"],
            })
        );
        // User authentication/authorization/clusterDNS are overridden (CKE replaces them whole).
        let options = KubeletParams {
            config: Some(json!({
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "clusterDomain": "neco.local",
                "authentication": {"anonymous": {"enabled": true}},
                "clusterDNS": ["1.1.1.1"],
                "cgroupRoot": "/user",
            })),
            ..Default::default()
        };
        let c = kubelet(v135(), &options, "10.0.0.3", None).unwrap();
        assert_eq!(c["clusterDomain"], "neco.local");
        assert_eq!(c["authentication"]["anonymous"], Value::Null);
        assert_eq!(c["clusterDNS"], json!(["10.0.0.3"]));
        assert_eq!(c["cgroupRoot"], "/user");
        assert_eq!(cluster_domain(&options), "neco.local");
        assert_eq!(cluster_domain(&KubeletParams::default()), "cluster.local");

        // With a running config, the kept fields come from it (absent there = absent here).
        let running = json!({"cgroupRoot": "/node3", "cgroupDriver": "systemd", "clusterDomain": "old"});
        let c = kubelet(v135(), &options, "10.0.0.3", Some(&running)).unwrap();
        assert_eq!(c["cgroupRoot"], "/node3");
        assert_eq!(c["cgroupDriver"], "systemd");
        assert_eq!(c["clusterDomain"], "neco.local");
        let c = kubelet(v135(), &options, "10.0.0.3", Some(&json!({}))).unwrap();
        assert_eq!(c.get("cgroupRoot"), None);
    }

    #[test]
    fn boot_taints_win_by_key() {
        // A boot taint replaces the user taint of its key and the others are appended.
        let options = KubeletParams {
            boot_taints: vec![taint("boot", "", "NoSchedule"), taint("user1", "boot", "NoExecute")],
            config: Some(json!({
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "registerWithTaints": [
                    {"key": "user1", "value": "u", "effect": "NoSchedule"},
                    {"key": "user2", "effect": "PreferNoSchedule"},
                ],
            })),
            ..Default::default()
        };
        let c = kubelet(v135(), &options, "10.0.0.3", None).unwrap();
        assert_eq!(
            c["registerWithTaints"],
            json!([
                {"key": "user1", "value": "boot", "effect": "NoExecute"},
                {"key": "user2", "effect": "PreferNoSchedule"},
                {"key": "boot", "effect": "NoSchedule"},
            ])
        );
        let only_boot = KubeletParams {
            boot_taints: vec![taint("coil.cybozu.com/bootstrap", "", "NoSchedule")],
            ..Default::default()
        };
        let c = kubelet(v120(), &only_boot, "10.0.0.3", None).unwrap();
        assert_eq!(
            c["registerWithTaints"],
            json!([{"key": "coil.cybozu.com/bootstrap", "effect": "NoSchedule"}])
        );
    }

    // The cases of CKE op/k8s/config_test.go (cybozu-go/cke @ d66a146).
    #[test]
    fn ckes_generate_scheduler_configuration_case() {
        let options = SchedulerParams {
            config: Some(json!({
                "apiVersion": "kubescheduler.config.k8s.io/v1",
                "kind": "KubeSchedulerConfiguration",
                "leaderElection": {"leaderElect": false},
                "podMaxBackoffSeconds": 100,
            })),
            ..Default::default()
        };
        let want = json!({
            "apiVersion": "kubescheduler.config.k8s.io/v1",
            "kind": "KubeSchedulerConfiguration",
            "leaderElection": {"leaderElect": true},
            "clientConnection": {"kubeconfig": "/etc/kubernetes/scheduler/kubeconfig"},
            "podMaxBackoffSeconds": 100,
        });
        assert_eq!(scheduler(v135(), &options).unwrap(), want);
    }

    #[test]
    fn ckes_generate_kubelet_configuration_cases() {
        let base = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "clusterDomain": "cluster.local",
            "runtimeRequestTimeout": "15m0s",
            "healthzBindAddress": "0.0.0.0",
            "volumePluginDir": "/opt/volume/bin",
            "tlsCertFile": "/etc/kubernetes/pki/kubelet.crt",
            "tlsPrivateKeyFile": "/etc/kubernetes/pki/kubelet.key",
            "authentication": {"x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"}, "webhook": {"enabled": true}},
            "authorization": {"mode": "Webhook"},
            "clusterDNS": ["1.2.3.4"],
        });
        let with = |extra: Value| {
            let mut v = base.clone();
            merge(v.as_object_mut().unwrap(), extra.as_object().unwrap().clone());
            v
        };
        let expected = with(json!({
            "failSwapOn": false,
            "containerLogMaxSize": "100Mi",
            "cgroupDriver": "systemd",
            "registerWithTaints": [{"key": "taint-key", "value": "taint-value", "effect": "NoExecute"}],
        }));
        let mut expected2 = expected.clone();
        expected2.as_object_mut().unwrap().remove("cgroupDriver");
        let mut expected3 = expected.clone();
        expected3["registerWithTaints"] = json!([
            {"key": "taint-key", "effect": "NoSchedule"},
            {"key": "taint-key2", "value": "taint-value2", "effect": "NoExecute"},
        ]);
        let cfg = json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "failSwapOn": false,
            "containerLogMaxSize": "100Mi",
            "cgroupDriver": "systemd",
            "registerWithTaints": [{"key": "taint-key", "value": "taint-value", "effect": "NoExecute"}],
        });
        let with_config = KubeletParams {
            config: Some(cfg.clone()),
            ..Default::default()
        };
        let with_taints = KubeletParams {
            boot_taints: vec![
                taint("taint-key", "", "NoSchedule"),
                taint("taint-key2", "taint-value2", "NoExecute"),
            ],
            config: Some(cfg),
            ..Default::default()
        };
        let running = json!({});
        let cases: [(&str, &KubeletParams, Option<&Value>, &Value); 4] = [
            ("base", &KubeletParams::default(), None, &base),
            ("with config", &with_config, None, &expected),
            ("with running config", &with_config, Some(&running), &expected2),
            ("with boot taints", &with_taints, None, &expected3),
        ];
        for (name, options, running, want) in cases {
            let got = kubelet(v135(), options, "1.2.3.4", running).unwrap();
            assert_eq!(&got, want, "case {name}");
        }
    }

    #[test]
    fn yaml_round_trip_and_semantic_comparison() {
        let c = kubelet(v135(), &KubeletParams::default(), "10.0.0.3", None).unwrap();
        let text = to_yaml(&c);
        assert!(
            text.starts_with("apiVersion: kubelet.config.k8s.io/v1beta1\n"),
            "{text}"
        );
        let back = parse(KUBELET_CONFIG_PATH, &text).unwrap();
        assert!(!differs(&c, &back));

        // What CKE (Go) writes: zero-valued fields spelled out, durations in Go's format.
        let go = parse(
            KUBELET_CONFIG_PATH,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             authentication:\n  anonymous: {}\n  webhook:\n    cacheTTL: 0s\n    enabled: true\n  x509:\n    clientCAFile: /etc/kubernetes/pki/ca.crt\n\
             authorization:\n  mode: Webhook\n  webhook:\n    cacheAuthorizedTTL: 0s\n    cacheUnauthorizedTTL: 0s\n\
             clusterDNS:\n- 10.0.0.3\nclusterDomain: cluster.local\ncpuManagerReconcilePeriod: 0s\n\
             healthzBindAddress: 0.0.0.0\nlogging:\n  flushFrequency: 0\n  verbosity: 0\n\
             runtimeRequestTimeout: 15m\nsyncFrequency: 0s\ntlsCertFile: /etc/kubernetes/pki/kubelet.crt\n\
             tlsPrivateKeyFile: /etc/kubernetes/pki/kubelet.key\nvolumePluginDir: /opt/volume/bin\n",
        )
        .unwrap();
        assert!(!differs(&c, &go));

        let mut other = back.clone();
        other["clusterDNS"] = json!(["10.0.0.4"]);
        assert!(differs(&c, &other));
        let mut other = back.clone();
        other["apiVersion"] = json!("kubelet.config.k8s.io/v1");
        assert!(differs(&c, &other));
        let mut other = back.clone();
        other["runtimeRequestTimeout"] = json!("10m");
        assert!(differs(&c, &other));
        let mut other = back;
        other["maxPods"] = json!(200);
        assert!(differs(&c, &other));

        assert_eq!(go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(go_duration("24h0m0s"), go_duration("24h"));
        assert_eq!(go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(go_duration("node3"), None);
        assert_eq!(go_duration("10"), None);
        assert!(parse("f", "- a").unwrap_err().to_string().contains("not a mapping"));
    }
}
