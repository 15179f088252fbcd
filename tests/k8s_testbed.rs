//! The real Kubernetes test bed (docs/k8s-testbed.md): two mtest node hosts with `--k8s` (containerd,
//! cgroup roots, private mounts, local images), Kubernetes 1.20.2 run by hand as podman containers
//! (tests/k8s/testbed-cycle.sh), both Nodes Ready, busybox pods running; then a teardown that leaves no
//! process, mount, network namespace, cgroup, iptables rule or sysctl change on the host.
//!
//! Needs root and the build of scripts/build-k8s.sh (cached; `make k8s`). Run by `make test-k8s`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use cke_testkit::{require_root, Mtest};

const SYSCTLS: [&str; 3] = ["vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops"];

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sysctls() -> Vec<String> {
    SYSCTLS
        .iter()
        .map(|k| sh(&format!("sysctl -n {k}")).trim().to_string())
        .collect()
}

/// Host iptables rules (both backends) that Kubernetes or CNI would add.
fn k8s_rules() -> BTreeSet<String> {
    let mut v = sh("iptables-nft-save 2>/dev/null; iptables-legacy-save 2>/dev/null; ip6tables-nft-save 2>/dev/null");
    v.push('\n');
    v.lines()
        .filter(|l| l.contains("KUBE-") || l.contains("CNI-") || l.contains("cni0"))
        .map(str::to_string)
        .collect()
}

/// Host mounts that a node host or a pod could leak.
fn leaked_mounts(dir: &str, prefix: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| {
            l.contains(dir)
                || l.contains(&format!("mtest.{prefix}-"))
                || l.contains("/var/lib/kubelet/pods")
                || l.contains("/run/containerd/io.containerd")
                || l.contains("/run/netns/cni-")
        })
        .map(str::to_string)
        .collect()
}

/// Processes in a node's cgroup root or started with a path of the state directory.
fn processes_left(dir: &str, prefix: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut left = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cgroup = std::fs::read_to_string(e.path().join("cgroup")).unwrap_or_default();
        if cmdline.contains(dir) || cgroup.contains(&format!("mtest.{prefix}-")) {
            left.push(format!("{pid}: {cmdline}"));
        }
    }
    left
}

#[test]
fn kubernetes_1_20_nodes_ready_pods_run_and_teardown_is_clean() {
    require_root("tests/k8s_testbed.rs (node hosts with containerd and cgroups; make test-k8s)");
    let sysctls_before = sysctls();
    let rules_before = k8s_rules();

    let t0 = Instant::now();
    let m = Mtest::up(2, &["--no-vault", "--k8s"]);
    println!("FIGURE mtest up --nodes 2 --k8s: {:?}", t0.elapsed());
    let dir = m.env["MTEST_DIR"].clone();
    for i in 1..=2 {
        let root = &m.env[&format!("CGROUP_ROOT{i}")];
        assert!(
            PathBuf::from(format!("/sys/fs/cgroup/cpuset{root}/cpuset.cpus")).exists(),
            "cgroup root {root} of node{i} missing"
        );
    }
    let bin = PathBuf::from(&m.env["K8S_BIN"]);
    assert!(bin.join("kubectl").exists(), "K8S_BIN {bin:?} has no kubectl");
    // `make test` exports what `make k8s` built; mtest must have used the same build.
    if let Ok(make_bin) = std::env::var("CKE_K8S_BIN") {
        assert_eq!(PathBuf::from(make_bin), bin, "CKE_K8S_BIN and mtest's K8S_BIN differ");
    }

    let t1 = Instant::now();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/k8s/testbed-cycle.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args([&dir, &m.prefix, &m.subnet])
        .output()
        .unwrap();
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(
        out.status.success(),
        "testbed cycle failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("FIGURE control plane + 2 Ready nodes + pods: {:?}", t1.elapsed());

    // Memory per node host: the resident sets of what runs in its network namespace plus its pods.
    for i in 1..=2 {
        let root = &m.env[&format!("CGROUP_ROOT{i}")];
        let kb = sh(&format!(
            "{{ ip netns pids {p}-node{i}; find /sys/fs/cgroup/memory{root} -name cgroup.procs -exec cat {{}} +; }} \
             | sort -u | while read p; do awk '/^VmRSS/ {{print $2}}' /proc/$p/status 2>/dev/null; done \
             | awk '{{s += $1}} END {{print s + 0}}'",
            p = m.prefix
        ));
        println!(
            "FIGURE node{i} RSS: {} MiB",
            kb.trim().parse::<u64>().unwrap_or(0) / 1024
        );
    }

    // node-stop takes the node's containerd and pods down with it; node-start brings containerd back
    // with the images kept on the node's disk.
    let out = m.run(&["node-stop", "2"]);
    assert!(
        out.status.success(),
        "node-stop 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root2 = &m.env["CGROUP_ROOT2"];
    let left = sh(&format!(
        "find /sys/fs/cgroup/memory{root2} -name cgroup.procs -exec cat {{}} + 2>/dev/null"
    ));
    assert!(
        left.trim().is_empty(),
        "processes left in {root2} after node-stop: {left}"
    );
    let out = m.run(&["node-start", "2"]);
    assert!(
        out.status.success(),
        "node-start 2: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = String::from_utf8_lossy(&m.run(&["status"]).stdout).into_owned();
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("node2 ") && l.contains("sshd=up") && l.contains("containerd=up")),
        "node2 not back after node-start: {status}"
    );
    let images = m.run(&["exec", "2", "ctr", "-n", "k8s.io", "images", "ls", "-q"]);
    let images = String::from_utf8_lossy(&images.stdout).into_owned();
    assert!(
        images.contains(&m.env["BUSYBOX_IMAGE"]) && images.contains(&m.env["PAUSE_IMAGE"]),
        "node2's containerd lost its images over node-stop/node-start: {images}"
    );

    let prefix = m.prefix.clone();
    let t2 = Instant::now();
    drop(m);
    println!("FIGURE mtest down: {:?}", t2.elapsed());

    // Nothing left on the host.
    let netns = sh("ip netns list");
    assert!(
        !netns.contains(&format!("{prefix}-node")),
        "network namespaces left: {netns}"
    );
    let procs = processes_left(&dir, &prefix);
    assert!(procs.is_empty(), "processes left: {procs:#?}");
    let mounts = leaked_mounts(&dir, &prefix);
    assert!(mounts.is_empty(), "mounts left on the host: {mounts:#?}");
    let cgroups = sh(&format!("ls -d /sys/fs/cgroup/*/mtest.{prefix}-* 2>/dev/null"));
    assert!(cgroups.trim().is_empty(), "cgroups left: {cgroups}");
    let rules: Vec<_> = k8s_rules().difference(&rules_before).cloned().collect();
    assert!(rules.is_empty(), "iptables rules left on the host: {rules:#?}");
    assert_eq!(sysctls(), sysctls_before, "host sysctls {SYSCTLS:?} not restored");
}
