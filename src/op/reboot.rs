//! The reboot queue's operators (CKE's `op/reboot.go`). Each acts on queue entries by index and
//! changes them with compare-and-swap updates fenced on the leadership ([`crate::storage::queue`]),
//! applying its change to the entry as stored, so a `ckecli reboot-queue cancel` made meanwhile is
//! kept: a cancelled entry is never drained, rebooted or backed off.
//!
//! - `reboot-drain-start`: `reboot-drain-cordon` marks each entry `draining` (now), cordons and
//!   annotates its Node (`cke.cybozu.com/reboot`), and runs the eviction dry run
//!   ([`crate::infra::drain`]); then `reboot-drain-evict` evicts, node after node (parallel drains
//!   deadlock more easily), the entries still `draining`. A node whose step fails backs off
//!   ([`RebootQueueEntry::back_off`]); its cordon stays until `uncordon-nodes` removes it.
//! - `reboot-drain-timeout`: backs off entries whose drain took too long.
//! - `reboot-delete-daemonset-pod`: deletes the pods of `OnDelete` DaemonSets on drained nodes (a
//!   failure is logged, as CKE notes it).
//! - `reboot-reboot`: marks each entry `rebooting` (now), forgets the SSH connection, and runs
//!   `reboot_command <address>` on cke's host with `command_timeout_seconds`, `command_retries` and
//!   `command_interval`, all nodes at once; a command that keeps failing is logged and the entry
//!   stays `rebooting` (the boot check decides), as in CKE. A command ended by the leader's lease
//!   deadline fails the step instead (the term is over).
//! - `reboot-dequeue`, `reboot-cancel`: remove entries, fenced.
//! - `reboot-uncordon`: removes the cordon and the annotation.
//!
//! The API calls name a node's `Node` by its declared `hostname`, else its address.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;

use super::{CommandError, Commander, Infra, OpContext, Operator, Outcome, SeqOperator};
use crate::infra::drain::{self, DrainRules};
use crate::infra::host_command::{run_with_retries, timeout_of, with_args};
use crate::infra::NodeUpdate;
use crate::model::{Cluster, QueueItem, RebootQueueEntry, RebootStatus, RecordCommand, DRAIN_BACKOFF_BASE_SECONDS};
use crate::storage::queue::{self, REBOOT_QUEUE};

fn record(name: &str, target: String, detail: impl Into<String>) -> RecordCommand {
    RecordCommand {
        name: name.into(),
        target,
        detail: detail.into(),
    }
}

fn nodes(entries: &[QueueItem]) -> Vec<String> {
    entries.iter().map(|e| e.node.clone()).collect()
}

fn target(entries: &[QueueItem]) -> String {
    nodes(entries).join(",")
}

/// The name of the `Node` of the node at `address`: its declared hostname, else the address.
fn node_name(cluster: &Cluster, address: &str) -> String {
    cluster.node(address).map_or(address, |n| n.nodename()).to_string()
}

/// The drain rules of the `reboot` section, with the `Eviction` version of the Kubernetes image.
fn rules(ctx: &OpContext<'_>) -> DrainRules {
    let policy_api = crate::k8s::VersionSet::for_image(&ctx.images.kubernetes)
        .map(|r| r.set.policy_api)
        .unwrap_or(crate::k8s::VersionSet::latest().policy_api);
    DrainRules::for_reboot(&ctx.cluster.reboot.clone().unwrap_or_default(), policy_api)
}

/// Changes entry `index` by `change`, fenced when the infra carries the fence; the entry after it
/// (`None` when it is gone).
async fn update(
    infra: &Infra,
    cmd: &RecordCommand,
    index: i64,
    change: impl FnMut(&mut RebootQueueEntry) -> bool + Send,
) -> Result<Option<RebootQueueEntry>, CommandError> {
    queue::update(&*infra.storage, &REBOOT_QUEUE, index, infra.fence.as_ref(), change)
        .await
        .map_err(|e| CommandError::new(cmd, e))
}

/// Moves entry `index` to `status` now, unless it is cancelled or gone; whether it moved.
async fn transition(
    infra: &Infra,
    cmd: &RecordCommand,
    index: i64,
    status: RebootStatus,
) -> Result<bool, CommandError> {
    let now = Utc::now();
    let e = update(infra, cmd, index, |e| {
        if e.status == RebootStatus::Cancelled {
            return false;
        }
        e.transition(status, now);
        true
    })
    .await?;
    Ok(e.is_some_and(|e| e.status == status))
}

/// CKE's drainBackOff: entry `index` back to `queued` with its next back-off, unless cancelled.
async fn back_off(infra: &Infra, cmd: &RecordCommand, item: &QueueItem, reason: &str) -> Result<(), CommandError> {
    let jitter = rand::random_range(0..DRAIN_BACKOFF_BASE_SECONDS);
    let now = Utc::now();
    let e = update(infra, cmd, item.index, |e| {
        if e.status == RebootStatus::Cancelled {
            return false;
        }
        e.back_off(now, jitter);
        true
    })
    .await?;
    if let Some(e) = e.filter(|e| e.status == RebootStatus::Queued) {
        tracing::warn!(
            node = item.node,
            reason,
            count = e.drain_backoff_count,
            until = ?e.drain_backoff_expire,
            "drain failed; backing off"
        );
    }
    Ok(())
}

/// `reboot-drain-start`.
pub fn drain_start(apiserver: &str, entries: &[QueueItem], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let step = |evict: bool| -> Box<dyn Commander> {
        Box::new(Drain {
            apiserver: apiserver.into(),
            entries: entries.to_vec(),
            names: entries.iter().map(|e| node_name(ctx.cluster, &e.node)).collect(),
            rules: rules(&ctx),
            evict,
        })
    };
    SeqOperator::boxed("reboot-drain-start", nodes(entries), vec![step(false), step(true)])
}

/// One half of a drain start: cordon and dry run, or the evictions.
struct Drain {
    apiserver: String,
    entries: Vec<QueueItem>,
    /// The Node name of each entry.
    names: Vec<String>,
    rules: DrainRules,
    /// The evictions (else the cordon and the dry run).
    evict: bool,
}

impl Drain {
    /// Cordons entry `i`'s Node and runs the dry run; why not, when it fails.
    async fn cordon(
        &self,
        infra: &Infra,
        i: usize,
        protected: &std::collections::BTreeSet<String>,
    ) -> Result<(), String> {
        let name = &self.names[i];
        match infra.kube.set_reboot_cordon(&self.apiserver, name, true).await {
            Ok(NodeUpdate::Missing) => return Err(format!("there is no Node {name}")),
            Ok(_) => {}
            Err(e) => return Err(format!("cannot cordon Node {name}: {}", crate::error::error_chain(&e))),
        }
        drain::evict_or_delete(&*infra.kube, &self.apiserver, name, protected, &self.rules, true)
            .await
            .map_err(|e| format!("eviction dry run: {}", crate::error::error_chain(&e)))
    }
}

#[async_trait]
impl Commander for Drain {
    fn command(&self) -> RecordCommand {
        if self.evict {
            record("reboot-drain-evict", target(&self.entries), "evict or delete the pods")
        } else {
            record(
                "reboot-drain-cordon",
                target(&self.entries),
                "draining, cordon, eviction dry run",
            )
        }
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        let cmd = self.command();
        let protected = drain::protected_namespaces(&*infra.kube, &self.apiserver, &self.rules)
            .await
            .map_err(|e| CommandError::new(&cmd, e))?;
        for (i, item) in self.entries.iter().enumerate() {
            let failure = if self.evict {
                // Those still draining: not backed off by the dry run, not cancelled meanwhile.
                let current: Option<RebootQueueEntry> = queue::entry(&*infra.storage, &REBOOT_QUEUE, item.index)
                    .await
                    .map_err(|e| CommandError::new(&cmd, e))?;
                if current.is_none_or(|e| e.status != RebootStatus::Draining) {
                    continue;
                }
                tracing::info!(node = item.node, "evicting the pods");
                drain::evict_or_delete(
                    &*infra.kube,
                    &self.apiserver,
                    &self.names[i],
                    &protected,
                    &self.rules,
                    false,
                )
                .await
                .err()
                .map(|e| format!("eviction: {}", crate::error::error_chain(&e)))
            } else {
                if !transition(infra, &cmd, item.index, RebootStatus::Draining).await? {
                    continue;
                }
                self.cordon(infra, i, &protected).await.err()
            };
            if let Some(reason) = failure {
                back_off(infra, &cmd, item, &reason).await?;
            }
        }
        Ok(Outcome::Done)
    }
}

/// A command over entries that runs `each` on every one, in order.
struct EachEntry {
    cmd: RecordCommand,
    entries: Vec<QueueItem>,
    kind: Each,
}

enum Each {
    /// Back off: the drain timed out.
    DrainTimeout,
    /// Delete the pods of OnDelete DaemonSets through this apiserver.
    DeleteDaemonsetPods(String, Vec<String>),
    /// Remove the entry (fenced).
    Dequeue,
}

#[async_trait]
impl Commander for EachEntry {
    fn command(&self) -> RecordCommand {
        self.cmd.clone()
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        for (i, item) in self.entries.iter().enumerate() {
            match &self.kind {
                Each::DrainTimeout => back_off(infra, &self.cmd, item, "drain timed out").await?,
                Each::DeleteDaemonsetPods(apiserver, names) => {
                    if let Err(e) = drain::delete_on_delete_daemonset_pods(&*infra.kube, apiserver, &names[i]).await {
                        tracing::warn!(
                            node = item.node,
                            error = crate::error::error_chain(&e),
                            "cannot delete the pods of OnDelete DaemonSets"
                        );
                    }
                }
                Each::Dequeue => {
                    let Some(fence) = &infra.fence else {
                        return Err(CommandError::refused(&self.cmd, "no leader fence to dequeue with"));
                    };
                    queue::dequeue(&*infra.storage, &REBOOT_QUEUE, fence, item.index)
                        .await
                        .map_err(|e| CommandError::new(&self.cmd, e))?;
                }
            }
        }
        Ok(Outcome::Done)
    }
}

fn each(name: &'static str, detail: &str, entries: &[QueueItem], kind: Each) -> Box<dyn Operator> {
    SeqOperator::boxed(
        name,
        nodes(entries),
        vec![Box::new(EachEntry {
            cmd: record(name, target(entries), detail),
            entries: entries.to_vec(),
            kind,
        })],
    )
}

/// `reboot-drain-timeout`.
pub fn drain_timeout(entries: &[QueueItem]) -> Box<dyn Operator> {
    each("reboot-drain-timeout", "back off", entries, Each::DrainTimeout)
}

/// `reboot-delete-daemonset-pod`.
pub fn delete_daemonset_pod(apiserver: &str, entries: &[QueueItem], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let names = entries.iter().map(|e| node_name(ctx.cluster, &e.node)).collect();
    each(
        "reboot-delete-daemonset-pod",
        "pods of OnDelete DaemonSets",
        entries,
        Each::DeleteDaemonsetPods(apiserver.into(), names),
    )
}

/// `reboot-dequeue` or `reboot-cancel` (`name`).
pub fn dequeue(name: &'static str, entries: &[QueueItem]) -> Box<dyn Operator> {
    each(name, "remove from the queue", entries, Each::Dequeue)
}

/// `reboot-reboot`.
pub fn reboot(entries: &[QueueItem], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let r = ctx.cluster.reboot.clone().unwrap_or_default();
    let cmd = RebootCommand {
        entries: entries.to_vec(),
        users: entries
            .iter()
            .map(|e| {
                ctx.cluster
                    .node(&e.node)
                    .map_or("root", |n| n.user.as_str())
                    .to_string()
            })
            .collect(),
        command: r.reboot_command,
        timeout: timeout_of(r.command_timeout_seconds, 0),
        retries: r.command_retries.unwrap_or(0).clamp(0, i64::from(u32::MAX)) as u32,
        interval: Duration::from_secs(r.command_interval.unwrap_or(0).max(0) as u64),
    };
    SeqOperator::boxed("reboot-reboot", nodes(entries), vec![Box::new(cmd)])
}

/// Runs `reboot_command` for every entry at once.
struct RebootCommand {
    entries: Vec<QueueItem>,
    /// The SSH user of each entry's node.
    users: Vec<String>,
    command: Vec<String>,
    timeout: Option<Duration>,
    retries: u32,
    interval: Duration,
}

#[async_trait]
impl Commander for RebootCommand {
    fn command(&self) -> RecordCommand {
        record("reboot-reboot", target(&self.entries), self.command.join(" "))
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        if self.command.is_empty() {
            return Err(CommandError::refused(
                &self.command(),
                "reboot.reboot_command is not declared",
            ));
        }
        let cmd = self.command();
        let runs = self.entries.iter().zip(&self.users).map(|(item, user)| {
            let cmd = cmd.clone();
            async move {
                if !transition(infra, &cmd, item.index, RebootStatus::Rebooting).await? {
                    return Ok::<(), CommandError>(());
                }
                infra.nodes.release(&item.node, user).await;
                let argv = with_args(&self.command, &[&item.node]);
                match run_with_retries(&*infra.commands, &argv, self.timeout, self.retries, self.interval).await {
                    // The term is over: nothing is concluded (the others' commands end with this one).
                    Err(e) if e.is_lease_expired() => return Err(CommandError::new(&cmd, e)),
                    Err(e) => tracing::warn!(
                        node = item.node,
                        error = crate::error::error_chain(&e),
                        "given up rebooting the node; its boot check decides"
                    ),
                    Ok(_) => {}
                }
                Ok(())
            }
        });
        futures::future::try_join_all(runs).await?;
        Ok(Outcome::Done)
    }
}

/// `reboot-uncordon`: Nodes `names` uncordoned through `apiserver`.
pub fn uncordon(apiserver: &str, names: &[String]) -> Box<dyn Operator> {
    SeqOperator::boxed(
        "reboot-uncordon",
        names.to_vec(),
        vec![Box::new(Uncordon {
            apiserver: apiserver.into(),
            names: names.to_vec(),
        })],
    )
}

struct Uncordon {
    apiserver: String,
    names: Vec<String>,
}

#[async_trait]
impl Commander for Uncordon {
    fn command(&self) -> RecordCommand {
        record(
            "reboot-uncordon",
            self.names.join(","),
            "uncordon, remove cke.cybozu.com/reboot",
        )
    }

    async fn run(&self, infra: &Infra) -> Result<Outcome, CommandError> {
        for name in &self.names {
            match infra.kube.set_reboot_cordon(&self.apiserver, name, false).await {
                Ok(NodeUpdate::Missing) => tracing::info!(node = name, "no Node to uncordon"),
                Ok(_) => {}
                Err(e) => return Err(CommandError::new(&self.command(), e)),
            }
        }
        Ok(Outcome::Done)
    }
}
