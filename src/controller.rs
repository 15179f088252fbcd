//! The leader loop. Each pass: load the declaration and constraints, probe, plan (pure), publish the
//! status, then run the planned operations one at a time, recording each operation and each command
//! in the management etcd *before* running it. Every write is fenced on the leader's election key, so
//! an instance that lost leadership cannot record — and so cannot start — another command. A failed
//! command cancels its operation and the next pass re-plans.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::metrics::Metrics;
use crate::model::{Cluster, ClusterStatus, Record, RecordCommand, RecordStatus, ServerStatus};
use crate::op::test_ops::TestOperatorSpec;
use crate::op::{Infra, Operator};
use crate::planner::{decide_ops, params::Images, Phase, Plan, PlanInputs, PlannedOp};
use crate::storage::{
    encode, Fence, Storage, StorageError, Write, KEY_ETCD_BOOTSTRAPPED, KEY_RECORDS_PREFIX, KEY_RECORD_ID, KEY_STATUS,
};

/// How many records are kept.
pub const RECORDS_KEPT: i64 = 1000;

/// Gathers the status the planner needs. The SSH-based implementation lives with the node agent.
#[async_trait]
pub trait Prober: Send + Sync {
    /// Probes every declared node and the managed etcd.
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus;
}

/// A prober for a daemon without a node agent: every node is reported unreachable, with the reason,
/// so the planner acts on nothing it cannot reach.
pub struct NoAgentProber;

#[async_trait]
impl Prober for NoAgentProber {
    async fn probe(&self, cluster: &Cluster) -> ClusterStatus {
        let mut st = ClusterStatus::default();
        for n in &cluster.nodes {
            st.nodes.insert(
                n.address.clone(),
                crate::model::NodeStatus {
                    ssh_error: "no node agent is configured".into(),
                    ..Default::default()
                },
            );
        }
        st
    }
}

/// Turns a planned operation into an operator, or `None` when this build cannot run it yet.
pub type OperatorFactory = Arc<dyn Fn(&PlannedOp, &Cluster) -> Option<Box<dyn Operator>> + Send + Sync>;

/// Builds the infra commanders use for one pass.
pub type InfraFactory = Arc<dyn Fn(Arc<dyn Storage>, Arc<Cluster>) -> Infra + Send + Sync>;

/// What `/status` shows; updated by the controller and the election loop.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DaemonStatus {
    /// This instance's name.
    pub name: String,
    /// Whether this instance leads.
    pub is_leader: bool,
    /// The current leader's name, as last seen.
    pub leader: Option<String>,
    /// The phase of the leader's last pass.
    pub phase: Option<Phase>,
    /// When that phase was entered.
    pub phase_timestamp: Option<DateTime<Utc>>,
    /// Why the last pass did nothing, if it says.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// The last operation this instance ran.
    pub last_operation: Option<Record>,
    /// What the leader plans to do next (empty on followers).
    pub planned_operations: Vec<PlannedOp>,
    /// Plans are made and published but never executed.
    pub dry_run: bool,
}

/// State shared by the controller, the election loop and the HTTP server.
#[derive(Debug, Default)]
pub struct Shared {
    /// The status shown at `/status`.
    pub status: RwLock<DaemonStatus>,
    /// The metrics shown at `/metrics`.
    pub metrics: Metrics,
    /// When the management etcd last answered.
    pub etcd_ok_at: Mutex<Option<Instant>>,
    /// When the main loop last made progress (campaigning or a pass).
    pub loop_alive_at: Mutex<Option<Instant>>,
}

impl Shared {
    /// Notes that the main loop is alive.
    pub fn alive(&self) {
        *self.loop_alive_at.lock().unwrap() = Some(Instant::now());
    }

    /// Notes that etcd answered.
    pub fn etcd_ok(&self) {
        *self.etcd_ok_at.lock().unwrap() = Some(Instant::now());
    }
}

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
    pub test_operator: Option<TestOperatorSpec>,
    /// The images to run.
    pub images: Images,
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

enum PassError {
    Lost,
    Shutdown,
    Retry(String),
}

impl From<StorageError> for PassError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::LostLeadership { .. } => PassError::Lost,
            other => PassError::Retry(error_chain(&other)),
        }
    }
}

/// Resolves when the flag turns true (or its sender is gone). Returns nothing, so that no borrow of
/// the channel is held across the awaits that follow.
pub async fn signalled(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

/// The leader loop.
pub struct Controller {
    storage: Arc<dyn Storage>,
    prober: Arc<dyn Prober>,
    operators: OperatorFactory,
    infra: InfraFactory,
    shared: Arc<Shared>,
    cfg: ControllerConfig,
}

struct TermCtx<'a> {
    fence: &'a Fence,
    lost: watch::Receiver<bool>,
    shutdown: watch::Receiver<bool>,
}

impl TermCtx<'_> {
    fn check(&self) -> Result<(), PassError> {
        if *self.lost.borrow() {
            Err(PassError::Lost)
        } else if *self.shutdown.borrow() {
            Err(PassError::Shutdown)
        } else {
            Ok(())
        }
    }
}

impl Controller {
    /// A controller.
    pub fn new(
        storage: Arc<dyn Storage>,
        prober: Arc<dyn Prober>,
        operators: OperatorFactory,
        shared: Arc<Shared>,
        cfg: ControllerConfig,
    ) -> Self {
        let infra: InfraFactory = Arc::new(Infra::minimal);
        Controller {
            storage,
            prober,
            operators,
            infra,
            shared,
            cfg,
        }
    }

    /// Uses `infra` to build each pass's infra (node agents, Vault, images).
    pub fn with_infra(mut self, infra: InfraFactory) -> Self {
        self.infra = infra;
        self
    }

    /// Runs passes for one term until leadership is lost or shutdown is requested. `triggers`
    /// wakes a pass early (declaration changes).
    pub async fn run_term(
        &self,
        fence: &Fence,
        lost: watch::Receiver<bool>,
        shutdown: watch::Receiver<bool>,
        triggers: &mut mpsc::Receiver<()>,
    ) -> TermEnd {
        let ctx = TermCtx { fence, lost, shutdown };
        match self.cancel_unfinished(&ctx).await {
            Err(PassError::Lost) => return TermEnd::Lost,
            Err(PassError::Retry(e)) => tracing::warn!(error = e, "cannot cancel the previous leader's records"),
            _ => {}
        }
        let mut previous: Vec<PlannedOp> = Vec::new();
        loop {
            // After planned operations completed, the next pass follows at once (after a short pause):
            // a join, a rolling restart or a scale-out is a chain of passes, one operation each. The
            // same operations completed twice in a row changed nothing the probe sees (a member that
            // dies right after its start, say): then the next pass waits for the interval.
            let wait = match self.pass(&ctx).await {
                Ok(ran) if !ran.is_empty() && ran != previous => {
                    previous = ran;
                    self.cfg.interval.min(AFTER_OPERATIONS_PAUSE)
                }
                Ok(ran) => {
                    previous = ran;
                    self.cfg.interval
                }
                Err(PassError::Lost) => return TermEnd::Lost,
                Err(PassError::Shutdown) => return TermEnd::Shutdown,
                Err(PassError::Retry(e)) => {
                    tracing::warn!(error = e, "pass failed; retrying at the next pass");
                    self.cfg.interval
                }
            };
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
        let Some(cluster) = self.storage.get_cluster().await? else {
            self.shared.etcd_ok();
            self.set_note("no cluster is declared (ckecli cluster set FILE)");
            return Ok(Vec::new());
        };
        self.shared.etcd_ok();
        let constraints = self.storage.get_constraints().await?;
        let mut inputs = PlanInputs {
            images: self.cfg.images.clone(),
            etcd_bootstrapped_before: self.storage.get_raw(KEY_ETCD_BOOTSTRAPPED).await?.is_some(),
        };
        let status = if constraints.check(&cluster).is_ok() {
            self.prober.probe(&cluster).await
        } else {
            ClusterStatus::default()
        };
        ctx.check()?;
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
        let cluster = Arc::new(cluster);
        let infra = (self.infra)(self.storage.clone(), cluster.clone());
        let mut operators: Vec<Box<dyn Operator>> = Vec::new();
        let mut ran = Vec::new();
        for planned in &plan.ops {
            match (self.operators)(planned, &cluster) {
                Some(op) => {
                    operators.push(op);
                    ran.push(planned.clone());
                }
                None => tracing::warn!(
                    operation = planned.name(),
                    "this build has no operator for the planned operation"
                ),
            }
        }
        if let Some(spec) = &self.cfg.test_operator {
            operators.push(spec.operator());
        }
        for op in operators {
            self.run_operator(ctx, op, &infra).await?;
        }
        Ok(ran)
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
            phase: plan.phase.as_str().to_string(),
            timestamp,
            note: plan.note.clone(),
            operations: plan
                .ops
                .iter()
                .map(|o| serde_json::to_value(o).expect("plans serialize"))
                .collect(),
        };
        self.storage
            .put_fenced(ctx.fence, vec![Write::Put(KEY_STATUS.into(), encode(&st))])
            .await?;
        self.shared.etcd_ok();
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
            operation: op.name(),
            targets: op.targets(),
            command: RecordCommand::default(),
            error: String::new(),
            leader: self.cfg.name.clone(),
            start_at: Utc::now(),
            end_at: None,
        };
        let mut extra = vec![Write::Put(KEY_RECORD_ID.into(), (id + 1).to_string().into_bytes())];
        if id > RECORDS_KEPT {
            extra.push(Write::Delete(format!(
                "{KEY_RECORDS_PREFIX}{}",
                Record::key_suffix(id - RECORDS_KEPT)
            )));
        }
        self.write_record(ctx, &record, extra).await?;
        tracing::info!(id, operation = record.operation, targets = ?record.targets, "operation started");
        while let Some(cmd) = op.next_command() {
            match ctx.check() {
                Ok(()) => {}
                Err(PassError::Shutdown) => {
                    return self.close(ctx, &mut record, "cancelled: cke is shutting down").await
                }
                Err(e) => return Err(self.note_last(&record, e)),
            }
            record.command = cmd.command();
            self.write_record(ctx, &record, vec![]).await?;
            self.shared.status.write().unwrap().last_operation = Some(record.clone());
            let (mut lost, mut shutdown) = (ctx.lost.clone(), ctx.shutdown.clone());
            let run = cmd.run(infra);
            tokio::pin!(run);
            // Commands may run for minutes (waiting for etcd): the loop stays alive for /health.
            let mut heartbeat = tokio::time::interval(Duration::from_secs(5));
            let result = loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = heartbeat.tick() => self.shared.alive(),
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
            if let Err(e) = result {
                self.shared.metrics.command(&record.command.name, "failed");
                tracing::warn!(id, error = %e, "command failed: operation cancelled");
                record.status = RecordStatus::Cancelled;
                record.error = e.to_string();
                record.end_at = Some(Utc::now());
                self.write_record(ctx, &record, vec![]).await?;
                self.finish(&record);
                return Err(PassError::Retry(format!("operation {} failed: {e}", record.operation)));
            }
            self.shared.metrics.command(&record.command.name, "succeeded");
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
        self.shared.status.write().unwrap().last_operation = Some(record.clone());
    }
}
