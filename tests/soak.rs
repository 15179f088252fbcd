//! The chaos soak (`make soak`; `SOAK_MINUTES`, default 10; `SOAK_SEED` replays a schedule). Not part
//! of `make test`: the test is ignored unless asked for by name.
//!
//! Three `cke` instances, five mtest node hosts, a three-member management etcd, an OpenBao server
//! with persistent storage, and a writer on the managed etcd. A seeded random schedule injects a fault every
//! 15-45 s: kill -9 the leader; SIGSTOP the leader past its TTL, then SIGCONT; stop a node's etcd
//! container; partition a node host for 20 s; restart a management etcd member; stop OpenBao for 30 s;
//! change the declaration (scale 3 <-> 5, replace a node, change the etcd extra args). Kubernetes is
//! left out (`--test-without-kubernetes`, see docs/reliability.md).
//!
//! Invariants, checked while it runs and at the end: every acknowledged write is readable at the end;
//! never fewer than a quorum of the voting members up (each sample that shows fewer is checked again a
//! second later: a confirmed one is a violation); records never interleave two leaders; after the last
//! fault heals, the cluster converges to the declaration within 2 minutes. It prints a report (and
//! writes it to `SOAK_REPORT`, default `target/soak-report.txt`) and fails on any violation.

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
use cke_testkit::{free_port, Ckecli, EtcdCluster, Mtest, PersistentBao, ProcessGuard};
use rand::{Rng, SeedableRng};

const NODES: usize = 5;
const TTL_SECS: u64 = 5;
/// How long after the last fault heals the cluster must match the declaration.
const CONVERGENCE_LIMIT: Duration = Duration::from_secs(120);

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

/// Everything the soak drives.
struct World {
    m: Mtest,
    logs: PathBuf,
    config: PathBuf,
    ckecli: Ckecli,
    mgmt: Mutex<EtcdCluster>,
    bao: Mutex<PersistentBao>,
    instances: Mutex<Vec<Instance>>,
    /// Control-plane nodes (1-based) and the etcd extra args now declared.
    declared: Mutex<(Vec<usize>, Vec<String>)>,
    events: Mutex<Vec<String>>,
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
            .args(["--container-cli", "podman", "--test-without-kubernetes"])
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

    /// Declares `cps` as the control planes with `extra` etcd args. The control-plane-count
    /// constraint is set first: `cluster set` checks the stored constraints, as CKE's does.
    fn declare(&self, cps: &[usize], extra: &[String]) {
        let n = cps.len().to_string();
        self.ok(&["constraints", "set", "control-plane-count", &n], None);
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        self.ok(
            &["cluster", "set", "-"],
            Some(&e2e_common::cluster_yaml(&self.m, cps, &extra)),
        );
        *self.declared.lock().unwrap() = (cps.to_vec(), extra.iter().map(|s| s.to_string()).collect());
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

/// Puts a key every 50 ms; returns the acknowledged keys and the longest time without an
/// acknowledged write.
async fn writer(m: Arc<World>, tls: EtcdTls, stop: Arc<AtomicBool>) -> (Vec<String>, Duration) {
    let (mut acked, mut longest, mut last_ok) = (Vec::new(), Duration::ZERO, Instant::now());
    let mut etcd = None;
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        if etcd.is_none() {
            etcd = ManagedEtcd::connect(all_endpoints(&m.m), tls.clone(), Duration::from_secs(2))
                .await
                .ok();
        }
        if let Some(e) = &etcd {
            let key = format!("/registry/soak/{i:08}");
            let mut c = e.client();
            match tokio::time::timeout(Duration::from_secs(2), c.put(key.clone(), "x", None)).await {
                Ok(Ok(_)) => {
                    acked.push(key);
                    longest = longest.max(last_ok.elapsed());
                    last_ok = Instant::now();
                }
                // Reconnect through the endpoints that answer now.
                _ => etcd = None,
            }
            i += 1;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (acked, longest.max(last_ok.elapsed()))
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
                    let e = vec![format!("--snapshot-count={}", 10000 + choice % 1000)];
                    (cps.clone(), e.clone(), format!("extra args {e:?}"))
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

/// The cluster as declared: members, voting, all up, the declared extra args in every member's
/// container, rivers on every declared node, and the leader planning nothing.
async fn converged(w: &World, tls: &EtcdTls) -> Result<(), String> {
    let (cps, extra) = w.declared.lock().unwrap().clone();
    let want: BTreeSet<String> = cps.iter().map(|i| w.m.node(*i)).collect();
    let s = sample(&w.m, tls).await.ok_or("no member list")?;
    let voting: BTreeSet<String> = s.voting.keys().cloned().collect();
    if voting != want || !s.all_up() {
        return Err(format!("members {s:?}, declared {want:?}"));
    }
    for i in &cps {
        let text = e2e_common::inspect_etcd(&w.m, *i, "{{.State.Running}} {{json .Config.Cmd}}");
        if !text.starts_with("true") || !extra.iter().all(|a| text.contains(a.as_str())) {
            return Err(format!("node{i} etcd: {text}"));
        }
        let o = w.node_run(&[
            "exec",
            &i.to_string(),
            "podman",
            "inspect",
            "rivers",
            "--format",
            "{{.State.Running}}",
        ]);
        if !String::from_utf8_lossy(&o.stdout).starts_with("true") {
            return Err(format!("node{i}: rivers not running"));
        }
    }
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
    let seed = seed();
    println!("SOAK seed {seed}, {minutes} minutes (replay: SOAK_SEED={seed} SOAK_MINUTES={minutes} make soak)");
    let (m, logs) = e2e_common::mtest_up_with(NODES, &["--no-etcd", "--no-vault"]);
    let logs = logs.keep();
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
        logs: logs.clone(),
        config,
        ckecli,
        mgmt: Mutex::new(mgmt),
        bao: Mutex::new(bao),
        instances: Mutex::new(instances),
        declared: Mutex::new((vec![], vec![])),
        events: Mutex::new(vec![]),
        violations: Mutex::new(vec![]),
        member_fault: AtomicBool::new(false),
        vault_down: AtomicBool::new(false),
        declarations: Default::default(),
        started: Instant::now(),
    });
    w.ok(&["vault", "init"], None);
    w.ok(&["vault", "ssh-privkey", w.m.ssh_key().to_str().unwrap()], None);
    w.declare(&[1, 2, 3], &[]);
    for slot in 0..3 {
        w.start_instance(slot);
    }
    let t0 = Instant::now();
    let tls = root_tls(&w);
    cke_testkit::poll_until(
        "the managed etcd bootstrapped",
        Duration::from_secs(300),
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
                let members: Vec<String> = s.voting.keys().cloned().collect();
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

    stop.store(true, Ordering::SeqCst);
    let suspected = mon.await.unwrap();
    let (acked, longest) = wr.await.unwrap();
    // Every acknowledged write is readable.
    let check = ManagedEtcd::connect(all_endpoints(&w.m), tls.clone(), Duration::from_secs(5))
        .await
        .unwrap();
    let got = check
        .client()
        .get(
            "/registry/soak/",
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
        format!("cke-rs soak report: seed {seed}, {minutes} minutes of faults"),
        format!("command: SOAK_SEED={seed} SOAK_MINUTES={minutes} make soak"),
        format!("faults injected: {}", counts.values().sum::<usize>()),
    ];
    for f in FAULTS {
        report.push(format!("  {f:?}: {}", counts.get(&f).copied().unwrap_or(0)));
    }
    report.extend([
        format!("writes acknowledged: {}, lost: {}", acked.len(), lost.len()),
        format!("longest write outage: {longest:.2?}"),
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
        "{} violations (replay: SOAK_SEED={seed}); logs in {}",
        violations.len(),
        logs.display()
    );
    let _ = std::fs::remove_dir_all(&logs);
}
