//! End to end: the reboot and repair queues on real Kubernetes 1.20.2 (scripts/build-k8s.sh) on mtest node hosts
//! with containerd, 3 control planes and 2 workers brought up once, `max_concurrent_reboots: 2`.
//! `reboot_command` power-cycles a node host (mtest `node-stop --power-off`, `node-start`: every process and
//! container of the node dies, its `/run` is wiped), `boot_check_command` prints `true` once the node
//! host answers (never for a node whose flag file exists). CKE's mtest reboot checks
//! (`mtest/reboot_test.go`):
//!
//! 1. disabled, the queue does not move; enabled, the two workers then a control plane reboot: the
//!    queue empties, the workers finish before the control plane starts, never more than one control
//!    plane is out nor fewer than two apiservers ready in the `kubernetes` endpoints, a Deployment's
//!    pods are evicted and run elsewhere, the nodes end schedulable and unannotated;
//! 2. at once: a PodDisruptionBudget forbids the eviction of a pod in a protected namespace on one
//!    worker, whose entry backs off while the pod stays; `reset-backoff` clears the back-off; once the
//!    namespace is not protected, the pod is deleted and that reboot proceeds. Meanwhile the other
//!    worker's boot check is never true: its entry stays `rebooting` all along; `cancel` removes it.
//!
//! 3. the repair queue (CKE's `mtest/repair_test.go`), with commands on this host (the management
//!    server): a disabled queue starts nothing; a health check that becomes true → `succeeded`, its
//!    success command ran; a failing repair command, a command past its timeout (its processes
//!    gone), a failing success command, a health check never true past the last step → `failed`;
//!    `delete-finished`; a long watch removed by `delete INDEX`; a step with `need_drain` on a worker whose pod
//!    a PodDisruptionBudget protects → back-off, `reset-backoff`, and once the budget is lifted the
//!    node is drained, repaired and uncordoned; a control plane down (its etcd member out of sync) is
//!    repaired; two down → no repair proceeds, `delete-unfinished`.
//!
//! Needs root. Serialize real-Kubernetes runs machine-wide: `flock /tmp/cke-k8s-e2e.lock cargo test
//! --features test-hooks --test e2e_reboot`. The test prints its timings.

mod e2e_common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cke_testkit::Mtest;
use e2e_common::k8s::*;
use e2e_common::*;
use serde_json::Value;

const CPS: [usize; 3] = [1, 2, 3];
const WORKERS: [usize; 2] = [4, 5];

/// Writes the reboot and boot check scripts into `dir`; their paths.
fn scripts(m: &Mtest, dir: &Path) -> (String, String) {
    let mtest = format!(
        "bash {} --dir {} --prefix {} --subnet {}",
        Mtest::script().display(),
        m.env["MTEST_DIR"],
        m.prefix,
        m.subnet
    );
    let d = dir.display();
    let reboot = format!(
        "#!/bin/bash\n# reboot_command ADDRESS: power-cycles the node host of ADDRESS.\nset -eu\n\
         i=$(( ${{1##*.}} - 10 ))\necho \"$(date +%s) reboot $1\" >> {d}/reboots.log\n\
         {mtest} node-stop \"$i\" --power-off >>{d}/mtest.log 2>&1\nsleep 2\n{mtest} node-start \"$i\" >>{d}/mtest.log 2>&1\n"
    );
    let check = format!(
        "#!/bin/bash\n# boot_check_command ADDRESS SINCE: true once the node host answers.\n\
         i=$(( ${{1##*.}} - 10 ))\necho \"$(date +%s) check $1 $2\" >> {d}/boot-checks.log\n\
         if [ -e {d}/never-boots-$1 ]; then echo false; exit 0; fi\n\
         if {mtest} exec \"$i\" true >/dev/null 2>&1; then echo true; else echo false; fi\n"
    );
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        write_script(&p, text);
        p.display().to_string()
    };
    (write("reboot.sh", &reboot), write("boot-check.sh", &check))
}

/// Writes an executable script.
fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn entries(m: &Mtest) -> Vec<Value> {
    serde_json::from_str(&ok(m, &["rq", "list"], None)).unwrap()
}

/// The entries as (node, status).
fn statuses(m: &Mtest) -> Vec<(String, String)> {
    entries(m)
        .iter()
        .map(|e| (e["node"].as_str().unwrap().into(), e["status"].as_str().unwrap().into()))
        .collect()
}

fn add(m: &Mtest, nodes: &[usize]) {
    let text: Vec<String> = nodes.iter().map(|i| m.node(*i)).collect();
    ok(m, &["rq", "add", "-"], Some(&text.join("\n")));
}

/// The Node is schedulable and without the `cke.cybozu.com/reboot` annotation.
fn released(k: &Kubectl, name: &str) -> bool {
    let n = k.json(&["node", name]);
    n["metadata"]["name"] == name
        && n["spec"]["unschedulable"].as_bool() != Some(true)
        && n["metadata"]["annotations"]["cke.cybozu.com/reboot"].is_null()
}

/// The pods of `selector` in `ns`: (name, node, phase, uid).
fn pods(k: &Kubectl, ns: &str, selector: &str) -> Vec<(String, String, String, String)> {
    let list = k.json(&["pods", "-n", ns, "-l", selector]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (
                s(&p["metadata"]["name"]),
                s(&p["spec"]["nodeName"]),
                s(&p["status"]["phase"]),
                s(&p["metadata"]["uid"]),
            )
        })
        .collect()
}

/// A Deployment of busybox httpd pods in `ns`, preferring Node `node`.
fn deployment(ns: &str, name: &str, replicas: u32, node: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
      affinity:
        nodeAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            preference: {{matchExpressions: [{{key: kubernetes.io/hostname, operator: In, values: ["{node}"]}}]}}
      containers:
      - name: httpd
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#
    )
}

/// What the watcher saw during the reboots.
#[derive(Default)]
struct Seen {
    /// Samples of the queue: the nodes in progress (draining or rebooting), with the time.
    in_progress: Vec<(f64, Vec<String>)>,
    /// The fewest ready addresses of Endpoints `default/kubernetes` read at once.
    min_ready_apiservers: Option<usize>,
    /// The most control planes whose apiserver was not running at once.
    max_cps_down: usize,
    /// Reads that failed (the API through node1 must keep answering).
    failed_reads: usize,
    samples: usize,
    /// Each node's status changes as sampled: (time, node, status or "done").
    timeline: Vec<(f64, String, String)>,
}

/// Watches the queue, the `kubernetes` endpoints and the apiserver containers until `stop`.
fn watch(m: &Mtest, k: &Kubectl, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let t0 = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let o = ckecli(m, &["rq", "list"], None);
        let list: Option<Vec<Value>> = serde_json::from_slice(&o.stdout).ok();
        let ep = k.json(&["endpoints", "-n", "default", "kubernetes"]);
        let ready = ep["subsets"][0]["addresses"].as_array().map(Vec::len);
        let down = CPS.iter().filter(|i| !running(m, **i, "kube-apiserver")).count();
        let mut s = seen.lock().unwrap();
        s.samples += 1;
        s.max_cps_down = s.max_cps_down.max(down);
        match (list, ready) {
            (Some(list), Some(ready)) => {
                let busy = list
                    .iter()
                    .filter(|e| e["status"] == "draining" || e["status"] == "rebooting")
                    .map(|e| e["node"].as_str().unwrap().to_string())
                    .collect();
                let t = t0.elapsed().as_secs_f64();
                s.in_progress.push((t, busy));
                let mut now: Vec<(String, String)> = list
                    .iter()
                    .map(|e| (e["node"].as_str().unwrap().into(), e["status"].as_str().unwrap().into()))
                    .collect();
                for (_, node, _) in &s.timeline {
                    if !now.iter().any(|(n, _)| n == node) {
                        now.push((node.clone(), "done".into()));
                    }
                }
                for (node, status) in now {
                    let last = s.timeline.iter().rev().find(|(_, n, _)| *n == node);
                    if last.is_none_or(|(_, _, st)| *st != status) {
                        s.timeline.push((t, node, status));
                    }
                }
                s.min_ready_apiservers = Some(s.min_ready_apiservers.map_or(ready, |m| m.min(ready)));
            }
            _ => s.failed_reads += 1,
        }
        drop(s);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Sets the flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn the_reboot_and_repair_queues_on_real_kubernetes() {
    let t_all = Instant::now();
    let c = bring_up(5, CPS.len(), |m, dir| {
        let (reboot, check) = scripts(m, dir);
        let extra = format!(
            "reboot:\n  reboot_command: [\"{reboot}\"]\n  boot_check_command: [\"{check}\"]\n  \
             command_timeout_seconds: 120\n  eviction_timeout_seconds: 180\n  evict_retries: 1\n  \
             max_concurrent_reboots: 2\n  \
             evict_interval: 1\n  protected_namespaces:\n    matchLabels: {{e2e.cke.io/protected: \"true\"}}\n{}",
            repair_section(&dir.join("bin"))
        );
        repair_scripts(&dir.join("bin"), &dir.join("marks"));
        declaration(m, &CPS, &WORKERS, &extra)
    });
    let (m, k, log) = (&c.m, &c.kubectl, c.log.as_path());
    println!("FIGURE cluster set -> all 5 Nodes Ready: {:?}", c.bootstrap);
    let ip = |i: usize| m.node(i);
    let cps: Vec<String> = CPS.iter().map(|i| ip(*i)).collect();

    // A Deployment whose pods prefer node4.
    k.ok(&["apply", "-f", "-"], Some(&deployment("default", "web", 2, &ip(4))));
    let on4 = wait("web pods Running on node4", Duration::from_secs(180), log, || {
        let p = pods(k, "default", "app=web");
        let running = p.iter().filter(|p| p.2 == "Running").count() == 2;
        let on4: Vec<String> = p.iter().filter(|p| p.1 == ip(4)).map(|p| p.0.clone()).collect();
        (running && !on4.is_empty()).then_some(on4)
    });

    // 1. Disabled, nothing moves.
    ok(m, &["rq", "disable"], None);
    add(m, &[4, 5, 3]);
    std::thread::sleep(Duration::from_secs(10));
    assert!(statuses(m).iter().all(|(_, s)| s == "queued"), "{:?}", statuses(m));
    assert!(released(k, &ip(4)), "a disabled queue drains nothing");

    // Enabled: node4 and node5, then node3, watched.
    let t_reboots = Instant::now();
    let stop = AtomicBool::new(false);
    let seen = Mutex::new(Seen::default());
    let mut web_moved = None;
    std::thread::scope(|s| {
        s.spawn(|| watch(m, k, &stop, &seen));
        // The watcher stops however this ends (a failed wait panics).
        let _stop = StopOnDrop(&stop);
        ok(m, &["rq", "enable"], None);
        wait("node4's reboot done", Duration::from_secs(300), log, || {
            (!statuses(m).iter().any(|(n, _)| *n == ip(4))).then_some(())
        });
        // Its web pods were evicted and run elsewhere.
        web_moved = Some(wait(
            "web pods Running away from node4",
            Duration::from_secs(120),
            log,
            || {
                let p = pods(k, "default", "app=web");
                let ok = p.len() == 2
                    && p.iter()
                        .all(|p| p.2 == "Running" && p.1 != ip(4) && !on4.contains(&p.0));
                ok.then_some(p)
            },
        ));
        wait("the queue empty", Duration::from_secs(900), log, || {
            entries(m).is_empty().then_some(())
        });
        for i in [4, 5, 3] {
            wait(
                "the rebooted Nodes schedulable and unannotated",
                Duration::from_secs(120),
                log,
                || released(k, &ip(i)).then_some(()),
            );
        }
    });
    let took = t_reboots.elapsed();
    let seen = seen.into_inner().unwrap();
    let reboots = std::fs::read_to_string(c.dir.path().join("reboots.log")).unwrap_or_default();
    let order: Vec<&str> = reboots.lines().filter_map(|l| l.split_whitespace().nth(2)).collect();
    println!(
        "FIGURE rebooted node4 and node5, then node3: {took:?}; {} samples, fewest ready apiservers {:?}, most down {}",
        seen.samples, seen.min_ready_apiservers, seen.max_cps_down
    );
    eprintln!("web pods after node4's reboot: {web_moved:?}");
    let timeline: Vec<String> = seen
        .timeline
        .iter()
        .map(|(t, n, st)| format!("{t:.0}s {n} {st}"))
        .collect();
    println!("FIGURE reboot timeline: {}", timeline.join(", "));
    // What cke did meanwhile, for the timings.
    let history = String::from_utf8_lossy(&ckecli(m, &["history", "-n", "80"], None).stdout).into_owned();
    let ops: Vec<String> = serde_json::Deserializer::from_str(&history)
        .into_iter::<cke::model::Record>()
        .filter_map(Result::ok)
        .map(|r| {
            let took = r.end_at.map(|e| (e - r.start_at).num_milliseconds() as f64 / 1000.0);
            format!("{} {} {:?}", r.start_at.format("%H:%M:%S"), r.operation, took)
        })
        .collect();
    eprintln!("cke's operations, newest first: {}", ops.join(", "));
    assert_eq!(order.len(), 3, "one reboot_command each: {order:?}");
    let mut workers_first = order[..2].to_vec();
    workers_first.sort();
    assert_eq!(
        (workers_first, order[2]),
        (vec![ip(4).as_str(), ip(5).as_str()], ip(3).as_str())
    );
    assert!(seen.samples >= 30, "the watcher ran: {} samples", seen.samples);
    assert!(
        seen.failed_reads * 10 <= seen.samples,
        "the API through node1 kept answering: {} of {} reads failed",
        seen.failed_reads,
        seen.samples
    );
    assert!(
        seen.max_cps_down <= 1,
        "{} control planes were out at once",
        seen.max_cps_down
    );
    assert!(
        seen.min_ready_apiservers.is_some_and(|n| n >= 2),
        "the kubernetes endpoints listed {:?} ready apiservers at some point",
        seen.min_ready_apiservers
    );
    let mut last_worker = 0.0;
    let mut first_cp = f64::MAX;
    for (t, busy) in &seen.in_progress {
        let cp_busy = busy.iter().filter(|n| cps.contains(n)).count();
        let worker_busy = busy.len() - cp_busy;
        assert!(cp_busy <= 1, "control planes in progress at once: {busy:?}");
        assert!(
            cp_busy == 0 || worker_busy == 0,
            "a control plane with workers: {busy:?}"
        );
        if worker_busy > 0 {
            last_worker = f64::max(last_worker, *t);
        }
        if cp_busy > 0 {
            first_cp = first_cp.min(*t);
        }
    }
    assert!(first_cp < f64::MAX, "the watcher saw the control plane's reboot");
    assert!(last_worker < first_cp, "workers finish before the control plane starts");

    // 2. node4: a PodDisruptionBudget in a protected namespace; node5: a boot check never true.
    k.ok(&["create", "namespace", "prot"], None);
    k.ok(&["label", "namespace", "prot", "e2e.cke.io/protected=true"], None);
    k.ok(&["apply", "-f", "-"], Some(&deployment("prot", "guarded", 1, &ip(4))));
    k.ok(
        &["apply", "-f", "-"],
        Some(
            "apiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata: {name: guarded, namespace: prot}\n\
             spec: {minAvailable: 1, selector: {matchLabels: {app: guarded}}}\n",
        ),
    );
    let guarded = wait(
        "the guarded pod Running on node4",
        Duration::from_secs(120),
        log,
        || {
            pods(k, "prot", "app=guarded")
                .into_iter()
                .find(|p| p.2 == "Running" && p.1 == ip(4))
        },
    );
    let t_second = Instant::now();
    let never = c.dir.path().join(format!("never-boots-{}", ip(5)));
    std::fs::write(&never, "").unwrap();
    add(m, &[4, 5]);
    let entry = |i: usize| entries(m).into_iter().find(|e| e["node"] == ip(i).as_str());
    let since = wait(
        "node4 backed off and node5 rebooting",
        Duration::from_secs(300),
        log,
        || {
            let backed = entry(4)
                .is_some_and(|e| e["status"] == "queued" && e["drain_backoff_count"].as_u64().unwrap_or(0) >= 1);
            let rebooting = entry(5).filter(|e| e["status"] == "rebooting");
            rebooting.filter(|_| backed).map(|e| e["last_transition_time"].clone())
        },
    );
    assert_ne!(entry(4).unwrap()["drain_backoff_expire"], "0001-01-01T00:00:00Z");
    // A node in progress is cordoned and annotated.
    let n5 = k.json(&["node", &ip(5)]);
    assert_eq!(
        (
            &n5["spec"]["unschedulable"],
            &n5["metadata"]["annotations"]["cke.cybozu.com/reboot"]
        ),
        (&Value::from(true), &Value::from("true")),
        "node5 while rebooting"
    );
    assert_eq!(
        pods(k, "prot", "app=guarded")[0].3,
        guarded.3,
        "the protected pod was not deleted"
    );
    ok(m, &["rq", "disable"], None);
    ok(m, &["rq", "reset-backoff"], None);
    let e4 = entry(4).unwrap();
    assert!(e4.get("drain_backoff_count").is_none(), "{e4}");
    assert_eq!(e4["drain_backoff_expire"], "0001-01-01T00:00:00Z");
    // Not protected any more: the pod the budget keeps is deleted and node4's reboot goes on.
    k.ok(&["label", "namespace", "prot", "e2e.cke.io/protected-"], None);
    ok(m, &["rq", "enable"], None);
    wait("node4 rebooted past the budget", Duration::from_secs(300), log, || {
        entry(4).is_none().then_some(())
    });
    let after = pods(k, "prot", "app=guarded");
    assert!(
        after.iter().all(|p| p.3 != guarded.3),
        "the guarded pod was deleted: {after:?}"
    );
    // node5 stayed rebooting all along (its boot checks kept saying false).
    let e5 = entry(5).expect("node5's entry");
    assert_eq!(
        (&e5["status"], &e5["last_transition_time"]),
        (&Value::from("rebooting"), &since)
    );
    let checks = std::fs::read_to_string(c.dir.path().join("boot-checks.log")).unwrap_or_default();
    let node5_checks = checks
        .lines()
        .filter(|l| l.contains(&format!("check {} ", ip(5))))
        .count();
    assert!(node5_checks >= 3, "{checks}");
    ok(m, &["rq", "cancel", e5["index"].as_str().unwrap()], None);
    wait("the cancelled entry removed", Duration::from_secs(60), log, || {
        entries(m).is_empty().then_some(())
    });
    for i in [4, 5] {
        wait("node4 and node5 uncordoned", Duration::from_secs(60), log, || {
            released(k, &ip(i)).then_some(())
        });
    }
    std::fs::remove_file(&never).unwrap();
    println!(
        "FIGURE PDB in a protected namespace (backed off, rebooted once unprotected) and a boot check never true \
         ({node5_checks} checks, then cancelled): {:?}",
        t_second.elapsed()
    );
    // The reboot checks' workloads go before the repair checks drain nodes.
    k.ok(&["delete", "namespace", "prot"], None);
    k.ok(&["delete", "deployment", "web"], None);

    let t_repair = Instant::now();
    repair_queue_checks(&c);
    println!("FIGURE repair queue checks: {:?}", t_repair.elapsed());
    println!("FIGURE whole test (bring-up included): {:?}", t_all.elapsed());
    drop(c);
}

// ---------------------------------------------------------------------------------------------
// 3. The repair queue, on the same cluster.

/// A machine that is no node of the cluster (the repair queue handles those too).
const OUTSIDER: &str = "10.254.254.254";
/// Others: for the command past its timeout, the failing success command, the health check never
/// true, the long watch.
const OUTSIDER_HANG: &str = "10.254.254.253";
const OUTSIDER_BAD_SUCCESS: &str = "10.254.254.252";
const OUTSIDER_UNHEALED: &str = "10.254.254.251";
const OUTSIDER_SLOW: &str = "10.254.254.250";

/// The repair section: one procedure for machine type `e2e`, its command scripts in `bin`.
fn repair_section(bin: &Path) -> String {
    let b = |name: &str| bin.join(name).display().to_string();
    format!(
        r#"repair:
  max_concurrent_repairs: 5
  evict_interval: 1
  eviction_timeout_seconds: 30
  repair_procedures:
    - machine_types: [e2e]
      repair_operations:
        - operation: heal
          repair_steps:
            - {{repair_command: ["{heal}"], watch_seconds: 60}}
          health_check_command: ["{check}"]
          command_timeout_seconds: 5
          success_command: ["{success}"]
        - operation: fail
          repair_steps:
            - {{repair_command: ["false"], command_retries: 1}}
          health_check_command: ["{check}"]
        - operation: hang
          repair_steps:
            - {{repair_command: ["{hang}"], command_timeout_seconds: 2}}
          health_check_command: ["{check}"]
        - operation: drain
          repair_steps:
            - {{repair_command: ["{heal}"], need_drain: true, watch_seconds: 60}}
          health_check_command: ["{check}"]
          success_command: ["{success}"]
        - operation: badsuccess
          repair_steps:
            - {{repair_command: ["{heal}"], watch_seconds: 60}}
          health_check_command: ["{check}"]
          success_command: ["false"]
        - operation: unhealed
          repair_steps:
            - {{repair_command: ["true"], watch_seconds: 1}}
            - {{repair_command: ["true"]}}
          health_check_command: ["{check}"]
        - operation: slow
          repair_steps:
            - {{repair_command: ["true"], watch_seconds: 600}}
          health_check_command: ["{check}"]
"#,
        heal = b("heal"),
        check = b("check"),
        success = b("success"),
        hang = b("hang"),
    )
}

/// The repair scripts in `bin`: `check ADDR` prints `true` once `heal ADDR` ran; `success ADDR`
/// leaves a mark; `hang ADDR` records its pid and its child's, then waits for ever. Marks in `marks`.
fn repair_scripts(bin: &Path, marks: &Path) {
    std::fs::create_dir_all(bin).unwrap();
    std::fs::create_dir_all(marks).unwrap();
    let m = marks.display();
    for (name, body) in [
        ("heal", format!("touch {m}/healthy-$1")),
        (
            "check",
            format!("if [ -e {m}/healthy-$1 ]; then echo true; else echo false; fi"),
        ),
        ("success", format!("touch {m}/success-$1")),
        (
            "hang",
            format!("echo $$ > {m}/hang-$1.pid\nsleep 1000 &\necho $! > {m}/hang-child-$1.pid\nwait"),
        ),
    ] {
        write_script(&bin.join(name), &format!("#!/bin/sh\n{body}\n"));
    }
}

/// The repair entries as `ckecli repair-queue list` prints them.
fn repairs(m: &Mtest) -> Vec<Value> {
    serde_json::from_str(&ok(m, &["repair-queue", "list"], None)).expect("repair-queue list prints JSON")
}

/// The repair entry for `address` (the last one queued for it).
fn repair(m: &Mtest, address: &str) -> Option<Value> {
    repairs(m).into_iter().rev().find(|e| e["address"] == address)
}

fn repair_status(m: &Mtest, address: &str) -> String {
    repair(m, address)
        .map(|e| e["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn pid_alive(path: &Path) -> Option<bool> {
    let pid: i32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Some(Path::new(&format!("/proc/{pid}")).exists())
}

/// CKE's mtest repair checks on the cluster `c` (its declaration carries [`repair_section`]).
fn repair_queue_checks(c: &K8sCluster) {
    let (m, k, log) = (&c.m, &c.kubectl, c.log.as_path());
    let marks = c.dir.path().join("marks");
    let node = |i: usize| m.node(i);

    // Bad input names the argument and stores nothing.
    for (args, words) in [
        (["nope", "e2e", OUTSIDER], "OPERATION"),
        (["heal", "other", OUTSIDER], "MACHINE_TYPE"),
        (["heal", "e2e", "not-an-ip"], "ADDRESS"),
    ] {
        let mut a = vec!["repair-queue", "add"];
        a.extend(args);
        let o = ckecli(m, &a, None);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(o.status.code(), Some(2), "{a:?}: {err}");
        assert!(err.contains(words), "{a:?}: {err}");
    }
    assert!(repairs(m).is_empty(), "bad requests stored nothing");

    // Disabled, nothing moves.
    ok(m, &["repair-queue", "disable"], None);
    assert_eq!(ok(m, &["repair-queue", "is-enabled"], None).trim(), "false");
    // At once (five slots): a health check that becomes true: the worker heals (succeeded, its
    // success command ran); a failing command fails; a hanging one is killed at its 2 s timeout,
    // with its child, and fails; a failing success command fails; a health check never true fails
    // past the last of two steps.
    let cases = [
        ("heal", node(4)),
        ("fail", OUTSIDER.to_string()),
        ("hang", OUTSIDER_HANG.to_string()),
        ("badsuccess", OUTSIDER_BAD_SUCCESS.to_string()),
        ("unhealed", OUTSIDER_UNHEALED.to_string()),
    ];
    for (op, address) in &cases {
        let mut a = vec!["repair-queue", "add", op, "e2e", address];
        if *op == "heal" {
            a.push("SN-4");
        }
        ok(m, &a, None);
    }
    std::thread::sleep(Duration::from_secs(10));
    let st: Vec<String> = repairs(m).iter().map(|e| e["status"].to_string()).collect();
    assert_eq!(st, ["\"queued\""; 5], "a disabled queue starts nothing");
    assert!(!marks.join(format!("healthy-{}", node(4))).exists());

    let t_cases = Instant::now();
    ok(m, &["repair-queue", "enable"], None);
    assert_eq!(ok(m, &["repair-queue", "is-enabled"], None).trim(), "true");
    let done = wait("the five entries finished", Duration::from_secs(120), log, || {
        let st: Vec<String> = cases.iter().map(|(_, a)| repair_status(m, a)).collect();
        (st.iter().all(|s| s == "succeeded" || s == "failed")).then_some(st)
    });
    println!(
        "FIGURE repair: five entries at once, one succeeded, four failed: {:?}",
        t_cases.elapsed()
    );
    assert_eq!(done, ["succeeded", "failed", "failed", "failed", "failed"]);
    let unhealed = repair(m, OUTSIDER_UNHEALED).unwrap();
    assert!(unhealed["step"].as_u64() >= Some(1), "past the first step: {unhealed}");
    assert!(
        marks.join(format!("healthy-{OUTSIDER_BAD_SUCCESS}")).exists(),
        "healed, then its success command failed"
    );
    let healed = repair(m, &node(4)).unwrap();
    assert_eq!(
        (&healed["serial"], &healed["nodename"]),
        (&Value::from("SN-4"), &Value::from(node(4)))
    );
    assert!(
        marks.join(format!("success-{}", node(4))).exists(),
        "the success command ran"
    );
    assert!(!marks.join(format!("success-{OUTSIDER}")).exists());
    assert_eq!(repair(m, OUTSIDER).unwrap()["nodename"], "");
    for f in [
        format!("hang-{OUTSIDER_HANG}.pid"),
        format!("hang-child-{OUTSIDER_HANG}.pid"),
    ] {
        assert_eq!(
            pid_alive(&marks.join(&f)),
            Some(false),
            "{f}: the process group was killed"
        );
    }
    assert!(released(k, &node(4)), "node4 schedulable after its repair");
    // Finished entries stay until deleted.
    let finished = ok(m, &["repair-queue", "delete-finished"], None);
    assert_eq!(finished.lines().count(), 5, "{finished}");
    wait("the repair queue empty", Duration::from_secs(60), log, || {
        repairs(m).is_empty().then_some(())
    });
    ok(m, &["repair-queue", "wait", "--timeout-seconds", "5"], None);
    // A long watch: pending until deleted.
    ok(m, &["repair-queue", "add", "slow", "e2e", OUTSIDER_SLOW], None);
    let slow = wait("the slow entry watching", Duration::from_secs(60), log, || {
        repair(m, OUTSIDER_SLOW).filter(|e| e["status"] == "processing" && e["step_status"] == "watching")
    });
    ok(m, &["repair-queue", "delete", slow["index"].as_str().unwrap()], None);
    wait("the deleted entry removed", Duration::from_secs(60), log, || {
        repairs(m).is_empty().then_some(())
    });

    // need_drain on node5, whose only pod a PodDisruptionBudget protects (every namespace is
    // protected: the repair section has no protected_namespaces): the eviction is refused, the
    // entry backs off and node5 is uncordoned again.
    k.ok(
        &["apply", "-f", "-"],
        Some(&format!(
            r#"apiVersion: v1
kind: Namespace
metadata: {{name: e2e-repair}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: pinned, namespace: e2e-repair}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: pinned}}}}
  template:
    metadata: {{labels: {{app: pinned}}}}
    spec:
      nodeSelector: {{kubernetes.io/hostname: "{node5}"}}
      terminationGracePeriodSeconds: 1
      containers:
      - name: sleep
        image: localhost/busybox:latest
        imagePullPolicy: Never
        command: ["sleep", "100000"]
---
apiVersion: policy/v1beta1
kind: PodDisruptionBudget
metadata: {{name: pinned, namespace: e2e-repair}}
spec:
  minAvailable: 1
  selector: {{matchLabels: {{app: pinned}}}}
"#,
            node5 = node(5)
        )),
    );
    let pinned = wait("the pinned pod Running on node5", Duration::from_secs(120), log, || {
        pods(k, "e2e-repair", "app=pinned")
            .into_iter()
            .find(|p| p.2 == "Running" && p.1 == node(5))
    });
    let t_drain = Instant::now();
    ok(m, &["repair-queue", "add", "drain", "e2e", &node(5)], None);
    let backed_off = wait("the repair drain backed off", Duration::from_secs(120), log, || {
        repair(m, &node(5)).filter(|e| e["drain_backoff_count"].as_i64().unwrap_or(0) >= 1)
    });
    println!("FIGURE repair: drain refused and backed off: {:?}", t_drain.elapsed());
    assert_eq!(
        (&backed_off["status"], &backed_off["step_status"]),
        (&Value::from("processing"), &Value::from("waiting"))
    );
    assert_ne!(backed_off["drain_backoff_expire"], "0001-01-01T00:00:00Z");
    assert!(!marks.join(format!("healthy-{}", node(5))).exists(), "no repair ran");
    assert_eq!(
        pods(k, "e2e-repair", "app=pinned")[0].3,
        pinned.3,
        "the protected pod stayed"
    );
    wait(
        "node5 uncordoned during the back-off",
        Duration::from_secs(60),
        log,
        || released(k, &node(5)).then_some(()),
    );
    // reset-backoff clears it (the queue disabled meanwhile, so that no drain starts again).
    ok(m, &["repair-queue", "disable"], None);
    ok(m, &["repair-queue", "reset-backoff"], None);
    let reset = repair(m, &node(5)).unwrap();
    assert_eq!(reset.get("drain_backoff_count"), None, "{reset}");
    assert_eq!(reset["drain_backoff_expire"], "0001-01-01T00:00:00Z");
    // The budget lifted and the queue enabled: drained, repaired, succeeded, uncordoned.
    k.ok(&["delete", "pdb", "-n", "e2e-repair", "pinned"], None);
    ok(m, &["repair-queue", "enable"], None);
    let mut polls = 0;
    wait("node5 repaired", Duration::from_secs(180), log, || {
        let entry = repair(m, &node(5));
        polls += 1;
        if polls % 30 == 0 {
            println!("node5's repair entry after {polls} s: {entry:?}");
            // What the drain waits for: the pods there, terminating or not, and the Node's cordon.
            println!("{}", k.pods_summary("e2e-repair", "app=pinned"));
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let drains: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("evict") || l.contains("repair-drain") || l.contains("back"))
                .collect();
            println!(
                "  cke's drain lines (last 12):\n{}",
                drains[drains.len().saturating_sub(12)..].join("\n")
            );
            // The kubelet's word on the pinned pods (a pod it cannot kill stays Terminating).
            let kubelet = m.run(&[
                "exec",
                "5",
                "sh",
                "-c",
                "podman logs --tail 400 kubelet 2>&1 | grep pinned | tail -8",
            ]);
            println!(
                "  node5's kubelet on the pinned pods:\n{}",
                String::from_utf8_lossy(&kubelet.stdout)
            );
            let n = k.json(&["node", &node(5)]);
            println!(
                "  node5 unschedulable {} annotations {} conditions {}",
                n["spec"]["unschedulable"], n["metadata"]["annotations"], n["status"]["conditions"]
            );
        }
        entry.filter(|e| e["status"] == "succeeded").map(|_| ())
    });
    println!(
        "FIGURE repair: node5 drained and repaired after the budget was lifted: {:?}",
        t_drain.elapsed()
    );
    assert!(marks.join(format!("success-{}", node(5))).exists());
    assert!(
        pods(k, "e2e-repair", "app=pinned").iter().all(|p| p.3 != pinned.3),
        "the pinned pod was evicted"
    );
    wait(
        "node5 schedulable and unannotated",
        Duration::from_secs(60),
        log,
        || released(k, &node(5)).then_some(()),
    );
    ok(m, &["repair-queue", "delete-finished"], None);

    // A control plane down: node3 partitioned, its etcd member out of sync. The etcd gate for
    // repair tolerates it: node3 is repaired.
    m.run(&["partition", "3"]);
    let t_cp = Instant::now();
    ok(m, &["repair-queue", "add", "heal", "e2e", &node(3)], None);
    wait("node3 repaired while down", Duration::from_secs(120), log, || {
        (repair_status(m, &node(3)) == "succeeded").then_some(())
    });
    println!(
        "FIGURE repair: control plane node3 repaired while partitioned: {:?}",
        t_cp.elapsed()
    );
    ok(m, &["repair-queue", "delete-finished"], None);

    // Two control planes down: no repair proceeds.
    m.run(&["partition", "2"]);
    ok(m, &["repair-queue", "add", "heal", "e2e", &node(2)], None);
    let t_two = Instant::now();
    while t_two.elapsed() < Duration::from_secs(30) {
        let st = repair_status(m, &node(2));
        assert_eq!(st, "queued", "node2's repair proceeded with two control planes down");
        assert!(!marks.join(format!("healthy-{}", node(2))).exists());
        std::thread::sleep(Duration::from_secs(2));
    }
    let unfinished = ok(m, &["repair-queue", "delete-unfinished"], None);
    assert_eq!(unfinished.lines().count(), 1, "{unfinished}");
    m.run(&["heal", "2"]);
    m.run(&["heal", "3"]);
}
