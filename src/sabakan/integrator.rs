//! The integrator the leader runs (CKE's `sabakan/integrate.go`): read the template, the URL and the
//! variables, query sabakan, generate or update the declaration, and store it with its template
//! revision in one fenced transaction. [`Integrator::init`] runs once per term and only
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
use crate::error::error_chain;
use crate::metrics::sabakan::SabakanMetrics;
use crate::model::ClusterStatus;
use crate::storage::{cluster_with_template_revision, Fence, SabakanStorage, Storage, StorageError};

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
        self.generate(fence, None, true, metrics, now).await
    }

    /// Generates a declaration when there is none, else updates it (or regenerates it for a new
    /// template when no update is needed). `status` is the cluster's, when probed.
    pub async fn run(
        &self,
        fence: &Fence,
        status: Option<&ClusterStatus>,
        metrics: &SabakanMetrics,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StorageError> {
        self.generate(fence, status, false, metrics, now).await
    }

    async fn generate(
        &self,
        fence: &Fence,
        status: Option<&ClusterStatus>,
        only_regenerate: bool,
        metrics: &SabakanMetrics,
        now: DateTime<Utc>,
    ) -> Result<Outcome, StorageError> {
        let st = &*self.storage;
        if st.is_sabakan_disabled().await? {
            metrics.set_enabled(false);
            return Ok(Outcome::Disabled);
        }
        metrics.set_enabled(true);
        let Some((template, revision)) = st.get_sabakan_template().await? else {
            return Ok(Outcome::NotConfigured);
        };
        let Some(url) = st.get_sabakan_url().await? else {
            return Ok(Outcome::NotConfigured);
        };
        let variables = match st.get_sabakan_query_variables().await? {
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
