//! sabakan-compat: a small stand-in for [sabakan](https://github.com/cybozu-go/sabakan), for teams
//! without it, for cke-rs's tests and for `make demo`. It serves machines from an inventory file:
//!
//! - `POST /graphql`: sabakan's GraphQL `searchMachines(having, notHaving)` and `machine(serial)`
//!   (the schema subset CKE uses, filtered as sabakan filters), and `setMachineState(serial, state)`;
//! - `PUT /api/v1/state/<serial>` with the state in the body (`retiring`), and
//!   `GET /api/v1/state/<serial>`, as sabakan's REST API; transitions are sabakan's;
//! - `GET /api/v1/machines`: every machine as sabakan's REST API shows it.
//!
//! States live in memory: a restart starts again from the inventory.

pub mod inventory;
pub mod schema;
pub mod state;

use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post_service};
use axum::{Json, Router};
use chrono::{DateTime, Utc};

pub use inventory::{parse as parse_inventory, InventoryError, Machine};
pub use state::MachineState;

/// The machines and their states, shared by the GraphQL and REST handlers.
#[derive(Debug, Clone)]
pub struct Store {
    machines: Arc<RwLock<Vec<Machine>>>,
}

/// A state change that cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StateError {
    /// No machine has this serial.
    #[error("machine {0} is not found")]
    NotFound(String),
    /// Not a state.
    #[error("invalid state: {0:?} (one of {states})", states = MachineState::rest_names().join(", "))]
    Invalid(String),
    /// Sabakan does not permit this transition.
    #[error("transition from {from} to state {to} is forbidden")]
    Forbidden {
        /// The current state.
        from: &'static str,
        /// The state asked for.
        to: &'static str,
    },
}

impl Store {
    /// A store of these machines.
    pub fn new(machines: Vec<Machine>) -> Self {
        Store {
            machines: Arc::new(RwLock::new(machines)),
        }
    }

    /// Every machine, in the inventory's order.
    pub fn machines(&self) -> Vec<Machine> {
        self.machines.read().unwrap().clone()
    }

    /// The machine with this serial.
    pub fn machine(&self, serial: &str) -> Option<Machine> {
        self.machines
            .read()
            .unwrap()
            .iter()
            .find(|m| m.serial == serial)
            .cloned()
    }

    /// Moves a machine to `to` at `now`, if sabakan permits it; the same state is no change.
    pub fn set_state(&self, serial: &str, to: MachineState, now: DateTime<Utc>) -> Result<Machine, StateError> {
        let mut ms = self.machines.write().unwrap();
        let m = ms
            .iter_mut()
            .find(|m| m.serial == serial)
            .ok_or_else(|| StateError::NotFound(serial.to_string()))?;
        if m.state != to {
            if !m.state.permitted().contains(&to) {
                return Err(StateError::Forbidden {
                    from: m.state.rest_name(),
                    to: to.rest_name(),
                });
            }
            tracing::info!(
                serial,
                from = m.state.rest_name(),
                to = to.rest_name(),
                "machine state changed"
            );
            m.state = to;
            m.timestamp = now;
        }
        Ok(m.clone())
    }
}

fn api_error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (
        status,
        Json(serde_json::json!({"status": status.as_u16(), "error": msg.to_string()})),
    )
        .into_response()
}

async fn put_state(State(store): State<Store>, Path(serial): Path<String>, body: String) -> Response {
    let Some(to) = MachineState::from_rest(body.trim()) else {
        return api_error(StatusCode::BAD_REQUEST, StateError::Invalid(body.trim().to_string()));
    };
    match store.set_state(&serial, to, Utc::now()) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e @ StateError::NotFound(_)) => api_error(StatusCode::NOT_FOUND, e),
        Err(e) => api_error(StatusCode::BAD_REQUEST, e),
    }
}

async fn get_state(State(store): State<Store>, Path(serial): Path<String>) -> Response {
    match store.machine(&serial) {
        Some(m) => ([("content-type", "text/plain")], m.state.rest_name()).into_response(),
        None => api_error(StatusCode::NOT_FOUND, StateError::NotFound(serial)),
    }
}

/// A machine as sabakan's REST API shows it.
pub fn rest_machine(m: &Machine, now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "spec": {
            "serial": m.serial,
            "labels": m.labels,
            "rack": m.rack,
            "index-in-rack": m.index_in_rack,
            "role": m.role,
            "ipv4": m.ipv4,
            "ipv6": [],
            "register-date": m.register_date,
            "retire-date": m.retire_date,
            "bmc": {"type": m.bmc_type, "ipv4": m.bmc_ipv4, "ipv6": ""},
        },
        "status": {
            "state": m.state.rest_name(),
            "timestamp": m.timestamp,
            "duration": schema::duration(m, now),
        },
    })
}

async fn list_machines(State(store): State<Store>) -> Response {
    let now = Utc::now();
    Json(
        store
            .machines()
            .iter()
            .map(|m| rest_machine(m, now))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

/// The HTTP routes: `/graphql`, `/api/v1/state/{serial}`, `/api/v1/machines`, `/health`.
pub fn router(store: Store) -> Router {
    let schema = schema::build(store.clone());
    Router::new()
        .route(
            "/graphql",
            post_service(async_graphql_axum::GraphQL::new(schema.clone()))
                .get_service(async_graphql_axum::GraphQL::new(schema)),
        )
        .route("/api/v1/state/{serial}", get(get_state).put(put_state))
        .route("/api/v1/machines", get(list_machines))
        .route("/health", get(|| async { "ok" }))
        .with_state(store)
}

/// Serves `store` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(store))
        .with_graceful_shutdown(shutdown)
        .await
}
