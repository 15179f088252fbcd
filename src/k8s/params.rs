//! The built-in container parameters of the Kubernetes components (the `builtin` half of the
//! `com.cybozu.cke` label), the same [`ServiceParams`] the etcd and rivers built-ins use
//! ([`crate::planner::params`]), and their `run` options. CKE's values (`op/k8s/*.go`) adjusted by
//! the [`VersionSet`] of the image, and by [`HostSettings`] where a host needs something else.
//!
//! The arguments start with the program name (`kube-apiserver ...`), as in CKE; user `extra_args`
//! follow them when the container starts.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::{config, encryption, K8sError, VersionSet};
use crate::model::{ApiServerParams, Cluster, KubeletParams, Mount, Node, ServiceParams};
use crate::topology::*;

/// CKE's SELinux label for shared binds (`cke.LabelShared`).
const LABEL_SHARED: &str = "z";
/// CKE's SELinux label for private binds (`cke.LabelPrivate`).
const LABEL_PRIVATE: &str = "Z";

/// A Kubernetes component cke runs in a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Component {
    /// kube-apiserver (control planes).
    ApiServer,
    /// kube-controller-manager (control planes).
    ControllerManager,
    /// kube-scheduler (control planes).
    Scheduler,
    /// kubelet (every node).
    Kubelet,
    /// kube-proxy (every node).
    Proxy,
}

impl Component {
    /// All components, control plane first.
    pub const ALL: [Component; 5] = [
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
        Component::Kubelet,
        Component::Proxy,
    ];

    /// The container's name (CKE's).
    pub fn container_name(self) -> &'static str {
        match self {
            Component::ApiServer => KUBE_APISERVER_CONTAINER,
            Component::ControllerManager => KUBE_CONTROLLER_MANAGER_CONTAINER,
            Component::Scheduler => KUBE_SCHEDULER_CONTAINER,
            Component::Kubelet => KUBELET_CONTAINER,
            Component::Proxy => KUBE_PROXY_CONTAINER,
        }
    }

    /// Runs on control-plane nodes only.
    pub fn is_control_plane(self) -> bool {
        matches!(
            self,
            Component::ApiServer | Component::ControllerManager | Component::Scheduler
        )
    }
}

/// What the nodes' hosts need that is not a matter of the Kubernetes version. [`Default`] is CKE's
/// choice; [`HostSettings::testbed`] what the test bed's node hosts need (k8s-testbed.md). These
/// change the built-in params, so the label stays consistent with what runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSettings {
    /// `--log-driver=<this>` for every component; `None` leaves the engine's default (podman
    /// without journald fails with journald, CKE's choice).
    pub log_driver: Option<String>,
    /// The container runtime's state directory the kubelet binds read-write for image-disk stats:
    /// `/var/lib/docker` (CKE) or `/var/lib/containerd`.
    pub kubelet_runtime_dir: String,
    /// Bind `/sys/fs/cgroup` read-write into the kubelet: needed when the kubelet's cgroup root is
    /// prepared on the host (`--privileged` otherwise hides it behind a fresh cgroup mount).
    pub kubelet_cgroup_bind: bool,
    /// Bind `/lib/modules` into kube-proxy (CKE does; a bind source must exist, and it does not on
    /// every host).
    pub proxy_lib_modules: bool,
}

impl Default for HostSettings {
    fn default() -> Self {
        HostSettings {
            log_driver: Some("journald".into()),
            kubelet_runtime_dir: "/var/lib/docker".into(),
            kubelet_cgroup_bind: false,
            proxy_lib_modules: true,
        }
    }
}

impl HostSettings {
    /// The test bed's node hosts: no journald, kubelet on containerd with its own cgroup root, no
    /// `/lib/modules`.
    pub fn testbed() -> Self {
        HostSettings {
            log_driver: None,
            kubelet_runtime_dir: "/var/lib/containerd".into(),
            kubelet_cgroup_bind: true,
            proxy_lib_modules: false,
        }
    }
}

fn bind(path: &str, read_only: bool, propagation: &str, label: &str) -> Mount {
    Mount {
        source: path.into(),
        destination: path.into(),
        read_only,
        propagation: propagation.into(),
        selinux_label: label.into(),
    }
}

/// `/etc/machine-id` read-only and `/etc/kubernetes` read-only (shared label): every component.
fn common_binds() -> Vec<Mount> {
    vec![
        bind("/etc/machine-id", true, "", ""),
        bind(K8S_CONFIG_DIR, true, "", LABEL_SHARED),
    ]
}

fn params(args: Vec<String>, binds: Vec<Mount>) -> ServiceParams {
    ServiceParams {
        extra_args: args,
        extra_binds: binds,
        extra_env: BTreeMap::new(),
    }
}

/// The `run` options of a component, after the engine's own (`-d --name=N --network=host`): CKE's
/// system-container options (`--log-driver`, `--read-only`, `--uts=host`, `container.go` RunSystem)
/// then the component's (`op/k8s/*`: tmpfs `/run/kubernetes` for the apiserver, `--pid=host
/// --privileged --tmpfs=/tmp` for the kubelet, `--tmpfs=/run --privileged` for kube-proxy).
pub fn run_options(component: Component, host: &HostSettings) -> Vec<String> {
    let mut out = vec![];
    if let Some(driver) = &host.log_driver {
        out.push(format!("--log-driver={driver}"));
    }
    out.push("--read-only".into());
    out.push("--uts=host".into());
    let own: &[&str] = match component {
        Component::ApiServer => &["--mount", "type=tmpfs,dst=/run/kubernetes"],
        Component::ControllerManager | Component::Scheduler => &[],
        Component::Kubelet => &["--pid=host", "--privileged", "--tmpfs=/tmp"],
        Component::Proxy => &["--tmpfs=/run", "--privileged"],
    };
    out.extend(own.iter().map(|s| s.to_string()));
    out
}

/// The first address of the service subnet plus one: the `kubernetes` Service's ClusterIP (CKE
/// `pki.go`, `netutil.IPAdd(ip, 1)` of the network address as written).
pub fn kubernetes_service_ip(service_subnet: &str) -> Result<IpAddr, K8sError> {
    let net: IpNet = service_subnet.parse().map_err(|e| K8sError::ServiceSubnet {
        subnet: service_subnet.into(),
        reason: format!("not a CIDR: {e}"),
    })?;
    let err = || K8sError::ServiceSubnet {
        subnet: service_subnet.into(),
        reason: "has no address after its first".into(),
    };
    Ok(match net.addr() {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).checked_add(1).ok_or_else(err)?.into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).checked_add(1).ok_or_else(err)?.into()),
    })
}

/// What kube-apiserver's built-ins depend on.
#[derive(Debug, Clone, Copy)]
pub struct ApiServerInputs<'a> {
    /// The version set of the Kubernetes image.
    pub version: &'a VersionSet,
    /// The node's address (`--advertise-address`).
    pub address: &'a str,
    /// The cluster's `service_subnet`.
    pub service_subnet: &'a str,
    /// `options.kube-api` (the audit settings are read).
    pub options: &'a ApiServerParams,
    /// The cluster domain ([`config::cluster_domain`]).
    pub cluster_domain: &'a str,
}

/// kube-apiserver's built-in parameters (CKE `op/k8s/apiserver_restart.go` `APIServerParams`).
pub fn apiserver(i: &ApiServerInputs<'_>) -> ServiceParams {
    let pki = k8s_pki_path;
    let mut args = vec![
        "kube-apiserver".to_string(),
        "--allow-privileged".into(),
        format!("--etcd-servers=https://127.0.0.1:{ETCD_RIVERS_LISTEN_PORT}"),
        format!("--etcd-cafile={}", pki("etcd-ca.crt")),
        format!("--etcd-certfile={}", pki("apiserver-etcd-client.crt")),
        format!("--etcd-keyfile={}", pki("apiserver-etcd-client.key")),
        "--etcd-compaction-interval=5m".into(),
        "--bind-address=0.0.0.0".into(),
        format!("--client-ca-file={}", pki("ca.crt")),
        format!("--tls-cert-file={}", pki("apiserver.crt")),
        format!("--tls-private-key-file={}", pki("apiserver.key")),
        format!("--kubelet-certificate-authority={}", pki("ca.crt")),
        format!("--kubelet-client-certificate={}", pki("apiserver.crt")),
        format!("--kubelet-client-key={}", pki("apiserver.key")),
        format!("--enable-admission-plugins={}", i.version.admission_plugins.join(",")),
        format!(
            "--service-account-issuer=https://kubernetes.default.svc.{}",
            i.cluster_domain
        ),
        format!("--service-account-key-file={}", pki("service-account.crt")),
        format!("--service-account-signing-key-file={}", pki("service-account.key")),
        "--service-account-lookup".into(),
        format!("--requestheader-client-ca-file={}", pki("aggregation-ca.crt")),
        format!(
            "--requestheader-allowed-names={}",
            crate::topology::AGGREGATION_CLIENT_CN
        ),
        "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
        "--requestheader-group-headers=X-Remote-Group".into(),
        "--requestheader-username-headers=X-Remote-User".into(),
        format!("--proxy-client-cert-file={}", pki("aggregation.crt")),
        format!("--proxy-client-key-file={}", pki("aggregation.key")),
        "--authorization-mode=Node,RBAC".into(),
        format!("--advertise-address={}", i.address),
        "--endpoint-reconciler-type=none".into(),
        format!("--service-cluster-ip-range={}", i.service_subnet),
        format!("--encryption-provider-config={ENCRYPTION_CONFIG_PATH}"),
    ];
    if i.version.coordinated_leader_election {
        args.push("--feature-gates=CoordinatedLeaderElection=true".into());
        args.push("--runtime-config=coordination.k8s.io/v1beta1=true".into());
    }
    let audit = i.options;
    if audit.audit_log_enabled {
        let path = if audit.audit_log_path.is_empty() {
            "-"
        } else {
            &audit.audit_log_path
        };
        args.push(format!("--audit-log-path={path}"));
        args.push(format!(
            "--audit-policy-file={}",
            encryption::audit_policy_path(&audit.audit_log_policy)
        ));
    }
    params(args, common_binds())
}

/// kube-controller-manager's built-in parameters (CKE `op/k8s/controller_manager_boot.go`
/// `ControllerManagerParams`), plus `--port=0` where the version has an insecure port.
pub fn controller_manager(version: &VersionSet, cluster_name: &str, service_subnet: &str) -> ServiceParams {
    let kubeconfig = CONTROLLER_MANAGER_KUBECONFIG_PATH;
    let mut args = vec![
        "kube-controller-manager".to_string(),
        format!("--cluster-name={cluster_name}"),
        format!("--service-cluster-ip-range={service_subnet}"),
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        format!("--tls-cert-file={}", k8s_pki_path("apiserver.crt")),
        format!("--tls-private-key-file={}", k8s_pki_path("apiserver.key")),
        format!("--root-ca-file={}", k8s_pki_path("ca.crt")),
        format!(
            "--service-account-private-key-file={}",
            k8s_pki_path("service-account.key")
        ),
        "--use-service-account-credentials=true".into(),
    ];
    if version.insecure_port_off {
        args.push("--port=0".into());
    }
    params(args, common_binds())
}

/// kube-scheduler's built-in parameters (CKE `op/k8s/scheduler_boot.go` `SchedulerParams`), plus
/// `--port=0` where the version has an insecure port.
pub fn scheduler(version: &VersionSet) -> ServiceParams {
    let mut args = vec![
        "kube-scheduler".to_string(),
        format!("--config={SCHEDULER_CONFIG_PATH}"),
        format!("--authentication-kubeconfig={SCHEDULER_KUBECONFIG_PATH}"),
        format!("--authorization-kubeconfig={SCHEDULER_KUBECONFIG_PATH}"),
        format!("--tls-cert-file={}", k8s_pki_path("apiserver.crt")),
        format!("--tls-private-key-file={}", k8s_pki_path("apiserver.key")),
    ];
    if version.insecure_port_off {
        args.push("--port=0".into());
    }
    params(args, common_binds())
}

/// kubelet's built-in parameters (CKE `op/k8s/kubelet_boot.go` `KubeletServiceParams`). The CRI
/// endpoint is `options.kubelet.cri_endpoint` (default `/run/containerd/containerd.sock`); versions
/// with the remote-runtime flag get `--container-runtime=remote` and a `unix://` URL.
pub fn kubelet(version: &VersionSet, node: &Node, options: &KubeletParams, host: &HostSettings) -> ServiceParams {
    let mut args = vec![
        "kubelet".to_string(),
        format!("--config={KUBELET_CONFIG_PATH}"),
        format!("--kubeconfig={KUBELET_KUBECONFIG_PATH}"),
        format!("--hostname-override={}", node.nodename()),
    ];
    let cri = options.cri();
    if version.kubelet_remote_runtime_flag {
        args.push("--container-runtime=remote".into());
        if cri.contains("://") {
            args.push(format!("--container-runtime-endpoint={cri}"));
        } else {
            args.push(format!("--container-runtime-endpoint=unix://{cri}"));
        }
    } else {
        args.push(format!("--container-runtime-endpoint={cri}"));
    }
    let mut binds = vec![
        bind("/etc/machine-id", true, "", ""),
        bind("/etc/os-release", true, "", ""),
        bind(K8S_CONFIG_DIR, true, "", LABEL_SHARED),
        bind("/var/lib/kubelet", false, "rshared", LABEL_SHARED),
        bind(&host.kubelet_runtime_dir, false, "", LABEL_PRIVATE),
        bind(VOLUME_PLUGIN_DIR, false, "shared", LABEL_SHARED),
        bind("/var/log/pods", false, "", LABEL_SHARED),
        bind("/var/log/containers", false, "", LABEL_SHARED),
        bind("/run", false, "", ""),
        bind("/sys", false, "", ""),
    ];
    if host.kubelet_cgroup_bind {
        binds.push(bind("/sys/fs/cgroup", false, "", ""));
    }
    binds.extend([
        bind("/dev", false, "", ""),
        bind(CNI_BIN_DIR, true, "", LABEL_SHARED),
        bind(CNI_CONF_DIR, true, "", LABEL_SHARED),
        bind(CNI_VAR_DIR, false, "", LABEL_SHARED),
    ]);
    params(args, binds)
}

/// kube-proxy's built-in parameters (CKE `op/k8s/proxy_boot.go` `ProxyParams`).
pub fn proxy(host: &HostSettings) -> ServiceParams {
    let mut binds = common_binds();
    if host.proxy_lib_modules {
        binds.push(bind("/lib/modules", true, "", ""));
    }
    params(
        vec!["kube-proxy".into(), format!("--config={PROXY_CONFIG_PATH}")],
        binds,
    )
}

/// The cluster domain the apiserver's built-ins depend on: `options.kubelet.config.clusterDomain`,
/// else `cluster.local` (re-exported from [`config::cluster_domain`] for callers of this module).
pub fn cluster_domain(options: &KubeletParams) -> String {
    config::cluster_domain(options)
}

/// What every component's built-ins depend on besides the node.
#[derive(Debug, Clone, Copy)]
pub struct ClusterInputs<'a> {
    /// The declaration.
    pub cluster: &'a Cluster,
    /// The version set of the Kubernetes image.
    pub version: &'a VersionSet,
    /// The node hosts' settings.
    pub host: &'a HostSettings,
}

/// The built-in parameters of `component` on `node` (the `builtin` half of the params label), from
/// the declaration: one entry point for the planner (outdated detection) and the operators.
pub fn builtin(inputs: &ClusterInputs<'_>, component: Component, node: &Node) -> ServiceParams {
    let c = inputs.cluster;
    let o = &c.options;
    match component {
        Component::ApiServer => apiserver(&ApiServerInputs {
            version: inputs.version,
            address: &node.address,
            service_subnet: &c.service_subnet,
            options: &o.kube_api,
            cluster_domain: &config::cluster_domain(&o.kubelet),
        }),
        Component::ControllerManager => controller_manager(inputs.version, &c.name, &c.service_subnet),
        Component::Scheduler => scheduler(inputs.version),
        Component::Kubelet => kubelet(inputs.version, node, &o.kubelet, inputs.host),
        Component::Proxy => proxy(inputs.host),
    }
}

/// The user's parameters of `component` (`options.<component>` `extra_args`, `extra_binds`,
/// `extra_env`: the `extra` half of the params label).
pub fn extra(cluster: &Cluster, component: Component) -> ServiceParams {
    let o = &cluster.options;
    match component {
        Component::ApiServer => o.kube_api.service_params(),
        Component::ControllerManager => o.kube_controller_manager.clone(),
        Component::Scheduler => o.kube_scheduler.service_params(),
        Component::Kubelet => o.kubelet.service_params(),
        Component::Proxy => o.kube_proxy.service_params(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v135() -> &'static VersionSet {
        VersionSet::exact(35).unwrap()
    }

    fn v120() -> &'static VersionSet {
        VersionSet::exact(20).unwrap()
    }

    fn m(src: &str, ro: bool, prop: &str, label: &str) -> Mount {
        bind(src, ro, prop, label)
    }

    fn common() -> Vec<Mount> {
        vec![m("/etc/machine-id", true, "", ""), m("/etc/kubernetes", true, "", "z")]
    }

    // Expected lists copied from CKE's op/k8s/apiserver_restart.go `APIServerParams`
    // (cybozu-go/cke @ d66a146), with op.K8sPKIPath expanded to /etc/kubernetes/pki.
    const CKE_APISERVER_ARGS: &[&str] = &[
        "kube-apiserver",
        "--allow-privileged",
        "--etcd-servers=https://127.0.0.1:12379",
        "--etcd-cafile=/etc/kubernetes/pki/etcd-ca.crt",
        "--etcd-certfile=/etc/kubernetes/pki/apiserver-etcd-client.crt",
        "--etcd-keyfile=/etc/kubernetes/pki/apiserver-etcd-client.key",
        "--etcd-compaction-interval=5m",
        "--bind-address=0.0.0.0",
        "--client-ca-file=/etc/kubernetes/pki/ca.crt",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
        "--kubelet-certificate-authority=/etc/kubernetes/pki/ca.crt",
        "--kubelet-client-certificate=/etc/kubernetes/pki/apiserver.crt",
        "--kubelet-client-key=/etc/kubernetes/pki/apiserver.key",
        "--enable-admission-plugins=NodeRestriction,DenyServiceExternalIPs",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        "--service-account-key-file=/etc/kubernetes/pki/service-account.crt",
        "--service-account-signing-key-file=/etc/kubernetes/pki/service-account.key",
        "--service-account-lookup",
        "--requestheader-client-ca-file=/etc/kubernetes/pki/aggregation-ca.crt",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-username-headers=X-Remote-User",
        "--proxy-client-cert-file=/etc/kubernetes/pki/aggregation.crt",
        "--proxy-client-key-file=/etc/kubernetes/pki/aggregation.key",
        "--authorization-mode=Node,RBAC",
        "--advertise-address=10.0.0.1",
        "--endpoint-reconciler-type=none",
        "--service-cluster-ip-range=10.68.0.0/16",
        "--encryption-provider-config=/etc/kubernetes/apiserver/encryption.yml",
        "--feature-gates=CoordinatedLeaderElection=true",
        "--runtime-config=coordination.k8s.io/v1beta1=true",
    ];

    fn assert_args(got: &[String], want: &[&str]) {
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert_eq!(g, w, "argument {i}");
        }
        assert_eq!(got.len(), want.len(), "{got:?}");
    }

    fn api(version: &'static VersionSet, options: &ApiServerParams, domain: &str) -> ServiceParams {
        apiserver(&ApiServerInputs {
            version,
            address: "10.0.0.1",
            service_subnet: "10.68.0.0/16",
            options,
            cluster_domain: domain,
        })
    }

    #[test]
    fn apiserver_1_35_is_ckes() {
        let p = api(v135(), &ApiServerParams::default(), "cluster.local");
        assert_args(&p.extra_args, CKE_APISERVER_ARGS);
        assert_eq!(p.extra_binds, common());
        assert!(p.extra_env.is_empty());
    }

    #[test]
    fn apiserver_audit_and_domain() {
        let options = ApiServerParams {
            audit_log_enabled: true,
            audit_log_policy: "apiVersion: audit.k8s.io/v1\nkind: Policy\n".into(),
            ..Default::default()
        };
        let p = api(v135(), &options, "neco.local");
        let n = p.extra_args.len();
        assert_eq!(p.extra_args[n - 2], "--audit-log-path=-");
        // md5 of the policy text, as CKE's auditPolicyFilePath.
        assert_eq!(
            p.extra_args[n - 1],
            format!(
                "--audit-policy-file=/etc/kubernetes/apiserver/audit-policy-{:x}.yaml",
                md5::compute(options.audit_log_policy.as_bytes())
            )
        );
        assert!(p
            .extra_args
            .contains(&"--service-account-issuer=https://kubernetes.default.svc.neco.local".to_string()));
        let options = ApiServerParams {
            audit_log_path: "/var/log/audit/audit.log".into(),
            ..options
        };
        let p = api(v135(), &options, "cluster.local");
        assert!(p
            .extra_args
            .contains(&"--audit-log-path=/var/log/audit/audit.log".to_string()));
    }

    #[test]
    fn apiserver_1_20_has_no_newer_flags() {
        let p = api(v120(), &ApiServerParams::default(), "cluster.local");
        let want: Vec<&str> = CKE_APISERVER_ARGS
            .iter()
            .copied()
            .filter(|a| !a.starts_with("--feature-gates=") && !a.starts_with("--runtime-config="))
            .map(|a| {
                if a.starts_with("--enable-admission-plugins=") {
                    "--enable-admission-plugins=NodeRestriction"
                } else {
                    a
                }
            })
            .collect();
        assert_args(&p.extra_args, &want);
    }

    // CKE op/k8s/controller_manager_boot.go `ControllerManagerParams`.
    const CKE_CM_ARGS: &[&str] = &[
        "kube-controller-manager",
        "--cluster-name=mycluster",
        "--service-cluster-ip-range=10.68.0.0/16",
        "--kubeconfig=/etc/kubernetes/controller-manager/kubeconfig",
        "--authentication-kubeconfig=/etc/kubernetes/controller-manager/kubeconfig",
        "--authorization-kubeconfig=/etc/kubernetes/controller-manager/kubeconfig",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
        "--root-ca-file=/etc/kubernetes/pki/ca.crt",
        "--service-account-private-key-file=/etc/kubernetes/pki/service-account.key",
        "--use-service-account-credentials=true",
    ];

    // CKE op/k8s/scheduler_boot.go `SchedulerParams`.
    const CKE_SCHEDULER_ARGS: &[&str] = &[
        "kube-scheduler",
        "--config=/etc/kubernetes/scheduler/config.yml",
        "--authentication-kubeconfig=/etc/kubernetes/scheduler/kubeconfig",
        "--authorization-kubeconfig=/etc/kubernetes/scheduler/kubeconfig",
        "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
        "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
    ];

    #[test]
    fn controller_manager_and_scheduler() {
        let p = controller_manager(v135(), "mycluster", "10.68.0.0/16");
        assert_args(&p.extra_args, CKE_CM_ARGS);
        assert_eq!(p.extra_binds, common());
        let p = scheduler(v135());
        assert_args(&p.extra_args, CKE_SCHEDULER_ARGS);
        assert_eq!(p.extra_binds, common());
        // 1.20: the insecure port is turned off.
        let p = controller_manager(v120(), "mycluster", "10.68.0.0/16");
        let want: Vec<&str> = CKE_CM_ARGS.iter().copied().chain(["--port=0"]).collect();
        assert_args(&p.extra_args, &want);
        let p = scheduler(v120());
        let want: Vec<&str> = CKE_SCHEDULER_ARGS.iter().copied().chain(["--port=0"]).collect();
        assert_args(&p.extra_args, &want);
    }

    // CKE op/k8s/kubelet_boot.go `KubeletServiceParams` binds.
    fn cke_kubelet_binds() -> Vec<Mount> {
        vec![
            m("/etc/machine-id", true, "", ""),
            m("/etc/os-release", true, "", ""),
            m("/etc/kubernetes", true, "", "z"),
            m("/var/lib/kubelet", false, "rshared", "z"),
            m("/var/lib/docker", false, "", "Z"),
            m("/opt/volume/bin", false, "shared", "z"),
            m("/var/log/pods", false, "", "z"),
            m("/var/log/containers", false, "", "z"),
            m("/run", false, "", ""),
            m("/sys", false, "", ""),
            m("/dev", false, "", ""),
            m("/opt/cni/bin", true, "", "z"),
            m("/etc/cni/net.d", true, "", "z"),
            m("/var/lib/cni", false, "", "z"),
        ]
    }

    #[test]
    fn kubelet_1_35_is_ckes() {
        let mut node = Node::new("10.0.0.3", "cybozu", false);
        node.hostname = "node3".into();
        let p = kubelet(v135(), &node, &KubeletParams::default(), &HostSettings::default());
        assert_args(
            &p.extra_args,
            &[
                "kubelet",
                "--config=/etc/kubernetes/kubelet/config.yml",
                "--kubeconfig=/etc/kubernetes/kubelet/kubeconfig",
                "--hostname-override=node3",
                "--container-runtime-endpoint=/run/containerd/containerd.sock",
            ],
        );
        assert_eq!(p.extra_binds, cke_kubelet_binds());
    }

    #[test]
    fn kubelet_1_20_on_the_testbed() {
        let node = Node::new("10.0.0.3", "cybozu", false);
        let options = KubeletParams {
            cri_endpoint: "/run/containerd/containerd.sock".into(),
            ..Default::default()
        };
        let p = kubelet(v120(), &node, &options, &HostSettings::testbed());
        assert_args(
            &p.extra_args,
            &[
                "kubelet",
                "--config=/etc/kubernetes/kubelet/config.yml",
                "--kubeconfig=/etc/kubernetes/kubelet/kubeconfig",
                "--hostname-override=10.0.0.3",
                "--container-runtime=remote",
                "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
            ],
        );
        let mut want = cke_kubelet_binds();
        want[4] = m("/var/lib/containerd", false, "", "Z");
        want.insert(10, m("/sys/fs/cgroup", false, "", ""));
        assert_eq!(p.extra_binds, want);
        let options = KubeletParams {
            cri_endpoint: "unix:///run/other.sock".into(),
            ..Default::default()
        };
        let p = kubelet(v120(), &node, &options, &HostSettings::testbed());
        assert_eq!(p.extra_args[5], "--container-runtime-endpoint=unix:///run/other.sock");
    }

    #[test]
    fn proxy_params_and_run_options() {
        let p = proxy(&HostSettings::default());
        assert_args(
            &p.extra_args,
            &["kube-proxy", "--config=/etc/kubernetes/proxy/config.yml"],
        );
        let mut want = common();
        want.push(m("/lib/modules", true, "", ""));
        assert_eq!(p.extra_binds, want);
        assert_eq!(proxy(&HostSettings::testbed()).extra_binds, common());

        let cke = HostSettings::default();
        assert_eq!(
            run_options(Component::Kubelet, &cke),
            [
                "--log-driver=journald",
                "--read-only",
                "--uts=host",
                "--pid=host",
                "--privileged",
                "--tmpfs=/tmp"
            ]
        );
        assert_eq!(
            run_options(Component::ApiServer, &cke)[3..],
            ["--mount", "type=tmpfs,dst=/run/kubernetes"]
        );
        assert_eq!(
            run_options(Component::Proxy, &cke)[3..],
            ["--tmpfs=/run", "--privileged"]
        );
        assert_eq!(run_options(Component::Scheduler, &cke).len(), 3);
        assert_eq!(
            run_options(Component::ControllerManager, &HostSettings::testbed()),
            ["--read-only", "--uts=host"]
        );
        assert_eq!(Component::Kubelet.container_name(), "kubelet");
        assert!(Component::Scheduler.is_control_plane() && !Component::Proxy.is_control_plane());
    }

    #[test]
    fn service_ip() {
        assert_eq!(kubernetes_service_ip("10.68.0.0/16").unwrap().to_string(), "10.68.0.1");
        assert_eq!(kubernetes_service_ip("fd00::/108").unwrap().to_string(), "fd00::1");
        let e = kubernetes_service_ip("10.68.0.0").unwrap_err().to_string();
        assert!(e.contains("service_subnet") && e.contains("10.68.0.0"), "{e}");
    }

    #[test]
    fn builtin_and_extra_follow_the_declaration() {
        let mut node = Node::new("10.0.0.1", "u", true);
        node.hostname = "cp1".into();
        let mut cluster = Cluster::new("mycluster", "10.68.0.0/16", vec![node.clone()]);
        cluster.options.kubelet.config = Some(serde_json::json!({
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "clusterDomain": "neco.local",
        }));
        cluster.options.kube_api.extra_args = vec!["--v=2".into()];
        cluster.options.kubelet.extra_env.insert("A".into(), "b".into());
        let host = HostSettings::default();
        let inputs = ClusterInputs {
            cluster: &cluster,
            version: v135(),
            host: &host,
        };
        let api = builtin(&inputs, Component::ApiServer, &node);
        assert!(api
            .extra_args
            .contains(&"--service-account-issuer=https://kubernetes.default.svc.neco.local".to_string()));
        assert!(api.extra_args.contains(&"--advertise-address=10.0.0.1".to_string()));
        assert_eq!(
            builtin(&inputs, Component::ControllerManager, &node).extra_args[1],
            "--cluster-name=mycluster"
        );
        assert_eq!(
            builtin(&inputs, Component::Kubelet, &node).extra_args[3],
            "--hostname-override=cp1"
        );
        assert_eq!(builtin(&inputs, Component::Scheduler, &node), scheduler(v135()));
        assert_eq!(builtin(&inputs, Component::Proxy, &node), proxy(&host));
        assert_eq!(extra(&cluster, Component::ApiServer).extra_args, ["--v=2"]);
        assert_eq!(extra(&cluster, Component::Kubelet).extra_env["A"], "b");
        assert!(extra(&cluster, Component::Proxy).is_empty());
    }
}
