//! `etcd-destroy-member`: remove the member of a node that is no longer a control plane, then wipe
//! its container, volumes and certificates there.

use super::{others, RemoveMember, Wipe};
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(node: &str, id: u64, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let remove = RemoveMember {
        node: node.into(),
        peers: others(ctx.cluster, node),
        id,
        detail: format!("{id:x}"),
    };
    let wipe = Wipe {
        node: node.into(),
        volume: ctx.cluster.options.etcd.volume().into(),
        detail: "container, volumes, certificates",
        guard: None,
    };
    SeqOperator::boxed(
        "etcd-destroy-member",
        vec![node.into()],
        vec![Box::new(remove), Box::new(wipe)],
    )
}
