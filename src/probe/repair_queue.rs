//! The repair queue as the probe sees it (CKE's `GetRepairQueueStatus`): the entries with their
//! `nodename` refreshed from the declaration, whether the queue is enabled, the health check of every
//! unfinished entry, and whether each draining entry's drain is complete. Changes nothing.

use std::collections::BTreeSet;

use futures::stream::{self, StreamExt};

use crate::infra::host_command::{timeout_of, with_args};
use crate::infra::{HostCommands, KubeApi};
use crate::model::repair::DEFAULT_REPAIR_HEALTH_CHECK_TIMEOUT_SECONDS;
use crate::model::{Cluster, RepairEntry, RepairQueueStatus, RepairStatus, RepairStepStatus};
use crate::storage::{repairs, Storage, StorageError};

/// Reads the queue and checks its entries. Health checks run on cke's host, at most `concurrency`
/// at once; a check that fails, times out or prints anything but `true` is "not healthy", with a
/// warning. Drains are checked through the apiserver on `apiserver`; without one (`None`) no drain
/// counts as complete. A failed read of the queue is an error: the caller plans nothing from it.
pub async fn repair_queue_status(
    storage: &dyn Storage,
    commands: &dyn HostCommands,
    kube: &dyn KubeApi,
    cluster: &Cluster,
    apiserver: Option<&str>,
    concurrency: usize,
) -> Result<RepairQueueStatus, StorageError> {
    let enabled = repairs::is_enabled(storage).await?;
    let mut entries = repairs::entries(storage).await?;
    for e in &mut entries {
        // The machine may have joined or left the cluster since it was queued.
        e.fill_nodename(cluster);
    }
    // Collected first: a lazy iterator of borrowing futures makes the pass's future not `Send`.
    let checks: Vec<_> = entries
        .iter()
        .filter(|e| !e.has_finished())
        .map(|e| async move { healthy(commands, cluster, e).await.then(|| e.address.clone()) })
        .collect();
    let results: Vec<Option<String>> = stream::iter(checks)
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let repair_completed: BTreeSet<String> = results.into_iter().flatten().collect();
    let mut drain_completed = BTreeSet::new();
    for e in entries
        .iter()
        .filter(|e| e.status == RepairStatus::Processing && e.step_status == RepairStepStatus::Draining)
    {
        if drained(kube, apiserver, e).await {
            drain_completed.insert(e.address.clone());
        }
    }
    Ok(RepairQueueStatus {
        enabled,
        entries,
        repair_completed,
        drain_completed,
    })
}

/// The entry's health check printed `true` (CKE's `isRepairTargetHealthy`).
async fn healthy(commands: &dyn HostCommands, cluster: &Cluster, e: &RepairEntry) -> bool {
    let op = match e.operation(cluster) {
        Ok(op) => op,
        Err(err) => {
            tracing::warn!(index = e.index, address = e.address, error = %err, "no health check for repair entry");
            return false;
        }
    };
    if op.health_check_command.is_empty() {
        tracing::warn!(index = e.index, address = e.address, "health check command not defined");
        return false;
    }
    let argv = with_args(&op.health_check_command, &[&e.address]);
    let timeout = timeout_of(op.command_timeout_seconds, DEFAULT_REPAIR_HEALTH_CHECK_TIMEOUT_SECONDS);
    match commands.run(&argv, timeout).await {
        Ok(out) => out.trim() == "true",
        Err(err) => {
            tracing::warn!(
                index = e.index,
                address = e.address,
                error = crate::error::error_chain(&err),
                "health check failed"
            );
            false
        }
    }
}

/// The drain of a draining entry is complete: the machine is no longer a node of the cluster (the
/// repair queue goes on with it), or no pod but DaemonSet pods and finished Job pods is left on its
/// Node (CKE's `checkPodDeletion`).
async fn drained(kube: &dyn KubeApi, apiserver: Option<&str>, e: &RepairEntry) -> bool {
    if !e.is_in_cluster() {
        return true;
    }
    let Some(apiserver) = apiserver else {
        return false;
    };
    match crate::infra::drain::remaining_pod(kube, apiserver, &e.nodename).await {
        Ok(None) => true,
        Ok(Some(pod)) => {
            tracing::info!(
                index = e.index,
                node = e.nodename,
                pod = format!("{}/{}", pod.namespace, pod.name),
                "repair drain not complete"
            );
            false
        }
        Err(err) => {
            tracing::warn!(
                index = e.index,
                node = e.nodename,
                error = crate::error::error_chain(&err),
                "cannot check the repair drain"
            );
            false
        }
    }
}
