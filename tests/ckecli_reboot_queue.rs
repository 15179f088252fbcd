//! `ckecli reboot-queue` (alias `rq`) against a real management etcd: CKE's keys and entry JSON,
//! enable/disable/is-enabled, `add` from a file and standard input (addresses of declared nodes
//! only; a bad line is named, exits 2 and stores nothing), `list` as JSON and as a table, `cancel`,
//! `cancel-all` and `reset-backoff`.

use std::path::Path;
use std::process::Output;

use cke::config::Config;
use cke::storage::{EtcdStorage, Storage};
use cke_testkit::{Ckecli, EtcdServer};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

struct Env {
    _etcd: EtcdServer,
    dir: tempfile::TempDir,
    cli: Ckecli,
}

impl Env {
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        self.cli.run(args, stdin)
    }

    #[track_caller]
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(args, stdin);
        assert!(o.status.success(), "{args:?}: {}{}", text(&o.stdout), text(&o.stderr));
        text(&o.stdout)
    }

    async fn storage(&self) -> EtcdStorage {
        let path = self.dir.path().join("config.yml");
        let config = Config::parse(&std::fs::read_to_string(&path).unwrap(), Path::new(&path)).unwrap();
        EtcdStorage::connect(&config).await.unwrap()
    }

    async fn revision(&self) -> i64 {
        self.storage()
            .await
            .list_raw_with_revision("", 0, false)
            .await
            .unwrap()
            .revision
    }

    fn entries(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["rq", "list"], None)).unwrap()
    }
}

fn env() -> Env {
    let etcd = EtcdServer::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, etcd.config_yaml("/cke/")).unwrap();
    Env {
        _etcd: etcd,
        cli: Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), &config),
        dir,
    }
}

#[tokio::test]
async fn the_reboot_queue_commands() {
    let env = env();
    let storage = env.storage().await;

    // Enabled unless disabled; CKE's values at reboots/disabled.
    assert_eq!(env.ok(&["reboot-queue", "is-enabled"], None), "true\n");
    env.ok(&["reboot-queue", "disable"], None);
    assert_eq!(
        storage.get_raw("reboots/disabled").await.unwrap().unwrap().value,
        b"true"
    );
    assert_eq!(env.ok(&["rq", "is-enabled"], None), "false\n");
    env.ok(&["rq", "enable"], None);
    assert_eq!(
        storage.get_raw("reboots/disabled").await.unwrap().unwrap().value,
        b"false"
    );
    assert_eq!(env.ok(&["rq", "is-enabled"], None), "true\n");

    // Without a declaration the addresses cannot be checked.
    let o = env.run(&["rq", "add", "-"], Some("10.66.0.11\n"));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("no cluster is declared"),
        "{}",
        text(&o.stderr)
    );
    // The constraint first: `cluster set` checks the declaration's control planes against it.
    env.ok(&["constraints", "set", "control-plane-count", "3"], None);
    env.ok(
        &[
            "cluster",
            "set",
            concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cluster.yml"),
        ],
        None,
    );

    // A file with two addresses on one line, then standard input.
    let file = env.dir.path().join("nodes.txt");
    std::fs::write(&file, "10.66.0.12 10.66.0.11\n").unwrap();
    assert_eq!(env.ok(&["reboot-queue", "add", file.to_str().unwrap()], None), "");
    env.ok(&["rq", "add", "-"], Some("\n  10.66.0.13\n"));
    assert_eq!(
        storage.get_raw("reboots/write-index").await.unwrap().unwrap().value,
        b"3"
    );
    let raw = storage.get_raw("reboots/data/0000000000000001").await.unwrap().unwrap();
    assert_eq!(
        text(&raw.value),
        r#"{"index":"1","node":"10.66.0.11","status":"queued","last_transition_time":"0001-01-01T00:00:00Z","drain_backoff_expire":"0001-01-01T00:00:00Z"}"#
    );
    let nodes: Vec<(String, String)> = env
        .entries()
        .iter()
        .map(|e| {
            (
                e["index"].as_str().unwrap().to_string(),
                e["node"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        [
            ("0".into(), "10.66.0.12".into()),
            ("1".into(), "10.66.0.11".into()),
            ("2".into(), "10.66.0.13".into())
        ]
    );
    let list = env.ok(&["rq", "list"], None);
    assert!(
        list.starts_with("[\n    {\n        \"index\": \"0\","),
        "CKE's 4-space JSON: {list}"
    );

    // Bad input: every bad line named, exit 2, nothing written.
    let before = env.revision().await;
    let o = env.run(&["rq", "add", "-"], Some("10.66.0.11\nnode4\n10.66.0.99\n"));
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("line 2") && err.contains("\"node4\" is not an IP address"),
        "{err}"
    );
    assert!(
        err.contains("line 3") && err.contains("10.66.0.99 is not the address of a declared node"),
        "{err}"
    );
    for empty in ["", "  \n\n"] {
        assert_eq!(env.run(&["rq", "add", "-"], Some(empty)).status.code(), Some(2));
    }
    assert_eq!(
        env.run(&["rq", "add", "/nonexistent/nodes"], None).status.code(),
        Some(2)
    );
    assert_eq!(env.revision().await, before, "nothing was written");

    // Cancel one; a missing index is not found (1), a bad one invalid (2).
    env.ok(&["rq", "cancel", "1"], None);
    assert_eq!(env.entries()[1]["status"], "cancelled");
    assert_eq!(env.entries()[0]["status"], "queued");
    let o = env.run(&["rq", "cancel", "99"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(text(&o.stderr).contains("no entry 99"));
    let o = env.run(&["rq", "cancel", "one"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("INDEX"), "{}", text(&o.stderr));

    // reset-backoff forgets the back-offs; the table shows them.
    cke::storage::queue::update(
        &storage,
        &cke::storage::queue::REBOOT_QUEUE,
        0,
        None,
        |e: &mut cke::model::RebootQueueEntry| {
            e.back_off(chrono::Utc::now(), 0);
            true
        },
    )
    .await
    .unwrap();
    let table = env.ok(&["rq", "list", "-o", "simple"], None);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        [
            "Index",
            "Node",
            "Status",
            "LastTransitionTime",
            "DrainBackOffCount",
            "DrainBackOffExpire"
        ]
    );
    let row0: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!((row0[0], row0[1], row0[2], row0[4]), ("0", "10.66.0.12", "queued", "1"));
    assert_ne!(row0[5], "0001-01-01T00:00:00Z");
    env.ok(&["rq", "reset-backoff"], None);
    let e0 = &env.entries()[0];
    assert_eq!(
        (e0.get("drain_backoff_count"), &e0["drain_backoff_expire"]),
        (None, &serde_json::json!("0001-01-01T00:00:00Z"))
    );

    // cancel-all.
    env.ok(&["rq", "cancel-all"], None);
    assert!(env.entries().iter().all(|e| e["status"] == "cancelled"));
    assert_eq!(env.run(&["rq", "list", "-o", "yaml"], None).status.code(), Some(2));
}
