//! The Kubernetes operators against the fake infrastructure ([`crate::infra::fake`]): for each, the
//! commands it records in order; the files it writes on the node (CKE's paths, modes, contents);
//! the certificates it asks for; the container it runs (image, arguments, binds, environment, run
//! options, the params label the planner compares, so the next plan is empty); and what a failure
//! halfway leaves and what the next pass does about it.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::Retry;
use crate::infra::pki::IssueRequest;
use crate::k8s::params::{self, ClusterInputs, Component};
use crate::k8s::VersionSet;
use crate::model::{Mount, Phase, Taint};
use crate::op::tests::{cps, nodes, strings, with_rivers, Env, CP, WORKER};
use crate::op::CommandError;
use crate::planner::{OpKind, PlannedOp};
use crate::topology::*;

const ALL: [&str; 4] = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"];

fn all() -> Vec<String> {
    strings(&ALL)
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn version(env: &Env) -> &'static VersionSet {
    VersionSet::for_image(&env.images.kubernetes).unwrap().set
}

/// Forgets what happened so far (log and certificate requests).
fn forget(env: &Env) {
    env.fake.take_log();
    env.fake.with(|w| w.issued.clear());
}

/// rivers and the managed etcd run; no Kubernetes component does yet.
async fn with_etcd_only(env: &Env) {
    with_rivers(env).await;
    env.run_ok(OpKind::EtcdBootstrap { nodes: cps() }).await;
    forget(env);
}

/// Everything runs and the planner has nothing left to do.
async fn converged(env: &Env) {
    env.converge(12).await;
    assert_eq!(env.next_plan().phase, Phase::Completed);
    forget(env);
}

/// Runs the plans' operations in order until one named `name` comes up; returns it, not run.
async fn plan_until(env: &Env, name: &str) -> PlannedOp {
    for _ in 0..8 {
        let plan = env.next_plan();
        assert!(!plan.ops.is_empty(), "no {name} planned: {plan:?}");
        for p in plan.ops {
            if p.name() == name {
                return p;
            }
            env.run_ok(p.kind).await;
        }
    }
    panic!("no {name} planned after eight passes");
}

/// The node's file at `path`: its text and mode.
fn file(env: &Env, node: &str, path: &str) -> (String, u32) {
    env.fake.with(|w| {
        let (bytes, mode) = w.nodes[node]
            .files
            .get(path)
            .unwrap_or_else(|| panic!("{node} has no {path}: {:?}", w.nodes[node].files.keys()));
        (String::from_utf8(bytes.clone()).unwrap(), *mode)
    })
}

fn has_file(env: &Env, node: &str, path: &str) -> bool {
    env.fake
        .with(|w| w.nodes.get(node).is_some_and(|n| n.files.contains_key(path)))
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("not YAML ({e}): {text}"))
}

/// The spec a container was started with, and whether it runs.
fn container(env: &Env, node: &str, name: &str) -> Option<(crate::infra::agent::container::RunSpec, bool)> {
    env.fake
        .with(|w| w.nodes.get(node).and_then(|n| n.containers.get(name)).cloned())
}

fn spec(env: &Env, node: &str, name: &str) -> crate::infra::agent::container::RunSpec {
    let (spec, running) = container(env, node, name).unwrap_or_else(|| panic!("no {name} on {node}"));
    assert!(running, "{name} on {node} runs");
    spec
}

/// The certificate requests with common name `cn`, in order.
fn issued(env: &Env, cn: &str) -> Vec<IssueRequest> {
    env.fake
        .with(|w| w.issued.iter().filter(|r| r.common_name == cn).cloned().collect())
}

/// The fake's log entries of `node` (without the `node: ` prefix).
fn node_log(log: &[String], node: &str) -> Vec<String> {
    let prefix = format!("{node}: ");
    log.iter()
        .filter_map(|l| l.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// The container spec cke must run for `component` on `address`: built-in then user arguments,
/// binds and environment, and the params label.
fn check_spec(env: &Env, address: &str, component: Component) -> crate::infra::agent::container::RunSpec {
    let s = spec(env, address, component.container_name());
    let node = env.cluster.node(address).unwrap();
    let inputs = ClusterInputs {
        cluster: &env.cluster,
        version: version(env),
        host: &env.host,
    };
    let builtin = params::builtin(&inputs, component, node);
    let extra = params::extra(&env.cluster, component);
    assert_eq!(s.image, env.images.kubernetes);
    let mut args = builtin.extra_args.clone();
    args.extend(extra.extra_args.iter().cloned());
    assert_eq!(s.command, args, "{component:?} on {address}: built-in then extra args");
    let mut binds = builtin.extra_binds.clone();
    binds.extend(extra.extra_binds.iter().cloned());
    assert_eq!(s.binds, binds);
    let mut env_vars = builtin.extra_env.clone();
    env_vars.extend(extra.extra_env.clone());
    assert_eq!(s.env, env_vars);
    assert_eq!(s.params.builtin, builtin);
    assert_eq!(s.params.extra, extra);
    assert_eq!(s.options, params::run_options(component, &env.host));
    // As CKE's restarts: the apiserver stopped, the others killed.
    let replace = match component {
        Component::ApiServer => crate::infra::agent::container::Replace::Stop,
        _ => crate::infra::agent::container::Replace::Kill,
    };
    assert_eq!(s.replace, replace, "{component:?}");
    s
}

fn bind(src: &str, dst: &str, read_only: bool) -> Mount {
    Mount {
        source: src.into(),
        destination: dst.into(),
        read_only,
        ..Default::default()
    }
}

/// Checks a component kubeconfig: cluster `t` through rivers, embedded CA, the certificate issued
/// for `user`, context `default`.
fn check_embedded_kubeconfig(text: &str, user: &str) {
    let v = yaml(text);
    assert_eq!(v["clusters"][0]["name"], "t");
    assert_eq!(v["clusters"][0]["cluster"]["server"], "https://localhost:16443");
    assert_eq!(
        v["clusters"][0]["cluster"]["certificate-authority-data"],
        b64("CA kubernetes").as_str()
    );
    assert_eq!(v["users"][0]["name"], user);
    assert_eq!(
        v["users"][0]["user"]["client-certificate-data"],
        b64(&format!("CERT kubernetes {user}")).as_str()
    );
    assert_eq!(
        v["users"][0]["user"]["client-key-data"],
        b64(&format!("KEY kubernetes {user}")).as_str()
    );
    assert_eq!(v["contexts"][0]["name"], "default");
    assert_eq!(v["contexts"][0]["context"]["user"], user);
    assert_eq!(v["contexts"][0]["context"]["cluster"], "t");
    assert_eq!(v["current-context"], "default");
}

fn role_organization(r: &IssueRequest) -> Option<&'static str> {
    let role = r.role.as_deref().expect("component certificates name their role");
    crate::infra::pki::requests::role_spec(&r.ca, role)
        .expect("a role cke knows")
        .organization
}

fn pki(name: &str) -> String {
    k8s_pki_path(name)
}

// ---------------------------------------------------------------------------------------------
// kube-apiserver

#[tokio::test]
async fn apiserver_boot_writes_ckes_files_and_runs_the_declared_container() {
    let mut env = Env::new().await;
    env.cluster.options.kube_api.extra_args = vec!["--v=2".into()];
    env.cluster.options.kube_api.extra_binds = vec![bind("/var/log/audit", "/var/log/audit", false)];
    env.cluster.options.kube_api.extra_env = [("GOGC".to_string(), "50".to_string())].into();
    with_etcd_only(&env).await;
    let plan = env.next_plan();
    assert_eq!(plan.ops[0].kind, OpKind::KubeApiserverRestart { nodes: cps() });
    let cmds = env.run_ok(plan.ops[0].kind.clone()).await;
    let mut want = Vec::new();
    for c in ["image-pull", "make-dirs", "write-files", "run-container"] {
        for a in CP {
            want.push(format!("{c} {a}"));
        }
    }
    assert_eq!(cmds, want);

    // On each node: pull, directories (apiserver's 0700), certificates and the keys from Vault,
    // every file, and only then the container.
    let log = env.fake.take_log();
    let n1 = node_log(&log, CP[0]);
    assert_eq!(n1[0], format!("pull {}", env.images.kubernetes));
    assert_eq!(
        n1[1],
        "sh mkdir -p /etc/kubernetes/pki && mkdir -p /etc/kubernetes/apiserver && chmod 700 /etc/kubernetes/apiserver"
    );
    assert_eq!(n1.last().unwrap(), "run kube-apiserver");
    let first_write = log.iter().position(|l| l.starts_with("10.0.0.1: write ")).unwrap();
    let issues: Vec<&String> = log[..first_write].iter().filter(|l| l.starts_with("issue ")).collect();
    assert_eq!(
        issues,
        [
            "issue kubernetes CN=kubernetes",
            "issue etcd-client CN=kube-apiserver",
            "issue kubernetes-aggregation CN=front-proxy-client",
        ]
    );
    assert!(log[..first_write].contains(&"read cke/secrets/k8s".to_string()));

    for a in CP {
        let f = |p: &str| file(&env, a, p);
        assert_eq!(f(&pki("apiserver.crt")), ("CERT kubernetes kubernetes".into(), 0o644));
        assert_eq!(f(&pki("apiserver.key")), ("KEY kubernetes kubernetes".into(), 0o600));
        assert_eq!(
            f(&pki("apiserver-etcd-client.crt")),
            ("CERT etcd-client kube-apiserver".into(), 0o644)
        );
        assert_eq!(f(&pki("apiserver-etcd-client.key")).1, 0o600);
        assert_eq!(
            f(&pki("aggregation.crt")),
            ("CERT kubernetes-aggregation front-proxy-client".into(), 0o644)
        );
        assert_eq!(f(&pki("aggregation.key")).1, 0o600);
        assert_eq!(f(&pki("ca.crt")), ("CA kubernetes".into(), 0o644));
        assert_eq!(f(&pki("etcd-ca.crt")), ("CA server".into(), 0o644));
        assert_eq!(
            f(&pki("aggregation-ca.crt")),
            ("CA kubernetes-aggregation".into(), 0o644)
        );
        assert_eq!(f(&pki("service-account.crt")), ("SA CERT".into(), 0o644));
        assert_eq!(f(&pki("service-account.key")), ("SA KEY".into(), 0o600));
        // The Secret encryption config: the keys from Vault under aescbc, identity after.
        let (text, mode) = f("/etc/kubernetes/apiserver/encryption.yml");
        assert_eq!(mode, 0o600);
        let enc = yaml(&text);
        assert_eq!(enc["apiVersion"], "apiserver.config.k8s.io/v1");
        assert_eq!(enc["kind"], "EncryptionConfiguration");
        assert_eq!(enc["resources"][0]["resources"], json!(["secrets"]));
        let keys = env.fake.with(|w| w.encryption_keys.clone());
        assert_eq!(
            enc["resources"][0]["providers"][0]["aescbc"]["keys"],
            json!([{"name": keys[0].name, "secret": keys[0].secret}])
        );
        assert_eq!(enc["resources"][0]["providers"][1], json!({"identity": {}}));
        assert!(
            env.fake
                .with(|w| w.nodes[a].files.keys().all(|p| !p.contains("audit-policy"))),
            "no audit policy unless audit is enabled"
        );

        // The certificates as CKE asks for them.
        let r = issued(&env, "kubernetes");
        let r = r.iter().find(|r| r.ip_sans.contains(&a.to_string())).unwrap();
        assert_eq!((r.ca.as_str(), r.role.as_deref()), ("kubernetes", Some("system")));
        assert_eq!(
            r.alt_names,
            [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"
            ]
        );
        assert_eq!(r.ip_sans, ["127.0.0.1", a, "10.96.0.1"]);
        assert_eq!(role_organization(r), None);

        let s = check_spec(&env, a, Component::ApiServer);
        assert_eq!(s.name, "kube-apiserver");
        assert_eq!(s.command[0], "kube-apiserver");
        assert!(s.command.contains(&format!("--advertise-address={a}")));
        assert!(s
            .command
            .contains(&"--service-cluster-ip-range=10.96.0.0/16".to_string()));
        assert!(s
            .command
            .contains(&"--etcd-servers=https://127.0.0.1:12379".to_string()));
        assert!(s
            .command
            .contains(&"--encryption-provider-config=/etc/kubernetes/apiserver/encryption.yml".to_string()));
        assert_eq!(s.command.last().unwrap(), "--v=2", "extra args come last");
        assert!(!s.command.iter().any(|a| a.starts_with("--audit")));
        assert_eq!(s.binds[0], bind("/etc/machine-id", "/etc/machine-id", true));
        assert_eq!(s.binds[1].source, "/etc/kubernetes");
        assert!(s.binds[1].read_only);
        assert_eq!(s.binds[2], bind("/var/log/audit", "/var/log/audit", false));
        assert_eq!(s.env["GOGC"], "50");
        assert!(s
            .options
            .windows(2)
            .any(|w| w == ["--mount", "type=tmpfs,dst=/run/kubernetes"]));
        assert!(s.options.contains(&"--read-only".to_string()));
    }
    for r in issued(&env, "kube-apiserver") {
        assert_eq!((r.ca.as_str(), r.role.as_deref()), ("etcd-client", Some("system")));
        assert!(r.alt_names.is_empty() && r.ip_sans.is_empty());
        assert_eq!(role_organization(&r), None);
    }
    for r in issued(&env, "front-proxy-client") {
        assert_eq!(r.ca, "kubernetes-aggregation");
        assert!(r.alt_names.is_empty() && r.ip_sans.is_empty());
    }
    // The planner sees them current: the other components come next, apiservers are left alone.
    let plan = env.next_plan();
    assert_eq!(plan.phase, Phase::K8sStart, "{plan:?}");
    assert!(
        plan.ops.iter().all(|p| p.name() != "kube-apiserver-restart"),
        "{plan:?}"
    );
}

#[tokio::test]
async fn apiserver_audit_policy_is_named_by_its_md5_and_the_restarts_converge() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    let policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n";
    env.cluster.options.kube_api.audit_log_enabled = true;
    env.cluster.options.kube_api.audit_log_policy = policy.into();
    let path = format!(
        "/etc/kubernetes/apiserver/audit-policy-{:x}.yaml",
        md5::compute(policy.as_bytes())
    );
    // Outdated apiservers restart one at a time, each converging.
    for _ in CP {
        let plan = env.next_plan();
        // Each is first listed not ready in the kubernetes endpoints.
        assert_eq!(
            plan.ops.iter().map(|o| o.name()).collect::<Vec<_>>(),
            [
                "update-kubernetes-endpoints",
                "update-kubernetes-endpointslice",
                "kube-apiserver-restart"
            ],
            "{plan:?}"
        );
        let OpKind::KubeApiserverRestart { nodes } = plan.ops[2].kind.clone() else {
            panic!("{plan:?}");
        };
        assert_eq!(nodes.len(), 1);
        let not_ready = env.fake.with(|w| {
            let ep = w
                .kube_object(&crate::infra::ApiKind::endpoints(), "default", "kubernetes")
                .cloned();
            ep.map(|o| crate::k8s::endpoints::endpoints_view(&o))
        });
        assert!(
            !not_ready.is_some_and(|v| v.subsets[0].not_ready_addresses.contains(&nodes[0])),
            "not yet written"
        );
        for op in &plan.ops {
            env.run_ok(op.kind.clone()).await;
        }
        let ep = env.fake.with(|w| {
            let o = w
                .kube_object(&crate::infra::ApiKind::endpoints(), "default", "kubernetes")
                .cloned();
            crate::k8s::endpoints::endpoints_view(&o.unwrap())
        });
        assert_eq!(
            ep.subsets[0].not_ready_addresses, nodes,
            "restarted while listed not ready"
        );
        let a = &nodes[0];
        assert_eq!(file(&env, a, &path), (policy.to_string(), 0o600));
        let s = check_spec(&env, a, Component::ApiServer);
        let n = s.command.len();
        assert_eq!(
            s.command[n - 2..],
            ["--audit-log-path=-".to_string(), format!("--audit-policy-file={path}")]
        );
    }
    // The last one is listed ready again.
    assert_eq!(
        env.converge(2).await,
        ["update-kubernetes-endpoints", "update-kubernetes-endpointslice"]
    );
    assert_eq!(env.next_plan().phase, Phase::Completed);

    // A policy change is a new file (so new arguments); a log path replaces `-`.
    env.cluster.options.kube_api.audit_log_policy = format!("{policy}- level: None\n");
    env.cluster.options.kube_api.audit_log_path = "/var/log/audit.log".into();
    let op = env.next_plan().ops.last().unwrap().clone();
    env.run_ok(op.kind.clone()).await;
    let a = &op.targets()[0];
    let s = spec(&env, a, KUBE_APISERVER_CONTAINER);
    assert!(s.command.contains(&"--audit-log-path=/var/log/audit.log".to_string()));
    let new_path = crate::k8s::encryption::audit_policy_path(&env.cluster.options.kube_api.audit_log_policy);
    assert_ne!(new_path, path);
    assert!(has_file(&env, a, &new_path));
}

#[tokio::test]
async fn an_apiserver_restart_failing_on_the_second_node_leaves_the_rest_to_the_next_pass() {
    let env = Env::new().await;
    with_etcd_only(&env).await;
    env.fake.fail_once("10.0.0.2: run kube-apiserver");
    let (cmds, r) = env.run(OpKind::KubeApiserverRestart { nodes: cps() }).await;
    // Each step acts on every node: the run fails on the second only, and the step with it.
    assert_eq!(cmds.last().unwrap(), "run-container 10.0.0.3");
    assert_eq!(cmds.len(), 12);
    let e = r.unwrap_err();
    assert_eq!(
        (e.command.as_str(), e.target.as_str()),
        ("run-container", "10.0.0.1, 10.0.0.2, 10.0.0.3")
    );
    assert_eq!(e.retry, Retry::Soon);
    let results = crate::op::common::step_results(&e).expect("every node's result");
    assert_eq!(results.succeeded, [CP[0], CP[2]]);
    assert_eq!(results.failed.keys().collect::<Vec<_>>(), [CP[1]]);
    assert!(
        crate::error::error_chain(&e).contains("failed on 1 of 3 targets (10.0.0.2: "),
        "{e:?}"
    );
    // The first and third run, the second has its files but no container.
    assert!(container(&env, CP[0], KUBE_APISERVER_CONTAINER).is_some());
    assert!(has_file(&env, CP[1], &pki("apiserver.crt")));
    assert!(container(&env, CP[1], KUBE_APISERVER_CONTAINER).is_none());
    assert!(container(&env, CP[2], KUBE_APISERVER_CONTAINER).is_some());
    // The stopped one is started next.
    let plan = env.next_plan();
    assert_eq!(
        plan.ops.last().unwrap().kind,
        OpKind::KubeApiserverRestart { nodes: nodes(&[CP[1]]) },
        "{plan:?}"
    );
}

#[tokio::test]
async fn an_apiserver_restart_failing_at_its_first_file_leaves_the_running_apiserver_as_it_was() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    let before = spec(&env, CP[0], KUBE_APISERVER_CONTAINER);
    let before_crt = file(&env, CP[0], &pki("apiserver.crt"));
    env.cluster.options.kube_api.extra_args = vec!["--v=3".into()];
    let plan = env.next_plan();
    let op = plan.ops.last().unwrap().clone();
    assert_eq!(op.kind, OpKind::KubeApiserverRestart { nodes: nodes(&[CP[0]]) });
    env.fake.fail_once("10.0.0.1: write /etc/kubernetes/pki/apiserver.crt");
    let (cmds, r) = env.run(op.kind.clone()).await;
    assert_eq!(
        cmds,
        strings(&["image-pull 10.0.0.1", "make-dirs 10.0.0.1", "write-files 10.0.0.1"])
    );
    let e = r.unwrap_err();
    assert_eq!((e.command.as_str(), e.target.as_str()), ("write-files", "10.0.0.1"));
    assert_eq!(e.retry, Retry::Soon);
    assert!(
        crate::error::error_chain(&e).contains("/etc/kubernetes/pki/apiserver.crt"),
        "{}",
        crate::error::error_chain(&e)
    );
    // Nothing was written, the old apiserver still runs with its old arguments.
    let log = env.fake.take_log();
    assert!(!log.iter().any(|l| l.starts_with("10.0.0.1: write ")), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("run kube-apiserver")), "{log:?}");
    assert_eq!(spec(&env, CP[0], KUBE_APISERVER_CONTAINER), before);
    assert_eq!(file(&env, CP[0], &pki("apiserver.crt")), before_crt);
    // The next pass tries the same node again, and that converges.
    assert_eq!(env.next_plan().ops.last().unwrap().kind, op.kind);
    let names = env.converge(6).await;
    let rolling = [
        "update-kubernetes-endpoints",
        "update-kubernetes-endpointslice",
        "kube-apiserver-restart",
    ];
    let mut want: Vec<&str> = rolling.iter().cycle().take(9).copied().collect();
    // The last one restarted is listed ready again.
    want.extend(&rolling[..2]);
    assert_eq!(names, want);
}

/// A storage holding the CAs but not `missing`.
async fn storage_without(missing: &str) -> std::sync::Arc<dyn crate::storage::Storage> {
    let s = crate::infra::fake::Fake::storage().await;
    assert!(s.delete_raw(missing).await.unwrap());
    s
}

fn check_refusal(e: &CommandError, node: &str, what: &str) {
    assert_eq!(e.command.as_str(), "write-files");
    assert!(e.target.split(", ").any(|t| t == node), "{e:?}");
    if let Some(r) = crate::op::common::step_results(e) {
        assert!(r.failed.contains_key(node), "{r:?}");
    }
    assert_eq!(e.retry, Retry::AfterChange, "{e:?}");
    let chain = crate::error::error_chain(e);
    assert!(chain.contains(what), "{chain}");
}

#[tokio::test]
async fn an_apiserver_without_the_service_account_pair_is_refused_naming_it() {
    for missing in [
        crate::storage::KEY_SERVICE_ACCOUNT_CERT,
        crate::storage::KEY_SERVICE_ACCOUNT_KEY,
    ] {
        let mut env = Env::new().await;
        env.storage = storage_without(missing).await;
        with_etcd_only(&env).await;
        let (cmds, r) = env.run(OpKind::KubeApiserverRestart { nodes: cps() }).await;
        assert_eq!(cmds.last().unwrap(), "write-files 10.0.0.3");
        let e = r.unwrap_err();
        check_refusal(&e, CP[0], missing);
        assert!(crate::error::error_chain(&e).contains("ckecli vault init"), "{e:?}");
        let log = env.fake.take_log();
        assert!(!log.iter().any(|l| l.contains(": write ")), "nothing written: {log:?}");
        assert!(env.fake.with(|w| w.issued.is_empty()), "no certificate issued in vain");
        assert!(container(&env, CP[0], KUBE_APISERVER_CONTAINER).is_none());
    }
}

#[tokio::test]
async fn an_apiserver_without_an_encryption_key_is_refused_naming_it() {
    let env = Env::new().await;
    with_etcd_only(&env).await;
    env.fake.with(|w| w.encryption_keys.clear());
    let (cmds, r) = env.run(OpKind::KubeApiserverRestart { nodes: cps() }).await;
    assert_eq!(cmds.last().unwrap(), "write-files 10.0.0.3");
    let e = r.unwrap_err();
    check_refusal(&e, CP[0], "cke/secrets/k8s");
    assert!(crate::error::error_chain(&e).contains("ckecli vault enckey"));
    let log = env.fake.take_log();
    assert!(!log.iter().any(|l| l.contains(": write ")), "nothing written: {log:?}");
}

#[tokio::test]
async fn a_missing_ca_is_refused_naming_it() {
    let mut env = Env::new().await;
    env.storage = storage_without("ca/kubernetes-aggregation").await;
    with_etcd_only(&env).await;
    let (_, r) = env.run(OpKind::KubeApiserverRestart { nodes: cps() }).await;
    check_refusal(&r.unwrap_err(), CP[0], "kubernetes-aggregation");
    assert!(env.fake.with(|w| w.issued.is_empty()), "no certificate issued in vain");
    // The same for a kubeconfig's CA.
    let mut env = Env::new().await;
    env.storage = storage_without("ca/kubernetes").await;
    with_etcd_only(&env).await;
    let (_, r) = env.run(OpKind::KubeProxyBootstrap { nodes: all() }).await;
    check_refusal(&r.unwrap_err(), CP[0], "CA kubernetes is not in the management etcd");
    assert!(env.fake.with(|w| w.issued.is_empty()));
}

// ---------------------------------------------------------------------------------------------
// kube-controller-manager

#[tokio::test]
async fn controller_manager_boot_writes_its_kubeconfig_and_the_service_account_key() {
    let mut env = Env::new().await;
    env.cluster.options.kube_controller_manager.extra_args = vec!["--v=1".into()];
    with_etcd_only(&env).await;
    let op = plan_until(&env, "kube-controller-manager-bootstrap").await;
    assert_eq!(op.kind, OpKind::KubeControllerManagerBootstrap { nodes: cps() });
    forget(&env);
    let cmds = env.run_ok(op.kind).await;
    let mut want = Vec::new();
    for c in ["image-pull", "make-dirs", "write-files", "run-container"] {
        for a in CP {
            want.push(format!("{c} {a}"));
        }
    }
    assert_eq!(cmds, want);
    for a in CP {
        let (text, mode) = file(&env, a, CONTROLLER_MANAGER_KUBECONFIG_PATH);
        assert_eq!(mode, 0o600);
        check_embedded_kubeconfig(&text, "system:kube-controller-manager");
        assert_eq!(file(&env, a, &pki("service-account.key")), ("SA KEY".into(), 0o600));
        let s = check_spec(&env, a, Component::ControllerManager);
        assert_eq!(
            s.command[..3],
            [
                "kube-controller-manager",
                "--cluster-name=t",
                "--service-cluster-ip-range=10.96.0.0/16"
            ]
        );
        assert_eq!(s.command.last().unwrap(), "--v=1");
    }
    let log = env.fake.take_log();
    let writes: Vec<String> = node_log(&log, CP[1])
        .into_iter()
        .filter(|l| l.starts_with("write "))
        .collect();
    assert_eq!(
        writes,
        [
            format!("write {CONTROLLER_MANAGER_KUBECONFIG_PATH}"),
            format!("write {}", pki("service-account.key")),
        ],
        "no service-account.crt, no other file"
    );
    let reqs = issued(&env, "system:kube-controller-manager");
    assert_eq!(reqs.len(), 3);
    for r in reqs {
        assert_eq!(r.ca, "kubernetes");
        assert_eq!(role_organization(&r), Some("system:kube-controller-manager"));
        assert!(r.alt_names.is_empty() && r.ip_sans.is_empty());
    }
    let plan = env.next_plan();
    assert!(
        plan.ops
            .iter()
            .all(|p| !p.name().starts_with("kube-controller-manager")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn controller_manager_restart_writes_no_file() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.options.kube_controller_manager.extra_env = [("GOMAXPROCS".to_string(), "2".to_string())].into();
    let plan = env.next_plan();
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    assert_eq!(plan.ops[0].kind, OpKind::KubeControllerManagerRestart { nodes: cps() });
    let cmds = env.run_ok(plan.ops[0].kind.clone()).await;
    let mut want = Vec::new();
    for c in ["image-pull", "run-container"] {
        for a in CP {
            want.push(format!("{c} {a}"));
        }
    }
    assert_eq!(cmds, want);
    let log = env.fake.take_log();
    assert!(
        log.iter().all(|l| !l.contains(": write ") && !l.starts_with("issue ")),
        "{log:?}"
    );
    for a in CP {
        let s = check_spec(&env, a, Component::ControllerManager);
        assert_eq!(s.env["GOMAXPROCS"], "2");
    }
    assert_eq!(env.next_plan().phase, Phase::Completed);
}

// ---------------------------------------------------------------------------------------------
// kube-scheduler

fn scheduler_config(env: &Env) -> Value {
    json!({
        "apiVersion": version(env).scheduler_config_api,
        "kind": "KubeSchedulerConfiguration",
        "parallelism": 8,
    })
}

#[tokio::test]
async fn scheduler_boot_writes_its_kubeconfig_and_the_rendered_config() {
    let mut env = Env::new().await;
    env.cluster.options.kube_scheduler.config = Some(scheduler_config(&env));
    with_etcd_only(&env).await;
    let op = plan_until(&env, "kube-scheduler-bootstrap").await;
    assert_eq!(op.kind, OpKind::KubeSchedulerBootstrap { nodes: cps() });
    forget(&env);
    let cmds = env.run_ok(op.kind).await;
    let mut want = Vec::new();
    for c in ["image-pull", "write-files", "run-container"] {
        for a in CP {
            want.push(format!("{c} {a}"));
        }
    }
    assert_eq!(cmds, want);
    let expected = crate::k8s::config::to_yaml(
        &crate::k8s::config::scheduler(version(&env), &env.cluster.options.kube_scheduler).unwrap(),
    );
    for a in CP {
        let (text, mode) = file(&env, a, SCHEDULER_KUBECONFIG_PATH);
        assert_eq!(mode, 0o600);
        check_embedded_kubeconfig(&text, "system:kube-scheduler");
        let (config, _) = file(&env, a, SCHEDULER_CONFIG_PATH);
        assert_eq!(config, expected);
        let v = yaml(&config);
        assert_eq!(v["kind"], "KubeSchedulerConfiguration");
        assert_eq!(v["parallelism"], 8);
        assert_eq!(v["clientConnection"]["kubeconfig"], SCHEDULER_KUBECONFIG_PATH);
        assert_eq!(v["leaderElection"]["leaderElect"], true);
        let s = check_spec(&env, a, Component::Scheduler);
        assert_eq!(s.command[1], format!("--config={SCHEDULER_CONFIG_PATH}"));
    }
    for r in issued(&env, "system:kube-scheduler") {
        assert_eq!(r.ca, "kubernetes");
        assert_eq!(role_organization(&r), Some("system:kube-scheduler"));
    }
    let plan = env.next_plan();
    assert!(
        plan.ops.iter().all(|p| !p.name().starts_with("kube-scheduler")),
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_scheduler_config_change_restarts_every_scheduler_with_the_new_file() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.options.kube_scheduler.config = Some(scheduler_config(&env));
    let plan = env.next_plan();
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    assert_eq!(plan.ops[0].kind, OpKind::KubeSchedulerRestart { nodes: cps() });
    let cmds = env.run_ok(plan.ops[0].kind.clone()).await;
    assert_eq!(cmds.len(), 9);
    assert_eq!(
        cmds[..3],
        strings(&["image-pull 10.0.0.1", "image-pull 10.0.0.2", "image-pull 10.0.0.3"])
    );
    for a in CP {
        assert_eq!(yaml(&file(&env, a, SCHEDULER_CONFIG_PATH).0)["parallelism"], 8);
    }
    assert_eq!(env.next_plan().phase, Phase::Completed);
}

#[tokio::test]
async fn a_scheduler_config_of_the_wrong_kind_is_refused_before_anything_runs() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.options.kube_scheduler.config = Some(json!({
        "apiVersion": "kubescheduler.config.k8s.io/v0",
        "kind": "KubeSchedulerConfiguration",
    }));
    let (cmds, r) = env.run(OpKind::KubeSchedulerRestart { nodes: cps() }).await;
    assert_eq!(cmds, strings(&["check-declaration 10.0.0.1,10.0.0.2,10.0.0.3"]));
    let e = r.unwrap_err();
    assert_eq!(e.retry, Retry::AfterChange);
    let chain = crate::error::error_chain(&e);
    assert!(chain.contains("options.kube-scheduler.config"), "{chain}");
    assert!(chain.contains("apiVersion"), "{chain}");
    assert!(env.fake.take_log().is_empty());
}

// ---------------------------------------------------------------------------------------------
// kubelet

fn cni() -> crate::model::CniConfFile {
    crate::model::CniConfFile {
        name: "10-bridge.conf".into(),
        content: r#"{"cniVersion":"0.4.0","name":"bridge","type":"bridge"}"#.into(),
    }
}

#[tokio::test]
async fn kubelet_boot_writes_its_files_and_waits_until_healthy() {
    let mut env = Env::new().await;
    env.cluster.options.kubelet.cni_conf_file = Some(cni());
    env.cluster.options.kubelet.extra_args = vec!["--v=2".into()];
    with_etcd_only(&env).await;
    // A stale CNI file goes: the directory is emptied first (kept, so binds of it stay valid).
    env.fake.with(|w| {
        w.nodes
            .get_mut(WORKER)
            .unwrap()
            .files
            .insert("/etc/cni/net.d/99-old.conf".into(), (b"{}".to_vec(), 0o644));
    });
    let op = plan_until(&env, "kubelet-bootstrap").await;
    assert_eq!(op.kind, OpKind::KubeletBootstrap { nodes: all() });
    forget(&env);
    let cmds = env.run_ok(op.kind).await;
    let mut want = Vec::new();
    for c in [
        "image-pull",
        "empty-dir",
        "make-dirs",
        "write-files",
        "run-container",
        "wait-kubelet",
    ] {
        for a in ALL {
            want.push(format!("{c} {a}"));
        }
    }
    assert_eq!(cmds, want);
    assert!(!has_file(&env, WORKER, "/etc/cni/net.d/99-old.conf"));
    let version = version(&env);
    for a in ALL {
        let n = env.cluster.node(a).unwrap();
        let name = n.nodename();
        let expected = crate::k8s::config::to_yaml(
            &crate::k8s::config::kubelet(version, &env.cluster.options.kubelet, a, None).unwrap(),
        );
        let (config, mode) = file(&env, a, KUBELET_CONFIG_PATH);
        assert_eq!((config.as_str(), mode), (expected.as_str(), 0o644));
        assert_eq!(yaml(&config)["clusterDNS"], json!([a]));
        // The kubelet's kubeconfig refers to files (CKE's), with the node's user.
        let (kc, _) = file(&env, a, KUBELET_KUBECONFIG_PATH);
        let v = yaml(&kc);
        assert_eq!(v["clusters"][0]["cluster"]["server"], "https://localhost:16443");
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority"],
            pki("ca.crt").as_str()
        );
        assert_eq!(v["users"][0]["name"], format!("system:node:{name}").as_str());
        assert_eq!(v["users"][0]["user"]["client-certificate"], pki("kubelet.crt").as_str());
        assert_eq!(v["users"][0]["user"]["client-key"], pki("kubelet.key").as_str());
        assert!(v["users"][0]["user"].get("client-certificate-data").is_none());
        assert_eq!(file(&env, a, &pki("ca.crt")).0, "CA kubernetes");
        assert_eq!(
            file(&env, a, &pki("kubelet.crt")),
            (format!("CERT kubernetes system:node:{name}"), 0o644)
        );
        assert_eq!(file(&env, a, &pki("kubelet.key")).1, 0o600);
        assert_eq!(file(&env, a, "/etc/cni/net.d/10-bridge.conf").0, cni().content);

        let r = issued(&env, &format!("system:node:{name}"));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].ca, "kubernetes");
        assert_eq!(role_organization(&r[0]), Some("system:nodes"));
        assert_eq!(r[0].ip_sans, ["127.0.0.1", a]);
        if name == a {
            assert_eq!(r[0].alt_names, ["localhost"]);
        } else {
            assert_eq!(r[0].alt_names, ["localhost", name]);
        }

        let s = check_spec(&env, a, Component::Kubelet);
        assert!(s.command.contains(&format!("--hostname-override={name}")));
        assert_eq!(s.command.last().unwrap(), "--v=2");
        for o in ["--pid=host", "--privileged", "--tmpfs=/tmp"] {
            assert!(s.options.contains(&o.to_string()), "{:?}", s.options);
        }
        assert!(s
            .binds
            .iter()
            .any(|b| b.source == "/var/lib/kubelet" && b.propagation == "rshared"));
    }
    assert_eq!(
        yaml(&file(&env, CP[0], KUBELET_CONFIG_PATH).0)["clusterDNS"],
        json!(["10.0.0.1"])
    );
    assert_eq!(issued(&env, "system:node:node1")[0].alt_names, ["localhost", "node1"]);
    // The directories before the files, the CNI directory emptied before both.
    let log = node_log(&env.fake.take_log(), WORKER);
    let rm = log
        .iter()
        .position(|l| l == "sh mkdir -p /etc/cni/net.d && find /etc/cni/net.d -mindepth 1 -delete")
        .unwrap();
    let mkdir = log
        .iter()
        .position(|l| l.starts_with("sh mkdir -p /opt/cni/bin"))
        .unwrap();
    let write = log.iter().position(|l| l.starts_with("write ")).unwrap();
    assert!(rm < mkdir && mkdir < write, "{log:?}");
    let plan = env.next_plan();
    assert!(plan.ops.iter().all(|p| !p.name().starts_with("kubelet")), "{plan:?}");
}

#[tokio::test]
async fn kubelet_boot_without_cni_file_does_not_empty_the_directory() {
    let env = Env::new().await;
    with_etcd_only(&env).await;
    let op = plan_until(&env, "kubelet-bootstrap").await;
    let cmds = env.run_ok(op.kind).await;
    assert!(!cmds.iter().any(|c| c.starts_with("empty-dir")), "{cmds:?}");
    let steps: Vec<&str> = cmds
        .iter()
        .filter(|c| c.ends_with(" 10.0.0.1"))
        .map(|c| c.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "image-pull 10.0.0.1",
            "make-dirs 10.0.0.1",
            "write-files 10.0.0.1",
            "run-container 10.0.0.1",
            "wait-kubelet 10.0.0.1"
        ]
    );
}

fn taint(key: &str, value: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.into(),
        effect: "NoSchedule".into(),
    }
}

#[tokio::test]
async fn kubelet_boot_retaints_a_registered_node_before_the_kubelet_runs() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.options.kubelet.boot_taints = vec![taint("cke.cybozu.com/boot", "true")];
    // The Node exists, with a user's taint; its kubelet stops.
    env.fake.with(|w| {
        w.kube_nodes.insert(
            WORKER.into(),
            crate::model::KubeNode {
                name: WORKER.into(),
                ready: true,
                taints: vec![taint("cke.cybozu.com/boot", "old"), taint("other", "x")],
                ..Default::default()
            },
        )
    });
    env.fake.crash(WORKER, KUBELET_CONTAINER);
    let plan = env.next_plan();
    let op = plan
        .ops
        .iter()
        .find(|p| p.name() == "kubelet-bootstrap")
        .unwrap_or_else(|| panic!("{plan:?}"));
    assert_eq!(
        op.kind,
        OpKind::KubeletBootstrap {
            nodes: nodes(&[WORKER])
        }
    );
    forget(&env);
    let cmds = env.run_ok(op.kind.clone()).await;
    assert_eq!(
        cmds,
        strings(&[
            "image-pull 10.0.0.4",
            "make-dirs 10.0.0.4",
            "write-files 10.0.0.4",
            "retaint-before-kubelet-boot 10.0.0.4",
            "run-container 10.0.0.4",
            "wait-kubelet 10.0.0.4",
        ])
    );
    let log = env.fake.take_log();
    let taint_at = log
        .iter()
        .position(|l| l.ends_with("kube taint 10.0.0.4"))
        .expect("retainted");
    let run_at = log.iter().position(|l| l == "10.0.0.4: run kubelet").unwrap();
    assert!(taint_at < run_at, "{log:?}");
    // Through a healthy apiserver.
    assert!(
        CP.iter().any(|a| log[taint_at] == format!("{a}: kube taint 10.0.0.4")),
        "{log:?}"
    );
    let taints = env.fake.with(|w| w.kube_nodes[WORKER].taints.clone());
    assert!(taints.contains(&taint("cke.cybozu.com/boot", "true")), "{taints:?}");
    assert!(taints.contains(&taint("other", "x")), "{taints:?}");
    assert_eq!(taints.len(), 2, "{taints:?}");
    // The taint is also registered with a new Node.
    let config = yaml(&file(&env, WORKER, KUBELET_CONFIG_PATH).0);
    assert_eq!(
        config["registerWithTaints"],
        json!([{"key": "cke.cybozu.com/boot", "value": "true", "effect": "NoSchedule"}])
    );
}

#[tokio::test]
async fn kubelet_boot_of_a_registered_node_without_a_healthy_apiserver_fails_before_the_kubelet_runs() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.options.kubelet.boot_taints = vec![taint("cke.cybozu.com/boot", "true")];
    env.fake.crash(WORKER, KUBELET_CONTAINER);
    let mut status = env.status();
    for a in CP {
        status.nodes.get_mut(a).unwrap().kube_apiserver.is_healthy = false;
    }
    let planned = PlannedOp::new(
        OpKind::KubeletBootstrap {
            nodes: nodes(&[WORKER]),
        },
        "t",
    );
    let mut op = crate::op::operator_for(&planned, env.ctx(&status));
    let infra = env.infra();
    forget(&env);
    let mut names = Vec::new();
    let e = loop {
        let cmd = op.next_command().expect("the operation fails before its end");
        names.push(cmd.command().name);
        if let Err(e) = cmd.run(&infra).await {
            break e;
        }
    };
    assert_eq!(names.last().unwrap(), "retaint-before-kubelet-boot");
    assert_eq!(e.retry, Retry::Soon);
    assert!(
        crate::error::error_chain(&e).contains("no healthy kube-apiserver"),
        "{e:?}"
    );
    assert!(!env.fake.take_log().iter().any(|l| l.contains("run kubelet")));
}

#[tokio::test]
async fn kubelet_boot_does_not_retaint_an_unregistered_node() {
    let mut env = Env::new().await;
    env.cluster.options.kubelet.boot_taints = vec![taint("cke.cybozu.com/boot", "true")];
    with_etcd_only(&env).await;
    let op = plan_until(&env, "kubelet-bootstrap").await;
    forget(&env);
    let cmds = env.run_ok(op.kind).await;
    assert!(!cmds.iter().any(|c| c.starts_with("retaint")), "{cmds:?}");
    assert!(!env.fake.take_log().iter().any(|l| l.contains("kube taint")));
}

#[tokio::test]
async fn a_kubelet_boot_failing_on_the_second_node_leaves_the_rest_to_the_next_pass() {
    let env = Env::new().await;
    with_etcd_only(&env).await;
    let op = plan_until(&env, "kubelet-bootstrap").await;
    env.fake.fail_once("10.0.0.2: run kubelet");
    let (cmds, r) = env.run(op.kind).await;
    // The run step acts on every node; it fails on the second only, and the operation stops there.
    assert_eq!(cmds.last().unwrap(), "run-container 10.0.0.4");
    let e = r.unwrap_err();
    assert_eq!(e.command.as_str(), "run-container");
    let results = crate::op::common::step_results(&e).expect("every node's result");
    assert_eq!(results.failed.keys().collect::<Vec<_>>(), [CP[1]]);
    assert_eq!(results.succeeded, [CP[0], CP[2], WORKER]);
    assert!(container(&env, CP[0], KUBELET_CONTAINER).is_some());
    assert!(has_file(&env, CP[1], KUBELET_CONFIG_PATH));
    assert!(container(&env, CP[1], KUBELET_CONTAINER).is_none());
    assert!(container(&env, CP[2], KUBELET_CONTAINER).is_some());
    let op = plan_until(&env, "kubelet-bootstrap").await;
    assert_eq!(op.kind, OpKind::KubeletBootstrap { nodes: nodes(&[CP[1]]) });
    env.run_ok(op.kind).await;
    env.converge(6).await;
}

#[tokio::test]
async fn a_kubelet_that_never_gets_healthy_fails_the_wait_soon() {
    let env = Env::new().await;
    with_etcd_only(&env).await;
    let op = plan_until(&env, "kubelet-bootstrap").await;
    tokio::time::pause();
    let status = env.status();
    let mut op = crate::op::operator_for(&op, env.ctx(&status));
    let infra = env.infra();
    // Run up to the first wait; the kubelet dies right after it started.
    loop {
        let cmd = op.next_command().unwrap();
        let rec = cmd.command();
        if rec.name == "wait-kubelet" {
            env.fake.crash(&cmd.parts()[0].target, KUBELET_CONTAINER);
            let start = tokio::time::Instant::now();
            let e = cmd.run(&infra).await.unwrap_err();
            // Ten tries, five seconds apart (CKE's).
            let waited = start.elapsed().as_secs_f64();
            assert!((45.0..46.0).contains(&waited), "{waited}");
            assert_eq!(e.command.as_str(), "wait-kubelet");
            let results = crate::op::common::step_results(&e).expect("every node's result");
            assert_eq!(results.failed.keys().collect::<Vec<_>>(), ["10.0.0.1"]);
            assert_eq!(results.succeeded.len(), 3, "the others are healthy");
            assert_eq!(e.retry, Retry::Soon);
            assert!(
                crate::error::error_chain(&e).contains("not healthy after 10 tries"),
                "{e:?}"
            );
            break;
        }
        cmd.run(&infra).await.unwrap();
    }
}

#[tokio::test]
async fn kubelet_restart_keeps_the_running_configs_kept_fields() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.options.kubelet.in_place_update = true;
    env.cluster.options.kubelet.extra_args = vec!["--v=4".into()];
    env.cluster.options.kubelet.config = Some(json!({
        "apiVersion": version(&env).kubelet_config_api,
        "kind": "KubeletConfiguration",
        "cgroupRoot": "/wanted",
        "maxPods": 50,
    }));
    // The worker's kubelet runs with its own cgroup settings.
    let (running, _) = file(&env, WORKER, KUBELET_CONFIG_PATH);
    let mut running = yaml(&running);
    running["cgroupRoot"] = json!("/running");
    running["cgroupDriver"] = json!("systemd");
    env.fake.with(|w| {
        w.nodes.get_mut(WORKER).unwrap().files.insert(
            KUBELET_CONFIG_PATH.into(),
            (crate::k8s::config::to_yaml(&running).into_bytes(), 0o644),
        );
    });
    let op = plan_until(&env, "kubelet-restart").await;
    assert_eq!(op.kind, OpKind::KubeletRestart { nodes: all() });
    forget(&env);
    let cmds = env.run_ok(op.kind).await;
    let mut want = Vec::new();
    for c in ["image-pull", "write-files", "run-container", "wait-kubelet"] {
        for a in ALL {
            want.push(format!("{c} {a}"));
        }
    }
    assert_eq!(cmds, want);
    let config = yaml(&file(&env, WORKER, KUBELET_CONFIG_PATH).0);
    assert_eq!(config["cgroupRoot"], "/running", "kept from the running file");
    assert_eq!(config["cgroupDriver"], "systemd");
    assert_eq!(config["maxPods"], 50);
    // A node whose running file has no cgroupRoot does not get the user's either.
    let cp = yaml(&file(&env, CP[1], KUBELET_CONFIG_PATH).0);
    assert!(cp.get("cgroupRoot").is_none(), "{cp}");
    assert_eq!(cp["maxPods"], 50);
    // Not the CA, not the CNI file: only the config, the kubelet's certificate and kubeconfig.
    let log = node_log(&env.fake.take_log(), WORKER);
    let mut writes: Vec<&str> = log.iter().filter_map(|l| l.strip_prefix("write ")).collect();
    writes.sort();
    let mut want = vec![
        KUBELET_CONFIG_PATH.to_string(),
        KUBELET_KUBECONFIG_PATH.to_string(),
        pki("kubelet.crt"),
        pki("kubelet.key"),
    ];
    want.sort();
    assert_eq!(writes, want);
    for a in ALL {
        let s = check_spec(&env, a, Component::Kubelet);
        assert_eq!(s.command.last().unwrap(), "--v=4");
    }
    assert_eq!(env.next_plan().phase, Phase::Completed);
}

#[tokio::test]
async fn a_kubelet_booted_again_does_not_keep_the_cgroup_fields_of_its_stopped_configuration() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.options.kubelet.config = Some(json!({
        "apiVersion": version(&env).kubelet_config_api,
        "kind": "KubeletConfiguration",
        "cgroupRoot": "/wanted",
    }));
    // The worker's kubelet stopped (a reboot, say); its old file stays. CKE keeps the running
    // configuration's cgroup fields only while the kubelet runs.
    let (old, _) = file(&env, WORKER, KUBELET_CONFIG_PATH);
    let mut old = yaml(&old);
    old["cgroupRoot"] = json!("/old");
    env.fake.with(|w| {
        w.nodes.get_mut(WORKER).unwrap().files.insert(
            KUBELET_CONFIG_PATH.into(),
            (crate::k8s::config::to_yaml(&old).into_bytes(), 0o644),
        );
    });
    env.fake.crash(WORKER, KUBELET_CONTAINER);
    let plan = env.next_plan();
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    assert_eq!(
        plan.ops[0].kind,
        OpKind::KubeletBootstrap {
            nodes: nodes(&[WORKER])
        }
    );
    env.run_ok(plan.ops[0].kind.clone()).await;
    let config = yaml(&file(&env, WORKER, KUBELET_CONFIG_PATH).0);
    assert_eq!(config["cgroupRoot"], "/wanted");
    assert_eq!(env.next_plan().phase, Phase::Completed);
}

// ---------------------------------------------------------------------------------------------
// kube-proxy

#[tokio::test]
async fn proxy_boot_writes_its_kubeconfig_and_the_per_node_config() {
    let mut env = Env::new().await;
    env.cluster.options.kube_proxy.config = Some(json!({
        "apiVersion": version(&env).proxy_config_api,
        "kind": "KubeProxyConfiguration",
        "mode": "ipvs",
    }));
    with_etcd_only(&env).await;
    let op = plan_until(&env, "kube-proxy-bootstrap").await;
    assert_eq!(op.kind, OpKind::KubeProxyBootstrap { nodes: all() });
    forget(&env);
    let cmds = env.run_ok(op.kind).await;
    let mut want = Vec::new();
    for c in ["image-pull", "write-files", "run-container"] {
        for a in ALL {
            want.push(format!("{c} {a}"));
        }
    }
    assert_eq!(cmds, want);
    for a in ALL {
        let n = env.cluster.node(a).unwrap();
        let (text, mode) = file(&env, a, PROXY_KUBECONFIG_PATH);
        assert_eq!(mode, 0o600);
        check_embedded_kubeconfig(&text, "system:kube-proxy");
        let expected = crate::k8s::config::to_yaml(
            &crate::k8s::config::proxy(version(&env), &env.cluster.options.kube_proxy, n).unwrap(),
        );
        let (config, _) = file(&env, a, PROXY_CONFIG_PATH);
        assert_eq!(config, expected);
        let v = yaml(&config);
        assert_eq!(v["hostnameOverride"], n.nodename());
        assert_eq!(v["mode"], "ipvs");
        assert_eq!(v["clientConnection"]["kubeconfig"], PROXY_KUBECONFIG_PATH);
        assert_eq!(v["metricsBindAddress"], "0.0.0.0");
        let s = check_spec(&env, a, Component::Proxy);
        assert_eq!(s.command, ["kube-proxy", "--config=/etc/kubernetes/proxy/config.yml"]);
        assert!(s.options.contains(&"--tmpfs=/run".to_string()));
        assert!(s.options.contains(&"--privileged".to_string()));
        assert!(s.binds.contains(&bind("/lib/modules", "/lib/modules", true)));
    }
    assert_eq!(
        yaml(&file(&env, CP[0], PROXY_CONFIG_PATH).0)["hostnameOverride"],
        "node1"
    );
    for r in issued(&env, "system:kube-proxy") {
        assert_eq!(r.ca, "kubernetes");
        assert_eq!(role_organization(&r), Some("system:node-proxier"));
    }
    // No component is left to change; the objects of k8s-maintain are written next (static
    // resources, DNS, etcd endpoints, the registered Nodes' attributes).
    let plan = env.next_plan();
    assert_eq!(plan.phase, Phase::K8sMaintain, "{plan:?}");
    assert_eq!(
        plan.ops.iter().map(|p| p.name()).collect::<Vec<_>>(),
        crate::op::tests::BOOTSTRAP[10..],
        "{plan:?}"
    );
}

#[tokio::test]
async fn a_proxy_config_change_restarts_the_proxies_and_disabling_stops_them() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.options.kube_proxy.config = Some(json!({
        "apiVersion": version(&env).proxy_config_api,
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
    }));
    let plan = env.next_plan();
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    assert_eq!(plan.ops[0].kind, OpKind::KubeProxyRestart { nodes: all() });
    let cmds = env.run_ok(plan.ops[0].kind.clone()).await;
    assert_eq!(cmds.len(), 12);
    assert_eq!(yaml(&file(&env, WORKER, PROXY_CONFIG_PATH).0)["mode"], "iptables");
    assert_eq!(env.next_plan().phase, Phase::Completed);

    env.cluster.options.kube_proxy.disable = true;
    let plan = env.next_plan();
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    assert_eq!(plan.ops[0].kind, OpKind::StopKubeProxy { nodes: all() });
    forget(&env);
    let cmds = env.run_ok(plan.ops[0].kind.clone()).await;
    assert_eq!(
        cmds,
        ALL.iter().map(|a| format!("remove-container {a}")).collect::<Vec<_>>()
    );
    assert_eq!(
        env.fake.take_log(),
        ALL.iter()
            .map(|a| format!("{a}: remove kube-proxy"))
            .collect::<Vec<_>>()
    );
    for a in ALL {
        assert!(container(&env, a, KUBE_PROXY_CONTAINER).is_none());
        assert!(has_file(&env, a, PROXY_CONFIG_PATH), "files stay");
    }
    assert_eq!(env.next_plan().phase, Phase::Completed);
}

// ---------------------------------------------------------------------------------------------
// stop-*

#[tokio::test]
async fn stop_operators_remove_their_container_on_each_node_in_turn() {
    let env = Env::new().await;
    converged(&env).await;
    let cases = [
        (
            OpKind::StopKubeApiserver {
                nodes: nodes(&[CP[1], CP[2]]),
            },
            KUBE_APISERVER_CONTAINER,
        ),
        (
            OpKind::StopKubeControllerManager {
                nodes: nodes(&[CP[1], CP[2]]),
            },
            KUBE_CONTROLLER_MANAGER_CONTAINER,
        ),
        (
            OpKind::StopKubeScheduler {
                nodes: nodes(&[CP[1], CP[2]]),
            },
            KUBE_SCHEDULER_CONTAINER,
        ),
        (
            OpKind::StopEtcdRivers {
                nodes: nodes(&[CP[1], CP[2]]),
            },
            ETCD_RIVERS_CONTAINER,
        ),
        (
            OpKind::StopEtcd {
                nodes: nodes(&[CP[1], CP[2]]),
            },
            ETCD_CONTAINER,
        ),
    ];
    for (kind, name) in cases {
        let cmds = env.run_ok(kind.clone()).await;
        assert_eq!(
            cmds,
            strings(&["remove-container 10.0.0.2", "remove-container 10.0.0.3"])
        );
        assert_eq!(
            env.fake.take_log(),
            [format!("10.0.0.2: remove {name}"), format!("10.0.0.3: remove {name}")],
            "{kind:?}"
        );
        assert!(container(&env, CP[0], name).is_some(), "others untouched");
    }
    // Data and files stay.
    env.fake.with(|w| {
        assert!(w.nodes[CP[1]].volumes.contains(env.cluster.options.etcd.volume()));
        assert!(w.nodes[CP[1]].files.contains_key(&pki("apiserver.crt")));
    });
    // Removing what is gone is no error.
    env.run_ok(OpKind::StopKubeApiserver { nodes: nodes(&[CP[1]]) }).await;
}

#[tokio::test]
async fn a_demoted_control_plane_has_its_control_plane_containers_stopped() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.nodes[2].control_plane = false;
    let names = env.converge(20).await;
    for op in [
        "stop-kube-apiserver",
        "stop-kube-controller-manager",
        "stop-kube-scheduler",
    ] {
        assert!(names.contains(&op), "{op} in {names:?}");
    }
    for c in [
        KUBE_APISERVER_CONTAINER,
        KUBE_CONTROLLER_MANAGER_CONTAINER,
        KUBE_SCHEDULER_CONTAINER,
        ETCD_CONTAINER,
    ] {
        assert!(container(&env, CP[2], c).is_none(), "{c} stopped on the demoted node");
    }
    assert!(spec(&env, CP[2], KUBELET_CONTAINER).name == KUBELET_CONTAINER);
    assert!(spec(&env, CP[2], KUBE_PROXY_CONTAINER).name == KUBE_PROXY_CONTAINER);
}

// ---------------------------------------------------------------------------------------------
// What every operator refuses

#[tokio::test]
async fn an_image_without_a_known_kubernetes_version_is_refused_by_every_operator() {
    let mut env = Env::new().await;
    with_etcd_only(&env).await;
    env.images.kubernetes = "localhost/cke-kubernetes:1.10.0".into();
    for kind in [
        OpKind::KubeApiserverRestart { nodes: cps() },
        OpKind::KubeControllerManagerBootstrap { nodes: cps() },
        OpKind::KubeSchedulerRestart { nodes: cps() },
        OpKind::KubeletBootstrap { nodes: all() },
        OpKind::KubeProxyRestart { nodes: all() },
    ] {
        let (cmds, r) = env.run(kind.clone()).await;
        assert_eq!(cmds.len(), 1, "{kind:?}: {cmds:?}");
        assert!(cmds[0].starts_with("check-kubernetes-image "), "{cmds:?}");
        let e = r.unwrap_err();
        assert_eq!(e.retry, Retry::AfterChange);
        assert!(
            crate::error::error_chain(&e).contains("1.10"),
            "{}",
            crate::error::error_chain(&e)
        );
    }
    assert!(env.fake.take_log().is_empty(), "nothing ran");
}

#[tokio::test]
async fn the_cluster_domain_of_the_kubelet_config_reaches_the_apiserver() {
    let mut env = Env::new().await;
    env.cluster.options.kubelet.config = Some(json!({
        "apiVersion": version(&env).kubelet_config_api,
        "kind": "KubeletConfiguration",
        "clusterDomain": "example.org",
    }));
    with_etcd_only(&env).await;
    env.run_ok(OpKind::KubeApiserverRestart { nodes: cps() }).await;
    let r = &issued(&env, "kubernetes")[0];
    assert_eq!(r.alt_names.last().unwrap(), "kubernetes.default.svc.example.org");
    let s = check_spec(&env, CP[0], Component::ApiServer);
    assert!(s
        .command
        .contains(&"--service-account-issuer=https://kubernetes.default.svc.example.org".to_string()));
    env.converge(8).await;
    assert_eq!(
        yaml(&file(&env, WORKER, KUBELET_CONFIG_PATH).0)["clusterDomain"],
        "example.org"
    );
}

// ---------------------------------------------------------------------------------------------
// CKE's release image: the arguments are CKE's, word for word (op/k8s/*.go @ d66a146)

#[tokio::test]
async fn with_ckes_release_image_every_component_runs_ckes_arguments() {
    let mut env = Env::new().await;
    env.images.kubernetes = "ghcr.io/cybozu/kubernetes:1.35.5.1".into();
    env.converge(12).await;
    assert_eq!(env.next_plan().phase, Phase::Completed);
    let s = |a: &str, c: &str| spec(&env, a, c).command;
    assert_eq!(
        s(CP[1], KUBE_APISERVER_CONTAINER),
        [
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
            "--advertise-address=10.0.0.2",
            "--endpoint-reconciler-type=none",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--encryption-provider-config=/etc/kubernetes/apiserver/encryption.yml",
            "--feature-gates=CoordinatedLeaderElection=true",
            "--runtime-config=coordination.k8s.io/v1beta1=true",
        ]
    );
    let cm = "/etc/kubernetes/controller-manager/kubeconfig";
    assert_eq!(
        s(CP[0], KUBE_CONTROLLER_MANAGER_CONTAINER),
        [
            "kube-controller-manager".to_string(),
            "--cluster-name=t".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            format!("--kubeconfig={cm}"),
            format!("--authentication-kubeconfig={cm}"),
            format!("--authorization-kubeconfig={cm}"),
            "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt".into(),
            "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key".into(),
            "--root-ca-file=/etc/kubernetes/pki/ca.crt".into(),
            "--service-account-private-key-file=/etc/kubernetes/pki/service-account.key".into(),
            "--use-service-account-credentials=true".into(),
        ]
    );
    assert_eq!(
        s(CP[0], KUBE_SCHEDULER_CONTAINER),
        [
            "kube-scheduler",
            "--config=/etc/kubernetes/scheduler/config.yml",
            "--authentication-kubeconfig=/etc/kubernetes/scheduler/kubeconfig",
            "--authorization-kubeconfig=/etc/kubernetes/scheduler/kubeconfig",
            "--tls-cert-file=/etc/kubernetes/pki/apiserver.crt",
            "--tls-private-key-file=/etc/kubernetes/pki/apiserver.key",
        ]
    );
    assert_eq!(
        s(CP[0], KUBELET_CONTAINER),
        [
            "kubelet",
            "--config=/etc/kubernetes/kubelet/config.yml",
            "--kubeconfig=/etc/kubernetes/kubelet/kubeconfig",
            "--hostname-override=node1",
            "--container-runtime-endpoint=/run/containerd/containerd.sock",
        ]
    );
    assert_eq!(
        s(WORKER, KUBE_PROXY_CONTAINER),
        ["kube-proxy", "--config=/etc/kubernetes/proxy/config.yml"]
    );
    let sched = yaml(&file(&env, CP[0], SCHEDULER_CONFIG_PATH).0);
    assert_eq!(sched["apiVersion"], "kubescheduler.config.k8s.io/v1");
    // The test bed's 1.20 image differs where 1.20 needs it (no CRI default, an insecure port).
    let env = Env::new().await;
    env.converge(12).await;
    let kubelet = spec(&env, WORKER, KUBELET_CONTAINER).command;
    assert_eq!(
        kubelet[3..],
        [
            "--hostname-override=10.0.0.4",
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
        ]
    );
    assert_eq!(
        spec(&env, CP[0], KUBE_SCHEDULER_CONTAINER).command.last().unwrap(),
        "--port=0"
    );
}

// ---------------------------------------------------------------------------------------------
// update-node

fn kube_node(env: &Env, name: &str) -> crate::model::KubeNode {
    env.fake
        .with(|w| w.kube_nodes.get(name).cloned())
        .unwrap_or_else(|| panic!("no Node {name}"))
}

#[tokio::test]
async fn update_node_labels_control_planes_and_keeps_the_declared_attributes() {
    let env = Env::new().await;
    converged(&env).await;
    // Converged: control planes carry cke.cybozu.com/master=true (node1 is CP[0]'s hostname), the
    // worker does not.
    for name in ["node1", CP[1], CP[2]] {
        assert_eq!(
            kube_node(&env, name)
                .labels
                .get("cke.cybozu.com/master")
                .map(String::as_str),
            Some("true"),
            "{name}"
        );
    }
    assert!(kube_node(&env, WORKER).labels.is_empty());

    // Someone else's label and taint on the worker, and a stale CKE-internal label.
    env.fake.with(|w| {
        let n = w.kube_nodes.get_mut(WORKER).unwrap();
        n.labels.insert("user".into(), "kept".into());
        n.labels.insert("cke.cybozu.com/stale".into(), "x".into());
        n.taints.push(taint("user-taint", "x"));
    });
    let mut env = env;
    env.cluster.nodes[3].labels.insert("role".into(), "db".into());
    env.cluster.nodes[3].taints.push(taint("dedicated", "db"));
    let plan = env.next_plan();
    assert_eq!(plan.phase, Phase::K8sMaintain, "{plan:?}");
    assert_eq!(
        plan.ops.iter().map(|p| p.kind.clone()).collect::<Vec<_>>(),
        [OpKind::UpdateNode {
            apiserver: CP[0].into(),
            nodes: nodes(&[WORKER])
        }]
    );
    let cmds = env.run_ok(plan.ops[0].kind.clone()).await;
    assert_eq!(cmds, strings(&["update-node 10.0.0.4"]));
    assert_eq!(env.fake.take_log(), strings(&["10.0.0.1: kube update node 10.0.0.4"]));
    let n = kube_node(&env, WORKER);
    assert_eq!(
        n.labels,
        [("role", "db"), ("user", "kept")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    );
    assert_eq!(n.taints, vec![taint("dedicated", "db"), taint("user-taint", "x")]);
    assert_eq!(env.next_plan().phase, Phase::Completed);

    // taint_control_plane: every control plane gets the taint, through the first healthy
    // apiserver; one Node per command, each by its name.
    env.cluster.taint_control_plane = true;
    env.fake.crash(CP[0], KUBE_APISERVER_CONTAINER);
    let plan = env.next_plan();
    // The crashed apiserver is restarted first (k8s-start); with it back, the Nodes.
    assert_eq!(plan.phase, Phase::K8sStart, "{plan:?}");
    for p in plan.ops {
        env.run_ok(p.kind).await;
    }
    let op = plan_until(&env, "update-node").await;
    assert_eq!(
        op.kind,
        OpKind::UpdateNode {
            apiserver: CP[0].into(),
            nodes: cps()
        }
    );
    forget(&env);
    let cmds = env.run_ok(op.kind.clone()).await;
    assert_eq!(
        cmds,
        strings(&["update-node 10.0.0.1", "update-node 10.0.0.2", "update-node 10.0.0.3"])
    );
    for name in ["node1", CP[1], CP[2]] {
        assert_eq!(
            kube_node(&env, name).taints,
            vec![Taint {
                key: "cke.cybozu.com/master".into(),
                value: String::new(),
                effect: "PreferNoSchedule".into()
            }],
            "{name}"
        );
    }
    assert_eq!(env.next_plan().phase, Phase::Completed);
}

#[tokio::test]
async fn update_node_failing_halfway_leaves_the_rest_to_the_next_pass() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    env.cluster.nodes[2].labels.insert("a".into(), "1".into());
    env.cluster.nodes[3].labels.insert("a".into(), "1".into());
    let plan = env.next_plan();
    assert_eq!(
        plan.ops[0].kind,
        OpKind::UpdateNode {
            apiserver: CP[0].into(),
            nodes: nodes(&[CP[2], WORKER])
        }
    );
    env.fake.fail_once("kube update node 10.0.0.3");
    let (cmds, r) = env.run(plan.ops[0].kind.clone()).await;
    // Every Node is updated at once: the other one is written, the failed one is left to the next
    // pass.
    assert_eq!(cmds, strings(&["update-node 10.0.0.3", "update-node 10.0.0.4"]));
    let e = r.unwrap_err();
    assert_eq!(e.retry, Retry::Soon);
    assert!(crate::error::error_chain(&e).contains("injected failure"), "{e:?}");
    assert_eq!(kube_node(&env, WORKER).labels["a"], "1");
    let plan = env.next_plan();
    assert_eq!(plan.ops[0].targets(), nodes(&[CP[2]]));
    env.run_ok(plan.ops[0].kind.clone()).await;
    assert_eq!(kube_node(&env, CP[2]).labels["a"], "1");
    assert_eq!(kube_node(&env, WORKER).labels["a"], "1");
    assert_eq!(env.next_plan().phase, Phase::Completed);
    // Run again on current Nodes: read, nothing written, no error.
    forget(&env);
    env.run_ok(OpKind::UpdateNode {
        apiserver: CP[1].into(),
        nodes: nodes(&[WORKER]),
    })
    .await;
    assert_eq!(env.fake.take_log(), strings(&["10.0.0.2: kube update node 10.0.0.4"]));
}

/// A user resource of `yaml` at `revision`.
fn user_resource(yaml: &str, revision: i64) -> crate::model::ResourceDefinition {
    let (_, info) = crate::model::parse_resource(yaml.as_bytes()).unwrap();
    crate::model::ResourceDefinition::new(info, revision, yaml.as_bytes().to_vec())
}

#[tokio::test]
async fn user_resources_are_applied_in_order_with_revision_ca_bundle_and_certificate_and_again_when_changed() {
    let env = Env::new().await;
    converged(&env).await;
    let mut env = env;
    let crd = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {kind: Widget, plural: widgets}\n  versions: [{name: v1, served: true, storage: true}]\n";
    let widget = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: default\n";
    let webhook = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: hook\n  annotations: {cke.cybozu.com/inject-cacert: \"true\"}\nwebhooks:\n- name: a.example.com\n  clientConfig: {service: {name: webhook-service, namespace: default}}\n- name: b.example.com\n  clientConfig: {service: {name: webhook-service, namespace: default}}\n";
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: webhook-cert\n  namespace: default\n  annotations: {cke.cybozu.com/issue-cert: webhook-service}\n";
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: foo\n";
    // The custom resource without its CRD: its kind is not served.
    env.set_user_resources(vec![
        user_resource(widget, 10),
        user_resource(secret, 11),
        user_resource(webhook, 12),
        user_resource(ns, 14),
    ]);
    let plan = env.next_plan();
    assert_eq!(plan.phase, Phase::K8sMaintain, "{plan:?}");
    let keys: Vec<String> = plan
        .ops
        .iter()
        .map(|p| match &p.kind {
            OpKind::ResourceApply {
                key, builtin: false, ..
            } => key.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    // CKE's kind order: Namespace, CRD, other cluster-scoped, Secret, other namespaced.
    assert_eq!(
        keys,
        [
            "Namespace/foo",
            "ValidatingWebhookConfiguration/hook",
            "Secret/default/webhook-cert",
            "Widget/default/w"
        ]
    );
    forget(&env);
    for p in &plan.ops {
        env.run_ok(p.kind.clone()).await;
    }
    let fake = env.fake.clone();
    let get =
        |kind: crate::infra::ApiKind, ns: &str, name: &str| fake.with(|w| w.kube_object(&kind, ns, name).cloned());
    let hook = get(
        crate::infra::ApiKind::new(
            "admissionregistration.k8s.io/v1",
            "ValidatingWebhookConfiguration",
            "x",
            false,
        ),
        "",
        "hook",
    )
    .expect("applied");
    assert_eq!(hook["metadata"]["annotations"]["cke.cybozu.com/revision"], "12");
    use base64::Engine as _;
    for w in hook["webhooks"].as_array().unwrap() {
        let ca = base64::engine::general_purpose::STANDARD
            .decode(w["clientConfig"]["caBundle"].as_str().unwrap())
            .unwrap();
        assert_eq!(ca, b"CA kubernetes-webhook", "every webhook gets the webhook CA");
    }
    let s = get(
        crate::infra::ApiKind::new("v1", "Secret", "secrets", true),
        "default",
        "webhook-cert",
    )
    .expect("applied");
    assert_eq!(s["type"], "kubernetes.io/tls");
    assert!(s["data"]["tls.crt"].is_string() && s["data"]["tls.key"].is_string());
    let req = issued(&env, "default/webhook-service");
    assert_eq!(req.len(), 1);
    assert_eq!(req[0].ca, "kubernetes-webhook");
    // The Widget's kind is not served: the command succeeds, nothing exists, and each pass tries
    // again.
    let widget_kind = crate::infra::ApiKind::new("example.com/v1", "Widget", "widgets", true);
    assert!(get(widget_kind.clone(), "default", "w").is_none());
    let widget_apply = OpKind::ResourceApply {
        apiserver: CP[0].into(),
        key: "Widget/default/w".into(),
        revision: 10,
        builtin: false,
    };
    let plan = env.next_plan();
    assert_eq!(
        plan.ops.iter().map(|p| p.kind.clone()).collect::<Vec<_>>(),
        std::slice::from_ref(&widget_apply)
    );
    env.run_ok(plan.ops[0].kind.clone()).await;
    assert!(get(widget_kind.clone(), "default", "w").is_none());
    // With its CRD set too, the CRD goes first (CKE's kind order), then the Widget is served.
    let mut user = env.user_resources.clone();
    user.push(user_resource(crd, 13));
    env.set_user_resources(user);
    let plan = env.next_plan();
    assert_eq!(
        plan.ops.iter().map(|p| p.targets()[0].clone()).collect::<Vec<_>>(),
        ["CustomResourceDefinition/widgets.example.com", "Widget/default/w"]
    );
    for p in &plan.ops {
        env.run_ok(p.kind.clone()).await;
    }
    assert_eq!(
        get(widget_kind, "default", "w").unwrap()["metadata"]["annotations"]["cke.cybozu.com/revision"],
        "10"
    );
    assert_eq!(env.next_plan().phase, Phase::Completed);

    // A new revision of the Namespace (ckecli resource set of a changed document) is applied again.
    let labelled = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: foo\n  labels: {team: a}\n";
    let mut user = env.user_resources.clone();
    user.retain(|r| r.key != "Namespace/foo");
    user.push(user_resource(labelled, 20));
    env.set_user_resources(user);
    let plan = env.next_plan();
    assert_eq!(plan.ops.len(), 1, "{plan:?}");
    env.run_ok(plan.ops[0].kind.clone()).await;
    let ns = get(
        crate::infra::ApiKind::new("v1", "Namespace", "namespaces", false),
        "",
        "foo",
    )
    .unwrap();
    assert_eq!(ns["metadata"]["labels"]["team"], "a");
    assert_eq!(ns["metadata"]["annotations"]["cke.cybozu.com/revision"], "20");
    assert_eq!(env.next_plan().phase, Phase::Completed);
}
