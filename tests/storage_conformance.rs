//! The same conformance suite against the real etcd implementation and the in-memory double, so the
//! double cannot drift from what etcd does.

use cke::config::Config;
use cke::model::{Constraints, Record, RecordCommand, RecordStatus};
use cke::storage::*;
use cke::testing::EtcdServer;
use std::sync::Arc;

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

    // A fence on create revision 0 holds while its key is absent: an atomic create (host-key pins).
    use cke::agent::hostkey::{HostKeyStore, StorageHostKeys};
    let pins = StorageHostKeys(s.clone() as Arc<dyn Storage>);
    assert!(pins.pin_first("10.0.0.1", "ssh-ed25519 AAAA1").await.unwrap());
    assert!(!pins.pin_first("10.0.0.1", "ssh-ed25519 AAAA2").await.unwrap());
    assert_eq!(
        pins.get("10.0.0.1").await.unwrap().as_deref(),
        Some("ssh-ed25519 AAAA1")
    );
}

#[tokio::test]
async fn memory_double_conforms() {
    conformance(Arc::new(MemStorage::new("/test/"))).await;
}

#[tokio::test]
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
}
