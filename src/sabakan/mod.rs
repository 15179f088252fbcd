//! The sabakan integration (CKE's `sabakan/` package): the cluster declaration generated from the
//! machine inventory of [sabakan](https://github.com/cybozu-go/sabakan) and a template, kept up to
//! date as machines come, go, fail and retire.
//!
//! Owns: sabakan's machine types and query variables ([`machine`]), the template's validation
//! ([`template`]), the machine scores ([`score`]), the generator ([`generator`]) and the auto-repair
//! rules ([`repairer`]), all pure; the GraphQL client ([`client`], the only I/O to sabakan) and the
//! leader's [`integrator`], which reads and writes the management etcd through [`crate::storage`]
//! (the declaration, and the repair queue's new entries). Must not plan operations or reach the nodes: what it writes is acted on by the
//! controller like anything else.

pub mod client;
#[cfg(test)]
pub mod fake;
pub mod generator;
pub mod integrator;
pub mod machine;
pub mod repairer;
pub mod score;
pub mod template;

pub use client::{MachineSearch, QueryError, SabakanClient, GRAPHQL_QUERY};
pub use generator::{machine_to_node, GenerateError, Generated, Generator, UpdateOp};
pub use integrator::{Integrator, Outcome, RepairOutcome, Report};
pub use machine::{Machine, MachineParams, MachineSpec, MachineState, MachineStatus, QueryVariables};
pub use template::{parse_template, validate_template, CKE_LABEL_ROLE};
