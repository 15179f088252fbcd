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

async fn health(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    let fresh = |t: Option<std::time::Instant>| t.is_some_and(|t| t.elapsed() < HEALTH_WINDOW);
    let etcd = fresh(*shared.etcd_ok_at.lock().unwrap());
    let running = fresh(*shared.loop_alive_at.lock().unwrap());
    let code = if etcd && running {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (
        code,
        Json(json!({ "healthy": etcd && running, "etcd_connected": etcd, "loop_running": running })),
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
