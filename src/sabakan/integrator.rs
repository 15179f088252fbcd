//! The integrator the leader runs (CKE's `sabakan/integrate.go`): read the template, the URL and the
//! variables, query sabakan, generate or update the declaration, and store it with its template
//! revision in one fenced transaction; then, when a declaration exists, query the machines to
//! repair and queue them ([`super::repairer`]). [`Integrator::init`] runs once per term and only
//! regenerates for a changed template; [`Integrator::run`] runs at CKE's points of the controller
//! loop (no declaration, nothing planned, before reboots).
//!
//! A failed query or generation is logged and leaves everything as it is (the next pass tries
//! again); only the management etcd's failures, and the loss of leadership, are errors.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::client::MachineSearch;
use super::generator::{Generated, Generator};
use super::machine::QueryVariables;
use super::repairer::{repair_entries, Skipped};
use crate::error::error_chain;
use crate::metrics::sabakan::SabakanMetrics;
use crate::model::{ClusterStatus, RebootQueueEntry};
use crate::storage::queue::{self, REBOOT_QUEUE};
use crate::storage::{
    cluster_with_template_revision, repairs, Fence, SabakanSettings, SabakanStorage, Storage, StorageError,
};

/// What a run of the generator did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The integration is disabled (`sabakan/disabled`).
    Disabled,
    /// No template, or no URL, is set.
    NotConfigured,
    /// Sabakan could not be queried (logged); nothing changed.
    QueryFailed(String),
    /// No declaration satisfies the constraints with these machines (logged); nothing changed.
    GenerateFailed(String),
    /// The declaration needs no change.
    Unchanged,
    /// A new declaration was stored.
    Written {
        /// The rule that applied (`new`, `increase control plane`, ...).
        op: &'static str,
        /// What changed.
        changes: Vec<String>,
    },
}

/// What a run of sabakan-triggered repair did.
#[derive(Debug, Clone, PartialEq)]
pub enum RepairOutcome {
    /// No declaration exists yet: nothing is repaired.
    NoCluster,
    /// Auto-repair is disabled (`auto-repair/disabled`).
    Disabled,
    /// No sabakan URL is set.
    NotConfigured,
    /// Sabakan could not be queried (logged); nothing queued.
    QueryFailed(String),
    /// These machines (addresses) were queued; others were skipped, with why.
    Queued {
        /// The addresses queued.
        queued: Vec<String>,
        /// The machines skipped.
        skipped: Vec<Skipped>,
    },
}

/// What a run did: the generation and the repairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The declaration.
    pub generation: Outcome,
    /// Sabakan-triggered repair.
    pub repair: RepairOutcome,
}

/// Runs the sabakan integration for the leader.
pub struct Integrator {
    storage: Arc<dyn Storage>,
    search: Arc<dyn MachineSearch>,
}

impl Integrator {
    /// An integrator on this storage, querying sabakan through `search`.
    pub fn new(storage: Arc<dyn Storage>, search: Arc<dyn MachineSearch>) -> Self {
        Integrator { storage, search }
    }

    /// Once per term: regenerates the declaration if the template changed since it was generated.
    pub async fn init(
        &self,
        fence: &Fence,
        metrics: &SabakanMetrics,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StorageError> {
        let settings = SabakanSettings::read(&*self.storage).await?;
        self.generate(&settings, fence, None, true, metrics, now).await
    }

    /// Generates a declaration when there is none, else updates it (or regenerates it for a new
    /// template when no update is needed); then, when a declaration exists, queues the machines to
    /// repair. `status` is the cluster's, when probed.
    pub async fn run(
        &self,
        fence: &Fence,
        status: Option<&ClusterStatus>,
        metrics: &SabakanMetrics,
        now: DateTime<Utc>,
    ) -> Result<Report, StorageError> {
        // Every setting, and the declaration, in one read at one revision.
        let settings = SabakanSettings::read(&*self.storage).await?;
        let generation = self.generate(&settings, fence, status, false, metrics, now).await?;
        // CKE's repairer needs the probed cluster (it fails the pass without one; cke-rs skips it).
        let repair = match status {
            // A declaration just written is read again.
            Some(_) if matches!(generation, Outcome::Written { .. }) => self.repair(metrics).await?,
            Some(_) => self.repair_with(&settings, metrics).await?,
            None => RepairOutcome::NoCluster,
        };
        Ok(Report { generation, repair })
    }

    /// Sabakan-triggered repair (CKE's `runRepairer`): queries the machines to repair (the
    /// `auto-repair/query-variables`, CKE's defaults without them) and queues those
    /// [`repair_entries`] selects. Needs a declaration (its nodes are the cluster) and a sabakan URL;
    /// not the template, nor the integration enabled.
    pub async fn repair(&self, metrics: &SabakanMetrics) -> Result<RepairOutcome, StorageError> {
        let settings = SabakanSettings::read(&*self.storage).await?;
        self.repair_with(&settings, metrics).await
    }

    /// [`Integrator::repair`] with the settings and the declaration as read in `settings`.
    async fn repair_with(
        &self,
        settings: &SabakanSettings,
        metrics: &SabakanMetrics,
    ) -> Result<RepairOutcome, StorageError> {
        let st = &*self.storage;
        let disabled = settings.is_auto_repair_disabled();
        metrics.set_auto_repair_enabled(!disabled);
        let Some(cluster) = settings.get_cluster()? else {
            return Ok(RepairOutcome::NoCluster);
        };
        if disabled {
            return Ok(RepairOutcome::Disabled);
        }
        let Some(url) = settings.get_sabakan_url()? else {
            return Ok(RepairOutcome::NotConfigured);
        };
        let variables = match settings.get_auto_repair_query_variables() {
            None => QueryVariables::auto_repair_default(),
            Some(raw) => match QueryVariables::parse(&String::from_utf8_lossy(&raw)) {
                Ok(v) => v,
                Err(e) => {
                    let msg = format!("auto-repair/query-variables: {e}");
                    tracing::warn!(error = msg, "auto-repair: query failed");
                    return Ok(RepairOutcome::QueryFailed(msg));
                }
            },
        };
        let machines = match self.search.search(&url, Some(&variables)).await {
            Ok(m) => m,
            Err(e) => {
                let msg = error_chain(&e);
                tracing::warn!(error = msg, "auto-repair: query failed");
                return Ok(RepairOutcome::QueryFailed(msg));
            }
        };
        let reboots: Vec<RebootQueueEntry> = queue::entries(st, &REBOOT_QUEUE).await?;
        let queued_entries = repairs::entries(st).await?;
        let constraints = st.get_constraints().await?;
        let (entries, skipped) = repair_entries(&machines, &queued_entries, &reboots, &cluster, &constraints);
        for s in &skipped {
            match s {
                Skipped::TooMany { .. } => tracing::warn!(skipped = ?s, "auto-repair: too many repair requests"),
                _ => tracing::info!(skipped = ?s, "auto-repair: machine not queued"),
            }
        }
        let mut queued = Vec::new();
        for e in entries {
            let e = repairs::enqueue(st, e).await?;
            tracing::info!(
                index = e.index,
                address = e.address,
                serial = e.serial,
                operation = e.operation,
                "initiate sabakan-triggered automatic repair"
            );
            queued.push(e.address);
        }
        Ok(RepairOutcome::Queued { queued, skipped })
    }

    async fn generate(
        &self,
        settings: &SabakanSettings,
        fence: &Fence,
        status: Option<&ClusterStatus>,
        only_regenerate: bool,
        metrics: &SabakanMetrics,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StorageError> {
        let st = &*self.storage;
        if settings.is_sabakan_disabled() {
            metrics.set_enabled(false);
            return Ok(Outcome::Disabled);
        }
        metrics.set_enabled(true);
        let Some((template, revision)) = settings.get_sabakan_template()? else {
            return Ok(Outcome::NotConfigured);
        };
        let Some(url) = settings.get_sabakan_url()? else {
            return Ok(Outcome::NotConfigured);
        };
        let variables = match settings.get_sabakan_query_variables() {
            None => None,
            Some(raw) => match QueryVariables::parse(&String::from_utf8_lossy(&raw)) {
                Ok(v) => Some(v),
                Err(e) => {
                    let msg = format!("sabakan/query-variables: {e}");
                    tracing::warn!(error = msg, "sabakan: query failed");
                    return Ok(Outcome::QueryFailed(msg));
                }
            },
        };
        let machines = match self.search.search(&url, variables.as_ref()).await {
            Ok(m) => m,
            Err(e) => {
                let msg = error_chain(&e);
                tracing::warn!(error = msg, "sabakan: query failed");
                return Ok(Outcome::QueryFailed(msg));
            }
        };
        let current = st.get_cluster_with_revision().await?;
        let constraints = st.get_constraints().await?;

        let result = Generator::new(&template, constraints, &machines, status, now).and_then(|mut g| {
            let out = match &current {
                Some((cluster, crev)) if only_regenerate => {
                    if *crev != revision {
                        g.regenerate(cluster).map(Some)
                    } else {
                        Ok(None)
                    }
                }
                None if only_regenerate => Ok(None),
                None => g.generate().map(Some),
                Some((cluster, crev)) => match g.update(cluster)? {
                    Some(generated) => Ok(Some(generated)),
                    None if *crev != revision => g.regenerate(cluster).map(Some),
                    None => Ok(None),
                },
            };
            out.map(|o| (o, g.workers_by_role().clone(), g.unused_machines()))
        });
        let generated: Option<Generated> = match result {
            Err(e) => {
                let msg = error_chain(&e);
                metrics.set_integration(false, &Default::default(), 0, now.timestamp());
                tracing::warn!(error = msg, "sabakan: failed to generate cluster");
                return Ok(Outcome::GenerateFailed(msg));
            }
            Ok((generated, workers, unused)) => {
                metrics.set_integration(true, &workers, unused, now.timestamp());
                generated
            }
        };
        let Some(Generated { cluster, op }) = generated else {
            tracing::debug!("sabakan: nothing to do");
            return Ok(Outcome::Unchanged);
        };
        st.put_fenced(fence, cluster_with_template_revision(&cluster, revision))
            .await?;
        tracing::info!(op = op.name, changes = ?op.changes, template_revision = revision, "sabakan: generated cluster");
        Ok(Outcome::Written {
            op: op.name,
            changes: op.changes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Constraints;
    use crate::sabakan::fake::{machine, FakeSabakan};
    use crate::sabakan::machine::{Machine, MachineState};
    use crate::sabakan::repairer::Skipped;
    use crate::sabakan::template::parse_template;
    use crate::storage::{MemStorage, KEY_CLUSTER, KEY_CLUSTER_REVISION, KEY_SABAKAN_TEMPLATE};

    fn two_healthy() -> Vec<Machine> {
        vec![
            machine("10.0.0.1", 0, MachineState::Healthy),
            machine("10.0.0.2", 1, MachineState::Healthy),
        ]
    }

    const TEMPLATE: &str =
        "name: t\nservice_subnet: 10.68.0.0/16\nnodes:\n- {user: cybozu, control_plane: true}\n- {user: cybozu}\n";

    struct Env {
        storage: Arc<MemStorage>,
        sabakan: Arc<FakeSabakan>,
        integrator: Integrator,
        fence: Fence,
        metrics: SabakanMetrics,
    }

    async fn env(machines: Vec<Machine>) -> Env {
        let storage = Arc::new(MemStorage::default());
        let sabakan = Arc::new(FakeSabakan::new(machines));
        storage.put_raw("leader/me", b"me".to_vec()).await.unwrap();
        let kv = storage.get_raw("leader/me").await.unwrap().unwrap();
        let fence = Fence {
            key: storage.full_key("leader/me"),
            create_revision: kv.create_revision,
        };
        let integrator = Integrator::new(storage.clone(), sabakan.clone());
        Env {
            storage,
            sabakan,
            integrator,
            fence,
            metrics: SabakanMetrics::default(),
        }
    }

    impl Env {
        async fn run(&self) -> Outcome {
            self.integrator
                .run(&self.fence, None, &self.metrics, Utc::now())
                .await
                .unwrap()
                .generation
        }

        async fn template_revision(&self) -> i64 {
            let kv = self.storage.get_raw(KEY_SABAKAN_TEMPLATE).await.unwrap();
            kv.expect("a template").mod_revision
        }

        async fn configure(&self) {
            self.storage
                .put_sabakan_template(&parse_template(TEMPLATE).unwrap())
                .await
                .unwrap();
            self.storage.put_sabakan_url("http://sabakan/graphql").await.unwrap();
        }
    }

    #[tokio::test]
    async fn generates_then_keeps_then_follows_the_machines() {
        let e = env(two_healthy()).await;
        assert_eq!(e.run().await, Outcome::NotConfigured);
        e.storage.put_sabakan_url("http://sabakan/graphql").await.unwrap();
        assert_eq!(e.run().await, Outcome::NotConfigured, "no template yet");
        e.configure().await;

        // No declaration: generated, with the template's revision, in one transaction.
        assert!(matches!(e.run().await, Outcome::Written { op: "new", .. }));
        let (cluster, crev) = e.storage.get_cluster_with_revision().await.unwrap().unwrap();
        assert_eq!(crev, e.template_revision().await);
        let c = e.storage.get_raw(KEY_CLUSTER).await.unwrap().unwrap();
        let r = e.storage.get_raw(KEY_CLUSTER_REVISION).await.unwrap().unwrap();
        assert_eq!(c.mod_revision, r.mod_revision, "one transaction");
        assert_eq!(cluster.control_planes().count(), 1);
        assert_eq!(cluster.workers().count(), 1);
        assert!(e.metrics.values().successful);
        assert_eq!(e.metrics.values().workers.get("cs"), Some(&1));
        // The generation's query without variables (the query's defaults); no repairs without a
        // probed cluster.
        assert_eq!(*e.sabakan.sent.lock().unwrap(), [None]);

        // With the probed cluster: auto-repair's query too, with CKE's defaults.
        let status = ClusterStatus::default();
        let report = e
            .integrator
            .run(&e.fence, Some(&status), &e.metrics, Utc::now())
            .await
            .unwrap();
        assert_eq!(report.generation, Outcome::Unchanged);
        assert!(matches!(report.repair, RepairOutcome::Queued { .. }), "{report:?}");
        assert_eq!(
            e.sabakan.sent.lock().unwrap()[1..],
            [None, Some(QueryVariables::auto_repair_default())]
        );
        assert_eq!(e.run().await, Outcome::Unchanged);

        // The worker turns unreachable: tainted.
        let worker = cluster.workers().next().unwrap().address.clone();
        e.sabakan.set(vec![
            machine(
                "10.0.0.1",
                0,
                if worker == "10.0.0.1" {
                    MachineState::Unreachable
                } else {
                    MachineState::Healthy
                },
            ),
            machine(
                "10.0.0.2",
                1,
                if worker == "10.0.0.2" {
                    MachineState::Unreachable
                } else {
                    MachineState::Healthy
                },
            ),
        ]);
        assert!(matches!(e.run().await, Outcome::Written { op: "taint nodes", .. }));
        let (cluster, _) = e.storage.get_cluster_with_revision().await.unwrap().unwrap();
        let w = cluster.node(&worker).unwrap();
        assert!(w
            .taints
            .iter()
            .any(|t| t.key == "cke.cybozu.com/state" && t.value == "unreachable" && t.effect == "NoSchedule"));

        // A new template: regenerated with the same machines, and the new revision.
        let t2 = TEMPLATE.replace("{user: cybozu}", "{user: cybozu, labels: {team: a}}");
        e.storage
            .put_sabakan_template(&parse_template(&t2).unwrap())
            .await
            .unwrap();
        assert!(matches!(e.run().await, Outcome::Written { op: "regenerate", .. }));
        let (cluster, crev) = e.storage.get_cluster_with_revision().await.unwrap().unwrap();
        assert_eq!(crev, e.template_revision().await);
        assert_eq!(
            cluster.node(&worker).unwrap().labels.get("team").map(String::as_str),
            Some("a")
        );
    }

    #[tokio::test]
    async fn init_only_regenerates_for_a_new_template() {
        let e = env(two_healthy()).await;
        e.configure().await;
        let init = || e.integrator.init(&e.fence, &e.metrics, Utc::now());
        assert_eq!(init().await.unwrap(), Outcome::Unchanged, "init generates nothing");
        assert!(e.storage.get_cluster().await.unwrap().is_none());
        e.run().await;
        e.sabakan.set(vec![machine("10.0.0.1", 0, MachineState::Healthy)]);
        assert_eq!(init().await.unwrap(), Outcome::Unchanged, "init does not update");
        e.storage
            .put_sabakan_template(&parse_template(TEMPLATE).unwrap())
            .await
            .unwrap();
        e.sabakan.set(two_healthy());
        assert!(matches!(
            init().await.unwrap(),
            Outcome::Written { op: "regenerate", .. }
        ));
    }

    #[tokio::test]
    async fn failures_change_nothing() {
        let e = env(vec![machine("10.0.0.1", 0, MachineState::Healthy)]).await;
        e.configure().await;
        // Two control planes cannot be had from one machine.
        e.storage
            .put_constraints(&Constraints {
                control_plane_count: 2,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(matches!(e.run().await, Outcome::GenerateFailed(m) if m.contains("no healthy machine")));
        assert!(!e.metrics.values().successful);
        assert!(e.storage.get_cluster().await.unwrap().is_none());

        *e.sabakan.machines.lock().unwrap() = Err("sabakan is down".into());
        assert!(matches!(e.run().await, Outcome::QueryFailed(m) if m.contains("sabakan is down")));

        e.storage.put_sabakan_query_variables(b"{\"having\": 1}").await.unwrap();
        assert!(matches!(e.run().await, Outcome::QueryFailed(m) if m.contains("having")));
        e.storage
            .put_sabakan_query_variables(br#"{"having": {"roles": ["cs"]}}"#)
            .await
            .unwrap();
        e.sabakan.set(vec![]);
        e.run().await;
        assert_eq!(
            e.sabakan.sent.lock().unwrap().last().cloned().flatten(),
            Some(QueryVariables::parse(r#"{"having": {"roles": ["cs"]}}"#).unwrap())
        );

        e.storage.enable_sabakan(false).await.unwrap();
        assert_eq!(e.run().await, Outcome::Disabled);
        assert!(!e.metrics.values().enabled, "hidden while disabled");
    }

    #[tokio::test]
    async fn a_lost_leader_writes_nothing() {
        let e = env(two_healthy()).await;
        e.configure().await;
        e.storage.delete_raw("leader/me").await.unwrap();
        let err = e
            .integrator
            .run(&e.fence, None, &e.metrics, Utc::now())
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::LostLeadership { .. }), "{err}");
        assert!(e.storage.get_cluster().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn queues_the_machines_sabakan_reports_broken() {
        let mut broken = machine("10.0.0.2", 1, MachineState::Unreachable);
        broken.spec.bmc.bmc_type = "IPMI-2.0".into();
        let e = env(vec![broken]).await;
        e.storage.put_sabakan_url("http://sabakan/graphql").await.unwrap();
        let repair = || e.integrator.repair(&e.metrics);
        assert_eq!(repair().await.unwrap(), RepairOutcome::NoCluster);
        assert_eq!(e.metrics.values().auto_repair_enabled, Some(true));
        let mut cluster = crate::model::Cluster::new(
            "c",
            "10.68.0.0/16",
            vec![
                crate::model::Node::new("10.0.0.1", "root", true),
                crate::model::Node::new("10.0.0.2", "root", false),
            ],
        );
        e.storage.put_cluster(&cluster).await.unwrap();
        // No procedure for the machine's type: not queued.
        let undeclared = repair().await.unwrap();
        assert!(
            matches!(&undeclared, RepairOutcome::Queued { queued, skipped } if queued.is_empty() && matches!(&skipped[..], [Skipped::Undeclared { address, .. }] if address == "10.0.0.2")),
            "{undeclared:?}"
        );
        cluster.repair = Some(crate::model::Repair {
            repair_procedures: vec![crate::model::RepairProcedure {
                machine_types: vec!["IPMI-2.0".into()],
                repair_operations: vec![crate::model::RepairOperation {
                    operation: "unreachable".into(),
                    ..Default::default()
                }],
            }],
            ..Default::default()
        });
        e.storage.put_cluster(&cluster).await.unwrap();

        // maximum-repair-queue-entries is 0 by default: nothing is queued.
        assert!(matches!(
            repair().await.unwrap(),
            RepairOutcome::Queued { queued, skipped } if queued.is_empty() && matches!(skipped[..], [Skipped::TooMany { .. }])
        ));
        e.storage
            .put_constraints(
                &Constraints::default()
                    .with("maximum-repair-queue-entries", "2")
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(matches!(repair().await.unwrap(), RepairOutcome::Queued { queued, .. } if queued == ["10.0.0.2"]));
        let entries = repairs::entries(&*e.storage).await.unwrap();
        assert_eq!(entries.len(), 1);
        let want = crate::model::RepairEntry::new("unreachable", "IPMI-2.0", "10.0.0.2", "s-10.0.0.2");
        assert_eq!(entries[0], want);
        // CKE's default variables were sent.
        assert_eq!(
            e.sabakan.sent.lock().unwrap().last().cloned().flatten(),
            Some(QueryVariables::auto_repair_default())
        );
        // Queued once: the entry counts as recent until deleted.
        assert!(matches!(
            repair().await.unwrap(),
            RepairOutcome::Queued { queued, skipped } if queued.is_empty() && skipped == [Skipped::Recent("10.0.0.2".into())]
        ));
        assert_eq!(repairs::entries(&*e.storage).await.unwrap().len(), 1);

        // Variables of one's own; disabled.
        e.storage
            .put_auto_repair_query_variables(br#"{"having": {"states": ["UNHEALTHY"]}}"#)
            .await
            .unwrap();
        repair().await.unwrap();
        assert_eq!(
            e.sabakan.sent.lock().unwrap().last().cloned().flatten(),
            Some(QueryVariables::parse(r#"{"having": {"states": ["UNHEALTHY"]}}"#).unwrap())
        );
        e.storage.enable_auto_repair(false).await.unwrap();
        assert_eq!(repair().await.unwrap(), RepairOutcome::Disabled);
        assert_eq!(e.metrics.values().auto_repair_enabled, Some(false));
    }
}
