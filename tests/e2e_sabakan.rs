//! The sabakan integration end to end, on real Kubernetes 1.20.2 on six mtest node hosts (`--k8s`)
//! and a sabakan-compat server holding them as machines: cke generates the declaration from the
//! inventory and a template (3 control planes spread over 3 racks) and the cluster comes up; a
//! control plane retiring is replaced by a promoted worker of its rack while a writer checks that the
//! managed etcd keeps quorum, and the retired machine leaves; a worker turning unreachable is tainted
//! as CKE taints it, and sabakan-triggered repair queues it (and the next broken machine once the
//! queue's limit lets it) and cke repairs it with the template's procedure. Needs root; serialize with other real-Kubernetes suites
//! (`flock /tmp/cke-k8s-e2e.lock`).

mod e2e_common;

use std::path::Path;
use std::time::{Duration, Instant};

use cke_testkit::{free_port, Mtest};
use e2e_common::k8s::{issue_kubeconfig, wait, Kubectl, TESTBED_OPTIONS};
use e2e_common::*;

/// Machines 1..6 on the node hosts: two per rack, the same lifetime, so the control planes are the
/// first of each rack (1, 3, 5).
fn inventory(m: &Mtest) -> String {
    (1..=6)
        .map(|i| {
            format!(
                "- {{serial: m{i}, rack: {}, index-in-rack: {}, role: cs, ipv4: [{}], register-date: 2024-01-01T00:00:00Z, retire-date: 2031-01-01T00:00:00Z, bmc: {{type: IPMI-2.0}}}}\n",
                (i - 1) / 2,
                (i - 1) % 2 + 1,
                m.node(i)
            )
        })
        .collect()
}

/// Where the writer writes in the managed etcd.
const WRITER_PREFIX: &str = "/registry/e2e-sabakan/";

/// The template: one control-plane and one worker template, and a repair procedure for the
/// machines' type whose step "repairs" a machine by creating `repaired-<address>` in `dir` (on cke's
/// host, where repair commands run), which its health check then finds.
fn template(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"name: e2e-sabakan
service_subnet: 10.201.0.0/24
nodes:
  - {{user: root, control_plane: true}}
  - {{user: root}}
repair:
  repair_procedures:
    - machine_types: [IPMI-2.0]
      repair_operations:
        - operation: unreachable
          repair_steps: &steps
            - {{repair_command: [sh, -c, 'touch {dir}/repaired-$0'], watch_seconds: 600}}
          health_check_command: &check [sh, -c, 'test -e {dir}/repaired-$0 && echo true || echo false']
        - operation: unhealthy
          repair_steps: *steps
          health_check_command: *check
{TESTBED_OPTIONS}"#
    )
}

/// The repair queue as `ckecli repair-queue list` shows it.
fn repair_queue(m: &Mtest) -> Vec<cke::model::RepairEntry> {
    serde_json::from_str(&ok(m, &["repair-queue", "list"], None)).expect("a JSON array")
}

/// The body of cke's `path` (`/status`, `/metrics`).
async fn cke_get(http: &reqwest::Client, port: u16, path: &str) -> String {
    let resp = http.get(format!("http://127.0.0.1:{port}{path}")).send().await.unwrap();
    resp.text().await.unwrap()
}

/// What `/status` says the sabakan integration did last.
async fn sabakan_note(http: &reqwest::Client, port: u16) -> String {
    let st: serde_json::Value = serde_json::from_str(&cke_get(http, port, "/status").await).unwrap();
    st["sabakan"].as_str().unwrap_or_default().to_string()
}

/// The declaration's control planes and workers, sorted.
fn declared(m: &Mtest) -> (Vec<String>, Vec<String>) {
    let text = ok(m, &["cluster", "get", "--output", "json"], None);
    let c: cke::model::Cluster = serde_json::from_str(&text).unwrap();
    let mut cps: Vec<String> = c.control_planes().map(|n| n.address.clone()).collect();
    let mut workers: Vec<String> = c.workers().map(|n| n.address.clone()).collect();
    cps.sort();
    workers.sort();
    (cps, workers)
}

fn nodes(m: &Mtest, is: &[usize]) -> Vec<String> {
    let mut v: Vec<String> = is.iter().map(|i| m.node(*i)).collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cke_follows_the_machine_inventory() {
    let t_all = Instant::now();
    let mut ph = Phases::new("e2e_sabakan");
    let (m, dir) = mtest_up_with(6, &["--k8s"]);
    ph.lap("mtest up");
    let log = dir.path().join("cke.log");
    prepare(&m, 3);

    // sabakan-compat, in this process, on the host (where cke runs).
    let machines = sabakan_compat::parse_inventory(&inventory(&m), chrono::Utc::now()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sabakan = format!("http://{}", listener.local_addr().unwrap());
    let (stop_sabakan, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sabakan_compat::serve(
        listener,
        sabakan_compat::Store::new(machines),
        async {
            let _ = stopped.await;
        },
    ));
    let http = cke::infra::http_client_builder().build().unwrap();
    let set_state = |serial: &'static str, state: &'static str| {
        let (http, url) = (http.clone(), format!("{sabakan}/api/v1/state/{serial}"));
        async move {
            let resp = http.put(url).body(state).send().await.unwrap();
            assert_eq!(
                resp.status(),
                200,
                "{serial} -> {state}: {}",
                resp.text().await.unwrap()
            );
        }
    };

    ok(&m, &["sabakan", "set-url", &sabakan], None);
    ok(&m, &["sabakan", "set-template", "-"], Some(&template(dir.path())));
    let image = m
        .env
        .get("K8S_IMAGE")
        .cloned()
        .unwrap_or("localhost/cke-kubernetes:1.20.2".into());
    let t0 = Instant::now();
    let port = free_port();
    let _cke = start_cke_at(
        &m,
        "e2e-sabakan",
        &log,
        &[],
        &["--node-profile", "testbed", "--kubernetes-image", &image],
        port,
    );

    // Generated: the first machine of each rack is a control plane, the others workers.
    let (cps, workers) = wait("a generated declaration", Duration::from_secs(60), &log, || {
        let o = ckecli(&m, &["cluster", "get"], None);
        o.status.success().then(|| declared(&m))
    });
    assert_eq!(cps, nodes(&m, &[1, 3, 5]));
    assert_eq!(workers, nodes(&m, &[2, 4, 6]));
    let generated = t0.elapsed();

    let kubeconfig = dir.path().join("kubeconfig");
    let k = Kubectl::new(&m, kubeconfig.clone());
    let all = nodes(&m, &[1, 2, 3, 4, 5, 6]);
    let mut issued = false;
    wait("every Node Ready", Duration::from_secs(480), &log, || {
        issued = issued || issue_kubeconfig(&m, &kubeconfig);
        (issued && k.ready_nodes() == all).then_some(())
    });
    let up = t0.elapsed();
    eprintln!("FIGURE declaration generated after {generated:?}; all 6 Nodes Ready after {up:?}");
    ph.lap("generated declaration to every Node Ready");
    // The machines' attributes on the Nodes (CKE's labels), the control planes as such.
    wait(
        "the Nodes labelled from sabakan",
        Duration::from_secs(120),
        &log,
        || {
            (k.nodes_with("cke.cybozu.com/master=true") == cps
                && k.nodes_with("topology.kubernetes.io/zone=rack1") == nodes(&m, &[3, 4])
                && k.nodes_with("node-role.kubernetes.io/cs=true") == all
                && k.nodes_with("cke.cybozu.com/role=cs,cke.cybozu.com/retire-year=2031") == all)
                .then_some(())
        },
    );
    let node3 = k.json(&["node", &m.node(3)]);
    assert_eq!(node3["metadata"]["annotations"]["cke.cybozu.com/serial"], "m3");
    assert_eq!(
        node3["metadata"]["labels"]["node-role.kubernetes.io/control-plane"],
        "true"
    );
    ph.lap("labels from sabakan");

    // A control plane retires: tainted NoExecute while retiring; once retired it leaves sabakan's
    // search, and the worker of its rack is promoted. A writer checks the managed etcd all along.
    let writer = Writer::start(root_etcd(&m, &[1, 3, 5]).await, WRITER_PREFIX);
    let t_retire = Instant::now();
    set_state("m3", "retiring").await;
    wait("node3 tainted retiring", Duration::from_secs(120), &log, || {
        k.taints(&m.node(3))
            .contains(&"cke.cybozu.com/state=retiring:NoExecute".to_string())
            .then_some(())
    });
    set_state("m3", "retired").await;
    wait(
        "node4 promoted in node3's place",
        Duration::from_secs(120),
        &log,
        || (declared(&m) == (nodes(&m, &[1, 4, 5]), nodes(&m, &[2, 6]))).then_some(()),
    );
    let promoted = t_retire.elapsed();
    let joined = wait_members(&m, &[1, 4, 5], Duration::from_secs(420), &log).await;
    eprintln!(
        "FIGURE retire -> worker promoted in the declaration {promoted:?}; managed etcd members 1,4,5 after {:?}",
        t_retire.elapsed()
    );
    let _ = joined;
    // The retired machine is powered off: its Node goes.
    m.run(&["node-stop", "3"]);
    wait(
        "node3's Node deleted, node4 a control plane",
        Duration::from_secs(300),
        &log,
        || {
            (k.nodes_with("cke.cybozu.com/master=true") == nodes(&m, &[1, 4, 5])
                && !k.run(&["get", "node", &m.node(3)], None).status.success())
            .then_some(())
        },
    );
    let acked = writer.stop().await;
    acked.assert_none_lost(&m, &[1, 4, 5], WRITER_PREFIX).await;
    let longest = acked.longest();
    eprintln!(
        "FIGURE during the replacement: {} writes acknowledged, longest write outage {longest:?}; total {:?}",
        acked.writes.len(),
        t_retire.elapsed()
    );
    assert!(acked.writes.len() > 100, "the writer wrote: {}", acked.writes.len());
    // Quorum kept: at most a leader election's pause (a loaded 2-core machine: generous).
    assert!(
        longest < Duration::from_secs(15),
        "the managed etcd refused writes for {longest:?}"
    );
    ph.lap("control plane retired and replaced");

    // A worker turns unreachable: tainted NoSchedule, and it stays in the cluster. Auto-repair (on
    // by default) queues it once the constraint lets it, and cke repairs it.
    assert!(
        repair_queue(&m).is_empty(),
        "nothing queued while every machine is healthy"
    );
    ok(&m, &["constraints", "set", "maximum-repair-queue-entries", "1"], None);
    let t_unreachable = Instant::now();
    set_state("m6", "unreachable").await;
    wait("node6 tainted unreachable", Duration::from_secs(120), &log, || {
        k.taints(&m.node(6))
            .contains(&"cke.cybozu.com/state=unreachable:NoSchedule".to_string())
            .then_some(())
    });
    eprintln!(
        "FIGURE unreachable -> tainted on its Node after {:?}",
        t_unreachable.elapsed()
    );
    assert_eq!(declared(&m), (nodes(&m, &[1, 4, 5]), nodes(&m, &[2, 6])));
    let node6 = m.node(6);
    let queued = wait("node6 queued for repair", Duration::from_secs(120), &log, || {
        let q = repair_queue(&m);
        (!q.is_empty()).then_some(q)
    });
    eprintln!(
        "FIGURE unreachable -> repair entry queued after {:?}",
        t_unreachable.elapsed()
    );
    assert_eq!(queued.len(), 1, "{queued:?}");
    let e = &queued[0];
    assert_eq!(
        (&e.operation[..], &e.machine_type[..], &e.address[..], &e.serial[..]),
        ("unreachable", "IPMI-2.0", &node6[..], "m6")
    );
    // The declared step runs on cke's host, and the health check then finds the machine repaired.
    wait("node6's repair succeeded", Duration::from_secs(180), &log, || {
        let q = repair_queue(&m);
        (q.len() == 1 && q[0].status == cke::model::RepairStatus::Succeeded).then_some(())
    });
    assert!(dir.path().join(format!("repaired-{node6}")).exists());
    eprintln!(
        "FIGURE unreachable -> repair succeeded after {:?}",
        t_unreachable.elapsed()
    );
    // Healthy again: the taint goes.
    set_state("m6", "healthy").await;
    ph.lap("unreachable worker tainted, queued, repaired");
    wait("node6's state taint removed", Duration::from_secs(120), &log, || {
        (!k.taints(&m.node(6))
            .iter()
            .any(|t| t.starts_with("cke.cybozu.com/state=")))
        .then_some(())
    });

    // Another machine turns unhealthy while the finished entry still counts: the queue would hold
    // 2 > maximum-repair-queue-entries (1), so nothing is queued, and /status says why.
    set_state("m2", "unhealthy").await;
    let t_refused = Instant::now();
    let note = loop {
        let note = sabakan_note(&http, port).await;
        if note.contains("exceed maximum-repair-queue-entries 1") {
            break note;
        }
        assert!(
            t_refused.elapsed() < Duration::from_secs(120),
            "auto-repair did not refuse m2; /status sabakan: {note}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    eprintln!("/status sabakan: {note}");
    assert_eq!(repair_queue(&m).len(), 1);
    assert!(repair_queue(&m)[0].address == node6, "m6's entry only");
    // Once the finished entry is deleted (the machine considered repaired), m2 is queued.
    ok(&m, &["repair-queue", "delete-finished"], None);
    let t_delete = Instant::now();
    let node2 = m.node(2);
    let queued = wait("m2 queued for repair", Duration::from_secs(120), &log, || {
        let q = repair_queue(&m);
        (q.len() == 1 && q[0].address == node2).then_some(q)
    });
    assert_eq!((&queued[0].operation[..], &queued[0].serial[..]), ("unhealthy", "m2"));
    wait("m2's repair succeeded", Duration::from_secs(180), &log, || {
        let q = repair_queue(&m);
        (q.len() == 1 && q[0].status == cke::model::RepairStatus::Succeeded).then_some(())
    });
    eprintln!(
        "FIGURE finished entry deleted -> the next machine queued and repaired after {:?}",
        t_delete.elapsed()
    );
    set_state("m2", "healthy").await;
    ph.lap("queue limit, the next machine queued and repaired");

    // CKE's metrics of the integration.
    let metrics = cke_get(&http, port, "/metrics").await;
    for line in [
        "cke_sabakan_integration_successful 1",
        "cke_sabakan_workers{role=\"cs\"} 2",
        "cke_sabakan_unused_machines 0",
        "cke_auto_repair_enabled 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line:?} missing from /metrics:\n{metrics}"
        );
    }
    ph.lap("metrics");
    let _ = stop_sabakan.send(());
    drop(_cke);
    drop(m);
    ph.lap("teardown (cke, mtest down)");
    eprintln!("FIGURE whole test {:?}", t_all.elapsed());
}
