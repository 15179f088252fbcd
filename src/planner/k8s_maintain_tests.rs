//! Table tests of the `k8s-maintain` rules beyond the golden cases: the same code for every
//! Kubernetes minor of the version table, and reasons that say what would be applied and why (what
//! `/status` and `ckecli plan` show).

use super::tests::Fixture;
use super::*;
use crate::model::*;

/// A converged cluster of 3 control planes and a worker running `image`.
fn converged(image: &str) -> Fixture {
    let mut f = Fixture::new(3, 1).with_healthy_etcd();
    f.inputs.images.kubernetes = image.into();
    f.refresh_kube();
    f
}

fn op_named<'a>(p: &'a Plan, name: &str) -> Vec<&'a PlannedOp> {
    p.ops.iter().filter(|o| o.name() == name).collect()
}

#[test]
fn endpoint_slices_and_the_pdb_take_the_api_versions_of_the_running_minor() {
    for (image, slice_api, policy_api) in [
        (
            "localhost/cke-kubernetes:1.20.2",
            "discovery.k8s.io/v1beta1",
            "policy/v1beta1",
        ),
        ("ghcr.io/cybozu/kubernetes:1.35.5.1", "discovery.k8s.io/v1", "policy/v1"),
    ] {
        let f = converged(image);
        assert_eq!(f.plan().phase, Phase::Completed, "{image}");
        let slices = |p: &Plan| -> Vec<String> {
            p.ops
                .iter()
                .filter_map(|o| match &o.kind {
                    OpKind::KubeObject {
                        object: CkeObject::KubernetesEndpointSlice | CkeObject::EtcdEndpointSlice,
                        body,
                        ..
                    } => body["apiVersion"].as_str().map(str::to_string),
                    _ => None,
                })
                .collect()
        };
        // default/kubernetes (k8s-start, masterEndpointOps), then kube-system/cke-etcd and the PDB
        // (k8s-maintain).
        let mut f = converged(image);
        f.status.kubernetes.master_endpoint_slice = None;
        assert_eq!(slices(&f.plan()), [slice_api], "{image}");
        let mut f = converged(image);
        f.status.kubernetes.etcd_endpoint_slice = None;
        const PDB: &str = "PodDisruptionBudget/kube-system/cluster-dns-pdb";
        f.status.kubernetes.resources.remove(PDB);
        let p = f.plan();
        assert_eq!(slices(&p), [slice_api], "{image}");
        let pdb = static_definitions(&f.inputs)
            .into_iter()
            .find(|d| d.key == PDB)
            .unwrap();
        assert_eq!(pdb.api_version, policy_api, "{image}");
        assert_eq!(pdb.decode().unwrap()["apiVersion"], policy_api, "{image}");
        assert!(
            p.ops
                .iter()
                .any(|o| matches!(&o.kind, OpKind::ResourceApply { key, .. } if key == PDB)),
            "{image}: {:?}",
            p.ops
        );
    }
}

#[test]
fn k8s_maintain_reasons_say_what_would_be_applied_and_why() {
    let image = "localhost/cke-kubernetes:1.20.2";
    let mut f = converged(image);
    // A static resource missing, another at an old revision, a third with other images; a user
    // resource at another revision.
    let k = &mut f.status.kubernetes;
    k.resources.remove("ServiceAccount/kube-system/cke-cluster-dns");
    k.resources
        .get_mut("ClusterRole/system:cluster-dns")
        .unwrap()
        .annotations
        .insert("cke.cybozu.com/revision".into(), "1".into());
    k.resources
        .get_mut("DaemonSet/kube-system/node-dns")
        .unwrap()
        .annotations
        .insert("cke.cybozu.com/image".into(), "old/unbound:1,old/exporter:1".into());
    let doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: app}\n".to_vec();
    f.inputs.resources = vec![ResourceDefinition::from_stored("ConfigMap/app/settings", doc, 12).unwrap()];
    f.status.kubernetes.resources.insert(
        "ConfigMap/app/settings".into(),
        ResourceStatus {
            annotations: [("cke.cybozu.com/revision".to_string(), "10".to_string())].into(),
            has_been_ssa: true,
        },
    );
    // The cluster-dns ConfigMap is missing, the etcd endpoints list nobody.
    f.status.kubernetes.cluster_dns_config = None;
    f.status.kubernetes.etcd_endpoints.as_mut().unwrap().subsets.clear();
    // The worker's Node has a stale internal label and lacks its declared taint; a stray Node.
    f.cluster.nodes[3].taints.push(Taint {
        key: "dedicated".into(),
        value: "db".into(),
        effect: "NoSchedule".into(),
    });
    let worker = f.cluster.nodes[3].nodename().to_string();
    let kn = f.status.kubernetes.nodes.iter_mut().find(|n| n.name == worker).unwrap();
    kn.labels.insert("hoge.cke.cybozu.com/l".into(), "x".into());
    f.status.kubernetes.nodes.push(KubeNode {
        name: "10.0.0.99".into(),
        ready: true,
        ..Default::default()
    });

    let p = f.plan();
    assert_eq!(p.phase, Phase::K8sMaintain);
    let reasons: Vec<String> = p
        .ops
        .iter()
        .map(|o| format!("{} [{}]: {}", o.name(), o.targets().join(","), o.reason))
        .collect();
    let has = |needle: &str| {
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "no reason says {needle:?}:\n{}",
            reasons.join("\n")
        )
    };
    has("resource-apply [ServiceAccount/kube-system/cke-cluster-dns]: static resource ServiceAccount/kube-system/cke-cluster-dns does not exist");
    has("resource-apply [ClusterRole/system:cluster-dns]: static resource ClusterRole/system:cluster-dns is at revision 1, not ");
    has("resource-apply [DaemonSet/kube-system/node-dns]: static resource DaemonSet/kube-system/node-dns has images old/unbound:1,old/exporter:1, not localhost/cke-unbound:");
    has("resource-apply [ConfigMap/app/settings]: resource ConfigMap/app/settings is at revision 10, not 12");
    has("create-cluster-dns-configmap [10.0.0.1]: ConfigMap kube-system/cluster-dns is missing (domain cluster.local, upstreams none)");
    has("update-cke-etcd-endpoints [10.0.0.1]: Endpoints kube-system/cke-etcd differs: ready 10.0.0.1, 10.0.0.2, 10.0.0.3; not ready none");
    has(&format!(
        "update-node [{worker}]: labels, annotations or taints differ from the declaration: Node {worker}: remove label hoge.cke.cybozu.com/l, taint dedicated=db:NoSchedule"
    ));
    has("remove-node [10.0.0.99]: Nodes 10.0.0.99 belong to no declared node: cordon and delete them");
    // /status carries the operations as JSON: the resource key and revision, the object's body.
    let v = serde_json::to_value(&p.ops).unwrap();
    let apply = v
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"] == "ConfigMap/app/settings")
        .unwrap();
    assert_eq!(
        (apply["operation"].as_str(), apply["revision"].as_i64()),
        (Some("resource-apply"), Some(12))
    );
    let cm = v
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["object"] == "cluster-dns-config-map")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert!(
        cm["body"]["data"]["Corefile"].as_str().unwrap().contains(".:1053"),
        "{cm}"
    );
}

#[test]
fn an_update_node_reason_details_ten_nodes_and_counts_the_rest() {
    let mut f = Fixture::new(1, 12).with_healthy_etcd();
    for n in &mut f.cluster.nodes {
        n.labels.insert("zone".into(), "a".into());
    }
    let p = f.plan();
    let op = op_named(&p, "update-node")[0];
    assert_eq!(op.targets().len(), 13);
    assert_eq!(op.reason.matches("label zone=a").count(), 10, "{}", op.reason);
    assert!(op.reason.ends_with("; and 3 more Nodes"), "{}", op.reason);
}
