//! Pure data types of cke-rs and their validation: the cluster declaration (`cluster.yml`), the
//! constraints, operation records and the server status. Nothing here does I/O or reads the clock.
//!
//! The serde layout follows CKE's JSON/YAML schema (`docs/cluster.md` of CKE) so that existing
//! cluster files load unchanged: a declaration is read as CKE reads it ([`yaml`], [`schema`]) and
//! judged as CKE judges it (`validate`); unknown keys are warnings.

mod cluster;
pub mod cni;
mod constraints;
pub mod kube_version;
pub mod limits;
pub mod plan;
pub mod queue;
mod reboot;
mod record;
pub mod repair;
pub mod resource;
pub mod schema;
mod status;
mod validate;
pub mod yaml;

pub use cluster::*;
pub use constraints::*;
pub use plan::{CkeObject, OpKind, Phase, PlannedOp, QueueItem};
pub use reboot::*;
pub use record::*;
pub use repair::{RepairEntry, RepairQueueStatus, RepairStatus, RepairStepStatus};
pub use resource::{
    needs_update, parse_resource, sort_resources, ResourceDefinition, ResourceError, ResourceInfo, ResourceStatus,
};
pub use status::*;
pub use validate::{go_parse_cidr, go_parse_ip, FieldError, Mode, ValidationError, Verdict, USER_NAME};

/// A declaration CKE accepts, with what cke-rs warns about (unknown keys, suspicious values).
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// The typed declaration.
    pub cluster: Cluster,
    /// Warnings, each naming its field path; `--strict` makes them errors.
    pub warnings: Vec<FieldError>,
}

/// A declaration CKE refuses: every error, and the warnings found beside them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{errors}")]
pub struct Rejected {
    /// The errors.
    pub errors: ValidationError,
    /// The warnings.
    pub warnings: Vec<FieldError>,
}

/// Reads a declaration (YAML or JSON) as CKE reads it, without judging its values: YAML 1.1 (see
/// [`yaml`]), Go's decoding (see [`schema`]). Unknown keys are warnings; type mismatches errors.
/// Input beyond [`limits`] (too large, nested too deep) is refused with a clear error before it is
/// parsed.
pub fn decode_cluster(text: &str) -> Result<Declaration, Rejected> {
    let reject = |errors: Vec<FieldError>, warnings: Vec<FieldError>| Rejected {
        errors: ValidationError { errors },
        warnings,
    };
    limits::check(text).map_err(|e| reject(vec![FieldError::new("", e.to_string())], vec![]))?;
    let (doc, notes) =
        yaml::read(text).map_err(|e| reject(vec![FieldError::new("", format!("not YAML: {e}"))], vec![]))?;
    let mut converted = schema::convert(&doc);
    if notes.more_documents {
        converted.warnings.push(FieldError::new(
            "",
            "holds more than one YAML document; only the first is read (as CKE reads it)",
        ));
    }
    let cluster: Cluster = match serde_json::from_value(converted.value) {
        Ok(c) => c,
        Err(e) => {
            converted.errors.push(FieldError::new("", e.to_string()));
            return Err(reject(converted.errors, converted.warnings));
        }
    };
    if !converted.errors.is_empty() {
        // Judge the rest too, so that every problem is reported at once.
        let mut errors = converted.errors;
        let verdict = cluster.verdict(Mode::Declaration);
        let seen: Vec<String> = errors.iter().map(|e| e.path.clone()).collect();
        errors.extend(
            verdict
                .errors
                .into_iter()
                .filter(|e| !seen.iter().any(|p| e.path.starts_with(p.as_str()))),
        );
        return Err(reject(errors, converted.warnings));
    }
    Ok(Declaration {
        cluster,
        warnings: converted.warnings,
    })
}

/// Reads and judges a declaration as CKE does ([`decode_cluster`], then [`Cluster::verdict`]):
/// `Ok` when CKE accepts it (with cke-rs's warnings), `Err` with every error otherwise.
/// [`Mode::Template`] judges a sabakan template (nodes without addresses).
pub fn read_cluster(text: &str, mode: Mode) -> Result<Declaration, Rejected> {
    let mut d = decode_cluster(text)?;
    let verdict = d.cluster.verdict(mode);
    d.warnings.extend(verdict.warnings);
    if verdict.errors.is_empty() {
        Ok(d)
    } else {
        Err(Rejected {
            errors: ValidationError { errors: verdict.errors },
            warnings: d.warnings,
        })
    }
}

/// The declaration as YAML that reads back unchanged as CKE reads it. The YAML 1.2 writer leaves
/// some strings plain that a YAML 1.1 reading takes for numbers or booleans (`0_0`, `yes`): then
/// the declaration is written as JSON, which every YAML reader reads alike.
pub fn cluster_yaml(cluster: &Cluster) -> String {
    if let Ok(yaml) = serde_yaml::to_string(cluster) {
        if matches!(decode_cluster(&yaml), Ok(d) if d.cluster == *cluster) {
            return yaml;
        }
    }
    let mut json = serde_json::to_string_pretty(cluster).expect("a declaration serializes");
    json.push('\n');
    json
}

/// Parses a cluster declaration from YAML or JSON text and validates it ([`read_cluster`] without
/// the warnings).
pub fn parse_cluster(text: &str) -> Result<Cluster, ValidationError> {
    read_cluster(text, Mode::Declaration)
        .map(|d| d.cluster)
        .map_err(|r| r.errors)
}

#[cfg(test)]
mod cke_tests;
#[cfg(test)]
mod tests;
