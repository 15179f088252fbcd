//! Sabakan's machine inventory as CKE reads it: the machines `searchMachines` returns (the fields of
//! CKE's GraphQL query), their states, and the query variables (`$having`, `$notHaving`) with their
//! validation. Pure data; nothing here does I/O.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{FieldError, ValidationError};

/// A machine's state in sabakan (the GraphQL enum `MachineState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MachineState {
    /// Not initialized yet.
    Uninitialized,
    /// Can run applications.
    Healthy,
    /// Has problems to be repaired.
    Unhealthy,
    /// Cannot be reached.
    Unreachable,
    /// Being updated (rebooted).
    Updating,
    /// To be retired or repaired.
    Retiring,
    /// Its disk encryption keys are deleted.
    Retired,
}

impl MachineState {
    /// Every state, in the schema's order.
    pub const ALL: [MachineState; 7] = [
        MachineState::Uninitialized,
        MachineState::Healthy,
        MachineState::Unhealthy,
        MachineState::Unreachable,
        MachineState::Updating,
        MachineState::Retiring,
        MachineState::Retired,
    ];

    /// The GraphQL name, e.g. `UNREACHABLE`.
    pub fn as_str(&self) -> &'static str {
        match self {
            MachineState::Uninitialized => "UNINITIALIZED",
            MachineState::Healthy => "HEALTHY",
            MachineState::Unhealthy => "UNHEALTHY",
            MachineState::Unreachable => "UNREACHABLE",
            MachineState::Updating => "UPDATING",
            MachineState::Retiring => "RETIRING",
            MachineState::Retired => "RETIRED",
        }
    }

    /// The state named `s` (the GraphQL name).
    pub fn parse(s: &str) -> Option<MachineState> {
        MachineState::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

impl fmt::Display for MachineState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A label of a machine (`labels { name value }`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    /// The label's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// The machine's BMC (`bmc { bmcType }`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bmc {
    /// The BMC type, e.g. `IPMI-2.0`; the repair queue's machine type.
    #[serde(rename = "bmcType", default)]
    pub bmc_type: String,
}

/// What sabakan knows of a machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineSpec {
    /// Serial number.
    #[serde(default)]
    pub serial: String,
    /// Labels, in sabakan's order.
    #[serde(default, deserialize_with = "null_default")]
    pub labels: Vec<Label>,
    /// Logical rack number.
    #[serde(default)]
    pub rack: i64,
    /// Position in the rack.
    #[serde(rename = "indexInRack", default)]
    pub index_in_rack: i64,
    /// Role, e.g. `cs` (compute) or `ss` (storage); `boot` servers are never nodes.
    #[serde(default)]
    pub role: String,
    /// IPv4 addresses; the first is the node's address.
    #[serde(default, deserialize_with = "null_default")]
    pub ipv4: Vec<String>,
    /// When the machine was registered.
    #[serde(rename = "registerDate")]
    pub register_date: DateTime<Utc>,
    /// When the machine is to be retired.
    #[serde(rename = "retireDate")]
    pub retire_date: DateTime<Utc>,
    /// Its BMC.
    #[serde(default)]
    pub bmc: Bmc,
}

/// A machine's state and how long it has been in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineStatus {
    /// The state.
    pub state: MachineState,
    /// Seconds since the state was entered.
    #[serde(default)]
    pub duration: f64,
}

/// A machine as `searchMachines` returns it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// What the machine is.
    pub spec: MachineSpec,
    /// Its state.
    pub status: MachineStatus,
}

impl Machine {
    /// The node's address: the first IPv4 address (`None` when it has none).
    pub fn address(&self) -> Option<&str> {
        self.spec.ipv4.first().map(String::as_str)
    }

    /// In state HEALTHY.
    pub fn is_healthy(&self) -> bool {
        self.status.state == MachineState::Healthy
    }
}

/// One label a machine must (or must not) carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelInput {
    /// The label's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// Search conditions (`MachineParams`): a machine matches `having` when it has all the labels and
/// one of the racks, roles and states listed; it matches `notHaving` when it has any of them.
/// Absent lists are sent as `null`, as CKE sends them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineParams {
    /// Labels.
    #[serde(default)]
    pub labels: Option<Vec<LabelInput>>,
    /// Rack numbers.
    #[serde(default)]
    pub racks: Option<Vec<i64>>,
    /// Roles.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// States.
    #[serde(default)]
    pub states: Option<Vec<MachineState>>,
    /// Days before the retire date at least (having) or less than (notHaving).
    #[serde(rename = "minDaysBeforeRetire", default, skip_serializing_if = "Option::is_none")]
    pub min_days_before_retire: Option<i64>,
}

/// The query variables stored at `sabakan/query-variables` and `auto-repair/query-variables`.
/// Both keys are always sent, `null` when absent, as CKE sends them: an absent `notHaving` then
/// overrides the query's default (boot servers and retired machines excluded).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryVariables {
    /// Conditions a machine must meet.
    #[serde(default)]
    pub having: Option<MachineParams>,
    /// Conditions a machine must not meet.
    #[serde(rename = "notHaving", default)]
    pub not_having: Option<MachineParams>,
}

impl QueryVariables {
    /// The variables auto-repair uses when none are stored (CKE's): unhealthy and unreachable
    /// machines, boot servers excluded.
    pub fn auto_repair_default() -> QueryVariables {
        QueryVariables {
            having: Some(MachineParams {
                states: Some(vec![MachineState::Unhealthy, MachineState::Unreachable]),
                ..Default::default()
            }),
            not_having: Some(MachineParams {
                roles: Some(vec!["boot".into()]),
                ..Default::default()
            }),
        }
    }

    /// Parses and checks variables given as JSON text, naming every invalid field
    /// (`having.states[0]`, `notHaving.racks`).
    pub fn parse(text: &str) -> Result<QueryVariables, ValidationError> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| ValidationError::single("", format!("not JSON: {e}")))?;
        let mut errs = Vec::new();
        match &value {
            serde_json::Value::Object(top) => {
                for (k, v) in top {
                    match k.as_str() {
                        "having" | "notHaving" => check_params(v, k, &mut errs),
                        _ => errs.push(FieldError::new(
                            k.clone(),
                            "unknown field; the variables are `having` and `notHaving`",
                        )),
                    }
                }
            }
            _ => errs.push(FieldError::new(
                "",
                "must be a JSON object with `having` and/or `notHaving`",
            )),
        }
        ValidationError::from_errors(errs)?;
        serde_json::from_value(value).map_err(|e| ValidationError::single("", e.to_string()))
    }
}

fn check_params(v: &serde_json::Value, path: &str, errs: &mut Vec<FieldError>) {
    use serde_json::Value;
    let obj = match v {
        Value::Null => return,
        Value::Object(o) => o,
        _ => {
            errs.push(FieldError::new(path, "must be an object (MachineParams) or null"));
            return;
        }
    };
    let list = |k: &str, v: &Value, errs: &mut Vec<FieldError>| -> Vec<(String, Value)> {
        match v {
            Value::Null => vec![],
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, e)| (format!("{path}.{k}[{i}]"), e.clone()))
                .collect(),
            _ => {
                errs.push(FieldError::new(format!("{path}.{k}"), "must be a list or null"));
                vec![]
            }
        }
    };
    for (k, v) in obj {
        match k.as_str() {
            "labels" => {
                for (p, e) in list(k, v, errs) {
                    match &e {
                        Value::Object(l) => {
                            for f in ["name", "value"] {
                                if !l.get(f).is_some_and(Value::is_string) {
                                    errs.push(FieldError::new(format!("{p}.{f}"), "a string is required"));
                                }
                            }
                            for f in l.keys().filter(|f| *f != "name" && *f != "value") {
                                errs.push(FieldError::new(
                                    format!("{p}.{f}"),
                                    "unknown field; a label is {name, value}",
                                ));
                            }
                        }
                        _ => errs.push(FieldError::new(p, "must be an object {name, value}")),
                    }
                }
            }
            "racks" => {
                for (p, e) in list(k, v, errs) {
                    if !e.is_i64() {
                        errs.push(FieldError::new(p, format!("{e} is not an integer (a rack number)")));
                    }
                }
            }
            "roles" => {
                for (p, e) in list(k, v, errs) {
                    if !e.is_string() {
                        errs.push(FieldError::new(p, format!("{e} is not a string (a role)")));
                    }
                }
            }
            "states" => {
                for (p, e) in list(k, v, errs) {
                    if e.as_str().and_then(MachineState::parse).is_none() {
                        let known: Vec<&str> = MachineState::ALL.iter().map(|s| s.as_str()).collect();
                        errs.push(FieldError::new(
                            p,
                            format!("{e} is not a machine state (one of {})", known.join(", ")),
                        ));
                    }
                }
            }
            "minDaysBeforeRetire" => {
                if !(v.is_null() || v.is_i64()) {
                    errs.push(FieldError::new(
                        format!("{path}.{k}"),
                        format!("{v} is not an integer (days)"),
                    ));
                }
            }
            _ => errs.push(FieldError::new(
                format!("{path}.{k}"),
                "unknown field; MachineParams has labels, racks, roles, states, minDaysBeforeRetire",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_sent_as_cke_sends_them() {
        // CKE re-encodes the stored variables: both keys always, absent lists as null.
        let v = QueryVariables::parse(r#"{"notHaving": {"states": ["RETIRED"]}}"#).unwrap();
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!({"having": null, "notHaving": {"labels": null, "racks": null, "roles": null, "states": ["RETIRED"]}})
        );
        let v = QueryVariables::parse("{}").unwrap();
        assert_eq!(
            serde_json::to_value(&v).unwrap(),
            serde_json::json!({"having": null, "notHaving": null})
        );
        let v = QueryVariables::parse(r#"{"having": {"minDaysBeforeRetire": 90}}"#).unwrap();
        assert_eq!(v.having.unwrap().min_days_before_retire, Some(90));
    }

    #[test]
    fn invalid_variables_name_their_fields() {
        let cases = [
            (r#"{"having": {"states": ["bad"]}}"#, "having.states[0]"),
            (r#"{"notHaving": {"racks": ["one"]}}"#, "notHaving.racks[0]"),
            (r#"{"having": {"labels": [{"name": "a"}]}}"#, "having.labels[0].value"),
            (r#"{"having": {"role": ["cs"]}}"#, "having.role"),
            (r#"{"haveing": {}}"#, "haveing"),
            (
                r#"{"having": {"minDaysBeforeRetire": "90"}}"#,
                "having.minDaysBeforeRetire",
            ),
            (r#"{"having": []}"#, "having"),
            (r#"[]"#, ""),
            (r#"{"having": "#, ""),
        ];
        for (text, path) in cases {
            let e = QueryVariables::parse(text).expect_err(text);
            assert!(e.has_path(path), "{text}: {e}");
        }
    }

    #[test]
    fn machines_decode_from_sabakan_answers() {
        let m: Machine = serde_json::from_value(serde_json::json!({
            "spec": {"serial": "m1", "labels": null, "rack": 1, "indexInRack": 3, "role": "cs",
                     "ipv4": ["10.0.1.3"], "registerDate": "2018-12-02T00:00:00Z",
                     "retireDate": "2019-01-02T00:00:00Z", "bmc": {"bmcType": "iDRAC"}},
            "status": {"state": "HEALTHY", "duration": 100.5}
        }))
        .unwrap();
        assert_eq!(m.address(), Some("10.0.1.3"));
        assert!(m.spec.labels.is_empty());
        assert_eq!(m.spec.bmc.bmc_type, "iDRAC");
        assert!(m.is_healthy());
    }
}
