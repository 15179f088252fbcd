//! The cluster DNS (CoreDNS) and node DNS (unbound) configuration, as CKE renders it: the cluster
//! domain, the upstream servers, the CoreDNS `Corefile`, the node-local unbound `unbound.conf`, and the
//! two ConfigMaps `kube-system/cluster-dns` and `kube-system/node-dns` that carry them (CKE
//! `op/clusterdns/clusterdns.go`, `op/nodedns/nodedns.go`, `server/strategy.go`
//! `decideClusterDNSOps`/`decideNodeDNSOps`, cybozu-go/cke @ d66a146).
//!
//! Pure: no I/O. Which Service the upstream comes from is the caller's to read; this module only says
//! what to do with it ([`dns_upstreams`]).

use serde_json::{json, Value};

use crate::model::Cluster;

/// Namespace of both DNS ConfigMaps (and of CKE's DNS Deployment, DaemonSet and Service).
pub const DNS_NAMESPACE: &str = "kube-system";
/// Name of the CoreDNS ConfigMap, Deployment and Service (CKE `op.ClusterDNSAppName`).
pub const CLUSTER_DNS_APP_NAME: &str = "cluster-dns";
/// Name of the unbound ConfigMap and DaemonSet (CKE `op.NodeDNSAppName`).
pub const NODE_DNS_APP_NAME: &str = "node-dns";
/// Data key of the CoreDNS configuration in the `cluster-dns` ConfigMap.
pub const COREFILE_KEY: &str = "Corefile";
/// Data key of the unbound configuration in the `node-dns` ConfigMap.
pub const UNBOUND_CONF_KEY: &str = "unbound.conf";
/// Version of the CoreDNS template (CKE `clusterdns.CoreDNSTemplateVersion`).
pub const COREDNS_TEMPLATE_VERSION: &str = "3";
/// Where unbound's control socket is, in the `var-run-unbound` volume the node-dns DaemonSet shares
/// between unbound, its reload sidecar and the exporter (`static/node-dns.yml`).
pub const UNBOUND_CONTROL_SOCKET: &str = "/var/run/unbound/unbound.sock";

/// The cluster domain: the kubelet configuration's `clusterDomain` (`options.kubelet.config`), else
/// `cluster.local`. CKE takes it from `GenerateKubeletConfiguration(c.Options.Kubelet, ...)
/// .ClusterDomain` in `decideClusterDNSOps`, whose base sets `cluster.local` and whose user config
/// overrides it; [`super::config::cluster_domain`] is that rule.
pub fn cluster_domain(cluster: &Cluster) -> String {
    super::config::cluster_domain(&cluster.options.kubelet)
}

/// The upstream DNS servers of both configurations (CKE `decideClusterDNSOps`/`decideNodeDNSOps`):
/// the ClusterIP of the `dns_service` Service when cluster.yml names one and that Service has a
/// ClusterIP (neither empty nor `None`); else `dns_servers` of cluster.yml.
///
/// `dns_service_cluster_ip` is `spec.clusterIP` of the Service `dns_service` names
/// (`namespace/name`), as the probe read it: `None` when `dns_service` is empty or the Service does
/// not exist (CKE reads the Service only when `dns_service` is set).
pub fn dns_upstreams(cluster: &Cluster, dns_service_cluster_ip: Option<&str>) -> Vec<String> {
    match dns_service_cluster_ip {
        Some(ip) if !ip.is_empty() && ip != "None" => vec![ip.to_string()],
        _ => cluster.dns_servers.clone(),
    }
}

/// The node DNS ConfigMap exists only once the `kube-system/cluster-dns` Service has a ClusterIP
/// (CKE `decideNodeDNSOps`: nothing while `ClusterDNS.ClusterIP` is empty): the address unbound sends
/// the cluster domain and reverse lookups to. `cluster_dns_cluster_ip` is that Service's
/// `spec.clusterIP`, `None` when it does not exist.
pub fn node_dns_cluster_ip(cluster_dns_cluster_ip: Option<&str>) -> Option<&str> {
    cluster_dns_cluster_ip.filter(|ip| !ip.is_empty())
}

/// CoreDNS's `Corefile`, byte for byte CKE's `clusterDNSTemplate`: serves `domain` and the reverse
/// zones from the Kubernetes API on port 1053; with upstreams, reverse lookups it cannot answer fall
/// through and everything else is forwarded to `upstreams` (joined by spaces).
pub fn cluster_dns_corefile(domain: &str, upstreams: &[String]) -> String {
    let upstreams = upstreams.join(" ");
    let (fallthrough, forward) = if upstreams.is_empty() {
        (String::new(), String::new())
    } else {
        (
            "\n      fallthrough in-addr.arpa ip6.arpa".to_string(),
            format!("\n    forward . {upstreams}"),
        )
    };
    format!(
        ".:1053 {{
    errors
    health
    ready
    log . {{combined}} {{
        class denial error
    }}
    kubernetes {domain} in-addr.arpa ip6.arpa {{
      pods verified{fallthrough}
    }}{forward}
    prometheus :9153
    cache 30
    reload
    loadbalance
}}
"
    )
}

/// The private IPv4 reverse zones unbound keeps transparent and DNSSEC-insecure (CKE's template:
/// `10`, `168.192`, and `16` to `31` `.172.in-addr.arpa.`).
fn private_reverse_zones() -> Vec<String> {
    let mut zones = vec!["10.in-addr.arpa.".to_string(), "168.192.in-addr.arpa.".to_string()];
    zones.extend((16..=31).map(|n| format!("{n}.172.in-addr.arpa.")));
    zones
}

/// The fixed `server:` options of CKE's unbound template, up to `so-reuseport`.
const UNBOUND_SERVER_OPTIONS: &str = "
server:
  do-daemonize: no
  interface: 0.0.0.0
  interface-automatic: yes
  access-control: 0.0.0.0/0 allow
  chroot: \"\"
  username: \"\"
  directory: \"/etc/unbound\"
  logfile: \"\"
  use-syslog: no
  log-time-ascii: yes
  log-queries: no
  log-replies: yes
  log-local-actions: yes
  log-servfail: yes
  num-threads: 4
  incoming-num-tcp: 1000
  outgoing-num-tcp: 1000
  num-queries-per-thread: 4096
  outgoing-range: 8192
  rrset-roundrobin: yes
  extended-statistics: yes
  rrset-cache-size: 256m
  rrset-cache-slabs: 4
  msg-cache-size: 256m
  msg-cache-slabs: 4
  infra-cache-slabs: 4
  key-cache-slabs: 4
  so-rcvbuf: 4m
  pidfile: \"/tmp/unbound.pid\"
  infra-host-ttl: 60
  prefetch: yes
  tcp-upstream: yes
  so-reuseport: yes
";

/// unbound's `unbound.conf` for the node-dns DaemonSet, byte for byte CKE's
/// `unboundConfigTemplateText` as `decideNodeDNSOps` renders it (`LocalControl` true: the control
/// socket is [`UNBOUND_CONTROL_SOCKET`], which the reload sidecar and the exporter use). The cluster
/// domain goes to the cluster DNS at `cluster_dns_ip` as a stub zone, reverse lookups are forwarded
/// there, and with upstreams every other name is forwarded to them (else unbound resolves from the
/// root hints).
///
/// CKE's cke-localproxy renders the same template with a TCP control interface (`127.0.0.1`); cke
/// has no local proxy, so that variant is not here.
pub fn node_dns_unbound_conf(domain: &str, cluster_dns_ip: &str, upstreams: &[String]) -> String {
    let zones = private_reverse_zones();
    let mut s = String::from(UNBOUND_SERVER_OPTIONS);
    for z in &zones {
        s.push_str(&format!("  local-zone: \"{z}\" transparent\n"));
    }
    s.push_str("  root-hints: \"/usr/local/unbound/etc/unbound/root.hints\"\n");
    s.push_str("  trust-anchor-file: \"/usr/local/unbound/etc/unbound/root.key\"\n");
    s.push_str(&format!("  domain-insecure: \"{domain}\"\n"));
    for z in &zones {
        s.push_str(&format!("  domain-insecure: \"{z}\"\n"));
    }
    s.push_str("remote-control:\n  control-enable: yes\n");
    s.push_str(&format!("  control-interface:  {UNBOUND_CONTROL_SOCKET} \n"));
    s.push_str("  control-use-cert: no\n");
    s.push_str(&format!(
        "stub-zone:\n  name: \"{domain}\"\n  stub-addr: {cluster_dns_ip}\n"
    ));
    for zone in ["in-addr.arpa.", "ip6.arpa."] {
        s.push_str(&format!(
            "forward-zone:\n  name: \"{zone}\"\n  forward-addr: {cluster_dns_ip}\n"
        ));
    }
    if !upstreams.is_empty() {
        s.push_str("forward-zone:\n  name: \".\"\n");
        for u in upstreams {
            s.push_str(&format!("  forward-addr: {u}\n"));
        }
    }
    s
}

/// A `kube-system` ConfigMap with one data entry, as CKE's `ConfigMap` functions build it: name and
/// namespace only (CKE sets no labels or annotations on these two), no resourceVersion (CKE creates
/// it, and updates it with an unconditional `Update`).
fn configmap(name: &str, key: &str, value: String) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": DNS_NAMESPACE},
        "data": {key: value},
    })
}

/// The ConfigMap `kube-system/cluster-dns` with `data.Corefile` = [`cluster_dns_corefile`] (CKE
/// `clusterdns.ConfigMap`). Compare `data.Corefile` of the live object to decide an update.
pub fn cluster_dns_configmap(domain: &str, upstreams: &[String]) -> Value {
    configmap(
        CLUSTER_DNS_APP_NAME,
        COREFILE_KEY,
        cluster_dns_corefile(domain, upstreams),
    )
}

/// The ConfigMap `kube-system/node-dns` with `data["unbound.conf"]` = [`node_dns_unbound_conf`]
/// (CKE `nodedns.ConfigMap(..., true)`). Compare `data["unbound.conf"]` of the live object to decide
/// an update.
pub fn node_dns_configmap(domain: &str, cluster_dns_ip: &str, upstreams: &[String]) -> Value {
    configmap(
        NODE_DNS_APP_NAME,
        UNBOUND_CONF_KEY,
        node_dns_unbound_conf(domain, cluster_dns_ip, upstreams),
    )
}

#[cfg(test)]
mod tests {
    //! The golden files were rendered by CKE's own template text with Go's text/template
    //! (`testdata/dns/render.go`), so these tests compare against CKE, not against a copy of this code.

    use super::*;

    fn cluster() -> Cluster {
        Cluster::new("test", "10.68.0.0/16", vec![])
    }

    fn servers(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn corefile_with_upstreams_is_ckes() {
        assert_eq!(
            cluster_dns_corefile("cluster.local", &servers(&["8.8.8.8", "1.1.1.1"])),
            include_str!("../../testdata/dns/corefile-upstreams.golden")
        );
    }

    #[test]
    fn corefile_without_upstreams_is_ckes() {
        assert_eq!(
            cluster_dns_corefile("neco.local", &[]),
            include_str!("../../testdata/dns/corefile-no-upstreams.golden")
        );
    }

    #[test]
    fn unbound_conf_with_upstreams_is_ckes() {
        assert_eq!(
            node_dns_unbound_conf("cluster.local", "10.0.0.53", &servers(&["8.8.8.8", "1.1.1.1"])),
            include_str!("../../testdata/dns/unbound-upstreams.golden")
        );
    }

    #[test]
    fn unbound_conf_without_upstreams_is_ckes() {
        assert_eq!(
            node_dns_unbound_conf("neco.local", "10.68.0.10", &[]),
            include_str!("../../testdata/dns/unbound-no-upstreams.golden")
        );
    }

    #[test]
    fn cluster_domain_follows_the_kubelet_config() {
        let mut c = cluster();
        assert_eq!(cluster_domain(&c), "cluster.local");
        c.options.kubelet.config = Some(json!({"clusterDomain": "neco.local"}));
        assert_eq!(cluster_domain(&c), "neco.local");
        c.options.kubelet.config = Some(json!({"clusterDomain": ""}));
        assert_eq!(cluster_domain(&c), "cluster.local");
    }

    /// strategy_test.go "UpdateDNSService": a dns_service with a ClusterIP replaces dns_servers;
    /// one without (headless `None`, or empty) does not.
    #[test]
    fn upstreams_are_the_dns_service_ip_when_it_has_one() {
        let c = Cluster {
            dns_servers: servers(&["8.8.8.8"]),
            dns_service: "kube-system/dns".into(),
            ..cluster()
        };
        assert_eq!(dns_upstreams(&c, None), servers(&["8.8.8.8"]));
        assert_eq!(dns_upstreams(&c, Some("")), servers(&["8.8.8.8"]));
        assert_eq!(dns_upstreams(&c, Some("None")), servers(&["8.8.8.8"]));
        assert_eq!(dns_upstreams(&c, Some("10.0.0.53")), servers(&["10.0.0.53"]));
        assert_eq!(dns_upstreams(&cluster(), None), Vec::<String>::new());
    }

    #[test]
    fn node_dns_waits_for_the_cluster_dns_ip() {
        assert_eq!(node_dns_cluster_ip(None), None);
        assert_eq!(node_dns_cluster_ip(Some("")), None);
        assert_eq!(node_dns_cluster_ip(Some("10.0.0.54")), Some("10.0.0.54"));
    }

    #[test]
    fn configmaps_are_named_as_ckes() {
        let up = servers(&["1.1.1.1"]);
        let cm = cluster_dns_configmap("cluster.local", &up);
        assert_eq!(cm["apiVersion"], "v1");
        assert_eq!(cm["kind"], "ConfigMap");
        assert_eq!(
            cm["metadata"],
            json!({"name": "cluster-dns", "namespace": "kube-system"})
        );
        assert_eq!(
            cm["data"]["Corefile"].as_str(),
            Some(cluster_dns_corefile("cluster.local", &up).as_str())
        );
        assert_eq!(cm["data"].as_object().unwrap().len(), 1);

        let cm = node_dns_configmap("cluster.local", "10.0.0.54", &up);
        assert_eq!(cm["metadata"], json!({"name": "node-dns", "namespace": "kube-system"}));
        let conf = cm["data"]["unbound.conf"].as_str().unwrap();
        assert_eq!(conf, node_dns_unbound_conf("cluster.local", "10.0.0.54", &up));
        assert!(conf.contains("stub-zone:\n  name: \"cluster.local\"\n  stub-addr: 10.0.0.54\n"));
        assert!(conf.contains("  control-interface:  /var/run/unbound/unbound.sock \n"));
        assert_eq!(cm["data"].as_object().unwrap().len(), 1);
    }

    /// A change of domain or upstreams changes the rendered text (the planner's update trigger).
    #[test]
    fn inputs_change_the_text() {
        let a = servers(&["8.8.8.8"]);
        let b = servers(&["1.1.1.1"]);
        assert_ne!(
            cluster_dns_corefile("cluster.local", &a),
            cluster_dns_corefile("cluster.local", &b)
        );
        assert_ne!(
            cluster_dns_corefile("cluster.local", &a),
            cluster_dns_corefile("neco.local", &a)
        );
        assert_ne!(
            node_dns_unbound_conf("cluster.local", "10.0.0.53", &a),
            node_dns_unbound_conf("cluster.local", "10.0.0.54", &a)
        );
    }
}
