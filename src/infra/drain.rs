//! Draining a node as CKE does (`op/reboot_decide.go`: enumeratePods, doEvictOrDeleteNodePod,
//! checkPodDeletion, deleteOnDeleteDaemonSetPod), over [`KubeApi`]: one piece for the reboot and the
//! repair queues, configured by [`DrainRules`] from either section of the declaration.
//!
//! The pods of a node are taken one at a time, each as [`classify`] says:
//! - pods owned by a DaemonSet, and Job pods that are `Pending`, `Succeeded` or `Failed`, are left;
//! - a running Job pod is deleted unless `protected_job_pods` selects it, which stops the drain;
//! - any other pod is evicted (the eviction API honours PodDisruptionBudgets). A 404 means it is
//!   gone already. A 429 (a budget forbids it now) deletes a pod of an unprotected namespace, and is
//!   retried `evict_retries` times every `evict_interval` seconds for a protected one, then stops the
//!   drain. Any other failure stops it.
//!
//! The dry run ([`evict_or_delete`] with `dry_run`) changes nothing: it evicts with `dryRun=All`
//! only the pods of protected namespaces (the others are deleted anyway if need be), tries each
//! once, and checks the Job pods; CKE runs it on a node before evicting anything there, so that one
//! pod that cannot go keeps all of that node's pods where they are.
//!
//! Nothing here decides what to drain or when; the queues do.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::infra::{Eviction, KubeApi, KubeError, KubePod};
use crate::model::LabelSelector;

/// How a node is drained (the `reboot` or `repair` section's settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainRules {
    /// Namespaces whose pods are never deleted when their eviction is refused (unset: all).
    pub protected_namespaces: LabelSelector,
    /// Running Job pods that stop the drain instead of being deleted (unset: all).
    pub protected_job_pods: LabelSelector,
    /// Evictions tried per pod of a protected namespace (`evict_retries + 1`).
    pub evict_attempts: u32,
    /// Between those attempts (`evict_interval` seconds).
    pub evict_interval: Duration,
    /// The `Eviction` API version ([`crate::model::kube_version::VersionSet::policy_api`]).
    pub policy_api: String,
}

impl DrainRules {
    /// Rules from a section's fields, with CKE's defaults (every namespace and every Job pod
    /// protected, one attempt, no interval).
    pub fn new(
        protected_namespaces: &Option<LabelSelector>,
        protected_job_pods: &Option<LabelSelector>,
        evict_retries: Option<i64>,
        evict_interval: Option<i64>,
        policy_api: &str,
    ) -> Self {
        DrainRules {
            protected_namespaces: LabelSelector::or_everything(protected_namespaces),
            protected_job_pods: LabelSelector::or_everything(protected_job_pods),
            evict_attempts: 1 + evict_retries.unwrap_or(0).clamp(0, i64::from(u32::MAX - 1)) as u32,
            evict_interval: Duration::from_secs(evict_interval.unwrap_or(0).max(0) as u64),
            policy_api: policy_api.to_string(),
        }
    }

    /// The rules of the reboot queue.
    pub fn for_reboot(r: &crate::model::Reboot, policy_api: &str) -> Self {
        DrainRules::new(
            &r.protected_namespaces,
            &r.protected_job_pods,
            r.evict_retries,
            r.evict_interval,
            policy_api,
        )
    }

    /// The rules of the repair queue.
    pub fn for_repair(r: &crate::model::Repair, policy_api: &str) -> Self {
        DrainRules::new(
            &r.protected_namespaces,
            &r.protected_job_pods,
            r.evict_retries,
            r.evict_interval,
            policy_api,
        )
    }
}

/// Why a drain stopped.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The API failed.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// A running Job pod that `protected_job_pods` selects is on the node.
    #[error("protected job-managed pod exists: {namespace}/{name}, phase={phase}")]
    ProtectedJobPod {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its phase.
        phase: String,
    },
    /// The eviction of a pod of a protected namespace was refused (429) every time.
    #[error("failed to evict pod {namespace}/{name} due to PDB: {message}")]
    Refused {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The server's last answer.
        message: String,
    },
    /// A pod that the drain removes is still there.
    #[error("pod exists: {namespace}/{name}, phase={phase}")]
    PodRemains {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// Its phase.
        phase: String,
    },
}

/// What draining does with a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodClass {
    /// Left where it is: owned by a DaemonSet, or a Job pod that is not running.
    Left,
    /// A running Job pod: deleted, or the drain stops if it is protected.
    JobPod,
    /// Evicted.
    Evicted,
}

/// CKE's enumeratePods: DaemonSet pods and Job pods `Pending`, `Succeeded` or `Failed` are left;
/// other Job pods are Job pods; the rest are evicted.
pub fn classify(pod: &KubePod) -> PodClass {
    match pod.controller_kind.as_deref() {
        Some("DaemonSet") => PodClass::Left,
        Some("Job") if matches!(pod.phase.as_str(), "Pending" | "Succeeded" | "Failed") => PodClass::Left,
        Some("Job") => PodClass::JobPod,
        _ => PodClass::Evicted,
    }
}

/// The namespaces `protected_namespaces` selects.
pub async fn protected_namespaces(
    kube: &dyn KubeApi,
    address: &str,
    rules: &DrainRules,
) -> Result<BTreeSet<String>, KubeError> {
    Ok(kube
        .namespaces(address, &rules.protected_namespaces.to_query())
        .await?
        .into_iter()
        .collect())
}

/// Evicts or deletes the pods of Node `node` by the rules, through the apiserver on `address`;
/// `protected` are the protected namespaces ([`protected_namespaces`]). With `dry_run` nothing
/// changes: the evictions of protected pods are tried once with `dryRun=All` and the Job pods are
/// checked.
pub async fn evict_or_delete(
    kube: &dyn KubeApi,
    address: &str,
    node: &str,
    protected: &BTreeSet<String>,
    rules: &DrainRules,
    dry_run: bool,
) -> Result<(), DrainError> {
    for pod in kube.pods_on_node(address, node).await? {
        match classify(&pod) {
            PodClass::Left => {}
            PodClass::JobPod => {
                if rules.protected_job_pods.matches(&pod.labels) {
                    return Err(DrainError::ProtectedJobPod {
                        namespace: pod.namespace,
                        name: pod.name,
                        phase: pod.phase,
                    });
                }
                if !dry_run {
                    kube.delete_pod(address, &pod.namespace, &pod.name).await?;
                    tracing::info!(namespace = pod.namespace, name = pod.name, "deleted job-managed pod");
                }
            }
            PodClass::Evicted => {
                let is_protected = protected.contains(&pod.namespace);
                if dry_run && !is_protected {
                    // Deleted if its eviction is refused: nothing can stop it.
                    continue;
                }
                evict_one(kube, address, &pod, is_protected, rules, dry_run).await?;
            }
        }
    }
    Ok(())
}

async fn evict_one(
    kube: &dyn KubeApi,
    address: &str,
    pod: &KubePod,
    is_protected: bool,
    rules: &DrainRules,
    dry_run: bool,
) -> Result<(), DrainError> {
    let (ns, name) = (pod.namespace.as_str(), pod.name.as_str());
    let mut attempt = 1;
    loop {
        match kube.evict_pod(address, &rules.policy_api, ns, name, dry_run).await? {
            Eviction::Evicted => {
                tracing::info!(namespace = ns, name, dry_run, "evicted pod");
                return Ok(());
            }
            Eviction::NotFound => return Ok(()),
            Eviction::TooManyRequests(message) if !is_protected => {
                tracing::warn!(
                    namespace = ns,
                    name,
                    message,
                    "eviction refused; deleting the unprotected pod"
                );
                kube.delete_pod(address, ns, name).await?;
                return Ok(());
            }
            Eviction::TooManyRequests(message) => {
                if dry_run || attempt >= rules.evict_attempts {
                    return Err(DrainError::Refused {
                        namespace: ns.into(),
                        name: name.into(),
                        message,
                    });
                }
                tracing::info!(namespace = ns, name, attempt, message, "eviction refused; retrying");
                attempt += 1;
                tokio::time::sleep(rules.evict_interval).await;
            }
        }
    }
}

/// CKE's checkPodDeletion: the first pod of Node `node` that a drain removes and that is still there.
pub async fn remaining_pod(kube: &dyn KubeApi, address: &str, node: &str) -> Result<Option<KubePod>, KubeError> {
    Ok(kube
        .pods_on_node(address, node)
        .await?
        .into_iter()
        .find(|p| classify(p) != PodClass::Left))
}

/// The drain of Node `node` is complete for a reboot (CKE's CheckDrainCompletion): no pod it
/// removes is left and no volume is in use. A missing Node is not drained (nothing can be said).
pub async fn drained_for_reboot(kube: &dyn KubeApi, address: &str, node: &str) -> Result<bool, KubeError> {
    if let Some(p) = remaining_pod(kube, address, node).await? {
        tracing::debug!(node, namespace = p.namespace, name = p.name, "pod remains");
        return Ok(false);
    }
    Ok(kube.volumes_in_use(address, node).await?.is_some_and(|v| v.is_empty()))
}

/// Deletes the pods on Node `node` of DaemonSets with `updateStrategy: OnDelete` (CKE's
/// deleteOnDeleteDaemonSetPod, before a reboot).
pub async fn delete_on_delete_daemonset_pods(kube: &dyn KubeApi, address: &str, node: &str) -> Result<(), KubeError> {
    for pod in kube.on_delete_daemonset_pods(address, node).await? {
        kube.delete_pod(address, &pod.namespace, &pod.name).await?;
        tracing::info!(namespace = pod.namespace, name = pod.name, "deleted daemonset pod");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::fake::Fake;

    const API: &str = "10.0.0.1";
    const NODE: &str = "10.0.0.4";

    fn rules(protected_ns: &str, job_pods: Option<&str>, retries: i64, interval: i64) -> DrainRules {
        DrainRules::new(
            &Some(serde_yaml::from_str(protected_ns).unwrap()),
            &job_pods.map(|j| serde_yaml::from_str(j).unwrap()),
            Some(retries),
            Some(interval),
            "policy/v1beta1",
        )
    }

    /// The fake with a protected namespace `prod` (label team=prod) and an unprotected `dev`.
    fn fake() -> Fake {
        let f = Fake::new();
        f.with(|w| {
            w.namespaces
                .insert("prod".into(), [("team".to_string(), "prod".to_string())].into());
            w.namespaces.insert("dev".into(), Default::default());
            w.kube_nodes.insert(
                NODE.into(),
                crate::model::KubeNode {
                    name: NODE.into(),
                    ready: true,
                    ..Default::default()
                },
            );
        });
        f
    }

    async fn drain(f: &Fake, r: &DrainRules, dry_run: bool) -> Result<(), DrainError> {
        let protected = protected_namespaces(f, API, r).await.unwrap();
        evict_or_delete(f, API, NODE, &protected, r, dry_run).await
    }

    fn pods(f: &Fake) -> Vec<String> {
        f.with(|w| w.pods.keys().map(|(ns, n)| format!("{ns}/{n}")).collect())
    }

    fn actions(f: &Fake) -> Vec<String> {
        f.take_log()
            .into_iter()
            .filter(|l| l.contains("kube evict") || l.contains("kube delete"))
            .map(|l| l.trim_start_matches(&format!("{API}: kube ")).to_string())
            .collect()
    }

    #[test]
    fn pods_are_classified_as_cke_enumerates_them() {
        let pod = |kind: Option<&str>, phase: &str| KubePod {
            controller_kind: kind.map(str::to_string),
            phase: phase.into(),
            ..Default::default()
        };
        for (kind, phase, want) in [
            (Some("DaemonSet"), "Running", PodClass::Left),
            (Some("Job"), "Pending", PodClass::Left),
            (Some("Job"), "Succeeded", PodClass::Left),
            (Some("Job"), "Failed", PodClass::Left),
            (Some("Job"), "Running", PodClass::JobPod),
            (Some("Job"), "Unknown", PodClass::JobPod),
            (Some("ReplicaSet"), "Running", PodClass::Evicted),
            (Some("ReplicaSet"), "Succeeded", PodClass::Evicted),
            (None, "Pending", PodClass::Evicted),
        ] {
            assert_eq!(classify(&pod(kind, phase)), want, "{kind:?} {phase}");
        }
    }

    #[test]
    fn rules_take_cke_defaults() {
        let r = DrainRules::for_reboot(&crate::model::Reboot::default(), "policy/v1");
        assert_eq!(r.protected_namespaces, LabelSelector::default());
        assert_eq!(r.protected_job_pods, LabelSelector::default());
        assert_eq!((r.evict_attempts, r.evict_interval), (1, Duration::ZERO));
        let repair = crate::model::Repair {
            evict_retries: Some(2),
            evict_interval: Some(5),
            ..Default::default()
        };
        let r = DrainRules::for_repair(&repair, "policy/v1");
        assert_eq!((r.evict_attempts, r.evict_interval), (3, Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn protected_namespaces_are_those_the_selector_lists() {
        let f = fake();
        f.add_pod("other", "x", NODE, "", "Running", &[]);
        let got = protected_namespaces(&f, API, &rules("matchLabels: {team: prod}", None, 0, 0))
            .await
            .unwrap();
        assert_eq!(got, BTreeSet::from(["prod".to_string()]));
        let all = protected_namespaces(&f, API, &rules("{}", None, 0, 0)).await.unwrap();
        assert_eq!(all.len(), 3);
        let none = protected_namespaces(&f, API, &rules("matchLabels: {team: nobody}", None, 0, 0))
            .await
            .unwrap();
        assert!(none.is_empty());
    }

    #[tokio::test]
    async fn pods_are_evicted_and_daemonset_and_finished_job_pods_left() {
        let f = fake();
        f.add_pod("dev", "web", NODE, "ReplicaSet", "Running", &[]);
        f.add_pod("dev", "agent", NODE, "DaemonSet", "Running", &[]);
        f.add_pod("dev", "done", NODE, "Job", "Succeeded", &[]);
        f.add_pod("dev", "elsewhere", "10.0.0.5", "ReplicaSet", "Running", &[]);
        drain(&f, &rules("matchLabels: {team: prod}", None, 0, 0), false)
            .await
            .unwrap();
        assert_eq!(actions(&f), ["evict dev/web policy/v1beta1"]);
        assert_eq!(pods(&f), ["dev/agent", "dev/done", "dev/elsewhere"]);
        assert!(remaining_pod(&f, API, NODE).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_refused_eviction_deletes_an_unprotected_pod() {
        let f = fake();
        f.add_pod("dev", "web", NODE, "ReplicaSet", "Running", &[]);
        f.with(|w| w.eviction_refusals.insert(("dev".into(), "web".into()), u32::MAX));
        drain(&f, &rules("matchLabels: {team: prod}", None, 3, 0), false)
            .await
            .unwrap();
        assert_eq!(actions(&f), ["evict dev/web policy/v1beta1", "delete pod dev/web"]);
        assert!(pods(&f).is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_eviction_of_a_protected_pod_is_retried_then_stops_the_drain() {
        let f = fake();
        f.add_pod("prod", "db", NODE, "StatefulSet", "Running", &[]);
        f.with(|w| w.eviction_refusals.insert(("prod".into(), "db".into()), u32::MAX));
        let t0 = tokio::time::Instant::now();
        let e = drain(&f, &rules("matchLabels: {team: prod}", None, 2, 10), false)
            .await
            .unwrap_err();
        assert!(matches!(e, DrainError::Refused { .. }), "{e:?}");
        assert!(e.to_string().contains("prod/db due to PDB"), "{e}");
        assert_eq!(actions(&f).len(), 3, "evict_retries 2: three evictions");
        assert_eq!(
            (tokio::time::Instant::now() - t0).as_secs(),
            20,
            "evict_interval between them"
        );
        assert_eq!(pods(&f), ["prod/db"], "never deleted");
        // Refused twice, then allowed: the third attempt evicts it.
        f.with(|w| w.eviction_refusals.insert(("prod".into(), "db".into()), 2));
        drain(&f, &rules("matchLabels: {team: prod}", None, 2, 10), false)
            .await
            .unwrap();
        assert!(pods(&f).is_empty());
    }

    #[tokio::test]
    async fn job_pods_are_deleted_unless_protected() {
        let f = fake();
        f.add_pod(
            "dev",
            "batch",
            NODE,
            "Job",
            "Running",
            &[("cke.cybozu.com/job-ok-to-delete", "true")],
        );
        let ok_to_delete = "matchExpressions: [{key: cke.cybozu.com/job-ok-to-delete, operator: DoesNotExist}]";
        drain(&f, &rules("{}", Some(ok_to_delete), 0, 0), false).await.unwrap();
        assert_eq!(actions(&f), ["delete pod dev/batch"]);
        // Unlabelled: protected by that selector, by `{}`, and when unset.
        for job_pods in [Some(ok_to_delete), Some("{}"), None] {
            f.add_pod("dev", "batch", NODE, "Job", "Running", &[]);
            let e = drain(&f, &rules("{}", job_pods, 0, 0), false).await.unwrap_err();
            assert!(
                e.to_string()
                    .contains("protected job-managed pod exists: dev/batch, phase=Running"),
                "{job_pods:?}: {e}"
            );
            assert_eq!(pods(&f), ["dev/batch"]);
            assert!(remaining_pod(&f, API, NODE).await.unwrap().is_some());
        }
    }

    #[tokio::test]
    async fn the_dry_run_changes_nothing_and_finds_what_would_stop_the_drain() {
        let f = fake();
        f.add_pod("dev", "web", NODE, "ReplicaSet", "Running", &[]);
        f.add_pod("prod", "db", NODE, "StatefulSet", "Running", &[]);
        let r = rules("matchLabels: {team: prod}", None, 5, 0);
        drain(&f, &r, true).await.unwrap();
        // Only the protected pod is asked, once, with dryRun; nothing is gone.
        assert_eq!(actions(&f), ["evict prod/db policy/v1beta1 (dry run)"]);
        assert_eq!(pods(&f), ["dev/web", "prod/db"]);
        f.with(|w| w.eviction_refusals.insert(("prod".into(), "db".into()), 1));
        let e = drain(&f, &r, true).await.unwrap_err();
        assert!(matches!(e, DrainError::Refused { .. }));
        assert_eq!(actions(&f).len(), 1, "no retry in a dry run");
        f.add_pod("dev", "batch", NODE, "Job", "Running", &[]);
        f.with(|w| w.eviction_refusals.clear());
        let e = drain(&f, &r, true).await.unwrap_err();
        assert!(matches!(e, DrainError::ProtectedJobPod { .. }));
        assert_eq!(pods(&f).len(), 3);
    }

    #[tokio::test]
    async fn api_failures_stop_the_drain_and_name_the_apiserver() {
        let f = fake();
        f.add_pod("dev", "web", NODE, "ReplicaSet", "Running", &[]);
        f.fail_once("kube evict dev/web");
        let e = drain(&f, &rules("{}", None, 0, 0), false).await.unwrap_err();
        assert!(matches!(e, DrainError::Kube(_)) && e.to_string().contains(API), "{e}");
        // A pod gone already (404) is fine.
        f.with(|w| w.pods.clear());
        assert_eq!(
            f.evict_pod(API, "policy/v1", "dev", "web", false).await.unwrap(),
            Eviction::NotFound
        );
    }

    #[tokio::test]
    async fn drained_means_no_pod_left_and_no_volume_in_use() {
        let f = fake();
        f.add_pod("dev", "agent", NODE, "DaemonSet", "Running", &[]);
        assert!(drained_for_reboot(&f, API, NODE).await.unwrap());
        f.with(|w| w.volumes_in_use.insert(NODE.into(), vec!["kubernetes.io/csi/x".into()]));
        assert!(!drained_for_reboot(&f, API, NODE).await.unwrap());
        f.with(|w| w.volumes_in_use.clear());
        f.add_pod("dev", "web", NODE, "ReplicaSet", "Running", &[]);
        assert!(!drained_for_reboot(&f, API, NODE).await.unwrap());
        // No Node: not drained.
        assert!(!drained_for_reboot(&f, API, "10.0.0.9").await.unwrap());
    }

    #[tokio::test]
    async fn on_delete_daemonset_pods_are_deleted() {
        let f = fake();
        f.add_pod("kube-system", "node-dns", NODE, "DaemonSet", "Running", &[]);
        f.add_pod("kube-system", "agent", NODE, "DaemonSet", "Running", &[]);
        f.add_pod("kube-system", "node-dns-x", "10.0.0.5", "DaemonSet", "Running", &[]);
        f.with(|w| {
            w.on_delete_daemonsets.insert(("kube-system".into(), "node-dns".into()));
            w.on_delete_daemonsets
                .insert(("kube-system".into(), "node-dns-x".into()));
        });
        delete_on_delete_daemonset_pods(&f, API, NODE).await.unwrap();
        assert_eq!(actions(&f), ["delete pod kube-system/node-dns"]);
        assert_eq!(pods(&f), ["kube-system/agent", "kube-system/node-dns-x"]);
    }
}
