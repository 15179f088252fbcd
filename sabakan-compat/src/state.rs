//! Machine states and the transitions sabakan permits (sabakan's `permittedTransitions`).

use async_graphql::Enum;

/// A machine's state: uppercase in GraphQL (`UNREACHABLE`), lowercase in the REST API
/// (`unreachable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[graphql(name = "MachineState")]
pub enum MachineState {
    /// Not initialized yet.
    Uninitialized,
    /// Can run applications.
    Healthy,
    /// Has problems to be repaired.
    Unhealthy,
    /// Cannot be reached.
    Unreachable,
    /// Being updated.
    Updating,
    /// To be retired or repaired.
    Retiring,
    /// Its disk encryption keys are deleted.
    Retired,
}

impl MachineState {
    /// Every state.
    pub const ALL: [MachineState; 7] = [
        MachineState::Uninitialized,
        MachineState::Healthy,
        MachineState::Unhealthy,
        MachineState::Unreachable,
        MachineState::Updating,
        MachineState::Retiring,
        MachineState::Retired,
    ];

    /// The REST spelling, e.g. `unreachable`.
    pub fn rest_name(&self) -> &'static str {
        match self {
            MachineState::Uninitialized => "uninitialized",
            MachineState::Healthy => "healthy",
            MachineState::Unhealthy => "unhealthy",
            MachineState::Unreachable => "unreachable",
            MachineState::Updating => "updating",
            MachineState::Retiring => "retiring",
            MachineState::Retired => "retired",
        }
    }

    /// Every REST spelling.
    pub fn rest_names() -> Vec<&'static str> {
        MachineState::ALL.iter().map(MachineState::rest_name).collect()
    }

    /// The state with this REST spelling.
    pub fn from_rest(s: &str) -> Option<MachineState> {
        MachineState::ALL.into_iter().find(|m| m.rest_name() == s)
    }

    /// The GraphQL spelling, e.g. `UNREACHABLE` (what `states` filters compare, case-insensitively).
    pub fn graphql_name(&self) -> String {
        self.rest_name().to_uppercase()
    }

    /// The states sabakan lets a machine move to from this one.
    pub fn permitted(&self) -> &'static [MachineState] {
        use MachineState::*;
        match self {
            Uninitialized => &[Healthy, Retiring],
            Healthy => &[Unhealthy, Unreachable, Updating, Retiring],
            Unhealthy => &[Healthy, Unreachable, Retiring],
            Unreachable => &[Healthy, Retiring],
            Updating => &[Uninitialized],
            Retiring => &[Retired],
            Retired => &[Uninitialized],
        }
    }
}
