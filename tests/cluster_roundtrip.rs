//! Property: any valid cluster survives YAML → store (real etcd) → get → YAML → parse unchanged.

use std::collections::BTreeMap;

use cke::config::Config;
use cke::model::*;
use cke::storage::{EtcdStorage, MemStorage, Storage};
use cke_testkit::EtcdServer;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

fn label_key() -> impl Strategy<Value = String> {
    ("(example\\.com/|team\\.io/)?", "[a-z][a-z0-9_.-]{0,10}[a-z0-9]").prop_map(|(p, n)| format!("{p}{n}"))
}

fn label_value() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "[A-Za-z0-9]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?"]
}

fn taint() -> impl Strategy<Value = Taint> {
    (label_key(), label_value(), prop::sample::select(TAINT_EFFECTS.to_vec())).prop_map(|(key, value, effect)| Taint {
        key,
        value,
        effect: effect.to_string(),
    })
}

fn service_params() -> impl Strategy<Value = ServiceParams> {
    (
        prop::collection::vec("--[a-z-]{1,12}=[a-z0-9]{1,6}", 0..3),
        prop::collection::vec(("/[a-z]{1,8}", "/[a-z]{1,8}", any::<bool>()), 0..2),
        prop::collection::btree_map("[A-Z_]{1,8}", "[ -~]{0,10}", 0..2),
    )
        .prop_map(|(extra_args, binds, extra_env)| ServiceParams {
            extra_args,
            extra_binds: binds
                .into_iter()
                .map(|(source, destination, read_only)| Mount {
                    source,
                    destination,
                    read_only,
                    ..Default::default()
                })
                .collect(),
            extra_env,
        })
}

fn cluster() -> impl Strategy<Value = Cluster> {
    let nodes = prop::collection::btree_set(1u8..=250, 1..8).prop_flat_map(|octets| {
        let n = octets.len();
        (
            Just(octets.into_iter().collect::<Vec<_>>()),
            prop::collection::vec(any::<bool>(), n),
            prop::collection::vec(prop::option::of("[a-z]([a-z0-9-]{0,8}[a-z0-9])?"), n),
            prop::collection::vec(prop::collection::btree_map(label_key(), label_value(), 0..3), n),
            prop::collection::vec(prop::collection::vec(taint(), 0..2), n),
        )
    });
    (
        "[a-z][a-z0-9-]{0,12}",
        nodes,
        (0u8..=255, 8u8..=28),
        prop::collection::vec((1u8..=254, 1u8..=254).prop_map(|(a, b)| format!("10.{a}.{b}.53")), 0..3),
        any::<bool>(),
        service_params(),
        service_params(),
        prop::option::of("[a-z]{1,8}"),
    )
        .prop_map(
            |(
                name,
                (octets, cps, hostnames, labels, taints),
                (net, bits),
                dns_servers,
                taint_cp,
                kubelet,
                etcd,
                vol,
            )| {
                let mut nodes: Vec<Node> = Vec::new();
                let mut used = std::collections::HashSet::new();
                for (i, o) in octets.iter().enumerate() {
                    let hostname = hostnames[i]
                        .clone()
                        .filter(|h| used.insert(h.clone()))
                        .unwrap_or_default();
                    nodes.push(Node {
                        address: format!("192.168.{}.{o}", i % 3),
                        hostname,
                        user: "core".into(),
                        control_plane: cps[i] || i == 0,
                        annotations: BTreeMap::from([("example.com/note".to_string(), format!("node {i}: ok"))]),
                        labels: labels[i].clone(),
                        taints: taints[i].clone(),
                    });
                }
                let mut options = Options::default();
                options.kubelet.extra_args = kubelet.extra_args;
                options.kubelet.extra_binds = kubelet.extra_binds;
                options.kubelet.extra_env = kubelet.extra_env;
                options.rivers = ServiceParams {
                    extra_args: vec![],
                    ..etcd.clone()
                };
                options.etcd.extra_args = etcd.extra_args;
                options.etcd.volume_name = vol.unwrap_or_default();
                Cluster {
                    name,
                    nodes,
                    taint_control_plane: taint_cp,
                    control_plane_tolerations: vec![],
                    service_subnet: format!("10.{net}.0.0/{bits}"),
                    dns_servers,
                    dns_service: String::new(),
                    reboot: None,
                    repair: None,
                    sabakan: None,
                    trusted_rest_mappings: vec![],
                    options,
                }
            },
        )
}

#[test]
fn valid_clusters_survive_yaml_store_get_parse() {
    let server = EtcdServer::start();
    let config = Config::parse(&server.config_yaml("/prop/"), std::path::Path::new("prop")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let etcd = rt.block_on(EtcdStorage::connect(&config)).unwrap();
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        ..ProptestConfig::default()
    });
    let result = runner.run(&cluster(), |c| {
        prop_assert!(
            c.validate().is_ok(),
            "generator produced an invalid cluster: {:?}",
            c.validate()
        );
        let yaml = cke::model::cluster_yaml(&c);
        let parsed = parse_cluster(&yaml).unwrap();
        prop_assert_eq!(&parsed, &c);
        let back = rt.block_on(async {
            etcd.put_cluster(&parsed).await.unwrap();
            etcd.get_cluster().await.unwrap().unwrap()
        });
        let again = parse_cluster(&cke::model::cluster_yaml(&back)).unwrap();
        prop_assert_eq!(&again, &c);
        // The in-memory double agrees with etcd.
        let mem = MemStorage::default();
        let from_mem = rt.block_on(async {
            mem.put_cluster(&c).await.unwrap();
            mem.get_cluster().await.unwrap().unwrap()
        });
        prop_assert_eq!(&from_mem, &c);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
