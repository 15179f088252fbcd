//! Pure data types of cke-rs and their validation: the cluster declaration (`cluster.yml`), the
//! constraints, operation records and the server status. Nothing here does I/O or reads the clock.
//!
//! The serde layout follows CKE's JSON/YAML schema (`docs/cluster.md` of CKE) so that existing
//! cluster files load unchanged; unknown fields are errors.

mod cluster;
mod constraints;
pub mod kube_version;
pub mod plan;
pub mod queue;
mod reboot;
mod record;
pub mod repair;
pub mod resource;
mod status;
mod validate;

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
pub use validate::{FieldError, ValidationError, USER_NAME};

/// Parses a cluster declaration from YAML or JSON text (JSON is a subset of YAML) and validates it.
pub fn parse_cluster(text: &str) -> Result<Cluster, ValidationError> {
    let cluster: Cluster = serde_yaml::from_str(text).map_err(ValidationError::from_yaml)?;
    cluster.validate()?;
    Ok(cluster)
}

#[cfg(test)]
mod tests;
