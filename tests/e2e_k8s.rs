//! End to end with real Kubernetes 1.20.2 (built by scripts/build-k8s.sh) on mtest node hosts with
//! containerd (`--k8s`): cke brings up 3 control planes and 2 workers from a declaration, keeps them
//! up, and changes them safely; the Nodes carry the labels and taints cke keeps (update-node). Needs
//! root (make test runs it as root).

mod e2e_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cke_testkit::Mtest;
use e2e_common::*;

const CPS: [usize; 3] = [1, 2, 3];
const WORKERS: [usize; 2] = [4, 5];

/// The declaration: CKE's options plus what these node hosts need: no swap check, small eviction
/// thresholds, kube-proxy writing no global conntrack sysctls, cgroupfs, and no per-QoS cgroup tree
/// (the node hosts share one cgroup hierarchy; kubelets each managing a `/kubepods` there would kill
/// each other's pods as orphans, and a cluster-wide declaration cannot give each its own root), and no
/// image garbage collection (the local pause and busybox images cannot be pulled again, and a full
/// shared disk would make the kubelets delete them).
fn declaration(m: &Mtest, cps: &[usize], workers: &[usize], apiserver_args: &[&str]) -> String {
    declaration_with(m, cps, workers, apiserver_args, &[])
}

/// [`declaration`] with more fields (inline YAML, e.g. `labels: {a: b}`) for some nodes.
fn declaration_with(
    m: &Mtest,
    cps: &[usize],
    workers: &[usize],
    apiserver_args: &[&str],
    attrs: &[(usize, &str)],
) -> String {
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
    if !apiserver_args.is_empty() {
        s.push_str("  kube-api:\n    extra_args:\n");
        for a in apiserver_args {
            s.push_str(&format!("      - \"{a}\"\n"));
        }
    }
    s
}

struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut c = Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--request-timeout=10s"])
            .args(args);
        cke_testkit::output_with_stdin(&mut c, stdin)
    }

    #[track_caller]
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(args, stdin);
        assert!(
            o.status.success(),
            "kubectl {args:?}: {}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Names of the Nodes matching the label selector, sorted.
    fn nodes_with(&self, selector: &str) -> Vec<String> {
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
    fn taints(&self, name: &str) -> Vec<String> {
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

    /// The object as JSON (Null when it cannot be read).
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend(["-o", "json"]);
        let o = self.run(&a, None);
        serde_json::from_slice(&o.stdout).unwrap_or_default()
    }

    /// The ready and not-ready IPs of Endpoints `ns/name` and of EndpointSlice `ns/name` (each
    /// sorted); empty when absent.
    fn endpoints(&self, ns: &str, name: &str) -> [(Vec<String>, Vec<String>); 2] {
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
    fn ready_nodes(&self) -> Vec<String> {
        let o = self.run(
            &[
                "get",
                "nodes",
                "-o",
                r#"jsonpath={range .items[*]}{.metadata.name}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#,
            ],
            None,
        );
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(" True").map(str::to_string))
            .collect()
    }
}

fn kubectl_bin(m: &Mtest) -> PathBuf {
    let dir = std::env::var("CKE_K8S_BIN")
        .ok()
        .or_else(|| m.env.get("K8S_BIN").cloned())
        .expect("the Kubernetes binaries: run scripts/build-k8s.sh (make test does)");
    PathBuf::from(dir).join("kubectl")
}

/// The container's start time (podman's `.State.StartedAt`) on node `i`, or "" when absent.
fn started_at(m: &Mtest, i: usize, name: &str) -> String {
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

fn running(m: &Mtest, i: usize, name: &str) -> bool {
    started_at(m, i, name).ends_with("true")
}

fn wait<T>(what: &str, limit: Duration, log: &Path, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if t0.elapsed() > limit {
            let tail: String = std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            panic!("timed out after {limit:?} waiting for {what}\ncke log (tail):\n{tail}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cke_brings_up_kubernetes_keeps_it_up_and_changes_it_safely() {
    let (m, dir) = mtest_up_with(5, &["--k8s"]);
    let log = dir.path().join("cke.log");
    prepare(&m, CPS.len());
    let image = m
        .env
        .get("K8S_IMAGE")
        .cloned()
        .unwrap_or("localhost/cke-kubernetes:1.20.2".into());
    let _cke = start_cke_with(
        &m,
        "e2e",
        &log,
        &[],
        &["--node-profile", "testbed", "--kubernetes-image", &image],
    );
    let t0 = Instant::now();
    ok(
        &m,
        &["cluster", "set", "-"],
        Some(&declaration(&m, &CPS, &WORKERS, &[])),
    );

    // Bootstrap: every declared node becomes a Ready Node under its declared name.
    let kubeconfig = dir.path().join("kubeconfig");
    let k = Kubectl {
        bin: kubectl_bin(&m),
        kubeconfig: kubeconfig.clone(),
    };
    let all: Vec<String> = (1..=5).map(|i| m.node(i)).collect();
    wait("every Node Ready", Duration::from_secs(420), &log, || {
        // The admin kubeconfig works once the CA and an apiserver exist.
        let text = ckecli(&m, &["kubernetes", "issue"], None);
        if !text.status.success() {
            return None;
        }
        std::fs::write(&kubeconfig, &text.stdout).unwrap();
        let mut ready = k.ready_nodes();
        ready.sort();
        (ready == all).then_some(())
    });
    let bootstrap = t0.elapsed();
    eprintln!("cluster set -> all {} Nodes Ready: {bootstrap:?}", all.len());

    // Node attributes (update-node): the control planes carry cke.cybozu.com/master=true, the
    // workers do not.
    let mut cp_names: Vec<String> = CPS.iter().map(|i| m.node(*i)).collect();
    cp_names.sort();
    wait(
        "the control planes labelled cke.cybozu.com/master=true",
        Duration::from_secs(120),
        &log,
        || (k.nodes_with("cke.cybozu.com/master=true") == cp_names).then_some(()),
    );
    assert_eq!(
        k.nodes_with("cke.cybozu.com/master"),
        cp_names,
        "no worker has the label"
    );
    // The endpoints cke keeps (the apiservers run with --endpoint-reconciler-type=none): every
    // control plane ready in default/kubernetes and in kube-system/cke-etcd, with its headless
    // Service.
    let mut cp_ips: Vec<String> = CPS.iter().map(|i| m.node(*i)).collect();
    cp_ips.sort();
    let all_ready = (cp_ips.clone(), vec![]);
    wait(
        "default/kubernetes and kube-system/cke-etcd list every control plane ready",
        Duration::from_secs(120),
        &log,
        || {
            (k.endpoints("default", "kubernetes") == [all_ready.clone(), all_ready.clone()]
                && k.endpoints("kube-system", "cke-etcd") == [all_ready.clone(), all_ready.clone()])
            .then_some(())
        },
    );
    let master = k.json(&["endpoints", "-n", "default", "kubernetes"]);
    assert_eq!(
        master["metadata"]["labels"]["endpointslice.kubernetes.io/skip-mirror"],
        "true"
    );
    assert_eq!(master["subsets"][0]["ports"][0]["port"], 6443);
    let svc = k.json(&["service", "-n", "kube-system", "cke-etcd"]);
    assert_eq!(
        (
            svc["spec"]["clusterIP"].as_str(),
            svc["spec"]["ports"][0]["port"].as_i64()
        ),
        (Some("None"), Some(2379))
    );
    // In-cluster clients reach the API through the kubernetes Service, i.e. these endpoints.
    let in_cluster = m.run(&[
        "exec",
        "4",
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--max-time",
        "5",
        &format!(
            "https://{}/healthz",
            k.json(&["service", "kubernetes"])["spec"]["clusterIP"]
                .as_str()
                .unwrap_or("")
        ),
    ]);
    let code = String::from_utf8_lossy(&in_cluster.stdout).to_string();
    assert!(
        code == "200" || code == "401" || code == "403",
        "the kubernetes ClusterIP answered {code:?}"
    );

    // A label and a taint declared on a worker appear on its Node; someone else's label stays.
    k.ok(&["label", "node", &m.node(5), "e2e.example.com/user=kept"], None);
    ok(
        &m,
        &["cluster", "set", "-"],
        Some(&declaration_with(
            &m,
            &CPS,
            &WORKERS,
            &[],
            &[(
                5,
                "labels: {e2e.example.com/role: test}, taints: [{key: e2e.example.com/dedicated, value: test, effect: PreferNoSchedule}]",
            )],
        )),
    );
    wait(
        "node5's declared label and taint on its Node",
        Duration::from_secs(120),
        &log,
        || {
            (k.nodes_with("e2e.example.com/role=test") == [m.node(5)]
                && k.taints(&m.node(5))
                    .contains(&"e2e.example.com/dedicated=test:PreferNoSchedule".to_string()))
            .then_some(())
        },
    );
    assert_eq!(k.nodes_with("e2e.example.com/user=kept"), [m.node(5)]);
    assert_eq!(k.nodes_with("cke.cybozu.com/master"), cp_names);

    // Security: Secrets are encrypted in the managed etcd; anonymous requests are refused.
    k.ok(
        &[
            "create",
            "secret",
            "generic",
            "e2e-secret",
            "--from-literal=password=hunter2",
        ],
        None,
    );
    let etcd = root_etcd(&m, &CPS).await;
    let resp = etcd
        .client()
        .get("/registry/secrets/default/e2e-secret", None)
        .await
        .expect("read the Secret from the managed etcd");
    let raw = resp.kvs().first().expect("the Secret is stored").value().to_vec();
    assert!(
        raw.starts_with(b"k8s:enc:aescbc:"),
        "the Secret is not encrypted at rest: {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(40)])
    );
    let anon = m.run(&[
        "exec",
        "4",
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://{}:6443/api/v1/namespaces", m.node(1)),
    ]);
    let code = String::from_utf8_lossy(&anon.stdout).to_string();
    assert!(code == "401" || code == "403", "anonymous request answered {code}");
    // A kubelet's own certificate (node4's kubeconfig, through rivers on node4) reads its own Node but
    // neither a Secret no pod of it uses (Node authorizer) nor may it label another Node
    // (NodeRestriction).
    let as_kubelet = |args: &[&str]| {
        let bin = k.bin.display().to_string();
        let mut a = vec![
            "exec",
            "4",
            bin.as_str(),
            "--kubeconfig",
            "/etc/kubernetes/kubelet/kubeconfig",
        ];
        a.extend_from_slice(args);
        m.run(&a)
    };
    let own = as_kubelet(&["get", "node", &m.node(4), "-o", "name"]);
    assert!(
        own.status.success(),
        "kubelet reads its Node: {}",
        String::from_utf8_lossy(&own.stderr)
    );
    for args in [
        vec!["get", "secret", "e2e-secret"],
        vec!["label", "node", &m.node(5), "e2e=forbidden"],
    ] {
        let o = as_kubelet(&args);
        let err = String::from_utf8_lossy(&o.stderr).to_lowercase();
        assert!(
            !o.status.success() && err.contains("forbidden"),
            "a kubelet certificate was allowed `kubectl {args:?}`: {err}"
        );
    }

    // A Deployment of 2 busybox httpd pods behind a Service: the ClusterIP answers from a worker.
    k.ok(
        &["apply", "-f", "-"],
        Some(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: httpd}
spec:
  replicas: 2
  selector: {matchLabels: {app: httpd}}
  template:
    metadata: {labels: {app: httpd}}
    spec:
      containers:
      - name: httpd
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"]
---
apiVersion: v1
kind: Service
metadata: {name: httpd}
spec:
  selector: {app: httpd}
  ports: [{port: 80, targetPort: 8080}]
"#,
        ),
    );
    wait("2 httpd pods Running", Duration::from_secs(180), &log, || {
        let out = k.ok(
            &[
                "get",
                "pods",
                "-l",
                "app=httpd",
                "-o",
                "jsonpath={.items[*].status.phase}",
            ],
            None,
        );
        (out.split_whitespace().filter(|p| *p == "Running").count() == 2).then_some(())
    });
    let ip = k.ok(&["get", "svc", "httpd", "-o", "jsonpath={.spec.clusterIP}"], None);
    wait(
        "the ClusterIP answers from worker node5",
        Duration::from_secs(60),
        &log,
        || {
            let o = m.run(&["exec", "5", "curl", "-s", "--max-time", "3", &format!("http://{ip}/")]);
            String::from_utf8_lossy(&o.stdout).contains("hello-from-").then_some(())
        },
    );

    // Stop the kubelet on a worker: cke starts it again.
    m.run(&["exec", "5", "podman", "rm", "-f", "kubelet"]);
    wait("kubelet on node5 running again", Duration::from_secs(120), &log, || {
        running(&m, 5, "kubelet").then_some(())
    });

    // Change the apiservers' extra_args: they restart one at a time, and a client on a worker polling
    // the API through rivers every 100 ms sees no long gap.
    let before: Vec<String> = CPS.iter().map(|i| started_at(&m, *i, "kube-apiserver")).collect();
    let kc_in_node = dir.path().join("kubeconfig-rivers");
    let text = std::fs::read_to_string(&kubeconfig)
        .unwrap()
        .replace(&format!("https://{}:6443", m.node(1)), "https://localhost:16443");
    std::fs::write(&kc_in_node, text).unwrap();
    let poller = dir.path().join("poll.log");
    let script = format!(
        "while :; do if {kubectl} --kubeconfig {kc} --request-timeout=2s get --raw /api/v1/namespaces/default >/dev/null 2>&1; \
         then echo \"ok $(date +%s.%N)\"; else echo \"fail $(date +%s.%N)\"; fi; sleep 0.1; done > {out}",
        kubectl = k.bin.display(),
        kc = kc_in_node.display(),
        out = poller.display()
    );
    let mut poll = cke_testkit::ProcessGuard(
        Command::new("bash")
            .arg(Mtest::script())
            .args([
                "--dir",
                &m.env["MTEST_DIR"],
                "--prefix",
                &m.prefix,
                "--subnet",
                &m.subnet,
            ])
            .args(["exec", "4", "sh", "-c", &script])
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(3));
    let t_roll = Instant::now();
    ok(
        &m,
        &["cluster", "set", "-"],
        Some(&declaration(&m, &CPS, &WORKERS, &["--v=1"])),
    );
    // One at a time: never two apiservers down together.
    let mut max_down = 0;
    let done = wait("every apiserver restarted", Duration::from_secs(300), &log, || {
        let now: Vec<String> = CPS.iter().map(|i| started_at(&m, *i, "kube-apiserver")).collect();
        let down = now.iter().filter(|s| !s.ends_with("true")).count();
        max_down = max_down.max(down);
        let restarted = now
            .iter()
            .zip(&before)
            .filter(|(n, b)| n != b && n.ends_with("true"))
            .count();
        (restarted == CPS.len()).then_some(t_roll.elapsed())
    });
    std::thread::sleep(Duration::from_secs(3));
    let _ = poll.0.kill();
    let _ = poll.0.wait();
    assert!(max_down <= 1, "{max_down} apiservers were down at once");
    let samples: Vec<(bool, f64)> = std::fs::read_to_string(&poller)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (s, t) = l.split_once(' ')?;
            Some((s == "ok", t.parse().ok()?))
        })
        .collect();
    assert!(samples.len() > 20, "the poller ran: {} samples", samples.len());
    let mut longest = 0f64;
    let mut last_ok = samples.iter().find(|s| s.0).map(|s| s.1).unwrap_or(0.0);
    for (good, t) in &samples {
        if *good {
            longest = longest.max(t - last_ok);
            last_ok = *t;
        }
    }
    eprintln!(
        "rolling apiserver restart: {done:?}; longest gap seen by a client through rivers: {longest:.2} s over {} samples",
        samples.len()
    );
    assert!(longest < 2.0, "a client saw a gap of {longest:.2} s");

    // Make a control plane unreachable: its apiserver goes not ready in default/kubernetes within
    // a pass, and no component changes until it is back.
    m.run(&["partition", "3"]);
    let t_part = Instant::now();
    let mut others: Vec<String> = [1, 2].iter().map(|i| m.node(*i)).collect();
    others.sort();
    let partitioned = (others.clone(), vec![m.node(3)]);
    wait(
        "node3 not ready in default/kubernetes",
        Duration::from_secs(60),
        &log,
        || (k.endpoints("default", "kubernetes") == [partitioned.clone(), partitioned.clone()]).then_some(()),
    );
    eprintln!("partitioned apiserver listed not ready after {:?}", t_part.elapsed());
    let kubelet_before = started_at(&m, 4, "kubelet");
    m.run(&["exec", "4", "podman", "rm", "-f", "kube-proxy"]);
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        !running(&m, 4, "kube-proxy"),
        "kube-proxy was restarted while a control plane was unreachable"
    );
    assert_eq!(started_at(&m, 4, "kubelet"), kubelet_before);
    m.run(&["heal", "3"]);
    wait(
        "kube-proxy on node4 back after the heal",
        Duration::from_secs(120),
        &log,
        || running(&m, 4, "kube-proxy").then_some(()),
    );
    wait(
        "node3 ready again in default/kubernetes after the heal",
        Duration::from_secs(120),
        &log,
        || (k.endpoints("default", "kubernetes") == [all_ready.clone(), all_ready.clone()]).then_some(()),
    );

    // Demote a control plane to a worker: its control-plane containers stop.
    ok(&m, &["constraints", "set", "control-plane-count", "2"], None);
    ok(
        &m,
        &["cluster", "set", "-"],
        Some(&declaration(&m, &[1, 2], &[3, 4, 5], &["--v=1"])),
    );
    wait(
        "node3's control-plane containers stopped",
        Duration::from_secs(300),
        &log,
        || {
            // Removed by cke, or exited by itself before cke got to it (a kube-scheduler or
            // controller-manager exits when it loses its leader lease while the control plane
            // changes; like CKE, cke stops only running containers and leaves an exited one).
            let stopped = [
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "etcd-rivers",
            ]
            .iter()
            .all(|c| !running(&m, 3, c));
            stopped.then_some(())
        },
    );
    assert!(running(&m, 3, "kubelet"), "node3 stays a node");
    wait(
        "5 Ready Nodes after the demotion",
        Duration::from_secs(120),
        &log,
        || (k.ready_nodes().len() == 5).then_some(()),
    );
    // node3's master label is gone; node5's label and taint, no longer declared, are not cke's to
    // remove (only CKE-internal keys are).
    let mut now_cps = vec![m.node(1), m.node(2)];
    now_cps.sort();
    wait(
        "node3's cke.cybozu.com/master label removed",
        Duration::from_secs(120),
        &log,
        || (k.nodes_with("cke.cybozu.com/master") == now_cps).then_some(()),
    );
    assert_eq!(k.nodes_with("e2e.example.com/role=test"), [m.node(5)]);
    assert!(k
        .taints(&m.node(5))
        .contains(&"e2e.example.com/dedicated=test:PreferNoSchedule".to_string()));
    // The endpoints follow the control planes: node3 leaves both lists.
    let two = (now_cps.clone(), vec![]);
    wait(
        "default/kubernetes and kube-system/cke-etcd list node1 and node2 only",
        Duration::from_secs(120),
        &log,
        || {
            (k.endpoints("default", "kubernetes") == [two.clone(), two.clone()]
                && k.endpoints("kube-system", "cke-etcd") == [two.clone(), two.clone()])
            .then_some(())
        },
    );

    // A node taken out of the declaration (its kubelet stopped first, as when a machine is
    // retired): its Node is cordoned and deleted (remove-node).
    m.run(&["exec", "5", "podman", "rm", "-f", "kubelet"]);
    ok(
        &m,
        &["cluster", "set", "-"],
        Some(&declaration(&m, &[1, 2], &[3, 4], &["--v=1"])),
    );
    wait("node5's Node deleted", Duration::from_secs(120), &log, || {
        let o = k.run(&["get", "node", &m.node(5)], None);
        (!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("NotFound")).then_some(())
    });
    assert_eq!(k.ready_nodes().len(), 4);

    // Memory: resident set of the processes in each node host's network namespace (sshd, containerd,
    // the component containers; pods have their own namespaces and are left out).
    for i in 1..=5 {
        let ns = format!("{}-node{i}", m.prefix);
        let pids = Command::new("ip").args(["netns", "pids", &ns]).output().unwrap();
        let kib: u64 = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/status")).ok())
            .filter_map(|st| {
                st.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .sum();
        eprintln!(
            "node{i} ({}): {} MiB resident",
            if i <= 2 { "control plane" } else { "worker" },
            kib / 1024
        );
    }
}
