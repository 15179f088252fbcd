//! End to end with real Kubernetes 1.20.2 (built by scripts/build-k8s.sh) on mtest node hosts with
//! containerd (`--k8s`): cke brings up 3 control planes and 2 workers from a declaration, keeps them
//! up, and changes them safely; the Nodes carry the labels and taints cke keeps (update-node). Needs
//! root (make test runs it as root).

mod e2e_common;

use std::process::Command;
use std::time::{Duration, Instant};

use cke_testkit::Mtest;
use e2e_common::k8s::{self, bring_up, running, started_at, wait};
use e2e_common::*;

const CPS: [usize; 3] = [1, 2, 3];
const WORKERS: [usize; 2] = [4, 5];

/// The declaration ([`e2e_common::k8s::declaration`]) with these kube-apiserver arguments.
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
    let mut extra = String::new();
    if !apiserver_args.is_empty() {
        extra.push_str("  kube-api:\n    extra_args:\n");
        for a in apiserver_args {
            extra.push_str(&format!("      - \"{a}\"\n"));
        }
    }
    k8s::declaration_with(m, cps, workers, attrs, &extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cke_brings_up_kubernetes_keeps_it_up_and_changes_it_safely() {
    // Bootstrap: every declared node becomes a Ready Node under its declared name.
    let c = bring_up(5, CPS.len(), |m, _| declaration(m, &CPS, &WORKERS, &[]));
    let (m, dir, log, k) = (&c.m, &c.dir, &c.log, &c.kubectl);
    let kubeconfig = &k.kubeconfig;
    println!("FIGURE cluster set -> all 5 Nodes Ready: {:?}", c.bootstrap);

    // Node attributes (update-node): the control planes carry cke.cybozu.com/master=true, the
    // workers do not.
    let mut cp_names: Vec<String> = CPS.iter().map(|i| m.node(*i)).collect();
    cp_names.sort();
    wait(
        "the control planes labelled cke.cybozu.com/master=true",
        Duration::from_secs(120),
        log,
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
        log,
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
        m,
        &["cluster", "set", "-"],
        Some(&declaration_with(
            m,
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
        log,
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
    let etcd = root_etcd(m, &CPS).await;
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
    wait("2 httpd pods Running", Duration::from_secs(180), log, || {
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
        log,
        || {
            let o = m.run(&["exec", "5", "curl", "-s", "--max-time", "3", &format!("http://{ip}/")]);
            String::from_utf8_lossy(&o.stdout).contains("hello-from-").then_some(())
        },
    );

    // Stop the kubelet on a worker: cke starts it again.
    m.run(&["exec", "5", "podman", "rm", "-f", "kubelet"]);
    wait("kubelet on node5 running again", Duration::from_secs(120), log, || {
        running(m, 5, "kubelet").then_some(())
    });

    // Change the apiservers' extra_args: they restart one at a time, and a client on a worker polling
    // the API through rivers every 100 ms sees no long gap.
    let before: Vec<String> = CPS.iter().map(|i| started_at(m, *i, "kube-apiserver")).collect();
    let kc_in_node = dir.path().join("kubeconfig-rivers");
    let text = std::fs::read_to_string(kubeconfig)
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
        m,
        &["cluster", "set", "-"],
        Some(&declaration(m, &CPS, &WORKERS, &["--v=1"])),
    );
    // One at a time: never two apiservers down together.
    let mut max_down = 0;
    let done = wait("every apiserver restarted", Duration::from_secs(300), log, || {
        let now: Vec<String> = CPS.iter().map(|i| started_at(m, *i, "kube-apiserver")).collect();
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
        log,
        || (k.endpoints("default", "kubernetes") == [partitioned.clone(), partitioned.clone()]).then_some(()),
    );
    eprintln!("partitioned apiserver listed not ready after {:?}", t_part.elapsed());
    let kubelet_before = started_at(m, 4, "kubelet");
    m.run(&["exec", "4", "podman", "rm", "-f", "kube-proxy"]);
    std::thread::sleep(Duration::from_secs(15));
    assert!(
        !running(m, 4, "kube-proxy"),
        "kube-proxy was restarted while a control plane was unreachable"
    );
    assert_eq!(started_at(m, 4, "kubelet"), kubelet_before);
    m.run(&["heal", "3"]);
    wait(
        "kube-proxy on node4 back after the heal",
        Duration::from_secs(120),
        log,
        || running(m, 4, "kube-proxy").then_some(()),
    );
    wait(
        "node3 ready again in default/kubernetes after the heal",
        Duration::from_secs(120),
        log,
        || (k.endpoints("default", "kubernetes") == [all_ready.clone(), all_ready.clone()]).then_some(()),
    );

    // Demote a control plane to a worker: its control-plane containers stop.
    ok(m, &["constraints", "set", "control-plane-count", "2"], None);
    ok(
        m,
        &["cluster", "set", "-"],
        Some(&declaration(m, &[1, 2], &[3, 4, 5], &["--v=1"])),
    );
    wait(
        "node3's control-plane containers stopped",
        Duration::from_secs(300),
        log,
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
            .all(|c| !running(m, 3, c));
            stopped.then_some(())
        },
    );
    assert!(running(m, 3, "kubelet"), "node3 stays a node");
    wait(
        "5 Ready Nodes after the demotion",
        Duration::from_secs(120),
        log,
        || (k.ready_nodes().len() == 5).then_some(()),
    );
    // node3's master label is gone; node5's label and taint, no longer declared, are not cke's to
    // remove (only CKE-internal keys are).
    let mut now_cps = vec![m.node(1), m.node(2)];
    now_cps.sort();
    wait(
        "node3's cke.cybozu.com/master label removed",
        Duration::from_secs(120),
        log,
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
        log,
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
        m,
        &["cluster", "set", "-"],
        Some(&declaration(m, &[1, 2], &[3, 4], &["--v=1"])),
    );
    wait("node5's Node deleted", Duration::from_secs(120), log, || {
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
