//! `repair-drain-start` (CKE's `op/repair_drain_start.go`): marks the entry `processing`/`draining`
//! at the planned step, then drains its Node through the healthy apiserver the planner chose: an
//! eviction dry run first (one pod that cannot go keeps every pod of the node where it is), then the
//! cordon with the annotation `cke.cybozu.com/reboot` (shared with the reboot queue), then the
//! evictions ([`crate::infra::drain`], the `repair` section's rules). A failure of the dry run, the
//! cordon or the evictions backs the entry off; the probe then sees whether the drain completes.

use super::*;
use crate::infra::drain::{evict_or_delete, protected_namespaces, DrainError, DrainRules};
use crate::infra::{KubeError, NodeUpdate};
use crate::model::RepairStepStatus;

/// The operator for step `step` of entry `index` (Node `nodename`), through the apiserver on
/// `apiserver`.
pub fn operator(
    apiserver: &str,
    index: i64,
    address: &str,
    nodename: &str,
    step: usize,
    ctx: OpContext<'_>,
) -> Box<dyn Operator> {
    let policy_api = crate::k8s::VersionSet::for_image(&ctx.images.kubernetes)
        .map(|r| r.set.policy_api)
        .unwrap_or(crate::k8s::VersionSet::latest().policy_api);
    let rules = DrainRules::for_repair(&ctx.cluster.repair.clone().unwrap_or_default(), policy_api);
    single(
        "repair-drain-start",
        address,
        DrainStart {
            apiserver: apiserver.into(),
            index,
            address: address.into(),
            nodename: nodename.into(),
            step,
            rules,
        },
    )
}

/// Marks the entry draining and drains the Node.
pub struct DrainStart {
    /// The control plane whose apiserver is used.
    pub apiserver: String,
    /// The entry's index.
    pub index: i64,
    /// The machine's address.
    pub address: String,
    /// Its Node.
    pub nodename: String,
    /// The step whose drain this is.
    pub step: usize,
    /// How to drain.
    pub rules: DrainRules,
}

impl DrainStart {
    /// The dry run, the cordon, the evictions.
    async fn drain(&self, infra: &Infra) -> Result<(), DrainError> {
        let kube = &*infra.kube;
        let protected = protected_namespaces(kube, &self.apiserver, &self.rules).await?;
        evict_or_delete(kube, &self.apiserver, &self.nodename, &protected, &self.rules, true).await?;
        tracing::info!(index = self.index, node = self.nodename, "eviction dry run succeeded");
        if kube.set_reboot_cordon(&self.apiserver, &self.nodename, true).await? == NodeUpdate::Missing {
            return Err(DrainError::Kube(KubeError::Api {
                address: self.apiserver.clone(),
                reason: format!("failed to cordon node {}: there is no such Node", self.nodename),
            }));
        }
        evict_or_delete(kube, &self.apiserver, &self.nodename, &protected, &self.rules, false).await?;
        tracing::info!(index = self.index, node = self.nodename, "evictions started");
        Ok(())
    }
}

#[async_trait::async_trait]
impl super::super::Commander for DrainStart {
    fn command(&self) -> RecordCommand {
        record(
            "repair-drain-start",
            &self.address,
            format!(
                "repair entry {} step {}: drain Node {} through {}",
                self.index, self.step, self.nodename, self.apiserver
            ),
        )
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        start_step(infra, &cmd, self.index, self.step, RepairStepStatus::Draining).await?;
        if let Err(e) = self.drain(infra).await {
            back_off(infra, &cmd, self.index, &crate::error::error_chain(&e)).await?;
        }
        Ok(Outcome::Done)
    }
}
