//! `etcd-wait-cluster`: wait (up to a minute) for the managed etcd to become healthy.

use std::time::Duration;

use super::WaitHealthy;
use crate::op::{Operator, SeqOperator};

/// How long one wait lasts; the next pass waits again if need be.
pub const LIMIT: Duration = Duration::from_secs(60);

/// The operator.
pub fn operator(nodes: &[String]) -> Box<dyn Operator> {
    let wait = WaitHealthy {
        nodes: nodes.to_vec(),
        limit: LIMIT,
    };
    SeqOperator::boxed("etcd-wait-cluster", nodes.to_vec(), vec![Box::new(wait)])
}
