//! `ckecli repair-queue ...` against a real management etcd: CKE's keys and entry JSON, the
//! arguments of `add` checked against the stored declaration (bad input names the argument, exits 2
//! and stores nothing), delete / delete-finished / delete-unfinished marking entries, reset-backoff,
//! enable / disable / is-enabled, and wait.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use cke::config::Config;
use cke::storage::{repairs, EtcdStorage, Storage};
use cke_testkit::{Ckecli, EtcdServer};

const CLUSTER: &str = r#"
name: c
service_subnet: 10.96.0.0/16
nodes:
  - {address: 10.0.0.1, user: core, control_plane: true}
  - {address: 10.0.0.2, user: core, hostname: worker2}
repair:
  repair_procedures:
    - machine_types: [type1, type2]
      repair_operations:
        - operation: op1
          repair_steps:
            - {repair_command: [/bin/true]}
          health_check_command: [/bin/true]
"#;

struct Env {
    _etcd: EtcdServer,
    config: PathBuf,
    cli: Ckecli,
}

impl Env {
    fn new() -> Env {
        let etcd = EtcdServer::start();
        let config = etcd.config_file();
        let cli = Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), &config);
        Env {
            _etcd: etcd,
            config,
            cli,
        }
    }

    fn ckecli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.cli.run(args, stdin)
    }

    #[track_caller]
    fn ok(&self, args: &[&str]) -> String {
        self.cli.ok(args, None)
    }

    fn list(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["repair-queue", "list"])).expect("list prints a JSON array")
    }

    async fn storage(&self) -> EtcdStorage {
        EtcdStorage::connect(&Config::load(&self.config).unwrap())
            .await
            .unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[tokio::test]
async fn add_list_delete_and_ckes_layout() {
    let env = Env::new();
    // No declaration: nothing to check the request against.
    let o = env.ckecli(&["repair-queue", "add", "op1", "type1", "10.0.0.2"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(
        text(&o.stderr).contains("no cluster is declared"),
        "{}",
        text(&o.stderr)
    );
    env.ckecli(&["cluster", "set", "-"], Some(CLUSTER));

    // Bad input: the argument and the reason, exit 2, nothing stored.
    let storage = env.storage().await;
    let before = storage.list_raw_with_revision("repairs/", 0, false).await.unwrap();
    for (args, arg, reason) in [
        (["op1", "type3", "10.0.0.2"], "MACHINE_TYPE", "type3"),
        (["op9", "type1", "10.0.0.2"], "OPERATION", "op9"),
        (["op1", "type1", "node2"], "ADDRESS", "not an IP address"),
    ] {
        let mut a = vec!["repair-queue", "add"];
        a.extend(args);
        let o = env.ckecli(&a, None);
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{a:?}: {err}");
        assert!(err.contains(arg) && err.contains(reason), "{a:?}: {err}");
    }
    let after = storage.list_raw_with_revision("repairs/", 0, false).await.unwrap();
    assert_eq!(after.revision, before.revision, "nothing was written");
    assert_eq!(
        env.ok(&["repair-queue", "list"]),
        "[]\n",
        "an empty queue is [] as CKE prints it"
    );

    env.ok(&["repair-queue", "add", "op1", "type1", "10.0.0.2"]);
    env.ok(&["repair-queue", "add", "op1", "type2", "10.0.0.9", "SN9"]);
    // CKE's keys and JSON.
    assert_eq!(
        storage.get_raw("repairs/write-index").await.unwrap().unwrap().value,
        b"2"
    );
    let raw = storage.get_raw("repairs/data/0000000000000001").await.unwrap().unwrap();
    assert_eq!(
        text(&raw.value),
        r#"{"index":"1","address":"10.0.0.9","nodename":"","serial":"SN9","machine_type":"type2","operation":"op1","status":"queued","step":0,"step_status":"waiting","deleted":false,"last_transition_time":"0001-01-01T00:00:00Z","drain_backoff_expire":"0001-01-01T00:00:00Z"}"#
    );
    let listed = env.ok(&["repair-queue", "list"]);
    assert!(
        listed.starts_with("[\n    {\n        \"index\": \"0\","),
        "indented by four spaces, as CKE's: {listed}"
    );
    let list = env.list();
    assert_eq!(list.len(), 2);
    assert_eq!(
        (list[0]["index"].as_str(), list[0]["address"].as_str()),
        (Some("0"), Some("10.0.0.2"))
    );

    // delete marks; the leader removes it.
    env.ok(&["repair-queue", "delete", "1"]);
    assert_eq!(env.list()[1]["deleted"], true);
    for (index, code) in [("7", 1), ("x", 2)] {
        let o = env.ckecli(&["repair-queue", "delete", index], None);
        assert_eq!(o.status.code(), Some(code), "delete {index}: {}", text(&o.stderr));
    }

    // delete-finished / delete-unfinished print the indexes they mark.
    repairs::update(&storage, 0, None, |e| {
        e.status = cke::model::RepairStatus::Succeeded;
        true
    })
    .await
    .unwrap();
    env.ok(&["repair-queue", "add", "op1", "type1", "10.0.0.1"]);
    assert_eq!(env.ok(&["repair-queue", "delete-finished"]), "0\n");
    assert_eq!(env.ok(&["repair-queue", "delete-unfinished"]), "2\n");
    assert_eq!(env.ok(&["repair-queue", "delete-unfinished"]), "", "already marked");
    assert!(env.list().iter().all(|e| e["deleted"] == true));
}

#[tokio::test]
async fn enable_disable_reset_backoff_and_wait() {
    let env = Env::new();
    env.ckecli(&["cluster", "set", "-"], Some(CLUSTER));
    assert_eq!(env.ok(&["repair-queue", "is-enabled"]), "true\n");
    env.ok(&["repair-queue", "disable"]);
    assert_eq!(env.ok(&["repair-queue", "is-enabled"]), "false\n");
    let storage = env.storage().await;
    assert_eq!(
        storage.get_raw("repairs/disabled").await.unwrap().unwrap().value,
        b"true"
    );
    env.ok(&["repair-queue", "enable"]);
    assert_eq!(env.ok(&["repair-queue", "is-enabled"]), "true\n");

    // reset-backoff clears the back-off of every entry.
    env.ok(&["repair-queue", "add", "op1", "type1", "10.0.0.2"]);
    let now = chrono::Utc::now();
    repairs::update(&storage, 0, None, |e| {
        *e = e.backed_off(now, 10);
        true
    })
    .await
    .unwrap();
    assert_eq!(env.list()[0]["drain_backoff_count"], 1);
    env.ok(&["repair-queue", "reset-backoff"]);
    let e = &env.list()[0];
    assert!(e.get("drain_backoff_count").is_none(), "{e}");
    assert_eq!(e["drain_backoff_expire"], "0001-01-01T00:00:00Z");
    assert_eq!(e["status"], "processing", "only the back-off is reset");

    // wait: fails on a non-empty queue after its timeout; succeeds once it empties.
    let o = env.ckecli(&["repair-queue", "wait", "--timeout-seconds", "0"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("not empty"), "{}", text(&o.stderr));
    let t0 = Instant::now();
    let o = env.ckecli(&["repair-queue", "wait", "--timeout-seconds", "2"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(t0.elapsed() >= Duration::from_secs(1), "it waited");
    assert!(
        text(&o.stdout).contains("repair queue entries: 1"),
        "{}",
        text(&o.stdout)
    );
    for (flag, value) in [("--timeout-seconds", "-1"), ("--interval-seconds", "0")] {
        let o = env.ckecli(&["repair-queue", "wait", flag, value], None);
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert!(text(&o.stderr).contains(flag), "{}", text(&o.stderr));
    }
    let waiter = {
        let config = env.config.clone();
        std::thread::spawn(move || {
            Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), &config).run(&["repair-queue", "wait"], None)
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    storage.delete_raw("repairs/data/0000000000000000").await.unwrap();
    let o = waiter.join().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).ends_with("repair queue is empty\n"),
        "{}",
        text(&o.stdout)
    );
}
