//! The sabakan integration's metrics, CKE's names and meaning: `cke_sabakan_integration_successful`,
//! `cke_sabakan_integration_timestamp_seconds`, `cke_sabakan_workers{role}`,
//! `cke_sabakan_unused_machines`, shown only on the leader while the integration is enabled, and
//! `cke_auto_repair_enabled`. Plain values behind one lock, set by the integrator; nothing here does
//! I/O.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

/// The values of the sabakan metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SabakanValues {
    /// The integration is enabled (its metrics are shown).
    pub enabled: bool,
    /// Sabakan-triggered repair is enabled.
    pub auto_repair_enabled: Option<bool>,
    /// The last generation satisfied the constraints.
    pub successful: bool,
    /// When `successful` was last set (unix seconds).
    pub timestamp: i64,
    /// Workers by machine role after the last successful generation.
    pub workers: BTreeMap<String, i64>,
    /// Healthy machines left unused by the last successful generation.
    pub unused_machines: i64,
}

/// The sabakan metrics.
#[derive(Debug, Default)]
pub struct SabakanMetrics {
    values: Mutex<SabakanValues>,
}

impl SabakanMetrics {
    /// Sets whether the integration is enabled (its metrics are shown only then).
    pub fn set_enabled(&self, enabled: bool) {
        self.values.lock().unwrap().enabled = enabled;
    }

    /// Sets whether sabakan-triggered repair is enabled.
    pub fn set_auto_repair_enabled(&self, enabled: bool) {
        self.values.lock().unwrap().auto_repair_enabled = Some(enabled);
    }

    /// Records a generation (CKE's `UpdateSabakanIntegration`): on success the worker counts and
    /// unused machines are updated too; on failure they keep their last values.
    pub fn set_integration(&self, successful: bool, workers: &BTreeMap<String, i64>, unused: usize, timestamp: i64) {
        let mut v = self.values.lock().unwrap();
        v.timestamp = timestamp;
        v.successful = successful;
        if successful {
            for (role, n) in workers {
                v.workers.insert(role.clone(), *n);
            }
            v.unused_machines = unused as i64;
        }
    }

    /// The current values.
    pub fn values(&self) -> SabakanValues {
        self.values.lock().unwrap().clone()
    }

    /// Appends the Prometheus text exposition; `leader` gates everything, as in CKE.
    pub fn render(&self, leader: bool, out: &mut String) {
        if !leader {
            return;
        }
        let v = self.values();
        if let Some(enabled) = v.auto_repair_enabled {
            let _ = writeln!(
                out,
                "# HELP cke_auto_repair_enabled True (=1) if sabakan-triggered automatic repair is enabled.\n# TYPE cke_auto_repair_enabled gauge\ncke_auto_repair_enabled {}",
                u8::from(enabled)
            );
        }
        if !v.enabled {
            return;
        }
        let _ = writeln!(
            out,
            "# HELP cke_sabakan_integration_successful True (=1) if sabakan-integration satisfies constraints.\n# TYPE cke_sabakan_integration_successful gauge\ncke_sabakan_integration_successful {}",
            u8::from(v.successful)
        );
        let _ = writeln!(
            out,
            "# HELP cke_sabakan_integration_timestamp_seconds The Unix timestamp when sabakan_integration_successful was last updated.\n# TYPE cke_sabakan_integration_timestamp_seconds gauge\ncke_sabakan_integration_timestamp_seconds {}",
            v.timestamp
        );
        let _ = writeln!(
            out,
            "# HELP cke_sabakan_workers The number of worker nodes for each role.\n# TYPE cke_sabakan_workers gauge"
        );
        for (role, n) in &v.workers {
            let role = role.replace('\\', "\\\\").replace('"', "\\\"");
            let _ = writeln!(out, "cke_sabakan_workers{{role=\"{role}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP cke_sabakan_unused_machines The number of unused machines.\n# TYPE cke_sabakan_unused_machines gauge\ncke_sabakan_unused_machines {}",
            v.unused_machines
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shown_on_the_leader_while_enabled() {
        let m = SabakanMetrics::default();
        let workers = BTreeMap::from([("cs".to_string(), 3), ("ss".to_string(), 2)]);
        m.set_integration(true, &workers, 1, 1_700_000_000);
        let mut out = String::new();
        m.render(true, &mut out);
        assert!(out.is_empty(), "hidden while the integration is not enabled: {out}");
        m.set_enabled(true);
        m.set_auto_repair_enabled(false);
        m.render(true, &mut out);
        for line in [
            "cke_sabakan_integration_successful 1\n",
            "cke_sabakan_integration_timestamp_seconds 1700000000\n",
            "cke_sabakan_workers{role=\"cs\"} 3\n",
            "cke_sabakan_workers{role=\"ss\"} 2\n",
            "cke_sabakan_unused_machines 1\n",
            "cke_auto_repair_enabled 0\n",
        ] {
            assert!(out.contains(line), "{line:?} missing from {out}");
        }
        // A failed generation keeps the last counts, as CKE's gauges do.
        m.set_integration(false, &BTreeMap::new(), 0, 1_700_000_060);
        let mut out = String::new();
        m.render(true, &mut out);
        assert!(out.contains("cke_sabakan_integration_successful 0\n"));
        assert!(out.contains("cke_sabakan_workers{role=\"cs\"} 3\n"));
        let mut follower = String::new();
        m.render(false, &mut follower);
        assert!(follower.is_empty());
    }
}
