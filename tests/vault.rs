//! Vault integration against a real OpenBao dev server and a real etcd: `vault init` (twice), issued
//! certificates checked with openssl against the CA stored in etcd, AppRole login with recovery after
//! the token is revoked, SSH keys, encryption keys, and bad input that changes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use cke::config::Config;
use cke::infra::pki::{requests, secrets, Issuer, VaultClient};
use cke::storage::{EtcdStorage, Storage, CA_NAMES};
use cke_testkit::{BaoServer, EtcdServer};
use std::sync::Arc;

struct Env {
    bao: BaoServer,
    _etcd: EtcdServer,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let etcd = EtcdServer::start();
        let bao = BaoServer::start();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(&config, etcd.config_yaml("/cke/")).unwrap();
        Env {
            bao,
            _etcd: etcd,
            config,
            dir,
        }
    }

    fn ckecli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ckecli"));
        cmd.arg("--config")
            .arg(&self.config)
            .args(args)
            .current_dir(self.dir.path());
        cmd.env("VAULT_ADDR", &self.bao.addr)
            .env("VAULT_TOKEN", &self.bao.token);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        if let Some(s) = stdin {
            child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    }

    async fn storage(&self) -> EtcdStorage {
        let text = std::fs::read_to_string(&self.config).unwrap();
        EtcdStorage::connect(&Config::parse(&text, &self.config).unwrap())
            .await
            .unwrap()
    }

    fn write(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        p.to_str().unwrap().to_string()
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}\n{}\n{}", o.status.code(), out(o), err(o));
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_twice_issue_and_verify_certificates() {
    let env = Env::new();
    let o = env.ckecli(&["vault", "init"], None);
    ok(&o);
    assert!(out(&o).contains("mounted PKI at cke/ca-server"));
    let storage = env.storage().await;
    let vault_before = storage.get_raw("vault").await.unwrap().expect("vault key");
    let mut cas_before = Vec::new();
    for n in CA_NAMES {
        cas_before.push(storage.get_raw(&format!("ca/{n}")).await.unwrap().unwrap());
    }

    // Second run: success, nothing changes.
    let o = env.ckecli(&["vault", "init"], None);
    ok(&o);
    assert!(out(&o).contains("nothing changed"), "{}", out(&o));
    assert_eq!(
        storage.get_raw("vault").await.unwrap().unwrap().mod_revision,
        vault_before.mod_revision
    );
    for (i, n) in CA_NAMES.iter().enumerate() {
        let now = storage.get_raw(&format!("ca/{n}")).await.unwrap().unwrap();
        assert_eq!(now.mod_revision, cas_before[i].mod_revision, "ca/{n} changed");
    }

    // Everything exists in Vault.
    let mounts = env.bao.cli(&["secrets", "list", "-format=json"]);
    let mounts: serde_json::Value = serde_json::from_slice(&mounts.stdout).unwrap();
    for n in CA_NAMES {
        assert_eq!(mounts[format!("cke/ca-{n}/")]["type"], "pki", "{n}");
        let role = env
            .bao
            .cli(&["read", "-format=json", &format!("cke/ca-{n}/roles/system")]);
        assert!(role.status.success(), "role system on {n}");
    }
    assert_eq!(mounts["cke/secrets/"]["type"], "kv");
    assert_eq!(mounts["cke/secrets/"]["options"]["version"], "1");
    let policy = env.bao.cli(&["policy", "read", "cke"]);
    assert!(String::from_utf8_lossy(&policy.stdout).contains("cke/*"));
    let role = env.bao.cli(&["read", "-format=json", "auth/approle/role/cke"]);
    let role: serde_json::Value = serde_json::from_slice(&role.stdout).unwrap();
    assert_eq!(role["data"]["token_policies"][0], "cke");
    assert!(role["data"]["token_period"].as_u64().unwrap() > 0, "periodic token");

    // Certificates verify against the CA stored in etcd and carry the requested names and TTL.
    let config = storage.get_vault_config().await.unwrap().unwrap();
    let issuer = Issuer::new(VaultClient::connect(&config).await.unwrap());
    let dir = env.dir.path();
    let check = |ca: &str, cert: &cke::infra::pki::IssuedCert, tag: &str| {
        std::fs::write(dir.join(format!("{tag}.ca")), ca).unwrap();
        std::fs::write(dir.join(format!("{tag}.crt")), &cert.certificate).unwrap();
        assert!(cert.private_key.contains("BEGIN PRIVATE KEY"), "PKCS#8 key expected");
        // The key (made locally, signed through a CSR) is the certificate's.
        std::fs::write(dir.join(format!("{tag}.key")), &cert.private_key).unwrap();
        let from_key = openssl(dir, &["pkey", "-in", &format!("{tag}.key"), "-pubout"]);
        let from_cert = openssl(dir, &["x509", "-in", &format!("{tag}.crt"), "-noout", "-pubkey"]);
        assert_eq!(
            from_key, from_cert,
            "{tag}: the private key does not match the certificate"
        );
        openssl(dir, &["verify", "-CAfile", &format!("{tag}.ca"), &format!("{tag}.crt")]);
        openssl(
            dir,
            &[
                "x509",
                "-in",
                &format!("{tag}.crt"),
                "-noout",
                "-text",
                "-subject",
                "-dates",
            ],
        )
    };
    let server_ca = storage.get_ca("server").await.unwrap().unwrap();
    let c = issuer.issue_etcd_server("10.0.0.1", "node1").await.unwrap();
    let text = check(&server_ca, &c, "etcd-server");
    for want in [
        "DNS:localhost",
        "DNS:node1",
        "IP Address:10.0.0.1",
        "IP Address:127.0.0.1",
        "CN = node1",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    let peer = issuer.issue_etcd_peer("10.0.0.2", "").await.unwrap();
    check(&storage.get_ca("etcd-peer").await.unwrap().unwrap(), &peer, "etcd-peer");
    let client_ca = storage.get_ca("etcd-client").await.unwrap().unwrap();
    let root = issuer
        .issue_etcd_client("root", Some(Duration::from_secs(7200)))
        .await
        .unwrap();
    let text = check(&client_ca, &root, "etcd-root");
    assert!(text.contains("CN = root"));
    let ttl = root.expiration - chrono::Utc::now().timestamp();
    assert!((7000..=7300).contains(&ttl), "root cert TTL {ttl}s, expected about 2h");
    let kubelet = issuer.issue_kubelet("10.0.0.3", "node3").await.unwrap();
    let text = check(
        &storage.get_ca("kubernetes").await.unwrap().unwrap(),
        &kubelet,
        "kubelet",
    );
    assert!(
        text.contains("O = system:nodes") && text.contains("CN = system:node:node3"),
        "{text}"
    );
    let k8s_ca = storage.get_ca("kubernetes").await.unwrap().unwrap();
    let api = issuer
        .issue_kube_apiserver("10.0.0.1", "10.68.0.1", "cluster.local")
        .await
        .unwrap();
    let text = check(&k8s_ca, &api, "apiserver");
    for want in [
        "CN = kubernetes",
        "DNS:localhost",
        "DNS:kubernetes.default.svc.cluster.local",
        "IP Address:127.0.0.1",
        "IP Address:10.0.0.1",
        "IP Address:10.68.0.1",
        "TLS Web Server Authentication",
        "TLS Web Client Authentication",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }

    // Every role cke uses exists after init, with CKE's organization.
    for spec in requests::ROLES {
        let o = env.bao.cli(&[
            "read",
            "-format=json",
            &format!("cke/ca-{}/roles/{}", spec.ca, spec.role),
        ]);
        assert!(o.status.success(), "role {} on {}", spec.role, spec.ca);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        if let Some(org) = spec.organization {
            assert_eq!(v["data"]["organization"][0], org, "{}", spec.role);
        }
    }
    // A missing role is created on first issue (as CKE's addRole).
    let o = env.bao.cli(&["delete", "cke/ca-kubernetes/roles/kube-proxy"]);
    assert!(o.status.success());
    // The Kubernetes certificates: CA, CN, O and key usages as CKE issues them.
    let aggregation_ca = storage.get_ca("kubernetes-aggregation").await.unwrap().unwrap();
    let webhook_ca = storage.get_ca("kubernetes-webhook").await.unwrap().unwrap();
    // (request, CA, tag, wanted in the text, unwanted in the text)
    type Case<'a> = (
        cke::infra::pki::IssueRequest,
        &'a str,
        &'a str,
        Vec<&'a str>,
        Vec<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (
            requests::kube_apiserver_etcd_client(),
            &client_ca,
            "apiserver-etcd-client",
            vec!["CN = kube-apiserver", "TLS Web Client Authentication"],
            vec!["TLS Web Server Authentication"],
        ),
        (
            requests::aggregation_client(),
            &aggregation_ca,
            "aggregation",
            vec!["CN = front-proxy-client", "TLS Web Client Authentication"],
            vec!["TLS Web Server Authentication"],
        ),
        (
            requests::kube_controller_manager(),
            &k8s_ca,
            "controller-manager",
            vec![
                "O = system:kube-controller-manager",
                "CN = system:kube-controller-manager",
            ],
            vec![],
        ),
        (
            requests::kube_scheduler(),
            &k8s_ca,
            "scheduler",
            vec!["O = system:kube-scheduler", "CN = system:kube-scheduler"],
            vec![],
        ),
        (
            requests::kube_proxy(),
            &k8s_ca,
            "proxy",
            vec!["O = system:node-proxier", "CN = system:kube-proxy"],
            vec![],
        ),
        (
            requests::service_account(),
            &k8s_ca,
            "service-account",
            vec!["CN = service-account", "Digital Signature, Certificate Sign"],
            vec!["TLS Web"],
        ),
        (
            requests::webhook("default", "webhook-service"),
            &webhook_ca,
            "webhook",
            vec![
                "CN = default/webhook-service",
                "DNS:webhook-service.default.svc",
                "TLS Web Server Authentication",
            ],
            vec!["TLS Web Client Authentication"],
        ),
    ];
    for (req, ca, tag, want, unwanted) in cases {
        let cert = issuer.issue(&req).await.unwrap_or_else(|e| panic!("{tag}: {e}"));
        let text = check(ca, &cert, tag);
        for w in want {
            assert!(text.contains(w), "{tag}: {w} missing:\n{text}");
        }
        for u in unwanted {
            assert!(!text.contains(u), "{tag}: {u} present:\n{text}");
        }
    }
    let o = env
        .bao
        .cli(&["read", "-format=json", "cke/ca-kubernetes/roles/kube-proxy"]);
    assert!(o.status.success(), "role kube-proxy re-created");
    issuer.tidy().await.unwrap();

    // ckecli etcd root-issue: JSON with the three fields; the certificate verifies.
    // `cluster set` checks the stored constraints, as CKE's does: three control planes.
    ok(&env.ckecli(&["constraints", "set", "control-plane-count", "3"], None));
    ok(&env.ckecli(
        &[
            "cluster",
            "set",
            concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cluster.yml"),
        ],
        None,
    ));
    let o = env.ckecli(&["etcd", "root-issue"], None);
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(v["ca_certificate"].as_str().unwrap(), server_ca);
    std::fs::write(dir.join("root.crt"), v["certificate"].as_str().unwrap()).unwrap();
    std::fs::write(dir.join("client.ca"), &client_ca).unwrap();
    openssl(dir, &["verify", "-CAfile", "client.ca", "root.crt"]);
    let o = env.ckecli(&["etcd", "issue", "--ttl", "1h", "--output", "file", "backup"], None);
    ok(&o);
    for f in ["etcd-backup.crt", "etcd-backup.key", "etcd-ca.crt"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dir.join("etcd-backup.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let text = openssl(dir, &["x509", "-in", "etcd-backup.crt", "-noout", "-subject"]);
    assert!(text.contains("CN = backup"));

    // ckecli kubernetes issue: a kubeconfig whose client cert carries the user and group.
    let o = env.ckecli(
        &[
            "kubernetes",
            "issue",
            "--user",
            "alice",
            "--group",
            "developers",
            "--ttl",
            "30m",
        ],
        None,
    );
    ok(&o);
    let kc: serde_yaml::Value = serde_yaml::from_str(&out(&o)).unwrap();
    assert_eq!(kc["clusters"][0]["cluster"]["server"], "https://10.66.0.11:6443");
    assert_eq!(kc["current-context"], "default");
    assert_eq!(kc["contexts"][0]["context"]["user"], "alice");
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            kc["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    assert_eq!(
        String::from_utf8(ca).unwrap(),
        storage.get_ca("kubernetes").await.unwrap().unwrap(),
        "the kubeconfig trusts the kubernetes CA, which signs the API servers' certificates"
    );
    let pem = base64::engine::general_purpose::STANDARD
        .decode(kc["users"][0]["user"]["client-certificate-data"].as_str().unwrap())
        .unwrap();
    std::fs::write(dir.join("alice.crt"), pem).unwrap();
    let text = openssl(dir, &["x509", "-in", "alice.crt", "-noout", "-subject", "-enddate"]);
    assert!(text.contains("CN = alice") && text.contains("O = developers"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_login_renewal_and_recovery_after_revocation() {
    let env = Env::new();
    ok(&env.ckecli(&["vault", "init"], None));
    let config = env.storage().await.get_vault_config().await.unwrap().unwrap();
    let client = VaultClient::connect(&config).await.unwrap();
    let lease = client.renew().await.unwrap();
    assert!(lease.as_secs() > 0);
    let first = client.token().await;
    // Revoke the token behind the client's back: the next call logs in again and succeeds.
    let o = env.bao.cli(&["token", "revoke", &first]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let issuer = Issuer::new(client.clone());
    issuer
        .issue_etcd_client("after-revoke", Some(Duration::from_secs(600)))
        .await
        .expect("recovered after revocation");
    assert_ne!(client.token().await, first, "a new token was obtained");
    // Concurrent use after another revocation: every call succeeds.
    env.bao.cli(&["token", "revoke", &client.token().await]);
    let calls = (0..8).map(|i| {
        let issuer = issuer.clone();
        async move {
            issuer
                .issue_etcd_client(&format!("u{i}"), Some(Duration::from_secs(600)))
                .await
        }
    });
    for r in futures::future::join_all(calls).await {
        r.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_keys_encryption_keys_and_bad_input() {
    let env = Env::new();
    // Vault unreachable: exit 1, nothing written to etcd.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ckecli"));
    let o = cmd
        .arg("--config")
        .arg(&env.config)
        .args(["vault", "init"])
        .env("VAULT_ADDR", "http://127.0.0.1:1")
        .env("VAULT_TOKEN", "root")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("127.0.0.1:1"), "{}", err(&o));
    let storage = env.storage().await;
    assert!(
        storage.list_raw("", 0, false).await.unwrap().is_empty(),
        "nothing may be written"
    );
    // A malformed address is a usage error.
    let o = Command::new(env!("CARGO_BIN_EXE_ckecli"))
        .arg("--config")
        .arg(&env.config)
        .args(["vault", "init", "--address", "vault:8200", "--token", "x"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));

    ok(&env.ckecli(&["vault", "init"], None));

    // SSH keys: default and per host; the daemon's loader picks the host's, else the default.
    let dir = env.dir.path();
    for name in ["default", "node2"] {
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(dir.join(name))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let default_key = std::fs::read_to_string(dir.join("default")).unwrap();
    let node2_key = std::fs::read_to_string(dir.join("node2")).unwrap();
    ok(&env.ckecli(&["vault", "ssh-privkey", dir.join("default").to_str().unwrap()], None));
    ok(&env.ckecli(&["vault", "ssh-privkey", "--host", "10.0.0.2", "-"], Some(&node2_key)));
    let config = storage.get_vault_config().await.unwrap().unwrap();
    let client = VaultClient::connect(&config).await.unwrap();
    assert_eq!(
        secrets::ssh_private_key(&client, "10.0.0.2").await.unwrap().unwrap(),
        node2_key
    );
    assert_eq!(
        secrets::ssh_private_key(&client, "10.0.0.9").await.unwrap().unwrap(),
        default_key
    );
    // Not a key / not an IP: exit 2, keys unchanged.
    let junk = env.write("junk", "not a key\n");
    let o = env.ckecli(&["vault", "ssh-privkey", "--host", "10.0.0.2", &junk], None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = env.ckecli(
        &[
            "vault",
            "ssh-privkey",
            "--host",
            "node2",
            dir.join("node2").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("host"));
    assert_eq!(
        secrets::ssh_private_key(&client, "10.0.0.2").await.unwrap().unwrap(),
        node2_key
    );

    // Encryption keys: init made the first; a new key becomes current, the previous one is kept,
    // older ones dropped. Stored as CKE's AESConfiguration JSON, named by RFC 3339 UTC time.
    let k0 = secrets::k8s_encryption_keys(&client).await.unwrap();
    assert_eq!(k0.len(), 1, "vault init makes the first key");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ok(&env.ckecli(&["vault", "enckey"], None));
    let k2 = secrets::k8s_encryption_keys(&client).await.unwrap();
    assert_eq!(k2.len(), 2);
    assert_eq!(k2[1], k0[0]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    ok(&env.ckecli(&["vault", "enckey"], None));
    let k3 = secrets::k8s_encryption_keys(&client).await.unwrap();
    assert_eq!(k3.len(), 2);
    assert_eq!(k3[1], k2[0]);
    assert!(
        chrono::DateTime::parse_from_rfc3339(&k3[0].name).is_ok() && k3[0].name.ends_with('Z'),
        "{}",
        k3[0].name
    );
    let raw = client.read(secrets::K8S_PATH).await.unwrap().unwrap();
    let aescbc = raw["data"]["aescbc"].as_str().unwrap();
    assert!(aescbc.starts_with(r#"{"keys":[{"name":""#), "{aescbc}");
    let yaml = cke::k8s::encryption::encryption_config(&k3).unwrap();
    assert!(yaml.contains("- secrets") && yaml.contains(&k3[0].secret), "{yaml}");
    use base64::Engine;
    assert_eq!(
        base64::engine::general_purpose::STANDARD
            .decode(&k3[0].secret)
            .unwrap()
            .len(),
        32
    );

    // CA commands: unknown name and unreadable PEM are refused, nothing written.
    let before = storage.get_raw("ca/server").await.unwrap().unwrap();
    let o = env.ckecli(&["ca", "get", "nosuch"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("unknown CA"));
    let bad = env.write(
        "bad.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let o = env.ckecli(&["ca", "set", "server", &bad], None);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let o = env.ckecli(&["ca", "set", "server", &junk], None);
    assert_eq!(o.status.code(), Some(2));
    let o = env.ckecli(&["ca", "set", "server", "/nonexistent.pem"], None);
    assert_eq!(o.status.code(), Some(2), "a missing file is invalid input");
    assert_eq!(
        storage.get_raw("ca/server").await.unwrap().unwrap().mod_revision,
        before.mod_revision
    );
    // A valid one round-trips.
    let pem = out(&env.ckecli(&["ca", "get", "kubernetes"], None));
    let f = env.write("k.pem", &pem);
    ok(&env.ckecli(&["ca", "set", "kubernetes-webhook", &f], None));
    assert_eq!(out(&env.ckecli(&["ca", "get", "kubernetes-webhook"], None)), pem);

    // vault config: bad JSON → 2; wrong credentials → 1; nothing stored either way.
    let before = storage.get_raw("vault").await.unwrap().unwrap();
    let o = env.ckecli(&["vault", "config", "-"], Some("{not json"));
    assert_eq!(o.status.code(), Some(2));
    let wrong = serde_json::json!({"endpoint": env.bao.addr, "ca-cert": "", "role-id": "nope", "secret-id": "nope"});
    let o = env.ckecli(&["vault", "config", "-"], Some(&wrong.to_string()));
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(
        storage.get_raw("vault").await.unwrap().unwrap().mod_revision,
        before.mod_revision
    );
    let good = serde_json::to_string(&config).unwrap();
    ok(&env.ckecli(&["vault", "config", "-"], Some(&good)));
}

/// A server that answers every request `200 OK` with an HTML page (a proxy's, say), and counts the
/// writes it receives.
async fn html_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let writes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = writes.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let w = w.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                if !buf[..n].starts_with(b"GET") {
                    w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                let body = "<html>maintenance</html>";
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), writes)
}

#[tokio::test]
async fn an_answer_that_is_not_vaults_never_leads_to_overwriting_secrets() {
    // Read as "no keys", the page would make put_ssh_private_key write a map with only the new key,
    // dropping every other node's key.
    let (endpoint, writes) = html_server().await;
    let client = VaultClient::with_token(&endpoint, "", "t").unwrap();
    let e = secrets::put_ssh_private_key(&client, Some("10.0.0.9"), "KEY")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not JSON"), "{e}");
    assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 0);
}
