//! End to end with real Kubernetes 1.20.2 (built by scripts/build-k8s.sh) on mtest node hosts with
//! containerd (`--k8s`): cke brings up 3 control planes and 2 workers from a declaration, keeps them
//! up, and changes them safely; the Nodes carry the labels and taints cke keeps (update-node); the
//! objects cke keeps through the API: the kubernetes and cke-etcd endpoints, CKE's static resources,
//! the node-dns DaemonSet running the local unbound image and resolving through the cluster's
//! `dns_servers` (a dnsmasq on the host), `kubectl logs`/`exec`, and user resources registered with
//! `ckecli resource set` (a CRD and its custom resource, webhook CA injection, issued certificates).
//! Needs root (make test runs it as root).

mod e2e_common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cke_testkit::Mtest;
use e2e_common::k8s::{
    self, bring_up, started_at, upstream_dns_address, wait, wait_showing, Kubectl, UPSTREAM_ADDR, UPSTREAM_NAME,
};
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

/// The API path of an object (`kind` pluralised by adding `s`, which holds for every kind used here).
fn api_path(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> String {
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let ns = namespace.map(|n| format!("/namespaces/{n}")).unwrap_or_default();
    format!("{base}{ns}/{}s/{name}", kind.to_lowercase())
}

/// What `ckecli resource set` registers: the kinds of CKE's user-resource tests in one file, a custom
/// resource before its CRD (testdata/resources/widget-crd.yaml, last), a webhook configuration that
/// wants the webhook CA, and a Secret that wants a certificate for the webhook's Service. `color` is
/// the ConfigMap's one value.
fn user_resources(color: &str) -> String {
    let documents = format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: e2e-res}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: runner, namespace: e2e-res}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: reader, namespace: e2e-res}}
rules: [{{apiGroups: [""], resources: [configmaps], verbs: [get, list]}}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: runner-reads, namespace: e2e-res}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: reader}}
subjects: [{{kind: ServiceAccount, name: runner, namespace: e2e-res}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: settings, namespace: e2e-res}}
data: {{color: {color}}}
---
apiVersion: e2e.example.com/v1
kind: Widget
metadata: {{name: w1, namespace: e2e-res}}
spec: {{size: 3}}
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: e2e-webhook
  annotations: {{cke.cybozu.com/inject-cacert: "true"}}
webhooks:
  - name: check.e2e.example.com
    clientConfig: {{service: {{namespace: e2e-res, name: webhook, path: /validate}}}}
    rules: [{{apiGroups: [""], apiVersions: [v1], operations: [CREATE], resources: [configmaps]}}]
    # No server answers it: it applies to no namespace, and a failure is ignored.
    namespaceSelector: {{matchLabels: {{e2e.example.com/webhook: enabled}}}}
    failurePolicy: Ignore
    sideEffects: None
    admissionReviewVersions: [v1]
---
apiVersion: v1
kind: Secret
metadata:
  name: webhook-cert
  namespace: e2e-res
  annotations: {{cke.cybozu.com/issue-cert: webhook}}
---
"#
    );
    documents + include_str!("../testdata/resources/widget-crd.yaml")
}

/// Waits until every resource stored under `resource/` exists in Kubernetes with its revision
/// annotation equal to its key's etcd revision; returns the revisions by key.
async fn wait_resources_applied(
    m: &Mtest,
    k: &Kubectl,
    log: &Path,
    limit: Duration,
) -> std::collections::BTreeMap<String, i64> {
    use cke::storage::Storage;
    let config = cke::config::Config::parse(
        &std::fs::read_to_string(&m.env["CKE_CONFIG"]).unwrap(),
        Path::new(&m.env["CKE_CONFIG"]),
    )
    .unwrap();
    let storage = cke::storage::EtcdStorage::connect(&config).await.unwrap();
    let defs = storage.list_resources().await.unwrap();
    assert!(!defs.is_empty());
    wait("every user resource applied at its revision", limit, log, || {
        let pending: Vec<&str> = defs
            .iter()
            .filter(|d| {
                let obj = k.raw(&api_path(&d.api_version, &d.kind, d.namespace.as_deref(), &d.name));
                obj["metadata"]["annotations"]["cke.cybozu.com/revision"].as_str() != Some(&d.revision.to_string())
            })
            .map(|d| d.key.as_str())
            .collect();
        pending.is_empty().then_some(())
    });
    defs.into_iter().map(|d| (d.key, d.revision)).collect()
}

/// `openssl` with `args`; its stdout, or a panic with its stderr.
fn openssl(args: &[&str]) -> String {
    let o = Command::new("openssl").args(args).output().expect("cannot run openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cke_brings_up_kubernetes_keeps_it_up_and_changes_it_safely() {
    // Bootstrap: every declared node becomes a Ready Node under its declared name.
    let mut ph = Phases::new("e2e_k8s");
    let c = bring_up(5, CPS.len(), |m, _| declaration(m, &CPS, &WORKERS, &[]));
    ph.lap("bring-up (mtest up to every Node Ready)");
    let (m, dir, log, k) = (&c.m, &c.dir, c.log.as_path(), &c.kubectl);
    let (image, unbound_image, exporter_image, all) = (&c.image, &c.unbound_image, &c.exporter_image, &c.all);
    let kubeconfig = &k.kubeconfig;
    println!("FIGURE cluster set -> all {} Nodes Ready: {:?}", all.len(), c.bootstrap);

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
    ph.lap("master label, endpoints, in-cluster API");

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
                "labels: {e2e.example.com/role: test, hoge.cke.cybozu.com/l: x}, \
                 taints: [{key: e2e.example.com/dedicated, value: test, effect: PreferNoSchedule}, \
                 {key: hoge.cke.cybozu.com/foo, value: bar, effect: PreferNoSchedule}]",
            )],
        )),
    );
    wait(
        "node5's declared label and taint on its Node",
        Duration::from_secs(120),
        log,
        || {
            let taints = k.taints(&m.node(5));
            (k.nodes_with("e2e.example.com/role=test") == [m.node(5)]
                && k.nodes_with("hoge.cke.cybozu.com/l=x") == [m.node(5)]
                && taints.contains(&"e2e.example.com/dedicated=test:PreferNoSchedule".to_string())
                && taints.contains(&"hoge.cke.cybozu.com/foo=bar:PreferNoSchedule".to_string()))
            .then_some(())
        },
    );
    assert_eq!(k.nodes_with("e2e.example.com/user=kept"), [m.node(5)]);
    assert_eq!(k.nodes_with("cke.cybozu.com/master"), cp_names);
    ph.lap("declared label and taint");

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
    ph.lap("encryption at rest, anonymous and kubelet authorization");

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
    ph.lap("deployment behind a service");

    // CKE's nine static resources, each at its revision (and images) as the 1.20 row gives them.
    let t_objects = Instant::now();
    let images = cke::topology::Images {
        kubernetes: image.clone(),
        unbound: unbound_image.clone(),
        unbound_exporter: exporter_image.clone(),
        ..Default::default()
    };
    let v120 = cke::k8s::VersionSet::for_image(image).unwrap().set;
    let statics = cke::k8s::static_resources::static_resources(&images, v120);
    assert_eq!(statics.len(), 9);
    wait(
        "CKE's static resources at their revisions",
        Duration::from_secs(120),
        log,
        || {
            statics
                .iter()
                .all(|r| {
                    let obj = k.raw(&api_path(&r.api_version, &r.kind, r.namespace.as_deref(), &r.name));
                    let a = &obj["metadata"]["annotations"];
                    a["cke.cybozu.com/revision"].as_str() == Some(&r.revision.to_string())
                        && a["cke.cybozu.com/image"].as_str() == r.image.as_deref()
                })
                .then_some(())
        },
    );
    // The DNS ConfigMaps as CKE renders them: CoreDNS forwards to dns_servers; unbound sends the
    // cluster domain to the cluster-dns Service and the rest to dns_servers.
    let upstreams = vec![upstream_dns_address(m)];
    let dns_ip = k.json(&["service", "-n", "kube-system", "cluster-dns"])["spec"]["clusterIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(dns_ip.starts_with("10.201.0."), "cluster-dns ClusterIP {dns_ip:?}");
    let cm = |name: &str, key: &str| {
        k.json(&["configmap", "-n", "kube-system", name])["data"][key]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        cm("cluster-dns", "Corefile"),
        cke::k8s::dns::cluster_dns_corefile("cluster.local", &upstreams)
    );
    assert_eq!(
        cm("node-dns", "unbound.conf"),
        cke::k8s::dns::node_dns_unbound_conf("cluster.local", &dns_ip, &upstreams)
    );
    // node-dns runs on every node (the local unbound image), ready.
    let node_dns_pods = wait_showing(
        "a ready node-dns pod on every node",
        Duration::from_secs(180),
        log,
        || {
            let pods = k.json(&["pods", "-n", "kube-system", "-l", "cke.cybozu.com/appname=node-dns"]);
            let mut ready: Vec<(String, String)> = pods["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| {
                    p["status"]["phase"] == "Running"
                        && p["status"]["containerStatuses"]
                            .as_array()
                            .is_some_and(|cs| cs.len() == 3 && cs.iter().all(|c| c["ready"] == true))
                })
                .map(|p| {
                    (
                        p["spec"]["nodeName"].as_str().unwrap_or_default().to_string(),
                        p["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            ready.sort();
            (ready.iter().map(|(n, _)| n).eq(all.iter())).then_some(ready)
        },
        || k.pods_summary("kube-system", "cke.cybozu.com/appname=node-dns"),
    );
    eprintln!("node-dns ready on all {} nodes", node_dns_pods.len());
    // unbound on each node host resolves a name only the upstream knows (through dns_servers), and the
    // exporter stand-in reports it up.
    for i in 1..=5 {
        let node = m.node(i);
        let answer = wait(
            &format!("unbound on node{i} resolving {UPSTREAM_NAME}"),
            Duration::from_secs(60),
            log,
            || {
                let o = m.run(&[
                    "exec",
                    &i.to_string(),
                    "busybox",
                    "nslookup",
                    "-type=a",
                    UPSTREAM_NAME,
                    &node,
                ]);
                let out = String::from_utf8_lossy(&o.stdout).to_string();
                out.contains(UPSTREAM_ADDR).then_some(out)
            },
        );
        assert!(answer.contains(&format!("{node}:53")), "{answer}");
        let metrics = m.run(&[
            "exec",
            &i.to_string(),
            "curl",
            "-s",
            "--max-time",
            "5",
            &format!("http://{node}:9167/metrics"),
        ]);
        let metrics = String::from_utf8_lossy(&metrics.stdout);
        assert!(
            metrics.contains("\nunbound_up 1\n") && metrics.contains("unbound_memory_caches_bytes{cache=\"message\"}"),
            "node{i} exporter: {metrics}"
        );
    }
    let queries = std::fs::read_to_string(dir.path().join("dnsmasq.log")).unwrap_or_default();
    assert!(
        queries.contains(&format!("query[A] {UPSTREAM_NAME}")),
        "the upstream saw no query: {queries}"
    );
    // kubectl logs and exec (the apiserver reaches the kubelets under the static
    // system:kube-apiserver-to-kubelet ClusterRole): unbound's log, and a pod resolving the name
    // through its node's node-dns (the kubelet's clusterDNS is the node address).
    let unbound_log = k.ok(
        &["logs", "-n", "kube-system", &node_dns_pods[0].1, "-c", "unbound"],
        None,
    );
    assert!(unbound_log.contains("start of service"), "{unbound_log}");
    // unbound loaded the node-dns ConfigMap: the cluster domain is a stub zone (CKE's mtest).
    let stubs = k.ok(
        &[
            "exec",
            "-n",
            "kube-system",
            &node_dns_pods[0].1,
            "-c",
            "unbound",
            "--",
            "unbound-control",
            "-c",
            "/etc/unbound/unbound.conf",
            "list_stubs",
        ],
        None,
    );
    assert!(stubs.contains("cluster.local. IN stub"), "{stubs}");
    let httpd_pod = k.ok(
        &[
            "get",
            "pods",
            "-l",
            "app=httpd",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
        None,
    );
    // (Only A: the upstream refuses AAAA, which unbound turns into SERVFAIL and nslookup into exit 1.)
    let looked_up = k.ok(
        &[
            "exec",
            &httpd_pod,
            "--",
            "nslookup",
            "-type=a",
            &format!("{UPSTREAM_NAME}."),
        ],
        None,
    );
    assert!(looked_up.contains(UPSTREAM_ADDR), "{looked_up}");
    eprintln!(
        "static resources, DNS, logs and exec checked in {:?}",
        t_objects.elapsed()
    );
    ph.lap("static resources, DNS, logs and exec");

    // User resources: one file of a Namespace, ServiceAccount, Role, RoleBinding, ConfigMap, a CRD
    // with a custom resource of it (set together: the resource follows once the CRD is served), a
    // webhook configuration wanting the webhook CA and a Secret wanting a certificate.
    let t_res = Instant::now();
    ok(m, &["resource", "set", "-"], Some(&user_resources("blue")));
    let revisions = wait_resources_applied(m, k, log, Duration::from_secs(120)).await;
    assert_eq!(revisions.len(), 9, "{revisions:?}");
    eprintln!("9 user resources applied {:?} after resource set", t_res.elapsed());
    let widget = k.raw("/apis/e2e.example.com/v1/namespaces/e2e-res/widgets/w1");
    assert_eq!(widget["spec"]["size"], 3);
    let can = k.ok(
        &[
            "auth",
            "can-i",
            "get",
            "configmaps",
            "-n",
            "e2e-res",
            "--as",
            "system:serviceaccount:e2e-res:runner",
        ],
        None,
    );
    assert_eq!(can.trim(), "yes", "the RoleBinding grants the Role");
    // The caBundle is the webhook CA; the issued certificate verifies against it, for the Service.
    let webhook = k.raw("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/e2e-webhook");
    let b64 = |v: &serde_json::Value| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .unwrap_or_default()
    };
    let ca_bundle = b64(&webhook["webhooks"][0]["clientConfig"]["caBundle"]);
    assert_eq!(
        String::from_utf8_lossy(&ca_bundle).trim(),
        ok(m, &["ca", "get", "kubernetes-webhook"], None).trim()
    );
    let secret = k.json(&["secret", "-n", "e2e-res", "webhook-cert"]);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    let (ca_file, cert_file) = (dir.path().join("webhook-ca.pem"), dir.path().join("webhook.crt"));
    std::fs::write(&ca_file, &ca_bundle).unwrap();
    std::fs::write(&cert_file, b64(&secret["data"]["tls.crt"])).unwrap();
    let (ca_file, cert_file) = (ca_file.to_str().unwrap(), cert_file.to_str().unwrap());
    assert!(openssl(&["verify", "-CAfile", ca_file, cert_file]).contains(": OK"));
    let sans = openssl(&["x509", "-noout", "-ext", "subjectAltName", "-in", cert_file]);
    assert!(sans.contains("DNS:webhook.e2e-res.svc"), "{sans}");
    // A change is applied again (every document set anew gets a new revision).
    let t_res = Instant::now();
    ok(m, &["resource", "set", "-"], Some(&user_resources("green")));
    let again = wait_resources_applied(m, k, log, Duration::from_secs(120)).await;
    eprintln!("user resources applied again {:?} after resource set", t_res.elapsed());
    assert!(again["ConfigMap/e2e-res/settings"] > revisions["ConfigMap/e2e-res/settings"]);
    assert_eq!(
        k.json(&["configmap", "-n", "e2e-res", "settings"])["data"]["color"],
        "green"
    );
    ph.lap("user resources");

    // Stop the kubelet on a worker and the apiserver on a control plane: cke starts both again.
    // Meanwhile default/kubernetes lists the stopped apiserver not ready (the pass that restarts it
    // first marks it), and ready again once it answers.
    let t_stop = Instant::now();
    m.run(&["exec", "5", "podman", "rm", "-f", "kubelet"]);
    m.run(&["exec", "2", "podman", "stop", "-t", "2", "kube-apiserver"]);
    let mut without_2: Vec<String> = [1, 3].iter().map(|i| m.node(*i)).collect();
    without_2.sort();
    let stopped = (without_2, vec![m.node(2)]);
    wait(
        "the stopped apiserver of node2 not ready in default/kubernetes",
        Duration::from_secs(60),
        log,
        || (k.endpoints("default", "kubernetes") == [stopped.clone(), stopped.clone()]).then_some(()),
    );
    eprintln!("stopped apiserver listed not ready after {:?}", t_stop.elapsed());
    wait(
        "node2 ready again in default/kubernetes",
        Duration::from_secs(120),
        log,
        || (k.endpoints("default", "kubernetes") == [all_ready.clone(), all_ready.clone()]).then_some(()),
    );
    assert!(running(m, 2, "kube-apiserver"));
    eprintln!("restarted apiserver listed ready again after {:?}", t_stop.elapsed());
    wait("kubelet on node5 running again", Duration::from_secs(120), log, || {
        running(m, 5, "kubelet").then_some(())
    });
    ph.lap("stopped kubelet and apiserver restarted");

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
    // The longest time between two answered requests, and the longest such time with failed
    // requests in between (an outage: on a loaded machine a request may just be slow to start).
    let (mut longest, mut outage) = (0f64, 0f64);
    let mut last_ok = samples.iter().find(|s| s.0).map(|s| s.1).unwrap_or(0.0);
    let mut failed_since = false;
    for (good, t) in &samples {
        if *good {
            longest = longest.max(t - last_ok);
            if failed_since {
                outage = outage.max(t - last_ok);
            }
            last_ok = *t;
            failed_since = false;
        } else {
            failed_since = true;
        }
    }
    let failures = samples.iter().filter(|s| !s.0).count();
    eprintln!(
        "rolling apiserver restart: {done:?}; a client through rivers: {} requests, {failures} failed, \
         longest outage {outage:.2} s, longest time between answers {longest:.2} s",
        samples.len()
    );
    // A client through rivers keeps being answered while each apiserver restarts (rivers skips the
    // one that is down). On a loaded machine a single request may still fail or time out (2 s); an
    // outage is then at most that plus the next request's start.
    assert!(
        failures <= 3 && outage < 6.0,
        "a client saw {failures} failed requests, an outage of {outage:.2} s"
    );
    ph.lap("rolling apiserver restart");

    // Make a control plane unreachable: its apiserver goes not ready in default/kubernetes within
    // a pass, and no component changes until it is back. (First every apiserver is listed ready
    // again after the rolling restart: the last one restarted may still be listed not ready.)
    wait(
        "every apiserver ready in default/kubernetes after the rolling restart",
        Duration::from_secs(120),
        log,
        || (k.endpoints("default", "kubernetes") == [all_ready.clone(), all_ready.clone()]).then_some(()),
    );
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
    ph.lap("partitioned control plane");

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
    // CKE-internal keys (`*.cke.cybozu.com/*`) no longer declared are removed (CKE's mtest taint
    // hoge.cke.cybozu.com/foo); the others stay.
    wait(
        "node5's undeclared hoge.cke.cybozu.com/ label and taint removed",
        Duration::from_secs(120),
        log,
        || {
            (k.nodes_with("hoge.cke.cybozu.com/l").is_empty()
                && !k
                    .taints(&m.node(5))
                    .iter()
                    .any(|t| t.starts_with("hoge.cke.cybozu.com/")))
            .then_some(())
        },
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
    ph.lap("demotion");

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
    ph.lap("node removal");

    eprintln!("the whole scenario after mtest up: {:?}", c.started.elapsed());

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
    drop(c);
    ph.lap("teardown (cke, dnsmasq, mtest down)");
}
