//! Helpers of the end-to-end tests on real Kubernetes 1.20.2: the declaration these node hosts need,
//! a kubectl with the admin kubeconfig, the cluster's upstream DNS server, and bringing a cluster up
//! through cke (with the local node-dns images) until every Node is Ready.

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
/// conntrack sysctls. The cluster's `dns_servers` is [`upstream_dns_address`].
pub fn declaration(m: &Mtest, cps: &[usize], workers: &[usize], extra: &str) -> String {
    declaration_with(m, cps, workers, &[], extra)
}

/// [`declaration`] with more fields (inline YAML, e.g. `labels: {a: b}`) for some nodes.
pub fn declaration_with(m: &Mtest, cps: &[usize], workers: &[usize], attrs: &[(usize, &str)], extra: &str) -> String {
    let mut s = format!(
        "name: e2e-k8s\nservice_subnet: 10.201.0.0/24\ndns_servers: [{}]\nnodes:\n",
        upstream_dns_address(m)
    );
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
    s.push_str(TESTBED_OPTIONS);
    s.push_str(extra);
    s
}

/// What the mtest node hosts need under a declaration's `options` ([`declaration`] says why): no
/// swap check, small eviction thresholds, cgroupfs without a per-QoS tree, no image garbage
/// collection, and kube-proxy writing no global conntrack sysctls.
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

/// kubectl with the admin kubeconfig.
pub struct Kubectl {
    /// The kubectl binary.
    pub bin: PathBuf,
    /// The kubeconfig.
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl of the test bed's Kubernetes binaries ([`kubectl_bin`]), with `kubeconfig`.
    pub fn new(m: &Mtest, kubeconfig: PathBuf) -> Kubectl {
        Kubectl {
            bin: kubectl_bin(m),
            kubeconfig,
        }
    }

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

    /// The object at API `path` (Null when it cannot be read).
    pub fn raw(&self, path: &str) -> serde_json::Value {
        let o = self.run(&["get", "--raw", path], None);
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

    /// One line per pod of `namespace` matching `selector` (node, phase, each container's readiness,
    /// state, reason and restarts), then the namespace's last 30 events: what a timed-out wait shows.
    pub fn pods_summary(&self, namespace: &str, selector: &str) -> String {
        let pods = self.json(&["pods", "-n", namespace, "-l", selector]);
        let mut out = String::new();
        for p in pods["items"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "pod {} node={} phase={} deleting={}\n",
                p["metadata"]["name"].as_str().unwrap_or("?"),
                p["spec"]["nodeName"].as_str().unwrap_or("-"),
                p["status"]["phase"].as_str().unwrap_or("?"),
                p["metadata"]["deletionTimestamp"].as_str().unwrap_or("no"),
            ));
            for c in p["status"]["containerStatuses"].as_array().into_iter().flatten() {
                out.push_str(&format!(
                    "  container {} ready={} restarts={} state={} last={}\n",
                    c["name"].as_str().unwrap_or("?"),
                    c["ready"],
                    c["restartCount"],
                    c["state"],
                    c["lastState"]
                ));
            }
            for c in p["status"]["conditions"].as_array().into_iter().flatten() {
                if c["status"] != "True" {
                    out.push_str(&format!("  condition {}\n", c));
                }
            }
        }
        let o = self.run(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"], None);
        let events = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = events.lines().collect();
        out.push_str("events (last 30):\n");
        out.push_str(&lines[lines.len().saturating_sub(30)..].join("\n"));
        out
    }

    /// Names of the Ready Nodes, sorted.
    pub fn ready_nodes(&self) -> Vec<String> {
        let nodes = self.json(&["nodes"]);
        let mut ready: Vec<String> = nodes["items"]
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

/// Polls `f` every second until it gives a value; after `limit`, fails with the tail of cke's log.
pub fn wait<T>(what: &str, limit: Duration, log: &Path, f: impl FnMut() -> Option<T>) -> T {
    wait_showing(what, limit, log, f, String::new)
}

/// [`wait`] that, when it times out, also shows what `show` gives (the state of the objects waited
/// for).
pub fn wait_showing<T>(
    what: &str,
    limit: Duration,
    log: &Path,
    mut f: impl FnMut() -> Option<T>,
    show: impl FnOnce() -> String,
) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() > limit {
            let state = show();
            if !state.is_empty() {
                eprintln!("state when the wait for {what} timed out:\n{state}");
            }
            let text = std::fs::read_to_string(log).unwrap_or_default();
            // The queues' checks succeed every pass: leave them out, so that the tail shows
            // what cke planned, warned about and failed.
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains("host command succeeded")).collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            panic!("timed out after {limit:?} waiting for {what}\ncke log (tail, without successful host commands):\n{tail}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The name the upstream DNS server answers, and its address.
pub const UPSTREAM_NAME: &str = "dns.e2e.example.org";
pub const UPSTREAM_ADDR: &str = "10.1.2.3";

/// The cluster's `dns_servers`: the node hosts' bridge address on the host.
pub fn upstream_dns_address(m: &Mtest) -> String {
    format!("{}.1", m.subnet)
}

/// The upstream DNS server of the cluster (its `dns_servers`): Debian's dnsmasq on the node hosts'
/// bridge address, port 53, answering [`UPSTREAM_NAME`] and nothing else, its queries logged in
/// `dir/dnsmasq.log`; killed on drop.
pub fn start_upstream_dns(m: &Mtest, dir: &Path) -> cke_testkit::ProcessGuard {
    let bin = cke_testkit::find_binary("dnsmasq")
        .expect("no dnsmasq: run scripts/install-test-deps.sh (Debian's dnsmasq-base)");
    let log = std::fs::File::create(dir.join("dnsmasq.log")).unwrap();
    let child = Command::new(bin)
        .args(["--keep-in-foreground", "--no-resolv", "--no-hosts", "--bind-interfaces"])
        .arg(format!("--listen-address={}", upstream_dns_address(m)))
        .args(["--port=53", "--user=root", "--log-queries", "--log-facility=-"])
        .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
        .arg(format!("--host-record={UPSTREAM_NAME},{UPSTREAM_ADDR}"))
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut guard = cke_testkit::ProcessGuard(child);
    // It answers before the cluster is declared.
    let t = Instant::now();
    loop {
        let o = Command::new("busybox")
            .args(["nslookup", "-type=a", UPSTREAM_NAME, &upstream_dns_address(m)])
            .output()
            .expect("cannot run busybox (busybox-static)");
        if String::from_utf8_lossy(&o.stdout).contains(UPSTREAM_ADDR) {
            return guard;
        }
        let exited = guard.0.try_wait().unwrap();
        if exited.is_some() || t.elapsed() > Duration::from_secs(10) {
            panic!(
                "dnsmasq does not answer ({exited:?}): {}",
                std::fs::read_to_string(dir.join("dnsmasq.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes the admin kubeconfig (`ckecli kubernetes issue`) to `path`; false when it cannot be issued
/// yet (no CA or no apiserver).
pub fn issue_kubeconfig(m: &Mtest, path: &Path) -> bool {
    let issued = ckecli(m, &["kubernetes", "issue"], None);
    if issued.status.success() {
        std::fs::write(path, &issued.stdout).unwrap();
    }
    issued.status.success()
}

/// A cluster cke brought up on node hosts with Kubernetes.
pub struct K8sCluster {
    /// The cke process (killed on drop, before the node hosts go).
    pub cke: Cke,
    /// The cluster's upstream DNS server ([`start_upstream_dns`]).
    pub dns: cke_testkit::ProcessGuard,
    /// The node hosts (torn down on drop).
    pub m: Mtest,
    /// Logs, the kubeconfig, scripts.
    pub dir: tempfile::TempDir,
    /// cke's log.
    pub log: PathBuf,
    /// The admin kubectl.
    pub kubectl: Kubectl,
    /// The Kubernetes image cke was started with.
    pub image: String,
    /// The node-dns DaemonSet's local images (scripts/build-k8s-images.sh; mtest imported them into
    /// every node's containerd): unbound and its exporter. CoreDNS has no local image: its pods
    /// cannot run here.
    pub unbound_image: String,
    pub exporter_image: String,
    /// Every node address, sorted.
    pub all: Vec<String>,
    /// When cke started.
    pub started: Instant,
    /// How long the bring-up took, from `cluster set` to every Node Ready.
    pub bootstrap: Duration,
}

/// Brings up `nodes` node hosts with Kubernetes and the cluster's upstream DNS server, starts cke,
/// declares the cluster `declare` gives (with `cps` control planes) and waits until every node is a
/// Ready Node.
pub fn bring_up(nodes: usize, cps: usize, declare: impl FnOnce(&Mtest, &Path) -> String) -> K8sCluster {
    let t_up = Instant::now();
    let (m, dir) = mtest_up_with(nodes, &["--k8s"]);
    let mtest_up = t_up.elapsed();
    let log = dir.path().join("cke.log");
    prepare(&m, cps);
    let image = m
        .env
        .get("K8S_IMAGE")
        .cloned()
        .unwrap_or("localhost/cke-kubernetes:1.20.2".into());
    let unbound_image = m.env["UNBOUND_IMAGE"].clone();
    let exporter_image = m.env["UNBOUND_EXPORTER_IMAGE"].clone();
    let dns = start_upstream_dns(&m, dir.path());
    let cke = start_cke_with(
        &m,
        "e2e",
        &log,
        &[],
        &[
            "--node-profile",
            "testbed",
            "--kubernetes-image",
            &image,
            "--unbound-image",
            &unbound_image,
            "--unbound-exporter-image",
            &exporter_image,
        ],
    );
    let started = Instant::now();
    println!(
        "FIGURE bring-up: mtest up {mtest_up:?}, then Vault, dnsmasq and cke started {:?}",
        t_up.elapsed() - mtest_up
    );
    let text = declare(&m, dir.path());
    ok(&m, &["cluster", "set", "-"], Some(&text));
    let kubeconfig = dir.path().join("kubeconfig");
    let kubectl = Kubectl::new(&m, kubeconfig.clone());
    let mut all: Vec<String> = (1..=nodes).map(|i| m.node(i)).collect();
    all.sort();
    let mut issued = false;
    wait("every Node Ready", Duration::from_secs(600), &log, || {
        // The admin kubeconfig can be issued once the CA and an apiserver exist (once is enough).
        issued = issued || issue_kubeconfig(&m, &kubeconfig);
        (issued && kubectl.ready_nodes() == all).then_some(())
    });
    let bootstrap = started.elapsed();
    K8sCluster {
        cke,
        dns,
        m,
        dir,
        log,
        kubectl,
        image,
        unbound_image,
        exporter_image,
        all,
        started,
        bootstrap,
    }
}
