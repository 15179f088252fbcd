//! End to end on mtest node hosts: cke through the outages of its dependencies, and its secrets.
//!
//! One cluster serves every check: a node whose container engine hangs (its commands are killed on
//! the node at their deadline) and a node that accepts TCP but never finishes the SSH handshake do
//! not stop the others from being processed, `/health` names both, and both are taken in on their
//! own once they recover; OpenBao sealed, then stopped, while a declaration needs certificates: the
//! operations fail and are retried, `/health` says why, `/status` keeps answering, and the joins
//! complete once OpenBao is back; a pinned host key changed with `ckecli ssh-hostkey set` drops the
//! pooled connection to that node at once. At the end, no secret cke handled (SSH key, Vault tokens,
//! AppRole secret, the key files written on the nodes) appears in its log, its records, its status
//! or any of its HTTP answers, and every key file on the nodes is 0600 and owned by root.

mod e2e_common;

use std::time::{Duration, Instant};

use cke_testkit::{poll_until, Mtest, PersistentBao};
use e2e_common::*;

async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let resp = cke::infra::http_client_builder()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{port}{path}"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    let code = resp.status().as_u16();
    Some((code, resp.text().await.ok()?))
}

/// `/health`'s problems.
async fn problems(port: u16) -> Vec<String> {
    let Some((_, body)) = get(port, "/health").await else {
        return vec!["no answer".into()];
    };
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect()
}

/// Waits until `/health` lists a problem containing all of `words` (or none, with `present` false).
async fn until_problem(port: u16, words: &[&str], present: bool, limit: Duration) -> Vec<String> {
    poll_until(
        &format!(
            "/health problems {} {words:?}",
            if present { "with" } else { "without" }
        ),
        limit,
        Duration::from_millis(500),
        || async {
            let p = problems(port).await;
            let found = p.iter().any(|p| words.iter().all(|w| p.contains(w)));
            (found == present).then_some(p)
        },
    )
    .await
}

/// The declaration: `cps` control planes, every other of the five nodes a worker.
fn declare_with_workers(m: &Mtest, cps: &[usize]) {
    let mut yaml = cluster_yaml(m, cps, &[]);
    for i in (1..=5).filter(|i| !cps.contains(i)) {
        yaml.push_str(&format!(
            "  - {{address: {}, hostname: node{i}, user: root}}\n",
            m.node(i)
        ));
    }
    let n = cps.len().to_string();
    ok(m, &["constraints", "set", "control-plane-count", &n], None);
    ok(m, &["cluster", "set", "-"], Some(&yaml));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outages_of_nodes_vault_and_pins_and_no_secret_leaks() {
    let (m, dir) = mtest_up(5);
    let log = dir.path().join("cke.log");
    let mut bao = PersistentBao::start();
    // ckecli takes Vault from the `vault` key that init writes: this OpenBao, which can be sealed.
    let ckecli = m
        .ckecli(env!("CARGO_BIN_EXE_ckecli"))
        .env("VAULT_ADDR", &bao.addr)
        .env("VAULT_TOKEN", &bao.token);
    ckecli.ok(&["vault", "init"], None);
    ckecli.ok(&["vault", "ssh-privkey", m.ssh_key().to_str().unwrap()], None);
    declare_with_workers(&m, &[1, 2, 3]);

    // Node 4's container engine hangs; node 5's sshd is frozen (TCP accepted, no handshake).
    let hang = dir.path().join("hanging-engine");
    std::fs::write(&hang, "#!/bin/sh\nexec sleep 3607\n").unwrap();
    assert!(std::process::Command::new("chmod")
        .arg("755")
        .arg(&hang)
        .status()
        .unwrap()
        .success());
    let hang_path = hang.to_str().unwrap();
    assert!(m
        .run(&["exec", "4", "mount", "--bind", hang_path, "/usr/bin/podman"])
        .status
        .success());
    let sshd5 = std::fs::read_to_string(format!("{}/nodes/node5/sshd.pid", m.env["MTEST_DIR"]))
        .unwrap()
        .trim()
        .to_string();
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &sshd5])
        .status()
        .unwrap()
        .success());

    let port = cke_testkit::free_port();
    let _cke = start_cke_at(&m, "outages", &log, &[], &["--test-without-kubernetes"], port);
    let t0 = Instant::now();
    wait_members(&m, &[1, 2, 3], Duration::from_secs(240), &log).await;
    println!(
        "FIGURE bootstrap with a hung node and a stalled node: {:?}",
        t0.elapsed()
    );
    let p = until_problem(port, &[&m.node(4), "unreachable"], true, Duration::from_secs(60)).await;
    assert!(
        p.iter()
            .any(|p| p.contains(&m.node(5)) && p.contains("no answer within")),
        "{p:?}"
    );
    let (code, _) = get(port, "/health").await.unwrap();
    assert_eq!(code, 200, "node problems do not make cke unhealthy");
    assert!(get(port, "/status").await.is_some_and(|(c, _)| c == 200));
    // The hung commands are killed on node 4 at their deadline: they do not pile up pass after pass.
    // (Without the kill, one more is left by every probe: about one every 13 s.)
    tokio::time::sleep(Duration::from_secs(15)).await;
    let hung = cke_testkit::count_processes("[s]leep 3607");
    assert!(hung <= 2, "{hung} hung engine commands left on node 4");

    // Both recover on their own.
    assert!(m.run(&["exec", "4", "umount", "/usr/bin/podman"]).status.success());
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &sshd5])
        .status()
        .unwrap()
        .success());
    let t1 = Instant::now();
    poll_until(
        "rivers on nodes 4 and 5",
        Duration::from_secs(120),
        Duration::from_secs(1),
        || async { (running(&m, 4, "rivers") && running(&m, 5, "rivers")).then_some(()) },
    )
    .await;
    println!("FIGURE recovered nodes taken in after {:?}", t1.elapsed());
    until_problem(port, &["node "], false, Duration::from_secs(90)).await;

    // OpenBao sealed while node 4 joins the control plane: the join fails and is retried, /health
    // says Vault is sealed, /status answers; unsealed, the join completes by itself.
    bao.seal();
    until_problem(port, &["vault", "sealed"], true, Duration::from_secs(90)).await;
    declare_with_workers(&m, &[1, 2, 3, 4]);
    poll_until(
        "a join failing on Vault",
        Duration::from_secs(90),
        Duration::from_secs(1),
        || async {
            let p = problems(port).await;
            p.iter()
                .any(|p| p.starts_with("last pass") && p.contains("vault"))
                .then_some(())
        },
    )
    .await;
    assert!(get(port, "/status").await.is_some_and(|(c, _)| c == 200));
    bao.unseal();
    let t2 = Instant::now();
    wait_members(&m, &[1, 2, 3, 4], Duration::from_secs(180), &log).await;
    println!("FIGURE join completed {:?} after Vault was unsealed", t2.elapsed());
    until_problem(port, &["vault"], false, Duration::from_secs(90)).await;

    // OpenBao stopped while node 5 joins: the same, and a restart brings it back.
    bao.stop();
    until_problem(port, &["vault", "down"], true, Duration::from_secs(90)).await;
    declare_with_workers(&m, &[1, 2, 3, 4, 5]);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(get(port, "/status").await.is_some_and(|(c, _)| c == 200));
    assert_eq!(get(port, "/health").await.unwrap().0, 200);
    bao.start_again();
    let t3 = Instant::now();
    wait_members(&m, &[1, 2, 3, 4, 5], Duration::from_secs(180), &log).await;
    println!("FIGURE join completed {:?} after Vault restarted", t3.elapsed());

    // A pin changed by hand drops the pooled connection: node 1 pinned to node 2's key is refused at
    // once; pinned back, it is reachable again.
    let pins = ckecli.ok(&["ssh-hostkey", "list"], None);
    let key_of = |i: usize| {
        pins.lines()
            .filter_map(|l| l.split_once(' '))
            .find(|(a, _)| *a == m.node(i))
            .map(|(_, k)| k.trim().to_string())
            .unwrap_or_else(|| panic!("no pin for node{i} in {pins}"))
    };
    let (key1, key2) = (key_of(1), key_of(2));
    ckecli.ok(&["ssh-hostkey", "set", &m.node(1), &key2], None);
    until_problem(port, &[&m.node(1), "host key refused"], true, Duration::from_secs(90)).await;
    ckecli.ok(&["ssh-hostkey", "set", &m.node(1), &key1], None);
    until_problem(port, &[&m.node(1)], false, Duration::from_secs(90)).await;

    // Secrets stay secret.
    let mut secrets: Vec<(String, String)> = Vec::new();
    let pem_lines = |what: &str, text: &str, out: &mut Vec<(String, String)>| {
        for l in text.lines().filter(|l| l.len() >= 40 && !l.starts_with("-----")) {
            out.push((what.to_string(), l.to_string()));
        }
    };
    pem_lines(
        "the SSH private key",
        &std::fs::read_to_string(m.ssh_key()).unwrap(),
        &mut secrets,
    );
    secrets.push(("the Vault root token".into(), bao.token.clone()));
    let storage = {
        let text = std::fs::read_to_string(&m.env["CKE_CONFIG"]).unwrap();
        let cfg = cke::config::Config::parse(&text, std::path::Path::new(&m.env["CKE_CONFIG"])).unwrap();
        cke::storage::EtcdStorage::connect(&cfg).await.unwrap()
    };
    use cke::storage::Storage;
    let vault = storage.get_vault_config().await.unwrap().unwrap();
    secrets.push(("the AppRole secret id".into(), vault.secret_id.clone()));
    let mut key_files = 0;
    for i in 1..=5 {
        let o = m.run(&[
            "exec",
            &i.to_string(),
            "sh",
            "-c",
            "find /etc/etcd /etc/kubernetes -type f \\( -name '*.key' -o -name '*key*.pem' \\) | sort",
        ]);
        for path in String::from_utf8_lossy(&o.stdout).lines() {
            key_files += 1;
            let st = m.run(&["exec", &i.to_string(), "stat", "-c", "%a %U %G", path]);
            assert_eq!(
                String::from_utf8_lossy(&st.stdout).trim(),
                "600 root root",
                "node{i}:{path}"
            );
            let text = m.run(&["exec", &i.to_string(), "cat", path]);
            pem_lines(
                &format!("node{i}:{path}"),
                &String::from_utf8_lossy(&text.stdout),
                &mut secrets,
            );
        }
    }
    assert!(key_files >= 5, "only {key_files} key files found on the nodes");
    let mut places: Vec<(String, String)> = vec![
        ("the log".into(), std::fs::read_to_string(&log).unwrap()),
        ("the records".into(), ckecli.ok(&["history", "-n", "1000"], None)),
        ("ckecli status".into(), ckecli.ok(&["status"], None)),
    ];
    for path in [
        "/status",
        "/health",
        "/metrics",
        "/version",
        "/debug/vars",
        "/config",
        "/",
    ] {
        if let Some((_, body)) = get(port, path).await {
            places.push((format!("GET {path}"), body));
        }
    }
    for (what, secret) in &secrets {
        for (place, text) in &places {
            assert!(!text.contains(secret.as_str()), "{what} appears in {place}");
        }
    }
    println!(
        "FIGURE secrets checked: {} secret lines in {} places, {key_files} key files 0600 root",
        secrets.len(),
        places.len()
    );
}
