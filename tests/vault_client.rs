//! The Vault layer over vaultrs (`cke::infra::pki`): what it keeps of a client of its own, shown
//! against servers that misbehave on purpose (a sealed Vault, a proxy's pages, nothing listening)
//! and against a real OpenBao (token lookup, the request counters); and a check of the source that
//! no Vault URL path is built by hand outside the layer's commented exceptions.
//!
//! The misbehaving servers are in addition to the OpenBao suites (tests/vault.rs), never instead.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, Method, StatusCode};
use axum::response::IntoResponse;
use cke::infra::pki::{secrets, vault_init, Issuer, VaultClient, VaultError};
use cke::storage::{MemStorage, Storage};
use cke_testkit::BaoServer;

/// Tests here read process-wide counters: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Requests a fake server saw, by method.
#[derive(Default)]
struct Seen {
    reads: AtomicUsize,
    writes: AtomicUsize,
}

/// A server answering every request with `status`, `content_type` and `body`.
async fn fake_vault(status: u16, content_type: &'static str, body: &'static str) -> (String, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let s = seen.clone();
    let app = axum::Router::new().fallback(move |method: Method| {
        let s = s.clone();
        async move {
            if method == Method::GET || method.as_str() == "LIST" {
                s.reads.fetch_add(1, Ordering::SeqCst);
            } else {
                s.writes.fetch_add(1, Ordering::SeqCst);
            }
            (
                StatusCode::from_u16(status).unwrap(),
                [(header::CONTENT_TYPE, content_type)],
                body,
            )
                .into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), seen)
}

/// The value of a series of `/metrics`, 0 when it has none yet.
fn metric(series: &str) -> u64 {
    let text = cke::metrics::Metrics::default().render();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0, |v| v.parse::<f64>().unwrap() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_are_retried_on_5xx_and_writes_are_not() {
    let _g = SERIAL.lock().await;
    let (endpoint, seen) = fake_vault(503, "application/json", r#"{"errors":["Vault is sealed"]}"#).await;
    let client = VaultClient::with_token(&endpoint, "", "t").unwrap();

    let e = secrets::ssh_keys(&client).await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    // The error names the endpoint, the method and the path, and carries Vault's message.
    let text = e.to_string();
    for want in [endpoint.as_str(), "GET", "cke/secrets/ssh", "Vault is sealed"] {
        assert!(text.contains(want), "{want} missing from {text}");
    }
    assert_eq!(seen.reads.load(Ordering::SeqCst), 4, "a read is tried 1 + 3 times");

    // A write that reached Vault is never sent again: a retried `sign` or `root/generate` would
    // make a second certificate or CA.
    let e = Issuer::new(client).tidy().await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    assert_eq!(seen.writes.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_retried_when_they_were_never_sent() {
    let _g = SERIAL.lock().await;
    let port = cke_testkit::free_port();
    let client = VaultClient::with_token(&format!("http://127.0.0.1:{port}"), "", "t").unwrap();
    let (sent, failed) = (
        metric("cke_vault_requests_total{request=\"Tidy\"}"),
        metric("cke_vault_request_errors_total{request=\"Tidy\",kind=\"unreachable\"}"),
    );
    let e = Issuer::new(client).tidy().await.unwrap_err();
    assert!(e.is_connect(), "{e}");
    assert!(matches!(e, VaultError::Unreachable { .. }), "{e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    // Nothing listens: no attempt can have reached Vault, so all 1 + 3 are made and counted.
    assert_eq!(metric("cke_vault_requests_total{request=\"Tidy\"}") - sent, 4);
    assert_eq!(
        metric("cke_vault_request_errors_total{request=\"Tidy\",kind=\"unreachable\"}") - failed,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_that_are_not_vaults_are_errors() {
    let _g = SERIAL.lock().await;
    // A proxy's 404 page is not Vault saying "no such secret": read as "no keys", the next write
    // would drop every stored key.
    let (endpoint, seen) = fake_vault(404, "text/html", "<html>not found</html>").await;
    let client = VaultClient::with_token(&endpoint, "", "t").unwrap();
    let e = secrets::ssh_keys(&client).await.unwrap_err();
    assert!(matches!(e, VaultError::Unexpected { .. }), "{e:?}");
    assert!(e.to_string().contains("not Vault's"), "{e}");
    let e = secrets::put_ssh_private_key(&client, Some("10.0.0.9"), "KEY")
        .await
        .unwrap_err();
    assert!(matches!(e, VaultError::Unexpected { .. }), "{e:?}");
    assert_eq!(seen.writes.load(Ordering::SeqCst), 0);

    // A write answered 200 with a page did not happen at Vault.
    let (endpoint, seen) = fake_vault(200, "text/html", "<html>maintenance</html>").await;
    let client = VaultClient::with_token(&endpoint, "", "t").unwrap();
    let e = Issuer::new(client).tidy().await.unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");
    assert_eq!(seen.writes.load(Ordering::SeqCst), 1, "and it is not sent again");

    // Vault's own 404 (`{"errors":[]}`) is "nothing stored".
    let (endpoint, _) = fake_vault(404, "application/json", r#"{"errors":[]}"#).await;
    let client = VaultClient::with_token(&endpoint, "", "t").unwrap();
    assert!(secrets::ssh_keys(&client).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_lookup_and_request_counts_against_openbao() {
    let _g = SERIAL.lock().await;
    let bao = BaoServer::start();
    let root = VaultClient::with_token(&bao.addr, "", &bao.token).unwrap();
    let storage = MemStorage::default();
    vault_init(&root, &storage, "").await.unwrap();
    let config = storage.get_vault_config().await.unwrap().unwrap();
    let client = VaultClient::connect(&config).await.unwrap();

    let me = client.lookup().await.unwrap();
    assert!(me.policies.iter().any(|p| p == "cke"), "{:?}", me.policies);
    assert!(me.ttl > 0 && me.ttl <= 3600, "a periodic token of 1h: ttl {}", me.ttl);

    // One certificate is one Vault request (the CSR signed), counted by request type.
    let series = "cke_vault_requests_total{request=\"SignCertificate\"}";
    let before = metric(series);
    Issuer::new(client.clone())
        .issue_etcd_client("counted", Some(Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(metric(series) - before, 1);

    // A revoked token: one 403, one login, one retry, all counted.
    let logins = metric("cke_vault_requests_total{request=\"LoginWithApprole\"}");
    let o = bao.cli(&["token", "revoke", &client.token().await]);
    assert!(o.status.success());
    secrets::ssh_keys(&client).await.unwrap();
    assert_eq!(
        metric("cke_vault_requests_total{request=\"LoginWithApprole\"}") - logins,
        1
    );
    assert!(metric("cke_vault_request_errors_total{request=\"GetSecret\",kind=\"status\"}") >= 1);

    // A client made while Vault could not be reached (`connect_later`) logs in on its first
    // request; its health checks need no token and log nothing in.
    let later = VaultClient::connect_later(&config).unwrap();
    assert!(later.token().await.is_empty());
    let logins = metric("cke_vault_requests_total{request=\"LoginWithApprole\"}");
    later.health().await.unwrap();
    assert!(later.token().await.is_empty());
    secrets::ssh_keys(&later).await.unwrap();
    assert!(!later.token().await.is_empty());
    assert_eq!(
        metric("cke_vault_requests_total{request=\"LoginWithApprole\"}") - logins,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tells_sealed_from_down() {
    let _g = SERIAL.lock().await;
    let (endpoint, seen) = fake_vault(503, "application/json", r#"{"initialized":true,"sealed":true}"#).await;
    let client = VaultClient::with_token(&endpoint, "", "").unwrap();
    let e = client.health().await.unwrap_err();
    assert_eq!(e.status(), Some(503), "{e}");
    assert_eq!(seen.reads.load(Ordering::SeqCst), 1, "a health check is sent once");
    let port = cke_testkit::free_port();
    let client = VaultClient::with_token(&format!("http://127.0.0.1:{port}"), "", "").unwrap();
    assert!(client.health().await.unwrap_err().is_connect());
}

// ---- no hand-built Vault paths ----

/// Marks a string literal that names a Vault API path on purpose (on its line or up to three
/// lines above), with the reason.
const EXCEPTION: &str = "vault-path-exception:";

/// Whether a string literal looks like a Vault API path (or URL, or header).
fn vault_path_like(literal: &str) -> bool {
    let re = regex::Regex::new(concat!(
        r"^/?v1/|\}/v1/|X-Vault-",
        r"|(^|/)sys/(mounts|auth|polic(y|ies)|health|seal|unseal|init|leases|capabilities|wrapping)",
        r"|(^|/)auth/(approle|token|cert|kubernetes|userpass|ldap)",
        r"|(/|\})(roles|sign|sign-verbatim|issue|revoke|tidy|cert|root/generate|config/urls)(/|\{|$)",
        r"|/(role-id|secret-id|renew-self|lookup-self|login)$",
    ))
    .unwrap();
    re.is_match(literal)
}

/// `file`'s string literals that look like Vault paths and carry no exception mark, as
/// `file:line: literal`. Test modules and comments are not code.
fn hand_built(file: &Path, text: &str) -> Vec<String> {
    let code = &text[..text.find("#[cfg(test)]\nmod ").unwrap_or(text.len())];
    let lines: Vec<&str> = code.lines().collect();
    let literal = regex::Regex::new(r#""((?:[^"\\]|\\.)*)""#).unwrap();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let code_part = line.split("//").next().unwrap_or_default();
        for m in literal.captures_iter(code_part) {
            if !vault_path_like(&m[1]) {
                continue;
            }
            let marked = lines[i.saturating_sub(3)..=i].iter().any(|l| l.contains(EXCEPTION));
            if !marked {
                out.push(format!("{}:{}: {}", file.display(), i + 1, &m[0]));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_vault_path_is_built_by_hand() {
    // The check catches the shapes a hand-written client builds.
    for bad in [
        r#"let url = format!("{}/v1/{}", self.endpoint, path);"#,
        r#"self.send_once(Method::POST, "auth/approle/login", Some(&body), false)"#,
        r#"root.read("sys/mounts")"#,
        r#"let path = format!("{mount}/roles/{role}");"#,
        r#"let path = format!("{mount}/sign/{role}");"#,
        r#"&format!("{mount}/root/generate/internal")"#,
        r#"root.read("auth/approle/role/cke/role-id")"#,
        r#"req.header("X-Vault-Token", token)"#,
    ] {
        assert_eq!(hand_built(Path::new("sample.rs"), bad).len(), 1, "missed: {bad}");
    }
    for fine in [
        r#"#[serde(rename = "role-id")]"#,
        r#"binds.push("/sys/fs/cgroup");"#,
        r#"format!("cke/ca-{name}")"#,
        "// a comment naming \"sys/mounts\"",
    ] {
        assert!(hand_built(Path::new("sample.rs"), fine).is_empty(), "flagged: {fine}");
    }

    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 50, "{} files under src/", files.len());
    let found: Vec<String> = files
        .iter()
        .flat_map(|f| hand_built(f, &std::fs::read_to_string(f).unwrap()))
        .collect();
    assert!(
        found.is_empty(),
        "Vault paths built by hand (use vaultrs's request types, or mark an exception with `{EXCEPTION} why`):\n{}",
        found.join("\n")
    );
}
