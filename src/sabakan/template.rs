//! The cluster template of the sabakan integration (`sabakan/template`): a cluster declaration
//! whose nodes are templates, one for the control planes and one per worker role, without
//! addresses. This module parses and validates it as CKE's `ValidateTemplate` does, and runs the
//! declaration's own validation in template mode ([`Cluster::verdict`] with [`Mode::Template`]);
//! nothing about addresses is reported but their presence.

use std::collections::BTreeSet;

use crate::model::{Cluster, FieldError, Mode, ValidationError};

/// The label naming the machine role a node template is for.
pub const CKE_LABEL_ROLE: &str = "cke.cybozu.com/role";

/// Parses a template from YAML or JSON text and validates it. Node templates have no address, so
/// an absent `address` reads as empty (CKE writes `"address": ""`).
pub fn parse_template(text: &str) -> Result<Cluster, ValidationError> {
    let not_a_template = |e: serde_yaml::Error| ValidationError::single("", format!("not a cluster template: {e}"));
    let mut value: serde_yaml::Value = serde_yaml::from_str(text).map_err(not_a_template)?;
    if let Some(nodes) = value.get_mut("nodes").and_then(|n| n.as_sequence_mut()) {
        for node in nodes {
            if let Some(map) = node.as_mapping_mut() {
                let key = serde_yaml::Value::from("address");
                if !map.contains_key(&key) {
                    map.insert(key, serde_yaml::Value::from(""));
                }
            }
        }
    }
    let template: Cluster = serde_yaml::from_value(value).map_err(not_a_template)?;
    validate_template(&template)?;
    Ok(template)
}

/// CKE's template rules: at least two node templates, exactly one of them for control planes, and
/// when there are two or more worker templates each names a distinct role
/// (`cke.cybozu.com/role`); no address; then the declaration's own rules.
pub fn validate_template(t: &Cluster) -> Result<(), ValidationError> {
    let mut errs = Vec::new();
    if t.nodes.len() < 2 {
        errs.push(FieldError::new(
            "nodes",
            format!(
                "a template needs at least two node templates (one control plane, one worker), found {}",
                t.nodes.len()
            ),
        ));
    }
    let cps: Vec<usize> = (0..t.nodes.len()).filter(|i| t.nodes[*i].control_plane).collect();
    if cps.len() != 1 {
        errs.push(FieldError::new(
            "nodes",
            format!(
                "a template needs exactly one control-plane node template, found {}",
                cps.len()
            ),
        ));
    }
    let workers: Vec<usize> = (0..t.nodes.len()).filter(|i| !t.nodes[*i].control_plane).collect();
    if workers.len() >= 2 {
        let mut seen = BTreeSet::new();
        for i in &workers {
            let role = t.nodes[*i].labels.get(CKE_LABEL_ROLE).map(String::as_str).unwrap_or("");
            let path = format!("nodes[{i}].labels[{CKE_LABEL_ROLE:?}]");
            if role.is_empty() {
                errs.push(FieldError::new(
                    path,
                    "is required: with several worker templates, each names the machine role it is for",
                ));
            } else if !seen.insert(role) {
                errs.push(FieldError::new(
                    path,
                    format!("role {role:?} has another worker template; each role has one"),
                ));
            }
        }
    }
    for (i, n) in t.nodes.iter().enumerate() {
        if !n.address.is_empty() {
            errs.push(FieldError::new(
                format!("nodes[{i}].address"),
                "must be empty in a template: each node's address is its machine's first IPv4 address",
            ));
        }
    }
    // The declaration's own rules in template mode (CKE's `Validate(true)`); the addresses are
    // reported above.
    let verdict = t.verdict(Mode::Template);
    errs.extend(verdict.errors.into_iter().filter(|f| !f.path.ends_with(".address")));
    ValidationError::from_errors(errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_template_parses_without_addresses() {
        let t = parse_template(
            "name: c\nservice_subnet: 10.68.0.0/16\nnodes:\n- {user: cybozu, control_plane: true}\n- {user: cybozu}\n",
        )
        .unwrap();
        assert_eq!(t.nodes.len(), 2);
        assert!(t.nodes.iter().all(|n| n.address.is_empty()));
    }

    #[test]
    fn template_errors_name_the_field() {
        let cases = [
            ("nodes:\n- {user: u, control_plane: true}\n", "nodes"),
            (
                "nodes:\n- {user: u, control_plane: true}\n- {user: u, labels: {cke.cybozu.com/role: a}}\n- {user: u}\n",
                "nodes[2].labels[\"cke.cybozu.com/role\"]",
            ),
            (
                "nodes:\n- {user: u, control_plane: true}\n- {address: 10.0.0.1, user: u}\n",
                "nodes[1].address",
            ),
            ("nodes:\n- {user: u, control_plane: true}\n- {user: \"\"}\n", "nodes[1].user"),
            (
                "nodes:\n- {user: u, control_plane: true}\n- {user: u, taints: [{key: a, effect: Bad}]}\n",
                "nodes[1].taints[0].effect",
            ),
        ];
        for (nodes, path) in cases {
            let text = format!("name: c\nservice_subnet: 10.68.0.0/16\n{nodes}");
            let e = parse_template(&text).expect_err(nodes);
            assert!(e.has_path(path), "{nodes}: {e}");
        }
    }
}
