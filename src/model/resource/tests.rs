use std::collections::BTreeMap;

use base64::Engine;
use serde_json::json;

use super::*;

/// CKE's `TestParseResource` (resource_test.go before ff425114, whose cases it kept since).
#[test]
fn parse_resource_cke_cases() {
    let cases: &[(&str, &str, Option<&str>)] = &[
        (
            "Namespace",
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels:\n    app.kubernetes.io/instance: monitoring\n  name: monitoring\n",
            Some("Namespace/monitoring"),
        ),
        (
            "ServiceAccount",
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: coil-controller\n  namespace: kube-system\n",
            Some("ServiceAccount/kube-system/coil-controller"),
        ),
        (
            "ConfigMap",
            "kind: ConfigMap\napiVersion: v1\nmetadata:\n  name: coil-config\n  namespace: kube-system\ndata:\n  cni_netconf: |-\n    {\n        \"cniVersion\": \"0.3.1\",\n        \"name\": \"k8s-pod-network\"\n    }\n",
            Some("ConfigMap/kube-system/coil-config"),
        ),
        (
            "Service",
            "kind: Service\napiVersion: v1\nmetadata:\n  name: squid\n  namespace: internet-egress\nspec:\n  type: NodePort\n  selector:\n    app.kubernetes.io/name: squid\n  ports:\n    - protocol: TCP\n      nodePort: 30128\n      port: 3128\n      targetPort: 3128\n",
            Some("Service/internet-egress/squid"),
        ),
        (
            "PodSecurityPolicy",
            "apiVersion: policy/v1beta1\nkind: PodSecurityPolicy\nmetadata:\n  name: privileged\n  annotations:\n    seccomp.security.alpha.kubernetes.io/allowedProfileNames: '*'\nspec:\n  privileged: true\n  allowedCapabilities:\n  - '*'\n  hostPorts:\n  - min: 0\n    max: 65535\n  runAsUser:\n    rule: 'RunAsAny'\n",
            Some("PodSecurityPolicy/privileged"),
        ),
        (
            "NetworkPolicy",
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: test-network-policy\n  namespace: default\nspec:\n  podSelector:\n    matchLabels:\n      role: db\n  policyTypes:\n  - Ingress\n  - Egress\n  ingress:\n  - from:\n    - ipBlock:\n        cidr: 172.17.0.0/16\n        except:\n        - 172.17.1.0/24\n    ports:\n    - protocol: TCP\n      port: 6379\n",
            Some("NetworkPolicy/default/test-network-policy"),
        ),
        (
            "Role",
            "kind: Role\napiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  namespace: default\n  name: pod-reader\nrules:\n- apiGroups: [\"\"] # \"\" indicates the core API group\n  resources: [\"pods\"]\n  verbs: [\"get\", \"watch\", \"list\"]",
            Some("Role/default/pod-reader"),
        ),
        (
            "RoleBinding",
            "kind: RoleBinding\napiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  name: read-pods\n  namespace: default\nsubjects:\n- kind: User\n  name: jane # Name is case sensitive\n  apiGroup: rbac.authorization.k8s.io\nroleRef:\n  kind: Role #this must be Role or ClusterRole\n  name: pod-reader\n  apiGroup: rbac.authorization.k8s.io",
            Some("RoleBinding/default/read-pods"),
        ),
        (
            "ClusterRole",
            "kind: ClusterRole\napiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  # \"namespace\" omitted since ClusterRoles are not namespaced\n  name: secret-reader\nrules:\n- apiGroups: [\"\"]\n  resources: [\"secrets\"]\n  verbs: [\"get\", \"watch\", \"list\"]",
            Some("ClusterRole/secret-reader"),
        ),
        (
            "ClusterRoleBinding",
            "kind: ClusterRoleBinding\napiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  name: read-secrets-global\nsubjects:\n- kind: Group\n  name: manager\n  apiGroup: rbac.authorization.k8s.io\nroleRef:\n  kind: ClusterRole\n  name: secret-reader\n  apiGroup: rbac.authorization.k8s.io\n",
            Some("ClusterRoleBinding/read-secrets-global"),
        ),
        (
            "Deployment",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: coil-controllers\n  namespace: kube-system\n  labels:\n    app.kubernetes.io/name: coil-controllers\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: coil-controllers\n  template:\n    metadata:\n      name: coil-controllers\n      namespace: kube-system\n    spec:\n      hostNetwork: true\n      containers:\n        - name: controller\n          image: \"%%COIL_IMAGE%%\"\n          command:\n            - /coil-controller\n            - \"--etcd-endpoints=@cke-etcd\"\n      volumes:\n        - name: etcd-certs\n          secret:\n            secretName: coil-etcd-secrets\n            defaultMode: 0400\n",
            Some("Deployment/kube-system/coil-controllers"),
        ),
        (
            "DaemonSet",
            "kind: DaemonSet\napiVersion: apps/v1\nmetadata:\n  name: coil-node\n  namespace: kube-system\nspec:\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: coil-node\n  template:\n    spec:\n      tolerations:\n        - effect: NoSchedule\n          operator: Exists\n      containers:\n        - name: coild\n          env:\n            - name: COIL_NODE_NAME\n              valueFrom:\n                fieldRef:\n                  fieldPath: spec.nodeName\n          resources:\n            requests:\n              cpu: 250m\n",
            Some("DaemonSet/kube-system/coil-node"),
        ),
        (
            "CronJob",
            "kind: CronJob\napiVersion: batch/v2alpha1\nmetadata:\n  name: etcd-backup\n  namespace: kube-system\nspec:\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          containers:\n            - name: etcdbackup\n              image: quay.io/cybozu/etcd:3.3.12\n          restartPolicy: Never\n  schedule:  \"* 0 0 0 0\"\n",
            Some("CronJob/kube-system/etcd-backup"),
        ),
        ("No apiVersion", "kind: ConfigMap\nmetadata:\n  name: web\n  namespace: default\n", None),
        ("No kind", "apiVersion: v1\nmetadata:\n  name: web\n  namespace: default\n", None),
        ("No name", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: default\n", None),
    ];
    for (name, yaml, key) in cases {
        match (parse_resource(yaml.as_bytes()), key) {
            (Ok((got, info)), Some(want)) => {
                assert_eq!(&got, want, "{name}");
                assert_eq!(info.key(), got, "{name}");
            }
            (Err(_), None) => {}
            (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn parse_resource_reads_json_and_names_every_bad_field() {
    let (key, info) =
        parse_resource(br#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"}}"#).unwrap();
    assert_eq!(key, "ConfigMap/ns/a");
    assert_eq!(
        info,
        ResourceInfo {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("ns".into()),
            name: "a".into()
        }
    );
    // An empty namespace is a cluster-scoped key, as in CKE.
    let (key, info) = parse_resource(b"apiVersion: v1\nkind: Namespace\nmetadata: {name: n, namespace: ''}\n").unwrap();
    assert_eq!((key.as_str(), info.namespace), ("Namespace/n", None));

    let cases: &[(&str, &str)] = &[
        ("kind: ConfigMap\nmetadata: {name: a}\n", "apiVersion: missing"),
        (
            "apiVersion: ''\nkind: ConfigMap\nmetadata: {name: a}\n",
            "apiVersion: empty",
        ),
        (
            "apiVersion: 1\nkind: ConfigMap\nmetadata: {name: a}\n",
            "apiVersion: must be a string, not a number",
        ),
        ("apiVersion: v1\nmetadata: {name: a}\n", "kind: missing"),
        ("apiVersion: v1\nkind: ConfigMap\n", "metadata.name: missing"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: [a]\n",
            "metadata: must be a mapping, not a sequence",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a/b}\n",
            "metadata.name: \"a/b\" contains '/'",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x/y}\n",
            "metadata.namespace: \"x/y\" contains '/'",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: [x]}\n",
            "metadata.namespace: must be a string, not a sequence",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: null}\n",
            "metadata.name: missing",
        ),
        (
            "- apiVersion: v1\n",
            "not a Kubernetes object: the document is a sequence, not a mapping",
        ),
        (
            "just text\n",
            "not a Kubernetes object: the document is a string, not a mapping",
        ),
        ("", "not a Kubernetes object: the document is null, not a mapping"),
        ("apiVersion: v1\nkind: [unclosed\n", "not valid YAML: "),
        (
            "{\"apiVersion\": \"v1\",",
            "not valid JSON: EOF while parsing a value at line 1 column 20",
        ),
        (
            "metadata: {}\n",
            "apiVersion: missing; kind: missing; metadata.name: missing",
        ),
    ];
    for (doc, want) in cases {
        let err = parse_resource(doc.as_bytes()).unwrap_err().to_string();
        assert!(err.starts_with(want), "{doc:?}: {err:?} does not start with {want:?}");
    }
    assert!(matches!(
        parse_resource(b"apiVersion: v1\nkind: \xff\n"),
        Err(ResourceError::NotUtf8 { .. })
    ));
}

#[test]
fn decode_definition_converts_yaml_as_kubernetes_does() {
    let doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  labels: &l {x: y}\n  annotations:\n    <<: *l\n    z: w\ndata:\n  1: one\n  true: yes\n  f: 1.5\n  s: !!str 10\n";
    let v = decode_definition(doc).unwrap();
    assert_eq!(v["metadata"]["annotations"], json!({"x": "y", "z": "w"}));
    // Scalar keys become strings; YAML 1.2 keeps `yes` a string (Go's YAML 1.1 would make it true).
    assert_eq!(v["data"], json!({"1": "one", "true": "yes", "f": 1.5, "s": "10"}));
    let err = decode_definition(b"a:\n  ? [x]\n  : y\n").unwrap_err().to_string();
    assert!(err.starts_with("a: mapping key"), "{err}");
    let err = decode_definition(b"a: .nan\n").unwrap_err().to_string();
    assert!(err.contains("a: .nan cannot be represented in JSON"), "{err}");
    // A YAML flow mapping is not JSON, but fine.
    assert_eq!(decode_definition(b"{a: 1}").unwrap(), json!({"a": 1}));
}

fn def(kind: &str, namespace: Option<&str>, name: &str) -> ResourceDefinition {
    ResourceDefinition::new(
        ResourceInfo {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: namespace.map(Into::into),
            name: name.into(),
        },
        1,
        Vec::new(),
    )
}

#[test]
fn sort_resources_follows_cke_rank_then_key() {
    let mut res = vec![
        def("Deployment", Some("b"), "x"),
        def("ConfigMap", Some("a"), "c"),
        def("Secret", Some("a"), "s"),
        def("NetworkPolicy", Some("a"), "n"),
        def("RoleBinding", Some("a"), "rb"),
        def("Role", Some("a"), "r"),
        def("StorageClass", None, "sc"),
        def("ClusterRoleBinding", None, "crb"),
        def("ClusterRole", None, "cr"),
        def("CustomResourceDefinition", None, "crd"),
        def("ServiceAccount", Some("a"), "sa"),
        def("Namespace", None, "b"),
        def("Namespace", None, "a"),
        def("Deployment", Some("a"), "x"),
        def("ConfigMap", Some("a"), "b"),
        // A namespaced kind without namespace ranks as cluster-scoped (CKE reads the key).
        def("Pod", None, "p"),
        def("Pod", Some(""), "q"),
        def("Ingress", Some("a"), "i"),
    ];
    sort_resources(&mut res);
    let keys: Vec<&str> = res.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "Namespace/a",
            "Namespace/b",
            "ServiceAccount/a/sa",
            "CustomResourceDefinition/crd",
            "ClusterRole/cr",
            "ClusterRoleBinding/crb",
            "Pod/p",
            "Pod/q",
            "StorageClass/sc",
            "Role/a/r",
            "RoleBinding/a/rb",
            "NetworkPolicy/a/n",
            "Secret/a/s",
            "ConfigMap/a/b",
            "ConfigMap/a/c",
            "Deployment/a/x",
            "Deployment/b/x",
            "Ingress/a/i",
        ]
    );
    let ranks: Vec<u32> = res.iter().map(ResourceDefinition::rank).collect();
    assert_eq!(
        ranks,
        [10, 10, 20, 30, 40, 50, 1000, 1000, 1000, 2000, 2010, 2020, 2030, 2040, 2040, 3000, 3000, 3000]
    );
}

fn status(pairs: &[(&str, &str)]) -> ResourceStatus {
    ResourceStatus {
        annotations: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        has_been_ssa: true,
    }
}

#[test]
fn needs_update_as_cke() {
    let mut d = def("ConfigMap", Some("a"), "b");
    d.revision = 42;
    let rev = ANNOTATION_RESOURCE_REVISION;
    let img = ANNOTATION_RESOURCE_IMAGE;
    assert!(needs_update(&d, None), "absent");
    assert!(needs_update(&d, Some(&status(&[]))), "no revision");
    assert!(needs_update(&d, Some(&status(&[(rev, "41")]))), "older revision");
    assert!(needs_update(&d, Some(&status(&[(rev, "43")]))), "another revision");
    assert!(!needs_update(&d, Some(&status(&[(rev, "42")]))), "current");
    assert!(
        !needs_update(&d, Some(&status(&[(rev, "42"), (img, "x")]))),
        "no image in the definition: the image annotation does not matter"
    );
    d.image = Some("a:1,b:2".into());
    assert!(needs_update(&d, Some(&status(&[(rev, "42")]))), "no image annotation");
    assert!(
        needs_update(&d, Some(&status(&[(rev, "42"), (img, "a:1")]))),
        "another image"
    );
    assert!(
        !needs_update(&d, Some(&status(&[(rev, "42"), (img, "a:1,b:2")]))),
        "current image"
    );
    assert!(
        needs_update(&d, Some(&status(&[(rev, "41"), (img, "a:1,b:2")]))),
        "older revision, current image"
    );
    assert_eq!(d.to_string(), "ConfigMap/a/b@42");
}

#[test]
fn resource_keys_and_stored_definitions() {
    assert_eq!(
        parse_resource_key("Namespace/a").unwrap(),
        ("Namespace".into(), None, "a".into())
    );
    assert_eq!(
        parse_resource_key("ConfigMap/ns/a").unwrap(),
        ("ConfigMap".into(), Some("ns".into()), "a".into())
    );
    for bad in ["Namespace", "a/b/c/d", "ConfigMap//a", "/a", ""] {
        assert!(parse_resource_key(bad).is_err(), "{bad}");
    }
    let doc = b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: ns}\n".to_vec();
    let d = ResourceDefinition::from_stored("ConfigMap/ns/a", doc.clone(), 7).unwrap();
    assert_eq!(
        (d.kind.as_str(), d.api_version.as_str(), d.revision),
        ("ConfigMap", "v1", 7)
    );
    assert_eq!(
        (d.namespace.as_deref(), d.name.as_str(), d.image.as_ref()),
        (Some("ns"), "a", None)
    );
    assert_eq!(d.definition, doc);
    let err = ResourceDefinition::from_stored("ConfigMap/other/a", doc, 7).unwrap_err();
    assert_eq!(
        err.to_string(),
        "resource key \"ConfigMap/other/a\": the document stored there is ConfigMap/ns/a"
    );
}

fn texts(docs: &[Document]) -> Vec<(usize, usize, String)> {
    docs.iter()
        .map(|d| (d.number, d.line, String::from_utf8(d.text.clone()).unwrap()))
        .collect()
}

#[test]
fn split_yaml_documents_as_yaml_counts_them() {
    let input = "# leading comment\n---\na: 1\n--- # second\nb: 2\n---\n# only a comment\n---\n\n---\nc: |\n  --- not a separator\n...\n---\n";
    let docs = split_documents(input.as_bytes()).unwrap();
    assert_eq!(
        texts(&docs),
        [
            (1, 3, "a: 1\n".to_string()),
            (2, 5, "b: 2\n".to_string()),
            (5, 11, "c: |\n  --- not a separator\n...\n".to_string()),
        ]
    );
    // No separator at all: one document, kept whole; CRLF separators work.
    let docs = split_documents(b"# c\na: 1\n").unwrap();
    assert_eq!(texts(&docs), [(1, 1, "# c\na: 1\n".to_string())]);
    let docs = split_documents(b"a: 1\r\n---\r\nb: 2\r\n").unwrap();
    assert_eq!(
        texts(&docs),
        [(1, 1, "a: 1\r\n".to_string()), (2, 3, "b: 2\r\n".to_string())]
    );
    assert!(split_documents(b"").unwrap().is_empty());
    assert!(split_documents(b"---\n# nothing\n---\n").unwrap().is_empty());
    let err = split_documents(b"a: 1\n--- b: 2\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "line 2: invalid document separator \"--- b: 2\" (only a comment may follow ---)"
    );
}

#[test]
fn split_json_objects_one_after_another() {
    let input = "{\"a\": 1}\n  {\"b\": {\"c\": \"}\"}}{\"d\": 3}\n---\n# yaml comment\n{\"e\": 4}\n---\n{f: 5}\n";
    let docs = split_documents(input.as_bytes()).unwrap();
    assert_eq!(
        texts(&docs),
        [
            (1, 1, "{\"a\": 1}".to_string()),
            (2, 2, "{\"b\": {\"c\": \"}\"}}".to_string()),
            (3, 2, "{\"d\": 3}".to_string()),
            (4, 5, "{\"e\": 4}".to_string()),
            // A YAML flow mapping: one document, the whole part.
            (5, 7, "{f: 5}\n".to_string()),
        ]
    );
    let err = split_documents(b"{\"a\": 1}\n{\"b\": 2}\n{\"c\": \n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "document 3: not valid JSON: EOF while parsing a value at line 4 column 0"
    );
    let err = split_documents(b"---\n{\"a\": 1}\n  {\"b\" 2}\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "document 2: not valid JSON: expected `:` at line 3 column 8"
    );
}

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: foo\n";
const CM: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: foo\ndata:\n  k: v\n";

#[test]
fn parse_documents_keeps_each_document_and_names_bad_ones() {
    let input = format!("{NS}---\n{CM}---\n{{\"apiVersion\":\"v1\",\"kind\":\"Secret\",\"metadata\":{{\"name\":\"s\",\"namespace\":\"foo\"}}}}\n");
    let docs = parse_documents(input.as_bytes()).unwrap();
    let got: Vec<(usize, &str, &[u8])> = docs
        .iter()
        .map(|d| (d.number, d.key.as_str(), d.definition.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "Namespace/foo", NS.as_bytes()),
            (2, "ConfigMap/foo/c", CM.as_bytes()),
            (
                3,
                "Secret/foo/s",
                br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s","namespace":"foo"}}"#.as_slice()
            ),
        ]
    );

    let bad = format!("{NS}---\n{CM}---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: foo\n");
    let err = parse_documents(bad.as_bytes()).unwrap_err();
    assert_eq!(err.to_string(), "document 3: metadata.name: missing");

    let bad = format!("kind: Namespace\nmetadata: {{name: a}}\n---\n{NS}---\napiVersion: v1\nkind: [x\n");
    let err = parse_documents(bad.as_bytes()).unwrap_err().to_string();
    assert!(
        err.starts_with("2 documents are invalid:\n  document 1: apiVersion: missing\n  document 3: not valid YAML: "),
        "{err}"
    );
    // The YAML error names the line of the input, not of the document.
    assert!(err.contains("line 11"), "{err}");
}

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn set_revision_creates_what_is_missing() {
    let mut v = json!({"kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"x": "y"}}});
    set_revision(&mut v, 12).unwrap();
    assert_eq!(
        v["metadata"]["annotations"],
        json!({"x": "y", "cke.cybozu.com/revision": "12"})
    );
    let mut v = json!({"kind": "ConfigMap", "metadata": {"name": "a", "annotations": null}});
    set_revision(&mut v, 3).unwrap();
    assert_eq!(v["metadata"]["annotations"], json!({"cke.cybozu.com/revision": "3"}));
    let mut v = json!({"kind": "ConfigMap"});
    set_revision(&mut v, 3).unwrap();
    assert_eq!(v["metadata"]["annotations"]["cke.cybozu.com/revision"], "3");
    let mut v = json!({"metadata": {"annotations": ["x"]}});
    assert_eq!(
        set_revision(&mut v, 3).unwrap_err().to_string(),
        "metadata.annotations: must be a mapping"
    );
}

#[test]
fn webhook_configurations_get_the_ca_bundle() {
    for api in [
        "admissionregistration.k8s.io/v1",
        "admissionregistration.k8s.io/v1beta1",
    ] {
        for kind in ["ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"] {
            let mut v = json!({
                "apiVersion": api, "kind": kind,
                "metadata": {"name": "w", "annotations": {"cke.cybozu.com/inject-cacert": "true"}},
                "webhooks": [
                    {"name": "a", "clientConfig": {"service": {"name": "s", "namespace": "default"}, "caBundle": "old"}},
                    {"name": "b"},
                ],
            });
            assert!(wants_ca_bundle(&v), "{api} {kind}");
            inject_ca_bundle(&mut v, CA).unwrap();
            assert_eq!(v["webhooks"][0]["clientConfig"]["caBundle"], b64(CA));
            assert_eq!(v["webhooks"][0]["clientConfig"]["service"]["name"], "s");
            assert_eq!(v["webhooks"][1]["clientConfig"], json!({"caBundle": b64(CA)}));
            // The bundle decodes to the PEM itself, as CKE's []byte field does.
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(v["webhooks"][1]["clientConfig"]["caBundle"].as_str().unwrap())
                .unwrap();
            assert_eq!(decoded, CA.as_bytes());
        }
    }
    let annotated = |kind: &str, value: &str| json!({"kind": kind, "metadata": {"annotations": {"cke.cybozu.com/inject-cacert": value}}});
    assert!(!wants_ca_bundle(&annotated("ValidatingWebhookConfiguration", "false")));
    assert!(!wants_ca_bundle(&annotated("Secret", "true")));
    assert!(!wants_ca_bundle(&json!({"kind": "MutatingWebhookConfiguration"})));

    let mut v = json!({"apiVersion": "admissionregistration.k8s.io/v2", "kind": "MutatingWebhookConfiguration"});
    assert!(inject_ca_bundle(&mut v, CA)
        .unwrap_err()
        .to_string()
        .starts_with("apiVersion: "));
    let mut v = json!({"apiVersion": "v1", "kind": "Secret"});
    assert!(inject_ca_bundle(&mut v, CA)
        .unwrap_err()
        .to_string()
        .starts_with("kind: "));
    let mut v = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration", "webhooks": [{"clientConfig": "x"}]});
    assert_eq!(
        inject_ca_bundle(&mut v, CA).unwrap_err().to_string(),
        "webhooks[0].clientConfig: must be a mapping"
    );
    let mut v = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration"});
    inject_ca_bundle(&mut v, CA).unwrap();
    assert!(v.get("webhooks").is_none(), "no webhooks: nothing added");
}

#[test]
fn annotated_secrets_become_tls_secrets() {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "webhook-cert", "namespace": "ns", "annotations": {"cke.cybozu.com/issue-cert": "webhook-service"}},
        "type": "Opaque",
        "data": {"other": "eA=="},
    });
    assert_eq!(
        issue_cert_service(&v),
        Some(CertTarget {
            namespace: "ns".into(),
            service: "webhook-service".into()
        })
    );
    fill_tls_secret(&mut v, "CERT", "KEY").unwrap();
    assert_eq!(v["type"], "kubernetes.io/tls");
    assert_eq!(
        v["data"],
        json!({"other": "eA==", "tls.crt": b64("CERT"), "tls.key": b64("KEY")})
    );

    let mut v =
        json!({"kind": "Secret", "metadata": {"name": "s", "annotations": {"cke.cybozu.com/issue-cert": "svc"}}});
    assert_eq!(issue_cert_service(&v).unwrap().namespace, "default");
    fill_tls_secret(&mut v, "C", "K").unwrap();
    assert_eq!(v["data"], json!({"tls.crt": b64("C"), "tls.key": b64("K")}));

    assert_eq!(
        issue_cert_service(
            &json!({"kind": "ConfigMap", "metadata": {"annotations": {"cke.cybozu.com/issue-cert": "svc"}}})
        ),
        None
    );
    assert_eq!(
        issue_cert_service(&json!({"kind": "Secret", "metadata": {"annotations": {"cke.cybozu.com/issue-cert": ""}}})),
        None
    );
    assert_eq!(
        issue_cert_service(&json!({"kind": "Secret", "metadata": {"name": "s"}})),
        None
    );
    let mut v = json!({"kind": "Secret", "data": "x"});
    assert_eq!(
        fill_tls_secret(&mut v, "C", "K").unwrap_err().to_string(),
        "data: must be a mapping"
    );
}

#[test]
fn resource_status_round_trips() {
    let s = status(&[(ANNOTATION_RESOURCE_REVISION, "1")]);
    let text = serde_json::to_string(&s).unwrap();
    assert_eq!(
        text,
        r#"{"annotations":{"cke.cybozu.com/revision":"1"},"has_been_ssa":true}"#
    );
    assert_eq!(serde_json::from_str::<ResourceStatus>(&text).unwrap(), s);
    assert_eq!(
        serde_json::from_str::<ResourceStatus>("{}").unwrap(),
        ResourceStatus::default()
    );
}
