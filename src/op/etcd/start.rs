//! `etcd-start`: start stopped members that hold data (fresh certificates, then the container
//! without `--initial-*` flags: the data directory knows the cluster).

use super::{run_spec, write_certs};
use crate::op::common::RunContainer;
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(nodes: &[String], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let mut steps = Vec::new();
    for a in nodes {
        steps.push(write_certs(ctx, a));
        steps.push(RunContainer::boxed(a, run_spec(ctx, a, None), None));
    }
    SeqOperator::boxed("etcd-start", nodes.to_vec(), steps)
}
