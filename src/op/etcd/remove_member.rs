//! `etcd-remove-member`: remove the member of a node that is not declared (through the control
//! planes; the node itself may be gone).

use super::{others, RemoveMember};
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(node: &str, id: u64, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let remove = RemoveMember {
        node: node.into(),
        peers: others(ctx.cluster, node),
        id,
        detail: format!("{id:x}"),
    };
    SeqOperator::boxed("etcd-remove-member", vec![node.into()], vec![Box::new(remove)])
}
