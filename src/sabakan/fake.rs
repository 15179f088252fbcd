//! Test doubles: sabakan in memory ([`FakeSabakan`]) and machines from short specs.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{TimeZone, Utc};

use super::client::{MachineSearch, QueryError};
use super::machine::{Machine, MachineSpec, MachineState, MachineStatus, QueryVariables};

/// Sabakan in memory: the machines it answers (or a failure), and the variables it was sent.
pub struct FakeSabakan {
    /// What the next queries answer.
    pub machines: Mutex<Result<Vec<Machine>, String>>,
    /// The variables of every query, in order.
    pub sent: Mutex<Vec<Option<QueryVariables>>>,
}

impl FakeSabakan {
    /// Answers these machines.
    pub fn new(machines: Vec<Machine>) -> Self {
        FakeSabakan {
            machines: Mutex::new(Ok(machines)),
            sent: Mutex::new(vec![]),
        }
    }

    /// Answers these machines from now on.
    pub fn set(&self, machines: Vec<Machine>) {
        *self.machines.lock().unwrap() = Ok(machines);
    }
}

#[async_trait]
impl MachineSearch for FakeSabakan {
    async fn search(&self, url: &str, v: Option<&QueryVariables>) -> Result<Vec<Machine>, QueryError> {
        self.sent.lock().unwrap().push(v.cloned());
        self.machines.lock().unwrap().clone().map_err(|e| QueryError::GraphQl {
            url: url.into(),
            messages: vec![e],
        })
    }
}

/// A `cs` machine at `ip` in `rack`, retiring in 2030, with this state (entered just now).
pub fn machine(ip: &str, rack: i64, state: MachineState) -> Machine {
    let d = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
    Machine {
        spec: MachineSpec {
            serial: format!("s-{ip}"),
            labels: vec![],
            rack,
            index_in_rack: 0,
            role: "cs".into(),
            ipv4: vec![ip.into()],
            register_date: d,
            retire_date: d,
            bmc: Default::default(),
        },
        status: MachineStatus { state, duration: 0.0 },
    }
}
