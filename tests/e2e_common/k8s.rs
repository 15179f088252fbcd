//! Helpers of the end-to-end tests on real Kubernetes 1.20.2: the declaration these node hosts need,
//! a kubectl with the admin kubeconfig, and bringing a cluster up through cke until every Node is
//! Ready.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cke_testkit::Mtest;

use super::*;

/// The declaration: nodes `cps` as control planes and `workers`, with what these node hosts need,
/// plus `extra` YAML appended after the `options` section (more options indented by two, or
/// top-level sections such as `reboot:`).
///
/// What the node hosts need: cgroupfs, and no per-QoS cgroup tree (the node hosts share one cgroup
/// hierarchy; kubelets each managing a `/kubepods` there would kill each other's pods as orphans,
/// and a cluster-wide declaration cannot give each its own root); no swap check; small eviction
/// thresholds; no image garbage collection (the local pause and busybox images cannot be pulled
/// again, and a full shared disk would make the kubelets delete them); kube-proxy writing no global
/// conntrack sysctls.
pub fn declaration(m: &Mtest, cps: &[usize], workers: &[usize], extra: &str) -> String {
    declaration_with(m, cps, workers, &[], extra)
}

/// [`declaration`] with more fields (inline YAML, e.g. `labels: {a: b}`) for some nodes.
pub fn declaration_with(m: &Mtest, cps: &[usize], workers: &[usize], attrs: &[(usize, &str)], extra: &str) -> String {
    let mut s = String::from("name: e2e-k8s\nservice_subnet: 10.201.0.0/24\nnodes:\n");
    let more = |i: usize| {
        attrs
            .iter()
            .filter(|(n, _)| *n == i)
            .map(|(_, a)| format!(", {a}"))
            .collect::<String>()
    };
    for i in cps {
        s.push_str(&format!(
            "  - {{address: {}, user: root, control_plane: true{}}}\n",
            m.node(*i),
            more(*i)
        ));
    }
    for i in workers {
        s.push_str(&format!("  - {{address: {}, user: root{}}}\n", m.node(*i), more(*i)));
    }
    s.push_str(
        r#"options:
  kubelet:
    config:
      apiVersion: kubelet.config.k8s.io/v1beta1
      kind: KubeletConfiguration
      cgroupDriver: cgroupfs
      cgroupsPerQOS: false
      imageGCHighThresholdPercent: 100
      imageGCLowThresholdPercent: 99
      enforceNodeAllocatable: []
      failSwapOn: false
      evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
  kube-proxy:
    config:
      apiVersion: kubeproxy.config.k8s.io/v1alpha1
      kind: KubeProxyConfiguration
      mode: iptables
      clusterCIDR: 10.200.0.0/16
      conntrack: {maxPerCore: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
"#,
    );
    s.push_str(extra);
    s
}

/// kubectl with the admin kubeconfig.
pub struct Kubectl {
    /// The kubectl binary.
    pub bin: PathBuf,
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs `kubectl ARGS`.
    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout=10s"])
            .args(args);
        cke_testkit::output_with_stdin(&mut c, stdin)
    }

    /// Runs `kubectl ARGS`, which must succeed; its standard output.
    #[track_caller]
    pub fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(args, stdin);
        assert!(
            o.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `kubectl get ARGS -o json` (Null when it cannot be read).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        let o = self.run(&a, None);
        serde_json::from_slice(&o.stdout).unwrap_or_default()
    }

    /// Names of the Nodes matching the label selector, sorted.
    pub fn nodes_with(&self, selector: &str) -> Vec<String> {
        let o = self.run(
            &[
                "get",
                "nodes",
                "-l",
                selector,
                "-o",
                "jsonpath={.items[*].metadata.name}",
            ],
            None,
        );
        let mut v: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    }

    /// The Node's taints as `key=value:effect`.
    pub fn taints(&self, name: &str) -> Vec<String> {
        let o = self.run(&["get", "node", name, "-o", "json"], None);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_default();
        v["spec"]["taints"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        format!(
                            "{}={}:{}",
                            t["key"].as_str().unwrap_or_default(),
                            t["value"].as_str().unwrap_or_default(),
                            t["effect"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The ready and not-ready IPs of Endpoints `ns/name` and of EndpointSlice `ns/name` (each
    /// sorted); empty when absent.
    pub fn endpoints(&self, ns: &str, name: &str) -> [(Vec<String>, Vec<String>); 2] {
        let ips = |v: &serde_json::Value| -> Vec<String> {
            let mut l: Vec<String> = v
                .as_array()
                .map(|a| a.iter().filter_map(|e| e["ip"].as_str().map(str::to_string)).collect())
                .unwrap_or_default();
            l.sort();
            l
        };
        let ep = self.json(&["endpoints", "-n", ns, name]);
        let subset = &ep["subsets"][0];
        let from_ep = (ips(&subset["addresses"]), ips(&subset["notReadyAddresses"]));
        // Kubernetes 1.20 serves EndpointSlices as discovery.k8s.io/v1beta1.
        let slice = self.json(&["endpointslices.v1beta1.discovery.k8s.io", "-n", ns, name]);
        let (mut ready, mut not_ready) = (vec![], vec![]);
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            let ip = e["addresses"][0].as_str().unwrap_or_default().to_string();
            if e["conditions"]["ready"].as_bool() == Some(true) {
                ready.push(ip);
            } else {
                not_ready.push(ip);
            }
        }
        ready.sort();
        not_ready.sort();
        [from_ep, (ready, not_ready)]
    }

    /// Ready Node names.
    pub fn ready_nodes(&self) -> Vec<String> {
        let nodes = self.json(&["nodes"]);
        nodes["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| {
                n["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect()
    }
}

/// The kubectl of the Kubernetes build.
pub fn kubectl_bin(m: &Mtest) -> PathBuf {
    let dir = std::env::var("CKE_K8S_BIN")
        .ok()
        .or_else(|| m.env.get("K8S_BIN").cloned())
        .expect("the Kubernetes binaries: run scripts/build-k8s.sh (make test does)");
    PathBuf::from(dir).join("kubectl")
}

/// The container's start time (podman's `.State.StartedAt`) on node `i`, or "" when absent.
pub fn started_at(m: &Mtest, i: usize, name: &str) -> String {
    let o = m.run(&[
        "exec",
        &i.to_string(),
        "podman",
        "inspect",
        "-f",
        "{{.State.StartedAt}} {{.State.Running}}",
        name,
    ]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// The container runs on node `i`.
pub fn running(m: &Mtest, i: usize, name: &str) -> bool {
    started_at(m, i, name).ends_with("true")
}

/// Polls `f` every second until it gives a value; after `limit`, fails with the tail of cke's log.
pub fn wait<T>(what: &str, limit: Duration, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() > limit {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            panic!("timed out after {limit:?} waiting for {what}\ncke log (tail):\n{tail}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A cluster cke brought up on node hosts with Kubernetes.
pub struct K8sCluster {
    /// The cke process (killed on drop, before the node hosts go).
    pub cke: Cke,
    /// The node hosts (torn down on drop).
    pub m: Mtest,
    /// Logs, the kubeconfig, scripts.
    pub dir: tempfile::TempDir,
    /// cke's log.
    pub log: PathBuf,
    /// The admin kubectl.
    pub kubectl: Kubectl,
    /// How long the bring-up took, from `cluster set` to every Node Ready.
    pub bootstrap: Duration,
}

/// Brings up `nodes` node hosts with Kubernetes, starts cke, declares the cluster `declare` gives
/// (with `cps` control planes) and waits until every node is a Ready Node.
pub fn bring_up(nodes: usize, cps: usize, declare: impl FnOnce(&Mtest, &Path) -> String) -> K8sCluster {
    let (m, dir) = mtest_up_with(nodes, &["--k8s"]);
    let log = dir.path().join("cke.log");
    prepare(&m, cps);
    let image = m
        .env
        .get("K8S_IMAGE")
        .cloned()
        .unwrap_or("localhost/cke-kubernetes:1.20.2".into());
    let cke = start_cke_with(
        &m,
        "e2e",
        &log,
        &[],
        &["--node-profile", "testbed", "--kubernetes-image", &image],
    );
    let t0 = Instant::now();
    let text = declare(&m, dir.path());
    ok(&m, &["cluster", "set", "-"], Some(&text));
    let kubeconfig = dir.path().join("kubeconfig");
    let kubectl = Kubectl {
        bin: kubectl_bin(&m),
        kubeconfig: kubeconfig.clone(),
    };
    let mut all: Vec<String> = (1..=nodes).map(|i| m.node(i)).collect();
    all.sort();
    wait("every Node Ready", Duration::from_secs(480), &log, || {
        let issued = ckecli(&m, &["kubernetes", "issue"], None);
        if !issued.status.success() {
            return None;
        }
        std::fs::write(&kubeconfig, &issued.stdout).unwrap();
        let mut ready = kubectl.ready_nodes();
        ready.sort();
        (ready == all).then_some(())
    });
    let bootstrap = t0.elapsed();
    K8sCluster {
        cke,
        m,
        dir,
        log,
        kubectl,
        bootstrap,
    }
}
