//! `etcd-promote-member`: promote a started learner once it is in sync, then mark it.

use super::{bootstrap::HEALTHY_LIMIT, mark, others, Promote};
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(node: &str, id: u64, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let promote = Promote {
        node: node.into(),
        peers: others(ctx.cluster, node),
        id,
        limit: HEALTHY_LIMIT,
    };
    SeqOperator::boxed(
        "etcd-promote-member",
        vec![node.into()],
        vec![Box::new(promote), mark(node)],
    )
}
