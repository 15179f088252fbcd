//! Kubernetes itself, as pure data: which arguments, binds and run options each component gets
//! ([`params`]), the component configuration files ([`config`]), kubeconfigs ([`kubeconfig`]), the
//! apiserver's encryption config and audit policy file ([`encryption`]), all per Kubernetes minor
//! version ([`version`]); the labels, annotations and taints cke keeps on Nodes ([`node`]); the cluster
//! and node DNS configuration ([`dns`]) and CKE's static resources ([`static_resources`]). Values follow CKE's `op/k8s` (cybozu-go/cke @ d66a146); where they differ,
//! `docs/kubernetes.md` says why.
//!
//! This module does no I/O: no clock, no randomness, no network, no files. Operators, probes and the
//! planner call it; it must not call them.

pub mod config;
pub mod dns;
pub mod encryption;
pub mod endpoints;
pub mod kubeconfig;
pub mod node;
pub mod params;
pub mod static_resources;

/// The version table lives with the model (validation needs it); here under its old name too.
pub use crate::model::kube_version as version;
pub use crate::model::kube_version::{KubeVersion, VersionSet};

/// Errors of the Kubernetes parameters. Each names the field or input it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum K8sError {
    /// The Kubernetes version cannot be read from the image reference, or is older than any
    /// supported version.
    #[error(transparent)]
    Version(#[from] crate::model::kube_version::KubeVersionError),
    /// A user-supplied component configuration (`options.<component>.config`) is unusable.
    #[error("{field}: {reason}")]
    Config {
        /// The field, e.g. `options.kubelet.config`.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The cluster's `service_subnet` is not an IP network.
    #[error("service_subnet {subnet:?}: {reason}")]
    ServiceSubnet {
        /// The subnet as declared.
        subnet: String,
        /// What is wrong.
        reason: String,
    },
    /// The stored encryption keys (`cke/secrets/k8s`, field `aescbc`) are unreadable.
    #[error("encryption keys (cke/secrets/k8s aescbc): {0}")]
    EncryptionKeys(String),
}
