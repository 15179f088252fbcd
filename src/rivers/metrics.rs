//! The optional HTTP listener of rivers: `/metrics` (Prometheus text format) and `/health` (200 when
//! at least one current upstream is healthy, else 503). Read-only; never changes proxy state.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
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
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
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

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Renders the counters in the Prometheus text exposition format.
pub(crate) fn render(stats: &Stats) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
    };
    gauge(
        "rivers_connections_active",
        "gauge",
        "Client connections open now.",
        stats.active,
    );
    gauge(
        "rivers_connections_accepted_total",
        "counter",
        "Client connections accepted.",
        stats.accepted,
    );
    gauge(
        "rivers_connections_no_upstream_total",
        "counter",
        "Client connections closed because no upstream could be dialled.",
        stats.no_upstream,
    );
    gauge(
        "rivers_health_check_rounds_total",
        "counter",
        "Completed rounds of the active health check.",
        stats.check_rounds,
    );
    type Field = fn(&super::UpstreamStats) -> u64;
    let per: [(&str, &str, &str, Field); 5] = [
        (
            "rivers_upstream_healthy",
            "gauge",
            "1 when new connections may go to the upstream.",
            |u| u.healthy as u64,
        ),
        (
            "rivers_upstream_current",
            "gauge",
            "1 when the upstream is in the current set, 0 while a removed upstream drains.",
            |u| u.current as u64,
        ),
        (
            "rivers_upstream_connections_active",
            "gauge",
            "Connections open to the upstream now.",
            |u| u.active,
        ),
        (
            "rivers_upstream_connections_total",
            "counter",
            "Connections proxied to the upstream.",
            |u| u.total,
        ),
        (
            "rivers_upstream_dial_failures_total",
            "counter",
            "Failed dials to the upstream for clients.",
            |u| u.dial_failures,
        ),
    ];
    for (name, kind, help, f) in per {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for u in &stats.upstreams {
            let _ = writeln!(out, "{name}{{upstream=\"{}\"}} {}", escape(&u.address), f(u));
        }
    }
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
