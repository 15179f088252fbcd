//! CKE's validation tables (`cluster_test.go`: testClusterValidate, testClusterValidateNode,
//! testClusterValidateReboot, testClusterValidateRepair, testValidateTrustedRESTMappings), ported
//! as data: one declaration per case under `testdata/cke-validation/<table>/`, each naming its CKE
//! case and CKE's verdict; `beyond/` holds one case per difference found beyond those tables, each
//! naming the CKE (or Go library) code that decides it; `testdata/cke/` holds CKE's own example,
//! mtest, sonobuoy and parse-test declarations. `tests/ckecli_cluster_validate.rs` runs the same
//! files through `ckecli cluster validate`.

use std::path::Path;

use cke_testkit::{verdict_cases, VerdictCase};

use super::*;

fn testdata(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
}

/// True when the schema reads `path` (`reboot.protected_job_pods`) as a known field.
fn schema_knows(path: &str) -> bool {
    let mut fields = schema::CLUSTER;
    let mut parts = path.split('.').peekable();
    while let Some(p) = parts.next() {
        let Some(f) = fields.iter().find(|f| f.name == p) else {
            return false;
        };
        if parts.peek().is_none() {
            return true;
        }
        match f.shape {
            schema::Shape::Struct(inner) => fields = inner,
            _ => return false,
        }
    }
    false
}

fn judge(c: &VerdictCase) -> Result<Declaration, Rejected> {
    let mode = if c.template { Mode::Template } else { Mode::Declaration };
    read_cluster(&c.text, mode)
}

fn check_case(c: &VerdictCase) {
    let name = format!("{} ({})", c.path.display(), c.source);
    let got = judge(c);
    let warnings = match &got {
        Ok(d) => &d.warnings,
        Err(r) => &r.warnings,
    };
    let pending: Vec<&String> = c.pending.iter().filter(|p| !schema_knows(p)).collect();
    for p in &pending {
        // Until the field is read, it is an unknown field, warned about and not judged.
        assert!(
            warnings
                .iter()
                .any(|w| &w.path == *p && w.reason.contains("unknown field")),
            "{name}: expected an unknown-field warning at {p}: {warnings:?}"
        );
    }
    let verdict_needs_pending = c
        .errors
        .iter()
        .any(|e| pending.iter().any(|p| e.starts_with(p.as_str())));
    if verdict_needs_pending {
        assert!(
            got.is_ok(),
            "{name}: rejected before its pending field is read: {got:?}"
        );
        return;
    }
    match (&got, c.valid) {
        (Ok(_), true) => {}
        (Ok(d), false) => panic!(
            "{name}: accepted, CKE refuses it ({:?}); warnings {:?}",
            c.errors, d.warnings
        ),
        (Err(r), true) => panic!("{name}: refused, CKE accepts it: {}", r.errors),
        (Err(r), false) => {
            for e in &c.errors {
                assert!(r.errors.has_path(e), "{name}: no error at {e}: {}", r.errors);
            }
        }
    }
    for w in &c.warns {
        assert!(
            warnings.iter().any(|x| &x.path == w),
            "{name}: no warning at {w}: {warnings:?}"
        );
    }
    if c.valid && c.warns.is_empty() && pending.is_empty() {
        assert!(warnings.is_empty(), "{name}: unexpected warnings {warnings:?}");
    }
}

fn check_dir(rel: &str, at_least: usize) {
    let cases = verdict_cases(&testdata(rel));
    assert!(cases.len() >= at_least, "{rel}: only {} cases", cases.len());
    for c in &cases {
        assert!(
            !c.source.is_empty() || rel == "cke",
            "{}: no `# source:`",
            c.path.display()
        );
        check_case(c);
    }
}

/// cluster_test.go testClusterValidate.
#[test]
fn cke_table_validate() {
    check_dir("cke-validation/validate", 23);
}

/// cluster_test.go testClusterValidateNode (including the template cases, `Validate(true)`).
#[test]
fn cke_table_validate_node() {
    check_dir("cke-validation/validate-node", 11);
}

/// cluster_test.go testClusterValidateReboot.
#[test]
fn cke_table_validate_reboot() {
    check_dir("cke-validation/validate-reboot", 11);
}

/// cluster_test.go testClusterValidateRepair.
#[test]
fn cke_table_validate_repair() {
    check_dir("cke-validation/validate-repair", 15);
}

/// cluster_test.go testValidateTrustedRESTMappings.
#[test]
fn cke_table_validate_trusted_rest_mappings() {
    check_dir("cke-validation/validate-trusted-rest-mappings", 7);
}

/// Differences found beyond CKE's tables, one case each (the source line names the deciding code).
#[test]
fn beyond_cke_tables() {
    check_dir("cke-validation/beyond", 50);
}

/// CKE's example, mtest and sonobuoy declarations, and its parse-test sample.
#[test]
fn cke_declarations() {
    check_dir("cke", 4);
}

/// cluster_test.go testClusterYAML: every field of CKE's sample is read (its Validate refuses the
/// sample, see `cke_declarations`).
#[test]
fn cke_parse_test_sample_is_read() {
    let text = std::fs::read_to_string(testdata("cke/cluster.yaml")).unwrap();
    let c = decode_cluster(&text).unwrap().cluster;
    assert_eq!(c.name, "test");
    let n = &c.nodes[0];
    assert_eq!(
        (n.address.as_str(), n.hostname.as_str(), n.user.as_str()),
        ("1.2.3.4", "host1", "cybozu")
    );
    assert!(n.control_plane);
    assert_eq!(n.labels["label1"], "value1");
    assert_eq!(c.control_plane_tolerations, ["foo.cybozu.com/transient"]);
    assert_eq!(c.service_subnet, "12.34.56.00/24");
    assert_eq!(c.dns_servers, ["1.1.1.1", "8.8.8.8"]);
    assert_eq!(c.dns_service, "kube-system/dns");
    let r = c.reboot.as_ref().unwrap();
    assert_eq!(
        (r.reboot_command.as_slice(), r.boot_check_command.as_slice()),
        (&["true".to_string()][..], &["false".to_string()][..])
    );
    assert_eq!(
        (
            r.eviction_timeout_seconds,
            r.max_concurrent_reboots,
            r.command_timeout_seconds
        ),
        (Some(60), Some(5), Some(120))
    );
    assert_eq!(
        (r.command_retries, r.command_interval, r.evict_retries, r.evict_interval),
        (Some(3), Some(30), Some(10), Some(3))
    );
    assert_eq!(r.protected_namespaces.as_ref().unwrap().match_labels["app"], "sample");
    let rp = c.repair.as_ref().unwrap();
    let proc_ = &rp.repair_procedures[0];
    assert_eq!(proc_.machine_types, ["Cray-1", "Cray-2"]);
    let op = &proc_.repair_operations[0];
    assert_eq!(op.operation, "unreachable");
    assert_eq!(op.repair_steps.len(), 2);
    let s = &op.repair_steps[0];
    assert_eq!(s.repair_command, ["reset", "remotely"]);
    assert_eq!(
        (
            s.command_timeout_seconds,
            s.command_retries,
            s.command_interval,
            s.need_drain,
            s.watch_seconds
        ),
        (Some(10), Some(1), Some(5), true, Some(60))
    );
    assert_eq!(op.health_check_command, ["knock"]);
    assert_eq!(op.command_timeout_seconds, Some(30));
    assert_eq!(rp.max_concurrent_repairs, Some(2));
    assert_eq!(
        rp.protected_namespaces.as_ref().unwrap().match_labels["app"],
        "protected"
    );
    assert_eq!(
        (rp.evict_retries, rp.evict_interval, rp.eviction_timeout_seconds),
        (Some(3), Some(5), Some(120))
    );
    let o = &c.options;
    assert_eq!(o.etcd.volume_name, "myetcd");
    assert_eq!(o.etcd.extra_args, ["arg1", "arg2"]);
    let b = &o.kube_api.extra_binds[0];
    assert_eq!(
        (
            b.source.as_str(),
            b.destination.as_str(),
            b.read_only,
            b.propagation.as_str(),
            b.selinux_label.as_str()
        ),
        ("src1", "target1", true, "shared", "z")
    );
    assert!(o.kube_api.audit_log_enabled);
    assert_eq!(
        o.kube_api.audit_log_policy,
        "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
    );
    assert_eq!(o.kube_controller_manager.extra_env["env1"], "val1");
    let sched = o.kube_scheduler.config.as_ref().unwrap();
    assert_eq!(sched["parallelism"], 999);
    assert_eq!(sched["podMaxBackoffSeconds"], 100);
    assert_eq!(sched["profiles"][0]["plugins"]["score"]["enabled"][0]["weight"], 500);
    assert_eq!(o.kube_proxy.config.as_ref().unwrap()["mode"], "iptables");
    assert_eq!(o.kube_proxy.extra_args, ["arg1"]);
    let k = &o.kubelet;
    assert_eq!(k.cri_endpoint, "/var/run/k8s-containerd.sock");
    let t = &k.boot_taints[0];
    assert_eq!(
        (t.key.as_str(), t.value.as_str(), t.effect.as_str()),
        ("taint1", "tainted", "NoExecute")
    );
    assert_eq!(k.extra_args, ["arg1"]);
    let cni = k.cni_conf_file.as_ref().unwrap();
    assert_eq!(cni.name, "99-loopback.conf");
    assert!(!cni.content.is_empty());
    assert!(!k.in_place_update);
    let kc = k.config.as_ref().unwrap();
    assert_eq!(kc["clusterDomain"], "my.domain");
    assert_eq!(kc["failSwapOn"], false);
    assert_eq!(kc["cgroupDriver"], "systemd");
    assert_eq!(kc["containerLogMaxSize"], "10Mi");
    assert_eq!(kc["containerLogMaxFiles"], 10);
}

/// The unknown-field warning names the key path and suggests the closest known key
/// (CKE's own mtest declaration carries this misspelling).
#[test]
fn unknown_fields_suggest_the_closest_key() {
    let text = std::fs::read_to_string(testdata("cke/mtest-cke-cluster.yml")).unwrap();
    let d = read_cluster(&text, Mode::Declaration).unwrap();
    let w = d
        .warnings
        .iter()
        .find(|w| w.path.ends_with("success_command_timeout_seconds"))
        .unwrap();
    assert_eq!(
        w.path,
        "repair.repair_procedures[0].repair_operations[0].success_command_timeout_seconds"
    );
    assert!(w.reason.contains("did you mean success_command_timeout?"), "{w}");
    for (key, want) in [
        ("adress", Some("address")),
        ("contol_plane", Some("control_plane")),
        ("zzz", None),
    ] {
        assert_eq!(schema::suggest(key, schema::NODE.iter().map(|f| f.name)), want, "{key}");
    }
}

/// What the YAML 1.1 reading and Go's decoding give, value by value.
#[test]
fn values_read_as_cke_reads_them() {
    let text = "name: t\nservice_subnet: 10.0.0.0/24\nnodes:\n  - {address: 10.0.0.1, user: core, control_plane: yes, labels: {zone: 1, enabled: yes, ratio: 1.10, empty: ~}}\nNAME: u\noptions:\n  kubelet:\n    cri_endpoint: null\n  etcd:\n    extra_args: [1, true]\n";
    let d = read_cluster(text, Mode::Declaration).unwrap();
    let c = &d.cluster;
    // Keys are decoded in byte order ("NAME" < "name"): the exact key is read last and wins.
    assert_eq!(c.name, "t");
    assert!(d.warnings.iter().any(|w| w.path == "NAME"));
    let n = &c.nodes[0];
    assert!(n.control_plane);
    assert_eq!(n.labels["zone"], "1");
    assert_eq!(n.labels["enabled"], "true");
    assert_eq!(n.labels["ratio"], "1.1");
    assert_eq!(n.labels["empty"], "");
    assert_eq!(c.options.kubelet.cri_endpoint, DEFAULT_CRI_ENDPOINT);
    assert_eq!(c.options.etcd.extra_args, ["1", "true"]);
    assert_eq!(c.options.etcd.volume_name, DEFAULT_ETCD_VOLUME_NAME);
}

/// The typed declaration and [`schema::CLUSTER`] name the same fields, struct by struct: a field
/// added to one must be added to the other.
#[test]
fn schema_matches_the_types() {
    use serde::de::{self, Visitor};
    struct Fields(std::cell::RefCell<Vec<&'static str>>);
    #[derive(Debug)]
    struct Stop;
    impl std::fmt::Display for Stop {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("stop")
        }
    }
    impl std::error::Error for Stop {}
    impl de::Error for Stop {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Stop
        }
    }
    impl<'de> de::Deserializer<'de> for &Fields {
        type Error = Stop;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
            Err(Stop)
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Stop> {
            self.0.borrow_mut().extend_from_slice(fields);
            Err(Stop)
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    fn fields_of<'de, T: serde::Deserialize<'de>>() -> Vec<&'static str> {
        let f = Fields(Default::default());
        let _ = T::deserialize(&f);
        let mut v = f.0.into_inner();
        v.sort();
        v
    }
    fn names(fields: &[schema::Field]) -> Vec<&'static str> {
        // timeAdded is read (and checked) but not kept.
        let mut v: Vec<&str> = fields.iter().map(|f| f.name).filter(|n| *n != "timeAdded").collect();
        v.sort();
        v
    }
    for (ty, want, got) in [
        ("Cluster", fields_of::<Cluster>(), names(schema::CLUSTER)),
        ("Node", fields_of::<Node>(), names(schema::NODE)),
        ("Taint", fields_of::<Taint>(), names(schema::TAINT)),
        (
            "LabelSelector",
            fields_of::<LabelSelector>(),
            names(schema::LABEL_SELECTOR),
        ),
        (
            "LabelSelectorRequirement",
            fields_of::<LabelSelectorRequirement>(),
            names(schema::SELECTOR_REQUIREMENT),
        ),
        ("Reboot", fields_of::<Reboot>(), names(schema::REBOOT)),
        ("Repair", fields_of::<Repair>(), names(schema::REPAIR)),
        (
            "RepairProcedure",
            fields_of::<RepairProcedure>(),
            names(schema::REPAIR_PROCEDURE),
        ),
        (
            "RepairOperation",
            fields_of::<RepairOperation>(),
            names(schema::REPAIR_OPERATION),
        ),
        ("RepairStep", fields_of::<RepairStep>(), names(schema::REPAIR_STEP)),
        (
            "SabakanSettings",
            fields_of::<SabakanSettings>(),
            names(schema::SABAKAN),
        ),
        (
            "TrustedRestMapping",
            fields_of::<TrustedRestMapping>(),
            names(schema::TRUSTED_REST_MAPPING),
        ),
        ("Options", fields_of::<Options>(), names(schema::OPTIONS)),
        ("Mount", fields_of::<Mount>(), names(schema::MOUNT)),
        ("ServiceParams", fields_of::<ServiceParams>(), names(schema::SERVICE)),
        ("EtcdParams", fields_of::<EtcdParams>(), names(schema::ETCD)),
        (
            "ApiServerParams",
            fields_of::<ApiServerParams>(),
            names(schema::API_SERVER),
        ),
        (
            "SchedulerParams",
            fields_of::<SchedulerParams>(),
            names(schema::SCHEDULER),
        ),
        ("ProxyParams", fields_of::<ProxyParams>(), names(schema::PROXY)),
        ("KubeletParams", fields_of::<KubeletParams>(), names(schema::KUBELET)),
        ("CniConfFile", fields_of::<CniConfFile>(), names(schema::CNI_CONF_FILE)),
    ] {
        assert_eq!(want, got, "{ty}: the serde fields and schema.rs differ");
    }
}
