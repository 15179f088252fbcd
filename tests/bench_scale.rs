//! Benchmark at scale (ignored by default; `make bench-scale` runs it in a private network namespace,
//! release build): N "nodes" (default 1000, `CKE_BENCH_NODES`) — loopback addresses served by one
//! sshd on port 22 in a private mount namespace, with a stand-in container engine — the real `cke`
//! daemon, a real management etcd and a real OpenBao. Prints figures (lines starting with FIGURE); it
//! asserts only that the scenario ran (nodes reachable, operations completed), never a speed.
//!
//! The cluster: N workers and one control plane that cannot be reached (`::1`, where nothing
//! listens), so that after rivers starts everywhere every pass is a steady pass: a probe of every
//! node, a plan (`etcd-boot-aborted`: the managed etcd and Kubernetes are out of the bench's scope)
//! and no operation. Every node has its own SSH key in Vault (CKE's per-node layout).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cke::model::{Cluster, Node};
use cke::storage::{EtcdStorage, Storage, KEY_CLUSTER};
use cke_testkit::{free_port, http_get, require_root, BaoServer, Ckecli, EtcdServer, ProcessGuard};

/// The stand-in container engine: `docker` on the nodes' PATH (bind-mounted over /usr/local/bin in
/// sshd's mount namespace). Keeps one JSON file per container per node (the node is the server
/// address of `SSH_CONNECTION`; a removed container's file is emptied) and answers `inspect`,
/// `image inspect`, `rm -f` and `run` as docker does, at once: with the shell's builtins only, so
/// that its cost on the benchmark's two cores is one shell start per call (it started `cat`, `rm`,
/// `mkdir` and `sed` before 2026-12-06; docs/performance.md has the figures with both).
const ENGINE: &str = r#"#!/bin/sh
node=${SSH_CONNECTION#* * }; node=${node%% *}
d="$STATE/$node"
case "$1" in
inspect)
    shift; sep=''; miss=''
    printf '['
    for n in "$@"; do
        if [ -s "$d/$n" ]; then
            doc=''; read -r doc < "$d/$n" || [ -n "$doc" ]
            printf '%s%s' "$sep" "$doc"; sep=','
        else echo "Error: No such object: $n" >&2; miss=1; fi
    done
    echo ']'
    [ -z "$miss" ] || exit 1 ;;
image) exit 0 ;;
pull) exit 0 ;;
rm) shift; for n in "$@"; do case "$n" in -*) ;; *) [ ! -s "$d/$n" ] || : > "$d/$n" ;; esac; done ;;
run)
    shift; name=''; label=''; image=''
    while [ $# -gt 0 ]; do
        case "$1" in
        --name) name=$2; shift 2 ;;
        --label) label=${2#com.cybozu.cke=}; shift 2 ;;
        --network|--restart|-v|-e|--mount|--runtime|--ulimit) shift 2 ;;
        -*) shift ;;
        *) image=$1; break ;;
        esac
    done
    [ -d "$d" ] || mkdir -p "$d"
    # The label as a JSON string: a backslash before each backslash and double quote.
    esc=''
    while :; do
        case "$label" in
        *[\\\"]*)
            pre=${label%%[\\\"]*}; label=${label#"$pre"}
            esc="$esc$pre\\${label%"${label#?}"}"; label=${label#?} ;;
        *) esc="$esc$label"; break ;;
        esac
    done
    printf '{"Name":"/%s","State":{"Running":true},"Config":{"Image":"%s","Labels":{"com.cybozu.cke":"%s"}}}' \
        "$name" "$image" "$esc" > "$d/$name"
    echo 0123456789ab ;;
*) echo "stand-in engine: unsupported: $*" >&2; exit 2 ;;
esac
"#;

fn nodes_wanted() -> usize {
    std::env::var("CKE_BENCH_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// The i-th node's address (1-based): 127.1.0.1, ..., 127.1.3.232, ...
fn address(i: usize) -> String {
    format!("127.1.{}.{}", i / 250, i % 250 + 1)
}

fn sh(cmd: &mut Command) {
    let st = cmd.status().unwrap();
    assert!(st.success(), "{cmd:?}: {st}");
}

/// One sshd on port 22 of every loopback address, in a private mount namespace where the stand-in
/// engine is `docker` and root's `.bashrc` is empty.
fn start_sshd(d: &Path) -> ProcessGuard {
    for name in ["host", "user"] {
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join(name)));
    }
    std::fs::copy(d.join("user.pub"), d.join("authorized_keys")).unwrap();
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::write(d.join("bin/docker"), ENGINE).unwrap();
    sh(Command::new("chmod").arg("+x").arg(d.join("bin/docker")));
    std::fs::create_dir_all(d.join("state")).unwrap();
    let conf = format!(
        "ListenAddress 0.0.0.0:22\nAllowUsers root@127.0.0.0/8\nHostKey {h}\nPidFile {p}\n\
         AuthorizedKeysFile {a}\nStrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n\
         MaxStartups 400:30:1000\nMaxSessions 100\nSetEnv STATE={s}\nLogLevel ERROR\n",
        h = d.join("host").display(),
        p = d.join("sshd.pid").display(),
        a = d.join("authorized_keys").display(),
        s = d.join("state").display(),
    );
    std::fs::write(d.join("sshd_config"), conf).unwrap();
    std::fs::write(d.join("bashrc"), "# bench\n").unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let script = format!(
        "[ -f /root/.bashrc ] && mount --bind '{rc}' /root/.bashrc; mount --bind '{bin}' /usr/local/bin; \
         exec /usr/sbin/sshd -D -f '{conf}'",
        rc = d.join("bashrc").display(),
        bin = d.join("bin").display(),
        conf = d.join("sshd_config").display()
    );
    let child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(d.join("sshd.log")).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.1.0.1", 22)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "sshd did not start (port 22 taken? run through make bench-scale, which gives it a network namespace)"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    ProcessGuard(child)
}

/// The sum of every series of `family` in a Prometheus exposition.
fn sum(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// What one scrape of cke and its process say.
#[derive(Debug, Clone, Copy)]
struct Sample {
    passes_done: f64,
    pass_seconds: f64,
    vault: f64,
    etcd: f64,
    cpu: f64,
    rss_kib: u64,
    switches: u64,
}

struct Bench {
    http: String,
    pid: u32,
    etcd_endpoint: String,
}

impl Bench {
    fn sample(&self) -> Sample {
        let (_, m) = http_get(&format!("http://{}/metrics", self.http)).expect("cke answers /metrics");
        Sample {
            passes_done: sum(&m, "cke_controller_pass_duration_seconds_count"),
            pass_seconds: sum(&m, "cke_controller_pass_duration_seconds_sum"),
            vault: sum(&m, "cke_vault_requests_total"),
            etcd: sum(&m, "cke_management_etcd_requests_total"),
            cpu: cpu_seconds(self.pid),
            rss_kib: rss_kib(self.pid),
            switches: context_switches(self.pid),
        }
    }

    /// Bytes the management etcd received from its clients so far.
    fn etcd_received(&self) -> f64 {
        let (_, m) = http_get(&format!("{}/metrics", self.etcd_endpoint)).unwrap();
        sum(&m, "etcd_network_client_grpc_received_bytes_total")
    }

    fn wait_passes(&self, done: f64, limit: Duration) -> Sample {
        let start = Instant::now();
        loop {
            let s = self.sample();
            if s.passes_done >= done {
                return s;
            }
            assert!(start.elapsed() < limit, "pass {done} did not end within {limit:?}");
            // Every scrape costs cke CPU (one series per node); a pass's duration is cke's own
            // figure, so polling more often would measure the polling, not the pass.
            std::thread::sleep(SCRAPE_EVERY);
        }
    }
}

/// The `cke` process that the profiler `wrapper` started (its child or grandchild).
fn daemon_under(wrapper: u32) -> u32 {
    let start = Instant::now();
    loop {
        let mut parents = vec![wrapper];
        while let Some(parent) = parents.pop() {
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                    continue;
                };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    continue;
                };
                let Some(close) = stat.rfind(')') else { continue };
                let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
                let ppid: u32 = stat[close + 2..]
                    .split_whitespace()
                    .nth(1)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                if ppid == parent {
                    if comm == "cke" {
                        return pid;
                    }
                    parents.push(pid);
                }
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no cke under the wrapper {wrapper}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How often the benchmark scrapes cke's `/metrics` while it waits for a pass to end.
const SCRAPE_EVERY: Duration = Duration::from_millis(250);

/// RSS of a process split as `/proc/PID/status` gives it: anonymous memory (the heap, stacks) and
/// file-backed (the mapped binary), in KiB.
fn rss_split_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("RssAnon:"), field("RssFile:"))
}

/// CPU seconds of the benchmark's sshd (`master`), of its per-connection processes and of the
/// children they waited for (the nodes' shells and commands; a per-connection process lives as long
/// as its connection).
fn sshd_cpu_seconds(master: u32) -> f64 {
    let mut total = 0.0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else { continue };
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        if pid != master && f[1] != master.to_string() {
            continue;
        }
        let ticks: f64 = f[11..15].iter().filter_map(|t| t.parse::<f64>().ok()).sum();
        total += ticks / 100.0;
    }
    total
}

/// User plus system CPU seconds of a process (/proc/PID/stat).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Context switches of every thread of a process so far, voluntary (it slept: waited for events or
/// for a lock) plus involuntary (/proc/PID/task/*/status): how often cke's threads went to sleep and
/// were woken up.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|s| {
            s.lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cluster_json(n: usize, rivers_arg: Option<&str>) -> String {
    let mut nodes = vec![Node::new("::1", "root", true)];
    nodes.extend((1..=n).map(|i| Node::new(&address(i), "root", false)));
    let mut c = Cluster::new("bench", "10.96.0.0/16", nodes);
    if let Some(a) = rivers_arg {
        c.options.rivers.extra_args = vec![a.to_string()];
    }
    serde_json::to_string(&c).unwrap()
}

fn stats(v: &mut [f64]) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench_scale() {
    require_root("this benchmark");
    let n = nodes_wanted();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let etcd = EtcdServer::start();
    let bao = BaoServer::start();
    let config = d.join("config.yml");
    std::fs::write(&config, etcd.config_yaml("/cke/")).unwrap();
    let cli = Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), &config)
        .env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", &bao.token);
    cli.ok(&["vault", "init"], None);
    let sshd = start_sshd(d);

    // CKE's per-node layout: every node's own key (the same key text here), written at once.
    let key = std::fs::read_to_string(d.join("user")).unwrap();
    let vault = cke::infra::pki::VaultClient::with_token(&bao.addr, "", &bao.token).unwrap();
    let mut keys: BTreeMap<String, String> = (1..=n).map(|i| (address(i), key.clone())).collect();
    keys.insert(String::new(), key.clone());
    cke::infra::pki::secrets::put_ssh_private_keys(&vault, &keys)
        .await
        .unwrap();
    let secret = serde_json::to_string(&keys).unwrap().len();
    println!(
        "FIGURE nodes: {n}; cke/secrets/ssh holds {} keys, {} KiB",
        keys.len(),
        secret / 1024
    );

    let storage = EtcdStorage::connect(&cke::config::Config::load(&config).unwrap())
        .await
        .unwrap();
    storage
        .put_raw(KEY_CLUSTER, cluster_json(n, None).into_bytes())
        .await
        .unwrap();

    let http = format!("127.0.0.1:{}", free_port());
    // `CKE_BENCH_LOG=FILE` keeps the daemon's log in FILE, at level `info` (`CKE_LOG` overrides it);
    // otherwise warnings only, in the run's temporary directory.
    let kept_log = std::env::var("CKE_BENCH_LOG").ok().filter(|f| !f.trim().is_empty());
    let log = kept_log
        .as_ref()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| d.join("cke.log"));
    let level = match (&kept_log, std::env::var("CKE_LOG")) {
        (_, Ok(level)) => level,
        (Some(_), _) => "info".into(),
        (None, _) => "warn".into(),
    };
    // `CKE_BENCH_WRAP` (e.g. `heaptrack -o /tmp/cke` or `perf record -g -o /tmp/cke.perf --`) runs
    // the daemon under a profiler; the figures are then the daemon's, read from its own process.
    let wrap = std::env::var("CKE_BENCH_WRAP").ok().filter(|w| !w.trim().is_empty());
    let mut command = match &wrap {
        Some(w) => {
            let mut parts = w.split_whitespace();
            let mut c = Command::new(parts.next().unwrap());
            c.args(parts).arg(env!("CARGO_BIN_EXE_cke"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_cke")),
    };
    let child = command
        .arg("--config")
        .arg(&config)
        .args([
            "--name",
            "bench",
            "--http",
            &http,
            "--interval",
            "10m",
            "--session-ttl",
            "10s",
        ])
        .args(["--container-cli", "docker", "--max-concurrent-updates", &n.to_string()])
        // `CKE_BENCH_ARGS`: more daemon flags, e.g. `--probe-concurrency 64`.
        .args(std::env::var("CKE_BENCH_ARGS").unwrap_or_default().split_whitespace())
        .env("CKE_LOG", &level)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let cke = ProcessGuard(child);
    let pid = if wrap.is_some() {
        daemon_under(cke.id())
    } else {
        cke.id()
    };
    let bench = Bench {
        http: http.clone(),
        pid,
        etcd_endpoint: etcd.endpoint.clone(),
    };
    let started = Instant::now();
    while http_get(&format!("http://{http}/health")).is_none() {
        assert!(started.elapsed() < Duration::from_secs(20), "cke did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // First pass: connect to every node (key exchange, host key pinned, authentication) and start
    // rivers everywhere; then the first steady pass.
    let first = bench.wait_passes(1.0, Duration::from_secs(600));
    println!(
        "FIGURE first pass (connect {n} nodes, pin their host keys, rivers-bootstrap on all): {:.2} s, cke CPU {:.2} s",
        first.pass_seconds, first.cpu
    );
    let trigger = || async {
        storage
            .put_raw(KEY_CLUSTER, cluster_json(n, None).into_bytes())
            .await
            .unwrap();
    };
    let mut last = first;
    // Warm-up passes until nothing is left to do (rivers started, status settled).
    for _ in 0..3 {
        trigger().await;
        last = bench.wait_passes(last.passes_done + 1.0, Duration::from_secs(300));
    }
    let records = storage.get_records(5).await.unwrap();
    for r in records.iter().rev() {
        println!(
            "  record {} {} {:?} targets {} {}",
            r.id,
            r.operation,
            r.status,
            r.targets.len(),
            r.error.chars().take(300).collect::<String>()
        );
    }
    let status = storage.get_status().await.unwrap().unwrap();
    println!(
        "  phase {} ({}), status key {} bytes",
        status.phase,
        status.note.chars().take(120).collect::<String>(),
        serde_json::to_string(&status).unwrap().len()
    );
    let reached = std::fs::read_dir(d.join("state")).unwrap().count();
    assert_eq!(reached, n, "rivers runs on every node");

    // Warm passes: probe, plan, nothing to do.
    let (mut wall, mut cpu, mut vault_req, mut etcd_req, mut switches) = (vec![], vec![], vec![], vec![], vec![]);
    for round in 0..2 {
        for _ in 0..20 {
            let before = bench.sample();
            trigger().await;
            let after = bench.wait_passes(before.passes_done + 1.0, Duration::from_secs(120));
            wall.push(after.pass_seconds - before.pass_seconds);
            cpu.push(after.cpu - before.cpu);
            vault_req.push(after.vault - before.vault);
            etcd_req.push(after.etcd - before.etcd);
            switches.push((after.switches - before.switches) as f64);
            last = after;
        }
        if round == 0 {
            let (anon, file) = rss_split_kib(bench.pid);
            println!(
                "FIGURE RSS after 20 warm passes: {:.1} MiB ({n} pooled connections; anonymous {:.1} MiB, file-backed {:.1} MiB)",
                last.rss_kib as f64 / 1024.0,
                anon as f64 / 1024.0,
                file as f64 / 1024.0
            );
            // What one scrape of /metrics costs cke (the benchmark scrapes every SCRAPE_EVERY).
            let before = cpu_seconds(bench.pid);
            let scrapes = 100;
            let mut size = 0;
            for _ in 0..scrapes {
                size = http_get(&format!("http://{}/metrics", bench.http)).unwrap().1.len();
            }
            println!(
                "FIGURE one /metrics scrape ({} KiB): {:.2} ms of cke CPU (mean of {scrapes})",
                size / 1024,
                (cpu_seconds(bench.pid) - before) * 1000.0 / scrapes as f64
            );
        }
    }
    let (a, b, c) = stats(&mut wall);
    println!("FIGURE warm pass ({n} nodes, 40 passes): min {a:.3} s, median {b:.3} s, max {c:.3} s");
    let (a, b, c) = stats(&mut cpu);
    println!("FIGURE cke CPU per warm pass: min {a:.3} s, median {b:.3} s, max {c:.3} s (/proc/PID/stat, 10 ms ticks)");
    let (a, b, c) = stats(&mut switches);
    println!("FIGURE cke context switches per warm pass (all threads): min {a}, median {b}, max {c}");
    let (a, b, c) = stats(&mut vault_req);
    println!("FIGURE Vault requests per warm pass: min {a}, median {b}, max {c}");
    let (a, b, c) = stats(&mut etcd_req);
    println!("FIGURE management etcd requests per warm pass: min {a}, median {b}, max {c}");

    // A rivers restart over every node: a changed argument makes every rivers outdated.
    let received = bench.etcd_received();
    let (cke_cpu, nodes_cpu) = (cpu_seconds(bench.pid), sshd_cpu_seconds(sshd.id()));
    let t = Instant::now();
    storage
        .put_raw(KEY_CLUSTER, cluster_json(n, Some("--log-level=info")).into_bytes())
        .await
        .unwrap();
    let record = loop {
        let r = storage.get_records(1).await.unwrap();
        if let Some(r) = r
            .into_iter()
            .next()
            .filter(|r| r.operation == "rivers-restart" && r.end_at.is_some())
        {
            break r;
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no rivers-restart");
        // The figure is the record's own times: polling faster would only take CPU from the restart
        // (each read returns the record, 13 KiB at 1000 nodes).
        tokio::time::sleep(SCRAPE_EVERY).await;
    };
    let written = bench.etcd_received() - received;
    let took = (record.end_at.unwrap() - record.start_at).to_std().unwrap();
    println!(
        "FIGURE rivers-restart on {} nodes: {:.2} s (record start to end), {:?}; the management etcd received {:.0} KiB from its clients meanwhile; the record is {} KiB",
        record.targets.len(),
        took.as_secs_f64(),
        record.status,
        written / 1024.0,
        serde_json::to_string(&record).unwrap().len() / 1024
    );
    println!(
        "FIGURE during the restart: cke CPU {:.2} s; the nodes' side (sshd, shells, timeout, stand-in engine) CPU {:.2} s",
        cpu_seconds(bench.pid) - cke_cpu,
        sshd_cpu_seconds(sshd.id()) - nodes_cpu
    );
    assert_eq!(record.targets.len(), n);

    // SIGTERM with a probe in flight.
    last = bench.sample();
    trigger().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    sh(Command::new("kill").args(["-TERM", &pid.to_string()]));
    let mut child = cke;
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(30), "cke did not exit");
        std::thread::sleep(Duration::from_millis(10));
    };
    println!(
        "FIGURE SIGTERM during a pass ({} passes done): exit {status} after {:.2} s (--shutdown-grace 1s)",
        last.passes_done,
        t.elapsed().as_secs_f64()
    );

    // The planner alone.
    for size in [1000, 5000] {
        let (took, phase) = decide_ops_time(size);
        println!(
            "FIGURE decide_ops at {size} nodes: {:.2} ms (median of 30), phase {phase}",
            took * 1000.0
        );
    }
}

/// The planner on a cluster of `size` nodes (3 control planes) where rivers must start everywhere:
/// the median of 30 runs.
fn decide_ops_time(size: usize) -> (f64, String) {
    use cke::model::{ClusterStatus, Constraints, NodeStatus};
    use cke::planner::{decide_ops, PlanInputs};
    let mut nodes: Vec<Node> = (1..=3)
        .map(|i| Node::new(&format!("10.0.0.{i}"), "root", true))
        .collect();
    nodes.extend((4..=size).map(|i| {
        Node::new(
            &format!("10.{}.{}.{}", i / 62500, (i / 250) % 250, i % 250 + 1),
            "root",
            false,
        )
    }));
    let cluster = Cluster::new("bench", "10.96.0.0/16", nodes);
    let mut status = ClusterStatus::default();
    for n in &cluster.nodes {
        status.nodes.insert(
            n.address.clone(),
            NodeStatus {
                ssh_connected: true,
                ..Default::default()
            },
        );
    }
    let constraints = Constraints {
        control_plane_count: 3,
        ..Default::default()
    };
    let inputs = PlanInputs::default();
    let mut times = vec![];
    let mut phase = String::new();
    for _ in 0..30 {
        let t = Instant::now();
        let plan = decide_ops(&cluster, &status, &constraints, &inputs, chrono::Utc::now());
        times.push(t.elapsed().as_secs_f64());
        phase = plan.phase.to_string();
    }
    let (_, median, _) = stats(&mut times);
    (median, phase)
}
