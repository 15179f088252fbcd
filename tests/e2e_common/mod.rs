//! Helpers shared by the end-to-end tests on mtest node hosts.
#![allow(dead_code)]

pub mod k8s;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cke::infra::managed_etcd::{EtcdTls, ManagedEtcd};
use cke_testkit::{free_port, Mtest, ProcessGuard};

/// `nodes` mtest node hosts with the tools image loaded, and a directory for logs. Panics when not
/// run as root: these tests fail without it, they do not skip.
pub fn mtest_up(nodes: usize) -> (Mtest, tempfile::TempDir) {
    mtest_up_with(nodes, &[])
}

/// [`mtest_up`] with more `mtest.sh up` flags (e.g. `--k8s`).
pub fn mtest_up_with(nodes: usize, flags: &[&str]) -> (Mtest, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tools = format!("localhost/cke-tools:latest={}", env!("CARGO_BIN_EXE_rivers"));
    let mut args = vec!["--image", tools.as_str()];
    args.extend_from_slice(flags);
    (Mtest::up(nodes, &args), tempfile::tempdir().unwrap())
}

/// A `cke` process, killed on drop.
pub type Cke = ProcessGuard;

/// Runs ckecli against the environment's etcd and OpenBao.
pub fn ckecli(m: &Mtest, args: &[&str], stdin: Option<&str>) -> Output {
    m.ckecli(env!("CARGO_BIN_EXE_ckecli")).run(args, stdin)
}

/// `ckecli` that must succeed.
#[track_caller]
pub fn ok(m: &Mtest, args: &[&str], stdin: Option<&str>) -> String {
    m.ckecli(env!("CARGO_BIN_EXE_ckecli")).ok(args, stdin)
}

/// Starts `cke` for the managed-etcd suites: test-friendly timings, podman, and no Kubernetes
/// (these node hosts have none); `env` adds variables (e.g. a failpoint).
pub fn start_cke(m: &Mtest, name: &str, log: &Path, env: &[(&str, &str)]) -> Cke {
    start_cke_with(m, name, log, env, &["--test-without-kubernetes"])
}

/// Starts `cke` with test-friendly timings, podman, and these extra flags.
pub fn start_cke_with(m: &Mtest, name: &str, log: &Path, env: &[(&str, &str)], flags: &[&str]) -> Cke {
    let child = Command::new(env!("CARGO_BIN_EXE_cke"))
        .arg("--config")
        .arg(&m.env["CKE_CONFIG"])
        .args(["--name", name, "--http", &format!("127.0.0.1:{}", free_port())])
        .args(["--interval", "3s", "--session-ttl", "5s", "--container-cli", "podman"])
        .args(flags)
        .env("CKE_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    ProcessGuard(child)
}

/// Vault, the SSH key and the constraint, ready for a declaration.
pub fn prepare(m: &Mtest, control_planes: usize) {
    ok(m, &["vault", "init"], None);
    ok(m, &["vault", "ssh-privkey", m.ssh_key().to_str().unwrap()], None);
    ok(
        m,
        &["constraints", "set", "control-plane-count", &control_planes.to_string()],
        None,
    );
}

/// A declaration with these nodes (1-based) as control planes, plus `extra` YAML under `options`.
pub fn cluster_yaml(m: &Mtest, cps: &[usize], etcd_extra_args: &[&str]) -> String {
    let mut s = String::from("name: e2e\nservice_subnet: 10.96.0.0/16\nnodes:\n");
    for i in cps {
        s.push_str(&format!(
            "  - {{address: {}, hostname: node{i}, user: root, control_plane: true}}\n",
            m.node(*i)
        ));
    }
    if !etcd_extra_args.is_empty() {
        s.push_str("options:\n  etcd:\n    extra_args:\n");
        for a in etcd_extra_args {
            s.push_str(&format!("      - \"{a}\"\n"));
        }
    }
    s
}

/// Declares the cluster (and the matching constraint).
pub fn declare(m: &Mtest, cps: &[usize], etcd_extra_args: &[&str]) {
    let current: serde_json::Value = serde_json::from_str(&ok(m, &["constraints", "show"], None)).unwrap();
    let n = cps.len().to_string();
    // Raise the count first when growing, lower it after when shrinking, so both states stay valid.
    if current["control-plane-count"].as_u64().unwrap_or(0) < cps.len() as u64 {
        ok(m, &["constraints", "set", "control-plane-count", &n], None);
    }
    ok(
        m,
        &["cluster", "set", "-"],
        Some(&cluster_yaml(m, cps, etcd_extra_args)),
    );
    ok(m, &["constraints", "set", "control-plane-count", &n], None);
}

/// A root connection to the managed etcd through these nodes.
pub async fn root_etcd(m: &Mtest, nodes: &[usize]) -> ManagedEtcd {
    let v: serde_json::Value = serde_json::from_str(&ok(m, &["etcd", "root-issue"], None)).unwrap();
    let tls = EtcdTls {
        ca: v["ca_certificate"].as_str().unwrap().into(),
        cert: v["certificate"].as_str().unwrap().into(),
        key: v["private_key"].as_str().unwrap().into(),
    };
    let endpoints = nodes.iter().map(|i| format!("https://{}:2379", m.node(*i))).collect();
    ManagedEtcd::connect(endpoints, tls, Duration::from_secs(5))
        .await
        .unwrap()
}

/// The member addresses, when the cluster answers through `via`.
pub async fn members(m: &Mtest, via: &[usize]) -> Option<Vec<String>> {
    let st = root_etcd(m, via).await.cluster_status().await.ok()?;
    Some(st.members.keys().cloned().collect())
}

/// Waits until the members are exactly `nodes`, voting, healthy and in sync; returns how long it took.
pub async fn wait_members(m: &Mtest, nodes: &[usize], limit: Duration, log: &Path) -> Duration {
    let t0 = Instant::now();
    let mut want: Vec<String> = nodes.iter().map(|i| m.node(*i)).collect();
    want.sort();
    loop {
        let etcd = root_etcd(m, nodes).await;
        if let Ok(st) = etcd.cluster_status().await {
            let got: Vec<String> = st.members.keys().cloned().collect();
            if st.is_healthy
                && got == want
                && st.in_sync_members.len() == want.len()
                && st.members.values().all(|mm| !mm.is_learner)
            {
                return t0.elapsed();
            }
        }
        if t0.elapsed() > limit {
            let hist = String::from_utf8_lossy(&ckecli(m, &["history", "-n", "5"], None).stdout).into_owned();
            panic!(
                "members never became {want:?}\nhistory: {hist}\nlog: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Waits until the newest record of `operation` is completed.
pub async fn wait_completed(m: &Mtest, operation: &str, limit: Duration) {
    let t0 = Instant::now();
    loop {
        let text = String::from_utf8_lossy(&ckecli(m, &["history"], None).stdout).into_owned();
        let done = serde_json::Deserializer::from_str(&text)
            .into_iter::<cke::model::Record>()
            .filter_map(Result::ok)
            .find(|r| r.operation == operation)
            .is_some_and(|r| r.status == cke::model::RecordStatus::Completed);
        if done {
            return;
        }
        assert!(t0.elapsed() < limit, "{operation} did not complete within {limit:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
