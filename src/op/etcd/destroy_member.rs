//! `etcd-destroy-member`: remove the member of a node that is no longer a control plane, then wipe
//! its container, volumes and certificates there. Without a member id (the member was removed while
//! the node was unreachable), only the wipe, guarded: it refuses a node the member list still names
//! as a started or voting member.

use super::{others, remove_member, Wipe, WipeGuard};
use crate::op::{OpContext, Operator, SeqOperator};

/// The operator.
pub fn operator(node: &str, id: Option<u64>, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let wipe = Wipe {
        node: node.into(),
        volume: ctx.cluster.options.etcd.volume().into(),
        detail: "container, volumes, certificates",
        guard: id.is_none().then(|| WipeGuard {
            peers: others(ctx.cluster, node),
            replace: None,
        }),
    };
    let mut steps = Vec::new();
    if let Some(id) = id {
        steps.push(remove_member(ctx, node, id));
    }
    steps.push(Box::new(wipe) as _);
    SeqOperator::boxed("etcd-destroy-member", vec![node.into()], steps)
}
