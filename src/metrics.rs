//! Prometheus metrics of the `cke` daemon through prometheus-client: typed counters, gauges and
//! histograms in a registry, rendered by its encoder in the Prometheus text format (0.0.4, as CKE's
//! Go client serves it). docs/metrics.md lists every metric with its type and labels.
//!
//! Two sets: [`Metrics`], one per daemon instance (leadership, phase, passes, operations, the
//! probe's duration), owned by the server state and fed by the controller; and [`process()`], the
//! process-wide counters of the side effects (Vault and management-etcd requests, SSH connections,
//! per-node probe durations), fed by `infra`, `storage` and `probe`. Each instance's registry
//! holds both, so `/metrics` shows all of them, and the sabakan integration's ([`sabakan`], fed by
//! its integrator, shown on the leader only). Nothing here does I/O.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicU64;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::model::Phase;

pub mod sabakan;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A gauge holding seconds.
type Seconds = Gauge<f64, AtomicU64>;
/// A family of histograms made with one set of buckets.
type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationResult {
    operation: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CommandResult {
    command: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    request: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestErrorLabels {
    request: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationErrorLabels {
    operation: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
}

/// Passes, operations and commands: 50 ms to about 14 minutes.
fn long_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 15))
}

/// Probes of one node or of the cluster: 10 ms to about 20 s.
fn probe_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 12))
}

/// The daemon's metrics, one set per instance.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    state: Mutex<(bool, Option<Phase>)>,
    leader: Gauge,
    phase: Family<PhaseLabels, Gauge>,
    phase_timestamp: Gauge,
    operations: Family<OperationResult, Counter>,
    commands: Family<CommandResult, Counter>,
    passes: Counter,
    pass_failures: Counter,
    pass_duration: Histogram,
    probe_duration: Histogram,
    operation_duration: Histograms<OperationLabels>,
    /// The sabakan integration's metrics.
    pub sabakan: sabakan::SabakanMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cke");
        let m = Metrics {
            registry: Registry::default(),
            state: Mutex::new((false, None)),
            leader: Gauge::default(),
            phase: Family::default(),
            phase_timestamp: Gauge::default(),
            operations: Family::default(),
            commands: Family::default(),
            passes: Counter::default(),
            pass_failures: Counter::default(),
            pass_duration: long_buckets(),
            probe_duration: probe_buckets(),
            operation_duration: Family::new_with_constructor(long_buckets),
            sabakan: sabakan::SabakanMetrics::default(),
        };
        registry.register("leader", "1 when this instance is the leader", m.leader.clone());
        registry.register(
            "operation_phase",
            "1 for the phase of the leader's last pass",
            m.phase.clone(),
        );
        registry.register(
            "operation_phase_timestamp_seconds",
            "When the current phase was entered (unix seconds)",
            m.phase_timestamp.clone(),
        );
        registry.register(
            "operations",
            "Operations finished, by name and result",
            m.operations.clone(),
        );
        registry.register("commands", "Commands finished, by name and result", m.commands.clone());
        registry.register(
            "controller_passes",
            "Controller passes run while leading",
            m.passes.clone(),
        );
        registry.register(
            "controller_pass_failures",
            "Controller passes that ended in a failure",
            m.pass_failures.clone(),
        );
        registry.register(
            "controller_pass_duration_seconds",
            "Duration of controller passes (probe, plan and the operations run), failed ones included",
            m.pass_duration.clone(),
        );
        registry.register(
            "probe_duration_seconds",
            "Duration of probing the whole cluster (every node, the managed etcd, Kubernetes)",
            m.probe_duration.clone(),
        );
        registry.register(
            "operation_duration_seconds",
            "Duration of finished operations, by name",
            m.operation_duration.clone(),
        );
        process().register(&mut registry);
        registry.register_collector(Box::new(m.sabakan.clone()));
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Sets whether this instance leads. A follower reports no phase.
    pub fn set_leader(&self, leader: bool) {
        let mut st = self.state.lock().unwrap();
        st.0 = leader;
        self.leader.set(i64::from(leader));
        self.sabakan.set_leader(leader);
        self.show_phase(&st);
    }

    /// Sets the phase of the last pass and when it was entered (unix seconds).
    pub fn set_phase(&self, phase: Phase, timestamp: i64) {
        let mut st = self.state.lock().unwrap();
        st.1 = Some(phase);
        self.phase_timestamp.set(timestamp);
        self.show_phase(&st);
    }

    fn show_phase(&self, (leader, phase): &(bool, Option<Phase>)) {
        for p in Phase::ALL {
            let v = i64::from(*leader && *phase == Some(p));
            self.phase.get_or_create(&PhaseLabels { phase: p.to_string() }).set(v);
        }
    }

    /// Counts a finished operation; `result` is `completed` or `cancelled`.
    pub fn operation(&self, name: &str, result: &'static str) {
        self.operations
            .get_or_create(&OperationResult {
                operation: name.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Records how long a finished operation took.
    pub fn operation_duration(&self, name: &str, took: Duration) {
        self.operation_duration
            .get_or_create(&OperationLabels { operation: name.into() })
            .observe(took.as_secs_f64());
    }

    /// Counts a finished command; `result` is `succeeded` or `failed`.
    pub fn command(&self, name: &str, result: &'static str) {
        self.commands
            .get_or_create(&CommandResult {
                command: name.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Counts a controller pass.
    pub fn pass(&self) {
        self.passes.inc();
    }

    /// Counts a pass that ended in a failure (a failed command, the management etcd).
    pub fn pass_failed(&self) {
        self.pass_failures.inc();
    }

    /// Records how long a pass took.
    pub fn pass_duration(&self, took: Duration) {
        self.pass_duration.observe(took.as_secs_f64());
    }

    /// Records how long probing the cluster took.
    pub fn probe_duration(&self, took: Duration) {
        self.probe_duration.observe(took.as_secs_f64());
    }

    /// The Prometheus text exposition ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The process-wide metrics of the side effects (see the module doc).
#[derive(Debug)]
pub struct ProcessMetrics {
    vault_requests: Family<RequestLabels, Counter>,
    vault_request_errors: Family<RequestErrorLabels, Counter>,
    etcd_requests: Family<OperationLabels, Counter>,
    etcd_request_errors: Family<OperationErrorLabels, Counter>,
    ssh_connections: Gauge,
    /// SSH connections opened (dialled, host key checked, authenticated).
    pub ssh_connections_opened: Counter,
    /// SSH connections that could not be opened.
    pub ssh_connect_failures: Counter,
    /// SSH connections refused because the host key did not match the pinned key.
    pub ssh_hostkey_mismatches: Counter,
    probe_node_duration: Histogram,
    probe_node_last: Family<NodeLabels, Seconds>,
    probed_nodes: Mutex<BTreeSet<String>>,
}

static PROCESS: LazyLock<ProcessMetrics> = LazyLock::new(ProcessMetrics::new);

/// The process-wide metrics.
pub fn process() -> &'static ProcessMetrics {
    &PROCESS
}

/// An open SSH connection, counted in `cke_ssh_connections` until dropped.
#[derive(Debug)]
pub struct SshConnection(());

impl Drop for SshConnection {
    fn drop(&mut self) {
        process().ssh_connections.dec();
    }
}

impl ProcessMetrics {
    fn new() -> Self {
        ProcessMetrics {
            vault_requests: Family::default(),
            vault_request_errors: Family::default(),
            etcd_requests: Family::default(),
            etcd_request_errors: Family::default(),
            ssh_connections: Gauge::default(),
            ssh_connections_opened: Counter::default(),
            ssh_connect_failures: Counter::default(),
            ssh_hostkey_mismatches: Counter::default(),
            probe_node_duration: probe_buckets(),
            probe_node_last: Family::default(),
            probed_nodes: Mutex::new(BTreeSet::new()),
        }
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "vault_requests",
            "Requests sent to Vault, by vaultrs request type (every attempt, retries included)",
            self.vault_requests.clone(),
        );
        r.register(
            "vault_request_errors",
            "Vault requests that failed, by request type and kind (unreachable, status, unexpected, config)",
            self.vault_request_errors.clone(),
        );
        r.register(
            "management_etcd_requests",
            "Requests to the management etcd through the storage layer, by operation",
            self.etcd_requests.clone(),
        );
        r.register(
            "management_etcd_request_errors",
            "Management etcd requests that failed, by operation and kind (timeout, error)",
            self.etcd_request_errors.clone(),
        );
        r.register(
            "ssh_connections",
            "SSH connections to the nodes open now",
            self.ssh_connections.clone(),
        );
        r.register(
            "ssh_connections_opened",
            "SSH connections to the nodes opened (authenticated)",
            self.ssh_connections_opened.clone(),
        );
        r.register(
            "ssh_connect_failures",
            "SSH connections to the nodes that could not be opened (dial, host key, authentication)",
            self.ssh_connect_failures.clone(),
        );
        r.register(
            "ssh_hostkey_mismatch",
            "SSH connections refused because the host key did not match the pinned key",
            self.ssh_hostkey_mismatches.clone(),
        );
        r.register(
            "probe_node_duration_seconds",
            "Duration of probing one node (SSH commands and health checks); every node of every pass is one observation",
            self.probe_node_duration.clone(),
        );
        r.register(
            "probe_node_last_duration_seconds",
            "Duration of the last probe of each declared node",
            self.probe_node_last.clone(),
        );
    }

    /// Counts a request to Vault (`request`: vaultrs's request type, e.g. `SignCertificate`).
    pub fn vault_request(&self, request: &str) {
        self.vault_requests
            .get_or_create(&RequestLabels {
                request: request.into(),
            })
            .inc();
    }

    /// Counts a failed request to Vault.
    pub fn vault_request_error(&self, request: &str, kind: &str) {
        self.vault_request_errors
            .get_or_create(&RequestErrorLabels {
                request: request.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Counts a request to the management etcd (`operation`: get, list, put, delete, txn, watch).
    pub fn etcd_request(&self, operation: &str) {
        self.etcd_requests
            .get_or_create(&OperationLabels {
                operation: operation.into(),
            })
            .inc();
    }

    /// Counts a failed request to the management etcd.
    pub fn etcd_request_error(&self, operation: &str, kind: &str) {
        self.etcd_request_errors
            .get_or_create(&OperationErrorLabels {
                operation: operation.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Counts an SSH connection opened; it stays counted as open while the value lives.
    pub fn ssh_connection(&self) -> SshConnection {
        self.ssh_connections_opened.inc();
        self.ssh_connections.inc();
        SshConnection(())
    }

    /// Counts an SSH connection that could not be opened.
    pub fn ssh_connect_failure(&self) {
        self.ssh_connect_failures.inc();
    }

    /// SSH connections open now.
    pub fn ssh_connections_open(&self) -> i64 {
        self.ssh_connections.get()
    }

    /// Records one pass's per-node probe durations: each is an observation of the histogram and
    /// the node's last duration; nodes no longer probed lose their series.
    pub fn probed_nodes(&self, durations: &[(String, Duration)]) {
        let mut known = self.probed_nodes.lock().unwrap();
        let now: BTreeSet<String> = durations.iter().map(|(n, _)| n.clone()).collect();
        for gone in known.difference(&now) {
            self.probe_node_last.remove(&NodeLabels { node: gone.clone() });
        }
        for (node, took) in durations {
            self.probe_node_duration.observe(took.as_secs_f64());
            self.probe_node_last
                .get_or_create(&NodeLabels { node: node.clone() })
                .set(took.as_secs_f64());
        }
        *known = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_documented_series() {
        let m = Metrics::default();
        m.set_leader(true);
        m.set_phase(Phase::EtcdBoot, 1_700_000_000);
        m.operation("etcd-bootstrap", "completed");
        m.operation("etcd-bootstrap", "completed");
        m.command("run-container", "failed");
        m.operation_duration("etcd-bootstrap", Duration::from_millis(300));
        let text = m.render();
        assert!(text.contains("cke_leader 1\n"));
        assert!(text.contains("cke_operation_phase{phase=\"etcd-boot\"} 1\n"));
        assert!(text.contains("cke_operation_phase{phase=\"completed\"} 0\n"));
        assert!(text.contains("cke_operation_phase_timestamp_seconds 1700000000\n"));
        assert!(text.contains("cke_operations_total{operation=\"etcd-bootstrap\",result=\"completed\"} 2\n"));
        assert!(text.contains("cke_commands_total{command=\"run-container\",result=\"failed\"} 1\n"));
        assert!(
            text.contains("cke_operation_duration_seconds_bucket{operation=\"etcd-bootstrap\",le=\"0.4\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("cke_operation_duration_seconds_count{operation=\"etcd-bootstrap\"} 1\n"));
        m.set_leader(false);
        assert!(
            m.render().contains("cke_operation_phase{phase=\"etcd-boot\"} 0\n"),
            "a follower reports no phase"
        );
    }

    #[test]
    fn nodes_no_longer_probed_lose_their_series() {
        // Its own set, not the process-wide one other tests feed.
        let p = ProcessMetrics::new();
        let mut registry = Registry::with_prefix("cke");
        p.register(&mut registry);
        let render = || {
            let mut out = String::new();
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
            out
        };
        let a = ("10.0.0.1".to_string(), Duration::from_millis(20));
        let b = ("10.0.0.2".to_string(), Duration::from_millis(30));
        p.probed_nodes(&[a.clone(), b.clone()]);
        let text = render();
        assert!(
            text.contains("cke_probe_node_last_duration_seconds{node=\"10.0.0.2\"} 0.03\n"),
            "{text}"
        );
        assert!(text.contains("cke_probe_node_duration_seconds_count 2\n"), "{text}");
        p.probed_nodes(&[a]);
        let text = render();
        assert!(text.contains("node=\"10.0.0.1\""));
        assert!(!text.contains("node=\"10.0.0.2\""), "{text}");
        assert!(text.contains("cke_probe_node_duration_seconds_count 3\n"), "{text}");
    }
}
