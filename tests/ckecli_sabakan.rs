//! `ckecli sabakan ...` and `ckecli auto-repair ...` against a real management etcd: CKE's keys and
//! values, round trips, and that bad input (URL, template, variables) names what is wrong, exits 2
//! and stores nothing.

use std::process::Output;

use cke::config::Config;
use cke::sabakan::parse_template;
use cke::storage::{EtcdStorage, SabakanStorage, Storage};
use cke_testkit::{Ckecli, EtcdServer};

struct Env {
    etcd: EtcdServer,
    config: std::path::PathBuf,
}

impl Env {
    fn new() -> Env {
        let etcd = EtcdServer::start();
        let config = etcd.dir.path().join("config.yml");
        std::fs::write(&config, etcd.config_yaml("/cke/")).unwrap();
        Env { etcd, config }
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), &self.config).run(args, stdin)
    }

    #[track_caller]
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), &self.config).ok(args, stdin)
    }

    /// Runs and expects exit 2 with an error naming `field`; returns the error.
    #[track_caller]
    fn invalid(&self, args: &[&str], stdin: Option<&str>, field: &str) -> String {
        let o = self.run(args, stdin);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(field), "{args:?}: the error does not name {field}: {err}");
        err
    }

    async fn storage(&self) -> EtcdStorage {
        let text = std::fs::read_to_string(&self.config).unwrap();
        EtcdStorage::connect(&Config::parse(&text, &self.config).unwrap())
            .await
            .unwrap()
    }
}

const TEMPLATE: &str = "\
name: tmpl
service_subnet: 10.68.0.0/16
nodes:
  - {user: cybozu, control_plane: true, labels: {cke.cybozu.com/role: cs}}
  - {user: cybozu, labels: {cke.cybozu.com/role: cs}}
  - {user: cybozu, labels: {cke.cybozu.com/role: ss}, taints: [{key: cke.cybozu.com/role, value: storage, effect: NoExecute}]}
";

#[tokio::test]
async fn sabakan_settings_round_trip_and_bad_input_stores_nothing() {
    let env = Env::new();
    let st = env.storage().await;
    let _keep = &env.etcd;

    // Enabled unless disabled; CKE's values.
    assert_eq!(env.ok(&["sabakan", "is-enabled"], None), "true\n");
    env.ok(&["sabakan", "disable"], None);
    assert_eq!(st.get_raw("sabakan/disabled").await.unwrap().unwrap().value, b"true");
    assert_eq!(env.ok(&["sabakan", "is-enabled"], None), "false\n");
    env.ok(&["sabakan", "enable"], None);
    assert_eq!(st.get_raw("sabakan/disabled").await.unwrap().unwrap().value, b"false");
    assert_eq!(env.ok(&["sabakan", "is-enabled"], None), "true\n");

    // The URL.
    assert_eq!(env.run(&["sabakan", "get-url"], None).status.code(), Some(1));
    for bad in ["sabakan:10080", "ftp://sabakan/", "not a url"] {
        env.invalid(&["sabakan", "set-url", bad], None, "URL");
    }
    assert_eq!(st.get_sabakan_url().await.unwrap(), None);
    env.ok(&["sabakan", "set-url", "http://10.0.0.1:10080"], None);
    assert_eq!(env.ok(&["sabakan", "get-url"], None), "http://10.0.0.1:10080/graphql\n");

    // The template.
    assert_eq!(env.run(&["sabakan", "get-template"], None).status.code(), Some(1));
    let two_cps = TEMPLATE.replace(
        "- {user: cybozu, labels: {cke.cybozu.com/role: cs}}",
        "- {user: cybozu, control_plane: true}",
    );
    env.invalid(
        &["sabakan", "set-template", "-"],
        Some(&two_cps),
        "nodes: a template needs exactly one control-plane",
    );
    let same_roles = TEMPLATE.replace("role: ss", "role: cs");
    env.invalid(
        &["sabakan", "set-template", "-"],
        Some(&same_roles),
        "nodes[2].labels[\"cke.cybozu.com/role\"]",
    );
    let with_address = TEMPLATE.replace(
        "{user: cybozu, control_plane: true",
        "{address: 10.0.0.1, user: cybozu, control_plane: true",
    );
    env.invalid(
        &["sabakan", "set-template", "-"],
        Some(&with_address),
        "nodes[0].address",
    );
    let bad_taint = TEMPLATE.replace("effect: NoExecute", "effect: Never");
    env.invalid(
        &["sabakan", "set-template", "-"],
        Some(&bad_taint),
        "nodes[2].taints[0].effect",
    );
    env.invalid(
        &["sabakan", "set-template", "/nonexistent/template.yml"],
        None,
        "/nonexistent/template.yml",
    );
    assert!(st.get_sabakan_template().await.unwrap().is_none());
    env.ok(&["sabakan", "set-template", "-"], Some(TEMPLATE));
    let (stored, _) = st.get_sabakan_template().await.unwrap().unwrap();
    assert_eq!(stored, parse_template(TEMPLATE).unwrap());
    let printed = env.ok(&["sabakan", "get-template"], None);
    assert_eq!(parse_template(&printed).unwrap(), stored);

    // The variables: stored as given.
    let vars = r#"{"having": {"roles": ["cs", "ss"]}, "notHaving": {"states": ["RETIRED", "UNINITIALIZED"]}}"#;
    assert_eq!(env.run(&["sabakan", "get-variables"], None).status.code(), Some(1));
    env.invalid(
        &["sabakan", "set-variables", "-"],
        Some(r#"{"having": {"states": ["BROKEN"]}}"#),
        "having.states[0]",
    );
    env.invalid(
        &["sabakan", "set-variables", "-"],
        Some(r#"{"having": {"rack": [1]}}"#),
        "having.rack",
    );
    env.invalid(&["sabakan", "set-variables", "-"], Some("not json"), "not JSON");
    assert_eq!(st.get_sabakan_query_variables().await.unwrap(), None);
    env.ok(&["sabakan", "set-variables", "-"], Some(vars));
    assert_eq!(
        st.get_sabakan_query_variables().await.unwrap().unwrap(),
        vars.as_bytes()
    );
    assert_eq!(env.ok(&["sabakan", "get-variables"], None), format!("{vars}\n"));
}

#[tokio::test]
async fn auto_repair_settings_round_trip_and_bad_input_stores_nothing() {
    let env = Env::new();
    let st = env.storage().await;
    assert_eq!(env.ok(&["auto-repair", "is-enabled"], None), "true\n");
    env.ok(&["auto-repair", "disable"], None);
    assert_eq!(
        st.get_raw("auto-repair/disabled").await.unwrap().unwrap().value,
        b"true"
    );
    assert_eq!(env.ok(&["auto-repair", "is-enabled"], None), "false\n");
    env.ok(&["auto-repair", "enable"], None);
    assert_eq!(env.ok(&["auto-repair", "is-enabled"], None), "true\n");

    assert_eq!(env.run(&["auto-repair", "get-variables"], None).status.code(), Some(1));
    env.invalid(
        &["auto-repair", "set-variables", "-"],
        Some(r#"{"notHaving": {"racks": ["a"]}}"#),
        "notHaving.racks[0]",
    );
    assert_eq!(st.get_auto_repair_query_variables().await.unwrap(), None);
    let vars = "{\"having\": {\"states\": [\"UNREACHABLE\"]}}\n";
    env.ok(&["auto-repair", "set-variables", "-"], Some(vars));
    assert_eq!(
        st.get_raw("auto-repair/query-variables").await.unwrap().unwrap().value,
        vars.as_bytes()
    );
    assert_eq!(env.ok(&["auto-repair", "get-variables"], None), vars);
}
