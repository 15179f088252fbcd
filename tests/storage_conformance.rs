//! The same conformance suite against the real etcd implementation and the in-memory double, so the
//! double cannot drift from what etcd does: plain and typed keys, fenced writes, create-if-absent
//! under contention, user resources, and watches (order, start revision, compaction, cancellation, a broken stream).

use cke::config::Config;
use cke::model::{Constraints, Record, RecordCommand, RecordStatus};
use cke::storage::*;
use cke_testkit::EtcdServer;
use futures::StreamExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

async fn conformance<S: Storage + 'static>(s: Arc<S>) {
    // Plain keys.
    assert!(s.get_raw("a").await.unwrap().is_none());
    s.put_raw("a", b"1".to_vec()).await.unwrap();
    let a1 = s.get_raw("a").await.unwrap().unwrap();
    assert_eq!((a1.key.as_str(), a1.value.as_slice()), ("a", &b"1"[..]));
    s.put_raw("a", b"2".to_vec()).await.unwrap();
    let a2 = s.get_raw("a").await.unwrap().unwrap();
    assert_eq!(a2.create_revision, a1.create_revision);
    assert!(a2.mod_revision > a1.mod_revision);
    assert!(s.delete_raw("a").await.unwrap());
    assert!(!s.delete_raw("a").await.unwrap());

    // Listing: sorted, limited, descending, bounded by the prefix.
    for k in ["l/2", "l/1", "l/3", "lz", "m/1"] {
        s.put_raw(k, k.as_bytes().to_vec()).await.unwrap();
    }
    let keys = |v: Vec<KeyValue>| v.into_iter().map(|kv| kv.key).collect::<Vec<_>>();
    assert_eq!(keys(s.list_raw("l/", 0, false).await.unwrap()), ["l/1", "l/2", "l/3"]);
    assert_eq!(keys(s.list_raw("l/", 2, true).await.unwrap()), ["l/3", "l/2"]);

    // Typed values.
    assert_eq!(s.get_constraints().await.unwrap(), Constraints::default());
    let c = Constraints::default().with("control-plane-count", "3").unwrap();
    s.put_constraints(&c).await.unwrap();
    assert_eq!(s.get_constraints().await.unwrap(), c);
    let v = VaultConfig {
        endpoint: "https://vault:8200".into(),
        ca_cert: String::new(),
        role_id: "r".into(),
        secret_id: "s".into(),
    };
    s.put_vault_config(&v).await.unwrap();
    assert_eq!(s.get_vault_config().await.unwrap(), Some(v));
    s.put_ca("server", "-----BEGIN CERTIFICATE-----\n").await.unwrap();
    assert_eq!(
        s.get_ca("server").await.unwrap().as_deref(),
        Some("-----BEGIN CERTIFICATE-----\n")
    );
    assert_eq!(s.get_ca("etcd-peer").await.unwrap(), None);
    s.put_raw("constraints", b"{not json".to_vec()).await.unwrap();
    let err = s.get_constraints().await.unwrap_err().to_string();
    assert!(err.contains(&format!("{}constraints", s.prefix())), "{err}");

    // Records: newest first by id (hex keys sort numerically).
    for id in [1i64, 2, 10, 255, 256] {
        let r = Record {
            id,
            status: RecordStatus::Completed,
            operation: "op".into(),
            targets: vec![],
            command: RecordCommand::default(),
            error: String::new(),
            leader: String::new(),
            start_at: chrono::Utc::now(),
            end_at: None,
            results: None,
        };
        s.put_raw(&format!("{KEY_RECORDS_PREFIX}{}", Record::key_suffix(id)), encode(&r))
            .await
            .unwrap();
    }
    let ids: Vec<i64> = s.get_records(3).await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, [256, 255, 10]);
    assert_eq!(s.get_record(10).await.unwrap().unwrap().id, 10);

    // Leader: the oldest candidate key, whatever its name.
    assert_eq!(s.get_leader().await.unwrap(), None);
    s.put_raw("leader/zz", b"first".to_vec()).await.unwrap();
    s.put_raw("leader/aa", b"second".to_vec()).await.unwrap();
    assert_eq!(s.get_leader().await.unwrap().as_deref(), Some("first"));
    let leader = s.leader_key().await.unwrap().unwrap();

    // Fenced writes hold while the election key exists with its create revision.
    let fence = Fence {
        key: s.full_key(&leader.key),
        create_revision: leader.create_revision,
    };
    s.put_fenced(
        &fence,
        vec![Write::Put("status".into(), b"{}".to_vec()), Write::Delete("m/1".into())],
    )
    .await
    .unwrap();
    assert!(s.get_raw("status").await.unwrap().is_some());
    assert!(s.get_raw("m/1").await.unwrap().is_none());
    // Re-creating the key gives it a new create revision: the old fence no longer holds.
    s.delete_raw("leader/zz").await.unwrap();
    s.put_raw("leader/zz", b"first".to_vec()).await.unwrap();
    let err = s
        .put_fenced(&fence, vec![Write::Put("status".into(), b"x".to_vec())])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::LostLeadership { .. }), "{err}");
    assert_eq!(s.get_raw("status").await.unwrap().unwrap().value, b"{}");
    s.delete_raw("leader/zz").await.unwrap();
    let err = s
        .put_fenced(&fence, vec![Write::Put("status".into(), b"x".to_vec())])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::LostLeadership { .. }));

    // A fence on create revision 0 holds while its key is absent, as in etcd.
    let absent = Fence {
        key: s.full_key("absent"),
        create_revision: 0,
    };
    s.put_fenced(&absent, vec![Write::Put("absent".into(), b"1".to_vec())])
        .await
        .unwrap();
    let err = s
        .put_fenced(&absent, vec![Write::Put("absent".into(), b"2".to_vec())])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::LostLeadership { .. }), "{err}");
    assert_eq!(s.get_raw("absent").await.unwrap().unwrap().value, b"1");

    // Host-key pins: trust on first use through create_if_absent.
    use cke::infra::agent::hostkey::{HostKeyStore, StorageHostKeys};
    let pins = StorageHostKeys(s.clone() as Arc<dyn Storage>);
    assert!(pins.pin_first("10.0.0.1", "ssh-ed25519 AAAA1").await.unwrap());
    assert!(!pins.pin_first("10.0.0.1", "ssh-ed25519 AAAA2").await.unwrap());
    assert_eq!(
        pins.get("10.0.0.1").await.unwrap().as_deref(),
        Some("ssh-ed25519 AAAA1")
    );
}

/// User resources: stored byte for byte at `resource/<key>`, revision = the key's mod revision,
/// listed in CKE's order of application, refused when the document is not the key's.
async fn resource_conformance<S: Storage + 'static>(s: Arc<S>) {
    assert!(s.list_resources().await.unwrap().is_empty());
    let cm = b"# the config\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: foo\n".to_vec();
    let ns = br#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "foo"}}"#.to_vec();
    let role = b"apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: r, namespace: foo}\n".to_vec();
    s.put_resource("ConfigMap/foo/c", cm.clone()).await.unwrap();
    s.put_resource("Namespace/foo", ns.clone()).await.unwrap();
    s.put_resource("Role/foo/r", role.clone()).await.unwrap();
    let raw = s.get_raw("resource/ConfigMap/foo/c").await.unwrap().unwrap();
    assert_eq!(raw.value, cm, "stored as given (CKE's SetResource)");
    assert_eq!(
        s.get_resource("ConfigMap/foo/c").await.unwrap(),
        Some((cm.clone(), raw.mod_revision))
    );
    assert_eq!(s.get_resource("ConfigMap/foo/none").await.unwrap(), None);

    let defs = s.list_resources().await.unwrap();
    let got: Vec<(&str, &str, &str, Option<&str>)> = defs
        .iter()
        .map(|d| {
            (
                d.key.as_str(),
                d.kind.as_str(),
                d.api_version.as_str(),
                d.namespace.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("Namespace/foo", "Namespace", "v1", None),
            ("Role/foo/r", "Role", "rbac.authorization.k8s.io/v1", Some("foo")),
            ("ConfigMap/foo/c", "ConfigMap", "v1", Some("foo")),
        ],
        "in the order of application"
    );
    for d in &defs {
        let kv = s.get_raw(&format!("resource/{}", d.key)).await.unwrap().unwrap();
        assert_eq!((d.revision, &d.definition), (kv.mod_revision, &kv.value), "{}", d.key);
    }
    assert_eq!(
        s.list_resource_keys().await.unwrap(),
        ["ConfigMap/foo/c", "Namespace/foo", "Role/foo/r"],
        "keys sorted by key"
    );

    // A new version gets a new revision.
    let before = s.get_resource("Namespace/foo").await.unwrap().unwrap().1;
    s.put_resource(
        "Namespace/foo",
        b"apiVersion: v1\nkind: Namespace\nmetadata: {name: foo, labels: {a: b}}\n".to_vec(),
    )
    .await
    .unwrap();
    assert!(s.get_resource("Namespace/foo").await.unwrap().unwrap().1 > before);

    // Refused, and nothing written: a document that is not the key's, not a resource, a bad key.
    for (key, doc) in [
        ("ConfigMap/bar/c", cm.clone()),
        (
            "ConfigMap/foo/x",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: foo}\n".to_vec(),
        ),
        ("ConfigMap", cm.clone()),
    ] {
        let err = s.put_resource(key, doc).await.unwrap_err();
        assert!(
            matches!(err, StorageError::Invalid { field: "resource", .. }),
            "{key}: {err}"
        );
        assert_eq!(s.get_resource(key).await.unwrap(), None, "{key}");
    }

    assert!(s.delete_resource("Role/foo/r").await.unwrap());
    assert!(!s.delete_resource("Role/foo/r").await.unwrap());
    assert_eq!(
        s.list_resource_keys().await.unwrap(),
        ["ConfigMap/foo/c", "Namespace/foo"]
    );

    // A document that does not match its key (written behind cke's back) is reported with its key.
    s.put_raw("resource/Namespace/other", ns.clone()).await.unwrap();
    let err = s.list_resources().await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("{}resource/Namespace/other", s.prefix())) && err.contains("Namespace/foo"),
        "{err}"
    );
    assert_eq!(s.list_resource_keys().await.unwrap().len(), 3, "keys are still listed");
    for key in ["Namespace/other", "Namespace/foo", "ConfigMap/foo/c"] {
        s.delete_resource(key).await.unwrap();
    }
}

/// Several reads in one request: keys found and absent, prefixes bounded and sorted, the store's
/// revision, and every answer from one revision while a writer changes two keys together.
async fn read_many_conformance<S: Storage + 'static>(s: Arc<S>) {
    for k in ["r/b", "r/a", "r/c/1", "rz", "single"] {
        s.put_raw(k, k.as_bytes().to_vec()).await.unwrap();
    }
    let reads = [
        Read::Key("single".into()),
        Read::Key("never-written".into()),
        Read::Prefix("r/".into()),
        Read::Key("r/a".into()),
        Read::Prefix("nothing/".into()),
    ];
    let snap = s.read_many(&reads).await.unwrap();
    assert_eq!(snap.answers.len(), reads.len());
    assert_eq!(snap.key(0), s.get_raw("single").await.unwrap().as_ref());
    assert_eq!(snap.key(1), None);
    let keys: Vec<&str> = snap.all(2).iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        ["r/a", "r/b", "r/c/1"],
        "a prefix read is bounded and sorted by key"
    );
    assert_eq!(snap.all(2)[0], s.get_raw("r/a").await.unwrap().unwrap());
    assert_eq!(snap.key(3).map(|kv| kv.value.as_slice()), Some(&b"r/a"[..]));
    assert!(snap.all(4).is_empty());
    assert_eq!(
        snap.revision,
        revision(&*s).await,
        "no write since: the store's revision"
    );
    let empty = s.read_many(&[]).await.unwrap();
    assert!(empty.answers.is_empty());
    assert_eq!(empty.revision, snap.revision);

    // A writer sets `pair/x` and `pair/y` to the same value in one transaction; every read of both
    // sees them equal and at the revision it reports.
    let writer = {
        let s = s.clone();
        tokio::spawn(async move {
            for i in 0..40 {
                let v = format!("{i}").into_bytes();
                let writes = vec![Write::Put("pair/x".into(), v.clone()), Write::Put("pair/y".into(), v)];
                assert!(s.txn(vec![], writes).await.unwrap());
            }
        })
    };
    let reads = [Read::Key("pair/x".into()), Read::Key("pair/y".into())];
    while !writer.is_finished() {
        let snap = s.read_many(&reads).await.unwrap();
        let (x, y) = (snap.key(0).cloned(), snap.key(1).cloned());
        assert_eq!(
            x.as_ref().map(|kv| &kv.value),
            y.as_ref().map(|kv| &kv.value),
            "one revision"
        );
        if let Some(x) = x {
            assert!(x.mod_revision <= snap.revision);
        }
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    for k in ["r/b", "r/a", "r/c/1", "rz", "single", "pair/x", "pair/y"] {
        s.delete_raw(k).await.unwrap();
    }
}

/// Create-if-absent: a create, a refusal that changes nothing, and races with exactly one winner.
async fn create_conformance<S: Storage + 'static>(s: Arc<S>) {
    assert!(s.create_if_absent("c/one", b"first".to_vec()).await.unwrap());
    let created = s.get_raw("c/one").await.unwrap().unwrap();
    assert!(!s.create_if_absent("c/one", b"second".to_vec()).await.unwrap());
    assert_eq!(
        s.get_raw("c/one").await.unwrap().unwrap(),
        created,
        "a refused create changes nothing"
    );
    // A deleted key can be created again.
    s.delete_raw("c/one").await.unwrap();
    assert!(s.create_if_absent("c/one", b"third".to_vec()).await.unwrap());

    for round in 0..5 {
        let key = format!("c/race{round}");
        let contenders = 16;
        let barrier = Arc::new(tokio::sync::Barrier::new(contenders));
        let tasks: Vec<_> = (0..contenders)
            .map(|i| {
                let (s, key, barrier) = (s.clone(), key.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    (i, s.create_if_absent(&key, format!("v{i}").into_bytes()).await.unwrap())
                })
            })
            .collect();
        let mut winners = vec![];
        for t in tasks {
            let (i, won) = t.await.unwrap();
            if won {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        assert_eq!(
            s.get_raw(&key).await.unwrap().unwrap().value,
            format!("v{}", winners[0]).into_bytes(),
            "round {round}: the stored value is the winner's"
        );
    }
}

/// Compare-and-swap transactions and CKE's queue pattern on them: racing enqueues get distinct
/// indexes, racing updates all land, a fenced update or dequeue needs the fence.
async fn queue_conformance<S: Storage + 'static>(s: Arc<S>) {
    use cke::model::{RebootQueueEntry, RebootStatus};
    use cke::storage::queue::{self, REBOOT_QUEUE, REPAIR_QUEUE};
    use cke::storage::{Condition, Fence, Write};

    // txn: conditions on mod revisions (0: absent) and fences, all or nothing.
    assert!(s
        .txn(
            vec![Condition::ModRevision("q/a".into(), 0)],
            vec![Write::Put("q/a".into(), b"1".to_vec())]
        )
        .await
        .unwrap());
    let rev = s.get_raw("q/a").await.unwrap().unwrap().mod_revision;
    assert!(!s
        .txn(
            vec![Condition::ModRevision("q/a".into(), rev - 1)],
            vec![
                Write::Put("q/a".into(), b"2".to_vec()),
                Write::Put("q/b".into(), b"2".to_vec())
            ]
        )
        .await
        .unwrap());
    assert_eq!(s.get_raw("q/a").await.unwrap().unwrap().value, b"1");
    assert!(
        s.get_raw("q/b").await.unwrap().is_none(),
        "nothing of a failed txn is written"
    );
    let gone = Fence {
        key: format!("{}leader/none", s.prefix()),
        create_revision: 1,
    };
    assert!(!s
        .txn(
            vec![
                Condition::ModRevision("q/a".into(), rev),
                Condition::Fence(gone.clone())
            ],
            vec![Write::Delete("q/a".into())]
        )
        .await
        .unwrap());
    s.put_raw("leader/me", b"me".to_vec()).await.unwrap();
    let fence = Fence {
        key: format!("{}leader/me", s.prefix()),
        create_revision: s.get_raw("leader/me").await.unwrap().unwrap().create_revision,
    };
    assert!(s
        .txn(
            vec![
                Condition::ModRevision("q/a".into(), rev),
                Condition::Fence(fence.clone())
            ],
            vec![Write::Delete("q/a".into())]
        )
        .await
        .unwrap());
    assert!(s.get_raw("q/a").await.unwrap().is_none());

    // Racing enqueues: distinct, dense indexes.
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (s, barrier) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let mut e = [RebootQueueEntry::new(&format!("10.0.0.{i}"))];
                queue::enqueue(&*s, &REBOOT_QUEUE, &mut e).await.unwrap();
                e[0].index
            })
        })
        .collect();
    let mut got = vec![];
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort();
    assert_eq!(got, (0..16).collect::<Vec<i64>>());
    let all: Vec<RebootQueueEntry> = queue::entries(&*s, &REBOOT_QUEUE).await.unwrap();
    assert_eq!(all.len(), 16);
    assert!(all.windows(2).all(|w| w[0].index < w[1].index), "in index order");
    // The other queue is apart.
    assert!(queue::entries::<RebootQueueEntry>(&*s, &REPAIR_QUEUE)
        .await
        .unwrap()
        .is_empty());

    // Racing updates of one entry, fenced (as the leader) and not (as ckecli): each lands once.
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let (s, barrier, fence) = (s.clone(), barrier.clone(), fence.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let f = (i % 2 == 0).then_some(&fence);
                queue::update(&*s, &REBOOT_QUEUE, 3, f, |e: &mut RebootQueueEntry| {
                    e.drain_backoff_count += 1;
                    true
                })
                .await
                .unwrap()
            })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_some());
    }
    let e: RebootQueueEntry = queue::entry(&*s, &REBOOT_QUEUE, 3).await.unwrap().unwrap();
    assert_eq!(e.drain_backoff_count, 16);
    // A lost fence: the update and the dequeue fail, nothing changes.
    let r = queue::update(&*s, &REBOOT_QUEUE, 3, Some(&gone), |e: &mut RebootQueueEntry| {
        e.status = RebootStatus::Draining;
        true
    })
    .await;
    assert!(matches!(r, Err(StorageError::LostLeadership { .. })), "{r:?}");
    assert!(matches!(
        queue::dequeue(&*s, &REBOOT_QUEUE, &gone, 3).await,
        Err(StorageError::LostLeadership { .. })
    ));
    queue::dequeue(&*s, &REBOOT_QUEUE, &fence, 3).await.unwrap();
    assert!(queue::entry::<RebootQueueEntry>(&*s, &REBOOT_QUEUE, 3)
        .await
        .unwrap()
        .is_none());
    for i in 0..16 {
        queue::dequeue(&*s, &REBOOT_QUEUE, &fence, i).await.unwrap();
    }
    s.delete_raw("leader/me").await.unwrap();
}

/// What only a test can do to each implementation.
#[async_trait::async_trait]
trait Harness: Send + Sync {
    /// Compacts the history before `revision`.
    async fn compact(&self, revision: i64);
    /// Breaks every open watch.
    async fn break_watches(&self);
    /// Undoes `break_watches` (a restarted server).
    async fn heal(&self);
    /// Open watches.
    async fn watchers(&self) -> usize;
}

struct MemHarness(Arc<MemStorage>);

#[async_trait::async_trait]
impl Harness for MemHarness {
    async fn compact(&self, revision: i64) {
        self.0.compact(revision);
    }
    async fn break_watches(&self) {
        self.0.break_watches();
    }
    async fn heal(&self) {}
    async fn watchers(&self) -> usize {
        self.0.watcher_count()
    }
}

struct EtcdHarness {
    server: Mutex<EtcdServer>,
    storage: EtcdStorage,
}

#[async_trait::async_trait]
impl Harness for EtcdHarness {
    async fn compact(&self, revision: i64) {
        self.storage.client().compact(revision, None).await.unwrap();
    }
    async fn break_watches(&self) {
        self.server.lock().unwrap().kill();
    }
    async fn heal(&self) {
        self.server.lock().unwrap().restart();
    }
    async fn watchers(&self) -> usize {
        // etcd's own gauge of open watchers, from its metrics endpoint.
        let endpoint = self.server.lock().unwrap().endpoint.clone();
        let text = cke::infra::http_client_builder()
            .build()
            .unwrap()
            .get(format!("{endpoint}/metrics"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("etcd answers /metrics")
            .text()
            .await
            .unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("etcd_debugging_mvcc_watcher_total "))
            .expect("etcd reports etcd_debugging_mvcc_watcher_total");
        line.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap() as usize
    }
}

/// The store's current revision.
async fn revision(s: &dyn Storage) -> i64 {
    s.list_raw_with_revision("no-such-prefix/", 1, false)
        .await
        .unwrap()
        .revision
}

/// The next `n` items of a watch, each within a few seconds.
async fn take(w: &mut WatchStream, n: usize) -> Vec<WatchEvent> {
    let mut v = vec![];
    for _ in 0..n {
        match tokio::time::timeout(Duration::from_secs(10), w.next()).await {
            Ok(Some(Ok(ev))) => v.push(ev),
            other => panic!("expected event {} of {n}, got {other:?} after {v:?}", v.len() + 1),
        }
    }
    v
}

/// Asserts the watch delivers nothing more for a while.
async fn quiet(w: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(300), w.next()).await {
        panic!("expected no more items, got {item:?}");
    }
}

/// The final error item of a watch, then its end.
async fn last_error(w: &mut WatchStream) -> StorageError {
    let e = match tokio::time::timeout(Duration::from_secs(20), w.next()).await {
        Ok(Some(Err(e))) => e,
        other => panic!("expected the watch's error item, got {other:?}"),
    };
    match tokio::time::timeout(Duration::from_secs(5), w.next()).await {
        Ok(None) => e,
        other => panic!("expected the end after {e}, got {other:?}"),
    }
}

fn put(key: &str, value: &str, create_revision: i64, revision: i64) -> WatchEvent {
    WatchEvent::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        create_revision,
        revision,
    }
}

fn del(key: &str, revision: i64) -> WatchEvent {
    WatchEvent::Delete {
        key: key.into(),
        revision,
    }
}

/// Watches: events after the start revision in order (one revision per transaction), nothing
/// before it, only under the prefix; compaction, cancellation and a broken stream as designed.
async fn watch_conformance<S: Storage + 'static>(s: Arc<S>, h: &dyn Harness) {
    let base_watchers = h.watchers().await;
    s.put_raw("w/before", b"0".to_vec()).await.unwrap();
    let r0 = revision(&*s).await;
    let mut live = s.watch("w/", 0).await.unwrap();

    s.put_raw("w/1", b"a".to_vec()).await.unwrap();
    let r1 = revision(&*s).await;
    assert_eq!(r1, r0 + 1);
    s.put_raw("wz", b"outside".to_vec()).await.unwrap();
    s.put_raw("w/2", b"b".to_vec()).await.unwrap();
    let r2 = r1 + 2;
    s.delete_raw("w/1").await.unwrap();
    let r3 = r2 + 1;
    let leader = s.leader_key().await.unwrap().unwrap();
    let fence = Fence {
        key: s.full_key(&leader.key),
        create_revision: leader.create_revision,
    };
    s.put_fenced(
        &fence,
        vec![Write::Put("w/3".into(), b"c".to_vec()), Write::Delete("w/2".into())],
    )
    .await
    .unwrap();
    let r4 = r3 + 1;
    assert!(!s.delete_raw("w/none").await.unwrap());
    s.put_raw("w/1", b"d".to_vec()).await.unwrap();
    let r5 = revision(&*s).await;
    assert_eq!(r5, r4 + 1, "a transaction is one revision; deleting nothing is none");
    let expected = vec![
        put("w/1", "a", r1, r1),
        put("w/2", "b", r2, r2),
        del("w/1", r3),
        put("w/3", "c", r4, r4),
        del("w/2", r4),
        put("w/1", "d", r5, r5),
    ];
    assert_eq!(take(&mut live, 6).await, expected, "a watch from now");
    quiet(&mut live).await;

    // From a past revision: exactly the changes from it on.
    let mut from0 = s.watch("w/", r0).await.unwrap();
    let mut with_before = vec![put("w/before", "0", r0, r0)];
    with_before.extend(expected.iter().cloned());
    assert_eq!(take(&mut from0, 7).await, with_before, "a watch from r0");
    quiet(&mut from0).await;
    let mut from2 = s.watch("w/", r2).await.unwrap();
    assert_eq!(take(&mut from2, 5).await, expected[1..], "a watch from r2");
    quiet(&mut from2).await;
    let mut one = s.watch("w/3", r1).await.unwrap();
    assert_eq!(take(&mut one, 1).await, [put("w/3", "c", r4, r4)], "a narrower prefix");
    quiet(&mut one).await;

    // From a future revision: nothing before it.
    let mut future = s.watch("w/", r5 + 2).await.unwrap();
    s.put_raw("w/f", b"1".to_vec()).await.unwrap();
    s.put_raw("w/f", b"2".to_vec()).await.unwrap();
    assert_eq!(take(&mut future, 1).await, [put("w/f", "2", r5 + 1, r5 + 2)]);
    quiet(&mut future).await;
    assert_eq!(take(&mut live, 2).await.len(), 2, "the live watch goes on");

    let err = match s.watch("w/", -1).await {
        Err(e) => e,
        Ok(_) => panic!("a negative start revision must be refused"),
    };
    assert!(
        matches!(
            err,
            StorageError::Invalid {
                field: "start_revision",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("start_revision"), "{err}");

    // Dropping a stream cancels its watch.
    assert_eq!(h.watchers().await, base_watchers + 5);
    drop((live, from0, from2, one, future));
    let mut n = 0;
    for _ in 0..100 {
        n = h.watchers().await;
        if n == base_watchers {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n, base_watchers, "dropped watches must be cancelled");

    // Compaction: a watch from before it ends with Compacted; from the compaction on it works,
    // though, as etcd keeps no deletion at the compaction revision, without the one at r4.
    h.compact(r4).await;
    let mut w = s.watch("w/", r1).await.unwrap();
    match last_error(&mut w).await {
        StorageError::Compacted {
            prefix,
            start_revision,
            compact_revision,
        } => {
            assert_eq!(prefix, s.full_key("w/"));
            assert_eq!((start_revision, compact_revision), (r1, r4));
        }
        e => panic!("expected Compacted, got {e}"),
    }
    let mut w = s.watch("w/", r4).await.unwrap();
    assert_eq!(
        take(&mut w, 4).await,
        [
            put("w/3", "c", r4, r4),
            put("w/1", "d", r5, r5),
            put("w/f", "1", r5 + 1, r5 + 1),
            put("w/f", "2", r5 + 1, r5 + 2)
        ],
        "a watch from the compaction revision"
    );
    quiet(&mut w).await;
    drop(w);

    // A broken stream: the watch reports it with the revision to resume from, then ends; made
    // again from there it misses nothing and repeats nothing.
    let mut w = s.watch("w/", 0).await.unwrap();
    s.put_raw("w/b", b"1".to_vec()).await.unwrap();
    let seen = take(&mut w, 1).await;
    h.break_watches().await;
    let next = match last_error(&mut w).await {
        StorageError::WatchBroken {
            prefix, next_revision, ..
        } => {
            assert_eq!(prefix, s.full_key("w/"));
            next_revision
        }
        e => panic!("expected WatchBroken, got {e}"),
    };
    assert_eq!(next, seen[0].revision() + 1);
    h.heal().await;
    let mut wrote = false;
    for _ in 0..50 {
        if s.put_raw("w/b", b"2".to_vec()).await.is_ok() {
            wrote = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(wrote, "storage usable again after the break");
    let mut again = s.watch("w/", next).await.unwrap();
    let got = take(&mut again, 1).await;
    assert!(
        matches!(&got[0], WatchEvent::Put { key, value, revision, .. }
            if key == "w/b" && value == b"2" && *revision == next),
        "{got:?}"
    );
    quiet(&mut again).await;
}

#[tokio::test]
async fn memory_double_conforms() {
    let mem = Arc::new(MemStorage::new("/test/"));
    conformance(mem.clone()).await;
    create_conformance(mem.clone()).await;
    read_many_conformance(mem.clone()).await;
    resource_conformance(mem.clone()).await;
    queue_conformance(mem.clone()).await;
    watch_conformance(mem.clone(), &MemHarness(mem)).await;
}

#[tokio::test]
async fn memory_double_compaction_edges() {
    let mem = MemStorage::new("/test/");
    mem.put_raw("a", b"1".to_vec()).await.unwrap();
    mem.put_raw("a", b"2".to_vec()).await.unwrap();
    mem.compact(2);
    mem.compact(1); // Older than the last compaction: nothing changes.
    let mut w = mem.watch("", 2).await.unwrap();
    assert_eq!(take(&mut w, 1).await, [put("a", "2", 1, 2)]);
    let mut w = mem.watch("", 1).await.unwrap();
    assert!(matches!(
        last_error(&mut w).await,
        StorageError::Compacted {
            compact_revision: 2,
            ..
        }
    ));
    let ahead = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| mem.compact(3)));
    assert!(ahead.is_err(), "compacting ahead of the store must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_conforms_and_prefixes_isolate() {
    let etcd = EtcdServer::start();
    let a = EtcdStorage::connect(&Config::parse(&etcd.config_yaml("/one/"), "c".as_ref()).unwrap())
        .await
        .unwrap();
    let b = EtcdStorage::connect(&Config::parse(&etcd.config_yaml("/two"), "c".as_ref()).unwrap())
        .await
        .unwrap();
    assert_eq!(b.prefix(), "/two/");
    conformance(Arc::new(a.clone())).await;
    assert!(
        b.get_raw("status").await.unwrap().is_none(),
        "prefixes must not see each other's keys"
    );
    conformance(Arc::new(b.clone())).await;
    create_conformance(Arc::new(a.clone())).await;
    read_many_conformance(Arc::new(a.clone())).await;
    assert!(
        b.read_many(&[Read::Prefix("r/".into())]).await.unwrap().answers[0].is_empty(),
        "a read of several keys stays within its prefix"
    );
    resource_conformance(Arc::new(a.clone())).await;
    queue_conformance(Arc::new(a.clone())).await;

    // A watch on the other prefix sees none of the changes below.
    let mut other = b.watch("", 0).await.unwrap();
    let h = EtcdHarness {
        server: Mutex::new(etcd),
        storage: a.clone(),
    };
    watch_conformance(Arc::new(a.clone()), &h).await;
    // The server was killed under `other` too: its only item is the break.
    assert!(matches!(last_error(&mut other).await, StorageError::WatchBroken { .. }));
}
