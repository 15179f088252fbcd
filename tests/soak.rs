//! The chaos soak (`make soak`; `SOAK_MINUTES`, default 10; `SOAK_SEED` replays a schedule). Not part
//! of `make test`: the test is ignored unless asked for by name.
//!
//! Three `cke` instances, five mtest node hosts running Kubernetes 1.20.2 (`--k8s`: kubelets on
//! containerd), a three-member management etcd, an OpenBao server with persistent storage, a writer on
//! the managed etcd and a client of the Kubernetes API through rivers on a node host (it creates
//! numbered ConfigMaps). A seeded random schedule injects a fault every 15-45 s: kill -9 the leader;
//! SIGSTOP the leader past its TTL, then SIGCONT; stop a node's etcd container; partition a node host
//! for 20 s; restart a management etcd member; stop OpenBao for 30 s; change the declaration (scale
//! the control planes 3 <-> 5, replace a control plane, change the etcd and API server extra args).
//! `SOAK_KUBERNETES=0` runs the managed etcd alone (`--test-without-kubernetes`, no API client).
//! With Kubernetes the soak holds the machine-wide lock of the real-Kubernetes suites
//! (`/tmp/cke-k8s-e2e.lock`) from before the node hosts come up until they are gone.
//!
//! Invariants, checked while it runs and at the end: every acknowledged write (etcd key and
//! ConfigMap) is readable at the end; never fewer than a quorum of the voting members up (each sample
//! that shows fewer is checked again a second later: a confirmed one is a violation); records never
//! interleave two leaders; after the last fault heals, the cluster converges to the declaration within
//! 2 minutes ([`converged`] says what that checks), and the API client writes again. It prints a
//! report (and writes it to `SOAK_REPORT`, default `target/soak-report.txt`) and fails on any
//! violation. Its logs (each instance's, the API client's `api-writes.log`) are kept after a failure,
//! and after a success too with `SOAK_KEEP_LOGS=1`.

mod e2e_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cke::infra::managed_etcd::{EtcdTls, ManagedEtcd};
use cke::model::Record;
use cke::storage::{EtcdStorage, Storage};
use cke::topology::{
    KUBELET_CONTAINER, KUBELET_HEALTHZ_PORT, KUBE_APISERVER_CONTAINER, KUBE_CONTROLLER_MANAGER_CONTAINER,
    KUBE_CONTROLLER_MANAGER_PORT, KUBE_PROXY_CONTAINER, KUBE_PROXY_METRICS_PORT, KUBE_SCHEDULER_CONTAINER,
    KUBE_SCHEDULER_PORT, LOCAL_API_SERVER_URL,
};
use cke_testkit::{free_port, Ckecli, EtcdCluster, Mtest, PersistentBao, ProcessGuard};
use e2e_common::k8s::Kubectl;
use rand::{Rng, SeedableRng};

const NODES: usize = 5;
const TTL_SECS: u64 = 5;
/// How long after the last fault heals the cluster must match the declaration.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(120);
/// The node host the API client runs on. It is never partitioned (a client cut off from everything
/// measures nothing of cke); every other fault may hit it, and declaration changes make it a control
/// plane or a worker.
const CLIENT_NODE: usize = 5;
/// Where the managed-etcd writer puts its keys (outside Kubernetes' `/registry/`).
const WRITER_PREFIX: &str = "/soak-writer/";
/// The machine-wide lock of the real-Kubernetes suites.
const K8S_LOCK: &str = "/tmp/cke-k8s-e2e.lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillLeader,
    PauseLeader,
    StopEtcdContainer,
    Partition,
    RestartManagementEtcd,
    StopVault,
    Declaration,
}

const FAULTS: [Fault; 7] = [
    Fault::KillLeader,
    Fault::PauseLeader,
    Fault::StopEtcdContainer,
    Fault::Partition,
    Fault::RestartManagementEtcd,
    Fault::StopVault,
    Fault::Declaration,
];

impl Fault {
    /// Takes a managed etcd member down for a while: injected only when every voting member is up
    /// and no other such fault runs, so that a quorum lost is cke's doing, never the schedule's.
    fn takes_a_member_down(self) -> bool {
        matches!(self, Fault::StopEtcdContainer | Fault::Partition)
    }
}

/// One `cke` instance slot: restarted in place after a kill.
struct Instance {
    name: String,
    port: u16,
    process: Option<ProcessGuard>,
}

/// What the soak needs of Kubernetes (absent with `SOAK_KUBERNETES=0`).
struct Kube {
    /// cke's image flags (`--kubernetes-image` and the node-dns images).
    flags: Vec<String>,
    /// The cluster's upstream DNS server.
    _dns: ProcessGuard,
    /// kubectl with an admin kubeconfig (pointed at a declared control plane's API server with
    /// `--server`: the kubeconfig's own server may have been replaced).
    kubectl: Kubectl,
    /// The `kubernetes` CA (PEM), which verifies the controller-manager's and scheduler's
    /// `/healthz`, as cke's probe does (read from the admin kubeconfig once issued).
    ca: std::sync::OnceLock<String>,
}

impl Kube {
    /// The admin kubectl through node `i`'s API server.
    fn via(&self, m: &Mtest, i: usize) -> Kubectl {
        let text = std::fs::read_to_string(&self.kubectl.kubeconfig).unwrap();
        let text: Vec<String> = text
            .lines()
            .map(|l| match l.find("server:") {
                Some(at) => format!("{}server: https://{}:6443", &l[..at], m.node(i)),
                None => l.to_string(),
            })
            .collect();
        let path = self.kubectl.kubeconfig.with_file_name(format!("kubeconfig-node{i}"));
        std::fs::write(&path, text.join("\n") + "\n").unwrap();
        Kubectl {
            bin: self.kubectl.bin.clone(),
            kubeconfig: path,
        }
    }

    /// Issues the admin kubeconfig (a certificate for 12 hours); keeps the CA and writes the client's
    /// CA, certificate and key files into `dir` (`api-ca.pem`, `api-cert.pem`, `api-key.pem`).
    fn issue(&self, w: &World, dir: &Path) {
        let text = w.ok(&["kubernetes", "issue", "--ttl", "12h"], None);
        std::fs::write(&self.kubectl.kubeconfig, &text).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let data = |v: &serde_yaml::Value| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().expect("kubeconfig data"))
                .unwrap();
            String::from_utf8(b).unwrap()
        };
        let ca = data(&v["clusters"][0]["cluster"]["certificate-authority-data"]);
        for (name, pem) in [
            ("api-ca.pem", ca.clone()),
            ("api-cert.pem", data(&v["users"][0]["user"]["client-certificate-data"])),
            ("api-key.pem", data(&v["users"][0]["user"]["client-key-data"])),
        ] {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.join(name))
                .unwrap();
            f.write_all(pem.as_bytes()).unwrap();
        }
        let _ = self.ca.set(ca);
    }
}

/// Everything the soak drives.
struct World {
    m: Mtest,
    kube: Option<Kube>,
    logs: PathBuf,
    config: PathBuf,
    ckecli: Ckecli,
    mgmt: Mutex<EtcdCluster>,
    bao: Mutex<PersistentBao>,
    instances: Mutex<Vec<Instance>>,
    /// Control-plane nodes (1-based) and the extra args now declared.
    declared: Mutex<(Vec<usize>, ExtraArgs)>,
    events: Mutex<Vec<String>>,
    /// `started` in seconds since the epoch.
    started_epoch: f64,
    violations: Mutex<Vec<String>>,
    /// A fault that takes a member down is running.
    member_fault: AtomicBool,
    /// OpenBao is stopped.
    vault_down: AtomicBool,
    /// Declaration changes made so far.
    declarations: std::sync::atomic::AtomicUsize,
    started: Instant,
}

impl World {
    fn note(&self, what: String) {
        let line = format!("[{:>6.1}s] {what}", self.started.elapsed().as_secs_f64());
        println!("SOAK {line}");
        self.events.lock().unwrap().push(line);
    }

    fn violation(&self, what: String) {
        self.note(format!("VIOLATION {what}"));
        self.violations.lock().unwrap().push(what);
    }

    fn start_instance(&self, slot: usize) {
        let mut all = self.instances.lock().unwrap();
        let inst = &mut all[slot];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.logs.join(format!("{}.log", inst.name)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cke"))
            .arg("--config")
            .arg(&self.config)
            .args(["--name", &inst.name, "--http", &format!("127.0.0.1:{}", inst.port)])
            .args(["--interval", "3s", "--session-ttl", &format!("{TTL_SECS}s")])
            .args(["--container-cli", "podman"])
            .args(match &self.kube {
                Some(k) => k.flags.clone(),
                None => vec!["--test-without-kubernetes".to_string()],
            })
            .env("CKE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        inst.process = Some(ProcessGuard(child));
    }

    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.ckecli.ok(args, stdin)
    }

    /// Declares `cps` as the control planes (with Kubernetes, every other node as a worker) with
    /// `extra` args. The control-plane-count constraint is set first: `cluster set` checks the
    /// stored constraints, as CKE's does.
    fn declare(&self, cps: &[usize], extra: &ExtraArgs) {
        let n = cps.len().to_string();
        self.ok(&["constraints", "set", "control-plane-count", &n], None);
        let text = match &self.kube {
            Some(_) => {
                let workers: Vec<usize> = (1..=NODES).filter(|i| !cps.contains(i)).collect();
                let mut options = String::new();
                for (section, args) in [("etcd", &extra.etcd), ("kube-api", &extra.apiserver)] {
                    if !args.is_empty() {
                        options.push_str(&format!("  {section}:\n    extra_args: {args:?}\n"));
                    }
                }
                e2e_common::k8s::declaration(&self.m, cps, &workers, &options)
            }
            None => {
                let etcd: Vec<&str> = extra.etcd.iter().map(String::as_str).collect();
                e2e_common::cluster_yaml(&self.m, cps, &etcd)
            }
        };
        self.ok(&["cluster", "set", "-"], Some(&text));
        *self.declared.lock().unwrap() = (cps.to_vec(), extra.clone());
    }

    async fn storage(&self) -> Option<EtcdStorage> {
        let text = std::fs::read_to_string(&self.config).ok()?;
        let cfg = cke::config::Config::parse(&text, &self.config).ok()?;
        EtcdStorage::connect(&cfg).await.ok()
    }

    async fn leader_slot(&self) -> Option<usize> {
        let name = self.storage().await?.get_leader().await.ok()??;
        self.instances.lock().unwrap().iter().position(|i| i.name == name)
    }

    fn signal(&self, slot: usize, sig: &str) {
        if let Some(p) = &self.instances.lock().unwrap()[slot].process {
            p.signal(sig);
        }
    }

    fn node_run(&self, args: &[&str]) -> std::process::Output {
        self.m.run(args)
    }
}

/// The extra args of the declaration.
#[derive(Debug, Clone, Default)]
struct ExtraArgs {
    /// `options.etcd.extra_args`.
    etcd: Vec<String>,
    /// `options.kube-api.extra_args` (with Kubernetes only).
    apiserver: Vec<String>,
}

/// Root credentials for the managed etcd, issued through ckecli.
fn root_tls(w: &World) -> EtcdTls {
    let v: serde_json::Value = serde_json::from_str(&w.ok(&["etcd", "root-issue"], None)).unwrap();
    EtcdTls {
        ca: v["ca_certificate"].as_str().unwrap().into(),
        cert: v["certificate"].as_str().unwrap().into(),
        key: v["private_key"].as_str().unwrap().into(),
    }
}

fn all_endpoints(m: &Mtest) -> Vec<String> {
    (1..=NODES).map(|i| format!("https://{}:2379", m.node(i))).collect()
}

/// What the monitor last saw of the managed etcd.
#[derive(Debug, Default, Clone)]
struct Sample {
    /// Voting members by address, and whether each answered.
    voting: BTreeMap<String, bool>,
    learners: BTreeSet<String>,
}

impl Sample {
    fn all_up(&self) -> bool {
        !self.voting.is_empty() && self.voting.values().all(|up| *up) && self.learners.is_empty()
    }

    fn up(&self) -> usize {
        self.voting.values().filter(|up| **up).count()
    }

    fn quorum(&self) -> usize {
        self.voting.len() / 2 + 1
    }
}

async fn sample(m: &Mtest, tls: &EtcdTls) -> Option<Sample> {
    let etcd = ManagedEtcd::connect(all_endpoints(m), tls.clone(), Duration::from_secs(3))
        .await
        .ok()?;
    let members = etcd.members().await.ok()?;
    let mut s = Sample::default();
    let checks = members.iter().filter_map(|mm| {
        let addr = mm.address()?;
        let url = mm.client_urls.first().cloned();
        let learner = mm.is_learner;
        let etcd = &etcd;
        Some(async move {
            let up = match url {
                Some(u) => etcd.member_revision(&u).await.is_ok(),
                None => false,
            };
            (addr, learner, up)
        })
    });
    for (addr, learner, up) in futures::future::join_all(checks).await {
        if learner {
            s.learners.insert(addr);
        } else {
            s.voting.insert(addr, up);
        }
    }
    Some(s)
}

/// Samples the managed etcd every second; a sample with fewer than a quorum of voting members up is
/// checked again a second later, and a confirmed one is a violation.
async fn monitor(w: Arc<World>, tls: EtcdTls, last: Arc<Mutex<Sample>>, stop: Arc<AtomicBool>) -> usize {
    let mut suspected = 0;
    while !stop.load(Ordering::SeqCst) {
        let s = sample(&w.m, &tls).await;
        let short = |s: &Option<Sample>| match s {
            Some(s) => s.up() < s.quorum(),
            None => true,
        };
        if short(&s) {
            suspected += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let again = sample(&w.m, &tls).await;
            if short(&again) {
                w.violation(format!(
                    "fewer than a quorum of voting members up: {again:?} (before: {s:?})"
                ));
            } else {
                w.note(format!("a sample below quorum, not confirmed a second later: {s:?}"));
            }
        } else if let Some(s) = s {
            *last.lock().unwrap() = s;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    suspected
}

/// Puts a key every 50 ms; returns the acknowledged keys, the longest time without an acknowledged
/// write, and each time of 2 s or more without one (from and to, in seconds since the soak started).
async fn writer(m: Arc<World>, tls: EtcdTls, stop: Arc<AtomicBool>) -> (Vec<String>, Duration, Vec<(f64, f64)>) {
    let (mut acked, mut longest, mut last_ok) = (Vec::new(), Duration::ZERO, Instant::now());
    let mut gaps = Vec::new();
    let since = |t: Instant| (t - m.started).as_secs_f64();
    let mut etcd = None;
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if etcd.is_none() {
            etcd = ManagedEtcd::connect(all_endpoints(&m.m), tls.clone(), Duration::from_secs(2))
                .await
                .ok();
        }
        if let Some(e) = &etcd {
            let key = format!("{WRITER_PREFIX}{i:08}");
            let mut c = e.client();
            match tokio::time::timeout(Duration::from_secs(2), c.put(key.clone(), "x", None)).await {
                Ok(Ok(_)) => {
                    acked.push(key);
                    longest = longest.max(last_ok.elapsed());
                    if last_ok.elapsed() >= Duration::from_secs(2) {
                        gaps.push((since(last_ok), since(Instant::now())));
                    }
                    last_ok = Instant::now();
                }
                // Reconnect through the endpoints that answer now.
                _ => etcd = None,
            }
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if last_ok.elapsed() >= Duration::from_secs(2) {
        gaps.push((since(last_ok), since(Instant::now())));
    }
    (acked, longest.max(last_ok.elapsed()), gaps)
}

/// The client of the Kubernetes API: a shell loop on node [`CLIENT_NODE`] (inside its network and
/// mount namespaces) that creates ConfigMap `default/soak-N` (N = 1, 2, ...) with curl through rivers
/// on the node's loopback ([`LOCAL_API_SERVER_URL`]) with the admin certificate, one request at a
/// time (a 5 s deadline each, 0.2 s between them), until the file `api-stop` exists. Each attempt
/// appends `N HTTP-CODE START END` (seconds since the epoch) to `api-writes.log`; 201 is an
/// acknowledged write.
fn api_client_script(dir: &Path) -> String {
    let d = dir.display();
    format!(
        "i=0\n\
         while [ ! -e {d}/api-stop ]; do\n\
         i=$((i+1)); n=$(printf %08d $i); t0=$(date +%s.%N)\n\
         code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 --cacert {d}/api-ca.pem \
         --cert {d}/api-cert.pem --key {d}/api-key.pem -H 'Content-Type: application/json' -X POST \
         --data '{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"soak-'$n'\"}},\"data\":{{\"i\":\"'$i'\"}}}}' \
         {LOCAL_API_SERVER_URL}/api/v1/namespaces/default/configmaps)\n\
         echo \"$n $code $t0 $(date +%s.%N)\" >> {d}/api-writes.log\n\
         sleep 0.2\n\
         done\n"
    )
}

/// One attempt of the API client.
#[derive(Debug, Clone)]
struct ApiAttempt {
    name: String,
    acked: bool,
    start: f64,
    end: f64,
}

/// The API client's attempts so far.
fn api_attempts(dir: &Path) -> Vec<ApiAttempt> {
    std::fs::read_to_string(dir.join("api-writes.log"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [n, code, start, end] = f[..] else { return None };
            Some(ApiAttempt {
                name: format!("soak-{n}"),
                acked: code == "201",
                start: start.parse().ok()?,
                end: end.parse().ok()?,
            })
        })
        .collect()
}

/// The API client's outages of at least `min` seconds: (from the last acknowledged write, to the
/// next one or the last attempt, failed attempts in between).
fn api_outage_list(attempts: &[ApiAttempt], min: f64) -> Vec<(f64, f64, usize)> {
    let Some(first) = attempts.first() else { return vec![] };
    let (mut out, mut last_ok, mut failed) = (vec![], first.start, 0);
    for a in attempts {
        if a.acked {
            if failed > 0 && a.end - last_ok >= min {
                out.push((last_ok, a.end, failed));
            }
            last_ok = a.end;
            failed = 0;
        } else {
            failed += 1;
        }
    }
    if let Some(last) = attempts
        .last()
        .filter(|_| failed > 0 && attempts.last().unwrap().end - last_ok >= min)
    {
        out.push((last_ok, last.end, failed));
    }
    out
}

/// The longest outage of the API client (from an acknowledged write to the next, with failed
/// attempts in between; counted from the first attempt and to the last when they failed) and the
/// longest time between two acknowledged writes, in seconds.
fn api_outages(attempts: &[ApiAttempt]) -> (f64, f64) {
    let Some(first) = attempts.first() else {
        return (0.0, 0.0);
    };
    let (mut outage, mut longest) = (0f64, 0f64);
    let mut last_ok = first.start;
    let mut failed_since = false;
    for a in attempts {
        if a.acked {
            longest = longest.max(a.end - last_ok);
            if failed_since {
                outage = outage.max(a.end - last_ok);
            }
            last_ok = a.end;
            failed_since = false;
        } else {
            failed_since = true;
        }
    }
    if let Some(last) = attempts.last().filter(|_| failed_since) {
        outage = outage.max(last.end - last_ok);
        longest = longest.max(last.end - last_ok);
    }
    (outage, longest)
}

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Injects one fault; returns when it has healed.
async fn inject(w: Arc<World>, fault: Fault, target: usize, choice: u64) {
    match fault {
        Fault::KillLeader => {
            let Some(slot) = w.leader_slot().await else { return };
            w.note(format!("kill -9 the leader {}", w.instances.lock().unwrap()[slot].name));
            w.signal(slot, "-KILL");
            tokio::time::sleep(Duration::from_secs(3)).await;
            w.start_instance(slot);
        }
        Fault::PauseLeader => {
            let Some(slot) = w.leader_slot().await else { return };
            w.note(format!(
                "SIGSTOP the leader {} for {}s",
                w.instances.lock().unwrap()[slot].name,
                TTL_SECS + 5
            ));
            w.signal(slot, "-STOP");
            tokio::time::sleep(Duration::from_secs(TTL_SECS + 5)).await;
            w.signal(slot, "-CONT");
        }
        Fault::StopEtcdContainer => {
            w.note(format!("stop the etcd container on node{target}"));
            let w2 = w.clone();
            tokio::task::spawn_blocking(move || {
                w2.node_run(&["exec", &target.to_string(), "podman", "stop", "-t", "1", "etcd"])
            })
            .await
            .unwrap();
            w.member_fault.store(false, Ordering::SeqCst);
        }
        Fault::Partition => {
            w.note(format!("partition node{target} for 20s"));
            w.node_run(&["partition", &target.to_string()]);
            tokio::time::sleep(Duration::from_secs(20)).await;
            w.node_run(&["heal", &target.to_string()]);
            w.note(format!("healed node{target}"));
            w.member_fault.store(false, Ordering::SeqCst);
        }
        Fault::RestartManagementEtcd => {
            let i = (choice % 3) as usize;
            w.note(format!("restart management etcd member {i}"));
            w.mgmt.lock().unwrap().kill(i);
            tokio::time::sleep(Duration::from_secs(3)).await;
            let w2 = w.clone();
            tokio::task::spawn_blocking(move || w2.mgmt.lock().unwrap().restart(i))
                .await
                .unwrap();
        }
        Fault::StopVault => {
            w.note("stop OpenBao for 30s".into());
            w.bao.lock().unwrap().stop();
            tokio::time::sleep(Duration::from_secs(30)).await;
            let w2 = w.clone();
            tokio::task::spawn_blocking(move || w2.bao.lock().unwrap().start_again())
                .await
                .unwrap();
            w.note("OpenBao back (unsealed)".into());
            w.vault_down.store(false, Ordering::SeqCst);
        }
        Fault::Declaration => {
            let (cps, extra) = w.declared.lock().unwrap().clone();
            let others: Vec<usize> = (1..=NODES).filter(|i| !cps.contains(i)).collect();
            // The kinds of change take turns (replace a node, scale 3 -> 5, scale 5 -> 3, extra
            // args), so that even a short soak has each; `choice` picks the nodes and values.
            let turn = w.declarations.fetch_add(1, Ordering::SeqCst) % 4;
            let (new_cps, new_extra, what) = match (turn, cps.len()) {
                (0, 3) => {
                    let mut c = cps.clone();
                    let out = (choice / 3) as usize % c.len();
                    let inn = others[(choice / 9) as usize % others.len()];
                    let what = format!("replace node{} with node{inn}", c[out]);
                    c[out] = inn;
                    c.sort();
                    (c, extra.clone(), what)
                }
                (1, 3) => ((1..=NODES).collect(), extra.clone(), "scale 3 -> 5".to_string()),
                (2, 5) => {
                    let mut c = cps.clone();
                    for k in 0..2 {
                        c.remove((choice / (3 + k)) as usize % c.len());
                    }
                    (c.clone(), extra.clone(), format!("scale 5 -> 3 ({c:?})"))
                }
                _ => {
                    let mut e = ExtraArgs {
                        etcd: vec![format!("--snapshot-count={}", 10000 + choice % 1000)],
                        apiserver: vec![],
                    };
                    if w.kube.is_some() {
                        e.apiserver = vec![format!("--max-requests-inflight={}", 400 + choice % 100)];
                    }
                    let what = format!("extra args {e:?}");
                    (cps.clone(), e, what)
                }
            };
            w.note(format!("declare {what}: control planes {new_cps:?}"));
            let w2 = w.clone();
            tokio::task::spawn_blocking(move || w2.declare(&new_cps, &new_extra))
                .await
                .unwrap();
        }
    }
}

/// The cluster as declared, as cke and CKE would show it:
///
/// 1. the leader's `/status` in phase `completed` with nothing planned;
/// 2. the managed etcd's voting members exactly the declared control planes, all answering, no
///    learner;
/// 3. on each declared control plane the etcd container running with the declared extra args;
///    with Kubernetes also kube-apiserver (with its declared extra args), kube-controller-manager and
///    kube-scheduler running; on every other node none of those four;
/// 4. rivers running on every node of the cluster (the declared control planes without Kubernetes;
///    all five nodes with it), and with Kubernetes kubelet and kube-proxy too;
/// 5. with Kubernetes, each component healthy as cke's probe asks it: every declared API server's
///    `/readyz` (admin certificate), the controller-managers' and schedulers' `/healthz` (verified
///    by the `kubernetes` CA), every kubelet's and kube-proxy's `/healthz`; all five Nodes Ready in
///    the API, and the label `cke.cybozu.com/master=true` on exactly the declared control planes.
async fn converged(w: &World, tls: &EtcdTls) -> Result<(), String> {
    let (cps, extra) = w.declared.lock().unwrap().clone();
    let slot = w.leader_slot().await.ok_or("no leader")?;
    let port = w.instances.lock().unwrap()[slot].port;
    let st: serde_json::Value = cke::infra::http_client_builder()
        .build()
        .map_err(|e| e.to_string())?
        .get(format!("http://127.0.0.1:{port}/status"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if st["phase"] != "completed" || st["planned_operations"].as_array().is_some_and(|a| !a.is_empty()) {
        return Err(format!("leader status {st}"));
    }
    let want: BTreeSet<String> = cps.iter().map(|i| w.m.node(*i)).collect();
    let s = sample(&w.m, tls).await.ok_or("no member list")?;
    let voting: BTreeSet<String> = s.voting.keys().cloned().collect();
    if voting != want || !s.all_up() {
        return Err(format!("members {s:?}, declared {want:?}"));
    }
    let nodes: Vec<usize> = match w.kube {
        Some(_) => (1..=NODES).collect(),
        None => cps.clone(),
    };
    tokio::task::block_in_place(|| containers_as_declared(w, &cps, &extra, &nodes))?;
    if let Some(k) = &w.kube {
        let health = cke::infra::kube::HttpHealth::new();
        for i in &nodes {
            let host = w.m.node(*i);
            let mut urls = vec![
                (format!("http://{host}:{KUBELET_HEALTHZ_PORT}/healthz"), None),
                (format!("http://{host}:{KUBE_PROXY_METRICS_PORT}/healthz"), None),
            ];
            if cps.contains(i) {
                let ca = k.ca.get().map(String::as_str);
                urls.push((format!("https://{host}:{KUBE_CONTROLLER_MANAGER_PORT}/healthz"), ca));
                urls.push((format!("https://{host}:{KUBE_SCHEDULER_PORT}/healthz"), ca));
            }
            for (url, ca) in urls {
                if !cke::infra::Health::healthz(&health, &url, ca).await {
                    return Err(format!("not healthy: {url}"));
                }
            }
        }
        tokio::task::block_in_place(|| kubernetes_as_declared(w, k, &cps))?;
    }
    Ok(())
}

/// The containers of [`converged`]'s items 3 and 4, one `podman ps` and one `podman inspect` a node.
fn containers_as_declared(w: &World, cps: &[usize], extra: &ExtraArgs, nodes: &[usize]) -> Result<(), String> {
    let k8s = w.kube.is_some();
    let cp_only = [
        "etcd",
        KUBE_APISERVER_CONTAINER,
        KUBE_CONTROLLER_MANAGER_CONTAINER,
        KUBE_SCHEDULER_CONTAINER,
    ];
    for i in nodes {
        let o = w.node_run(&["exec", &i.to_string(), "podman", "ps", "--format", "{{.Names}}"]);
        let text = String::from_utf8_lossy(&o.stdout);
        let running: BTreeSet<&str> = text.split_whitespace().collect();
        let mut want = vec!["rivers"];
        if k8s {
            want.extend([KUBELET_CONTAINER, KUBE_PROXY_CONTAINER]);
        }
        let cp = cps.contains(i);
        if cp {
            want.push("etcd");
            if k8s {
                want.extend(&cp_only[1..]);
            }
        }
        if let Some(missing) = want.iter().find(|c| !running.contains(*c)) {
            return Err(format!("node{i}: {missing} not running (running: {running:?})"));
        }
        if !cp {
            if let Some(extra) = cp_only.iter().find(|c| running.contains(*c)) {
                return Err(format!("node{i} is no control plane but runs {extra}"));
            }
            continue;
        }
        let mut args = vec![("etcd", &extra.etcd)];
        if k8s {
            args.push((KUBE_APISERVER_CONTAINER, &extra.apiserver));
        }
        for (name, want) in args {
            let o = w.node_run(&[
                "exec",
                &i.to_string(),
                "podman",
                "inspect",
                name,
                "--format",
                "{{json .Config.Cmd}}",
            ]);
            let cmd = String::from_utf8_lossy(&o.stdout);
            if let Some(a) = want.iter().find(|a| !cmd.contains(a.as_str())) {
                return Err(format!("node{i} {name}: {a} not in {cmd}"));
            }
        }
    }
    Ok(())
}

/// [`converged`]'s item 5 through the API: every declared API server ready, all Nodes Ready, the
/// control-plane label on exactly the control planes.
fn kubernetes_as_declared(w: &World, k: &Kube, cps: &[usize]) -> Result<(), String> {
    for i in cps {
        let o = k.via(&w.m, *i).run(&["get", "--raw", "/readyz"], None);
        if String::from_utf8_lossy(&o.stdout).trim() != "ok" {
            return Err(format!(
                "node{i}: API server not ready: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    let kubectl = k.via(&w.m, cps[0]);
    let mut all: Vec<String> = (1..=NODES).map(|i| w.m.node(i)).collect();
    all.sort();
    let ready = kubectl.ready_nodes();
    if ready != all {
        return Err(format!("Nodes Ready {ready:?}, want {all:?}"));
    }
    let mut masters: Vec<String> = cps.iter().map(|i| w.m.node(*i)).collect();
    masters.sort();
    let labelled = kubectl.nodes_with("cke.cybozu.com/master=true");
    if labelled != masters {
        return Err(format!("control-plane label on {labelled:?}, want {masters:?}"));
    }
    Ok(())
}

/// Pairs of records of different leaders that overlap in time.
fn interleaved(records: &[Record]) -> Vec<String> {
    let end = |r: &Record| r.end_at.unwrap_or_else(chrono::Utc::now);
    let mut out = Vec::new();
    for a in records {
        for b in records.iter().filter(|b| b.leader != a.leader && b.id > a.id) {
            if !(end(a) <= b.start_at || end(b) <= a.start_at) {
                out.push(format!(
                    "record {} ({}, {}) and record {} ({}, {}) overlap",
                    a.id, a.leader, a.operation, b.id, b.leader, b.operation
                ));
            }
        }
    }
    out
}

fn seed() -> u64 {
    match std::env::var("SOAK_SEED") {
        Ok(s) => s.parse().expect("SOAK_SEED must be a number"),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                % 1_000_000_007
        }
    }
}

fn report_path() -> PathBuf {
    std::env::var("SOAK_REPORT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/soak-report.txt"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "the chaos soak runs for SOAK_MINUTES (default 10): make soak"]
async fn soak() {
    let minutes: f64 = std::env::var("SOAK_MINUTES")
        .ok()
        .map(|s| s.parse().expect("SOAK_MINUTES must be a number"))
        .unwrap_or(10.0);
    let kubernetes = match std::env::var("SOAK_KUBERNETES").as_deref() {
        Ok("0") => false,
        Ok("1") | Err(_) => true,
        Ok(other) => panic!("SOAK_KUBERNETES must be 0 or 1, not {other:?}"),
    };
    let seed = seed();
    let replay = format!(
        "SOAK_SEED={seed} SOAK_MINUTES={minutes}{} make soak",
        if kubernetes { "" } else { " SOAK_KUBERNETES=0" }
    );
    println!("SOAK seed {seed}, {minutes} minutes, Kubernetes {kubernetes} (replay: {replay})");
    // Held until the node hosts are gone (locals drop in reverse order: this one last).
    let _k8s_lock = kubernetes.then(|| {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(K8S_LOCK)
            .unwrap();
        println!("SOAK waiting for {K8S_LOCK}");
        f.lock().unwrap();
        println!("SOAK holding {K8S_LOCK}");
        f
    });
    let flags: &[&str] = if kubernetes {
        &["--no-etcd", "--no-vault", "--k8s"]
    } else {
        &["--no-etcd", "--no-vault"]
    };
    let (m, logs) = e2e_common::mtest_up_with(NODES, flags);
    let logs = logs.keep();
    let kube = kubernetes.then(|| {
        let image = |key: &str| {
            m.env
                .get(key)
                .cloned()
                .unwrap_or_else(|| panic!("mtest env has no {key}"))
        };
        Kube {
            flags: vec![
                "--node-profile".into(),
                "testbed".into(),
                "--kubernetes-image".into(),
                image("K8S_IMAGE"),
                "--unbound-image".into(),
                image("UNBOUND_IMAGE"),
                "--unbound-exporter-image".into(),
                image("UNBOUND_EXPORTER_IMAGE"),
            ],
            _dns: e2e_common::k8s::start_upstream_dns(&m, &logs),
            kubectl: Kubectl::new(&m, logs.join("kubeconfig")),
            ca: Default::default(),
        }
    });
    let mgmt = EtcdCluster::start(3);
    let config = logs.join("cke-config.yml");
    std::fs::write(&config, mgmt.config_yaml("/cke/")).unwrap();
    let bao = PersistentBao::start();
    let ckecli = Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), &config)
        .env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", &bao.token);
    let instances = ["soak-a", "soak-b", "soak-c"]
        .iter()
        .map(|n| Instance {
            name: n.to_string(),
            port: free_port(),
            process: None,
        })
        .collect();
    let w = Arc::new(World {
        m,
        kube,
        logs: logs.clone(),
        config,
        ckecli,
        mgmt: Mutex::new(mgmt),
        bao: Mutex::new(bao),
        instances: Mutex::new(instances),
        declared: Mutex::new((vec![], ExtraArgs::default())),
        events: Mutex::new(vec![]),
        violations: Mutex::new(vec![]),
        member_fault: AtomicBool::new(false),
        vault_down: AtomicBool::new(false),
        declarations: Default::default(),
        started: Instant::now(),
        started_epoch: epoch_now(),
    });
    w.ok(&["vault", "init"], None);
    w.ok(&["vault", "ssh-privkey", w.m.ssh_key().to_str().unwrap()], None);
    w.declare(&[1, 2, 3], &ExtraArgs::default());
    if let Some(k) = &w.kube {
        k.issue(&w, &logs);
    }
    for slot in 0..3 {
        w.start_instance(slot);
    }
    let t0 = Instant::now();
    let tls = root_tls(&w);
    cke_testkit::poll_until(
        "the cluster bootstrapped",
        Duration::from_secs(if kubernetes { 600 } else { 300 }),
        Duration::from_secs(1),
        || {
            let (w, tls) = (w.clone(), tls.clone());
            async move { converged(&w, &tls).await.ok() }
        },
    )
    .await;
    w.note(format!("bootstrapped in {:?}", t0.elapsed()));

    let stop = Arc::new(AtomicBool::new(false));
    let last = Arc::new(Mutex::new(Sample::default()));
    let mon = tokio::spawn(monitor(w.clone(), tls.clone(), last.clone(), stop.clone()));
    let wr = tokio::spawn(writer(w.clone(), tls.clone(), stop.clone()));
    let api = w.kube.as_ref().map(|_| {
        let (w, script) = (w.clone(), api_client_script(&logs));
        w.note(format!(
            "API client on node{CLIENT_NODE} through rivers ({LOCAL_API_SERVER_URL})"
        ));
        tokio::task::spawn_blocking(move || w.node_run(&["exec", &CLIENT_NODE.to_string(), "sh", "-c", &script]))
    });

    // The schedule: every draw comes from the seed, in the same order whatever happens.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let end = Instant::now() + Duration::from_secs_f64(minutes * 60.0);
    let mut counts: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut faults = tokio::task::JoinSet::new();
    loop {
        let wait = Duration::from_secs(rng.random_range(15..=45));
        let mut fault = FAULTS[rng.random_range(0..FAULTS.len())];
        let (target_draw, choice) = (rng.random_range(0..1000usize), rng.random_range(0..1_000_000u64));
        if Instant::now() + wait >= end {
            break;
        }
        tokio::time::sleep(wait).await;
        if fault.takes_a_member_down() {
            let s = last.lock().unwrap().clone();
            if !s.all_up() || w.member_fault.swap(true, Ordering::SeqCst) {
                // Not while a member is down already: the next kind in a fixed order instead.
                w.note(format!(
                    "{fault:?} not injected now (a member is down or joining): declaration change instead"
                ));
                fault = Fault::Declaration;
            } else {
                // The API client's node is never partitioned (CLIENT_NODE says why).
                let members: Vec<String> = s
                    .voting
                    .keys()
                    .filter(|a| !(fault == Fault::Partition && w.kube.is_some() && **a == w.m.node(CLIENT_NODE)))
                    .cloned()
                    .collect();
                let addr = &members[target_draw % members.len()];
                let target = (1..=NODES).find(|i| w.m.node(*i) == *addr).unwrap();
                *counts.entry(fault).or_default() += 1;
                faults.spawn(inject(w.clone(), fault, target, choice));
                continue;
            }
        }
        if fault == Fault::StopVault && w.vault_down.swap(true, Ordering::SeqCst) {
            w.note("StopVault not injected now (OpenBao is down already): declaration change instead".into());
            fault = Fault::Declaration;
        }
        *counts.entry(fault).or_default() += 1;
        faults.spawn(inject(w.clone(), fault, 0, choice));
    }
    w.note("schedule over: waiting for the faults to heal".into());
    while faults.join_next().await.is_some() {}
    let healed = Instant::now();
    w.note("every fault healed".into());
    let mut convergence = None;
    let mut why = String::new();
    while healed.elapsed() < CONVERGENCE_LIMIT * 2 {
        match converged(&w, &tls).await {
            Ok(()) => {
                convergence = Some(healed.elapsed());
                break;
            }
            Err(e) => why = e,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    match convergence {
        Some(c) if c <= CONVERGENCE_LIMIT => w.note(format!("converged {c:?} after the last fault healed")),
        Some(c) => w.violation(format!("converged only after {c:?} (limit {CONVERGENCE_LIMIT:?})")),
        None => w.violation(format!("never converged: {why}")),
    }
    // The API client writes again once the cluster has converged.
    if api.is_some() {
        let since = epoch_now();
        let t = Instant::now();
        while !api_attempts(&logs).iter().any(|a| a.acked && a.start >= since) {
            if t.elapsed() > Duration::from_secs(60) {
                w.violation("the API client had no write acknowledged within 60 s after convergence".into());
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    stop.store(true, Ordering::SeqCst);
    let suspected = mon.await.unwrap();
    let (acked, longest, etcd_gaps) = wr.await.unwrap();
    let api_report = match api {
        Some(client) => {
            std::fs::write(logs.join("api-stop"), "").unwrap();
            let _ = tokio::time::timeout(Duration::from_secs(30), client).await;
            let attempts = api_attempts(&logs);
            let acked: Vec<&ApiAttempt> = attempts.iter().filter(|a| a.acked).collect();
            let (outage, gap) = api_outages(&attempts);
            // Every acknowledged ConfigMap is readable through the API.
            let cps = w.declared.lock().unwrap().0.clone();
            let k = w.kube.as_ref().unwrap();
            let mut present = None;
            for _ in 0..30 {
                let o = k.via(&w.m, cps[0]).run(
                    &[
                        "get",
                        "configmaps",
                        "-n",
                        "default",
                        "-o",
                        "jsonpath={.items[*].metadata.name}",
                    ],
                    None,
                );
                if o.status.success() {
                    let names: BTreeSet<String> = String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect();
                    present = Some(names);
                    break;
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let lost: Vec<&str> = match &present {
                Some(p) => acked
                    .iter()
                    .filter(|a| !p.contains(&a.name))
                    .map(|a| a.name.as_str())
                    .collect(),
                None => {
                    w.violation("the ConfigMaps cannot be listed through the API".into());
                    acked.iter().map(|a| a.name.as_str()).collect()
                }
            };
            if !lost.is_empty() {
                w.violation(format!(
                    "{} acknowledged ConfigMaps lost, e.g. {:?}",
                    lost.len(),
                    &lost[..lost.len().min(5)]
                ));
            }
            let mut lines = vec![
                format!(
                    "API writes (ConfigMaps through rivers on node{CLIENT_NODE}) acknowledged: {}, failed attempts: {}, lost: {}",
                    acked.len(),
                    attempts.len() - acked.len(),
                    lost.len()
                ),
                format!("longest API outage: {outage:.2}s (longest time between acknowledged API writes: {gap:.2}s)"),
                "API outages of 2 s or more (times since the soak started):".into(),
            ];
            for (from, to, failed) in api_outage_list(&attempts, 2.0) {
                lines.push(format!(
                    "  [{:>6.1}s - {:>6.1}s] {:.1}s, {failed} failed attempts",
                    from - w.started_epoch,
                    to - w.started_epoch,
                    to - from
                ));
            }
            lines
        }
        None => vec!["API writes: none (SOAK_KUBERNETES=0)".into()],
    };
    // Every acknowledged write is readable.
    let check = ManagedEtcd::connect(all_endpoints(&w.m), tls.clone(), Duration::from_secs(5))
        .await
        .unwrap();
    let got = check
        .client()
        .get(
            WRITER_PREFIX,
            Some(etcd_client::GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .unwrap();
    let present: BTreeSet<String> = got
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|k| !present.contains(*k)).collect();
    if !lost.is_empty() {
        w.violation(format!(
            "{} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    // At most one instance acted at a time.
    let storage = w.storage().await.expect("management etcd");
    let records = storage.get_records(0).await.unwrap();
    for v in interleaved(&records) {
        w.violation(v);
    }
    let leaders: BTreeSet<&str> = records.iter().map(|r| r.leader.as_str()).collect();
    let cancelled = records
        .iter()
        .filter(|r| r.status == cke::model::RecordStatus::Cancelled)
        .count();

    let violations = w.violations.lock().unwrap().clone();
    let mut report = vec![
        format!(
            "cke-rs soak report: seed {seed}, {minutes} minutes of faults, {}",
            if kubernetes {
                "with Kubernetes"
            } else {
                "without Kubernetes"
            }
        ),
        format!("command: {replay}"),
        format!("faults injected: {}", counts.values().sum::<usize>()),
    ];
    for f in FAULTS {
        report.push(format!("  {f:?}: {}", counts.get(&f).copied().unwrap_or(0)));
    }
    report.extend([
        format!("etcd writes acknowledged: {}, lost: {}", acked.len(), lost.len()),
        format!("longest etcd write outage: {longest:.2?}"),
        "etcd write outages of 2 s or more (times since the soak started):".into(),
    ]);
    report.extend(
        etcd_gaps
            .iter()
            .map(|(from, to)| format!("  [{from:>6.1}s - {to:>6.1}s] {:.1}s", to - from)),
    );
    report.extend(api_report);
    report.extend([
        format!("quorum samples below quorum, confirmed or not: {suspected}"),
        format!(
            "records: {} ({} cancelled), by leaders {:?}; interleaved: {}",
            records.len(),
            cancelled,
            leaders,
            interleaved(&records).len()
        ),
        match convergence {
            Some(c) => format!("convergence after the last fault healed: {c:.1?} (limit {CONVERGENCE_LIMIT:?})"),
            None => "convergence: never".into(),
        },
        format!("violations: {}", violations.len()),
    ]);
    report.extend(violations.iter().map(|v| format!("  {v}")));
    report.push("events:".into());
    report.extend(w.events.lock().unwrap().iter().map(|e| format!("  {e}")));
    let text = report.join("\n") + "\n";
    println!("\n{text}");
    let path = report_path();
    let _ = std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")));
    std::fs::write(&path, &text).unwrap();
    println!("SOAK report written to {}; logs in {}", path.display(), logs.display());
    assert!(
        violations.is_empty(),
        "{} violations (replay: {replay}); logs in {}",
        violations.len(),
        logs.display()
    );
    if std::env::var_os("SOAK_KEEP_LOGS").is_none() {
        let _ = std::fs::remove_dir_all(&logs);
    }
}

/// The API client's loop, run here against an address nothing listens on: every attempt is logged
/// (failed, code 000) in the format [`api_attempts`] reads, and the loop ends once `api-stop` exists.
#[test]
fn the_api_client_loop_logs_every_attempt_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let script = api_client_script(dir.path()).replace(LOCAL_API_SERVER_URL, "https://127.0.0.1:1");
    let mut child = Command::new("sh").args(["-c", &script]).spawn().unwrap();
    cke_testkit::poll_until_blocking(
        "two attempts",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (api_attempts(dir.path()).len() >= 2).then_some(()),
    );
    std::fs::write(dir.path().join("api-stop"), "").unwrap();
    let status = child.wait().unwrap();
    assert!(status.success());
    let attempts = api_attempts(dir.path());
    assert_eq!(attempts[0].name, "soak-00000001");
    assert_eq!(attempts[1].name, "soak-00000002");
    assert!(attempts.iter().all(|a| !a.acked && a.end >= a.start));
}

#[test]
fn api_outages_count_only_gaps_with_failures() {
    let a = |acked: bool, start: f64, end: f64| ApiAttempt {
        name: String::new(),
        acked,
        start,
        end,
    };
    // ok at 1, 2; failures; ok at 10; slow ok at 14 (no failure in between).
    let attempts = [
        a(true, 0.0, 1.0),
        a(true, 1.5, 2.0),
        a(false, 2.5, 7.5),
        a(true, 8.0, 10.0),
        a(true, 10.5, 14.0),
    ];
    assert_eq!(api_outages(&attempts), (8.0, 8.0));
    // Failing at the end counts to the last attempt.
    let attempts = [a(true, 0.0, 1.0), a(false, 1.5, 20.0)];
    assert_eq!(api_outages(&attempts), (19.0, 19.0));
    assert_eq!(api_outages(&[]), (0.0, 0.0));
}

#[test]
fn api_outage_list_gives_each_outage_with_its_failures() {
    let a = |acked: bool, end: f64| ApiAttempt {
        name: String::new(),
        acked,
        start: end - 0.5,
        end,
    };
    let attempts = [
        a(true, 1.0),
        a(false, 2.0),
        a(true, 2.5),
        a(false, 5.0),
        a(false, 8.0),
        a(true, 9.0),
        a(true, 20.0),
        a(false, 23.0),
    ];
    assert_eq!(api_outage_list(&attempts, 2.0), vec![(2.5, 9.0, 2), (20.0, 23.0, 1)]);
    assert_eq!(api_outage_list(&attempts, 7.0), vec![]);
}
