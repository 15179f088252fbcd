//! The inventory file: the machines sabakan-compat serves, as YAML or JSON — a list of machines, or
//! an object whose `machines` is that list. Each machine takes sabakan's `MachineSpec` fields
//! (`serial`, `labels`, `rack`, `index-in-rack`, `role`, `ipv4`, `register-date`, `retire-date`,
//! `bmc: {type, ipv4}`) and an initial `state` (default `healthy`). Validation names the machine and
//! the field of every problem.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use chrono::{DateTime, Months, Utc};
use serde::Deserialize;

use crate::state::MachineState;

/// One machine of the inventory file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineEntry {
    /// Serial number (unique).
    pub serial: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Logical rack number.
    #[serde(default)]
    pub rack: u32,
    /// Position in the rack.
    #[serde(rename = "index-in-rack", default)]
    pub index_in_rack: u32,
    /// Role, e.g. `cs`, `ss`, `boot`.
    pub role: String,
    /// IPv4 addresses; the first is the node's.
    pub ipv4: Vec<String>,
    /// Registration date (default: when the server starts).
    #[serde(rename = "register-date", default)]
    pub register_date: Option<DateTime<Utc>>,
    /// Retire date (default: five years after the registration).
    #[serde(rename = "retire-date", default)]
    pub retire_date: Option<DateTime<Utc>>,
    /// The BMC.
    #[serde(default)]
    pub bmc: BmcEntry,
    /// Initial state, in sabakan's REST spelling (`healthy`, `unreachable`, ...); default `healthy`.
    #[serde(default)]
    pub state: Option<String>,
}

/// A machine's BMC.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcEntry {
    /// BMC type, e.g. `IPMI-2.0` (the repair queue's machine type).
    #[serde(rename = "type", default)]
    pub bmc_type: String,
    /// BMC address.
    #[serde(default)]
    pub ipv4: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    List(Vec<serde_yaml::Value>),
    Object { machines: Vec<serde_yaml::Value> },
}

/// A machine as served: its spec and its state since `timestamp`.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Serial number.
    pub serial: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Rack.
    pub rack: u32,
    /// Index in the rack.
    pub index_in_rack: u32,
    /// Role.
    pub role: String,
    /// IPv4 addresses.
    pub ipv4: Vec<String>,
    /// Registration date.
    pub register_date: DateTime<Utc>,
    /// Retire date.
    pub retire_date: DateTime<Utc>,
    /// BMC type.
    pub bmc_type: String,
    /// BMC address.
    pub bmc_ipv4: String,
    /// Current state.
    pub state: MachineState,
    /// When the state was entered.
    pub timestamp: DateTime<Utc>,
}

/// An inventory that cannot be served, with every problem.
#[derive(Debug, thiserror::Error)]
#[error("invalid inventory:{}", .problems.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
pub struct InventoryError {
    /// One line per problem, each naming the machine and the field.
    pub problems: Vec<String>,
}

fn label_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Parses and checks an inventory (YAML or JSON) read at `now`.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<Vec<Machine>, InventoryError> {
    let fail = |p: String| InventoryError { problems: vec![p] };
    let file: File = serde_yaml::from_str(text)
        .map_err(|e| fail(format!("not a list of machines (nor {{machines: [...]}}): {e}")))?;
    let values = match file {
        File::List(v) | File::Object { machines: v } => v,
    };
    let mut problems = Vec::new();
    let mut machines = Vec::new();
    let mut serials: HashMap<String, usize> = HashMap::new();
    let mut addresses: HashMap<String, usize> = HashMap::new();
    for (i, v) in values.into_iter().enumerate() {
        let at = |field: &str| format!("machines[{i}]{}{field}", if field.is_empty() { "" } else { "." });
        let e: MachineEntry = match serde_yaml::from_value(v) {
            Ok(e) => e,
            Err(err) => {
                problems.push(format!("{}: {err}", at("")));
                continue;
            }
        };
        if e.serial.is_empty() {
            problems.push(format!("{}: is required", at("serial")));
        } else if let Some(j) = serials.insert(e.serial.clone(), i) {
            problems.push(format!(
                "{}: {:?} is also the serial of machines[{j}]",
                at("serial"),
                e.serial
            ));
        }
        if !label_ok(&e.role) {
            problems.push(format!(
                "{}: {:?} is not a role (letters, digits, '-', '_', '.'; starting and ending with a letter or digit)",
                at("role"),
                e.role
            ));
        }
        if e.ipv4.is_empty() {
            problems.push(format!("{}: at least one address is required", at("ipv4")));
        }
        for (k, a) in e.ipv4.iter().enumerate() {
            if a.parse::<Ipv4Addr>().is_err() {
                problems.push(format!("{}: {a:?} is not an IPv4 address", at(&format!("ipv4[{k}]"))));
            } else if let Some(j) = addresses.insert(a.clone(), i) {
                problems.push(format!(
                    "{}: {a} is also an address of machines[{j}]",
                    at(&format!("ipv4[{k}]"))
                ));
            }
        }
        if !e.bmc.ipv4.is_empty() && e.bmc.ipv4.parse::<Ipv4Addr>().is_err() {
            problems.push(format!("{}: {:?} is not an IPv4 address", at("bmc.ipv4"), e.bmc.ipv4));
        }
        for (k, v) in &e.labels {
            if !label_ok(k) {
                problems.push(format!("{}: {k:?} is not a label name", at(&format!("labels[{k:?}]"))));
            }
            if !v.is_empty() && !label_ok(v) {
                problems.push(format!("{}: {v:?} is not a label value", at(&format!("labels[{k:?}]"))));
            }
        }
        let state = match &e.state {
            None => MachineState::Healthy,
            Some(s) => match MachineState::from_rest(s) {
                Some(st) => st,
                None => {
                    problems.push(format!(
                        "{}: {s:?} is not a state ({})",
                        at("state"),
                        MachineState::rest_names().join(", ")
                    ));
                    continue;
                }
            },
        };
        let register_date = e.register_date.unwrap_or(now);
        let retire_date = e.retire_date.unwrap_or_else(|| {
            register_date
                .checked_add_months(Months::new(60))
                .unwrap_or(register_date)
        });
        machines.push(Machine {
            serial: e.serial,
            labels: e.labels,
            rack: e.rack,
            index_in_rack: e.index_in_rack,
            role: e.role,
            ipv4: e.ipv4,
            register_date,
            retire_date,
            bmc_type: e.bmc.bmc_type,
            bmc_ipv4: e.bmc.ipv4,
            state,
            timestamp: now,
        });
    }
    if problems.is_empty() {
        Ok(machines)
    } else {
        Err(InventoryError { problems })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_layouts_and_defaults() {
        let now = Utc::now();
        let list = parse("- {serial: a, role: cs, ipv4: [10.0.0.1]}\n", now).unwrap();
        let obj = parse("machines:\n- {serial: a, role: cs, ipv4: [10.0.0.1]}\n", now).unwrap();
        assert_eq!(list, obj);
        assert_eq!(list[0].state, MachineState::Healthy);
        assert_eq!(list[0].register_date, now);
        assert!(list[0].retire_date > now);
        let json = parse(
            r#"[{"serial": "a", "role": "cs", "ipv4": ["10.0.0.1"], "state": "unreachable"}]"#,
            now,
        )
        .unwrap();
        assert_eq!(json[0].state, MachineState::Unreachable);
    }

    #[test]
    fn every_problem_names_its_machine_and_field() {
        let text = "\
- {serial: a, role: cs, ipv4: [10.0.0.1]}
- {serial: a, role: cs, ipv4: [10.0.0.1]}
- {serial: c, role: -bad, ipv4: [10.0.0.300], state: broken}
- {serial: d, role: cs, ipv4: [10.0.0.4], colour: red}
- {serial: e, role: cs, ipv4: []}
";
        let e = parse(text, Utc::now()).unwrap_err();
        let all = e.to_string();
        for want in [
            "machines[1].serial",
            "machines[1].ipv4[0]",
            "machines[2].role",
            "machines[2].ipv4[0]",
            "machines[2].state",
            "machines[3]: unknown field `colour`",
            "machines[4].ipv4",
        ] {
            assert!(all.contains(want), "{want} missing from {all}");
        }
    }
}
