//! The sabakan integration's metrics, CKE's names and meaning: `cke_sabakan_integration_successful`,
//! `cke_sabakan_integration_timestamp_seconds`, `cke_sabakan_workers{role}`,
//! `cke_sabakan_unused_machines`, shown only on the leader while the integration is enabled, and
//! `cke_auto_repair_enabled`, on the leader once the integrator has read it. As in CKE they are
//! collected at each scrape (a prometheus-client [`Collector`] in the daemon's registry) from plain
//! values behind one lock, set by the integrator; nothing here does I/O.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

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

#[derive(Debug, Default)]
struct Inner {
    leader: AtomicBool,
    values: Mutex<SabakanValues>,
}

/// The sabakan metrics; clones share the values (one is registered in the daemon's registry).
#[derive(Debug, Default, Clone)]
pub struct SabakanMetrics {
    inner: Arc<Inner>,
}

impl SabakanMetrics {
    /// Sets whether this instance leads (nothing is shown otherwise, as in CKE).
    pub fn set_leader(&self, leader: bool) {
        self.inner.leader.store(leader, Ordering::SeqCst);
    }

    /// Sets whether the integration is enabled (its metrics are shown only then).
    pub fn set_enabled(&self, enabled: bool) {
        self.inner.values.lock().unwrap().enabled = enabled;
    }

    /// Sets whether sabakan-triggered repair is enabled.
    pub fn set_auto_repair_enabled(&self, enabled: bool) {
        self.inner.values.lock().unwrap().auto_repair_enabled = Some(enabled);
    }

    /// Records a generation (CKE's `UpdateSabakanIntegration`): on success the worker counts and
    /// unused machines are updated too; on failure they keep their last values.
    pub fn set_integration(&self, successful: bool, workers: &BTreeMap<String, i64>, unused: usize, timestamp: i64) {
        let mut v = self.inner.values.lock().unwrap();
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
        self.inner.values.lock().unwrap().clone()
    }
}

/// One gauge without labels.
fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for SabakanMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.inner.leader.load(Ordering::SeqCst) {
            return Ok(());
        }
        let v = self.values();
        if let Some(enabled) = v.auto_repair_enabled {
            gauge(
                &mut encoder,
                "auto_repair_enabled",
                "True (=1) if sabakan-triggered automatic repair is enabled",
                i64::from(enabled),
            )?;
        }
        if !v.enabled {
            return Ok(());
        }
        gauge(
            &mut encoder,
            "sabakan_integration_successful",
            "True (=1) if sabakan-integration satisfies constraints",
            i64::from(v.successful),
        )?;
        gauge(
            &mut encoder,
            "sabakan_integration_timestamp_seconds",
            "The Unix timestamp when sabakan_integration_successful was last updated",
            v.timestamp,
        )?;
        if !v.workers.is_empty() {
            let mut family = encoder.encode_descriptor(
                "sabakan_workers",
                "The number of worker nodes for each role",
                None,
                MetricType::Gauge,
            )?;
            for (role, n) in &v.workers {
                let labels = [("role", role.as_str())];
                ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
            }
        }
        gauge(
            &mut encoder,
            "sabakan_unused_machines",
            "The number of unused machines",
            v.unused_machines,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use prometheus_client::registry::Registry;

    /// The exposition of a registry holding `m`, with cke's prefix.
    fn render(m: &SabakanMetrics) -> String {
        let mut r = Registry::with_prefix("cke");
        r.register_collector(Box::new(m.clone()));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        // Only the families: the encoder ends with `# EOF` or nothing.
        out.lines()
            .filter(|l| !l.starts_with("# EOF"))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    #[test]
    fn shown_on_the_leader_while_enabled() {
        let m = SabakanMetrics::default();
        m.set_leader(true);
        let workers = BTreeMap::from([("cs".to_string(), 3), ("ss".to_string(), 2)]);
        m.set_integration(true, &workers, 1, 1_700_000_000);
        let out = render(&m);
        assert!(out.is_empty(), "hidden while the integration is not enabled: {out}");
        m.set_enabled(true);
        m.set_auto_repair_enabled(false);
        let out = render(&m);
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
        let out = render(&m);
        assert!(out.contains("cke_sabakan_integration_successful 0\n"));
        assert!(out.contains("cke_sabakan_workers{role=\"cs\"} 3\n"));
        m.set_leader(false);
        let follower = render(&m);
        assert!(follower.is_empty(), "{follower}");
    }
}
