//! `ckecli resource set|list|get|delete` against a real management etcd: multi-document YAML and
//! JSON, standard input, CKE's storage layout (the document as given at `resource/<key>`, revision =
//! its mod revision), and that bad input names the document and field, exits 2 and changes nothing.

use std::path::{Path, PathBuf};
use std::process::Output;

use cke::config::Config;
use cke::storage::{EtcdStorage, Storage};
use cke_testkit::{Ckecli, EtcdServer};

struct Env {
    _etcd: EtcdServer,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Env {
    fn new() -> Env {
        let etcd = EtcdServer::start();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, etcd.config_yaml("/cke/")).unwrap();
        Env {
            _etcd: etcd,
            dir,
            config,
        }
    }

    fn ckecli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), &self.config).run(args, stdin)
    }

    /// Runs and expects success; returns standard output.
    #[track_caller]
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.ckecli(args, stdin);
        assert!(
            o.status.success(),
            "{args:?}: exit {:?}\nstdout: {}\nstderr: {}",
            o.status.code(),
            out(&o),
            err(&o)
        );
        out(&o)
    }

    /// Writes a file in the test directory; returns its path.
    fn file(&self, name: &str, body: &str) -> String {
        let path = self.dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        path.to_str().unwrap().to_string()
    }

    async fn storage(&self) -> EtcdStorage {
        let text = std::fs::read_to_string(&self.config).unwrap();
        EtcdStorage::connect(&Config::parse(&text, Path::new(&self.config)).unwrap())
            .await
            .unwrap()
    }

    /// The store's revision: it moves with any write.
    async fn revision(&self) -> i64 {
        self.storage()
            .await
            .list_raw_with_revision("resource/", 0, false)
            .await
            .unwrap()
            .revision
    }

    fn keys(&self) -> Vec<String> {
        self.ok(&["resource", "list"], None).lines().map(String::from).collect()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const NAMESPACE: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: foo\n";
const SERVICE_ACCOUNT: &str =
    "# the app's account\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: sa\n  namespace: foo\n";
const ROLE: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: pod-reader\n  namespace: foo\nrules:\n- apiGroups: [\"\"]\n  resources: [\"pods\"]\n  verbs: [\"get\", \"watch\", \"list\"]\n";
const ROLE_BINDING: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: read-pods\n  namespace: foo\nsubjects:\n- kind: ServiceAccount\n  name: sa\n  namespace: foo\nroleRef:\n  kind: Role\n  name: pod-reader\n  apiGroup: rbac.authorization.k8s.io\n";
const CONFIG_MAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: conf\n  namespace: foo\ndata:\n  a: \"1\"\n";

fn multi_doc() -> String {
    // CKE's mtest order is not the order of application: the listing sorts by key.
    format!("---\n{ROLE_BINDING}---\n{CONFIG_MAP}---\n{SERVICE_ACCOUNT}--- # the role\n{ROLE}---\n{NAMESPACE}")
}

#[tokio::test]
async fn set_list_get_delete_yaml_json_and_stdin() {
    let env = Env::new();
    assert!(env.keys().is_empty(), "nothing registered yet");

    let file = env.file("resources.yml", &multi_doc());
    assert_eq!(
        env.ok(&["resource", "set", &file], None),
        "",
        "set prints nothing, as CKE's"
    );
    assert_eq!(
        env.keys(),
        [
            "ConfigMap/foo/conf",
            "Namespace/foo",
            "Role/foo/pod-reader",
            "RoleBinding/foo/read-pods",
            "ServiceAccount/foo/sa",
        ]
    );
    // `get` returns the exact document (trimmed, as CKE's), comments included.
    for (key, doc) in [
        ("Namespace/foo", NAMESPACE),
        ("ServiceAccount/foo/sa", SERVICE_ACCOUNT),
        ("Role/foo/pod-reader", ROLE),
        ("RoleBinding/foo/read-pods", ROLE_BINDING),
        ("ConfigMap/foo/conf", CONFIG_MAP),
    ] {
        assert_eq!(
            env.ok(&["resource", "get", key], None),
            format!("{}\n", doc.trim()),
            "{key}"
        );
    }
    // Stored as given at resource/<key>; the leader reads them in the order of application, each
    // with its key's mod revision.
    let storage = env.storage().await;
    let raw = storage.get_raw("resource/Namespace/foo").await.unwrap().unwrap();
    assert_eq!(raw.value, NAMESPACE.as_bytes());
    let defs = storage.list_resources().await.unwrap();
    let order: Vec<&str> = defs.iter().map(|d| d.key.as_str()).collect();
    assert_eq!(
        order,
        [
            "Namespace/foo",
            "ServiceAccount/foo/sa",
            "Role/foo/pod-reader",
            "RoleBinding/foo/read-pods",
            "ConfigMap/foo/conf",
        ]
    );
    assert_eq!(defs[0].revision, raw.mod_revision);

    // A changed document: stored again with a new revision (cke applies it again).
    let labelled = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: foo\n  labels:\n    team: a\n";
    let file = env.file("ns.yml", labelled);
    env.ok(&["resource", "set", &file], None);
    assert_eq!(env.ok(&["resource", "get", "Namespace/foo"], None), labelled);
    let after = storage.get_resource("Namespace/foo").await.unwrap().unwrap();
    assert!(after.1 > raw.mod_revision);

    // JSON: objects one after another, each stored as written; from standard input.
    let secret = r#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "foo"}, "stringData": {"k": "v"}}"#;
    let crd = "{\n  \"apiVersion\": \"apiextensions.k8s.io/v1\",\n  \"kind\": \"CustomResourceDefinition\",\n  \"metadata\": {\"name\": \"widgets.example.com\"}\n}";
    env.ok(&["resource", "set", "-"], Some(&format!("{secret}\n{crd}\n")));
    assert_eq!(
        env.ok(&["resource", "get", "Secret/foo/s"], None),
        format!("{secret}\n")
    );
    assert_eq!(
        env.ok(
            &["resource", "get", "CustomResourceDefinition/widgets.example.com"],
            None
        ),
        format!("{crd}\n")
    );
    // YAML from standard input.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: foo}\n";
    env.ok(&["resource", "set", "-"], Some(pod));
    assert_eq!(env.keys().len(), 8);

    // delete: the keys of the documents; a document never registered is only noted.
    let file = env.file(
        "del.yml",
        &format!(
            "{ROLE}---\n{CONFIG_MAP}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: never, namespace: foo}}\n"
        ),
    );
    let o = env.ckecli(&["resource", "delete", &file], None);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("ConfigMap/foo/never was not registered"),
        "{}",
        err(&o)
    );
    env.ok(&["resource", "delete", "-"], Some(&format!("{crd}\n---\n{pod}")));
    assert_eq!(
        env.keys(),
        [
            "Namespace/foo",
            "RoleBinding/foo/read-pods",
            "Secret/foo/s",
            "ServiceAccount/foo/sa"
        ]
    );

    // get: an unregistered key is "not found" (exit 1), a malformed one invalid input (exit 2).
    let o = env.ckecli(&["resource", "get", "Role/foo/pod-reader"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("Role/foo/pod-reader is not registered"), "{}", err(&o));
    let o = env.ckecli(&["resource", "get", "Role"], None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("Kind/name or Kind/namespace/name"), "{}", err(&o));
}

#[tokio::test]
async fn bad_input_names_document_and_field_and_changes_nothing() {
    let env = Env::new();
    let file = env.file("good.yml", &multi_doc());
    env.ok(&["resource", "set", &file], None);
    let keys = env.keys();
    let revision = env.revision().await;

    let nameless = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  namespace: foo\n";
    let changed_ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: foo\n  labels: {x: y}\n";
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "third document without a name",
            format!("{changed_ns}---\n{CONFIG_MAP}---\n{nameless}"),
            vec!["document 3: metadata.name: missing"],
        ),
        (
            "two bad documents",
            format!("kind: Namespace\nmetadata: {{name: a}}\n---\n{changed_ns}---\napiVersion: v1\nkind: [x\n"),
            vec![
                "2 documents are invalid",
                "document 1: apiVersion: missing",
                "document 3: not valid YAML",
            ],
        ),
        (
            "a broken JSON stream",
            "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"bar\"}}\n{\"apiVersion\": \"v1\",\n".to_string(),
            vec!["document 2: not valid JSON", "line 3"],
        ),
        (
            "not a mapping",
            format!("{changed_ns}---\n- a\n- b\n"),
            vec!["document 2: not a Kubernetes object"],
        ),
        (
            "a separator with content",
            format!("{changed_ns}--- kind: x\n"),
            vec!["line 6: invalid document separator"],
        ),
        (
            "a name with a slash",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: a/b}\n".to_string(),
            vec!["document 1: metadata.name: \"a/b\" contains '/'"],
        ),
    ];
    for (what, body, wants) in &cases {
        let file = env.file("bad.yml", body);
        for (args, stdin) in [
            (vec!["resource", "set", file.as_str()], None),
            (vec!["resource", "set", "-"], Some(body.as_str())),
            (vec!["resource", "delete", file.as_str()], None),
        ] {
            let o = env.ckecli(&args, stdin);
            assert_eq!(o.status.code(), Some(2), "{what} {args:?}: {}", err(&o));
            for want in wants {
                assert!(err(&o).contains(want), "{what} {args:?}: {want:?} not in {}", err(&o));
            }
            let source = if stdin.is_some() {
                "standard input"
            } else {
                file.as_str()
            };
            assert!(err(&o).contains(source), "{what} {args:?}: {}", err(&o));
        }
    }
    for (name, body) in [
        ("empty.yml", ""),
        ("comments.yml", "# nothing yet\n---\n--- # still nothing\n"),
    ] {
        let file = env.file(name, body);
        let o = env.ckecli(&["resource", "set", &file], None);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", err(&o));
        assert!(err(&o).contains(&format!("{file} is empty")), "{name}: {}", err(&o));
    }
    let o = env.ckecli(&["resource", "set", "/nonexistent/r.yml"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("/nonexistent/r.yml"), "{}", err(&o));

    assert_eq!(env.revision().await, revision, "bad input wrote or deleted something");
    assert_eq!(env.keys(), keys);
    assert_eq!(env.ok(&["resource", "get", "Namespace/foo"], None), NAMESPACE);
}
