//! Prometheus metrics of the `cke` daemon, rendered in the text exposition format. Counters and gauges
//! are plain atomics behind one registry shared by the controller and the HTTP server; nothing here
//! does I/O.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::model::Phase;

pub mod sabakan;

/// Counts SSH host-key mismatches (refused connections); incremented by the node agent.
pub static SSH_HOSTKEY_MISMATCHES: AtomicU64 = AtomicU64::new(0);

/// The daemon's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    leader: AtomicBool,
    phase: Mutex<Option<Phase>>,
    phase_timestamp: AtomicI64,
    operations: Mutex<BTreeMap<(String, &'static str), u64>>,
    commands: Mutex<BTreeMap<(String, &'static str), u64>>,
    passes: AtomicU64,
    failed_passes: AtomicU64,
    /// The sabakan integration's metrics.
    pub sabakan: sabakan::SabakanMetrics,
}

impl Metrics {
    /// Sets whether this instance leads.
    pub fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
    }

    /// Sets the phase of the last pass and when it was entered (unix seconds).
    pub fn set_phase(&self, phase: Phase, timestamp: i64) {
        *self.phase.lock().unwrap() = Some(phase);
        self.phase_timestamp.store(timestamp, Ordering::SeqCst);
    }

    /// Counts a finished operation; `result` is `completed` or `cancelled`.
    pub fn operation(&self, name: &str, result: &'static str) {
        *self
            .operations
            .lock()
            .unwrap()
            .entry((name.to_string(), result))
            .or_default() += 1;
    }

    /// Counts a finished command; `result` is `succeeded` or `failed`.
    pub fn command(&self, name: &str, result: &'static str) {
        *self
            .commands
            .lock()
            .unwrap()
            .entry((name.to_string(), result))
            .or_default() += 1;
    }

    /// Counts a controller pass.
    pub fn pass(&self) {
        self.passes.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a pass that ended in a failure (a failed command, the management etcd).
    pub fn pass_failed(&self) {
        self.failed_passes.fetch_add(1, Ordering::SeqCst);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let leader = u8::from(self.leader.load(Ordering::SeqCst));
        let _ = writeln!(
            out,
            "# HELP cke_leader 1 when this instance is the leader.\n# TYPE cke_leader gauge\ncke_leader {leader}"
        );
        let phase = *self.phase.lock().unwrap();
        let _ = writeln!(
            out,
            "# HELP cke_operation_phase 1 for the phase of the leader's last pass.\n# TYPE cke_operation_phase gauge"
        );
        for p in Phase::ALL {
            let v = u8::from(leader == 1 && phase == Some(p));
            let _ = writeln!(out, "cke_operation_phase{{phase=\"{p}\"}} {v}");
        }
        let _ = writeln!(
            out,
            "# HELP cke_operation_phase_timestamp_seconds When the current phase was entered.\n# TYPE cke_operation_phase_timestamp_seconds gauge\ncke_operation_phase_timestamp_seconds {}",
            self.phase_timestamp.load(Ordering::SeqCst)
        );
        let _ = writeln!(
            out,
            "# HELP cke_operations_total Operations finished, by name and result.\n# TYPE cke_operations_total counter"
        );
        for ((name, result), v) in self.operations.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "cke_operations_total{{operation=\"{}\",result=\"{result}\"}} {v}",
                escape(name)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cke_commands_total Commands finished, by name and result.\n# TYPE cke_commands_total counter"
        );
        for ((name, result), v) in self.commands.lock().unwrap().iter() {
            let _ = writeln!(
                out,
                "cke_commands_total{{command=\"{}\",result=\"{result}\"}} {v}",
                escape(name)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cke_controller_passes_total Controller passes run while leading.\n# TYPE cke_controller_passes_total counter\ncke_controller_passes_total {}",
            self.passes.load(Ordering::SeqCst)
        );
        let _ = writeln!(
            out,
            "# HELP cke_controller_pass_failures_total Controller passes that ended in a failure.\n# TYPE cke_controller_pass_failures_total counter\ncke_controller_pass_failures_total {}",
            self.failed_passes.load(Ordering::SeqCst)
        );
        let _ = writeln!(
            out,
            "# HELP cke_ssh_hostkey_mismatch_total SSH connections refused because the host key did not match the pinned key.\n# TYPE cke_ssh_hostkey_mismatch_total counter\ncke_ssh_hostkey_mismatch_total {}",
            SSH_HOSTKEY_MISMATCHES.load(Ordering::SeqCst)
        );
        self.sabakan.render(leader == 1, &mut out);
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
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
        let text = m.render();
        assert!(text.contains("cke_leader 1\n"));
        assert!(text.contains("cke_operation_phase{phase=\"etcd-boot\"} 1\n"));
        assert!(text.contains("cke_operation_phase{phase=\"completed\"} 0\n"));
        assert!(text.contains("cke_operation_phase_timestamp_seconds 1700000000\n"));
        assert!(text.contains("cke_operations_total{operation=\"etcd-bootstrap\",result=\"completed\"} 2\n"));
        assert!(text.contains("cke_commands_total{command=\"run-container\",result=\"failed\"} 1\n"));
        m.set_leader(false);
        assert!(
            m.render().contains("cke_operation_phase{phase=\"etcd-boot\"} 0\n"),
            "a follower reports no phase"
        );
    }
}
