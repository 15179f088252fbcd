//! The GraphQL schema: the subset of sabakan's schema that CKE uses (CKE's
//! `sabakan/mock/schema.graphql`) plus sabakan's `setMachineState` mutation, with sabakan's
//! search semantics (`gql/match.go`): `having` needs all its labels and one of each of its lists,
//! `notHaving` excludes a machine with any of them; `minDaysBeforeRetire` compares whole days to the
//! retire date.

use async_graphql::{
    Context, EmptySubscription, InputObject, InputValueError, InputValueResult, Object, Scalar, ScalarType, Schema,
    SimpleObject, Value, ID,
};
use chrono::Utc;

use crate::inventory;
use crate::state::MachineState;
use crate::{StateError, Store};

/// The schema served at `/graphql`.
pub type SabakanSchema = Schema<Query, Mutation, EmptySubscription>;

/// Builds the schema over `store`.
pub fn build(store: Store) -> SabakanSchema {
    Schema::build(Query, Mutation, EmptySubscription).data(store).finish()
}

/// Seconds since the machine entered its state.
pub fn duration(m: &inventory::Machine, now: chrono::DateTime<Utc>) -> f64 {
    (now - m.timestamp).num_milliseconds() as f64 / 1000.0
}

/// IPAddress represents an IPv4 or IPv6 address.
#[derive(Debug, Clone)]
pub struct IpAddress(pub String);

#[Scalar(name = "IPAddress")]
impl ScalarType for IpAddress {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(s) if s.parse::<std::net::IpAddr>().is_ok() => Ok(IpAddress(s)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

/// DateTime represents a date and time value.
#[derive(Debug, Clone)]
pub struct DateTime(pub chrono::DateTime<Utc>);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map(|d| DateTime(d.with_timezone(&Utc)))
                .map_err(|_| InputValueError::expected_type(value)),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    }
}

/// Label represents an arbitrary key-value pairs.
#[derive(Debug, Clone, SimpleObject)]
pub struct Label {
    name: String,
    value: String,
}

/// BMC represents a Baseboard Management Controller.
#[derive(Debug, Clone, SimpleObject)]
#[graphql(name = "BMC")]
pub struct Bmc {
    bmc_type: String,
    ipv4: IpAddress,
}

/// MachineSpec represents specifications of a machine.
#[derive(Debug, Clone, SimpleObject)]
pub struct MachineSpec {
    serial: ID,
    labels: Option<Vec<Label>>,
    rack: i32,
    index_in_rack: i32,
    role: String,
    ipv4: Vec<IpAddress>,
    register_date: DateTime,
    retire_date: DateTime,
    bmc: Bmc,
}

/// MachineStatus represents status of a Machine.
#[derive(Debug, Clone, SimpleObject)]
pub struct MachineStatus {
    state: MachineState,
    timestamp: DateTime,
    duration: f64,
}

/// Machine represents a physical server in a datacenter rack.
#[derive(Debug, Clone, SimpleObject)]
pub struct Machine {
    spec: MachineSpec,
    status: MachineStatus,
}

fn status(m: &inventory::Machine, now: chrono::DateTime<Utc>) -> MachineStatus {
    MachineStatus {
        state: m.state,
        timestamp: DateTime(m.timestamp),
        duration: duration(m, now),
    }
}

fn machine(m: &inventory::Machine, now: chrono::DateTime<Utc>) -> Machine {
    Machine {
        spec: MachineSpec {
            serial: ID(m.serial.clone()),
            // Sabakan answers null for no labels, and sorts them by name.
            labels: (!m.labels.is_empty()).then(|| {
                m.labels
                    .iter()
                    .map(|(k, v)| Label {
                        name: k.clone(),
                        value: v.clone(),
                    })
                    .collect()
            }),
            rack: m.rack as i32,
            index_in_rack: m.index_in_rack as i32,
            role: m.role.clone(),
            ipv4: m.ipv4.iter().cloned().map(IpAddress).collect(),
            register_date: DateTime(m.register_date),
            retire_date: DateTime(m.retire_date),
            bmc: Bmc {
                bmc_type: m.bmc_type.clone(),
                ipv4: IpAddress(m.bmc_ipv4.clone()),
            },
        },
        status: status(m, now),
    }
}

/// LabelInput represents a label to search machines.
#[derive(Debug, Clone, InputObject)]
pub struct LabelInput {
    name: String,
    value: String,
}

/// MachineParams is a set of input parameters to search machines.
#[derive(Debug, Clone, Default, InputObject)]
pub struct MachineParams {
    labels: Option<Vec<LabelInput>>,
    racks: Option<Vec<i32>>,
    roles: Option<Vec<String>>,
    states: Option<Vec<MachineState>>,
    min_days_before_retire: Option<i32>,
}

/// Whether `m` matches `having` and not `not_having` at `now` (sabakan's `matchMachine`).
pub fn matches(
    m: &inventory::Machine,
    having: Option<&MachineParams>,
    not_having: Option<&MachineParams>,
    now: chrono::DateTime<Utc>,
) -> bool {
    fn list<T>(l: &Option<Vec<T>>) -> &[T] {
        l.as_deref().unwrap_or(&[])
    }
    // `base` is the answer for an absent or empty list.
    fn contains<T: PartialEq>(l: &[T], x: &T, base: bool) -> bool {
        if l.is_empty() {
            base
        } else {
            l.contains(x)
        }
    }
    let label = |l: &LabelInput| m.labels.get(&l.name) == Some(&l.value);
    if let Some(h) = having {
        if !list(&h.labels).iter().all(label)
            || !contains(list(&h.racks), &(m.rack as i32), true)
            || !contains(list(&h.roles), &m.role, true)
            || !contains(list(&h.states), &m.state, true)
        {
            return false;
        }
    }
    if let Some(nh) = not_having {
        if list(&nh.labels).iter().any(label)
            || contains(list(&nh.racks), &(m.rack as i32), false)
            || contains(list(&nh.roles), &m.role, false)
            || contains(list(&nh.states), &m.state, false)
        {
            return false;
        }
    }
    let days = ((m.retire_date - now).num_milliseconds() as f64 / 1000.0 / 3600.0 / 24.0) as i64;
    if let Some(min) = having.and_then(|h| h.min_days_before_retire) {
        if i64::from(min) > days {
            return false;
        }
    }
    if let Some(min) = not_having.and_then(|h| h.min_days_before_retire) {
        if i64::from(min) <= days {
            return false;
        }
    }
    true
}

/// The queries.
pub struct Query;

#[Object]
impl Query {
    /// The machine with this serial.
    async fn machine(&self, ctx: &Context<'_>, serial: ID) -> async_graphql::Result<Machine> {
        let store = ctx.data::<Store>()?;
        match store.machine(&serial) {
            Some(m) => Ok(machine(&m, Utc::now())),
            None => Err(StateError::NotFound(serial.to_string()).into()),
        }
    }

    /// The machines that have everything of `having` and nothing of `notHaving`.
    async fn search_machines(
        &self,
        ctx: &Context<'_>,
        having: Option<MachineParams>,
        not_having: Option<MachineParams>,
    ) -> async_graphql::Result<Vec<Machine>> {
        let store = ctx.data::<Store>()?;
        let now = Utc::now();
        Ok(store
            .machines()
            .iter()
            .filter(|m| matches(m, having.as_ref(), not_having.as_ref(), now))
            .map(|m| machine(m, now))
            .collect())
    }
}

/// The mutations.
pub struct Mutation;

#[Object]
impl Mutation {
    /// Moves a machine to `state`, if sabakan permits the transition.
    async fn set_machine_state(
        &self,
        ctx: &Context<'_>,
        serial: ID,
        state: MachineState,
    ) -> async_graphql::Result<MachineStatus> {
        let store = ctx.data::<Store>()?;
        let now = Utc::now();
        let m = store.set_state(&serial, state, now)?;
        Ok(status(&m, now))
    }
}
