//! `etcd-destroy-member`: remove the member of a node that is no longer a control plane, then wipe
//! its container, volumes and certificates there.

use super::{remove_member, Wipe};
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(node: &str, id: u64, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let wipe = Wipe {
        node: node.into(),
        volume: ctx.cluster.options.etcd.volume().into(),
        detail: "container, volumes, certificates",
        guard: None,
    };
    SeqOperator::boxed(
        "etcd-destroy-member",
        vec![node.into()],
        vec![remove_member(ctx, node, id), Box::new(wipe)],
    )
}
