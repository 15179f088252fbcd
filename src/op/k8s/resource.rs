//! `resource-apply` (CKE's `op/resource.go`, `resource.go` ApplyResource): one static or user
//! resource, server-side applied with field manager `cke` and force, through the healthy apiserver
//! the planner chose. Before it is sent:
//!
//! - `metadata.annotations["cke.cybozu.com/revision"]` is set to the resource's revision;
//! - a Validating/MutatingWebhookConfiguration annotated `cke.cybozu.com/inject-cacert: "true"` gets
//!   the `kubernetes-webhook` CA as every webhook's `clientConfig.caBundle`;
//! - a Secret annotated `cke.cybozu.com/issue-cert: <service>` gets `type: kubernetes.io/tls` and a
//!   certificate for that Service issued from the `kubernetes-webhook` CA.
//!
//! Where the kind is served comes from discovery, else from the declaration's
//! `trusted_rest_mappings`. A kind the server does not serve (a custom resource set before its CRD)
//! is logged and left for a later pass, as CKE does; every other failure fails the command.

use serde_json::Value;

use super::*;
use crate::infra::{ApiKind, Applied};
use crate::model::resource::{fill_tls_secret, inject_ca_bundle, issue_cert_service, set_revision, wants_ca_bundle};
use crate::model::ResourceDefinition;
use crate::op::{Operator, SeqOperator};

/// `resource-apply` of `def` through `apiserver`.
pub fn operator(apiserver: &str, def: ResourceDefinition, ctx: OpContext<'_>) -> Box<dyn Operator> {
    SeqOperator::boxed(
        "resource-apply",
        vec![def.key.clone()],
        vec![Box::new(ApplyResource {
            apiserver: apiserver.into(),
            def,
            trusted: ctx.cluster.trusted_rest_mappings.clone(),
        })],
    )
}

/// The operator for a planned `resource-apply` whose resource is no longer known (the user deleted
/// it between the plan and now): a command that refuses, naming it, so the next pass re-plans.
pub fn missing(key: &str) -> Box<dyn Operator> {
    SeqOperator::boxed(
        "resource-apply",
        vec![key.to_string()],
        vec![Box::new(Missing { key: key.into() })],
    )
}

/// Applies one resource.
pub struct ApplyResource {
    /// The control plane whose apiserver is used.
    pub apiserver: String,
    /// The resource at its revision.
    pub def: ResourceDefinition,
    /// The declaration's `trusted_rest_mappings`.
    pub trusted: Vec<crate::model::TrustedRestMapping>,
}

impl ApplyResource {
    /// The kind's REST mapping: discovery, else a trusted mapping of the same group, version and
    /// kind; `None` when neither knows it.
    async fn kind(&self, infra: &Infra) -> Result<Option<ApiKind>, crate::infra::KubeError> {
        let d = &self.def;
        if let Some(k) = infra.kube.find_kind(&self.apiserver, &d.api_version, &d.kind).await? {
            return Ok(Some(k));
        }
        let (group, version) = d.api_version.rsplit_once('/').unwrap_or(("", d.api_version.as_str()));
        Ok(self
            .trusted
            .iter()
            .find(|m| m.group == group && m.version == version && m.kind == d.kind)
            .map(|m| ApiKind::new(&d.api_version, &d.kind, &m.resource, m.namespaced)))
    }

    /// The object as sent: revision annotation, CA bundle, issued certificate.
    async fn body(&self, infra: &Infra) -> Result<Value, CommandError> {
        let cmd = self.command();
        let refuse = |e: crate::model::ResourceError| CommandError::refused(&cmd, format!("{}: {e}", self.def.key));
        let mut obj = self.def.decode().map_err(refuse)?;
        set_revision(&mut obj, self.def.revision).map_err(refuse)?;
        if wants_ca_bundle(&obj) {
            let ca = infra
                .storage
                .get_ca("kubernetes-webhook")
                .await
                .map_err(|e| CommandError::new(&cmd, e))?
                .ok_or_else(|| {
                    CommandError::refused(
                        &cmd,
                        "CA kubernetes-webhook is not in the management etcd (ckecli vault init)",
                    )
                })?;
            inject_ca_bundle(&mut obj, &ca).map_err(refuse)?;
        }
        if let Some(target) = issue_cert_service(&obj) {
            let req = crate::infra::pki::requests::webhook(&target.namespace, &target.service);
            let cert = infra.issuer.issue(&req).await.map_err(|e| CommandError::new(&cmd, e))?;
            fill_tls_secret(&mut obj, &cert.certificate, &cert.private_key).map_err(refuse)?;
        }
        Ok(obj)
    }
}

#[async_trait::async_trait]
impl Commander for ApplyResource {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "apply-resource".into(),
            target: self.def.to_string(),
            detail: format!("{} through {}", self.def.api_version, self.apiserver),
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let fail = |e: crate::infra::KubeError| CommandError::with_retry(&self.command(), crate::error::Retry::Soon, e);
        let body = self.body(infra).await?;
        let Some(kind) = self.kind(infra).await.map_err(fail)? else {
            tracing::warn!(
                resource = %self.def,
                "the server does not serve {} {} (no trusted_rest_mappings entry either); trying again next pass",
                self.def.api_version,
                self.def.kind
            );
            return Ok(Outcome::Done);
        };
        match infra
            .kube
            .apply_object(&self.apiserver, &kind, &body)
            .await
            .map_err(fail)?
        {
            Applied::Applied => {}
            Applied::NotServed => tracing::warn!(
                resource = %self.def,
                "the resource type is not found on the server; trying again next pass"
            ),
        }
        Ok(Outcome::Done)
    }
}

/// A resource that vanished between planning and running.
struct Missing {
    key: String,
}

#[async_trait::async_trait]
impl Commander for Missing {
    fn command(&self) -> RecordCommand {
        RecordCommand {
            name: "apply-resource".into(),
            target: self.key.clone(),
            detail: String::new(),
        }
    }

    async fn run(&self, _infra: &Infra) -> Result<Outcome, CommandError> {
        Err(CommandError::soon(
            &self.command(),
            format!("resource {} is no longer stored; the next pass plans anew", self.key),
        ))
    }
}
