//! Secret encryption at rest and audit policy files for kube-apiserver.
//!
//! The keys live in Vault KV v1 `cke/secrets/k8s`, field `aescbc`: the JSON of an
//! `apiserver.config.k8s.io/v1` `AESConfiguration`, `{"keys":[{"name":...,"secret":...}, ...]}`, the
//! key that encrypts first (CKE `pkg/ckecli/cmd/vault_enckey.go`). [`encryption_config`] renders
//! `/etc/kubernetes/apiserver/encryption.yml` from it (CKE `op/k8s/encryption.go`); [`rotate`] makes
//! the next key set for `ckecli vault enckey`. Time and randomness are parameters.

use base64::Engine;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::K8sError;
use crate::topology::APISERVER_CONFIG_DIR;

/// One AES-CBC key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionKey {
    /// Key name: when it was made, RFC 3339 UTC (`2026-12-02T13:26:44Z`).
    pub name: String,
    /// Base64 of 32 random bytes.
    pub secret: String,
}

#[derive(Serialize, Deserialize)]
struct AesConfiguration {
    #[serde(default)]
    keys: Vec<EncryptionKey>,
}

/// Reads the `aescbc` field: CKE's `{"keys":[...]}`, or the bare key list earlier cke-rs versions
/// wrote.
pub fn parse_keys(aescbc: &str) -> Result<Vec<EncryptionKey>, K8sError> {
    if let Ok(c) = serde_json::from_str::<AesConfiguration>(aescbc) {
        return Ok(c.keys);
    }
    serde_json::from_str::<Vec<EncryptionKey>>(aescbc)
        .map_err(|e| K8sError::EncryptionKeys(format!("not an AESConfiguration ({{\"keys\":[...]}}): {e}")))
}

/// The `aescbc` field for `keys`, as CKE writes it.
pub fn keys_json(keys: &[EncryptionKey]) -> String {
    serde_json::to_string(&json!({ "keys": keys })).expect("keys serialize")
}

/// The next key set: a new key named `now` (RFC 3339, UTC, seconds) with secret `random` (base64),
/// then the previous first key if any; older keys are dropped (CKE `rotateK8sEncryptionKey`).
pub fn rotate(current: &[EncryptionKey], now: DateTime<Utc>, random: [u8; 32]) -> Vec<EncryptionKey> {
    let mut keys = vec![EncryptionKey {
        name: now.to_rfc3339_opts(SecondsFormat::Secs, true),
        secret: base64::engine::general_purpose::STANDARD.encode(random),
    }];
    keys.extend(current.first().cloned());
    keys
}

/// `/etc/kubernetes/apiserver/encryption.yml`: Secrets encrypted with the keys (`aescbc`, first key
/// encrypts), still readable when stored in clear (`identity`). An error when there is no key.
pub fn encryption_config(keys: &[EncryptionKey]) -> Result<String, K8sError> {
    if keys.is_empty() {
        return Err(K8sError::EncryptionKeys(
            "no key; run `ckecli vault enckey` (or `ckecli vault init`)".into(),
        ));
    }
    for (i, k) in keys.iter().enumerate() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&k.secret)
            .map_err(|e| K8sError::EncryptionKeys(format!("keys[{i}] ({}): secret is not base64: {e}", k.name)))?;
        if !matches!(bytes.len(), 16 | 24 | 32) {
            return Err(K8sError::EncryptionKeys(format!(
                "keys[{i}] ({}): secret is {} bytes; AES needs 16, 24 or 32",
                k.name,
                bytes.len()
            )));
        }
    }
    let doc = json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "EncryptionConfiguration",
        "resources": [{
            "resources": ["secrets"],
            "providers": [{"aescbc": {"keys": keys}}, {"identity": {}}],
        }],
    });
    Ok(serde_yaml::to_string(&doc).expect("config renders"))
}

/// Where the audit policy `policy` is written: `/etc/kubernetes/apiserver/audit-policy-<md5>.yaml`
/// (the hash makes a policy change change the apiserver's arguments, CKE `auditPolicyFilePath`).
pub fn audit_policy_path(policy: &str) -> String {
    format!(
        "{APISERVER_CONFIG_DIR}/audit-policy-{:x}.yaml",
        md5::compute(policy.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn rotation_keeps_only_the_previous_first_key() {
        let k1 = rotate(&[], at("2026-12-02T13:26:44.123+09:00"), [1; 32]);
        assert_eq!(k1.len(), 1);
        assert_eq!(k1[0].name, "2026-12-02T04:26:44Z");
        assert_eq!(
            k1[0].secret,
            base64::engine::general_purpose::STANDARD.encode([1u8; 32])
        );
        let k2 = rotate(&k1, at("2026-12-03T00:00:00Z"), [2; 32]);
        assert_eq!(k2.len(), 2);
        assert_eq!(k2[1], k1[0]);
        let k3 = rotate(&k2, at("2026-12-04T00:00:00Z"), [3; 32]);
        assert_eq!(
            k3.iter().map(|k| k.name.as_str()).collect::<Vec<_>>(),
            ["2026-12-04T00:00:00Z", "2026-12-03T00:00:00Z"]
        );
    }

    #[test]
    fn keys_json_is_ckes_and_old_lists_still_read() {
        let keys = rotate(&[], at("2026-12-02T00:00:00Z"), [0; 32]);
        let text = keys_json(&keys);
        assert_eq!(
            text,
            r#"{"keys":[{"name":"2026-12-02T00:00:00Z","secret":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}]}"#
        );
        assert_eq!(parse_keys(&text).unwrap(), keys);
        assert_eq!(
            parse_keys(r#"[{"name":"key-1","secret":"AAAA"}]"#).unwrap()[0].name,
            "key-1"
        );
        assert!(parse_keys("nope").unwrap_err().to_string().contains("aescbc"));
    }

    #[test]
    fn encryption_config_yaml() {
        let keys = vec![
            EncryptionKey {
                name: "k2".into(),
                secret: base64::engine::general_purpose::STANDARD.encode([2u8; 32]),
            },
            EncryptionKey {
                name: "k1".into(),
                secret: base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
            },
        ];
        let text = encryption_config(&keys).unwrap();
        assert_eq!(
            text,
            format!(
                "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n\
                 - providers:\n  - aescbc:\n      keys:\n      - name: k2\n        secret: {}\n      \
                 - name: k1\n        secret: {}\n  - identity: {{}}\n  resources:\n  - secrets\n",
                keys[0].secret, keys[1].secret
            )
        );
        assert!(encryption_config(&[]).unwrap_err().to_string().contains("no key"));
        let bad = vec![EncryptionKey {
            name: "x".into(),
            secret: "AAAA".into(),
        }];
        assert!(encryption_config(&bad).unwrap_err().to_string().contains("3 bytes"));
    }

    #[test]
    fn audit_policy_file_name() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e
        assert_eq!(
            audit_policy_path(""),
            "/etc/kubernetes/apiserver/audit-policy-d41d8cd98f00b204e9800998ecf8427e.yaml"
        );
    }
}
