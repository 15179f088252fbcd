//! Helpers of the end-to-end tests on real Kubernetes (`mtest --k8s`): kubectl with an admin
//! kubeconfig, waiting with the cke log's tail on timeout, and the options the node hosts need.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use cke_testkit::Mtest;

/// What the mtest node hosts need under a declaration's `options` (see tests/e2e_k8s.rs): no swap
/// check, small eviction thresholds, cgroupfs without a per-QoS tree, no image garbage collection,
/// and kube-proxy writing no global conntrack sysctls.
pub const TESTBED_OPTIONS: &str = r#"options:
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
"#;

/// kubectl with a kubeconfig.
pub struct Kubectl {
    /// The kubectl binary.
    pub bin: PathBuf,
    /// The admin kubeconfig (`ckecli kubernetes issue`).
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl of the test bed's Kubernetes binaries, with `kubeconfig`.
    pub fn new(m: &Mtest, kubeconfig: PathBuf) -> Kubectl {
        let dir = std::env::var("CKE_K8S_BIN")
            .ok()
            .or_else(|| m.env.get("K8S_BIN").cloned())
            .expect("the Kubernetes binaries: run scripts/build-k8s.sh (make test does)");
        Kubectl {
            bin: PathBuf::from(dir).join("kubectl"),
            kubeconfig,
        }
    }

    /// Runs kubectl.
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=10s")
            .args(args)
            .output()
            .unwrap()
    }

    /// The object as JSON (Null when it cannot be read).
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        serde_json::from_slice(&self.run(&a).stdout).unwrap_or_default()
    }

    /// Names of the Ready Nodes, sorted.
    pub fn ready_nodes(&self) -> Vec<String> {
        let mut ready: Vec<String> = self.json(&["nodes"])["items"]
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
            .collect();
        ready.sort();
        ready
    }

    /// Names of the Nodes matching the label selector, sorted.
    pub fn nodes_with(&self, selector: &str) -> Vec<String> {
        let mut names: Vec<String> = self.json(&["nodes", "-l", selector])["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        names.sort();
        names
    }

    /// The Node's taints as `key=value:effect`.
    pub fn taints(&self, name: &str) -> Vec<String> {
        self.json(&["node", name])["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{}={}:{}",
                    t["key"].as_str().unwrap_or_default(),
                    t["value"].as_str().unwrap_or_default(),
                    t["effect"].as_str().unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Calls `f` every second until it returns something; panics after `limit` with the tail of the cke
/// log at `log`.
pub fn wait_for<T>(what: &str, limit: Duration, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
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
