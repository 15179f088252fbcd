//! The `cke` daemon against a real etcd with real processes: one leader among three, failover on
//! kill -9 and SIGTERM (figures printed), cancellation of the dead leader's record, a leader paused
//! (SIGSTOP) in the middle of an operation that wakes after losing its lease, losing etcd, the HTTP
//! endpoints, and dry runs.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cke::config::Config;
use cke::model::RecordStatus;
use cke::storage::{EtcdStorage, Storage};
use cke_testkit::{free_port, poll_until, EtcdServer, ProcessGuard};

struct Cke {
    name: String,
    port: u16,
    child: ProcessGuard,
}

impl Cke {
    fn start(config: &PathBuf, name: &str, extra: &[&str], log_dir: &std::path::Path) -> Cke {
        Cke::start_with_env(config, name, extra, log_dir, &[])
    }

    fn start_with_env(
        config: &PathBuf,
        name: &str,
        extra: &[&str],
        log_dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Cke {
        let port = free_port();
        let log = std::fs::File::create(log_dir.join(format!("{name}.log"))).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cke"))
            .arg("--config")
            .arg(config)
            .args([
                "--name",
                name,
                "--http",
                &format!("127.0.0.1:{port}"),
                "--session-ttl",
                "3s",
                "--interval",
                "1s",
            ])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Cke {
            name: name.into(),
            port,
            child: ProcessGuard(child),
        }
    }

    async fn status(&self) -> Option<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/status", self.port);
        let resp = http().get(url).timeout(Duration::from_secs(2)).send().await.ok()?;
        resp.json().await.ok()
    }

    async fn is_leader(&self) -> bool {
        self.status().await.is_some_and(|s| s["is_leader"] == true)
    }

    fn signal(&self, sig: &str) {
        self.child.signal(sig);
    }
}

/// The project's HTTP client (reqwest, with cke's TLS crypto provider).
fn http() -> reqwest::Client {
    cke::infra::http_client_builder().build().unwrap()
}

struct Env {
    etcd: EtcdServer,
    config: PathBuf,
    logs: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let etcd = EtcdServer::start();
        let config = etcd.dir.path().join("config.yml");
        std::fs::write(&config, etcd.config_yaml("/cke/")).unwrap();
        let env = Env {
            etcd,
            config,
            logs: tempfile::tempdir().unwrap(),
        };
        let s = env.storage().await;
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cluster.yml")).unwrap();
        s.put_cluster(&cke::model::parse_cluster(&text).unwrap()).await.unwrap();
        s.put_constraints(
            &cke::model::Constraints::default()
                .with("control-plane-count", "3")
                .unwrap(),
        )
        .await
        .unwrap();
        env
    }

    async fn storage(&self) -> EtcdStorage {
        let text = std::fs::read_to_string(&self.config).unwrap();
        EtcdStorage::connect(&Config::parse(&text, &self.config).unwrap())
            .await
            .unwrap()
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.logs.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

async fn leaders(ckes: &[&Cke]) -> Vec<String> {
    let mut v = Vec::new();
    for c in ckes {
        if c.is_leader().await {
            v.push(c.name.clone());
        }
    }
    v
}

async fn until<F, Fut, T>(what: &str, limit: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    poll_until(what, limit, Duration::from_millis(50), f).await
}

/// Waits until record `id` is cancelled.
async fn cancelled_record(storage: &EtcdStorage, id: i64, limit: Duration) -> cke::model::Record {
    until(&format!("record {id} cancelled"), limit, || async {
        storage
            .get_record(id)
            .await
            .unwrap()
            .filter(|r| r.status == RecordStatus::Cancelled)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_failover_and_record_cancellation() {
    let env = Env::new().await;
    let storage = env.storage().await;
    let extra = ["--test-operator", "block:60"];
    let ckes: Vec<Cke> = ["a", "b", "c"]
        .iter()
        .map(|n| Cke::start(&env.config, n, &extra, env.logs.path()))
        .collect();
    let all: Vec<&Cke> = ckes.iter().collect();

    // Exactly one leader, named by ckecli's key.
    let first = until("a leader", Duration::from_secs(30), || async {
        let l = leaders(&all).await;
        (l.len() == 1).then(|| l[0].clone())
    })
    .await;
    for _ in 0..10 {
        assert_eq!(
            leaders(&all).await,
            vec![first.clone()],
            "exactly one leader at all times"
        );
        assert_eq!(storage.get_leader().await.unwrap().as_deref(), Some(first.as_str()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader runs a long command: its record is running.
    let running = until("a running record", Duration::from_secs(20), || async {
        storage
            .get_records(1)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.status == RecordStatus::Running)
    })
    .await;
    assert_eq!(running.leader, first);

    // kill -9: another instance leads within TTL + 2 s, and cancels the dead leader's record.
    let victim = ckes.iter().find(|c| c.name == first).unwrap();
    victim.signal("-KILL");
    let t0 = Instant::now();
    let rest: Vec<&Cke> = ckes.iter().filter(|c| c.name != first).collect();
    let second = until("a new leader after kill -9", Duration::from_secs(5), || async {
        let l = leaders(&rest).await;
        (l.len() == 1).then(|| l[0].clone())
    })
    .await;
    let kill_failover = t0.elapsed();
    println!("FIGURE failover after kill -9 (session TTL 3s): {kill_failover:?}");
    let cancelled = cancelled_record(&storage, running.id, Duration::from_secs(10)).await;
    assert!(
        cancelled.error.contains(&first) && cancelled.error.contains(&second),
        "{}",
        cancelled.error
    );
    assert!(cancelled.end_at.is_some());

    // SIGTERM: the leader resigns and exits 0; takeover in under 2 s.
    let leader = ckes.iter().find(|c| c.name == second).unwrap();
    let running = until("the new leader's running record", Duration::from_secs(20), || async {
        storage
            .get_records(1)
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.status == RecordStatus::Running && r.leader == second)
    })
    .await;
    leader.signal("-TERM");
    let t0 = Instant::now();
    let last: Vec<&Cke> = ckes.iter().filter(|c| c.name != first && c.name != second).collect();
    until("a leader after SIGTERM", Duration::from_secs(2), || async {
        last[0].is_leader().await.then_some(())
    })
    .await;
    let term_failover = t0.elapsed();
    println!("FIGURE failover after SIGTERM: {term_failover:?}");
    let mut leader = ckes.into_iter().find(|c| c.name == second).unwrap();
    let code = until("the old leader to exit", Duration::from_secs(15), || {
        let r = leader.child.0.try_wait().unwrap();
        async move { r }
    })
    .await;
    assert!(code.success(), "cke exited with {code:?}\n{}", env.log(&second));
    // Its running command was abandoned after the grace period and recorded as cancelled by itself
    // (or by the next leader).
    let r = cancelled_record(&storage, running.id, Duration::from_secs(20)).await;
    assert!(r.end_at.is_some());
}

/// The process state letter of `pid` (`T` when stopped).
fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next())
        .unwrap_or('?')
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// Records of different leaders never overlap in time: at most one instance acted at a time.
fn assert_no_interleaving(records: &[cke::model::Record]) {
    let end = |r: &cke::model::Record| r.end_at.unwrap_or_else(chrono::Utc::now);
    for a in records {
        for b in records.iter().filter(|b| b.leader != a.leader) {
            assert!(
                end(a) <= b.start_at || end(b) <= a.start_at,
                "records of two leaders interleave:\n{a:?}\n{b:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_mid_operation_runs_no_further_command_after_waking() {
    // Each instance appends the steps of its three-command test operation to its own file. Instance
    // a leads and pauses itself (SIGSTOP, as a frozen VM) right before the second command of its first
    // operation, after that command's record was written. b and c take over once a's lease expires;
    // a is woken long after: it must not run the second command, nor anything else.
    let env = Env::new().await;
    let storage = env.storage().await;
    // At the current config-version (else the first operation is CKE's upgrade, which records it).
    storage
        .put_raw(cke::storage::KEY_CONFIG_VERSION, b"2".to_vec())
        .await
        .unwrap();
    let out = |n: &str| env.logs.path().join(format!("steps-{n}"));
    let spec = |n: &str| format!("write:{}", out(n).display());
    let a = Cke::start_with_env(
        &env.config,
        "a",
        &["--test-operator", &spec("a")],
        env.logs.path(),
        &[("CKE_FAILPOINT", "before-command-2:stop")],
    );
    until(
        "a paused in the middle of its operation",
        Duration::from_secs(30),
        || async { (process_state(a.child.id()) == 'T').then_some(()) },
    )
    .await;
    assert_eq!(lines(&out("a")), ["step 1"]);
    let paused = storage.get_records(1).await.unwrap().pop().unwrap();
    assert_eq!(
        (paused.leader.as_str(), paused.status, paused.command.detail.as_str()),
        ("a", RecordStatus::Running, "step 2"),
        "the second command's record is written, the command not run"
    );

    let b = Cke::start(&env.config, "b", &["--test-operator", &spec("b")], env.logs.path());
    let c = Cke::start(&env.config, "c", &["--test-operator", &spec("c")], env.logs.path());
    let t0 = Instant::now();
    let next = until(
        "b or c leads and completes an operation",
        Duration::from_secs(30),
        || async {
            let l = storage.get_leader().await.ok().flatten()?;
            (l != "a" && lines(&out(&l)).len() >= 3).then_some(l)
        },
    )
    .await;
    println!(
        "FIGURE takeover from a paused leader (session TTL 3s): {:?}",
        t0.elapsed()
    );
    let cancelled = cancelled_record(&storage, paused.id, Duration::from_secs(10)).await;
    assert!(cancelled.error.contains(&next), "{}", cancelled.error);

    // Woken up: a finds its lease deadline passed and starts nothing.
    a.signal("-CONT");
    let t1 = Instant::now();
    until("a to follow", Duration::from_secs(10), || async {
        a.status().await.filter(|s| s["is_leader"] == false).map(|_| ())
    })
    .await;
    println!("FIGURE a woken leader steps down: {:?}", t1.elapsed());
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lines(&out("a")), ["step 1"], "the woken leader ran a command");
    let log = env.log("a");
    assert!(
        log.contains("the term ended: command not started"),
        "a's log does not say why it stopped:\n{log}"
    );
    assert!(storage.get_record(paused.id).await.unwrap().unwrap().status == RecordStatus::Cancelled);
    let records = storage.get_records(0).await.unwrap();
    assert!(records.iter().filter(|r| r.leader == "a").count() == 1, "{records:?}");
    assert_no_interleaving(&records);
    let all = [&a, &b, &c];
    assert_eq!(leaders(&all).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_etcd_stops_the_leader_and_one_leader_returns() {
    let mut env = Env::new().await;
    let out = env.logs.path().join("writes");
    let spec = format!("write:{}", out.display());
    let ckes: Vec<Cke> = ["x", "y"]
        .iter()
        .map(|n| Cke::start(&env.config, n, &["--test-operator", &spec], env.logs.path()))
        .collect();
    let all: Vec<&Cke> = ckes.iter().collect();
    until("a leader", Duration::from_secs(30), || async {
        (leaders(&all).await.len() == 1).then_some(())
    })
    .await;
    until("some writes", Duration::from_secs(20), || async {
        (std::fs::read_to_string(&out).unwrap_or_default().lines().count() >= 6).then_some(())
    })
    .await;

    env.etcd.kill();
    let cut = chrono::Utc::now();
    // Within the TTL (3 s) plus a keep-alive period, nobody believes it leads, and writes stop.
    until("no leader while etcd is down", Duration::from_secs(8), || async {
        leaders(&all).await.is_empty().then_some(())
    })
    .await;
    let stopped = std::fs::read_to_string(&out).unwrap().lines().count();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = std::fs::read_to_string(&out).unwrap().lines().count();
    assert!(
        later <= stopped + 3,
        "the old leader kept acting without etcd: {stopped} -> {later}"
    );
    // /health keeps answering and, once its freshness window has passed, says etcd is gone; /status
    // keeps answering too.
    let url = format!("http://127.0.0.1:{}/health", ckes[0].port);
    let body = until(
        "/health naming the management etcd",
        Duration::from_secs(45),
        || async {
            let r = http().get(&url).send().await.ok()?;
            let code = r.status().as_u16();
            let v: serde_json::Value = r.json().await.ok()?;
            (code == 500 && v["etcd_connected"] == false).then_some(v)
        },
    )
    .await;
    let problems = body["problems"].to_string();
    assert!(problems.contains("management etcd: no answer for"), "{body}");
    assert!(ckes[0].status().await.is_some(), "/status must answer without etcd");

    env.etcd.restart();
    let back = chrono::Utc::now();
    until(
        "exactly one leader after etcd returns",
        Duration::from_secs(30),
        || async { (leaders(&all).await.len() == 1).then_some(()) },
    )
    .await;
    for _ in 0..10 {
        assert!(leaders(&all).await.len() <= 1, "two leaders at once");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // No record was written while etcd was down, and every record after its return was written by
    // the instance that leads now or by the one that led before (each under its own fence).
    let storage = env.storage().await;
    let now_leader = storage.get_leader().await.unwrap().unwrap();
    for r in storage.get_records(0).await.unwrap() {
        assert!(
            r.start_at < cut || r.start_at >= back - chrono::Duration::seconds(1),
            "record {} started while etcd was down",
            r.id
        );
        if r.start_at >= back {
            assert!(
                r.leader == now_leader || r.status == RecordStatus::Cancelled,
                "{r:?} by a non-leader"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_endpoints_and_dry_run() {
    let env = Env::new().await;
    // At the current config-version (else the first phase is CKE's upgrade, which records it).
    env.storage()
        .await
        .put_raw(cke::storage::KEY_CONFIG_VERSION, b"2".to_vec())
        .await
        .unwrap();
    let out = env.logs.path().join("dry");
    let spec = format!("write:{}", out.display());
    let c = Cke::start(
        &env.config,
        "dry",
        &["--dry-run", "--test-operator", &spec],
        env.logs.path(),
    );
    let st = until("a leading dry-run instance", Duration::from_secs(30), || async {
        c.status()
            .await
            .filter(|s| s["is_leader"] == true && s["phase"].is_string())
    })
    .await;
    assert_eq!(st["name"], "dry");
    assert_eq!(st["leader"], "dry");
    assert_eq!(st["dry_run"], true);
    assert_eq!(st["phase"], "etcd-boot-aborted", "{st}");
    assert!(st["note"].as_str().unwrap().contains("10.66.0.11"), "{st}");
    assert!(st["phase_timestamp"].is_string());
    assert!(st["planned_operations"].is_array());
    // Published to etcd for ckecli status.
    let storage = env.storage().await;
    let published = until("status in etcd", Duration::from_secs(10), || async {
        storage.get_status().await.unwrap()
    })
    .await;
    assert_eq!(published.phase, cke::model::Phase::EtcdBootAborted);
    // Dry run: nothing executed, nothing recorded.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!out.exists(), "dry run executed an operation");
    assert!(storage.get_records(0).await.unwrap().is_empty());

    let base = format!("http://127.0.0.1:{}", c.port);
    let health = http().get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    let h: serde_json::Value = health.json().await.unwrap();
    assert_eq!(h["healthy"], true);
    let v: serde_json::Value = http()
        .get(format!("{base}/version"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let m = http()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "cke_leader 1",
        "cke_operation_phase{phase=\"etcd-boot-aborted\"} 1",
        "cke_operation_phase_timestamp_seconds ",
        // A dry run finishes no operation: families with labels appear with their first sample
        // (as with CKE's Go client); these have none.
        "# TYPE cke_controller_passes_total counter",
        "# TYPE cke_controller_pass_duration_seconds histogram",
        "# TYPE cke_probe_duration_seconds histogram",
    ] {
        assert!(m.contains(series), "{series} missing from\n{m}");
    }
    // The whole exposition parses as Prometheus text: HELP and TYPE everywhere, histograms whole.
    let families = cke_testkit::exposition::check(&m);
    assert!(families.iter().any(|f| f.name == "cke_management_etcd_requests_total"));
    // A constraint violation is reported as such.
    storage
        .put_constraints(&cke::model::Constraints::default())
        .await
        .unwrap();
    until("constraints-violated", Duration::from_secs(10), || async {
        c.status().await.filter(|s| s["phase"] == "constraints-violated")
    })
    .await;
}
