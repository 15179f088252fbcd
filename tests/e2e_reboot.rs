//! End to end: the reboot queue on real Kubernetes 1.20.2 (scripts/build-k8s.sh) on mtest node hosts
//! with containerd, 3 control planes and 2 workers brought up once, `max_concurrent_reboots: 2`.
//! `reboot_command` power-cycles a node host (mtest `node-stop`, `node-start`: every process and
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
         {mtest} node-stop \"$i\" >>{d}/mtest.log 2>&1\nsleep 2\n{mtest} node-start \"$i\" >>{d}/mtest.log 2>&1\n"
    );
    let check = format!(
        "#!/bin/bash\n# boot_check_command ADDRESS SINCE: true once the node host answers.\n\
         i=$(( ${{1##*.}} - 10 ))\necho \"$(date +%s) check $1 $2\" >> {d}/boot-checks.log\n\
         if [ -e {d}/never-boots-$1 ]; then echo false; exit 0; fi\n\
         if {mtest} exec \"$i\" true >/dev/null 2>&1; then echo true; else echo false; fi\n"
    );
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::process::Command::new("chmod").arg("+x").arg(&p).status().unwrap();
        p.display().to_string()
    };
    (write("reboot.sh", &reboot), write("boot-check.sh", &check))
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
fn the_reboot_queue_on_real_kubernetes() {
    let t_all = Instant::now();
    let c = bring_up(5, CPS.len(), |m, dir| {
        let (reboot, check) = scripts(m, dir);
        let extra = format!(
            "reboot:\n  reboot_command: [\"{reboot}\"]\n  boot_check_command: [\"{check}\"]\n  \
             command_timeout_seconds: 120\n  eviction_timeout_seconds: 180\n  evict_retries: 1\n  \
             max_concurrent_reboots: 2\n  \
             evict_interval: 1\n  protected_namespaces:\n    matchLabels: {{e2e.cke.io/protected: \"true\"}}\n"
        );
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
    println!("FIGURE whole test (bring-up included): {:?}", t_all.elapsed());
    drop(c);
}
