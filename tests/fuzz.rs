//! Bounded fuzzing of everything cke reads from operators and from the network: the cluster.yml
//! reader and validator, the constraints, the resource documents of `ckecli resource set`, and the
//! HTTP endpoint (raw bytes over TCP, so the HTTP parser is fuzzed too). No input may panic, hang or
//! take unbounded memory; bad input gets an error.
//!
//! cargo-fuzz needs a nightly toolchain, which this project's machines do not have, so the targets
//! are proptest strategies (random text, mutations of real declarations and manifests, generated
//! YAML trees) run by a proptest runner. `make test` runs a few hundred cases of each; `make fuzz`
//! runs each for `FUZZ_SECONDS` (default 60). A failing case is saved in
//! `tests/fuzz.proptest-regressions` and replayed first on every later run; cases found so far are
//! also kept as named tests at the end of this file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};

/// Runs `test` on values of `strategy`: a few hundred cases, or for `FUZZ_SECONDS` when set.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: std::fmt::Debug,
{
    let budget = std::env::var("FUZZ_SECONDS")
        .ok()
        .map(|s| Duration::from_secs(s.parse().expect("FUZZ_SECONDS must be a number")));
    let start = Instant::now();
    let mut cases = 0;
    loop {
        let config = Config {
            cases: 256,
            source_file: Some(file!()),
            failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fuzz.proptest-regressions"
            )))),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed: {e}");
        }
        cases += 256;
        if budget.is_none_or(|b| start.elapsed() >= b) {
            break;
        }
    }
    println!("FIGURE fuzz {name}: {cases} cases in {:.1?}", start.elapsed());
}

fn testdata(name: &str) -> String {
    std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Characters that matter to YAML and JSON, plus a few ordinary ones.
const YAML_CHARS: &[char] = &[
    ':', '-', ' ', '\n', '\t', '[', ']', '{', '}', ',', '&', '*', '!', '|', '>', '\'', '"', '#', '%', '@', '`', '?',
    '<', '=', '~', '\\', 'a', 'z', '0', '9', '.', '/', 'é', '\u{feff}', '\u{0}',
];

/// Edits of a text: insert a YAML character, delete a range, duplicate a range, or cut it short.
#[derive(Debug, Clone)]
enum Edit {
    Insert(usize, char),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), proptest::sample::select(YAML_CHARS)).prop_map(|(p, c)| Edit::Insert(p, c)),
        2 => (any::<usize>(), 0usize..40).prop_map(|(p, n)| Edit::Delete(p, n)),
        2 => (any::<usize>(), 0usize..200).prop_map(|(p, n)| Edit::Duplicate(p, n)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        match *e {
            Edit::Insert(p, c) => {
                let i = at(p, chars.len());
                chars.insert(i, c);
            }
            Edit::Delete(p, n) => {
                let i = at(p, chars.len());
                let j = (i + n).min(chars.len());
                chars.drain(i..j);
            }
            Edit::Duplicate(p, n) => {
                let i = at(p, chars.len());
                let j = (i + n).min(chars.len());
                let copy: Vec<char> = chars[i..j].to_vec();
                chars.splice(j..j, copy);
            }
            Edit::Truncate(p) => chars.truncate(at(p, chars.len())),
        }
    }
    chars.into_iter().collect()
}

/// A real text with a few random edits.
fn mutated(texts: Vec<String>) -> impl Strategy<Value = String> {
    (proptest::sample::select(texts), proptest::collection::vec(edit(), 1..8)).prop_map(|(t, e)| apply(&t, &e))
}

/// Generated YAML trees whose keys are the declaration's own field names, so that they get past
/// the first field and into the validator.
fn yaml_tree() -> impl Strategy<Value = String> {
    let keys = proptest::sample::select(vec![
        "name",
        "nodes",
        "address",
        "hostname",
        "user",
        "control_plane",
        "labels",
        "annotations",
        "taints",
        "key",
        "value",
        "effect",
        "service_subnet",
        "dns_servers",
        "dns_service",
        "options",
        "etcd",
        "extra_args",
        "extra_binds",
        "extra_env",
        "volume_name",
        "kubelet",
        "kube-api",
        "rivers",
        "reboot",
        "repair",
        "audit_log_policy",
        "cri_endpoint",
        "boot_taints",
    ]);
    let leaf = prop_oneof![
        Just(serde_yaml::Value::Null),
        any::<bool>().prop_map(serde_yaml::Value::Bool),
        any::<i64>().prop_map(|i| serde_yaml::Value::Number(i.into())),
        any::<f64>().prop_map(|f| serde_yaml::Value::Number(f.into())),
        "[a-z0-9./:=-]{0,20}".prop_map(serde_yaml::Value::String),
        Just(serde_yaml::Value::String("10.0.0.1".into())),
        Just(serde_yaml::Value::String("10.68.0.0/16".into())),
        any::<String>().prop_map(serde_yaml::Value::String),
    ];
    let tree = leaf.prop_recursive(6, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_yaml::Value::Sequence),
            proptest::collection::vec((keys.clone(), inner), 0..6).prop_map(|kvs| {
                serde_yaml::Value::Mapping(
                    kvs.into_iter()
                        .map(|(k, v)| (serde_yaml::Value::String(k.to_string()), v))
                        .collect(),
                )
            }),
        ]
    });
    tree.prop_map(|v| serde_yaml::to_string(&v).unwrap_or_default())
}

fn declarations() -> Vec<String> {
    [
        "cluster.yml",
        "cluster-5.yml",
        "cluster-full.yml",
        "cluster-demo.yml",
        "cluster-tutorial.yml",
        "cluster.json",
        "cluster-cke.json",
    ]
    .iter()
    .map(|f| testdata(f))
    .collect()
}

/// The reader and validator: an error or a declaration, never a panic; an accepted declaration
/// survives its own round trip.
fn check_cluster(text: &str) -> Result<(), TestCaseError> {
    match cke::model::parse_cluster(text) {
        Ok(c) => {
            let json = serde_json::to_string(&c).unwrap();
            prop_assert!(cke::model::parse_cluster(&json).is_ok(), "{json}");
        }
        Err(e) => prop_assert!(!e.to_string().is_empty()),
    }
    Ok(())
}

#[test]
fn cluster_reader_and_validator() {
    let strategy = prop_oneof![
        3 => mutated(declarations()),
        2 => yaml_tree(),
        1 => any::<String>(),
    ];
    fuzz("cluster.yml", strategy, |text| check_cluster(&text));
}

#[test]
fn constraints() {
    let names = proptest::sample::select(
        cke::model::CONSTRAINT_NAMES
            .iter()
            .map(|s| s.to_string())
            .chain(["".into(), "control-plane-count ".into(), "x".into()])
            .collect::<Vec<_>>(),
    );
    let values = prop_oneof![
        any::<i64>().prop_map(|i| i.to_string()),
        "[-+ 0-9]{0,25}",
        any::<String>(),
    ];
    let json = mutated(vec![serde_json::to_string(&cke::model::Constraints::default()).unwrap()]);
    fuzz("constraints", (names, values, json), |(name, value, json)| {
        if let Ok(c) = cke::model::Constraints::default().with(&name, &value) {
            prop_assert!(c.validate().is_ok());
        }
        let _ = serde_json::from_str::<cke::model::Constraints>(&json).map(|c| c.validate());
        Ok(())
    });
}

fn manifests() -> Vec<String> {
    vec![
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: monitoring\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: monitoring\ndata:\n  a: |\n    x\n".into(),
        "{\"apiVersion\": \"v1\", \"kind\": \"ServiceAccount\", \"metadata\": {\"name\": \"s\", \"namespace\": \"kube-system\"}}\n{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"n\"}}\n".into(),
        "# comment\n---\nkind: Role\napiVersion: rbac.authorization.k8s.io/v1\nmetadata:\n  namespace: default\n  name: pod-reader\n  annotations:\n    cke.cybozu.com/revision: \"1\"\nrules:\n- apiGroups: [\"\"]\n  resources: [\"pods\"]\n  verbs: [\"get\", \"watch\", \"list\"]\n--- # end\n".into(),
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata:\n  name: w\n  annotations:\n    cke.cybozu.com/inject-cacert: \"true\"\nwebhooks:\n- name: a.example.com\n  clientConfig:\n    service: {name: s, namespace: n}\n".into(),
        "base: &b\n  kind: Namespace\n  apiVersion: v1\n<<: *b\nmetadata: {name: m}\n".into(),
    ]
}

#[test]
fn resource_documents() {
    let strategy = prop_oneof![
        4 => mutated(manifests()),
        1 => proptest::collection::vec(any::<u8>(), 0..2000).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        1 => (1usize..300).prop_map(|n| "---\nkind: Namespace\napiVersion: v1\nmetadata: {name: a}\n".repeat(n)),
    ];
    fuzz("resource documents", strategy, |text| {
        match cke::model::resource::parse_documents(text.as_bytes()) {
            Ok(docs) => {
                for d in docs {
                    prop_assert!(cke::model::parse_resource(&d.definition).is_ok());
                    prop_assert!(cke::model::resource::parse_resource_key(&d.key).is_ok(), "{}", d.key);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        let _ = cke::model::resource::parse_resource_key(&text);
        Ok(())
    });
}

/// The HTTP endpoint on a loopback port, counting panics of its tasks.
struct Endpoint {
    addr: std::net::SocketAddr,
    _rt: tokio::runtime::Runtime,
}

/// Panics on the endpoint's own threads (other tests of this process may panic on theirs).
static PANICS: AtomicUsize = AtomicUsize::new(0);
const SERVER_THREAD: &str = "fuzz-http-server";

fn endpoint() -> Endpoint {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(SERVER_THREAD)
        .enable_all()
        .build()
        .unwrap();
    let shared = Arc::new(cke::server::Shared::default());
    shared.set_problem("vault", Some("sealed".into()));
    // A healthy daemon, so that any 5xx is the endpoint's own failure.
    let beat = shared.clone();
    rt.spawn(async move {
        loop {
            beat.etcd_ok();
            beat.alive();
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move { axum::serve(listener, cke::server::router(shared)).await });
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some(SERVER_THREAD) {
            PANICS.fetch_add(1, Ordering::SeqCst);
        }
        previous(info);
    }));
    Endpoint { addr, _rt: rt }
}

/// Sends `request` as it is, closes the sending side, and reads the answer (at most 1 MiB, 2 s).
/// The server may close a half-closed connection without answering: any answer is accepted.
fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let _ = s.write_all(request);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.take(1 << 20).read_to_end(&mut out);
    out
}

fn http_request() -> impl Strategy<Value = Vec<u8>> {
    let method = proptest::sample::select(vec!["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "G\0T", ""]);
    let path = prop_oneof![
        proptest::sample::select(vec![
            "/health",
            "/status",
            "/version",
            "/metrics",
            "/",
            "*",
            "/status?x=1"
        ])
        .prop_map(String::from),
        "/[ -~]{0,300}",
        any::<String>(),
    ];
    let version = proptest::sample::select(vec!["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/9", ""]);
    let headers = proptest::collection::vec(("[!-~]{0,20}", "[ -~]{0,100}"), 0..8);
    let body = proptest::collection::vec(any::<u8>(), 0..512);
    let structured = (method, path, version, headers, body, any::<bool>()).prop_map(|(m, p, v, hs, body, chunked)| {
        let mut r = format!("{m} {p} {v}\r\nHost: x\r\n").into_bytes();
        for (k, val) in hs {
            r.extend_from_slice(format!("{k}: {val}\r\n").as_bytes());
        }
        if chunked {
            r.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\nzz\r\n");
        } else {
            r.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len() * 3).as_bytes());
        }
        r.extend_from_slice(&body);
        r
    });
    prop_oneof![4 => structured, 1 => proptest::collection::vec(any::<u8>(), 0..4096)]
}

#[test]
fn http_endpoint() {
    let e = endpoint();
    fuzz("http endpoint", http_request(), |req| {
        let answer = exchange(e.addr, &req);
        let text = String::from_utf8_lossy(&answer);
        // Whatever was asked, no answer is a server error (a HEAD /health once seemed one: this
        // test's daemon was not healthy, and a HEAD answer has no body to tell).
        if let Some(status) = text.strip_prefix("HTTP/1.1 ").and_then(|t| t.get(..3)) {
            prop_assert!(!status.starts_with('5'), "{text}");
        }
        prop_assert_eq!(PANICS.load(Ordering::SeqCst), 0);
        Ok(())
    });
    // Still serving (given time: on a loaded machine the answer may take longer than a case's 2 s).
    let mut s = TcpStream::connect(e.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    s.take(1 << 20).read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "after the fuzzing, GET /version answered {text:?}"
    );
    assert_eq!(PANICS.load(Ordering::SeqCst), 0);
}

// Cases found by the fuzzers, and the limits they led to, kept as plain tests.

#[test]
fn a_100_mib_declaration_is_refused_before_parsing() {
    let big = format!("name: x\nnodes: []\n# {}\n", "x".repeat(100 * 1024 * 1024));
    let e = cke::model::parse_cluster(&big).unwrap_err();
    assert!(e.to_string().contains("at most 4194304 bytes"), "{e}");
    let e = cke::model::resource::parse_documents(big.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("at most 4194304 bytes"), "{e}");
}

#[test]
fn deeply_nested_declarations_are_refused_with_a_clear_error() {
    for text in [
        format!("name: {}", "[".repeat(1_000_000)),
        format!("name: {}1{}", "{a: ".repeat(500), "}".repeat(500)),
    ] {
        // A megabyte of `[` kept the YAML parser busy for minutes before the nesting check.
        let e = cke::model::parse_cluster(&text).unwrap_err().to_string();
        assert!(e.contains("nests deeper than 128 levels"), "{e}");
    }
    // Deep block nesting, which no check before parsing sees, is refused by the reader at the same
    // depth.
    let block = format!(
        "nodes:\n{}",
        (0..1000).map(|i| format!("{}- \n", " ".repeat(i))).collect::<String>()
    );
    let e = cke::model::parse_cluster(&block).unwrap_err().to_string();
    assert!(e.contains("nests deeper than 128 levels"), "{e}");
    let e = cke::model::resource::parse_documents(format!("a: {}", "[".repeat(1_000_000)).as_bytes()).unwrap_err();
    assert!(
        e.to_string()
            .contains("line 1: the document nests deeper than 128 levels"),
        "{e}"
    );
}

#[test]
fn alias_bombs_are_refused_not_expanded() {
    // Nine lines that would expand to 10^9 nodes ("billion laughs").
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let cluster = format!("name: x\n{text}");
    let e = cke::model::parse_cluster(&cluster).unwrap_err().to_string();
    assert!(e.contains("excessive aliasing"), "{e}");
    let manifest = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n{text}");
    let e = cke::model::resource::parse_documents(manifest.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("repetition limit exceeded"), "{e}");
}

#[test]
fn many_documents_parse_in_linear_time() {
    // Each document used to be parsed behind as many blank lines as came before it, so an input of
    // many small documents cost time and memory quadratic in its size.
    let text = "---\nkind: Namespace\napiVersion: v1\nmetadata: {name: a}\n".repeat(20_000);
    let t0 = Instant::now();
    let docs = cke::model::resource::parse_documents(text.as_bytes()).unwrap();
    assert_eq!(docs.len(), 20_000);
    println!("FIGURE 20000 documents parsed in {:?}", t0.elapsed());
    // Line numbers in errors still name the input's line.
    let bad = format!(
        "{}---\nkind: [\n",
        "---\nkind: Namespace\napiVersion: v1\nmetadata: {name: a}\n".repeat(3)
    );
    let e = cke::model::resource::parse_documents(bad.as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("document 4") && e.contains("line 15"), "{e}");
}
