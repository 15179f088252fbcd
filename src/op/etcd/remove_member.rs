//! `etcd-remove-member`: remove the member of a node that is not declared (through the control
//! planes; the node itself may be gone).

use super::remove_member;
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(node: &str, id: u64, ctx: OpContext<'_>) -> Box<dyn Operator> {
    SeqOperator::boxed(
        "etcd-remove-member",
        vec![node.into()],
        vec![remove_member(ctx, node, id)],
    )
}
