//! The Kubernetes objects cke keeps whole, and the two Node-level operations of `k8s-maintain`:
//!
//! - `wait-kubernetes` (CKE's `op/kube_wait.go`): polls the ServiceAccount `kube-system/default`
//!   once a second, at most [`WAIT_ATTEMPTS`] times; running out is not an error (the next pass
//!   plans it again).
//! - `create-*` / `update-*` of the endpoints, the etcd Service and the DNS ConfigMaps
//!   ([`crate::model::CkeObject`]): one command that sends the body the planner built, a create or
//!   an unconditional replace, as CKE does. A ConfigMap create first looks whether it exists
//!   (CKE's create-*-configmap: Get, then Create on 404).
//! - `remove-node` (CKE's `op/kube_node_remove.go`): cordon, then delete, each Node no declared node
//!   accounts for; a Node already being deleted is skipped.

use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::infra::{ApiKind, NodeRemoval};
use crate::model::CkeObject;
use crate::op::{Operator, SeqOperator};

/// How many times `wait-kubernetes` looks for the ServiceAccount (CKE: 100).
pub const WAIT_ATTEMPTS: usize = 100;
/// How long `wait-kubernetes` waits between looks (CKE: 1 s).
pub const WAIT_INTERVAL: Duration = Duration::from_secs(1);

/// `wait-kubernetes` through the apiserver on `apiserver`.
pub fn wait_operator(apiserver: &str) -> Box<dyn Operator> {
    SeqOperator::boxed(
        "wait-kubernetes",
        vec![apiserver.to_string()],
        vec![Box::new(WaitKubernetes {
            apiserver: apiserver.into(),
        })],
    )
}

/// Waits for the ServiceAccount `kube-system/default`.
pub struct WaitKubernetes {
    /// The control plane whose apiserver is asked.
    pub apiserver: String,
}

#[async_trait::async_trait]
impl Commander for WaitKubernetes {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "wait-kubernetes".into(),
            target: self.apiserver.clone(),
            detail: "ServiceAccount kube-system/default".into(),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        for attempt in 0..WAIT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(WAIT_INTERVAL).await;
            }
            match infra
                .kube
                .get_object(
                    &self.apiserver,
                    &ApiKind::service_account(),
                    Some("kube-system"),
                    "default",
                )
                .await
            {
                Ok(Some(_)) => return Ok(Outcome::Done),
                Ok(None) => {}
                Err(e) => tracing::info!(error = crate::error::error_chain(&e), "waiting for Kubernetes"),
            }
        }
        tracing::warn!(
            apiserver = self.apiserver,
            "ServiceAccount kube-system/default did not appear; trying again next pass"
        );
        Ok(Outcome::Done)
    }
}

/// The kind of `object`, the EndpointSlice's API version read from `body`.
pub fn api_kind(object: CkeObject, body: &Value) -> ApiKind {
    match object {
        CkeObject::KubernetesEndpoints | CkeObject::EtcdEndpoints => ApiKind::endpoints(),
        CkeObject::KubernetesEndpointSlice | CkeObject::EtcdEndpointSlice => {
            ApiKind::endpoint_slice(body["apiVersion"].as_str().unwrap_or("discovery.k8s.io/v1"))
        }
        CkeObject::EtcdService => ApiKind::service(),
        CkeObject::ClusterDnsConfigMap | CkeObject::NodeDnsConfigMap => ApiKind::config_map(),
    }
}

/// `create-…` (`create`) or `update-…` of `object` with `body`, through `apiserver`.
pub fn object_operator(apiserver: &str, object: CkeObject, create: bool, body: &Value) -> Box<dyn Operator> {
    SeqOperator::boxed(
        object.op_name(create),
        vec![apiserver.to_string()],
        vec![Box::new(WriteObject {
            apiserver: apiserver.into(),
            object,
            create,
            body: body.clone(),
        })],
    )
}

/// Creates or replaces one object.
pub struct WriteObject {
    /// The control plane whose apiserver is used.
    pub apiserver: String,
    /// Which object.
    pub object: CkeObject,
    /// Create (else replace).
    pub create: bool,
    /// What is sent.
    pub body: Value,
}

#[async_trait::async_trait]
impl Commander for WriteObject {
    fn command(&self) -> RecordCommand {
        let kind = api_kind(self.object, &self.body);
        RecordCommand {
            name: self.object.op_name(self.create).into(),
            target: self.apiserver.clone(),
            detail: format!("{} {}", kind.kind, self.object.object_key()),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let kind = api_kind(self.object, &self.body);
        let fail = |e: crate::infra::KubeError| CommandError::with_retry(&self.command(), crate::error::Retry::Soon, e);
        if !self.create {
            infra
                .kube
                .replace_object(&self.apiserver, &kind, &self.body)
                .await
                .map_err(fail)?;
            return Ok(Outcome::Done);
        }
        if kind == ApiKind::config_map() {
            let (ns, name) = self.object.object_key().split_once('/').unwrap_or_default();
            if infra
                .kube
                .get_object(&self.apiserver, &kind, Some(ns), name)
                .await
                .map_err(fail)?
                .is_some()
            {
                return Ok(Outcome::Done);
            }
        }
        infra
            .kube
            .create_object(&self.apiserver, &kind, &self.body)
            .await
            .map_err(fail)?;
        Ok(Outcome::Done)
    }
}

/// `remove-node` of the Nodes named `names`, through `apiserver`.
pub fn remove_node_operator(apiserver: &str, names: &[String]) -> Box<dyn Operator> {
    let commands = names
        .iter()
        .map(|name| {
            Box::new(RemoveNode {
                apiserver: apiserver.into(),
                name: name.clone(),
            }) as Box<dyn Commander>
        })
        .collect();
    SeqOperator::boxed("remove-node", names.to_vec(), commands)
}

/// Cordons and deletes one Node.
pub struct RemoveNode {
    /// The control plane whose apiserver is used.
    pub apiserver: String,
    /// The Node's name.
    pub name: String,
}

#[async_trait::async_trait]
impl Commander for RemoveNode {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "remove-node".into(),
            target: self.name.clone(),
            detail: format!("cordon and delete Node {} through {}", self.name, self.apiserver),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let r = infra
            .kube
            .remove_node(&self.apiserver, &self.name)
            .await
            .map_err(|e| CommandError::with_retry(&self.command(), crate::error::Retry::Soon, e))?;
        match r {
            NodeRemoval::Deleted => tracing::info!(node = self.name, "Node deleted"),
            NodeRemoval::Deleting => tracing::info!(node = self.name, "Node is being deleted already"),
            NodeRemoval::Missing => {}
        }
        Ok(Outcome::Done)
    }
}
