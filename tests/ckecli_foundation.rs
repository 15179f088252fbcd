//! `ckecli` against a real management etcd: every foundation command, round trips, exit codes, and
//! that invalid input changes nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use cke::config::Config;
use cke::model::{parse_cluster, Record, RecordCommand, RecordStatus, ServerStatus};
use cke::storage::{encode, EtcdStorage, Storage};
use cke_testkit::{Ckecli, EtcdServer};

struct Env {
    etcd: EtcdServer,
    config: PathBuf,
    prefix: String,
}

impl Env {
    fn new(prefix: &str) -> Env {
        let etcd = EtcdServer::start();
        let config = etcd.dir.path().join("config.yml");
        std::fs::write(&config, etcd.config_yaml(prefix)).unwrap();
        Env {
            etcd,
            config,
            prefix: prefix.to_string(),
        }
    }

    fn ckecli(&self, args: &[&str]) -> Output {
        ckecli_with(&self.config, args, None)
    }

    fn ckecli_stdin(&self, args: &[&str], stdin: &str) -> Output {
        ckecli_with(&self.config, args, Some(stdin))
    }

    async fn storage(&self) -> EtcdStorage {
        let text = std::fs::read_to_string(&self.config).unwrap();
        EtcdStorage::connect(&Config::parse(&text, &self.config).unwrap())
            .await
            .unwrap()
    }
}

fn ckecli_with(config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), config).run(args, stdin)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

fn testdata(name: &str) -> String {
    format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn cluster_set_get_round_trip_and_invalid_input_changes_nothing() {
    let env = Env::new("/cke/");
    // Nothing set yet: a clear runtime error.
    let o = env.ckecli(&["cluster", "get"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no cluster"), "{}", stderr(&o));

    for file in [
        "cluster.yml",
        "cluster-full.yml",
        "cluster-tutorial.yml",
        "cluster.json",
        "cluster-cke.json",
    ] {
        let path = testdata(file);
        let want = parse_cluster(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // As CKE's cluster set, the stored constraints must hold.
        let cps = want.control_planes().count().to_string();
        assert_ok(&env.ckecli(&["constraints", "set", "control-plane-count", &cps]));
        assert_ok(&env.ckecli(&["cluster", "set", &path]));
        let yaml = env.ckecli(&["cluster", "get"]);
        assert_ok(&yaml);
        assert_eq!(parse_cluster(&stdout(&yaml)).unwrap(), want, "{file} via YAML");
        let json = env.ckecli(&["cluster", "get", "--output", "json"]);
        assert_ok(&json);
        let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
        assert_eq!(parse_cluster(&v.to_string()).unwrap(), want, "{file} via JSON");
        // Stored as JSON under <prefix>cluster, as CKE does.
        let kv = env.storage().await.get_raw("cluster").await.unwrap().unwrap();
        let _: serde_json::Value = serde_json::from_slice(&kv.value).unwrap();
    }

    // stdin works too.
    let text = std::fs::read_to_string(testdata("cluster.yml")).unwrap();
    assert_ok(&env.ckecli(&["constraints", "set", "control-plane-count", "3"]));
    assert_ok(&env.ckecli_stdin(&["cluster", "set", "-"], &text));
    let before = env.storage().await.get_raw("cluster").await.unwrap().unwrap();

    // Invalid input: exit 2, the field is named, nothing is written.
    for entry in std::fs::read_dir(testdata("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let body = std::fs::read_to_string(&path).unwrap();
        let expect = body
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# expect: ")
            .unwrap()
            .to_string();
        let o = env.ckecli(&["cluster", "set", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2), "{}: {}", path.display(), stderr(&o));
        assert!(
            stderr(&o).contains(&expect),
            "{}: {expect} not in {}",
            path.display(),
            stderr(&o)
        );
    }
    let o = env.ckecli_stdin(&["cluster", "set", "-"], "name: [unclosed");
    assert_eq!(o.status.code(), Some(2));
    let o = env.ckecli(&["cluster", "set", "/nonexistent/cluster.yml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("/nonexistent/cluster.yml"));
    let o = env.ckecli_stdin(&["cluster", "set", "-"], "# nothing here\n\n");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("standard input is empty"), "{}", stderr(&o));
    let after = env.storage().await.get_raw("cluster").await.unwrap().unwrap();
    assert_eq!(
        before.mod_revision, after.mod_revision,
        "invalid input modified the stored cluster"
    );
}

#[test]
fn cluster_validate_needs_no_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let config = unreachable_config(dir.path());
    for f in [
        "cluster.yml",
        "cluster-full.yml",
        "cluster-tutorial.yml",
        "cluster.json",
        "cluster-cke.json",
    ] {
        let o = ckecli_with(&config, &["cluster", "validate", &testdata(f)], None);
        assert_ok(&o);
        assert!(stdout(&o).contains("valid"));
    }
    let o = ckecli_with(
        &config,
        &["cluster", "validate", &testdata("invalid/bad-address.yml")],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("nodes[1].address"), "{}", stderr(&o));
    // A usage error is 2 as well.
    let o = ckecli_with(&config, &["cluster", "frobnicate"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[tokio::test]
async fn constraints_set_and_show() {
    let env = Env::new("/cke/");
    let o = env.ckecli(&["constraints", "show"]);
    assert_ok(&o);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["control-plane-count"], 1);
    assert_eq!(v["minimum-workers-rate"], 80);

    for (name, value) in [
        ("control-plane-count", "3"),
        ("minimum-workers-rate", "50"),
        ("maximum-unreachable-nodes-for-reboot", "2"),
        ("maximum-repair-queue-entries", "10"),
        ("wait-seconds-to-repair-rebooting", "300"),
    ] {
        assert_ok(&env.ckecli(&["constraints", "set", name, value]));
    }
    let v: serde_json::Value = serde_json::from_str(&stdout(&env.ckecli(&["constraints", "show"]))).unwrap();
    assert_eq!(v["control-plane-count"], 3);
    assert_eq!(v["minimum-workers-rate"], 50);
    assert_eq!(v["maximum-unreachable-nodes-for-reboot"], 2);
    assert_eq!(v["maximum-repair-queue-entries"], 10);
    assert_eq!(v["wait-seconds-to-repair-rebooting"], 300);

    let before = env.storage().await.get_raw("constraints").await.unwrap().unwrap();
    for (name, value, field) in [
        ("control-plane-count", "0", "control-plane-count"),
        ("minimum-workers-rate", "200", "minimum-workers-rate"),
        ("control-plane-count", "x", "control-plane-count"),
        ("no-such-constraint", "1", "no-such-constraint"),
    ] {
        let o = env.ckecli(&["constraints", "set", name, value]);
        assert_eq!(o.status.code(), Some(2), "{name}={value}");
        assert!(stderr(&o).contains(field), "{}", stderr(&o));
    }
    let after = env.storage().await.get_raw("constraints").await.unwrap().unwrap();
    assert_eq!(before.mod_revision, after.mod_revision);
}

fn record(id: i64, status: RecordStatus) -> Record {
    Record {
        id,
        status,
        operation: format!("op-{id}"),
        targets: vec!["10.0.0.1".into()],
        command: RecordCommand {
            name: "run".into(),
            target: "10.0.0.1".into(),
            detail: String::new(),
        },
        error: String::new(),
        leader: "host1".into(),
        start_at: chrono::Utc::now(),
        end_at: None,
    }
}

fn parse_json_stream(text: &str) -> Vec<Record> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Record>()
        .map(|r| r.unwrap())
        .collect()
}

#[tokio::test]
async fn history_leader_and_status() {
    let env = Env::new("/custom-prefix/");
    let storage = env.storage().await;

    // Empty history: nothing printed, success.
    let o = env.ckecli(&["history"]);
    assert_ok(&o);
    assert_eq!(stdout(&o).trim(), "");

    for id in 1..=5 {
        storage
            .put_raw(
                &format!("records/{}", Record::key_suffix(id)),
                encode(&record(id, RecordStatus::Completed)),
            )
            .await
            .unwrap();
    }
    let all = parse_json_stream(&stdout(&env.ckecli(&["history"])));
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![5, 4, 3, 2, 1]);
    let two = parse_json_stream(&stdout(&env.ckecli(&["history", "-n", "2"])));
    assert_eq!(two.iter().map(|r| r.id).collect::<Vec<_>>(), vec![5, 4]);

    // Keys really live under the configured prefix.
    let mut client = storage.client();
    let raw = client
        .get(format!("{}records/{}", env.prefix, Record::key_suffix(3)), None)
        .await
        .unwrap();
    assert_eq!(raw.kvs().len(), 1);

    // -f prints existing records oldest first, then follows new ones.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ckecli"))
        .arg("--config")
        .arg(&env.config)
        .args(["history", "-f", "-n", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = String::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            buf.push_str(&line);
            buf.push('\n');
            if line == "}" {
                let _ = tx.send(std::mem::take(&mut buf));
            }
        }
    });
    let first: Record = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(first.id, 5);
    // The watch starts after the initial print; retry the write until the follower reports it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = None;
    while Instant::now() < deadline && got.is_none() {
        storage
            .put_raw(
                &format!("records/{}", Record::key_suffix(6)),
                encode(&record(6, RecordStatus::Running)),
            )
            .await
            .unwrap();
        if let Ok(text) = rx.recv_timeout(Duration::from_millis(500)) {
            got = Some(serde_json::from_str::<Record>(&text).unwrap());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let got = got.expect("history -f did not print the new record");
    assert_eq!((got.id, got.status), (6, RecordStatus::Running));

    // Leader: none, then the oldest key under leader/.
    let o = env.ckecli(&["leader"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no leader"));
    storage.put_raw("leader/aaa", b"host-b".to_vec()).await.unwrap();
    storage.put_raw("leader/000", b"host-c".to_vec()).await.unwrap();
    let o = env.ckecli(&["leader"]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o).trim(),
        "host-b",
        "the leader is the oldest candidate, not the first key"
    );

    // Status.
    let o = env.ckecli(&["status"]);
    assert_eq!(o.status.code(), Some(4), "no status is exit 4, as in CKE");
    let st = ServerStatus {
        phase: cke::model::Phase::EtcdMaintain,
        timestamp: chrono::Utc::now(),
        note: String::new(),
        operations: vec![
            serde_json::from_value(serde_json::json!({"operation": "etcd-add-member", "node": "10.0.0.4", "replace": null, "reason": "control-plane node 10.0.0.4 is not an etcd member"})).unwrap(),
            // k8s-maintain operations as the planner words them (src/planner/k8s_maintain_tests.rs).
            serde_json::from_value(serde_json::json!({"operation": "resource-apply", "apiserver": "10.0.0.1", "key": "ConfigMap/app/settings", "revision": 12, "static": false, "reason": "resource ConfigMap/app/settings is at revision 10, not 12"})).unwrap(),
            serde_json::from_value(serde_json::json!({"operation": "update-node", "apiserver": "10.0.0.1", "nodes": ["10.0.0.4"], "reason": "labels, annotations or taints differ from the declaration: Node 10.0.0.4: taint dedicated=db:NoSchedule"})).unwrap(),
            serde_json::from_value(serde_json::json!({"operation": "remove-node", "apiserver": "10.0.0.1", "nodes": ["10.0.0.99"], "reason": "Nodes 10.0.0.99 belong to no declared node: cordon and delete them"})).unwrap(),
        ],
        images: Some(cke::topology::Images {
            etcd: "example.com/etcd:3.5".into(),
            tools: "example.com/tools:1".into(),
            kubernetes: "ghcr.io/cybozu/kubernetes:1.35.5.1".into(),
            coredns: "example.com/coredns:1.14".into(),
            unbound: "example.com/unbound:1.25".into(),
            unbound_exporter: "example.com/unbound_exporter:0.5".into(),
        }),
        kubernetes_version: "1.35.5".into(),
    };
    storage.put_raw("status", encode(&st)).await.unwrap();
    let o = env.ckecli(&["status"]);
    assert_ok(&o);
    let back: ServerStatus = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(back, st);
    // ckecli plan prints what the leader plans next, with targets and reasons.
    let o = env.ckecli(&["plan"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("etcd-add-member")
            && stdout(&o).contains("10.0.0.4")
            && stdout(&o).contains("not an etcd member"),
        "{}",
        stdout(&o)
    );
    // The k8s-maintain operations: each with what it acts on and why.
    for line in [
        "- resource-apply [ConfigMap/app/settings]: resource ConfigMap/app/settings is at revision 10, not 12\n",
        "- update-node [10.0.0.4]: labels, annotations or taints differ from the declaration: Node 10.0.0.4: taint dedicated=db:NoSchedule\n",
        "- remove-node [10.0.0.99]: Nodes 10.0.0.99 belong to no declared node: cordon and delete them\n",
    ] {
        assert!(stdout(&o).contains(line), "{}", stdout(&o));
    }
    let o = env.ckecli(&["plan", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["operations"][0]["operation"], "etcd-add-member");
    assert_eq!(
        (
            v["operations"][1]["key"].as_str(),
            v["operations"][1]["revision"].as_i64()
        ),
        (Some("ConfigMap/app/settings"), Some(12))
    );
    // ckecli images: the leader's images, one per line (as CKE's), or with roles and the version.
    let o = env.ckecli(&["images"]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "example.com/etcd:3.5\nexample.com/tools:1\nghcr.io/cybozu/kubernetes:1.35.5.1\n\
         example.com/coredns:1.14\nexample.com/unbound:1.25\nexample.com/unbound_exporter:0.5\n"
    );
    let o = env.ckecli(&["images", "--output", "wide"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("kubernetes        ghcr.io/cybozu/kubernetes:1.35.5.1  Kubernetes 1.35.5")
            && stdout(&o).contains("\nunbound_exporter  example.com/unbound_exporter:0.5\n"),
        "{}",
        stdout(&o)
    );
}

#[tokio::test]
async fn unreachable_etcd_names_the_endpoints() {
    let mut env = Env::new("/cke/");
    let endpoint = env.etcd.endpoint.clone();
    env.etcd.kill();
    for args in [
        &["cluster", "get"][..],
        &["constraints", "show"],
        &["history"],
        &["leader"],
        &["status"],
    ] {
        let o = env.ckecli(args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(&endpoint), "{args:?}: {}", stderr(&o));
    }
    let o = env.ckecli(&["cluster", "set", &testdata("cluster.yml")]);
    assert_eq!(o.status.code(), Some(1));
    // Invalid input is refused before etcd is contacted: still exit 2.
    let o = env.ckecli(&["cluster", "set", &testdata("invalid/bad-address.yml")]);
    assert_eq!(o.status.code(), Some(2));
}

/// A config whose only endpoint refuses connections.
fn unreachable_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.yml");
    std::fs::write(&config, "endpoints: [\"http://127.0.0.1:1\"]\n").unwrap();
    config
}

#[test]
fn constraints_set_checks_its_input_before_contacting_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let config = unreachable_config(dir.path());
    for (name, value) in [
        ("control-plane-count", "0"),
        ("control-plane-count", "three"),
        ("minimum-workers-rate", "101"),
        ("maximum-repair-queue-entries", "-1"),
        ("no-such-constraint", "1"),
    ] {
        let o = ckecli_with(&config, &["constraints", "set", name, value], None);
        assert_eq!(o.status.code(), Some(2), "{name}={value}: {}", stderr(&o));
        assert!(stderr(&o).contains(name), "{name}={value}: {}", stderr(&o));
    }
    // Valid input gets as far as etcd, which is unreachable: a runtime failure.
    let o = ckecli_with(&config, &["constraints", "set", "control-plane-count", "3"], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("127.0.0.1:1"), "{}", stderr(&o));
}

#[test]
fn unreadable_or_empty_input_files_are_invalid_input() {
    let dir = tempfile::tempdir().unwrap();
    let config = unreachable_config(dir.path());
    let missing = dir.path().join("missing.yml");
    let missing = missing.to_str().unwrap();
    let a_directory = dir.path().to_str().unwrap();
    for (args, reason) in [
        (vec!["cluster", "validate", missing], "No such file"),
        (vec!["cluster", "set", missing], "No such file"),
        (vec!["cluster", "validate", a_directory], "directory"),
        (vec!["vault", "config", missing], "No such file"),
        (vec!["vault", "ssh-privkey", missing], "No such file"),
        (vec!["ca", "set", "server", missing], "No such file"),
    ] {
        let o = ckecli_with(&config, &args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let path = args.last().unwrap();
        assert!(
            stderr(&o).contains(path) && stderr(&o).contains(reason),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    for (name, body) in [
        ("empty.yml", ""),
        ("blank.yml", "  \n\n\t\n"),
        ("comments.yml", "# a cluster, some day\n---\n  # not yet\n"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let path = path.to_str().unwrap();
        for cmd in ["validate", "set"] {
            let o = ckecli_with(&config, &["cluster", cmd, path], None);
            assert_eq!(o.status.code(), Some(2), "{cmd} {name}: {}", stderr(&o));
            assert!(
                stderr(&o).contains(&format!("{path} is empty")) && !stderr(&o).contains("required"),
                "{cmd} {name}: {}",
                stderr(&o)
            );
        }
    }
}
