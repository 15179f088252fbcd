//! CKE's nine static resources: the cluster DNS (CoreDNS Deployment, its ServiceAccount, RBAC,
//! PodDisruptionBudget and Service), the node DNS (unbound DaemonSet) and the apiserver-to-kubelet
//! RBAC, as CKE's `pkg/compile_resources` compiles `static/*.yml` (cybozu-go/cke @ d66a146): each
//! document templated with the images, keyed `Kind/name` or `Kind/namespace/name`, with its
//! `cke.cybozu.com/revision` (and, for the DaemonSet and the Deployment, `cke.cybozu.com/image`)
//! annotation, in CKE's creation order (`SortResources`).
//!
//! The YAML files in `src/k8s/static/` are CKE's, unchanged. What differs by Kubernetes version is
//! applied to the parsed objects ([`static_resources`]). Pure: no I/O.

use serde::Deserialize;
use serde_json::Value;

use crate::model::kube_version::VersionSet;
use crate::topology::Images;

/// Annotation holding a resource's revision (CKE `cke.cybozu.com/revision`).
pub const REVISION_ANNOTATION: &str = "cke.cybozu.com/revision";
/// Annotation holding the images of a static DaemonSet or Deployment (CKE `cke.cybozu.com/image`).
pub const IMAGE_ANNOTATION: &str = "cke.cybozu.com/image";

/// CKE's `static/*.yml`, in the order `compile_resources` globs them (sorted file names); the final
/// order comes from the sort in [`static_resources`].
const STATIC_FILES: [(&str, &str); 3] = [
    ("cluster-dns.yml", include_str!("static/cluster-dns.yml")),
    ("node-dns.yml", include_str!("static/node-dns.yml")),
    ("rbac.yml", include_str!("static/rbac.yml")),
];

/// One static resource, as CKE's `ResourceDefinition` of `static.Resources`, with its object.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticResource {
    /// `Kind/name` (cluster-scoped) or `Kind/namespace/name` (CKE `ParseResource`).
    pub key: String,
    /// The object's kind.
    pub kind: String,
    /// The object's `apiVersion` (for the PodDisruptionBudget, the version set's `policy_api`).
    pub api_version: String,
    /// The namespace; `None` for cluster-scoped objects.
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
    /// `cke.cybozu.com/revision`: the object is applied when the live one's annotation differs.
    pub revision: i64,
    /// `cke.cybozu.com/image` (comma-separated when several, as CKE writes it): the object is also
    /// applied when the live one's annotation differs. `None` for objects without images.
    pub image: Option<String>,
    /// The object to apply (server-side apply, field manager `cke`), annotations included.
    pub object: Value,
}

/// The template variables of `static/*.yml` (CKE: the base name of each image of `AllImages`
/// before its tag) and the image each stands for.
fn template_images(images: &Images) -> [(&'static str, &str); 3] {
    [
        ("unbound_exporter", images.unbound_exporter.as_str()),
        ("coredns", images.coredns.as_str()),
        ("unbound", images.unbound.as_str()),
    ]
}

/// A placeholder that is a plain YAML scalar, so the documents parse before the images (which may
/// hold any character) are put into the parsed strings.
fn placeholder(var: &str) -> String {
    format!("cke-static-image-{var}-placeholder")
}

/// Replaces every `{{ .var }}` of CKE's templates by its placeholder.
fn with_placeholders(text: &str) -> String {
    let mut out = text.to_string();
    for var in ["unbound_exporter", "coredns", "unbound"] {
        out = out.replace(&format!("{{{{ .{var} }}}}"), &placeholder(var));
    }
    assert!(
        !out.contains("{{"),
        "a static resource template uses a variable cke does not know"
    );
    out
}

/// Puts the images into every string of a parsed object.
fn fill_images(v: &mut Value, images: &Images) {
    match v {
        Value::String(s) => {
            for (var, image) in template_images(images) {
                let p = placeholder(var);
                if s.contains(&p) {
                    *s = s.replace(&p, image);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|v| fill_images(v, images)),
        Value::Object(o) => o.values_mut().for_each(|v| fill_images(v, images)),
        _ => {}
    }
}

/// The documents of one YAML file, as JSON objects (empty documents skipped).
fn documents(file: &str, text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(&with_placeholders(text))
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("static/{file} does not parse: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// What differs from CKE's objects on an older Kubernetes (the version table says when):
/// the PodDisruptionBudget's group/version, and the node-dns DaemonSet's `maxSurge` (unknown before
/// 1.21; `maxUnavailable: 0` is then invalid, so it gets the default 1).
fn adapt_to_version(obj: &mut Value, version: &VersionSet) {
    match obj["kind"].as_str() {
        Some("PodDisruptionBudget") => obj["apiVersion"] = Value::from(version.policy_api),
        Some("DaemonSet") if !version.daemonset_max_surge => {
            if let Some(ru) = obj
                .pointer_mut("/spec/updateStrategy/rollingUpdate")
                .and_then(Value::as_object_mut)
            {
                ru.remove("maxSurge");
                ru.insert("maxUnavailable".into(), Value::from(1));
            }
        }
        _ => {}
    }
}

/// CKE's creation rank of a kind (`ResourceDefinition.rank`): Namespace 10, ServiceAccount 20, CRD
/// 30, ClusterRole 40, ClusterRoleBinding 50, other cluster-scoped 1000, Role 2000, RoleBinding 2010,
/// NetworkPolicy 2020, Secret 2030, ConfigMap 2040, other namespaced 3000.
fn rank(kind: &str, namespaced: bool) -> u32 {
    match kind {
        "Namespace" => 10,
        "ServiceAccount" => 20,
        "CustomResourceDefinition" => 30,
        "ClusterRole" => 40,
        "ClusterRoleBinding" => 50,
        "Role" => 2000,
        "RoleBinding" => 2010,
        "NetworkPolicy" => 2020,
        "Secret" => 2030,
        "ConfigMap" => 2040,
        _ if namespaced => 3000,
        _ => 1000,
    }
}

/// One parsed document as a [`StaticResource`] (CKE `compile_resources` `loadResources`).
fn resource(object: Value) -> StaticResource {
    let text = |ptr: &str| object.pointer(ptr).and_then(Value::as_str).map(str::to_string);
    let kind = text("/kind").expect("a static resource has a kind");
    let name = text("/metadata/name").expect("a static resource has a name");
    let api_version = text("/apiVersion").expect("a static resource has an apiVersion");
    let namespace = text("/metadata/namespace").filter(|n| !n.is_empty());
    let annotations = &object["metadata"]["annotations"];
    let revision = annotations[REVISION_ANNOTATION]
        .as_str()
        .and_then(|r| r.parse::<i64>().ok())
        .filter(|r| *r != 0)
        .unwrap_or_else(|| panic!("static resource {kind}/{name} has no {REVISION_ANNOTATION}"));
    let image = annotations[IMAGE_ANNOTATION].as_str().map(str::to_string);
    let key = match &namespace {
        Some(ns) => format!("{kind}/{ns}/{name}"),
        None => format!("{kind}/{name}"),
    };
    StaticResource {
        key,
        kind,
        api_version,
        namespace,
        name,
        revision,
        image,
        object,
    }
}

/// CKE's static resources for these images on this Kubernetes version, in CKE's creation order
/// (rank of the kind, then key).
pub fn static_resources(images: &Images, version: &VersionSet) -> Vec<StaticResource> {
    let mut all: Vec<StaticResource> = STATIC_FILES
        .iter()
        .flat_map(|(file, text)| documents(file, text))
        .map(|mut obj| {
            fill_images(&mut obj, images);
            adapt_to_version(&mut obj, version);
            resource(obj)
        })
        .collect();
    all.sort_by(|a, b| {
        (rank(&a.kind, a.namespace.is_some()), &a.key).cmp(&(rank(&b.kind, b.namespace.is_some()), &b.key))
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::kube_version::VERSION_SETS;

    fn v120() -> &'static VersionSet {
        VersionSet::exact(20).unwrap()
    }

    fn v135() -> &'static VersionSet {
        VersionSet::exact(35).unwrap()
    }

    fn images() -> Images {
        Images {
            coredns: "registry.example/dns/coredns:9.9.9".into(),
            unbound: "localhost/cke-unbound:1.17.1".into(),
            unbound_exporter: "localhost/cke-unbound-exporter:0.5.0".into(),
            ..Images::default()
        }
    }

    fn find<'a>(all: &'a [StaticResource], key: &str) -> &'a StaticResource {
        all.iter().find(|r| r.key == key).unwrap_or_else(|| panic!("no {key}"))
    }

    /// The keys, revisions and order of CKE's generated `static/resources.go`.
    #[test]
    fn nine_resources_in_ckes_order_with_ckes_revisions() {
        for v in &VERSION_SETS {
            let got: Vec<(String, i64)> = static_resources(&images(), v)
                .into_iter()
                .map(|r| (r.key, r.revision))
                .collect();
            let want = [
                ("ServiceAccount/kube-system/cke-cluster-dns", 1),
                ("ClusterRole/system:cluster-dns", 2),
                ("ClusterRole/system:kube-apiserver-to-kubelet", 2),
                ("ClusterRoleBinding/system:cluster-dns", 1),
                ("ClusterRoleBinding/system:kube-apiserver", 1),
                ("DaemonSet/kube-system/node-dns", 4),
                ("Deployment/kube-system/cluster-dns", 5),
                ("PodDisruptionBudget/kube-system/cluster-dns-pdb", 1),
                ("Service/kube-system/cluster-dns", 1),
            ];
            let want: Vec<(String, i64)> = want.iter().map(|(k, r)| (k.to_string(), *r)).collect();
            assert_eq!(got, want, "minor {}", v.minor);
        }
    }

    #[test]
    fn each_object_carries_its_key_revision_and_image() {
        let all = static_resources(&images(), v135());
        let mut keys: Vec<&str> = all.iter().map(|r| r.key.as_str()).collect();
        keys.dedup();
        assert_eq!(keys.len(), 9, "keys are unique");
        for r in &all {
            let o = &r.object;
            assert_eq!(o["kind"], r.kind.as_str());
            assert_eq!(o["apiVersion"], r.api_version.as_str());
            assert_eq!(o["metadata"]["name"], r.name.as_str());
            assert_eq!(o["metadata"]["namespace"].as_str(), r.namespace.as_deref());
            assert_eq!(
                o["metadata"]["annotations"][REVISION_ANNOTATION],
                r.revision.to_string().as_str(),
                "{}",
                r.key
            );
            assert_eq!(
                o["metadata"]["annotations"][IMAGE_ANNOTATION].as_str(),
                r.image.as_deref(),
                "{}",
                r.key
            );
            assert!(
                !serde_json::to_string(o).unwrap().contains("placeholder"),
                "{}: a template variable is left",
                r.key
            );
        }
        let with_image: Vec<&str> = all
            .iter()
            .filter(|r| r.image.is_some())
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(
            with_image,
            ["DaemonSet/kube-system/node-dns", "Deployment/kube-system/cluster-dns"]
        );
    }

    #[test]
    fn the_images_are_in_the_pods_and_the_annotations() {
        let img = images();
        let all = static_resources(&img, v135());
        let ds = find(&all, "DaemonSet/kube-system/node-dns");
        assert_eq!(
            ds.image.as_deref(),
            Some("localhost/cke-unbound:1.17.1,localhost/cke-unbound-exporter:0.5.0")
        );
        let containers = ds.object["spec"]["template"]["spec"]["containers"].as_array().unwrap();
        let by_name: Vec<(&str, &str)> = containers
            .iter()
            .map(|c| (c["name"].as_str().unwrap(), c["image"].as_str().unwrap()))
            .collect();
        assert_eq!(
            by_name,
            [
                ("unbound", img.unbound.as_str()),
                ("reload", img.unbound.as_str()),
                ("exporter", img.unbound_exporter.as_str()),
            ]
        );
        let deploy = find(&all, "Deployment/kube-system/cluster-dns");
        assert_eq!(deploy.image.as_deref(), Some(img.coredns.as_str()));
        assert_eq!(
            deploy.object["spec"]["template"]["spec"]["containers"][0]["image"],
            img.coredns.as_str()
        );
    }

    /// An image reference with characters YAML would read otherwise is kept as it is.
    #[test]
    fn images_are_not_parsed_as_yaml() {
        let img = Images {
            coredns: "r:5000/a: {b}#c".into(),
            ..images()
        };
        let all = static_resources(&img, v135());
        let deploy = find(&all, "Deployment/kube-system/cluster-dns");
        assert_eq!(deploy.image.as_deref(), Some("r:5000/a: {b}#c"));
        assert_eq!(
            deploy.object["spec"]["template"]["spec"]["containers"][0]["image"],
            "r:5000/a: {b}#c"
        );
    }

    #[test]
    fn api_versions_follow_the_kubernetes_version() {
        for (v, pdb) in [(v120(), "policy/v1beta1"), (v135(), "policy/v1")] {
            let all = static_resources(&images(), v);
            let got: Vec<(&str, &str)> = all.iter().map(|r| (r.kind.as_str(), r.api_version.as_str())).collect();
            assert_eq!(
                got,
                [
                    ("ServiceAccount", "v1"),
                    ("ClusterRole", "rbac.authorization.k8s.io/v1"),
                    ("ClusterRole", "rbac.authorization.k8s.io/v1"),
                    ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1"),
                    ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1"),
                    ("DaemonSet", "apps/v1"),
                    ("Deployment", "apps/v1"),
                    ("PodDisruptionBudget", pdb),
                    ("Service", "v1"),
                ],
                "minor {}",
                v.minor
            );
        }
    }

    #[test]
    fn the_daemonset_surges_only_where_kubernetes_knows_it() {
        let ru = |v: &VersionSet| {
            let all = static_resources(&images(), v);
            find(&all, "DaemonSet/kube-system/node-dns").object["spec"]["updateStrategy"]["rollingUpdate"].clone()
        };
        assert_eq!(ru(v135()), serde_json::json!({"maxSurge": "35%", "maxUnavailable": 0}));
        assert_eq!(ru(v120()), serde_json::json!({"maxUnavailable": 1}));
    }

    /// Spot checks of what CKE's YAML says, as parsed.
    #[test]
    fn objects_are_ckes() {
        let all = static_resources(&images(), v135());
        let svc = &find(&all, "Service/kube-system/cluster-dns").object;
        assert_eq!(svc["spec"]["ports"][0]["port"], 53);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 1053);
        assert_eq!(svc["spec"]["ports"][1]["protocol"], "TCP");
        let pdb = &find(&all, "PodDisruptionBudget/kube-system/cluster-dns-pdb").object;
        assert_eq!(pdb["spec"]["maxUnavailable"], 1);
        let deploy = &find(&all, "Deployment/kube-system/cluster-dns").object;
        assert_eq!(deploy["spec"]["replicas"], 2);
        assert_eq!(
            deploy["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"],
            "9153"
        );
        let ds = &find(&all, "DaemonSet/kube-system/node-dns").object;
        assert_eq!(ds["spec"]["template"]["spec"]["hostNetwork"], true);
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][2]["args"][0],
            format!("--unbound.host=unix://{}", super::super::dns::UNBOUND_CONTROL_SOCKET)
        );
        let role = &find(&all, "ClusterRole/system:kube-apiserver-to-kubelet").object;
        assert_eq!(role["rules"][0]["apiGroups"], serde_json::json!([""]));
        assert_eq!(role["rules"][0]["verbs"], serde_json::json!(["*"]));
        assert_eq!(
            role["metadata"]["annotations"]["rbac.authorization.kubernetes.io/autoupdate"],
            "true"
        );
    }

    #[test]
    fn ranks_are_ckes() {
        assert!(rank("ServiceAccount", true) < rank("ClusterRole", false));
        assert!(rank("ClusterRoleBinding", false) < rank("PodDisruptionBudget", false));
        assert_eq!(rank("DaemonSet", true), 3000);
        assert_eq!(rank("PriorityClass", false), 1000);
    }
}
