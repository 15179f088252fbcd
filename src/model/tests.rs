//! Table tests of the cluster model: good and bad declarations, each bad one asserting the field path.

use super::*;

const BASE: &str = "name: t\nservice_subnet: 10.0.0.0/24\n";

fn cluster(nodes_and_more: &str) -> String {
    format!("{BASE}{nodes_and_more}")
}

const ONE_CP: &str = "nodes:\n  - {address: 10.0.0.1, user: core, control_plane: true}\n";

#[test]
fn good_inputs() {
    let cases = [
        cluster(ONE_CP),
        cluster("nodes:\n  - {address: '::1', user: core, control_plane: true}\n"),
        cluster("nodes:\n  - {address: 10.0.0.1, hostname: a.example, user: core, control_plane: true}\n  - {address: 10.0.0.2, user: core}\n"),
        format!("{}{ONE_CP}dns_servers: ['8.8.8.8', '2001:4860:4860::8888']\ndns_service: kube-system/dns\n", BASE),
        format!("{BASE}{ONE_CP}options:\n  kubelet:\n    config: {{apiVersion: kubelet.config.k8s.io/v1beta1, kind: KubeletConfiguration, clusterDomain: example.local}}\n"),
        format!("{BASE}{ONE_CP}reboot:\n  reboot_command: [r]\n  boot_check_command: [c]\n  command_timeout_seconds: 0\n"),
        r#"{"name": "j", "service_subnet": "10.0.0.0/24", "nodes": [{"address": "10.0.0.1", "user": "u", "control_plane": true}]}"#.to_string(),
        // CKE writes empty lists, maps and sections as null, and always writes reboot and repair.
        r#"{"name": "j", "service_subnet": "10.0.0.0/24", "nodes": [{"address": "10.0.0.1", "hostname": "", "user": "u", "control_plane": true, "annotations": null, "labels": null, "taints": null}], "control_plane_tolerations": null, "dns_servers": null, "reboot": {"reboot_command": null, "boot_check_command": null, "eviction_timeout_seconds": null, "protected_namespaces": null}, "repair": {"repair_procedures": null, "max_concurrent_repairs": null}}"#.to_string(),
        format!("{BASE}{ONE_CP}options:\n  etcd: {{extra_args: null, extra_binds: null, extra_env: null, volume_name: ''}}\n  kubelet: {{boot_taints: null, cni_conf_file: {{name: '', content: ''}}, config: null}}\n"),
        format!("{BASE}{ONE_CP}options:\n  kubelet:\n  rivers: ~\n"),
        format!("{BASE}nodes:\n  - address: 10.0.0.1\n    user: core\n    control_plane: true\n    labels:\n    taints: ~\n    hostname: null\ndns_service: null\n"),
        format!("{BASE}{ONE_CP}reboot:\n  reboot_command: [r]\n  protected_namespaces: {{matchLabels: null, matchExpressions: [{{key: a, operator: Exists, values: null}}]}}\n"),
        format!("{BASE}{ONE_CP}reboot: {{}}\nrepair: {{repair_procedures: []}}\n"),
        format!("{BASE}{ONE_CP}repair:\n  repair_procedures:\n    - {{machine_types: [a], repair_operations: [{{operation: o, repair_steps: [{{repair_command: [x]}}], health_check_command: [h], success_command: null}}]}}\n"),
        format!("{BASE}{ONE_CP}sabakan: {{}}\n"),
        format!("{BASE}{ONE_CP}sabakan: {{spare_node_taint_key: null}}\n"),
        format!("{BASE}{ONE_CP}options:\n  kubelet:\n    cni_conf_file: {{name: 99-loopback.conf, content: '{{\"type\": \"loopback\"}}'}}\n"),
    ];
    for text in cases {
        if let Err(e) = parse_cluster(&text) {
            panic!("rejected valid input:\n{text}\n{e}");
        }
    }
}

/// What a verdict says about one field: CKE refuses it (an error), or accepts it and cke-rs warns.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Says {
    Error,
    Warning,
    Nothing,
}

#[test]
fn verdicts_name_the_field() {
    use Says::*;
    let node = |extra: &str| {
        cluster(&format!(
            "nodes:\n  - {{address: 10.0.0.1, user: core, control_plane: true{extra}}}\n"
        ))
    };
    let cases: Vec<(String, &str, Says)> = vec![
        (cluster("nodes: []\n"), "nodes", Warning),
        (format!("name: t\n{ONE_CP}"), "service_subnet", Error),
        (cluster("nodes:\n  - {address: 10.0.0.1, user: core, control_plane: true}\n  - {address: 10.0.0.0.2, user: core}\n"), "nodes[1].address", Error),
        (cluster("nodes:\n  - {address: '', user: core, control_plane: true}\n"), "nodes[0].address", Error),
        (node(", user: ''"), "nodes[0].user", Error),
        (cluster("nodes:\n  - {address: 10.0.0.1, user: '-oProxyCommand=x', control_plane: true}\n"), "nodes[0].user", Warning),
        (cluster("nodes:\n  - {address: 10.0.0.1, user: 'a b', control_plane: true}\n"), "nodes[0].user", Warning),
        (node(", hostname: Upper_Case"), "nodes[0].hostname", Warning),
        (node(", labels: {'bad key!': v}"), "nodes[0].labels[\"bad key!\"]", Error),
        (node(", labels: {'a.b/c': 'x'}"), "", Nothing),
        (node(", labels: {'/c': 'x'}"), "nodes[0].labels[\"/c\"]", Error),
        (node(", taints: [{key: a, value: 'x y', effect: NoSchedule}]"), "nodes[0].taints[0].value", Error),
        (node(", taints: [{key: '', effect: NoSchedule}]"), "nodes[0].taints[0].key", Error),
        // CKE accepts its own keys in the declaration (its sabakan integration generates them).
        (node(", taints: [{key: cke.cybozu.com/master, effect: NoSchedule}], labels: {node-role.kubernetes.io/master: 'true'}"), "", Nothing),
        (format!("{BASE}{ONE_CP}dns_service: a/b/c\n"), "dns_service", Error),
        (format!("{BASE}{ONE_CP}control_plane_tolerations: ['-x']\n"), "control_plane_tolerations[0]", Error),
        (format!("{BASE}{ONE_CP}sabakan: {{spare_node_taint_key: '-bad'}}\n"), "sabakan.spare_node_taint_key", Warning),
        (format!("{BASE}{ONE_CP}trusted_rest_mappings: [{{group: g}}]\n"), "trusted_rest_mappings[0].version", Error),
        (format!("{BASE}{ONE_CP}reboot:\n  reboot_command: null\n  eviction_timeout_seconds: 0\n"), "reboot.eviction_timeout_seconds", Error),
        (format!("{BASE}{ONE_CP}reboot:\n  reboot_command: [r]\n  boot_check_command: [c]\n  max_concurrent_reboots: 0\n"), "reboot.max_concurrent_reboots", Error),
        (format!("{BASE}{ONE_CP}reboot:\n  reboot_command: [r]\n  boot_check_command: [c]\n  protected_namespaces:\n    matchExpressions: [{{key: a, operator: In}}]\n"), "reboot.protected_namespaces.matchExpressions[0].values", Error),
        (format!("{BASE}{ONE_CP}reboot:\n  reboot_command: [r]\n  boot_check_command: [c]\n  protected_namespaces:\n    matchExpressions: [{{key: a, operator: Near}}]\n"), "reboot.protected_namespaces.matchExpressions[0].operator", Error),
        (format!("{BASE}{ONE_CP}repair:\n  repair_procedures: null\n  max_concurrent_repairs: 0\n"), "repair.max_concurrent_repairs", Error),
        (format!("{BASE}{ONE_CP}repair:\n  repair_procedures: [{{machine_types: null, repair_operations: null}}]\n"), "repair.repair_procedures[0].machine_types", Warning),
        (format!("{BASE}{ONE_CP}options:\n  kubelet:\n    cni_conf_file: {{name: '', content: '{{\"cniVersion\": \"1.0.0\"}}'}}\n"), "options.kubelet.cni_conf_file.name", Error),
        (format!("{BASE}{ONE_CP}options:\n  kubelet:\n    cni_conf_file: {{name: a.conf, content: '[]'}}\n"), "options.kubelet.cni_conf_file.content", Error),
        (node(", labels: null, taints: [null]"), "nodes[0].taints[0].key", Error),
        (format!("{BASE}{ONE_CP}repair:\n  repair_procedures:\n    - {{machine_types: [a], repair_operations: [{{operation: o, repair_steps: [{{repair_command: [x]}}], health_check_command: [h]}}]}}\n    - {{machine_types: [a], repair_operations: [{{operation: o, repair_steps: [{{repair_command: [x]}}], health_check_command: [h]}}]}}\n"), "repair.repair_procedures[1].machine_types[0]", Warning),
        (format!("{BASE}{ONE_CP}options:\n  etcd:\n    extra_env: {{'1BAD': x}}\n"), "options.etcd.extra_env[\"1BAD\"]", Warning),
        (format!("{BASE}{ONE_CP}options:\n  rivers:\n    extra_binds: [{{source: /a, destination: /b, propagation: sideways}}]\n"), "options.rivers.extra_binds[0].propagation", Warning),
        (format!("{BASE}{ONE_CP}options:\n  kube-api:\n    extra_binds: [{{source: /a, destination: /b, selinux_label: q}}]\n"), "options.kube-api.extra_binds[0].selinux_label", Warning),
        (format!("{BASE}{ONE_CP}options:\n  kube-api:\n    audit_log_policy: '[a'\n"), "options.kube-api.audit_log_policy", Error),
        (format!("{BASE}{ONE_CP}options:\n  kubelet:\n    config: [1]\n"), "options.kubelet.config", Error),
        (format!("{BASE}{ONE_CP}options:\n  kubelet:\n    config: {{apiVersion: kubelet.config.k8s.io/v1beta1, kind: KubeletConfiguration, clusterDomain: 'Not Valid'}}\n"), "options.kubelet.config.clusterDomain", Error),
        (format!("{BASE}{ONE_CP}options:\n  kubelet:\n    cni_conf_file: {{name: a.conf, content: 'not json'}}\n"), "options.kubelet.cni_conf_file.content", Error),
        (format!("{BASE}{ONE_CP}options:\n  kubelet:\n    boot_taints: [{{key: a, effect: Never}}]\n"), "options.kubelet.boot_taints[0].effect", Error),
        (format!("{BASE}{ONE_CP}options:\n  kube-scheduler:\n    config: 3\n"), "options.kube-scheduler.config", Error),
        (format!("{BASE}{ONE_CP}options:\n  kubelet:\n    unknown: 1\n"), "options.kubelet.unknown", Warning),
        (format!("{BASE}{ONE_CP}trusted_rest_mappings: [{{version: v1, kind: K, resource: ks}}, {{version: v1, kind: K, resource: other}}]\n"), "trusted_rest_mappings[1]", Error),
    ];
    for (text, path, says) in cases {
        match (read_cluster(&text, Mode::Declaration), says) {
            (Ok(d), Nothing) => assert!(d.warnings.is_empty(), "warnings for\n{text}\n{:?}", d.warnings),
            (Ok(d), Warning) => assert!(
                d.warnings.iter().any(|w| w.path == path),
                "no warning at {path:?} for\n{text}\n{:?}",
                d.warnings
            ),
            (Ok(_), Error) => panic!("accepted invalid input (expected error at {path}):\n{text}"),
            (Err(r), Error) => assert!(
                r.errors.has_path(path),
                "error for\n{text}\ndoes not name {path:?}: {}",
                r.errors
            ),
            (Err(r), _) => panic!("rejected valid input:\n{text}\n{}", r.errors),
        }
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let text = "name: ''\nservice_subnet: nope\nnodes:\n  - {address: x, user: ''}\n";
    let e = parse_cluster(text).unwrap_err();
    for p in ["name", "service_subnet", "nodes[0].address", "nodes[0].user"] {
        assert!(e.has_path(p), "missing {p}: {e}");
    }
}

fn testdata(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(rel)
}

#[test]
fn testdata_valid_files_parse() {
    for f in [
        "cluster.yml",
        "cluster-tutorial.yml",
        "cluster-full.yml",
        "cluster.json",
        "cluster-cke.json",
        "cluster-5.yml",
        "cluster-demo.yml",
        "cluster-demo-5.yml",
    ] {
        let text = std::fs::read_to_string(testdata(f)).unwrap();
        let c = parse_cluster(&text).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(!c.nodes.is_empty());
    }
    let full = parse_cluster(&std::fs::read_to_string(testdata("cluster-full.yml")).unwrap()).unwrap();
    assert_eq!(full.control_planes().count(), 3);
    assert_eq!(full.options.etcd.volume(), "etcd-data");
    assert_eq!(full.options.kubelet.cri(), "/var/run/k8s-containerd.sock");
    assert_eq!(full.nodes[3].nodename(), "10.0.1.21");
    assert!(full.options.kube_api.audit_log_enabled);
}

#[test]
fn cke_json_with_nulls_reads_as_empty_and_serializes_unchanged() {
    let text = std::fs::read_to_string(testdata("cluster-cke.json")).unwrap();
    let c = parse_cluster(&text).unwrap();
    assert_eq!(c.nodes.len(), 5);
    assert!(c.nodes[0].labels.is_empty() && c.nodes[0].annotations.is_empty() && c.nodes[0].taints.is_empty());
    assert_eq!(c.nodes[3].taints[0].key, "example.com/spare");
    assert_eq!(c.reboot, Some(Reboot::default()));
    assert_eq!(c.repair, Some(Repair::default()));
    assert_eq!(c.options.kubelet.cni_conf_file, Some(CniConfFile::default()));
    assert_eq!(c.options.kubelet.extra_args, vec!["--max-pods=110".to_string()]);
    assert!(c.options.etcd.is_empty());
    // Serialization leaves empty fields out (or writes []), never null; both forms read back equal.
    for out in [serde_json::to_string(&c).unwrap(), serde_yaml::to_string(&c).unwrap()] {
        assert!(!out.contains("null"), "{out}");
        assert_eq!(parse_cluster(&out).unwrap(), c);
    }
}

/// The first line of a sample: `# expect: PATH` (an error) or `# warn: PATH` (a warning).
fn first_line_path<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines()
        .next()
        .and_then(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("first line: {prefix}PATH"))
}

#[test]
fn testdata_invalid_files_name_their_field() {
    let mut n = 0;
    for entry in std::fs::read_dir(testdata("invalid")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = first_line_path(&text, "# expect: ");
        let e = parse_cluster(&text).expect_err(&format!("{} was accepted", path.display()));
        assert!(e.has_path(expect), "{}: expected {expect:?} in: {e}", path.display());
        n += 1;
    }
    assert!(n >= 15, "only {n} invalid samples");
}

#[test]
fn testdata_warning_files_are_valid_and_name_their_field() {
    let mut n = 0;
    for entry in std::fs::read_dir(testdata("warnings")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let expect = first_line_path(&text, "# warn: ");
        let d = read_cluster(&text, Mode::Declaration)
            .unwrap_or_else(|r| panic!("{} was refused: {}", path.display(), r.errors));
        assert!(
            d.warnings.iter().any(|w| w.path == expect),
            "{}: expected a warning at {expect:?}: {:?}",
            path.display(),
            d.warnings
        );
        n += 1;
    }
    assert!(n >= 7, "only {n} warning samples");
}

#[test]
fn constraints_defaults_set_and_check() {
    let c = Constraints::default();
    assert_eq!(c.control_plane_count, 1);
    assert_eq!(c.minimum_workers_rate, 80);
    let c3 = c.with("control-plane-count", "3").unwrap();
    assert_eq!(c3.control_plane_count, 3);
    assert!(c
        .with("control-plane-count", "0")
        .unwrap_err()
        .has_path("control-plane-count"));
    assert!(c
        .with("minimum-workers-rate", "101")
        .unwrap_err()
        .has_path("minimum-workers-rate"));
    assert!(c
        .with("maximum-repair-queue-entries", "-1")
        .unwrap_err()
        .has_path("maximum-repair-queue-entries"));
    assert!(c
        .with("control-plane-count", "three")
        .unwrap_err()
        .has_path("control-plane-count"));
    assert!(c.with("no-such", "1").unwrap_err().has_path("no-such"));
    let cluster = parse_cluster(&std::fs::read_to_string(testdata("cluster.yml")).unwrap()).unwrap();
    assert!(c3.check(&cluster).is_ok());
    assert!(c.check(&cluster).unwrap_err().has_path("nodes"));
    // CKE stores constraints as JSON with these keys.
    let json = serde_json::to_value(c3).unwrap();
    assert_eq!(json["control-plane-count"], 3);
    let back: Constraints = serde_json::from_str(r#"{"control-plane-count": 5}"#).unwrap();
    assert_eq!(back.minimum_workers_rate, 80);
}

#[test]
fn record_json_layout_matches_cke() {
    let r = Record {
        id: 42,
        status: RecordStatus::Running,
        operation: "etcd-bootstrap".into(),
        targets: vec!["10.0.0.1".into()],
        command: RecordCommand {
            name: "run-container".into(),
            target: "10.0.0.1".into(),
            detail: String::new(),
        },
        error: String::new(),
        leader: "host1".into(),
        start_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        end_at: None,
        results: None,
    };
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(v["id"], "42");
    assert_eq!(v["status"], "running");
    assert_eq!(v["start-at"], "2023-11-14T22:13:20Z");
    assert_eq!(Record::key_suffix(42), "000000000000002a");
    let back: Record = serde_json::from_value(v).unwrap();
    assert_eq!(back, r);
}

fn selector(yaml: &str) -> LabelSelector {
    serde_yaml::from_str(yaml).unwrap()
}

fn labels(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn label_selectors_match_as_kubernetes_and_render_its_query_syntax() {
    // (selector, labels, selected)
    let cases = [
        ("{}", vec![], true),
        ("{}", vec![("a", "1")], true),
        ("matchLabels: {a: '1'}", vec![("a", "1"), ("b", "2")], true),
        ("matchLabels: {a: '1'}", vec![("a", "2")], false),
        ("matchLabels: {a: '1'}", vec![], false),
        (
            "matchExpressions: [{key: a, operator: In, values: ['1', '2']}]",
            vec![("a", "2")],
            true,
        ),
        (
            "matchExpressions: [{key: a, operator: In, values: ['1']}]",
            vec![],
            false,
        ),
        (
            "matchExpressions: [{key: a, operator: NotIn, values: ['1']}]",
            vec![],
            true,
        ),
        (
            "matchExpressions: [{key: a, operator: NotIn, values: ['1']}]",
            vec![("a", "1")],
            false,
        ),
        ("matchExpressions: [{key: a, operator: Exists}]", vec![("a", "")], true),
        ("matchExpressions: [{key: a, operator: Exists}]", vec![], false),
        // CKE's mtest: Job pods without cke.cybozu.com/job-ok-to-delete are protected.
        (
            "matchExpressions: [{key: cke.cybozu.com/job-ok-to-delete, operator: DoesNotExist}]",
            vec![("cke.cybozu.com/job-ok-to-delete", "true")],
            false,
        ),
        (
            "matchExpressions: [{key: cke.cybozu.com/job-ok-to-delete, operator: DoesNotExist}]",
            vec![("job-name", "x")],
            true,
        ),
        // Every requirement must hold.
        (
            "{matchLabels: {a: '1'}, matchExpressions: [{key: b, operator: Exists}]}",
            vec![("a", "1")],
            false,
        ),
    ];
    for (sel, l, want) in cases {
        assert_eq!(selector(sel).matches(&labels(&l)), want, "{sel} on {l:?}");
    }
    assert_eq!(selector("{}").to_query(), "");
    assert_eq!(
        selector(
            "{matchLabels: {team: infra}, matchExpressions: [{key: tier, operator: NotIn, values: [b, a]}, \
             {key: app, operator: In, values: [x]}, {key: gone, operator: DoesNotExist}, {key: here, operator: Exists}]}"
        )
        .to_query(),
        "app in (x),!gone,here,team=infra,tier notin (a,b)"
    );
    // Unset reads as the empty selector: everything is selected (CKE's protected_namespaces and
    // protected_job_pods).
    assert!(LabelSelector::or_everything(&None).matches(&labels(&[("x", "y")])));
}

#[test]
fn protected_job_pods_is_read_and_validated_in_reboot_and_repair() {
    let full = parse_cluster(&std::fs::read_to_string(testdata("cluster-full.yml")).unwrap()).unwrap();
    let job_ok = labels(&[("cke.cybozu.com/job-ok-to-delete", "true")]);
    let reboot = full
        .reboot
        .unwrap()
        .protected_job_pods
        .expect("reboot.protected_job_pods");
    assert!(!reboot.matches(&job_ok) && reboot.matches(&labels(&[])));
    let repair = full
        .repair
        .unwrap()
        .protected_job_pods
        .expect("repair.protected_job_pods");
    assert!(repair.matches(&labels(&[("tier", "critical")])));
    for section in ["reboot", "repair"] {
        let text = format!(
            "name: x\nservice_subnet: 10.0.0.0/24\nnodes: [{{address: 10.0.0.1, user: core, control_plane: true}}]\n\
             {section}:\n  protected_job_pods:\n    matchExpressions: [{{key: a, operator: Sometimes}}]\n"
        );
        let e = parse_cluster(&text).unwrap_err();
        let path = format!("{section}.protected_job_pods.matchExpressions[0].operator");
        assert!(e.has_path(&path), "{path} in {e}");
    }
}

#[test]
fn reboot_entries_read_and_write_cke_json() {
    let cke = r#"{"index":"5","node":"10.69.0.4","status":"draining","last_transition_time":"2024-01-02T03:04:05Z","drain_backoff_count":2,"drain_backoff_expire":"2024-01-02T03:14:05Z"}"#;
    let e: RebootQueueEntry = serde_json::from_str(cke).unwrap();
    assert_eq!(e.index, 5);
    assert_eq!(e.status, RebootStatus::Draining);
    assert_eq!(e.drain_backoff_count, 2);
    assert_eq!(e.last_transition_time.unwrap().timestamp(), 1704164645);
    assert_eq!(serde_json::to_string(&e).unwrap(), cke);
    // Go's zero times, a numeric index, unknown fields (a later CKE) and nulls read too.
    let fresh = r#"{"index":7,"node":"10.69.0.5","status":"queued","last_transition_time":"0001-01-01T00:00:00Z","drain_backoff_expire":null,"future":1}"#;
    let e: RebootQueueEntry = serde_json::from_str(fresh).unwrap();
    assert_eq!(
        (e.index, e.last_transition_time, e.drain_backoff_expire),
        (7, None, None)
    );
    assert_eq!(
        serde_json::to_string(&e).unwrap(),
        r#"{"index":"7","node":"10.69.0.5","status":"queued","last_transition_time":"0001-01-01T00:00:00Z","drain_backoff_expire":"0001-01-01T00:00:00Z"}"#
    );
    for bad in [
        r#"{"index":"x","node":"a","status":"queued"}"#,
        r#"{"index":"1","node":"a","status":"rebooted"}"#,
        r#"{"index":"1","node":"a","status":"queued","last_transition_time":"yesterday"}"#,
    ] {
        assert!(serde_json::from_str::<RebootQueueEntry>(bad).is_err(), "{bad}");
    }
    let entries: Vec<RebootQueueEntry> = ["a", "b", "a", "c", "b"]
        .iter()
        .enumerate()
        .map(|(i, n)| RebootQueueEntry {
            index: i as i64,
            ..RebootQueueEntry::new(n)
        })
        .collect();
    let kept: Vec<i64> = dedup_reboot_entries(&entries).iter().map(|e| e.index).collect();
    assert_eq!(kept, [0, 1, 3], "the first entry of each node");
}

#[test]
fn drain_back_off_follows_cke() {
    // min(300 · 2^(count−1), 1200)
    let waits: Vec<i64> = (1..=6).map(drain_backoff_seconds).collect();
    assert_eq!(waits, [300, 600, 1200, 1200, 1200, 1200]);
    assert_eq!(drain_backoff_seconds(u32::MAX), 1200);
    let now = chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00.750Z")
        .unwrap()
        .with_timezone(&chrono::Utc);
    let mut e = RebootQueueEntry::new("10.0.0.1");
    e.transition(RebootStatus::Draining, now);
    assert_eq!(
        e.last_transition_time.unwrap().to_rfc3339(),
        "2024-01-01T00:00:00+00:00",
        "to the second"
    );
    e.back_off(now, 17);
    e.back_off(now, 0);
    assert_eq!((e.status, e.drain_backoff_count), (RebootStatus::Queued, 2));
    assert_eq!(
        serde_json::to_value(&e).unwrap()["drain_backoff_expire"],
        "2024-01-01T00:10:00Z",
        "600 s after the second failure, no jitter drawn"
    );
    assert!(e.backing_off(now) && !e.backing_off(now + chrono::Duration::seconds(600)));
}
