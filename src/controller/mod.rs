//! The leader loop. Each pass: load the declaration and constraints, probe, plan (pure), publish the
//! status, then run the planned operations one at a time, recording each operation and each command
//! in the management etcd *before* running it. Every write is fenced on the leader's election key, so
//! an instance that lost leadership cannot record — and so cannot start — another command. A failed
//! command cancels its operation and the next pass re-plans: soon, with a capped exponential back-off
//! ([`Backoff`]), when the failure is transient; after a change or the interval when it is not
//! ([`Retry`]).

mod backoff;
/// Hands the free pages inside the heap back to the system between passes. glibc returns free
/// memory only from the top of each heap; a pass over many nodes leaves free chunks between live
/// ones (about 8 MiB after warm passes over 1000 nodes: docs/performance.md) that would otherwise
/// stay resident. Costs a walk of the free lists, once per pass.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and advises glibc's own free chunks; it takes no pointer.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests;

pub use backoff::Backoff;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use crate::error::{error_chain, Retry};
use crate::model::{Cluster, ClusterStatus, Record, RecordCommand, RecordStatus, ServerStatus};
#[cfg(feature = "test-hooks")]
use crate::op::test_ops::TestOperatorSpec;
use crate::op::{CommandError, Infra, OpContext, Operator};
use crate::planner::{decide_ops, OpKind, Plan, PlanInputs, PlannedOp};
use crate::probe::Prober;
use crate::sabakan::repairer::Skipped;
use crate::sabakan::{Integrator, Outcome, RepairOutcome, Report};
use crate::server::Shared;
use crate::storage::{
    encode, Fence, LeaseDeadline, Storage, StorageError, Write, KEY_ETCD_BOOTSTRAPPED, KEY_RECORDS_PREFIX,
    KEY_RECORD_ID, KEY_SERVICE_ACCOUNT_CERT, KEY_SERVICE_ACCOUNT_KEY, KEY_STATUS,
};
use crate::topology::Images;

/// Health checks of the repair queue run at once.
pub const REPAIR_HEALTH_CHECKS_AT_ONCE: usize = 8;

/// How many records are kept.
pub const RECORDS_KEPT: i64 = 1000;

/// Turns a planned operation into an operator ([`crate::op::operator_for`]; tests substitute their own).
pub type OperatorFactory = Arc<dyn Fn(&PlannedOp, OpContext<'_>) -> Box<dyn Operator> + Send + Sync>;

/// Builds the infra commanders use for one pass.
pub type InfraFactory = Arc<dyn Fn(Arc<dyn Storage>, Arc<Cluster>) -> Infra + Send + Sync>;

/// The phase before which the sabakan integration also runs (CKE's `reboot-nodes`): the inventory
/// is followed while nothing but reboots is left to do.
pub const REBOOT_PHASE: &str = "reboot-nodes";

/// How often a running command's term is checked against the lease deadline.
const LEASE_CHECK_PERIOD: Duration = Duration::from_millis(250);

/// The pause between a pass that ran operations and the next pass (at most `--interval`).
pub const AFTER_OPERATIONS_PAUSE: Duration = Duration::from_secs(1);

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// This instance's name (recorded in records).
    pub name: String,
    /// Time between passes when nothing changes.
    pub interval: Duration,
    /// Plan and publish, never execute.
    pub dry_run: bool,
    /// How long a running command may finish after SIGTERM before it is abandoned.
    pub shutdown_grace: Duration,
    /// Test-only operator appended to every pass.
    #[cfg(feature = "test-hooks")]
    pub test_operator: Option<TestOperatorSpec>,
    /// Test only: plan no Kubernetes component (the managed-etcd suites).
    #[cfg(feature = "test-hooks")]
    pub without_kubernetes: bool,
    /// The images to run.
    pub images: Images,
    /// What the node hosts need of the Kubernetes containers (`--node-profile`).
    pub host: crate::k8s::params::HostSettings,
    /// Nodes changed per pass by rivers, etcd-rivers, kubelet and kube-proxy operations
    /// (`--max-concurrent-updates`).
    pub max_concurrent_updates: usize,
}

/// The Kubernetes version of the images' Kubernetes image (empty when its tag is not a version).
pub fn kubernetes_version(images: &Images) -> String {
    crate::k8s::KubeVersion::from_image(&images.kubernetes)
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// Why a term of the controller ended.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TermEnd {
    /// Leadership was lost; campaign again.
    Lost,
    /// The daemon is shutting down; resign.
    Shutdown,
}

/// Why a pass ended early.
#[must_use]
#[derive(Debug)]
enum PassError {
    /// Leadership was lost: the term ends.
    Lost,
    /// The daemon is shutting down: the term ends.
    Shutdown,
    /// A command failed; its operation is recorded cancelled.
    Command {
        /// The operation.
        operation: &'static str,
        /// The failure.
        error: CommandError,
    },
    /// The management etcd failed.
    Storage(StorageError),
}

impl PassError {
    /// When the next pass should follow.
    fn retry(&self) -> Retry {
        match self {
            PassError::Command { error, .. } => error.retry,
            _ => Retry::Soon,
        }
    }

    fn describe(&self) -> String {
        match self {
            PassError::Lost => "leadership lost".into(),
            PassError::Shutdown => "shutting down".into(),
            PassError::Command { operation, error } => format!("operation {operation} failed: {}", error_chain(error)),
            PassError::Storage(e) => error_chain(e),
        }
    }
}

impl From<StorageError> for PassError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::LostLeadership { .. } => PassError::Lost,
            other => PassError::Storage(other),
        }
    }
}

/// The first control plane whose apiserver is healthy (CKE's HealthyAPIServer).
fn healthy_apiserver(cluster: &Cluster, status: &ClusterStatus) -> Option<String> {
    cluster
        .control_planes()
        .find(|n| {
            status
                .nodes
                .get(&n.address)
                .is_some_and(|s| s.kube_apiserver.is_healthy)
        })
        .map(|n| n.address.clone())
}

/// At most this many unreachable nodes are listed one by one in `/health`'s problems.
pub const UNREACHABLE_LISTED: usize = 5;

/// `/health`'s problems for the nodes the probe could not reach: each of them while there are at
/// most [`UNREACHABLE_LISTED`], otherwise the first few (by address) and one line with the count, so
/// that a rack down does not make `/health` a list of hundreds of addresses (`/status` has them all).
fn unreachable_problems(status: &ClusterStatus) -> Vec<(String, String)> {
    let down: Vec<_> = status.nodes.iter().filter(|(_, n)| !n.ssh_connected).collect();
    let mut problems: Vec<(String, String)> = down
        .iter()
        .take(UNREACHABLE_LISTED)
        .map(|(a, n)| (format!("node {a}"), format!("unreachable: {}", n.ssh_error)))
        .collect();
    if down.len() > UNREACHABLE_LISTED {
        problems.push((
            "nodes".into(),
            format!(
                "{} unreachable in all, {} more than listed here (every one is in /status)",
                down.len(),
                down.len() - UNREACHABLE_LISTED
            ),
        ));
    }
    problems
}

/// Resolves when the flag turns true (or its sender is gone). Returns nothing, so that no borrow of
/// the channel is held across the awaits that follow.
pub async fn signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// The leader loop.
pub struct Controller {
    storage: Arc<dyn Storage>,
    prober: Arc<dyn Prober>,
    operators: OperatorFactory,
    infra: InfraFactory,
    shared: Arc<Shared>,
    cfg: ControllerConfig,
    integrator: Option<Arc<Integrator>>,
    /// The status last written, with the fence of the term that wrote it.
    status_written: tokio::sync::Mutex<Option<(Fence, Vec<u8>)>>,
}

struct TermCtx<'a> {
    fence: &'a Fence,
    deadline: LeaseDeadline,
    lost: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
}

impl TermCtx<'_> {
    /// The term's lease still holds, by the election's word and by the local lease deadline (a
    /// shutdown in progress does not matter here).
    fn held(&self) -> Result<(), PassError> {
        if *self.lost.borrow() || self.deadline.is_past() {
            Err(PassError::Lost)
        } else {
            Ok(())
        }
    }

    /// The term still holds: not lost (by the election's word or by the local lease deadline, which
    /// a paused process finds passed on waking) and not shutting down.
    fn check(&self) -> Result<(), PassError> {
        self.held()?;
        if *self.shutdown.borrow() {
            Err(PassError::Shutdown)
        } else {
            Ok(())
        }
    }
}

impl Controller {
    /// A controller running the operators of [`crate::op::operator_for`] on [`Infra::minimal`].
    pub fn new(storage: Arc<dyn Storage>, prober: Arc<dyn Prober>, shared: Arc<Shared>, cfg: ControllerConfig) -> Self {
        Controller {
            storage,
            prober,
            operators: Arc::new(crate::op::operator_for),
            infra: Arc::new(Infra::minimal),
            shared,
            cfg,
            integrator: None,
            status_written: Default::default(),
        }
    }

    /// Runs the sabakan integration at CKE's points of the loop: once per term (a changed template),
    /// when no declaration exists, when nothing is planned, and before reboots.
    pub fn with_integrator(mut self, integrator: Arc<Integrator>) -> Self {
        self.integrator = Some(integrator);
        self
    }

    /// Uses `operators` to turn planned operations into operators.
    pub fn with_operators(mut self, operators: OperatorFactory) -> Self {
        self.operators = operators;
        self
    }

    /// Uses `infra` to build each pass's infra (node agents, Vault, images).
    pub fn with_infra(mut self, infra: InfraFactory) -> Self {
        self.infra = infra;
        self
    }

    /// Runs passes for one term until leadership is lost or shutdown is requested. `triggers`
    /// wakes a pass early (declaration changes). Nothing starts once `deadline` has passed.
    pub async fn run_term(
        &self,
        fence: &Fence,
        deadline: LeaseDeadline,
        lost: watch::Receiver<bool>,
        shutdown: watch::Receiver<bool>,
        triggers: &mut mpsc::Receiver<()>,
    ) -> TermEnd {
        let ctx = TermCtx {
            fence,
            deadline,
            lost,
            shutdown,
        };
        match self.cancel_unfinished(&ctx).await {
            Err(PassError::Lost) => return TermEnd::Lost,
            Err(e) => tracing::warn!(error = e.describe(), "cannot cancel the previous leader's records"),
            Ok(()) => {}
        }
        match self.integrate(&ctx, None, true).await {
            Err(PassError::Lost) => return TermEnd::Lost,
            Err(e) => tracing::warn!(
                error = e.describe(),
                "sabakan integration failed at the start of the term"
            ),
            Ok(()) => {}
        }
        let mut previous: Vec<PlannedOp> = Vec::new();
        let mut backoff = Backoff::new(self.cfg.interval);
        loop {
            // After planned operations completed, the next pass follows at once (after a short pause):
            // a join, a rolling restart or a scale-out is a chain of passes, one operation each. The
            // same operations completed twice in a row changed nothing the probe sees (a member that
            // dies right after its start, say): then the next pass waits for the interval.
            //
            // A transient failure is retried soon, backing off (1 s, 2 s, 4 s, ... up to the
            // interval); one that only a change can lift waits for a change or the interval.
            let started = std::time::Instant::now();
            let result = self.pass(&ctx).await;
            self.shared.metrics.pass_duration(started.elapsed());
            match &result {
                Ok(_) => self.shared.set_problem("last pass", None),
                Err(PassError::Lost | PassError::Shutdown) => {}
                Err(e) => self.shared.set_problem("last pass", Some(e.describe())),
            }
            let wait = match result {
                Ok(ran) if !ran.is_empty() && ran != previous => {
                    backoff.reset();
                    previous = ran;
                    self.cfg.interval.min(AFTER_OPERATIONS_PAUSE)
                }
                Ok(ran) => {
                    backoff.reset();
                    previous = ran;
                    self.cfg.interval
                }
                Err(PassError::Lost) => return TermEnd::Lost,
                Err(PassError::Shutdown) => return TermEnd::Shutdown,
                Err(e) => {
                    previous.clear();
                    self.shared.metrics.pass_failed();
                    match e.retry() {
                        Retry::Soon => {
                            let wait = backoff.next_delay();
                            tracing::warn!(error = e.describe(), retry_in = ?wait, "pass failed; retrying soon");
                            wait
                        }
                        Retry::AfterChange => {
                            tracing::warn!(
                                error = e.describe(),
                                "pass failed; retrying after a change or at the next interval"
                            );
                            self.cfg.interval
                        }
                    }
                }
            };
            release_free_heap();
            let (mut lost, mut shutdown) = (ctx.lost.clone(), ctx.shutdown.clone());
            let next_pass = tokio::time::sleep(wait);
            tokio::pin!(next_pass);
            let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = &mut next_pass => break,
                    Some(()) = triggers.recv() => break,
                    _ = heartbeat.tick() => self.shared.alive(),
                    _ = signalled(&mut lost) => return TermEnd::Lost,
                    _ = signalled(&mut shutdown) => return TermEnd::Shutdown,
                }
            }
        }
    }

    /// Marks the unfinished records of earlier leaders cancelled.
    async fn cancel_unfinished(&self, ctx: &TermCtx<'_>) -> Result<(), PassError> {
        let records = self.storage.get_records(20).await?;
        for mut r in records
            .into_iter()
            .filter(|r| matches!(r.status, RecordStatus::New | RecordStatus::Running))
        {
            tracing::info!(
                id = r.id,
                operation = r.operation,
                "cancelling the previous leader's unfinished operation"
            );
            r.status = RecordStatus::Cancelled;
            r.error = format!(
                "cancelled: its leader {} is gone; {} took over",
                r.leader, self.cfg.name
            );
            r.end_at = Some(Utc::now());
            self.write_record(ctx, &r, vec![]).await?;
        }
        Ok(())
    }

    async fn write_record(&self, ctx: &TermCtx<'_>, r: &Record, mut extra: Vec<Write>) -> Result<(), PassError> {
        let mut writes = vec![Write::Put(
            format!("{KEY_RECORDS_PREFIX}{}", Record::key_suffix(r.id)),
            encode(r),
        )];
        writes.append(&mut extra);
        self.storage.put_fenced(ctx.fence, writes).await?;
        self.shared.etcd_ok();
        Ok(())
    }

    /// One pass. Returns the planned operations it ran, each completed (empty when none ran).
    async fn pass(&self, ctx: &TermCtx<'_>) -> Result<Vec<PlannedOp>, PassError> {
        ctx.check()?;
        self.shared.alive();
        self.shared.metrics.pass();
        // The pass's inputs from the management etcd, in one request at one revision.
        let reads = self.storage.get_pass_inputs().await?;
        let Some(cluster) = reads.cluster()? else {
            self.shared.etcd_ok();
            self.shared.set_problem("declaration", None);
            self.set_note("no cluster is declared (ckecli cluster set FILE)");
            self.integrate(ctx, None, false).await?;
            return Ok(Vec::new());
        };
        self.shared.etcd_ok();
        // CKE's runOnce validates the stored declaration every pass: one written by something else
        // than `ckecli cluster set` (or valid for an older cke) is not acted on.
        let verdict = cluster.verdict(crate::model::Mode::Declaration);
        if !verdict.errors.is_empty() {
            let errors = crate::model::ValidationError { errors: verdict.errors };
            let note = format!(
                "the stored cluster declaration is invalid, nothing is done until a valid one is set \
                 (ckecli cluster set): {errors}"
            );
            self.shared.set_problem("declaration", Some(note.clone()));
            self.set_note(&note);
            return Ok(Vec::new());
        }
        self.shared.set_problem("declaration", None);
        let constraints = reads.constraints()?;
        let mut inputs = PlanInputs {
            images: self.cfg.images.clone(),
            etcd_bootstrapped_before: reads.etcd_bootstrapped(),
            host: self.cfg.host.clone(),
            max_concurrent_updates: self.cfg.max_concurrent_updates,
            #[cfg(feature = "test-hooks")]
            manage_kubernetes: !self.cfg.without_kubernetes,
            #[cfg(not(feature = "test-hooks"))]
            manage_kubernetes: true,
            resources: vec![],
            config_version: reads
                .config_version()
                .unwrap_or_else(|| crate::planner::CONFIG_VERSION_ABSENT.into()),
        };
        inputs.resources = reads.resources()?;
        let resources = crate::planner::all_resources(&inputs);
        let cluster = Arc::new(cluster);
        let mut infra = (self.infra)(self.storage.clone(), cluster.clone());
        infra.fence = Some(ctx.fence.clone());
        let mut status = if constraints.check(&cluster).is_ok() {
            let started = std::time::Instant::now();
            // A probe changes nothing: on SIGTERM or a lost term it is dropped at once, every
            // node's SSH command with it.
            let (mut lost, mut shutdown) = (ctx.lost.clone(), ctx.shutdown.clone());
            let status = tokio::select! {
                st = self.prober.probe(&cluster) => st,
                _ = signalled(&mut lost) => return Err(PassError::Lost),
                _ = signalled(&mut shutdown) => return Err(PassError::Shutdown),
            };
            self.shared.metrics.probe_duration(started.elapsed());
            status
        } else {
            ClusterStatus::default()
        };
        ctx.check()?;
        self.shared.replace_problems("node", unreachable_problems(&status));
        self.read_resources(&cluster, &mut status, &infra, &resources).await;
        self.read_repair_queue(ctx, &cluster, &mut status, &infra).await?;
        self.read_reboot_queue(ctx, &cluster, &mut status, &infra, reads.reboots_running())
            .await?;
        if !inputs.etcd_bootstrapped_before && !status.etcd.members.is_empty() {
            let members: Vec<&String> = status.etcd.members.keys().collect();
            let value = serde_json::json!({"seen_at": Utc::now(), "members": members});
            self.storage
                .put_fenced(
                    ctx.fence,
                    vec![Write::Put(KEY_ETCD_BOOTSTRAPPED.into(), encode(&value))],
                )
                .await?;
            inputs.etcd_bootstrapped_before = true;
            tracing::info!("recorded that the managed etcd runs (key etcd-bootstrapped)");
        }
        let plan = decide_ops(&cluster, &status, &constraints, &inputs, Utc::now());
        self.publish(ctx, &plan).await?;
        if self.cfg.dry_run {
            return Ok(Vec::new());
        }
        // Reflect sabakan's machines when nothing is to be done, or nothing but reboots (CKE).
        if plan.ops.is_empty() || plan.phase.as_str() == REBOOT_PHASE {
            self.integrate(ctx, Some(&status), false).await?;
        }
        let op_ctx = OpContext {
            cluster: &cluster,
            images: &self.cfg.images,
            status: &status,
            host: &self.cfg.host,
            resources: &resources,
        };
        #[allow(unused_mut)]
        let mut operators: Vec<Box<dyn Operator>> = plan.ops.iter().map(|p| (self.operators)(p, op_ctx)).collect();
        let ran = plan.ops.clone();
        #[cfg(feature = "test-hooks")]
        if let Some(spec) = &self.cfg.test_operator {
            operators.push(spec.operator());
        }
        let needs_sa = plan.ops.iter().any(|p| {
            matches!(
                p.kind,
                OpKind::KubeApiserverRestart { .. } | OpKind::KubeControllerManagerBootstrap { .. }
            )
        });
        if needs_sa {
            self.ensure_service_account(ctx, &infra).await?;
        }
        for op in operators {
            self.run_operator(ctx, op, &infra).await?;
        }
        Ok(ran)
    }

    /// Runs the sabakan integration, if any (`init`: the term's first run, which only regenerates
    /// for a changed template). Sabakan's and the generator's failures are logged and change
    /// nothing; the management etcd's end the pass.
    async fn integrate(&self, ctx: &TermCtx<'_>, status: Option<&ClusterStatus>, init: bool) -> Result<(), PassError> {
        let Some(ig) = &self.integrator else {
            return Ok(());
        };
        if self.cfg.dry_run {
            return Ok(());
        }
        ctx.check()?;
        let metrics = &self.shared.metrics.sabakan;
        let report = if init {
            Report {
                generation: ig.init(ctx.fence, metrics, Utc::now()).await?,
                repair: RepairOutcome::NoCluster,
            }
        } else {
            ig.run(ctx.fence, status, metrics, Utc::now()).await?
        };
        self.shared.etcd_ok();
        let mut note = match &report.generation {
            Outcome::Disabled | Outcome::NotConfigured => String::new(),
            Outcome::QueryFailed(e) => format!("query failed: {e}"),
            Outcome::GenerateFailed(e) => format!("cannot generate the cluster: {e}"),
            Outcome::Unchanged => "the cluster follows the machines".into(),
            Outcome::Written { op, changes } => format!("generated the cluster ({op}): {}", changes.join("; ")),
        };
        match &report.repair {
            RepairOutcome::QueryFailed(e) => note.push_str(&format!("; auto-repair query failed: {e}")),
            RepairOutcome::Queued { queued, skipped } => {
                if !queued.is_empty() {
                    note.push_str(&format!("; auto-repair queued {}", queued.join(", ")));
                }
                for s in skipped {
                    match s {
                        Skipped::TooMany { queued, new, maximum } => note.push_str(&format!(
                            "; auto-repair queued nothing: {queued} entries and {new} new exceed maximum-repair-queue-entries {maximum}"
                        )),
                        Skipped::Undeclared { address, reason } => {
                            note.push_str(&format!("; auto-repair skipped {address}: {reason}"))
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        self.shared.status.write().unwrap().sabakan = note.trim_start_matches("; ").to_string();
        Ok(())
    }

    /// Which static and user resources exist (CKE reads them with the rest of the Kubernetes
    /// status), through the first healthy apiserver, once the control plane is ready. A failed read
    /// leaves the API unread for this pass: nothing that needs it is planned.
    async fn read_resources(
        &self,
        cluster: &crate::model::Cluster,
        status: &mut ClusterStatus,
        infra: &Infra,
        resources: &[crate::model::ResourceDefinition],
    ) {
        let k = &status.kubernetes;
        if !k.api_read || !k.control_plane_ready {
            return;
        }
        let Some(apiserver) = healthy_apiserver(cluster, status) else {
            return;
        };
        match crate::probe::resource_statuses(&*infra.kube, &apiserver, resources, &cluster.trusted_rest_mappings).await
        {
            Ok(r) => status.kubernetes.resources = r,
            Err(e) => {
                tracing::warn!(error = crate::error::error_chain(&e), "cannot read the resources");
                status.kubernetes.api_read = false;
            }
        }
    }

    /// The repair queue with its health checks and drains (CKE reads it with the Kubernetes
    /// status, through the first healthy apiserver): not read while the API is not, and a failed
    /// read fails the pass (a node being drained must not look free to uncordon).
    async fn read_repair_queue(
        &self,
        ctx: &TermCtx<'_>,
        cluster: &crate::model::Cluster,
        status: &mut ClusterStatus,
        infra: &Infra,
    ) -> Result<(), PassError> {
        if !status.kubernetes.api_read {
            return Ok(());
        }
        let apiserver = healthy_apiserver(cluster, status);
        status.repair_queue = crate::probe::repair_queue::repair_queue_status(
            &*infra.storage,
            &*infra.commands,
            &*infra.kube,
            cluster,
            apiserver.as_deref(),
            REPAIR_HEALTH_CHECKS_AT_ONCE,
        )
        .await?;
        // Health checks the lease deadline ended say nothing: the term is over.
        ctx.check()
    }

    /// The reboot queue, once the Kubernetes API was read (as CKE reads it), through the first
    /// healthy apiserver; and `reboots/running` (enabled with entries) for monitoring, written when
    /// it changes.
    async fn read_reboot_queue(
        &self,
        ctx: &TermCtx<'_>,
        cluster: &crate::model::Cluster,
        status: &mut ClusterStatus,
        infra: &Infra,
        stored: Option<&[u8]>,
    ) -> Result<(), PassError> {
        use crate::storage::queue::KEY_REBOOTS_RUNNING;
        let apiserver = healthy_apiserver(cluster, status);
        if let (true, Some(apiserver)) = (status.kubernetes.api_read, apiserver) {
            status.reboot_queue =
                crate::probe::reboot_queue_status(&*self.storage, &*infra.kube, &*infra.commands, cluster, &apiserver)
                    .await?;
            // Boot checks the lease deadline ended say nothing: the term is over.
            ctx.check()?;
        }
        let q = &status.reboot_queue;
        let running = q.enabled && !q.entries.is_empty();
        // `stored` was read with the pass's inputs: only the leader writes this key.
        if stored != Some(running.to_string().as_bytes()) {
            crate::storage::queue::put_flag_fenced(&*self.storage, ctx.fence, KEY_REBOOTS_RUNNING, running).await?;
        }
        ctx.check()
    }

    /// The service-account signing pair, issued once from Vault (CA `kubernetes`, role
    /// `service-account`) and kept in the management etcd with a fenced write, as CKE does before
    /// the first apiserver starts. Every apiserver verifies tokens with the same certificate.
    async fn ensure_service_account(&self, ctx: &TermCtx<'_>, infra: &Infra) -> Result<(), PassError> {
        if self.storage.get_service_account().await?.is_some() {
            return Ok(());
        }
        let cmd = RecordCommand {
            name: "issue-service-account".into(),
            target: "vault".into(),
            detail: "cke/ca-kubernetes service-account".into(),
        };
        let fail = |error| PassError::Command {
            operation: "prepare-service-account",
            error,
        };
        let cert = infra
            .issuer
            .issue(&crate::infra::pki::requests::service_account())
            .await
            .map_err(|e| fail(crate::op::CommandError::new(&cmd, e)))?;
        ctx.check()?;
        self.storage
            .put_fenced(
                ctx.fence,
                vec![
                    Write::Put(KEY_SERVICE_ACCOUNT_CERT.into(), cert.certificate.into_bytes()),
                    Write::Put(KEY_SERVICE_ACCOUNT_KEY.into(), cert.private_key.into_bytes()),
                ],
            )
            .await?;
        tracing::info!("issued the service-account signing pair (service-account/certificate, service-account/key)");
        Ok(())
    }

    fn set_note(&self, note: &str) {
        let mut st = self.shared.status.write().unwrap();
        st.note = note.to_string();
        st.planned_operations.clear();
    }

    async fn publish(&self, ctx: &TermCtx<'_>, plan: &Plan) -> Result<(), PassError> {
        let previous = self.shared.status.read().unwrap().clone();
        let timestamp = match (previous.phase, previous.phase_timestamp) {
            (Some(p), Some(t)) if p == plan.phase => t,
            _ => plan.planned_at,
        };
        let changed =
            previous.phase != Some(plan.phase) || previous.note != plan.note || previous.planned_operations != plan.ops;
        let st = ServerStatus {
            phase: plan.phase,
            timestamp,
            note: plan.note.clone(),
            operations: plan.ops.clone(),
            images: Some(self.cfg.images.clone()),
            kubernetes_version: kubernetes_version(&self.cfg.images),
        };
        // Written when it changed (and once per term): an unchanged status costs no write.
        let value = encode(&st);
        let mut written = self.status_written.lock().await;
        if written.as_ref() != Some(&(ctx.fence.clone(), value.clone())) {
            self.storage
                .put_fenced(ctx.fence, vec![Write::Put(KEY_STATUS.into(), value.clone())])
                .await?;
            *written = Some((ctx.fence.clone(), value));
            self.shared.etcd_ok();
        }
        drop(written);
        self.shared.metrics.set_phase(plan.phase, timestamp.timestamp());
        let mut s = self.shared.status.write().unwrap();
        s.phase = Some(plan.phase);
        s.phase_timestamp = Some(timestamp);
        s.note = plan.note.clone();
        s.planned_operations = plan.ops.clone();
        if changed {
            tracing::info!(phase = %plan.phase, ops = plan.ops.len(), note = plan.note, "planned");
        }
        Ok(())
    }

    /// The `records` counter, but never an id at or below the newest existing record's (the counter
    /// may have been lost or set back by hand).
    async fn next_record_id(&self) -> Result<i64, PassError> {
        let counter = match self.storage.get_raw(KEY_RECORD_ID).await? {
            None => 1,
            Some(kv) => String::from_utf8_lossy(&kv.value)
                .trim()
                .parse::<i64>()
                .unwrap_or(1)
                .max(1),
        };
        let newest = self.storage.list_raw(KEY_RECORDS_PREFIX, 1, true).await?;
        let after_newest = newest
            .first()
            .and_then(|kv| i64::from_str_radix(kv.key.trim_start_matches(KEY_RECORDS_PREFIX), 16).ok())
            .map_or(1, |id| id + 1);
        Ok(counter.max(after_newest))
    }

    async fn run_operator(&self, ctx: &TermCtx<'_>, mut op: Box<dyn Operator>, infra: &Infra) -> Result<(), PassError> {
        ctx.check()?;
        let id = self.next_record_id().await?;
        let mut record = Record {
            id,
            status: RecordStatus::Running,
            operation: op.name().to_string(),
            targets: op.targets(),
            command: RecordCommand::default(),
            error: String::new(),
            leader: self.cfg.name.clone(),
            start_at: Utc::now(),
            end_at: None,
            results: None,
        };
        let mut extra = vec![Write::Put(KEY_RECORD_ID.into(), (id + 1).to_string().into_bytes())];
        if id > RECORDS_KEPT {
            extra.push(Write::Delete(format!(
                "{KEY_RECORDS_PREFIX}{}",
                Record::key_suffix(id - RECORDS_KEPT)
            )));
        }
        // The first command goes with the operation's first write: the record (and its targets)
        // is written once when it starts, once per further command (a command acts on all its
        // targets at once, so an operation has a few), and once when it ends.
        let mut next = op.next_command();
        if let Some(cmd) = &next {
            record.command = cmd.command();
        }
        self.write_record(ctx, &record, extra).await?;
        tracing::info!(
            id,
            operation = record.operation,
            targets = crate::model::few(&record.targets, 5),
            "operation started"
        );
        let mut step = 0;
        while let Some(cmd) = next.take().or_else(|| op.next_command()) {
            step += 1;
            match ctx.check() {
                Ok(()) => {}
                Err(PassError::Shutdown) => {
                    return self.close(ctx, &mut record, "cancelled: cke is shutting down").await
                }
                Err(e) => return Err(self.note_last(&record, e)),
            }
            if step > 1 {
                record.command = cmd.command();
                self.write_record(ctx, &record, vec![]).await?;
            }
            self.shared.status.write().unwrap().last_operation = Some(record.clone());
            if step == 2 {
                // Tests pause the process here, in the middle of an operation, its record written.
                crate::failpoint!("before-command-2");
            }
            // The record write was fenced, but the process may have been paused since (SIGSTOP, a
            // frozen VM) and its lease lost while it slept: check again, by the local clock, right
            // before the command starts.
            if let Err(e) = ctx.check() {
                tracing::warn!(id, command = record.command.name, "the term ended: command not started");
                return Err(self.note_last(&record, e));
            }
            let (mut lost, mut shutdown) = (ctx.lost.clone(), ctx.shutdown.clone());
            let run = cmd.run(infra);
            tokio::pin!(run);
            // Commands may run for minutes (waiting for etcd): the loop stays alive for /health.
            let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
            // A command is abandoned as soon as the lease deadline passes (at once on waking from a
            // pause), even before the election notices.
            let mut lease_check = tokio::time::interval(LEASE_CHECK_PERIOD);
            let result: Result<crate::op::Outcome, CommandError> = loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = heartbeat.tick() => self.shared.alive(),
                    _ = lease_check.tick(), if ctx.deadline.at().is_some() => {
                        if ctx.deadline.is_past() {
                            tracing::warn!(id, command = record.command.name, "lease deadline passed: command abandoned");
                            return Err(self.note_last(&record, PassError::Lost));
                        }
                    }
                    _ = signalled(&mut lost) => {
                        tracing::warn!(id, command = record.command.name, "leadership lost: command abandoned");
                        return Err(PassError::Lost);
                    }
                    _ = signalled(&mut shutdown) => {
                        // The grace period, but never past the loss of leadership.
                        let grace = tokio::time::sleep(self.cfg.shutdown_grace);
                        tokio::pin!(grace);
                        tokio::select! {
                            r = &mut run => break r,
                            _ = &mut grace => {
                                return self.close(ctx, &mut record, "cancelled: cke is shutting down").await
                            }
                            _ = signalled(&mut lost) => {
                                tracing::warn!(id, command = record.command.name, "leadership lost: command abandoned");
                                return Err(PassError::Lost);
                            }
                        }
                    }
                }
            };
            // A command that ended as the lease deadline passed (a host command ended by it, one
            // that finished as the process woke from a pause) is not acted upon, its failure not
            // even recorded: the term is over.
            if let Err(e) = ctx.held() {
                tracing::warn!(
                    id,
                    command = record.command.name,
                    "the term ended while the command ran: its result is not used"
                );
                return Err(self.note_last(&record, e));
            }
            match result {
                Err(e) => {
                    self.shared.metrics.command(&record.command.name, "failed");
                    record.status = RecordStatus::Cancelled;
                    record.error = error_chain(&e);
                    record.results = crate::op::common::step_results(&e).cloned();
                    record.end_at = Some(Utc::now());
                    tracing::warn!(id, error = record.error, retry = ?e.retry, "command failed: operation cancelled");
                    self.write_record(ctx, &record, vec![]).await?;
                    self.finish(&record);
                    return Err(PassError::Command {
                        operation: op.name(),
                        error: e,
                    });
                }
                Ok(outcome) => {
                    if let crate::op::Outcome::Fenced(writes) = &outcome {
                        // The command's writes, fenced, with its record (still running).
                        self.write_record(ctx, &record, writes.clone()).await?;
                    }
                    self.shared.metrics.command(&record.command.name, "succeeded");
                    op.command_done(outcome);
                }
            }
        }
        record.status = RecordStatus::Completed;
        record.end_at = Some(Utc::now());
        self.write_record(ctx, &record, vec![]).await?;
        self.finish(&record);
        tracing::info!(id, operation = record.operation, "operation completed");
        Ok(())
    }

    /// Records the operation as cancelled for shutdown and ends the pass.
    async fn close(&self, ctx: &TermCtx<'_>, record: &mut Record, reason: &str) -> Result<(), PassError> {
        record.status = RecordStatus::Cancelled;
        record.error = reason.into();
        record.end_at = Some(Utc::now());
        self.write_record(ctx, record, vec![]).await?;
        self.finish(record);
        Err(PassError::Shutdown)
    }

    fn note_last(&self, record: &Record, e: PassError) -> PassError {
        self.shared.status.write().unwrap().last_operation = Some(record.clone());
        e
    }

    fn finish(&self, record: &Record) {
        let result = if record.status == RecordStatus::Completed {
            "completed"
        } else {
            "cancelled"
        };
        self.shared.metrics.operation(&record.operation, result);
        if let Some(end) = record.end_at {
            self.shared
                .metrics
                .operation_duration(&record.operation, (end - record.start_at).to_std().unwrap_or_default());
        }
        self.shared.status.write().unwrap().last_operation = Some(record.clone());
    }
}
