//! User-defined Kubernetes resources, as CKE keeps them (`resource.go`, `storage.go`): the key of a
//! document (`Kind/name` or `Kind/namespace/name`), the definition the leader applies, its order of
//! application, when it needs applying again, and what cke changes in an object before applying it
//! (the revision annotation, a webhook CA bundle, a webhook serving certificate).
//!
//! Everything here is pure: no storage, no Kubernetes client, no Vault. The storage layer keeps the
//! documents (`resource/<key>`), the probe fills [`ResourceStatus`], the planner calls
//! [`needs_update`], the apply operator calls [`set_revision`], [`inject_ca_bundle`] and
//! [`fill_tls_secret`] on the decoded object, and `ckecli resource` uses [`parse_documents`].

mod apply;
mod documents;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use apply::{fill_tls_secret, inject_ca_bundle, issue_cert_service, set_revision, wants_ca_bundle, CertTarget};
pub use documents::{parse_documents, split_documents, Document, ParsedDocument};

/// Annotation holding the image(s) of a static resource (CKE's `AnnotationResourceImage`).
pub const ANNOTATION_RESOURCE_IMAGE: &str = "cke.cybozu.com/image";
/// Annotation holding the revision cke applied (CKE's `AnnotationResourceRevision`).
pub const ANNOTATION_RESOURCE_REVISION: &str = "cke.cybozu.com/revision";
/// `"true"` on a webhook configuration: cke fills every webhook's `caBundle` with the webhook CA
/// (CKE's `AnnotationResourceInjectCA`).
pub const ANNOTATION_RESOURCE_INJECT_CA: &str = "cke.cybozu.com/inject-cacert";
/// On a Secret: the name of a Service; cke puts a serving certificate for it in the Secret (CKE's
/// `AnnotationResourceIssueCert`).
pub const ANNOTATION_RESOURCE_ISSUE_CERT: &str = "cke.cybozu.com/issue-cert";

/// Kind `Deployment` (the planner applies Deployments only once the cluster is ready).
pub const KIND_DEPLOYMENT: &str = "Deployment";
/// Kind `Secret`.
pub const KIND_SECRET: &str = "Secret";
/// Kind `ValidatingWebhookConfiguration`.
pub const KIND_VALIDATING_WEBHOOK_CONFIGURATION: &str = "ValidatingWebhookConfiguration";
/// Kind `MutatingWebhookConfiguration`.
pub const KIND_MUTATING_WEBHOOK_CONFIGURATION: &str = "MutatingWebhookConfiguration";

/// What the probe saw of one resource in Kubernetes (CKE's `ResourceStatus`), by resource key.
/// A resource absent from Kubernetes has no status at all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceStatus {
    /// The object's annotations (`cke.cybozu.com/revision`, `cke.cybozu.com/image`, ...).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// The object has managed fields: it has been applied server-side at least once.
    #[serde(default)]
    pub has_been_ssa: bool,
}

/// What identifies a Kubernetes object in a document: `apiVersion`, `kind`, `metadata.namespace`
/// and `metadata.name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceInfo {
    /// `apiVersion`, e.g. `v1`, `apps/v1`.
    pub api_version: String,
    /// `kind`, e.g. `ConfigMap`.
    pub kind: String,
    /// `metadata.namespace`; `None` when absent or empty (a cluster-scoped key).
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
}

impl ResourceInfo {
    /// The resource key: `Kind/name`, or `Kind/namespace/name` (CKE's `ParseResource`).
    pub fn key(&self) -> String {
        resource_key(&self.kind, self.namespace.as_deref(), &self.name)
    }
}

/// The key of a resource: `Kind/name`, or `Kind/namespace/name` when `namespace` is non-empty.
pub fn resource_key(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|ns| !ns.is_empty()) {
        None => format!("{kind}/{name}"),
        Some(ns) => format!("{kind}/{ns}/{name}"),
    }
}

/// A resource cke keeps applied (CKE's `ResourceDefinition`): a user resource stored at
/// `resource/<key>`, or one of cke's static resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDefinition {
    /// `Kind/name` or `Kind/namespace/name`.
    pub key: String,
    /// `kind`.
    pub kind: String,
    /// `apiVersion` (CKE keeps it only inside the definition; the planner and `/status` show it).
    pub api_version: String,
    /// `metadata.namespace`; `None` for a cluster-scoped key.
    pub namespace: Option<String>,
    /// `metadata.name`.
    pub name: String,
    /// The revision: for a user resource, the etcd `ModRevision` of its key; for a static resource,
    /// the `cke.cybozu.com/revision` it carries.
    pub revision: i64,
    /// The image(s) of a static resource (its `cke.cybozu.com/image`); `None` for user resources.
    /// It may name several images: compare it as a whole, do not pull it.
    pub image: Option<String>,
    /// The document as stored (YAML or JSON), byte for byte.
    pub definition: Vec<u8>,
}

impl ResourceDefinition {
    /// A definition of `info` at `revision`, without an image.
    pub fn new(info: ResourceInfo, revision: i64, definition: Vec<u8>) -> Self {
        ResourceDefinition {
            key: info.key(),
            kind: info.kind,
            api_version: info.api_version,
            namespace: info.namespace,
            name: info.name,
            revision,
            image: None,
            definition,
        }
    }

    /// A stored user resource: the document at `resource/<key>` and that key's `ModRevision`.
    /// The key must be the document's own key (`ckecli resource set` stores it so).
    pub fn from_stored(key: &str, definition: Vec<u8>, revision: i64) -> Result<Self, ResourceError> {
        parse_resource_key(key)?;
        let (own_key, info) = parse_resource(&definition)?;
        if own_key != key {
            return Err(ResourceError::Key {
                key: key.to_string(),
                reason: format!("the document stored there is {own_key}"),
            });
        }
        Ok(ResourceDefinition::new(info, revision, definition))
    }

    /// CKE's `NeedUpdate`: true when the object is absent, carries no or another revision
    /// annotation, or (for a definition with an image) no or another image annotation.
    pub fn needs_update(&self, status: Option<&ResourceStatus>) -> bool {
        let Some(status) = status else {
            return true;
        };
        if status.annotations.get(ANNOTATION_RESOURCE_REVISION) != Some(&self.revision.to_string()) {
            return true;
        }
        match &self.image {
            None => false,
            Some(image) => status.annotations.get(ANNOTATION_RESOURCE_IMAGE) != Some(image),
        }
    }

    /// The definition decoded as a JSON object, ready for the changes of [`set_revision`] and its
    /// companions.
    pub fn decode(&self) -> Result<serde_json::Value, ResourceError> {
        decode_definition(&self.definition)
    }

    /// The rank of its kind in the order of application (CKE's `rank`).
    pub fn rank(&self) -> u32 {
        kind_rank(&self.kind, self.namespace.as_deref().is_some_and(|ns| !ns.is_empty()))
    }
}

impl fmt::Display for ResourceDefinition {
    /// `key@revision`, as CKE's `String()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.key, self.revision)
    }
}

/// CKE's `NeedUpdate` as a function: see [`ResourceDefinition::needs_update`].
pub fn needs_update(def: &ResourceDefinition, status: Option<&ResourceStatus>) -> bool {
    def.needs_update(status)
}

/// The rank of a kind in the order of application (CKE's `rank`): kinds others depend on first;
/// kinds it does not list come after the listed ones of their scope (cluster-scoped 1000,
/// namespaced 3000; the scope is read from the key, so a namespaced kind without namespace counts as
/// cluster-scoped, as in CKE).
pub fn kind_rank(kind: &str, namespaced: bool) -> u32 {
    match kind {
        "Namespace" => 10,
        "ServiceAccount" => 20,
        "CustomResourceDefinition" => 30,
        "ClusterRole" => 40,
        "ClusterRoleBinding" => 50,
        "Role" => 2000,
        "RoleBinding" => 2010,
        "NetworkPolicy" => 2020,
        "Secret" => 2030,
        "ConfigMap" => 2040,
        _ if namespaced => 3000,
        _ => 1000,
    }
}

/// Sorts resources into the order of application (CKE's `SortResources`): by rank, then by key.
pub fn sort_resources(res: &mut [ResourceDefinition]) {
    res.sort_by(|a, b| a.rank().cmp(&b.rank()).then_with(|| a.key.cmp(&b.key)));
}

/// Parses one document (YAML or JSON) as CKE's `ParseResource`: it must be a mapping with a
/// non-empty string `apiVersion`, `kind` and `metadata.name`; `metadata.namespace`, if present, must
/// be a string. Names, namespaces and kinds may not contain `/` (it separates the key's parts).
/// Returns the key and what identifies the object.
pub fn parse_resource(doc: &[u8]) -> Result<(String, ResourceInfo), ResourceError> {
    let value = decode_definition(doc)?;
    let info = resource_info(&value)?;
    Ok((info.key(), info))
}

/// Decodes a document (YAML, or JSON when it starts with `{`) into a JSON value. YAML merge keys
/// are applied, tags dropped, and scalar mapping keys become strings, as Kubernetes' YAML-to-JSON
/// conversion does.
pub fn decode_definition(doc: &[u8]) -> Result<serde_json::Value, ResourceError> {
    yaml::decode(doc, 0)
}

/// Splits a resource key into kind, namespace (`None` for `Kind/name`) and name, as CKE's
/// `GetAllResources` does; anything but two or three non-empty parts is an error.
pub fn parse_resource_key(key: &str) -> Result<(String, Option<String>, String), ResourceError> {
    let parts: Vec<&str> = key.split('/').collect();
    let bad = |reason: &str| ResourceError::Key {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    if parts.iter().any(|p| p.is_empty()) {
        return Err(bad("a part is empty (expected Kind/name or Kind/namespace/name)"));
    }
    match parts.as_slice() {
        [kind, name] => Ok((kind.to_string(), None, name.to_string())),
        [kind, ns, name] => Ok((kind.to_string(), Some(ns.to_string()), name.to_string())),
        _ => Err(bad("expected Kind/name or Kind/namespace/name")),
    }
}

/// Reads `apiVersion`, `kind`, `metadata.namespace` and `metadata.name` of a decoded object; every
/// missing or invalid one is reported (several as [`ResourceError::Fields`]).
fn resource_info(value: &serde_json::Value) -> Result<ResourceInfo, ResourceError> {
    let Some(obj) = value.as_object() else {
        return Err(ResourceError::NotObject {
            found: json_type(value),
        });
    };
    let mut errors = Vec::new();
    let api_version = required_string(obj.get("apiVersion"), "apiVersion", false, &mut errors);
    let kind = required_string(obj.get("kind"), "kind", true, &mut errors);
    let (namespace, name) = match obj.get("metadata") {
        None | Some(serde_json::Value::Null) => {
            errors.push(field_error("metadata.name", "missing"));
            (None, String::new())
        }
        Some(serde_json::Value::Object(meta)) => {
            let name = required_string(meta.get("name"), "metadata.name", true, &mut errors);
            let namespace = optional_string(meta.get("namespace"), "metadata.namespace", &mut errors);
            (namespace, name)
        }
        Some(other) => {
            errors.push(field_error(
                "metadata",
                format!("must be a mapping, not {}", json_type(other)),
            ));
            (None, String::new())
        }
    };
    match errors.len() {
        0 => Ok(ResourceInfo {
            api_version,
            kind,
            namespace,
            name,
        }),
        1 => Err(errors.remove(0)),
        _ => Err(ResourceError::Fields { errors }),
    }
}

/// A required non-empty string field; `key_part` fields may not contain `/`.
fn required_string(
    v: Option<&serde_json::Value>,
    field: &str,
    key_part: bool,
    errors: &mut Vec<ResourceError>,
) -> String {
    match v {
        None | Some(serde_json::Value::Null) => errors.push(field_error(field, "missing")),
        Some(serde_json::Value::String(s)) if s.is_empty() => errors.push(field_error(field, "empty")),
        Some(serde_json::Value::String(s)) if key_part && s.contains('/') => {
            errors.push(field_error(field, format!("{s:?} contains '/'")))
        }
        Some(serde_json::Value::String(s)) => return s.clone(),
        Some(other) => errors.push(field_error(
            field,
            format!("must be a string, not {}", json_type(other)),
        )),
    }
    String::new()
}

/// An optional string field that is part of the key; empty is the same as absent.
fn optional_string(v: Option<&serde_json::Value>, field: &str, errors: &mut Vec<ResourceError>) -> Option<String> {
    match v {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.is_empty() => None,
        Some(serde_json::Value::String(s)) if s.contains('/') => {
            errors.push(field_error(field, format!("{s:?} contains '/'")));
            None
        }
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.push(field_error(
                field,
                format!("must be a string, not {}", json_type(other)),
            ));
            None
        }
    }
}

fn field_error(field: &str, reason: impl Into<String>) -> ResourceError {
    ResourceError::Field {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// The JSON type of a value, for messages.
fn json_type(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a sequence",
        serde_json::Value::Object(_) => "a mapping",
    }
}

/// Errors of resource documents, keys and the changes made before applying.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// The input is larger than [`crate::model::limits::MAX_INPUT_BYTES`].
    #[error(transparent)]
    Limit(#[from] crate::model::limits::LimitError),
    /// The input is not UTF-8 text.
    #[error("not UTF-8 text: {reason}")]
    NotUtf8 {
        /// Where the first invalid byte is.
        reason: String,
    },
    /// A document is not valid YAML (or JSON).
    #[error("not valid {format}: {reason}")]
    Syntax {
        /// `YAML` or `JSON`.
        format: &'static str,
        /// The parser's message, with the line in the input.
        reason: String,
    },
    /// A line starting with `---` holds more than a document separator (and a comment).
    #[error("line {line}: invalid document separator {text:?} (only a comment may follow ---)")]
    Separator {
        /// 1-based line number in the input.
        line: usize,
        /// The line.
        text: String,
    },
    /// The document is not a mapping.
    #[error("not a Kubernetes object: the document is {found}, not a mapping")]
    NotObject {
        /// What it is instead.
        found: &'static str,
    },
    /// A field is missing or invalid.
    #[error("{field}: {reason}")]
    Field {
        /// Its path, e.g. `metadata.name`, `webhooks[1].clientConfig`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Several fields of one document are missing or invalid.
    #[error("{}", join(errors, "; "))]
    Fields {
        /// One [`ResourceError::Field`] each, in document order.
        errors: Vec<ResourceError>,
    },
    /// A resource key is malformed, or does not match the document stored at it.
    #[error("resource key {key:?}: {reason}")]
    Key {
        /// The key (without `resource/`).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// An error in one document of a multi-document input.
    #[error("document {number}: {error}")]
    InDocument {
        /// The document's 1-based number in the input.
        number: usize,
        /// The error.
        error: Box<ResourceError>,
    },
    /// Several documents of an input are invalid: one [`ResourceError::InDocument`] each.
    #[error("{} documents are invalid:\n  {}", errors.len(), join(errors, "\n  "))]
    Documents {
        /// The errors, in input order.
        errors: Vec<ResourceError>,
    },
}

fn join(errors: &[ResourceError], sep: &str) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join(sep)
}
