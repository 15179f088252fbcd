//! `etcd-restart`: restart an outdated member with the declared image and parameters (fresh
//! certificates first), then wait until it is in sync again. The planner restarts one member at a
//! time and only while the others keep quorum.

use std::time::Duration;

use super::{run_spec, write_certs, WaitInSync};
use crate::op::common::RunContainer;
use crate::op::{OpContext, Operator, SeqOperator};

/// How long the restarted member may take to catch up.
pub const IN_SYNC_LIMIT: Duration = Duration::from_secs(120);

/// The operator.
pub fn operator(node: &str, ctx: OpContext<'_>) -> Box<dyn Operator> {
    let cps: Vec<String> = ctx.cluster.control_planes().map(|n| n.address.clone()).collect();
    let steps = vec![
        write_certs(ctx, node),
        RunContainer::boxed(node, run_spec(ctx, node, None), Some("etcd (new parameters)".into())),
        Box::new(WaitInSync {
            node: node.into(),
            nodes: cps,
            limit: IN_SYNC_LIMIT,
        }) as _,
    ];
    SeqOperator::boxed("etcd-restart", vec![node.into()], steps)
}
