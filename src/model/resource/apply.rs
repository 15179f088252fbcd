//! What cke changes in a resource before applying it (CKE's `ApplyResource`, `injectCA`,
//! `issueCert`), as pure functions on the decoded object. The apply operator decodes the definition
//! ([`super::ResourceDefinition::decode`]), calls [`set_revision`], then, when [`wants_ca_bundle`],
//! [`inject_ca_bundle`] with the `kubernetes-webhook` CA, and, when [`issue_cert_service`] names a
//! Service, [`fill_tls_secret`] with a certificate issued for it
//! (`infra::pki::requests::webhook(namespace, service)`).

use base64::Engine;
use serde_json::{Map, Value};

use super::{
    ResourceError, ANNOTATION_RESOURCE_INJECT_CA, ANNOTATION_RESOURCE_ISSUE_CERT, ANNOTATION_RESOURCE_REVISION,
    KIND_MUTATING_WEBHOOK_CONFIGURATION, KIND_SECRET, KIND_VALIDATING_WEBHOOK_CONFIGURATION,
};

/// The API versions of webhook configurations cke fills (CKE converts through the typed
/// `admissionregistration` v1 and v1beta1 objects).
const WEBHOOK_API_VERSIONS: [&str; 2] = [
    "admissionregistration.k8s.io/v1",
    "admissionregistration.k8s.io/v1beta1",
];

/// The Service a Secret asks a serving certificate for (`cke.cybozu.com/issue-cert`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTarget {
    /// The Secret's namespace (and so the Service's): `metadata.namespace`, or `default` when the
    /// document has none (where Kubernetes clients put such an object).
    pub namespace: String,
    /// The Service's name: the annotation's value.
    pub service: String,
}

/// Sets `metadata.annotations["cke.cybozu.com/revision"]` to `revision`, creating `metadata` and
/// `annotations` when absent.
pub fn set_revision(obj: &mut Value, revision: i64) -> Result<(), ResourceError> {
    let annotations = child_object(root(obj)?, "metadata", "metadata")?;
    let annotations = child_object(annotations, "annotations", "metadata.annotations")?;
    annotations.insert(ANNOTATION_RESOURCE_REVISION.into(), Value::String(revision.to_string()));
    Ok(())
}

/// A Validating- or MutatingWebhookConfiguration annotated `cke.cybozu.com/inject-cacert: "true"`.
pub fn wants_ca_bundle(obj: &Value) -> bool {
    is_webhook_configuration(obj) && annotation(obj, ANNOTATION_RESOURCE_INJECT_CA) == Some("true")
}

/// Sets `clientConfig.caBundle` of every webhook to the base64 of `ca_pem` (the webhook CA as
/// stored at `ca/kubernetes-webhook`), creating `clientConfig` where absent. Errors when the object
/// is not a webhook configuration of `admissionregistration.k8s.io/v1` or `v1beta1`, or its
/// `webhooks` is not a sequence of mappings. No `webhooks`: nothing to fill.
pub fn inject_ca_bundle(obj: &mut Value, ca_pem: &str) -> Result<(), ResourceError> {
    if !is_webhook_configuration(obj) {
        return Err(field(
            "kind",
            "not a ValidatingWebhookConfiguration or MutatingWebhookConfiguration",
        ));
    }
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    if !WEBHOOK_API_VERSIONS.contains(&api_version) {
        return Err(field(
            "apiVersion",
            format!(
                "{api_version:?}: cke fills caBundle only in {}",
                WEBHOOK_API_VERSIONS.join(" and ")
            ),
        ));
    }
    let bundle = Value::String(base64::engine::general_purpose::STANDARD.encode(ca_pem));
    let webhooks = match root(obj)?.get_mut("webhooks") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Array(w)) => w,
        Some(_) => return Err(field("webhooks", "must be a sequence")),
    };
    for (i, webhook) in webhooks.iter_mut().enumerate() {
        let Value::Object(webhook) = webhook else {
            return Err(field(&format!("webhooks[{i}]"), "must be a mapping"));
        };
        let config = child_object(webhook, "clientConfig", &format!("webhooks[{i}].clientConfig"))?;
        config.insert("caBundle".into(), bundle.clone());
    }
    Ok(())
}

/// For a Secret annotated `cke.cybozu.com/issue-cert: <service>`, the Service to issue a serving
/// certificate for; `None` for anything else.
pub fn issue_cert_service(obj: &Value) -> Option<CertTarget> {
    if obj.get("kind").and_then(Value::as_str) != Some(KIND_SECRET) {
        return None;
    }
    let service = annotation(obj, ANNOTATION_RESOURCE_ISSUE_CERT).filter(|s| !s.is_empty())?;
    let namespace = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default");
    Some(CertTarget {
        namespace: namespace.into(),
        service: service.into(),
    })
}

/// Makes the Secret a TLS Secret holding `cert_pem` and `key_pem` (CKE's `issueCert`): `type:
/// kubernetes.io/tls`, `data["tls.crt"]` and `data["tls.key"]` base64-encoded; other data are kept.
pub fn fill_tls_secret(obj: &mut Value, cert_pem: &str, key_pem: &str) -> Result<(), ResourceError> {
    let b64 = |s: &str| Value::String(base64::engine::general_purpose::STANDARD.encode(s));
    let secret = root(obj)?;
    secret.insert("type".into(), Value::String("kubernetes.io/tls".into()));
    let data = child_object(secret, "data", "data")?;
    data.insert("tls.crt".into(), b64(cert_pem));
    data.insert("tls.key".into(), b64(key_pem));
    Ok(())
}

fn is_webhook_configuration(obj: &Value) -> bool {
    matches!(
        obj.get("kind").and_then(Value::as_str),
        Some(KIND_VALIDATING_WEBHOOK_CONFIGURATION | KIND_MUTATING_WEBHOOK_CONFIGURATION)
    )
}

/// A string annotation of the object.
fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

fn root(obj: &mut Value) -> Result<&mut Map<String, Value>, ResourceError> {
    obj.as_object_mut().ok_or_else(|| field("(document)", "not a mapping"))
}

/// The mapping at `parent[key]`, created when absent or null; `path` names it in the error when it
/// is something else.
fn child_object<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a mut Map<String, Value>, ResourceError> {
    let v = parent.entry(key).or_insert(Value::Null);
    if v.is_null() {
        *v = Value::Object(Map::new());
    }
    v.as_object_mut().ok_or_else(|| field(path, "must be a mapping"))
}

fn field(path: &str, reason: impl Into<String>) -> ResourceError {
    ResourceError::Field {
        field: path.to_string(),
        reason: reason.into(),
    }
}
