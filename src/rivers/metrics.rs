//! The optional HTTP listener of rivers: `/metrics` (Prometheus text format, through
//! prometheus-client) and `/health` (200 when at least one current upstream is healthy, else 503).
//! Read-only; never changes proxy state.
//!
//! The counters live in the proxy (atomics it needs for itself, and an upstream set that changes at
//! run time); a prometheus-client [`Collector`] turns a snapshot of them into typed metrics at each
//! scrape, so removed upstreams leave the exposition with no bookkeeping here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::server::{Shared, Stats};

/// Serves until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .with_state(shared);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics listener failed");
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        )],
        render(&shared.stats()),
    )
}

async fn health(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let stats = shared.stats();
    let healthy = stats.upstreams.iter().filter(|u| u.current && u.healthy).count();
    if healthy > 0 {
        (StatusCode::OK, format!("ok: {healthy} healthy upstream(s)\n"))
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream\n".to_string())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

/// A snapshot of the proxy's counters, encoded as metrics.
#[derive(Debug)]
struct Snapshot(Stats);

fn gauge(v: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        gauge(s.active).encode(encoder.encode_descriptor(
            "connections_active",
            "Client connections open now",
            None,
            MetricType::Gauge,
        )?)?;
        for (name, help, v) in [
            ("connections_accepted", "Client connections accepted", s.accepted),
            (
                "connections_no_upstream",
                "Client connections closed because no upstream could be dialled",
                s.no_upstream,
            ),
            (
                "health_check_rounds",
                "Completed rounds of the active health check",
                s.check_rounds,
            ),
        ] {
            ConstCounter::new(v).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        type Field = fn(&super::UpstreamStats) -> u64;
        let per: [(&str, MetricType, &str, Field); 5] = [
            (
                "upstream_healthy",
                MetricType::Gauge,
                "1 when new connections may go to the upstream",
                |u| u64::from(u.healthy),
            ),
            (
                "upstream_current",
                MetricType::Gauge,
                "1 when the upstream is in the current set, 0 while a removed upstream drains",
                |u| u64::from(u.current),
            ),
            (
                "upstream_connections_active",
                MetricType::Gauge,
                "Connections open to the upstream now",
                |u| u.active,
            ),
            (
                "upstream_connections",
                MetricType::Counter,
                "Connections proxied to the upstream",
                |u| u.total,
            ),
            (
                "upstream_dial_failures",
                MetricType::Counter,
                "Failed dials to the upstream for clients",
                |u| u.dial_failures,
            ),
        ];
        for (name, kind, help, field) in per {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for u in &s.upstreams {
                let labels = UpstreamLabels {
                    upstream: u.address.clone(),
                };
                let metric = family.encode_family(&labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(field(u)).encode(metric)?,
                    _ => gauge(field(u)).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}

/// Renders the counters in the Prometheus text exposition format.
pub(crate) fn render(stats: &Stats) -> String {
    let mut registry = Registry::with_prefix("rivers");
    registry.register_collector(Box::new(Snapshot(stats.clone())));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rivers::UpstreamStats;

    #[test]
    fn renders_prometheus_text() {
        let stats = Stats {
            accepted: 7,
            active: 2,
            no_upstream: 1,
            check_rounds: 4,
            upstreams: vec![UpstreamStats {
                address: "10.0.0.1:6443".into(),
                current: true,
                healthy: true,
                active: 2,
                total: 6,
                dial_failures: 3,
            }],
        };
        let text = render(&stats);
        for line in [
            "rivers_connections_active 2",
            "rivers_connections_accepted_total 7",
            "rivers_connections_no_upstream_total 1",
            "rivers_health_check_rounds_total 4",
            "rivers_upstream_healthy{upstream=\"10.0.0.1:6443\"} 1",
            "rivers_upstream_connections_active{upstream=\"10.0.0.1:6443\"} 2",
            "rivers_upstream_connections_total{upstream=\"10.0.0.1:6443\"} 6",
            "rivers_upstream_dial_failures_total{upstream=\"10.0.0.1:6443\"} 3",
            "# TYPE rivers_upstream_connections_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }
}
