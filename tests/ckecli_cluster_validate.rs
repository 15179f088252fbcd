//! `ckecli cluster validate` and `cluster set` give CKE's verdict: every case of CKE's validation
//! tables and the differences beyond them (`testdata/cke-validation/`), CKE's own example and mtest
//! declarations (`testdata/cke/`). Exit 0 when CKE accepts (warnings on standard error), 2 when it
//! refuses or, with `--strict`, when there are warnings; messages name the field path; nothing is
//! stored on 2.

use std::path::{Path, PathBuf};
use std::process::Output;

use cke::storage::{EtcdStorage, Storage};
use cke_testkit::{verdict_cases, Ckecli, EtcdServer, VerdictCase};

fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
}

fn ckecli(config: &Path, args: &[&str]) -> Output {
    Ckecli::new(env!("CARGO_BIN_EXE_ckecli"), config).run(args, None)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A config whose etcd cannot be reached: `validate` must not need one.
fn offline_config(dir: &Path) -> PathBuf {
    let config = dir.join("config.yml");
    std::fs::write(&config, "endpoints: [\"http://127.0.0.1:1\"]\n").unwrap();
    config
}

/// The pending fields (read by the reboot queue's change) are unknown here: skip the verdicts that
/// need them, as the model test does (it checks the warning instead).
fn needs_pending(c: &VerdictCase) -> bool {
    !c.pending.is_empty()
        && c.errors
            .iter()
            .any(|e| c.pending.iter().any(|p| e.starts_with(p.as_str())))
}

fn validate_args(c: &VerdictCase, strict: bool) -> Vec<&str> {
    let mut args = vec!["cluster", "validate", c.path.to_str().unwrap()];
    if c.template {
        args.push("--template");
    }
    if strict {
        args.push("--strict");
    }
    args
}

#[test]
fn validate_gives_ckes_verdict_on_every_case() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path());
    let mut cases = verdict_cases(&testdata("cke-validation"));
    cases.extend(verdict_cases(&testdata("cke")));
    assert!(cases.len() >= 120, "only {} cases", cases.len());
    let mut checked = 0;
    for c in &cases {
        let name = format!("{} ({})", c.path.display(), c.source);
        let o = ckecli(&config, &validate_args(c, false));
        let err = stderr(&o);
        if needs_pending(c) {
            assert_eq!(o.status.code(), Some(0), "{name}: {err}");
            continue;
        }
        if c.valid {
            assert_eq!(o.status.code(), Some(0), "{name}: {err}");
            assert!(String::from_utf8_lossy(&o.stdout).contains("valid"), "{name}");
        } else {
            assert_eq!(o.status.code(), Some(2), "{name}: {err}");
            for e in &c.errors {
                assert!(err.contains(&format!("{e}: ")), "{name}: {e} not named in {err}");
            }
        }
        for w in &c.warns {
            assert!(
                err.contains("warning: ") && err.contains(&format!("{w}: ")),
                "{name}: no warning for {w}: {err}"
            );
        }
        // --strict: the warnings become errors (exit 2), each still naming its field.
        let strict = ckecli(&config, &validate_args(c, true));
        if c.valid && c.warns.is_empty() && c.pending.is_empty() {
            assert_eq!(strict.status.code(), Some(0), "{name} --strict: {}", stderr(&strict));
        } else if c.valid {
            assert_eq!(strict.status.code(), Some(2), "{name} --strict: {}", stderr(&strict));
            for w in &c.warns {
                assert!(
                    stderr(&strict).contains(&format!("{w}: ")),
                    "{name} --strict: {w} not named"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 110, "only {checked} verdicts checked");
}

#[test]
fn warning_samples_pass_but_fail_under_strict() {
    let dir = tempfile::tempdir().unwrap();
    let config = offline_config(dir.path());
    for entry in std::fs::read_dir(testdata("warnings")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let field = text
            .lines()
            .next()
            .unwrap()
            .strip_prefix("# warn: ")
            .unwrap()
            .to_string();
        let p = path.to_str().unwrap();
        let o = ckecli(&config, &["cluster", "validate", p]);
        assert_eq!(o.status.code(), Some(0), "{p}: {}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("warning: {p}: {field}: ")),
            "{p}: {}",
            stderr(&o)
        );
        let o = ckecli(&config, &["cluster", "validate", "--strict", p]);
        assert_eq!(o.status.code(), Some(2), "{p}");
        assert!(
            stderr(&o).contains(&format!("{field}: ")) && stderr(&o).contains("--strict"),
            "{}",
            stderr(&o)
        );
    }
    // The mtest declaration's misspelt key: named, with the closest known key.
    let p = testdata("cke/mtest-cke-cluster.yml");
    let o = ckecli(&config, &["cluster", "validate", p.to_str().unwrap()]);
    assert!(
        stderr(&o).contains(
            "repair.repair_procedures[0].repair_operations[0].success_command_timeout_seconds: unknown field, did you mean success_command_timeout?"
        ),
        "{}",
        stderr(&o)
    );
}

/// A real management etcd, a config for it, and a client.
async fn etcd() -> (EtcdServer, PathBuf, EtcdStorage) {
    let etcd = EtcdServer::start();
    let config = etcd.dir.path().join("config.yml");
    std::fs::write(&config, etcd.config_yaml("/cke/")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let storage = EtcdStorage::connect(&cke::config::Config::parse(&text, &config).unwrap())
        .await
        .unwrap();
    (etcd, config, storage)
}

#[tokio::test]
async fn set_strict_and_constraints_store_nothing_on_2() {
    let (_etcd, config, storage) = etcd().await;
    let warned = testdata("warnings/unknown-field.yml");
    let warned = warned.to_str().unwrap();
    // --strict: the warning is an error, nothing is stored.
    let o = ckecli(&config, &["cluster", "set", "--strict", warned]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("nodes[0].contol_plane: "), "{}", stderr(&o));
    assert!(storage.get_raw("cluster").await.unwrap().is_none());
    // Without it: stored, the warning on standard error; the unknown key is not stored.
    let o = ckecli(&config, &["cluster", "set", warned]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("did you mean control_plane?"), "{}", stderr(&o));
    let kv = storage.get_raw("cluster").await.unwrap().unwrap();
    let stored = String::from_utf8(kv.value.clone()).unwrap();
    assert!(!stored.contains("contol_plane"), "{stored}");
    // CKE reads options.kubelet.cri_endpoint and options.etcd.volume_name without defaults: written.
    assert!(
        stored.contains("\"cri_endpoint\":\"/run/containerd/containerd.sock\""),
        "{stored}"
    );
    assert!(stored.contains("\"volume_name\":\"etcd-cke\""), "{stored}");
    // CKE's validation accepts a declaration without control planes; cluster set's constraint
    // check (control-plane-count, default 1) refuses it, and nothing changes.
    let no_cp = testdata("warnings/no-control-plane.yml");
    let o = ckecli(&config, &["cluster", "set", no_cp.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("control-plane-count"), "{}", stderr(&o));
    // An invalid declaration: exit 2, nothing changes.
    let bad = testdata("cke-validation/validate/invalid-cri-endpoint.yml");
    let o = ckecli(&config, &["cluster", "set", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("options.kubelet.cri_endpoint: "), "{}", stderr(&o));
    assert_eq!(
        storage.get_raw("cluster").await.unwrap().unwrap().mod_revision,
        kv.mod_revision
    );
}

/// The daemon (and `cluster get`) read a stored declaration that carries keys cke-rs does not know
/// (CKE's own stored JSON, or a newer version's) instead of failing.
#[tokio::test]
async fn stored_declarations_with_unknown_keys_are_read() {
    let (_etcd, config, storage) = etcd().await;
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(testdata("cluster-cke.json")).unwrap()).unwrap();
    v["reboot"]["protected_job_pods"] = serde_json::json!({"matchLabels": {"app": "x"}});
    v["future_field"] = serde_json::json!(1);
    storage
        .put_raw("cluster", serde_json::to_vec(&v).unwrap())
        .await
        .unwrap();
    let c = storage.get_cluster().await.unwrap().unwrap();
    assert_eq!(c.name, "stage0");
    let o = ckecli(&config, &["cluster", "get"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("stage0"));
}
