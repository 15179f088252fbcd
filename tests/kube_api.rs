//! The real Kubernetes API client (`cke::infra::kube`) against a real kube-apiserver 1.20.2 (the
//! test bed's build, `scripts/build-k8s.sh`) on a real etcd, with throw-away certificates: the
//! apiserver's health with the admin certificate (and without: wrong CA, foreign client
//! certificate), the Node list, taints added and replaced by key, Node attributes kept by CKE's
//! update-node rule, a missing Node, the calls of draining (pods, namespaces, eviction against a
//! PodDisruptionBudget, OnDelete DaemonSets, the reboot cordon, volumesInUse), the cached admin
//! certificate, and the https health check against the apiserver's `/healthz`; the generic object
//! calls of k8s-maintain (get, create, replace, server-side apply, discovery with the trusted REST
//! mapping fallback, a custom resource before and after its CRD, remove-node) and the version
//! table's 1.20 API versions.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use cke::infra::kube::{client_config, AdminTls, HttpHealth, KubeClients, KUBE_API_TIMEOUT};
use cke::infra::pki::{IssueRequest, IssuedCert};
use cke::infra::{CertIssuer, Health, IssueError, KubeApi, NodeUpdate};
use cke::model::Taint;
use cke::storage::{MemStorage, Storage};
use cke_testkit::{free_port, EtcdServer, ProcessGuard, TestCa};
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams, PostParams};

/// The directory of the Kubernetes binaries: `CKE_K8S_BIN`, or the test bed's cache.
fn k8s_bin() -> PathBuf {
    if let Ok(dir) = std::env::var("CKE_K8S_BIN") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("kube-apiserver").is_file(),
            "CKE_K8S_BIN={dir:?} has no kube-apiserver; run scripts/build-k8s.sh (make test does)"
        );
        return dir;
    }
    let cache = std::env::var("CKE_K8S_CACHE").unwrap_or_else(|_| "/var/cache/cke-rs/k8s".into());
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("kube-apiserver").is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no Kubernetes binaries: CKE_K8S_BIN is not set and {cache}/*/bin has no kube-apiserver; \
             run scripts/build-k8s.sh (make test does)"
        )
    })
}

/// An IPv4 address of a local interface other than loopback: the apiserver refuses to advertise a
/// loopback address.
fn advertise_address() -> IpAddr {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("cannot run ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            words.find(|w| *w == "inet")?;
            words.next()?.split('/').next()?.parse().ok()
        })
        .expect("no non-loopback IPv4 address on this machine for --advertise-address")
}

/// Issues from a test CA, counting the requests; checks they are the admin's.
struct TestIssuer {
    ca: Arc<TestCa>,
    issued: AtomicUsize,
}

impl TestIssuer {
    fn new(ca: &Arc<TestCa>) -> Arc<TestIssuer> {
        Arc::new(TestIssuer {
            ca: ca.clone(),
            issued: AtomicUsize::new(0),
        })
    }
}

#[async_trait]
impl CertIssuer for TestIssuer {
    async fn issue(&self, req: &IssueRequest) -> Result<IssuedCert, IssueError> {
        assert_eq!((req.ca.as_str(), req.common_name.as_str()), ("kubernetes", "admin"));
        self.issued.fetch_add(1, Ordering::SeqCst);
        let c = self.ca.issue_in(&req.common_name, req.organization.as_deref(), &[]);
        Ok(IssuedCert {
            certificate: c.cert,
            private_key: c.key,
            ca_certificate: self.ca.cert_pem.clone(),
            serial_number: String::new(),
            expiration: 0,
        })
    }

    async fn k8s_encryption_keys(&self) -> Result<Vec<cke::k8s::encryption::EncryptionKey>, IssueError> {
        Ok(vec![])
    }
}

struct Apiserver {
    _process: ProcessGuard,
    _etcd: EtcdServer,
    dir: tempfile::TempDir,
    port: u16,
    ca: Arc<TestCa>,
}

impl Apiserver {
    /// A kube-rs client with an admin certificate (CN admin, O system:masters), beside cke's.
    fn admin_client(&self) -> kube::Client {
        let admin = self.ca.issue_in("admin", Some("system:masters"), &[]);
        let tls = AdminTls {
            ca: self.ca.cert_pem.clone(),
            cert: admin.cert,
            key: admin.key,
        };
        let url = format!("https://127.0.0.1:{}", self.port);
        kube::Client::try_from(client_config(&url, &tls, KUBE_API_TIMEOUT).unwrap()).unwrap()
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("apiserver.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

async fn start_apiserver() -> Apiserver {
    let bin = k8s_bin().join("kube-apiserver");
    let etcd = EtcdServer::start();
    let dir = tempfile::tempdir().unwrap();
    let ca = Arc::new(TestCa::new("kubernetes"));
    let advertise = advertise_address();
    let server = ca.issue("kube-apiserver", &["127.0.0.1".parse().unwrap(), advertise]);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let (ca_file, cert_file, key_file) = (
        write("ca.crt", &ca.cert_pem),
        write("apiserver.crt", &server.cert),
        write("apiserver.key", &server.key),
    );
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("apiserver.log")).unwrap();
    let child = Command::new(&bin)
        .arg(format!("--etcd-servers={}", etcd.endpoint))
        .arg("--bind-address=127.0.0.1")
        .arg(format!("--secure-port={port}"))
        .arg(format!("--advertise-address={advertise}"))
        .arg(format!("--tls-cert-file={cert_file}"))
        .arg(format!("--tls-private-key-file={key_file}"))
        .arg(format!("--client-ca-file={ca_file}"))
        .arg(format!("--service-account-key-file={cert_file}"))
        .arg(format!("--service-account-signing-key-file={key_file}"))
        .arg("--service-account-issuer=https://kubernetes.default.svc")
        .arg(format!("--cert-dir={}", dir.path().display()))
        .arg("--service-cluster-ip-range=10.0.0.0/24")
        .arg("--authorization-mode=Node,RBAC")
        .arg("--endpoint-reconciler-type=none")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {bin:?}: {e}"));
    let mut api = Apiserver {
        _process: ProcessGuard(child),
        _etcd: etcd,
        dir,
        port,
        ca,
    };
    let health = HttpHealth::new();
    let ready = format!("https://127.0.0.1:{port}/readyz");
    let start = Instant::now();
    loop {
        if health.healthz(&ready, Some(&api.ca.cert_pem)).await {
            break;
        }
        if let Ok(Some(status)) = api._process.0.try_wait() {
            panic!("kube-apiserver exited ({status}):\n{}", api.log_tail());
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "kube-apiserver not ready within 90 s:\n{}",
            api.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    println!("FIGURE kube-apiserver ready in {:?}", start.elapsed());
    api
}

async fn storage_with_ca(pem: &str) -> Arc<dyn Storage> {
    let s = MemStorage::new("/cke/");
    s.put_ca("kubernetes", pem).await.unwrap();
    Arc::new(s)
}

/// The taint kube-apiserver puts on every new Node.
const NOT_READY: &str = "node.kubernetes.io/not-ready";

fn taint(key: &str, value: &str, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.into(),
        effect: effect.into(),
    }
}

fn k8s_taints(node: &Node) -> Vec<(String, Option<String>, String)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (t.key, t.value, t.effect))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_client_against_a_real_apiserver() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = start_apiserver().await;
    const ADDR: &str = "127.0.0.1";

    // The admin client: CA from the storage, certificate from the issuer (CN admin, O system:masters).
    let issuer = TestIssuer::new(&api.ca);
    let other = Arc::new(TestCa::new("other"));
    let kube = KubeClients::new(issuer.clone(), storage_with_ca(&api.ca.cert_pem).await, api.port);
    assert!(kube.apiserver_healthy(ADDR).await, "{}", api.log_tail());

    // Wrong CA for the server: unhealthy, and errors name the address.
    let wrong_ca = KubeClients::new(
        TestIssuer::new(&api.ca),
        storage_with_ca(&other.cert_pem).await,
        api.port,
    );
    assert!(!wrong_ca.apiserver_healthy(ADDR).await);
    let e = wrong_ca.nodes(ADDR).await.unwrap_err().to_string();
    assert!(e.contains(ADDR), "{e}");
    // A client certificate the apiserver does not trust: unauthorized, unhealthy.
    let foreign = KubeClients::new(
        TestIssuer::new(&other),
        storage_with_ca(&api.ca.cert_pem).await,
        api.port,
    );
    assert!(!foreign.apiserver_healthy(ADDR).await);
    // Nothing listens on that port: unhealthy, quickly.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Instant::now();
    let nobody = KubeClients::new(
        TestIssuer::new(&api.ca),
        storage_with_ca(&api.ca.cert_pem).await,
        closed,
    );
    assert!(!nobody.apiserver_healthy(ADDR).await);
    assert!(t.elapsed() <= KUBE_API_TIMEOUT + Duration::from_secs(1));

    // Nodes: create two, one Ready, with the same admin credential through kube-rs directly.
    let client = api.admin_client();
    let nodes_api: Api<Node> = Api::all(client.clone());
    for name in ["node1", "node2"] {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"taints": [{"key": "a", "value": "1", "effect": "NoSchedule"}]},
        }))
        .unwrap();
        nodes_api.create(&PostParams::default(), &node).await.unwrap();
    }
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    nodes_api
        .patch_status(
            "node1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"conditions": [{
                "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "test",
                "lastHeartbeatTime": now, "lastTransitionTime": now,
            }]}})),
        )
        .await
        .unwrap();
    let mut listed = kube.nodes(ADDR).await.unwrap();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<(&str, bool)> = listed.iter().map(|n| (n.name.as_str(), n.ready)).collect();
    assert_eq!(names, [("node1", true), ("node2", false)]);
    // The taints come along (the admission plugin's not-ready taint too).
    assert_eq!(
        listed[1].taints,
        [taint("a", "1", "NoSchedule"), taint(NOT_READY, "", "NoSchedule")]
    );

    // Taints: a replaced by key (in place), b added, the others kept; node2 untouched.
    assert!(kube
        .add_taints(
            ADDR,
            "node1",
            &[taint("b", "2", "NoExecute"), taint("a", "", "PreferNoSchedule")]
        )
        .await
        .unwrap());
    let got = nodes_api.get("node1").await.unwrap();
    assert_eq!(
        k8s_taints(&got),
        [
            ("a".to_string(), None, "PreferNoSchedule".to_string()),
            // Added by the apiserver's TaintNodesByCondition admission at creation: kept.
            (NOT_READY.to_string(), None, "NoSchedule".to_string()),
            ("b".to_string(), Some("2".to_string()), "NoExecute".to_string()),
        ]
    );
    assert_eq!(
        k8s_taints(&nodes_api.get("node2").await.unwrap()),
        [
            ("a".to_string(), Some("1".to_string()), "NoSchedule".to_string()),
            (NOT_READY.to_string(), None, "NoSchedule".to_string()),
        ]
    );
    // The same taints again: nothing to write (the resource version stays).
    let rv = got.metadata.resource_version.clone();
    assert!(kube
        .add_taints(ADDR, "node1", &[taint("b", "2", "NoExecute")])
        .await
        .unwrap());
    assert_eq!(nodes_api.get("node1").await.unwrap().metadata.resource_version, rv);
    // No such Node.
    assert!(!kube
        .add_taints(ADDR, "missing", &[taint("b", "2", "NoExecute")])
        .await
        .unwrap());

    // update-node by CKE's rule on node2, a control plane declared with a label and a taint, with
    // taint_control_plane: someone else's label and taints are kept, a stale internal label goes,
    // the master label and taint come.
    nodes_api
        .patch(
            "node2",
            &PatchParams::default(),
            &Patch::Merge(
                serde_json::json!({"metadata": {"labels": {"user": "kept", "cke.cybozu.com/stale": "x"},
                "annotations": {"cke.cybozu.com/reboot": "true"}}}),
            ),
        )
        .await
        .unwrap();
    let before = nodes_api.get("node2").await.unwrap();
    let mut declared = cke::model::Node::new("10.0.0.2", "cybozu", true);
    declared.hostname = "node2".into();
    declared.labels.insert("role".into(), "db".into());
    declared.annotations.insert("note".into(), "n".into());
    declared.taints.push(taint("dedicated", "db", "NoSchedule"));
    assert_eq!(
        kube.update_node(ADDR, &declared, true).await.unwrap(),
        NodeUpdate::Updated
    );
    let got = nodes_api.get("node2").await.unwrap();
    let labels = got.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect::<Vec<_>>(),
        [("cke.cybozu.com/master", "true"), ("role", "db"), ("user", "kept")]
    );
    let annotations = got.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        annotations.get("cke.cybozu.com/reboot").map(String::as_str),
        Some("true")
    );
    assert_eq!(annotations.get("note").map(String::as_str), Some("n"));
    assert_eq!(
        k8s_taints(&got),
        [
            (
                "dedicated".to_string(),
                Some("db".to_string()),
                "NoSchedule".to_string()
            ),
            ("a".to_string(), Some("1".to_string()), "NoSchedule".to_string()),
            (NOT_READY.to_string(), None, "NoSchedule".to_string()),
            (
                "cke.cybozu.com/master".to_string(),
                None,
                "PreferNoSchedule".to_string()
            ),
        ]
    );
    // A kept taint keeps its timeAdded.
    let added = |n: &Node| {
        n.spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default()
            .into_iter()
            .find(|t| t.key == NOT_READY)
            .and_then(|t| t.time_added)
    };
    assert_eq!(added(&got), added(&before));
    // Current now: nothing written (the resource version stays).
    let rv = got.metadata.resource_version.clone();
    assert_eq!(
        kube.update_node(ADDR, &declared, true).await.unwrap(),
        NodeUpdate::Current
    );
    assert_eq!(nodes_api.get("node2").await.unwrap().metadata.resource_version, rv);
    // Demoted: the master label and taint go, nothing else.
    declared.control_plane = false;
    assert_eq!(
        kube.update_node(ADDR, &declared, false).await.unwrap(),
        NodeUpdate::Updated
    );
    let got = nodes_api.get("node2").await.unwrap();
    assert!(!got
        .metadata
        .labels
        .clone()
        .unwrap_or_default()
        .contains_key("cke.cybozu.com/master"));
    assert_eq!(k8s_taints(&got).len(), 3, "{:?}", k8s_taints(&got));
    // No such Node.
    declared.hostname = "missing".into();
    assert_eq!(
        kube.update_node(ADDR, &declared, false).await.unwrap(),
        NodeUpdate::Missing
    );

    drain_calls(&kube, &nodes_api, &client).await;

    // One admin certificate for all of it.
    assert_eq!(
        issuer.issued.load(Ordering::SeqCst),
        1,
        "the admin certificate is issued once and reused"
    );

    // The https health check against the apiserver's /healthz (anonymous, as CKE asks the
    // controller-manager and the scheduler): only with the right CA.
    let health = HttpHealth::new();
    let url = format!("https://{ADDR}:{}/healthz", api.port);
    assert!(health.healthz(&url, Some(&api.ca.cert_pem)).await);
    assert!(!health.healthz(&url, Some(&other.cert_pem)).await);
    assert!(!health.healthz(&url, None).await);
    assert!(
        !health
            .healthz(&format!("http://{ADDR}:{}/healthz", api.port), None)
            .await
    );
}

/// Creates `obj` (JSON) through `api`.
async fn create<K>(api: &Api<K>, obj: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let o: K = serde_json::from_value(obj).unwrap();
    api.create(&PostParams::default(), &o).await.unwrap()
}

/// A pod on `node` (no kubelet runs here: it stays bound, and `Running` once its status says so).
fn pod(ns: &str, name: &str, node: &str, labels: serde_json::Value, owner: Option<(&str, &str)>) -> serde_json::Value {
    let mut p = serde_json::json!({
        "metadata": {"namespace": ns, "name": name, "labels": labels},
        "spec": {"nodeName": node, "automountServiceAccountToken": false,
            "containers": [{"name": "c", "image": "localhost/busybox:latest"}]},
    });
    if let Some((api_version, kind)) = owner {
        p["metadata"]["ownerReferences"] = serde_json::json!([{
            "apiVersion": api_version, "kind": kind, "name": name, "controller": true,
            "uid": "00000000-0000-0000-0000-000000000001",
        }]);
    }
    p
}

/// The pod is being deleted (it has a deletion timestamp).
async fn deleting(pods: &Api<k8s_openapi::api::core::v1::Pod>, name: &str) -> bool {
    pods.get(name).await.unwrap().metadata.deletion_timestamp.is_some()
}

/// The calls of draining (`KubeApi`'s pods, namespaces, eviction with the 1.20 policy API and a
/// PodDisruptionBudget, deletion, the reboot cordon, OnDelete DaemonSets, volumesInUse).
async fn drain_calls(kube: &KubeClients, nodes_api: &Api<Node>, client: &kube::Client) {
    use cke::infra::{Eviction, ANNOTATION_REBOOT};
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::core::v1::{Namespace, Pod};
    const ADDR: &str = "127.0.0.1";
    let policy_api = cke::model::kube_version::VersionSet::exact(20).unwrap().policy_api;
    assert_eq!(policy_api, "policy/v1beta1");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    create(
        &namespaces,
        serde_json::json!({"metadata": {"name": "prod", "labels": {"team": "prod"}}}),
    )
    .await;
    create(&namespaces, serde_json::json!({"metadata": {"name": "dev"}})).await;
    assert_eq!(kube.namespaces(ADDR, "team=prod").await.unwrap(), ["prod"]);
    let all = kube.namespaces(ADDR, "").await.unwrap();
    assert!(
        ["default", "dev", "prod"].iter().all(|n| all.contains(&n.to_string())),
        "{all:?}"
    );
    assert!(kube
        .namespaces(ADDR, "team notin (prod)")
        .await
        .unwrap()
        .contains(&"dev".to_string()));

    // No controller-manager here: the ServiceAccount admission wants the default accounts.
    for ns in ["dev", "prod"] {
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(client.clone(), ns);
        create(
            &sa,
            serde_json::json!({"metadata": {"namespace": ns, "name": "default"}}),
        )
        .await;
    }
    let pods = |ns: &str| -> Api<Pod> { Api::namespaced(client.clone(), ns) };
    create(
        &pods("dev"),
        pod("dev", "web", "node1", serde_json::json!({"app": "web"}), None),
    )
    .await;
    create(
        &pods("prod"),
        pod("prod", "db", "node1", serde_json::json!({"app": "db"}), None),
    )
    .await;
    create(
        &pods("dev"),
        pod(
            "dev",
            "batch",
            "node1",
            serde_json::json!({}),
            Some(("batch/v1", "Job")),
        ),
    )
    .await;
    create(
        &pods("dev"),
        pod(
            "dev",
            "agent",
            "node1",
            serde_json::json!({"app": "agent"}),
            Some(("apps/v1", "DaemonSet")),
        ),
    )
    .await;
    create(
        &pods("dev"),
        pod("dev", "other", "node2", serde_json::json!({"app": "agent"}), None),
    )
    .await;
    create(
        &pods("dev"),
        pod("dev", "rolling", "node1", serde_json::json!({"app": "rolling"}), None),
    )
    .await;
    // The pods run (a Pending pod may always be evicted, whatever its budget).
    for (ns, name) in [("dev", "web"), ("prod", "db"), ("dev", "batch")] {
        pods(ns)
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"phase": "Running"}})),
            )
            .await
            .unwrap();
    }
    let mut on1: Vec<(String, Option<String>, String)> = kube
        .pods_on_node(ADDR, "node1")
        .await
        .unwrap()
        .into_iter()
        .map(|p| (format!("{}/{}", p.namespace, p.name), p.controller_kind, p.phase))
        .collect();
    on1.sort();
    assert_eq!(
        on1,
        [
            ("dev/agent".into(), Some("DaemonSet".into()), "Pending".into()),
            ("dev/batch".into(), Some("Job".into()), "Running".into()),
            ("dev/rolling".into(), None, "Pending".into()),
            ("dev/web".into(), None, "Running".into()),
            ("prod/db".into(), None, "Running".into()),
        ]
    );

    // A budget that allows no disruption of prod/db: 429, dry run or not; the pod stays.
    let pdb_body = serde_json::json!({
        "apiVersion": policy_api, "kind": "PodDisruptionBudget",
        "metadata": {"namespace": "prod", "name": "db"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "db"}}},
    });
    // Kubernetes 1.20 serves PodDisruptionBudget as policy/v1beta1 only: created through the generic
    // object call of that version.
    kube.create_object(
        ADDR,
        &cke::infra::ApiKind::new(policy_api, "PodDisruptionBudget", "poddisruptionbudgets", true),
        &pdb_body,
    )
    .await
    .unwrap();
    for dry_run in [true, false] {
        match kube.evict_pod(ADDR, policy_api, "prod", "db", dry_run).await.unwrap() {
            Eviction::TooManyRequests(m) => assert!(m.contains("disruption budget"), "{m}"),
            other => panic!("dry_run {dry_run}: {other:?}"),
        }
    }
    assert!(!deleting(&pods("prod"), "db").await);
    // Without a budget: the dry run changes nothing, the eviction deletes (gracefully: the pod is
    // bound, so it stays until a kubelet confirms).
    assert_eq!(
        kube.evict_pod(ADDR, policy_api, "dev", "web", true).await.unwrap(),
        Eviction::Evicted
    );
    assert!(!deleting(&pods("dev"), "web").await);
    assert_eq!(
        kube.evict_pod(ADDR, policy_api, "dev", "web", false).await.unwrap(),
        Eviction::Evicted
    );
    assert!(deleting(&pods("dev"), "web").await);
    assert_eq!(
        kube.evict_pod(ADDR, policy_api, "dev", "nope", false).await.unwrap(),
        Eviction::NotFound
    );
    // The Eviction of another version than the server's is refused with a clear error.
    let e = kube
        .evict_pod(ADDR, "policy/v1", "dev", "rolling", false)
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains(ADDR) && e.contains("evict pod dev/rolling"), "{e}");
    assert!(kube.evict_pod(ADDR, "v1", "dev", "rolling", false).await.is_err());

    // Delete.
    assert!(kube.delete_pod(ADDR, "dev", "batch").await.unwrap());
    assert!(deleting(&pods("dev"), "batch").await);
    assert!(!kube.delete_pod(ADDR, "dev", "nope").await.unwrap());

    // OnDelete DaemonSets: only their pods on that node.
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "dev");
    let ds = |name: &str, app: &str, strategy: &str| {
        serde_json::json!({
            "metadata": {"namespace": "dev", "name": name},
            "spec": {
                "selector": {"matchLabels": {"app": app}},
                "updateStrategy": {"type": strategy},
                "template": {"metadata": {"labels": {"app": app}},
                    "spec": {"containers": [{"name": "c", "image": "localhost/busybox:latest"}]}},
            },
        })
    };
    create(&daemonsets, ds("agent", "agent", "OnDelete")).await;
    create(&daemonsets, ds("rolling", "rolling", "RollingUpdate")).await;
    let got: Vec<String> = kube
        .on_delete_daemonset_pods(ADDR, "node1")
        .await
        .unwrap()
        .into_iter()
        .map(|p| format!("{}/{}", p.namespace, p.name))
        .collect();
    assert_eq!(got, ["dev/agent"]);

    // The reboot cordon and its removal (strategic-merge patches), on a Node and a missing one.
    assert_eq!(
        kube.set_reboot_cordon(ADDR, "node1", true).await.unwrap(),
        NodeUpdate::Updated
    );
    let n = nodes_api.get("node1").await.unwrap();
    assert_eq!(n.spec.as_ref().and_then(|s| s.unschedulable), Some(true));
    assert_eq!(
        n.metadata
            .annotations
            .unwrap_or_default()
            .get(ANNOTATION_REBOOT)
            .map(String::as_str),
        Some("true")
    );
    let listed = kube.nodes(ADDR).await.unwrap();
    assert!(listed.iter().any(|k| k.name == "node1" && k.unschedulable));
    assert_eq!(
        kube.set_reboot_cordon(ADDR, "node1", false).await.unwrap(),
        NodeUpdate::Updated
    );
    let n = nodes_api.get("node1").await.unwrap();
    assert_eq!(n.spec.as_ref().and_then(|s| s.unschedulable), None);
    assert!(!n
        .metadata
        .annotations
        .unwrap_or_default()
        .contains_key(ANNOTATION_REBOOT));
    assert_eq!(
        kube.set_reboot_cordon(ADDR, "missing", true).await.unwrap(),
        NodeUpdate::Missing
    );

    // volumesInUse.
    assert_eq!(kube.volumes_in_use(ADDR, "node1").await.unwrap(), Some(vec![]));
    nodes_api
        .patch_status(
            "node1",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"status": {"volumesInUse": ["kubernetes.io/csi/x^y"]}})),
        )
        .await
        .unwrap();
    assert_eq!(
        kube.volumes_in_use(ADDR, "node1").await.unwrap(),
        Some(vec!["kubernetes.io/csi/x^y".to_string()])
    );
    assert_eq!(kube.volumes_in_use(ADDR, "missing").await.unwrap(), None);
}

/// A ResourceDefinition of `doc` (YAML) at `revision`, as `ckecli resource set` stores it.
fn definition(doc: &str, revision: i64) -> cke::model::ResourceDefinition {
    let (key, _) = cke::model::resource::parse_resource(doc.as_bytes()).unwrap();
    cke::model::ResourceDefinition::from_stored(&key, doc.as_bytes().to_vec(), revision).unwrap()
}

/// The managers of `obj`'s managedFields as `manager/operation`.
fn managers(obj: &serde_json::Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}/{}",
                m["manager"].as_str().unwrap_or_default(),
                m["operation"].as_str().unwrap_or_default()
            )
        })
        .collect()
}

/// A CRD for the custom resource `Widget` (e2e.example.com/v1).
const WIDGET_CRD: &str = include_str!("../testdata/resources/widget-crd.yaml");

const WIDGET: &str = r#"apiVersion: e2e.example.com/v1
kind: Widget
metadata:
  name: w1
  namespace: default
spec:
  size: 3
"#;

/// The generic object calls cke's k8s-maintain operations use, against the real 1.20.2 apiserver:
/// get/create/replace, server-side apply (field manager `cke`, forced, the revision annotation, a
/// second apply with a change), discovery (`find_kind`) and the trusted REST mapping fallback of the
/// resource probe and of `resource-apply`, a custom resource before and after its CRD, the version
/// table's 1.20 API versions, and `remove_node` (cordon and delete, a Node being deleted, a missing
/// Node).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_objects_against_a_real_apiserver() {
    use cke::infra::{ApiKind, Applied, NodeRemoval};
    use serde_json::json;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let api = start_apiserver().await;
    const ADDR: &str = "127.0.0.1";
    let storage = storage_with_ca(&api.ca.cert_pem).await;
    let kube = Arc::new(KubeClients::new(TestIssuer::new(&api.ca), storage.clone(), api.port));
    let cm = ApiKind::config_map();

    // get / create / replace.
    assert_eq!(kube.get_object(ADDR, &cm, Some("default"), "e2e").await.unwrap(), None);
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"namespace": "default", "name": "e2e"}, "data": {"a": "1"}});
    kube.create_object(ADDR, &cm, &body).await.unwrap();
    let got = kube
        .get_object(ADDR, &cm, Some("default"), "e2e")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["data"], json!({"a": "1"}));
    // A second create fails, naming the address and the object.
    let e = kube.create_object(ADDR, &cm, &body).await.unwrap_err().to_string();
    assert!(
        e.contains(ADDR) && e.contains("create ConfigMap default/e2e") && e.contains("already exists"),
        "{e}"
    );
    // A replace without resourceVersion is unconditional (CKE's Update of what it owns).
    let replaced = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"namespace": "default", "name": "e2e"}, "data": {"b": "2"}});
    kube.replace_object(ADDR, &cm, &replaced).await.unwrap();
    let got = kube
        .get_object(ADDR, &cm, Some("default"), "e2e")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["data"], json!({"b": "2"}));
    // Replacing what does not exist fails; a namespaced body without namespace is refused before
    // anything is sent.
    let ghost = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"namespace": "default", "name": "ghost"}, "data": {}});
    let e = kube.replace_object(ADDR, &cm, &ghost).await.unwrap_err().to_string();
    assert!(
        e.contains("update ConfigMap default/ghost") && e.contains("not found"),
        "{e}"
    );
    let e = kube
        .create_object(ADDR, &cm, &json!({"metadata": {"name": "x"}}))
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("metadata.namespace is missing"), "{e}");

    // Discovery: core and group kinds with their scope; unknown kinds, groups and versions, and
    // subresource kinds are not found.
    for (version, kind, plural, namespaced) in [
        ("v1", "ConfigMap", "configmaps", true),
        ("v1", "Namespace", "namespaces", false),
        ("apps/v1", "DaemonSet", "daemonsets", true),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", false),
    ] {
        assert_eq!(
            kube.find_kind(ADDR, version, kind).await.unwrap(),
            Some(ApiKind::new(version, kind, plural, namespaced)),
            "{version} {kind}"
        );
    }
    for (version, kind) in [
        ("v1", "Widget"),
        ("e2e.example.com/v1", "Widget"),
        ("apps/v9", "DaemonSet"),
        ("apps/v1", "Scale"),
    ] {
        assert_eq!(
            kube.find_kind(ADDR, version, kind).await.unwrap(),
            None,
            "{version} {kind}"
        );
    }
    // The version table's 1.20 row names what 1.20 serves (EndpointSlice, PodDisruptionBudget), and
    // the newer row's versions are not served here.
    let v120 = cke::k8s::VersionSet::exact(20).unwrap();
    let latest = cke::k8s::VersionSet::latest();
    for (version, kind, served) in [
        (v120.endpoint_slice_api, "EndpointSlice", true),
        (v120.policy_api, "PodDisruptionBudget", true),
        (latest.endpoint_slice_api, "EndpointSlice", false),
        (latest.policy_api, "PodDisruptionBudget", false),
    ] {
        assert_eq!(
            kube.find_kind(ADDR, version, kind).await.unwrap().is_some(),
            served,
            "{version} {kind}"
        );
    }
    // cke's endpoints as the 1.20 row writes them are accepted.
    let p = cke::k8s::endpoints::EndpointParams::kubernetes(vec!["10.0.0.1".into()], vec!["10.0.0.2".into()]);
    let slice = cke::k8s::endpoints::endpoint_slice_body(&p, v120.endpoint_slice_api);
    kube.create_object(ADDR, &ApiKind::endpoint_slice(v120.endpoint_slice_api), &slice)
        .await
        .unwrap();
    kube.create_object(ADDR, &ApiKind::endpoints(), &cke::k8s::endpoints::endpoints_body(&p))
        .await
        .unwrap();
    let got = kube
        .get_object(
            ADDR,
            &ApiKind::endpoint_slice(v120.endpoint_slice_api),
            Some("default"),
            "kubernetes",
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        cke::k8s::endpoints::endpoint_slice_view(&got),
        cke::k8s::endpoints::endpoint_slice_view(&slice)
    );

    // Server-side apply: field manager cke, the revision annotation, forced over another manager's
    // field; a second apply with a change updates what cke owns and drops what it no longer sends.
    let apply_cm = |data: &str, revision: i64| {
        let (kube, cm) = (kube.clone(), cm.clone());
        let doc = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: default\ndata: {data}\n"
        );
        async move {
            let mut obj = definition(&doc, revision).decode().unwrap();
            cke::model::resource::set_revision(&mut obj, revision).unwrap();
            assert_eq!(kube.apply_object(ADDR, &cm, &obj).await.unwrap(), Applied::Applied);
            kube.get_object(ADDR, &cm, Some("default"), "applied")
                .await
                .unwrap()
                .unwrap()
        }
    };
    let got = apply_cm("{a: '1', b: '2'}", 7).await;
    assert_eq!(got["metadata"]["annotations"]["cke.cybozu.com/revision"], "7");
    assert_eq!(got["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(managers(&got), ["cke/Apply"]);
    // Someone else takes field a over with their own apply.
    let client = api.admin_client();
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.patch(
        "applied",
        &PatchParams::apply("other").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "applied", "namespace": "default"}, "data": {"a": "theirs"}})),
    )
    .await
    .unwrap();
    // cke's second apply (revision 9, a changed, b gone, c new) wins the conflict on a (force).
    let got = apply_cm("{a: '10', c: '3'}", 9).await;
    assert_eq!(got["metadata"]["annotations"]["cke.cybozu.com/revision"], "9");
    assert_eq!(got["data"], json!({"a": "10", "c": "3"}));
    assert!(
        managers(&got).contains(&"cke/Apply".to_string()),
        "{:?}",
        managers(&got)
    );
    // An invalid object is an error naming it, not "not served".
    let bad = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "Not_Valid", "namespace": "default"}});
    let e = kube.apply_object(ADDR, &cm, &bad).await.unwrap_err().to_string();
    assert!(e.contains("apply ConfigMap default/Not_Valid"), "{e}");

    // cke's static resources as the 1.20 row gives them apply cleanly; the newest row's DaemonSet
    // (rollingUpdate.maxSurge) is refused by 1.20, and its PodDisruptionBudget version is not served.
    let images = cke::topology::Images::default();
    for r in cke::k8s::static_resources::static_resources(&images, v120) {
        let kind = kube
            .find_kind(ADDR, &r.api_version, &r.kind)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{} {} not served", r.api_version, r.kind));
        assert_eq!(
            kube.apply_object(ADDR, &kind, &r.object).await.unwrap(),
            Applied::Applied,
            "{}",
            r.key
        );
    }
    for r in cke::k8s::static_resources::static_resources(&images, latest) {
        match r.kind.as_str() {
            "DaemonSet" => {
                let kind = ApiKind::new(&r.api_version, "DaemonSet", "daemonsets", true);
                let e = kube.apply_object(ADDR, &kind, &r.object).await.unwrap_err().to_string();
                assert!(e.contains("maxSurge"), "{e}");
            }
            "PodDisruptionBudget" => {
                let kind = ApiKind::new(&r.api_version, &r.kind, "poddisruptionbudgets", true);
                assert_eq!(
                    kube.apply_object(ADDR, &kind, &r.object).await.unwrap(),
                    Applied::NotServed
                );
            }
            _ => {}
        }
    }

    // A custom resource before its CRD: discovery does not know it; the resource probe skips it
    // without a trusted mapping and reads it as absent with one; resource-apply finds it not served
    // and leaves it for a later pass. Once the CRD is established it is applied.
    let widget = definition(WIDGET, 11);
    let trusted = vec![cke::model::TrustedRestMapping {
        group: "e2e.example.com".into(),
        version: "v1".into(),
        kind: "Widget".into(),
        resource: "widgets".into(),
        namespaced: true,
    }];
    let statuses = |trusted: Vec<cke::model::TrustedRestMapping>| {
        let (kube, widget) = (kube.clone(), widget.clone());
        async move {
            cke::probe::resource_statuses(kube.as_ref(), ADDR, std::slice::from_ref(&widget), &trusted)
                .await
                .unwrap()
        }
    };
    assert!(statuses(vec![]).await.is_empty());
    assert!(statuses(trusted.clone()).await.is_empty());
    let mut infra = cke::infra::Infra::minimal(
        storage.clone(),
        Arc::new(cke::model::Cluster::new("test", "10.0.0.0/24", vec![])),
    );
    infra.kube = kube.clone();
    let apply = |def: cke::model::ResourceDefinition, trusted: Vec<cke::model::TrustedRestMapping>| {
        let infra = infra.clone();
        async move {
            use cke::op::Commander;
            cke::op::k8s::resource::ApplyResource {
                apiserver: ADDR.into(),
                def,
                trusted,
            }
            .run(&infra)
            .await
            .map(|_| ())
            .map_err(|e| cke::error::error_chain(&e))
        }
    };
    let widget_kind = ApiKind::new("e2e.example.com/v1", "Widget", "widgets", true);
    let mut body = widget.decode().unwrap();
    cke::model::resource::set_revision(&mut body, 11).unwrap();
    assert_eq!(
        kube.apply_object(ADDR, &widget_kind, &body).await.unwrap(),
        Applied::NotServed
    );
    apply(widget.clone(), vec![]).await.unwrap();
    apply(widget.clone(), trusted.clone()).await.unwrap();
    apply(definition(WIDGET_CRD, 10), vec![]).await.unwrap();
    let t = Instant::now();
    loop {
        if kube
            .find_kind(ADDR, "e2e.example.com/v1", "Widget")
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the CRD is not served after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("FIGURE CRD served {:?} after its apply", t.elapsed());
    assert_eq!(
        kube.find_kind(ADDR, "e2e.example.com/v1", "Widget").await.unwrap(),
        Some(widget_kind.clone())
    );
    apply(widget.clone(), vec![]).await.unwrap();
    let got = kube
        .get_object(ADDR, &widget_kind, Some("default"), "w1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got["spec"]["size"], 3);
    assert_eq!(got["metadata"]["annotations"]["cke.cybozu.com/revision"], "11");
    assert_eq!(managers(&got), ["cke/Apply"]);
    let st = statuses(vec![]).await;
    assert_eq!(
        st[&widget.key]
            .annotations
            .get("cke.cybozu.com/revision")
            .map(String::as_str),
        Some("11")
    );
    assert!(st[&widget.key].has_been_ssa);
    assert!(!widget.needs_update(st.get(&widget.key)));
    assert!(definition(WIDGET, 12).needs_update(st.get(&widget.key)));

    // remove_node: a Node is cordoned and deleted (a finalizer keeps it visible, being deleted); a
    // Node being deleted is left alone; a missing Node is reported missing.
    let nodes_api: Api<Node> = Api::all(client);
    let held: Node = serde_json::from_value(json!({
        "metadata": {"name": "leaving", "finalizers": ["e2e.example.com/hold"]},
    }))
    .unwrap();
    nodes_api.create(&PostParams::default(), &held).await.unwrap();
    assert_eq!(kube.remove_node(ADDR, "leaving").await.unwrap(), NodeRemoval::Deleted);
    let got = nodes_api.get("leaving").await.unwrap();
    assert!(got.metadata.deletion_timestamp.is_some());
    assert_eq!(
        got.spec.as_ref().and_then(|s| s.unschedulable),
        Some(true),
        "cordoned first"
    );
    let rv = got.metadata.resource_version.clone();
    assert_eq!(kube.remove_node(ADDR, "leaving").await.unwrap(), NodeRemoval::Deleting);
    assert_eq!(nodes_api.get("leaving").await.unwrap().metadata.resource_version, rv);
    nodes_api
        .patch(
            "leaving",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    let t = Instant::now();
    while nodes_api.get_opt("leaving").await.unwrap().is_some() {
        assert!(t.elapsed() < Duration::from_secs(10), "the Node is not gone");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(kube.remove_node(ADDR, "leaving").await.unwrap(), NodeRemoval::Missing);
    // A schedulable Node without finalizers is simply gone.
    nodes_api
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "plain"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(kube.remove_node(ADDR, "plain").await.unwrap(), NodeRemoval::Deleted);
    assert!(nodes_api.get_opt("plain").await.unwrap().is_none());
}
