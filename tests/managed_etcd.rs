//! The managed-etcd client against a real TLS etcd cluster on loopback addresses (127.X.Y.11..):
//! bootstrap health, RBAC, a learner-first join with promotion, and removal.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use cke::infra::managed_etcd::{EtcdTls, ManagedEtcd};
use cke_testkit::{find_binary, poll_until, TestCa};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A loopback /24 of our own: 127.<pid>.<n>.0.
fn subnet() -> String {
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    format!("127.{}.{}", (std::process::id() % 200) + 20, n + 1)
}

struct Member {
    ip: String,
    child: Child,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Cluster {
    net: String,
    dir: tempfile::TempDir,
    ca: TestCa,
    members: Vec<Member>,
}

impl Cluster {
    fn ip(&self, i: usize) -> String {
        format!("{}.{}", self.net, 11 + i)
    }

    fn peer(&self, i: usize) -> String {
        format!("https://{}:2380", self.ip(i))
    }

    fn client_url(&self, i: usize) -> String {
        format!("https://{}:2379", self.ip(i))
    }

    fn write_certs(&self, i: usize) -> PathBuf {
        let d = self.dir.path().join(format!("m{i}"));
        std::fs::create_dir_all(&d).unwrap();
        let ip: IpAddr = self.ip(i).parse().unwrap();
        let c = self.ca.issue(&self.ip(i), &[ip, "127.0.0.1".parse().unwrap()]);
        std::fs::write(d.join("server.crt"), &c.cert).unwrap();
        std::fs::write(d.join("server.key"), &c.key).unwrap();
        std::fs::write(d.join("ca.crt"), &self.ca.cert_pem).unwrap();
        d
    }

    /// Starts member `i` with `--initial-cluster` built from `initial` (name=peer pairs).
    fn start(&mut self, i: usize, initial: &str, state: &str) {
        let d = self.write_certs(i);
        let log = std::fs::File::create(d.join("etcd.log")).unwrap();
        let f = |n: &str| d.join(n).to_str().unwrap().to_string();
        let child = Command::new(find_binary("etcd").expect("etcd"))
            .args([
                format!("--name={}", self.ip(i)),
                format!("--data-dir={}", f("data")),
                format!("--listen-peer-urls={}", self.peer(i)),
                format!("--listen-client-urls={}", self.client_url(i)),
                format!("--initial-advertise-peer-urls={}", self.peer(i)),
                format!("--advertise-client-urls={}", self.client_url(i)),
                format!("--cert-file={}", f("server.crt")),
                format!("--key-file={}", f("server.key")),
                "--client-cert-auth=true".into(),
                format!("--trusted-ca-file={}", f("ca.crt")),
                format!("--peer-cert-file={}", f("server.crt")),
                format!("--peer-key-file={}", f("server.key")),
                "--peer-client-cert-auth=true".into(),
                format!("--peer-trusted-ca-file={}", f("ca.crt")),
                format!("--initial-cluster={initial}"),
                "--initial-cluster-token=cke".into(),
                format!("--initial-cluster-state={state}"),
            ])
            .env("ETCD_UNSUPPORTED_ARCH", std::env::consts::ARCH)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.members.push(Member { ip: self.ip(i), child });
    }

    fn stop(&mut self, i: usize) {
        let ip = self.ip(i);
        self.members.retain(|m| m.ip != ip);
    }

    fn tls(&self, cn: &str) -> EtcdTls {
        let c = self.ca.issue(cn, &[]);
        EtcdTls {
            ca: self.ca.cert_pem.clone(),
            cert: c.cert,
            key: c.key,
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(Path::new(self.dir.path()).join(format!("m{i}/etcd.log"))).unwrap_or_default()
    }
}

async fn wait_for<F, Fut>(what: &str, limit: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut poll = move || {
        let fut = f();
        async move { fut.await.then_some(()) }
    };
    poll_until(what, limit, Duration::from_millis(200), &mut poll).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_rbac_learner_join_and_removal() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut c = Cluster {
        net: subnet(),
        dir: tempfile::tempdir().unwrap(),
        ca: TestCa::new("test-ca"),
        members: vec![],
    };
    let initial: Vec<String> = (0..3).map(|i| format!("{}={}", c.ip(i), c.peer(i))).collect();
    for i in 0..3 {
        c.start(i, &initial.join(","), "new");
    }
    let endpoints: Vec<String> = (0..3).map(|i| c.client_url(i)).collect();
    let root = ManagedEtcd::connect(endpoints.clone(), c.tls("root"), Duration::from_secs(5))
        .await
        .unwrap();

    // Bootstrap: three voting members, healthy, all in sync.
    wait_for("a healthy 3-member cluster", Duration::from_secs(60), || async {
        matches!(root.cluster_status().await, Ok(s) if s.is_healthy && s.in_sync_members.len() == 3)
    })
    .await;
    let st = root.cluster_status().await.unwrap();
    assert_eq!(
        st.members.keys().cloned().collect::<Vec<_>>(),
        (0..3).map(|i| c.ip(i)).collect::<Vec<_>>()
    );
    assert!(st.members.values().all(|m| !m.is_learner && !m.name.is_empty()));

    // RBAC: root and kube-apiserver exist, auth is on, other identities are refused.
    root.setup_auth().await.unwrap();
    root.setup_auth().await.unwrap(); // idempotent
    let mut root_client = root.client();
    root_client.put("/registry/a", "1", None).await.unwrap();
    let api = ManagedEtcd::connect(endpoints.clone(), c.tls("kube-apiserver"), Duration::from_secs(5))
        .await
        .unwrap();
    let mut api_client = api.client();
    api_client
        .put("/registry/b", "2", None)
        .await
        .expect("kube-apiserver may write /registry/");
    assert!(
        api_client.put("/other", "x", None).await.is_err(),
        "kube-apiserver must not write outside /registry/"
    );
    let nobody = ManagedEtcd::connect(endpoints.clone(), c.tls("nobody"), Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        nobody.client().get("/registry/a", None).await.is_err(),
        "an unknown identity must be refused"
    );
    root.user_add("backup", "/backup/").await.unwrap();
    let backup = ManagedEtcd::connect(endpoints.clone(), c.tls("backup"), Duration::from_secs(5))
        .await
        .unwrap();
    backup.client().put("/backup/x", "1", None).await.unwrap();
    assert!(backup.client().put("/registry/x", "1", None).await.is_err());

    // A snapshot through the managed etcd is a valid etcd snapshot.
    let snap = c.dir.path().join("snapshot.db");
    let size = root.snapshot_to(&snap).await.unwrap();
    assert!(size > 0 && std::fs::metadata(&snap).unwrap().len() == size);
    let status = Command::new(find_binary("etcdctl").expect("etcdctl"))
        .args(["snapshot", "status", "--write-out=json"])
        .arg(&snap)
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(v["totalKey"].as_i64().unwrap() >= 2, "{v}");

    // Learner-first join of a fourth member.
    let (id, members) = root
        .add_learner_when_ready(&c.peer(3), Duration::from_secs(60))
        .await
        .unwrap();
    let st = root.cluster_status().await.unwrap();
    let m = &st.members[&c.ip(3)];
    assert!(m.is_learner && m.name.is_empty(), "{m:?}");
    assert_eq!(st.in_sync_members.len(), 3, "an unstarted learner is not in sync");
    assert!(st.is_healthy, "an unstarted learner must not cost quorum");
    let initial: Vec<String> = members
        .iter()
        .map(|m| {
            format!(
                "{}={}",
                if m.name.is_empty() { c.ip(3) } else { m.name.clone() },
                m.peer_urls[0]
            )
        })
        .collect();
    c.start(3, &initial.join(","), "existing");
    // Promote through a client that knows a follower only: with auth on, etcd 3.4 refuses a promotion
    // that a follower forwards, so the request must find the leader itself.
    let leader = root.client().status().await.unwrap().leader();
    let follower = members
        .iter()
        .find(|m| m.id != leader && !m.is_learner)
        .and_then(|m| m.client_urls.first().cloned())
        .expect("a follower");
    let follower = ManagedEtcd::connect(vec![follower], c.tls("root"), Duration::from_secs(5))
        .await
        .unwrap();
    follower
        .promote_when_ready(id, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", c.log(3)));
    // A repeated promotion (its answer lost) succeeds; an unknown member fails without retrying.
    root.promote_when_ready(id, Duration::from_secs(60)).await.unwrap();
    assert!(root.promote_when_ready(0xdead, Duration::from_secs(600)).await.is_err());
    wait_for("the new member in sync", Duration::from_secs(60), || async {
        matches!(root.cluster_status().await, Ok(s) if s.in_sync_members.len() == 4)
    })
    .await;
    let st = root.cluster_status().await.unwrap();
    assert!(!st.members[&c.ip(3)].is_learner);
    let mut kv = api.client();
    let got = kv.get("/registry/a", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"1");

    // Remove the first member, stop it: three members remain, healthy.
    let first = st.members[&c.ip(0)].id;
    root.remove(first).await.unwrap();
    // The removed member shuts down: the rest is reached without it.
    let rest = ManagedEtcd::connect(
        (1..4).map(|i| c.client_url(i)).collect(),
        c.tls("root"),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    rest.remove(first).await.unwrap(); // idempotent
    c.stop(0);
    wait_for("three healthy members", Duration::from_secs(60), || async {
        matches!(rest.cluster_status().await, Ok(s) if s.is_healthy && s.members.len() == 3 && s.in_sync_members.len() == 3)
    })
    .await;

    // A stopped member is listed but not in sync.
    c.stop(1);
    wait_for("member 2 out of sync", Duration::from_secs(30), || async {
        matches!(rest.cluster_status().await, Ok(s) if s.is_healthy && !s.in_sync_members.contains(&c.ip(1)))
    })
    .await;
}
