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
    start_cke_at(m, name, log, env, flags, free_port())
}

/// [`start_cke_with`], its HTTP endpoint on `127.0.0.1:port`.
pub fn start_cke_at(m: &Mtest, name: &str, log: &Path, env: &[(&str, &str)], flags: &[&str], port: u16) -> Cke {
    let child = Command::new(env!("CARGO_BIN_EXE_cke"))
        .arg("--config")
        .arg(&m.env["CKE_CONFIG"])
        .args(["--name", name, "--http", &format!("127.0.0.1:{port}")])
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
    // The constraint first, as CKE's users do: `cluster set` checks the declaration against it,
    // `constraints set` checks nothing. The controller skips the pass that sees the pair mismatched.
    ok(
        m,
        &["constraints", "set", "control-plane-count", &cps.len().to_string()],
        None,
    );
    ok(
        m,
        &["cluster", "set", "-"],
        Some(&cluster_yaml(m, cps, etcd_extra_args)),
    );
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

/// Puts a key under `prefix` every 50 ms through the managed etcd until stopped, noting when each
/// acknowledged write was acknowledged: every one must survive whatever cke does meanwhile.
pub struct Writer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<Vec<(String, Instant)>>,
    started: Instant,
}

impl Writer {
    /// Starts writing through `etcd`.
    pub fn start(etcd: ManagedEtcd, prefix: &str) -> Writer {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let prefix = prefix.to_string();
        let handle = tokio::spawn(async move {
            let mut c = etcd.client();
            let mut acked = Vec::new();
            let mut i = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::SeqCst) {
                let key = format!("{prefix}{i:08}");
                let r = tokio::time::timeout(Duration::from_secs(2), c.put(key.clone(), "x", None)).await;
                if matches!(r, Ok(Ok(_))) {
                    acked.push((key, Instant::now()));
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            acked
        });
        Writer {
            stop,
            handle,
            started: Instant::now(),
        }
    }

    /// Stops writing; returns the acknowledged writes and when each was acknowledged.
    pub async fn stop(self) -> Acked {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        Acked {
            writes: self.handle.await.unwrap(),
            started: self.started,
            stopped: Instant::now(),
        }
    }
}

/// What a [`Writer`] had acknowledged.
pub struct Acked {
    /// Each key, with when it was acknowledged.
    pub writes: Vec<(String, Instant)>,
    started: Instant,
    stopped: Instant,
}

impl Acked {
    /// The longest time without an acknowledged write between `from` and `to` (within the writer's
    /// run).
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let (from, to) = (from.max(self.started), to.min(self.stopped));
        let mut last = from;
        let mut longest = Duration::ZERO;
        for (_, t) in self.writes.iter().filter(|(_, t)| *t > from && *t <= to) {
            longest = longest.max(*t - last);
            last = *t;
        }
        longest.max(to.saturating_duration_since(last))
    }

    /// The longest time without an acknowledged write over the whole run.
    pub fn longest(&self) -> Duration {
        self.longest_gap(self.started, self.stopped)
    }

    /// Fails unless every acknowledged write is in the managed etcd (read through `nodes`).
    pub async fn assert_none_lost(&self, m: &Mtest, nodes: &[usize], prefix: &str) {
        let check = root_etcd(m, nodes).await;
        let got = check
            .client()
            .get(
                prefix,
                Some(etcd_client::GetOptions::new().with_prefix().with_keys_only()),
            )
            .await
            .unwrap();
        let present: std::collections::HashSet<String> = got
            .kvs()
            .iter()
            .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            .collect();
        let lost: Vec<&String> = self
            .writes
            .iter()
            .map(|(k, _)| k)
            .filter(|k| !present.contains(*k))
            .collect();
        assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    }
}

/// The management etcd (plain, on loopback).
async fn management(m: &Mtest) -> etcd_client::Client {
    etcd_client::Client::connect([m.env["ETCD_ENDPOINT"].as_str()], None)
        .await
        .unwrap()
}

/// A key of the management etcd under cke's prefix, raw.
pub async fn management_get(m: &Mtest, key: &str) -> Option<String> {
    let r = management(m).await.get(format!("/cke/{key}"), None).await.unwrap();
    r.kvs()
        .first()
        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
}

/// Puts a key of the management etcd under cke's prefix, raw (as another program would).
pub async fn management_put(m: &Mtest, key: &str, value: &str) {
    management(m)
        .await
        .put(format!("/cke/{key}"), value, None)
        .await
        .unwrap();
}

/// Prints every finished record with how long it took (for the figures of a run).
pub fn print_records(m: &Mtest) {
    let text = ok(m, &["history"], None);
    for r in serde_json::Deserializer::from_str(&text)
        .into_iter::<cke::model::Record>()
        .filter_map(Result::ok)
    {
        if let Some(end) = r.end_at {
            println!(
                "  record {} {} {:?} {:?}: {} ms ({})",
                r.id,
                r.operation,
                r.targets,
                r.status,
                (end - r.start_at).num_milliseconds(),
                r.error
            );
        }
    }
}

/// `podman inspect etcd` on node `i` with this Go template (e.g. `{{json .Config.Cmd}}`).
pub fn inspect_etcd(m: &Mtest, i: usize, format: &str) -> String {
    let o = m.run(&["exec", &i.to_string(), "podman", "inspect", "etcd", "--format", format]);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `podman ps` of the running container `name` on node `i` with this Go template (e.g.
/// `{{.Image}}`), trimmed; empty when it does not run.
pub fn running_field(m: &Mtest, i: usize, name: &str, format: &str) -> String {
    let o = m.run(&[
        "exec",
        &i.to_string(),
        "podman",
        "ps",
        "--filter",
        &format!("name=^{name}$"),
        "--format",
        format,
    ]);
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Whether container `name` runs on node `i`.
pub fn running(m: &Mtest, i: usize, name: &str) -> bool {
    running_field(m, i, name, "{{.Names}}") == name
}

/// How long each phase of a scenario took, printed as `FIGURE phase SUITE WHAT: SECONDS s` (the
/// figures of a run, shown with `--no-capture`): where a suite's time goes.
pub struct Phases {
    suite: &'static str,
    last: Instant,
}

impl Phases {
    /// Starts timing the first phase.
    pub fn new(suite: &'static str) -> Phases {
        Phases {
            suite,
            last: Instant::now(),
        }
    }

    /// Ends the phase `what` (printing its duration) and starts the next.
    pub fn lap(&mut self, what: &str) {
        println!(
            "FIGURE phase {} {what}: {:.1} s",
            self.suite,
            self.last.elapsed().as_secs_f64()
        );
        self.last = Instant::now();
    }
}
