//! The HTTP endpoint of `cke`: `/health`, `/version`, `/status` (JSON) and `/metrics` (Prometheus).
//! It only reads the shared state; it never talks to etcd itself.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub mod state;

pub use state::{DaemonStatus, Shared};

/// How recent the last successful etcd request and loop progress must be for `/health` to be 200.
pub const HEALTH_WINDOW: Duration = Duration::from_secs(30);

/// The router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

/// 200 when the management etcd answered and the main loop made progress within
/// [`HEALTH_WINDOW`], 500 otherwise; either way `problems` says, in words, what is wrong: those two,
/// and on the leader Vault (down, sealed), unreachable nodes and the last failed pass. Problems of
/// Vault and the nodes do not make cke unhealthy: it keeps working on the rest and retries.
async fn health(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let age = |t: Option<std::time::Instant>| t.map(|t| t.elapsed());
    let etcd_age = age(*shared.etcd_ok_at.lock().unwrap());
    let loop_age = age(*shared.loop_alive_at.lock().unwrap());
    let fresh = |a: Option<Duration>| a.is_some_and(|a| a < HEALTH_WINDOW);
    let (etcd, running) = (fresh(etcd_age), fresh(loop_age));
    let since = |a: Option<Duration>| match a {
        Some(a) => format!("for {}s", a.as_secs()),
        None => "since start".into(),
    };
    let mut problems = Vec::new();
    if !etcd {
        problems.push(format!("management etcd: no answer {}", since(etcd_age)));
    }
    if !running {
        problems.push(format!("main loop: no progress {}", since(loop_age)));
    }
    problems.extend(
        shared
            .problems
            .lock()
            .unwrap()
            .iter()
            .map(|(source, text)| format!("{source}: {text}")),
    );
    let code = if etcd && running {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        code,
        Json(json!({
            "healthy": etcd && running,
            "etcd_connected": etcd,
            "loop_running": running,
            "problems": problems,
        })),
    )
}

async fn version() -> impl IntoResponse {
    Json(json!({ "version": env!("CARGO_PKG_VERSION") }))
}

async fn status(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let st = shared.status.read().unwrap().clone();
    Json(st)
}

async fn metrics(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        shared.metrics.render(),
    )
}
