//! `etcd-start`: start stopped members that hold data (fresh certificates, then the container
//! without `--initial-*` flags: the data directory knows the cluster), each step on all of them at
//! once.

use super::{run_spec, write_certs};
use crate::op::common::{steps, RunContainer};
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(nodes: &[String], ctx: OpContext<'_>) -> Box<dyn Operator> {
    let certs = nodes.iter().map(|a| write_certs(ctx, a)).collect();
    let runs = nodes
        .iter()
        .map(|a| RunContainer::boxed(a, run_spec(ctx, a, None), None))
        .collect();
    SeqOperator::boxed("etcd-start", nodes.to_vec(), steps(vec![certs, runs]))
}
